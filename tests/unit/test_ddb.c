/*
 * test_ddb.c — the DynamoDB replicator's pure parts: the item a video
 * becomes (against schema/records.json's "dynamodb" section, read here at
 * run time, so the generated table and the schema are checked against
 * each other), the conditional PutItem and DeleteItem bodies, how
 * DynamoDB's errors are sorted, and which endpoints the client takes.
 * actors/ddb.c is included (h2o's way) to reach its static functions.
 * The requests themselves meet dynalite in test_sync_ddb.py, and their
 * signatures botocore in sigv4_botocore.py.
 */
#include "../../actors/ddb.c"

#include "t.h"

#include <event2/event.h>

static json_t *schema(void)
{
    static const char *const paths[] = {"schema/records.json", "../schema/records.json",
                                        "../../schema/records.json"};
    for (size_t i = 0; i < PV_ARRAY_LEN(paths); i++) {
        json_t *doc = json_load_file(paths[i], 0, NULL);
        if (doc)
            return doc;
    }
    return NULL;
}

static void sample(pv_video_t *v)
{
    memset(v, 0, sizeof(*v));
    v->v = 1;
    pv_id_new(v->id);
    pv_id_new(v->user_id);
    v->status = PV_VIDEO_RUNNING;
    v->progress = 0.1;
    snprintf(v->title, sizeof(v->title), "Beach \"été\"\n");
    v->created_ms = 1796400006123LL; /* 2026-12-04T16:00:06.123Z */
    v->started_ms = 1796400007000LL;
    v->finished_ms = PV_TIME_NONE;
    v->duration_s = 1.0 / 3.0;
    v->width = 854;
    v->height = 480;
    v->bytes = 5000000000ULL;
}

static json_t *item_of(const pv_video_t *v, uint64_t seq)
{
    pv_sb_t sb = {0};
    put_item(&sb, v, seq);
    json_t *it = sb.failed ? NULL : json_loads(sb.p, 0, NULL);
    pv_sb_free(&sb);
    return it;
}

static const char *attr(json_t *it, const char *name, const char *type)
{
    return json_string_value(json_object_get(json_object_get(it, name), type));
}

TEST(item_has_the_schemas_attributes)
{
    json_t *doc = schema();
    CHECK(doc != NULL);
    json_t *d =
        json_object_get(json_object_get(json_object_get(doc, "records"), "video"), "dynamodb");
    CHECK_EQ_STR(json_string_value(json_object_get(d, "table")), PV_DDB_TABLE_DEFAULT);
    CHECK_EQ_STR(json_string_value(json_object_get(d, "partition_key")), PV_DDB_PARTITION_KEY);
    CHECK_EQ_STR(json_string_value(json_object_get(d, "sort_key")), PV_DDB_SORT_KEY);
    pv_video_t v;
    sample(&v);
    snprintf(v.error, sizeof(v.error), "disk full");
    v.finished_ms = 1796400008000LL;
    json_t *it = item_of(&v, 42);
    CHECK(it != NULL);
    json_t *attrs = json_object_get(d, "attributes");
    CHECK(json_array_size(attrs) > 5);
    /* every attribute the schema lists, with its type, and nothing else */
    for (size_t i = 0; i < json_array_size(attrs); i++) {
        json_t *a = json_array_get(attrs, i);
        const char *name = json_string_value(json_object_get(a, "name"));
        const char *type = json_string_value(json_object_get(a, "type"));
        if (!attr(it, name, type))
            printf("#   attribute %s (%s) missing\n", name, type);
        CHECK(attr(it, name, type) != NULL);
    }
    CHECK_EQ_INT(json_object_size(it), json_array_size(attrs));
    json_decref(it);
    json_decref(doc);
}

TEST(item_values_in_text_forms)
{
    pv_video_t v;
    sample(&v);
    json_t *it = item_of(&v, 1234567890123ULL);
    CHECK(it != NULL);
    char uid[PV_ID_TEXT], vid[PV_ID_TEXT], t[32];
    pv_id_encode(v.user_id, uid);
    pv_id_encode(v.id, vid);
    CHECK_EQ_STR(attr(it, "user_id", "S"), uid);
    CHECK_EQ_STR(attr(it, "video_id", "S"), vid);
    CHECK_EQ_INT(strlen(attr(it, "video_id", "S")), 26);
    CHECK_EQ_STR(attr(it, "status", "S"), "running");
    CHECK_EQ_STR(attr(it, "progress", "N"), "0.1");
    CHECK_EQ_STR(attr(it, "title", "S"), "Beach \"été\"\n"); /* escaped, read back */
    pv_time_format(v.created_ms, t);
    CHECK_EQ_STR(attr(it, "created_at", "S"), t);
    CHECK_EQ_STR(attr(it, "created_at", "S"), "2026-12-04T16:00:06.123Z");
    CHECK(json_object_get(it, "error") == NULL);       /* empty: absent */
    CHECK(json_object_get(it, "finished_at") == NULL); /* not set: absent */
    CHECK(attr(it, "started_at", "S") != NULL);
    CHECK_EQ_INT(strtod(attr(it, "duration_s", "N"), NULL) == v.duration_s, 1); /* round trip */
    CHECK_EQ_STR(attr(it, "width", "N"), "854");
    CHECK_EQ_STR(attr(it, "bytes", "N"), "5000000000");
    CHECK_EQ_STR(attr(it, "seq", "N"), "1234567890123");
    json_decref(it);
}

