/*
 * api.h — the HTTP handlers (one file each under actors/api/) and the
 * route table that names them (actors/api/routes.c). A handler is called
 * on its request's loop once the body is complete; it answers through
 * src/http/http.h, and reaches the store, pools and actors through calls
 * (src/app/kit.h).
 */
#ifndef PV_API_H
#define PV_API_H

#include "http/http.h"

extern const pv_http_route_t pv_api_routes[];

/* actors/api/ops.c */
void pv_h_healthz(pv_http_req_t *req);
void pv_h_readyz(pv_http_req_t *req);
void pv_h_metrics(pv_http_req_t *req);

/* actors/api/auth.c */
void pv_h_signup(pv_http_req_t *req);
void pv_h_login(pv_http_req_t *req);
void pv_h_refresh(pv_http_req_t *req);
void pv_h_logout(pv_http_req_t *req);
void pv_h_me(pv_http_req_t *req);

/* actors/api/photos.c */
void pv_h_photo_upload(pv_http_req_t *req);
void pv_h_photo_list(pv_http_req_t *req);
void pv_h_photo_get(pv_http_req_t *req);
void pv_h_photo_content(pv_http_req_t *req);
void pv_h_photo_thumbnail(pv_http_req_t *req);
void pv_h_photo_delete(pv_http_req_t *req);
void pv_h_media_photo(pv_http_req_t *req);

/* actors/api/videos.c */
void pv_h_video_create(pv_http_req_t *req);
void pv_h_video_list(pv_http_req_t *req);
void pv_h_video_get(pv_http_req_t *req);
void pv_h_video_delete(pv_http_req_t *req);
void pv_h_video_cancel(pv_http_req_t *req);
void pv_h_video_events(pv_http_req_t *req);
void pv_h_media_video(pv_http_req_t *req);

/* actors/api/shares.c: share links, and the public share page */
void pv_h_share_create(pv_http_req_t *req);
void pv_h_share_list(pv_http_req_t *req);
void pv_h_share_revoke(pv_http_req_t *req);
void pv_h_share_page(pv_http_req_t *req);
void pv_h_share_unlock(pv_http_req_t *req);
void pv_h_share_media(pv_http_req_t *req);

/* actors/api/web.c: the web UI's static files */
void pv_h_web_index(pv_http_req_t *req);
void pv_h_web_asset(pv_http_req_t *req);
/* The name the build gave web/assets/<name> ("share.css" ->
 * "share.0123456789.css"), or the name itself in a development tree:
 * 0, or -ENOENT when the web root has no such asset. */
int pv_web_asset_name(pv_http_req_t *req, const char *name, char *out, size_t outlen);

#endif
