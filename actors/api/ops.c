/*
 * ops.c — the operational endpoints: /healthz (the process answers),
 * /readyz (started and not stopping) and /metrics (private listener).
 */
#include "actors/api/api.h"
#include "app/kit.h"
#include "app/metrics.h"
#include "base/pv.h"

void pv_h_healthz(pv_http_req_t *req)
{
    pv_http_respond(req, 200, "text/plain; charset=utf-8", "ok\n", 3);
}

void pv_h_readyz(pv_http_req_t *req)
{
    pv_app_t *app = pv_api_app(req);
    if (atomic_load(&app->ready) && !atomic_load(&app->stopping))
        pv_http_respond(req, 200, "text/plain; charset=utf-8", "ready\n", 6);
    else
        pv_http_respond(req, 503, "text/plain; charset=utf-8", "not ready\n", 10);
}

void pv_h_metrics(pv_http_req_t *req)
{
    pv_app_t *app = pv_api_app(req);
    pv_sb_t o = {0};
    pv_metrics_text(&o, app->metrics, app->store, app->started_ms);
    if (o.failed)
        pv_api_fail(req, -ENOMEM);
    else
        pv_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", o.p, o.len);
    pv_sb_free(&o);
}
