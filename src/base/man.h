/*
 * man.h — the manual pages pvd(8) and pvctl(8), written from the sources
 * of truth: the config key table (src/config.c) and the admin command
 * table (src/admin_proto.c). tools/mkman.sh writes them to doc/.
 */
#ifndef PV_MAN_H
#define PV_MAN_H

#include <stdio.h>

void pv_man_pvd(FILE *out);
void pv_man_pvctl(FILE *out);

#endif
