/*
 * routes.c — the one route table, the top of pvd's layers: it names every
 * handler. Dispatch, 404/405, auth, body limits, logs, metrics and
 * `pvd --routes` all come from these rows (src/http/http.h describes a row).
 */
#include "actors/api/api.h"

#define PUB PV_LISTEN_PUBLIC
#define PRIV PV_LISTEN_PRIVATE

/* max_body 0 means the server default (max_json_bytes / max_upload_bytes). */
const pv_http_route_t pv_api_routes[] = {
    {"GET", "/healthz", pv_h_healthz, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB | PRIV, "healthz"},
    {"GET", "/readyz", pv_h_readyz, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB | PRIV, "readyz"},
    {"GET", "/metrics", pv_h_metrics, PV_AUTH_NONE, PV_BODY_NONE, 0, PRIV, "metrics"},
    {"POST", "/api/v1/auth/signup", pv_h_signup, PV_AUTH_NONE, PV_BODY_MEMORY, 0, PUB, "auth_signup"},
    {"POST", "/api/v1/auth/login", pv_h_login, PV_AUTH_NONE, PV_BODY_MEMORY, 0, PUB, "auth_login"},
    {"POST", "/api/v1/auth/refresh", pv_h_refresh, PV_AUTH_NONE, PV_BODY_MEMORY, 0, PUB, "auth_refresh"},
    {"POST", "/api/v1/auth/logout", pv_h_logout, PV_AUTH_BEARER, PV_BODY_MEMORY, 0, PUB, "auth_logout"},
    {"GET", "/api/v1/me", pv_h_me, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "me"},
    {"POST", "/api/v1/photos", pv_h_photo_upload, PV_AUTH_BEARER, PV_BODY_FILE, 0, PUB, "photo_upload"},
    {"GET", "/api/v1/photos", pv_h_photo_list, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "photo_list"},
    {"GET", "/api/v1/photos/{id}", pv_h_photo_get, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "photo_get"},
    {"DELETE", "/api/v1/photos/{id}", pv_h_photo_delete, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "photo_delete"},
    {"GET", "/api/v1/photos/{id}/content", pv_h_photo_content, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "photo_content"},
    {"GET", "/api/v1/photos/{id}/thumbnail", pv_h_photo_thumbnail, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "photo_thumbnail"},
    {"GET", "/media/photos/{id}/{what}", pv_h_media_photo, PV_AUTH_SIGNED, PV_BODY_NONE, 0, PUB, "media_photo"},
    {"POST", "/api/v1/videos", pv_h_video_create, PV_AUTH_BEARER, PV_BODY_MEMORY, 0, PUB, "video_create"},
    {"GET", "/api/v1/videos", pv_h_video_list, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "video_list"},
    {"GET", "/api/v1/videos/{id}", pv_h_video_get, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "video_get"},
    {"DELETE", "/api/v1/videos/{id}", pv_h_video_delete, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "video_delete"},
    {"POST", "/api/v1/videos/{id}/cancel", pv_h_video_cancel, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "video_cancel"},
    {"GET", "/api/v1/videos/{id}/events", pv_h_video_events, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "video_events"},
    {"POST", "/api/v1/videos/{id}/shares", pv_h_share_create, PV_AUTH_BEARER, PV_BODY_MEMORY, 0, PUB, "share_create"},
    {"GET", "/api/v1/videos/{id}/shares", pv_h_share_list, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "share_list"},
    {"DELETE", "/api/v1/videos/{id}/shares/{share_id}", pv_h_share_revoke, PV_AUTH_BEARER, PV_BODY_NONE, 0, PUB, "share_revoke"},
    {"GET", "/s/{token}", pv_h_share_page, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB, "share_page"},
    {"POST", "/s/{token}", pv_h_share_unlock, PV_AUTH_NONE, PV_BODY_MEMORY, 4096, PUB, "share_unlock"},
    {"GET", "/s/{token}/{what}", pv_h_share_media, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB, "share_media"},
    {"GET", "/media/videos/{id}/{what}", pv_h_media_video, PV_AUTH_SIGNED, PV_BODY_NONE, 0, PUB, "media_video"},
    /* the web UI (actors/api/web.c): the page at its client-side routes, and assets */
    {"GET", "/", pv_h_web_index, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB, "web_index"},
    {"GET", "/photos", pv_h_web_index, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB, "web_index"},
    {"GET", "/videos", pv_h_web_index, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB, "web_index"},
    {"GET", "/login", pv_h_web_index, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB, "web_index"},
    {"GET", "/assets/{name}", pv_h_web_asset, PV_AUTH_NONE, PV_BODY_NONE, 0, PUB, "web_asset"},
    {NULL, NULL, NULL, 0, 0, 0, 0, NULL},
};
