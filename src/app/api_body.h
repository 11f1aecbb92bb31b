/*
 * api_body.h — pure parsers for the JSON request bodies of the auth
 * endpoints and for the list query parameters (?limit=&cursor=).
 *
 * Each returns 0, or a negative errno with *err filled so that a handler
 * can answer at once (pv_api_body_error) with the status err.status:
 *   -EINVAL   -> 400 {"error":{"code":err.code,"message":err.message}}
 *   -EMSGSIZE -> 413 (code "body_too_large")
 *   -ENOMEM   -> 503 (code "out_of_memory")
 * One table in api_body.c gives each code its result and status.
 * err.field names the member or parameter at fault ("" for the body as a
 * whole). Unknown members and parameters are ignored (the API may grow);
 * duplicate members, trailing garbage, invalid UTF-8, NUL bytes, nesting
 * deeper than PV_BODY_MAX_DEPTH and a top level that is not an object are
 * refused.
 */
#ifndef PV_API_BODY_H
#define PV_API_BODY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/config.h"

#define PV_BODY_MAX_BYTES PV_JSON_MAX_BYTES /* a JSON body parsed here */
#define PV_BODY_MAX_DEPTH 32    /* nested arrays/objects */
#define PV_PASSWORD_MIN 8       /* characters (code points), signup only */
#define PV_PASSWORD_MAX 1024    /* bytes */
#define PV_CURSOR_MAX 64        /* list cursor: [A-Za-z0-9_-] */
#define PV_LIST_LIMIT_DEFAULT 50
#define PV_LIST_LIMIT_MAX 100

typedef struct pv_body_err {
    const char *field;  /* member/parameter at fault, "" for the whole body */
    const char *code;   /* snake_case: invalid_json, missing_field,
                           wrong_type, invalid_email, password_too_short,
                           password_too_long, invalid_value,
                           body_too_large, out_of_memory */
    int rc;             /* what the parser returned (-EINVAL ...) */
    int status;         /* the HTTP status that code is answered with */
    char message[160];  /* for people: says what is wrong with which field */
} pv_body_err_t;

typedef struct pv_credentials {
    char email[255];                      /* normalised (pv_email_normalize) */
    char password[PV_PASSWORD_MAX + 1];   /* as sent; never logged */
} pv_credentials_t;

typedef struct pv_refresh_body {
    char refresh_token[257];              /* as sent, 1..256 bytes */
} pv_refresh_body_t;

typedef struct pv_list_params {
    int limit;                            /* 1..100, default 50 */
    bool has_cursor;
    char cursor[PV_CURSOR_MAX + 1];       /* "" when none */
} pv_list_params_t;

/* The body as a JSON object (the checks above); *out to json_decref().
 * For handlers with bodies of their own (POST /videos). */
int pv_body_object(const char *body, size_t len, json_t **out,
                   pv_body_err_t *err);

/* {"email","password"}: signup needs >= 8 characters, login non-empty. */
int pv_body_credentials(const char *body, size_t len, bool signup,
                        pv_credentials_t *out, pv_body_err_t *err);

/* {"refresh_token"} (refresh and logout). */
int pv_body_refresh(const char *body, size_t len, pv_refresh_body_t *out,
                    pv_body_err_t *err);

/* The query string without '?' (NULL or "" for none). Percent-escapes in
 * values are decoded; an empty cursor means none. */
int pv_body_list_params(const char *query, pv_list_params_t *out,
                        pv_body_err_t *err);

#endif
