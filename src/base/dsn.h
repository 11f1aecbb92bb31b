/*
 * dsn.h — a libpq connection string with its password masked, for
 * anything shown or logged (pvctl config show). Pure: no libpq, so that
 * the base layer can use it and a fuzzer can drive it.
 */
#ifndef PV_DSN_H
#define PV_DSN_H

#include <stddef.h>

/* dsn with every password value replaced by "***": password=... in the
 * keyword/value form (quoted or not), and in a postgres:// or
 * postgresql:// URI both the user:password@ part and a password=
 * parameter. Truncated to outlen - 1 bytes; out is always terminated. */
void pv_dsn_redact(const char *dsn, char *out, size_t outlen);

#endif
