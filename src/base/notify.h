/*
 * notify.h — systemd's readiness protocol (sd_notify) without libsystemd.
 */
#ifndef PV_NOTIFY_H
#define PV_NOTIFY_H

/* Sends STATE ("READY=1", "STOPPING=1", ...) to $NOTIFY_SOCKET, the
 * datagram socket systemd gives a Type=notify service. 0 when sent, 0
 * when there is no NOTIFY_SOCKET (not under systemd: nothing to tell),
 * -errno when it could not be sent (-EINVAL: a malformed address). */
int pv_notify(const char *state);

#endif
