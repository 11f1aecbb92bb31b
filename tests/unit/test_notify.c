/*
 * test_notify.c — sd_notify's protocol (src/base/notify.c): a datagram to
 * $NOTIFY_SOCKET, a path or an abstract name; nothing without it.
 */
#include "base/notify.h"
#include "base/pv.h"
#include "t.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A datagram socket bound to name (a path, or '@' + abstract name). */
static int listener(const char *name)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    memcpy(sa.sun_path, name, n);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
        return -1;
    return fd;
}

static void expect_datagram(int fd, const char *want)
{
    char buf[64] = "";
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    CHECK(n == (ssize_t)strlen(want));
    if (n > 0)
        buf[n] = '\0';
    CHECK_EQ_STR(buf, want);
}

TEST(path_socket)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/pv-notify-%d.sock", (int)getpid());
    unlink(path);
    int fd = listener(path);
    CHECK(fd >= 0);
    setenv("NOTIFY_SOCKET", path, 1);
    CHECK_EQ_INT(pv_notify("READY=1"), 0);
    expect_datagram(fd, "READY=1");
    CHECK_EQ_INT(pv_notify("STOPPING=1"), 0);
    expect_datagram(fd, "STOPPING=1");
    close(fd);
    unlink(path);
    /* the listener is gone: the error comes back, nothing blocks */
    CHECK(pv_notify("READY=1") < 0);
}

TEST(abstract_socket)
{
    char name[64];
    snprintf(name, sizeof(name), "@pv-notify-test-%d", (int)getpid());
    int fd = listener(name);
    CHECK(fd >= 0);
    setenv("NOTIFY_SOCKET", name, 1);
    CHECK_EQ_INT(pv_notify("READY=1"), 0);
    expect_datagram(fd, "READY=1");
    close(fd);
}

TEST(no_socket)
{
    unsetenv("NOTIFY_SOCKET");
    CHECK_EQ_INT(pv_notify("READY=1"), 0); /* not under systemd */
    setenv("NOTIFY_SOCKET", "", 1);
    CHECK_EQ_INT(pv_notify("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "relative.sock", 1);
    CHECK_EQ_INT(pv_notify("READY=1"), -EINVAL);
    char longname[200];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[0] = '/';
    longname[sizeof(longname) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longname, 1);
    CHECK_EQ_INT(pv_notify("READY=1"), -EINVAL);
    unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
    RUN(path_socket);
    RUN(abstract_socket);
    RUN(no_socket);
    return t_done("notify");
}