TEST(put_and_delete_carry_the_seq_condition)
{
    repl_t r = {0};
    snprintf(r.table, sizeof(r.table), "pv_video_status");
    pv_video_t v;
    sample(&v);
    char *rec = NULL, *body = NULL;
    size_t len = 0;
    CHECK_EQ_INT(pv_video_encode(&v, &rec, &len), 0);
    CHECK_EQ_INT(put_body(&r, rec, len, 77, &body), 0);
    json_t *put = body ? json_loads(body, 0, NULL) : NULL;
    CHECK(put != NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(put, "TableName")), "pv_video_status");
    CHECK_EQ_STR(json_string_value(json_object_get(put, "ConditionExpression")),
                 "attribute_not_exists(#q) OR #q < :q");
    CHECK_EQ_STR(
        json_string_value(json_object_get(json_object_get(put, "ExpressionAttributeNames"), "#q")),
        "seq");
    CHECK_EQ_STR(attr(json_object_get(put, "ExpressionAttributeValues"), ":q", "N"), "77");
    CHECK_EQ_STR(attr(json_object_get(put, "Item"), "seq", "N"), "77");
    json_decref(put);
    free(body);
    CHECK(put_body(&r, rec, len / 2, 77, &body) < 0); /* a cut record: refused */

    uint8_t key[32];
    memcpy(key, v.user_id, 16);
    memcpy(key + 16, v.id, 16);
    body = delete_body(&r, key, 78);
    json_t *del = body ? json_loads(body, 0, NULL) : NULL;
    CHECK(del != NULL);
    char uid[PV_ID_TEXT], vid[PV_ID_TEXT];
    pv_id_encode(v.user_id, uid);
    pv_id_encode(v.id, vid);
    json_t *k = json_object_get(del, "Key");
    CHECK_EQ_INT(json_object_size(k), 2);
    CHECK_EQ_STR(attr(k, "user_id", "S"), uid);
    CHECK_EQ_STR(attr(k, "video_id", "S"), vid);
    CHECK_EQ_STR(attr(json_object_get(del, "ExpressionAttributeValues"), ":q", "N"), "78");
    CHECK(json_object_get(del, "ConditionExpression") != NULL);
    json_decref(del);
    free(body);
    free(rec);
}

TEST(coalescing_keeps_the_last_entry_of_a_video)
{
    entry_t e[5] = {0};
    uint64_t seqs[5] = {5, 2, 9, 7, 3};
    int video[5] = {1, 0, 1, 0, 2};
    for (int i = 0; i < 5; i++) {
        memset(e[i].key, video[i], 32);
        e[i].seq = seqs[i];
    }
    qsort(e, 5, sizeof(*e), entry_cmp);
    uint64_t kept[5];
    int n = 0;
    for (int i = 0; i < 5; i++)
        if (i + 1 == 5 || memcmp(e[i].key, e[i + 1].key, 32) != 0)
            kept[n++] = e[i].seq;
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(kept[0], 7);
    CHECK_EQ_INT(kept[1], 9);
    CHECK_EQ_INT(kept[2], 3);
}

static void classify(long status, const char *body, pv_ddb_result_t *res)
{
    memset(res, 0, sizeof(*res));
    pv_ddb_classify(status, body, body ? strlen(body) : 0, res);
}

TEST(errors_are_sorted)
{
    pv_ddb_result_t r;
    classify(400,
             "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException\","
             "\"message\":\"The conditional request failed\"}",
             &r);
    CHECK_EQ_INT(r.rc, -EEXIST);
    CHECK_EQ_STR(r.type, "ConditionalCheckFailedException");
    CHECK_EQ_STR(r.message, "The conditional request failed");
    CHECK(!r.retryable);
    classify(
        400,
        "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException\"}",
        &r);
    CHECK_EQ_INT(r.rc, -EAGAIN);
    CHECK(r.retryable);
    classify(
        400,
        "{\"__type\":\"com.amazon.coral.availability#ThrottlingException\",\"Message\":\"slow\"}",
        &r);
    CHECK_EQ_INT(r.rc, -EAGAIN);
    CHECK_EQ_STR(r.message, "slow");
    classify(500, NULL, &r);
    CHECK_EQ_INT(r.rc, -EAGAIN);
    classify(503, "<html>", &r);
    CHECK_EQ_INT(r.rc, -EAGAIN);
    classify(400, "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException\"}",
             &r);
    CHECK_EQ_INT(r.rc, -ENOENT);
    classify(400, "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ResourceInUseException\"}", &r);
    CHECK_EQ_INT(r.rc, -EBUSY);
    classify(400, "{\"__type\":\"com.amazon.coral.service#UnrecognizedClientException\"}", &r);
    CHECK_EQ_INT(r.rc, -EACCES);
    classify(403, "", &r);
    CHECK_EQ_INT(r.rc, -EACCES);
    classify(400,
             "{\"__type\":\"com.amazon.coral.validate#ValidationException\",\"message\":\"bad\"}",
             &r);
    CHECK_EQ_INT(r.rc, -EINVAL);
    CHECK(!r.retryable);
    classify(400, "not json", &r);
    CHECK_EQ_INT(r.rc, -EINVAL);
    CHECK_EQ_STR(r.type, "");
}

