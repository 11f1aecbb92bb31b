/*
 * kit.h — what every HTTP handler uses: calls bound to a request, the one
 * mapping of results to error answers, the authorize hook, lists, blob
 * answers and the client's address. Handlers (actors/api/) sit on this;
 * nothing here knows a handler or an actor.
 */
#ifndef PV_KIT_H
#define PV_KIT_H

#include <jansson.h>

#include "app/api_body.h"
#include "app/app.h"
#include "app/call.h"
#include "base/records.h"

/* ---- calls bound to a request ---- */
/* A zeroed call of `size` bytes (>= sizeof(pv_call_t)) whose steps run on
 * req's loop; NULL when out of memory. */
void *pv_call_new(pv_http_req_t *req, size_t size);
/* pv_call_pool, answering 503 (and freeing the call) when the pool refuses. */
void pv_call_work(pv_call_t *call, pv_pool_t *pool, pv_work_fn work, pv_call_fn k);
/* The same at a priority: a full queue answers 503 with Retry-After. */
void pv_call_work_at(pv_call_t *call, pv_pool_t *pool, pv_work_fn work, pv_call_fn k, int prio);

/* ---- the request's context ---- */
pv_app_t *pv_api_app(pv_http_req_t *req);
/* The caller's user id (binary), from the authorize hook. */
int pv_api_user_id(pv_http_req_t *req, uint8_t id[16]);
/* 0 when the user exists and is not disabled; -EACCES otherwise. */
int pv_api_user_active(pv_app_t *app, const uint8_t id[16]);
/* The client's address, honouring X-Forwarded-For from trusted proxies. */
const char *pv_api_client_addr(pv_http_req_t *req, char *buf, size_t buflen);
/* The key per-address limits count under: IPv4 as it is, IPv6 by its /64. */
const char *pv_api_limit_key(const char *addr, char *buf, size_t buflen);

/* ---- the HTTP server's hooks ---- */
/* pvd's security headers, sent with every answer (pv_http_config_t.headers). */
extern const pv_http_default_header_t pv_api_headers[];
/* media_from_s3: pictures and videos may also come from origin
 * ("https://bucket.s3...."). Before the servers start. */
void pv_api_csp_media_origin(const char *origin);
int pv_api_authorize(pv_http_req_t *req, const pv_http_route_t *route);
void pv_api_on_done(pv_http_req_t *req, int status, uint64_t bytes_out, double ms);

/* ---- answers ---- */
/* Map a store/pipeline result to an error answer (507 for -ENOSPC ...):
 * the one table of results and their answers; returns the status answered. */
int pv_api_fail(pv_http_req_t *req, int rc);
/* Answer a body parser's error at the status its code carries (400, 413
 * for body_too_large; out of memory as pv_api_fail answers it). */
void pv_api_body_error(pv_http_req_t *req, const pv_body_err_t *e);
/* 507 quota_exceeded: the user's photos and videos take `used` bytes of
 * their `quota` (user_storage_bytes). */
void pv_api_quota_exceeded(pv_http_req_t *req, uint64_t used, uint64_t quota);
/* Parse a JSON body; answers 400 itself and returns NULL on failure. */
json_t *pv_api_json_body(pv_http_req_t *req);
/* Answer with a blob file (ETag, Range, HEAD). */
void pv_api_serve_blob(pv_http_req_t *req, const uint8_t sha[32], const char *ctype);
/* A list answer (?limit, ?cursor, newest first) of the caller's records in
 * db (keys user(16)|id(16)); fn writes a record's JSON object into sb (req
 * is the list's request: its app, its loop). */
typedef int (*pv_list_item_fn)(pv_sb_t *sb, pv_http_req_t *req, const pv_val_t *record);
void pv_api_list(pv_http_req_t *req, int db, pv_list_item_fn fn);

#endif