TEST(endpoints)
{
    struct event_base *base = event_base_new();
    pv_curlev_t *http = NULL;
    CHECK_EQ_INT(pv_curlev_new(base, NULL, &http), 0);
    pv_aws_creds_t c = {0};
    snprintf(c.key_id, sizeof(c.key_id), "AKIDEXAMPLE");
    snprintf(c.secret, sizeof(c.secret), "secret");
    pv_ddb_t *d = NULL;
    pv_ddb_config_t cfg = {.endpoint = "http://127.0.0.1:8000", .region = "us-east-1"};
    CHECK_EQ_INT(pv_ddb_new(http, &cfg, &c, &d), 0);
    CHECK_EQ_STR(d ? pv_ddb_host(d) : NULL, "127.0.0.1:8000");
    pv_ddb_free(d);
    cfg.endpoint = "https://ddb.example/";
    CHECK_EQ_INT(pv_ddb_new(http, &cfg, &c, &d), 0);
    CHECK_EQ_STR(d ? pv_ddb_host(d) : NULL, "ddb.example");
    pv_ddb_free(d);
    cfg.endpoint = NULL;
    cfg.region = "eu-west-1";
    CHECK_EQ_INT(pv_ddb_new(http, &cfg, &c, &d), 0);
    CHECK_EQ_STR(d ? pv_ddb_host(d) : NULL, "dynamodb.eu-west-1.amazonaws.com");
    pv_ddb_free(d);
    const char *bad[] = {"ftp://h",    "http://",    "http://h/path",
                         "http://h?x", "http://u@h", "http://h h"};
    for (size_t i = 0; i < PV_ARRAY_LEN(bad); i++) {
        cfg.endpoint = bad[i];
        d = NULL;
        CHECK_EQ_INT(pv_ddb_new(http, &cfg, &c, &d), -EINVAL);
        CHECK(d == NULL);
    }
    cfg.endpoint = NULL;
    cfg.region = "";
    CHECK_EQ_INT(pv_ddb_new(http, &cfg, &c, &d), -EINVAL);
    cfg.region = "us-east-1";
    pv_aws_creds_t none = {0};
    CHECK_EQ_INT(pv_ddb_new(http, &cfg, &none, &d), -EINVAL);
    pv_curlev_free(http);
    event_base_free(base);
}

static void never_done(const pv_ddb_result_t *res, void *arg)
{
    (void)res;
    *(int *)arg += 1;
}

/* The failure seam: a call that cannot get its memory is refused at once
 * (-ENOMEM) and its done never runs; the next call is taken. */
TEST(call_without_memory)
{
    struct event_base *base = event_base_new();
    pv_curlev_t *http = NULL;
    CHECK_EQ_INT(pv_curlev_new(base, NULL, &http), 0);
    pv_aws_creds_t c = {0};
    snprintf(c.key_id, sizeof(c.key_id), "AKIDEXAMPLE");
    snprintf(c.secret, sizeof(c.secret), "secret");
    pv_ddb_t *d = NULL;
    pv_ddb_config_t cfg = {.endpoint = "http://127.0.0.1:9", .region = "us-east-1"};
    CHECK_EQ_INT(pv_ddb_new(http, &cfg, &c, &d), 0);
    int calls = 0;
    pv_fail_reset("ddb_req:1");
    CHECK_EQ_INT(pv_ddb_call(d, "DescribeTable", "{}", 2, never_done, &calls), -ENOMEM);
    CHECK_EQ_INT(pv_ddb_call(d, "DescribeTable", "{}", 2, never_done, &calls), 0);
    pv_fail_reset("");
    CHECK_EQ_INT(calls, 0);
    pv_ddb_free(d); /* the one taken ends, cancelled */
    CHECK_EQ_INT(calls, 1);
    pv_curlev_free(http);
    event_base_free(base);
}

int main(void)
{
    RUN(item_has_the_schemas_attributes);
    RUN(item_values_in_text_forms);
    RUN(put_and_delete_carry_the_seq_condition);
    RUN(coalescing_keeps_the_last_entry_of_a_video);
    RUN(errors_are_sorted);
    RUN(endpoints);
    RUN(call_without_memory);
    return t_done("ddb");
}
