/*
 * test_pg.c — the PostgreSQL replicator's pure parts (actors/pg.c, included
 * so its static functions can be tested): records as JSON rows for
 * jsonb_populate_recordset, column by column as schema/records.json maps
 * them; the statements built from the generated column table; where from
 * a DSN. The database side is in tests/integration/test_sync_pg.py.
 */
#include "../../actors/pg.c"
#include "t.h"

static const pg_table_t *table(const char *kind)
{
    for (int i = 0; i < N_TABLES; i++)
        if (!strcmp(pg_tables[i].kind, kind))
            return &pg_tables[i];
    return NULL;
}

static json_t *one_row(const char *kind, const char *rec, size_t len, uint64_t seq)
{
    json_t *rows = json_array();
    char err[300] = "";
    int rc = row_json(table(kind), rec, len, seq, rows, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "  row_json: %s\n", err);
    json_t *row = rc == 0 ? json_incref(json_array_get(rows, 0)) : NULL;
    json_decref(rows);
    return row;
}

static const char *s_of(json_t *row, const char *col)
{
    return json_string_value(json_object_get(row, col));
}

TEST(tables_from_schema)
{
    CHECK(table("user") && table("photo") && table("video"));
    CHECK(!table("token")); /* not replicated */
    CHECK_EQ_STR(table("user")->table, "pv_users");
    CHECK_EQ_INT(table("photo")->id_off, 16);
    for (int i = 0; i < table("user")->n_cols; i++)
        CHECK(strcmp(table("user")->cols[i].name, "pw_hash") != 0);
}

TEST(user_row)
{
    pv_user_t u = {.v = 1, .created_ms = 1700000000123LL, .disabled = true};
    memset(u.id, 0xab, 16);
    snprintf(u.email, sizeof(u.email), "a@example.test");
    snprintf(u.pw_hash, sizeof(u.pw_hash), "$argon2id$secret");
    char *rec;
    size_t len;
    CHECK_EQ_INT(pv_user_encode(&u, &rec, &len), 0);
    json_t *row = one_row("user", rec, len, 42);
    CHECK(row != NULL);
    CHECK_EQ_STR(s_of(row, "id"), "abababab-abab-abab-abab-abababababab");
    CHECK_EQ_STR(s_of(row, "email"), "a@example.test");
    CHECK_EQ_STR(s_of(row, "created_at"), "2023-11-14T22:13:20.123Z");
    CHECK(json_is_true(json_object_get(row, "disabled")));
    CHECK_EQ_INT(json_integer_value(json_object_get(row, "seq")), 42);
    CHECK(!json_object_get(row, "pw_hash"));
    char *dump = json_dumps(row, 0);
    CHECK(dump && !strstr(dump, "argon2id"));
    free(dump);
    json_decref(row);
    free(rec);
}

TEST(photo_row)
{
    pv_photo_t p = {.v = 1, .bytes = 1234, .width = 640, .height = 480, .orientation = 6,
                    .taken_ms = PV_TIME_NONE, .created_ms = -1}; /* before the epoch */
    memset(p.id, 1, 16);
    memset(p.user_id, 2, 16);
    memset(p.sha256, 0xcd, 32);
    snprintf(p.content_type, sizeof(p.content_type), "image/jpeg");
    snprintf(p.filename, sizeof(p.filename), "é \"q\".jpg");
    char *rec;
    size_t len;
    CHECK_EQ_INT(pv_photo_encode(&p, &rec, &len), 0);
    json_t *row = one_row("photo", rec, len, 7);
    CHECK(row != NULL);
    CHECK_EQ_STR(s_of(row, "user_id"), "02020202-0202-0202-0202-020202020202");
    CHECK_EQ_STR(s_of(row, "filename"), "é \"q\".jpg");
    CHECK(json_is_null(json_object_get(row, "taken_at")));     /* nil time: NULL */
    CHECK(json_is_null(json_object_get(row, "thumb_sha256"))); /* nullable, unset */
    CHECK_EQ_STR(s_of(row, "created_at"), "1969-12-31T23:59:59.999Z");
    CHECK_EQ_INT(json_integer_value(json_object_get(row, "orientation")), 6);
    CHECK_EQ_INT(json_integer_value(json_object_get(row, "bytes")), 1234);
    const char *sha = s_of(row, "sha256");
    CHECK(sha && strlen(sha) == 66 && !strncmp(sha, "\\xcdcd", 6));
    json_decref(row);
    free(rec);
}

TEST(video_row)
{
    uint8_t ids[2][16];
    memset(ids[0], 3, 16);
    memset(ids[1], 4, 16);
    pv_video_t v = {.v = 1, .status = PV_VIDEO_RUNNING, .progress = 0.25, .n_photos = 2,
                    .photo_ids = ids, .created_ms = 1000, .started_ms = 2000,
                    .finished_ms = PV_TIME_NONE};
    memset(v.id, 5, 16);
    memset(v.user_id, 6, 16);
    v.opts.seconds_per_photo = 3;
    v.opts.fps = 30;
    snprintf(v.opts.resolution, sizeof(v.opts.resolution), "1080p");
    char *rec;
    size_t len;
    CHECK_EQ_INT(pv_video_encode(&v, &rec, &len), 0);
    json_t *row = one_row("video", rec, len, 9);
    CHECK(row != NULL);
    CHECK_EQ_STR(s_of(row, "status"), "running");
    CHECK(json_real_value(json_object_get(row, "progress")) == 0.25);
    CHECK(json_is_null(json_object_get(row, "error"))); /* empty: NULL */
    CHECK(json_is_null(json_object_get(row, "finished_at")));
    json_t *pids = json_object_get(row, "photo_ids");
    CHECK(json_array_size(pids) == 2);
    CHECK_EQ_STR(json_string_value(json_array_get(pids, 1)), "04040404-0404-0404-0404-040404040404");
    json_t *opts = json_object_get(row, "opts");
    CHECK(json_is_object(opts));
    CHECK_EQ_STR(json_string_value(json_object_get(opts, "resolution")), "1080p");
    CHECK_EQ_INT(json_integer_value(json_object_get(opts, "fps")), 30);
    json_decref(row);
    free(rec);
}

TEST(copy_lines)
{
    json_t *row = json_pack("{s:s,s:s,s:I,s:s,s:s,s:f,s:s,s:o,s:s,s:[s,s],s:{s:s,s:i},s:s,s:b}",
                            "id", "05050505-0505-0505-0505-050505050505", "user_id",
                            "06060606-0606-0606-0606-060606060606", "v", (json_int_t)1, "status",
                            "failed", "title", "tab\there\nnew \\ line", "progress", 0.5,
                            "created_at", "1970-01-01T00:00:01.000Z", "error", json_null(),
                            "sha256", "\\xabcd", "photo_ids",
                            "03030303-0303-0303-0303-030303030303",
                            "04040404-0404-0404-0404-040404040404", "opts", "aspect", "16:9\t",
                            "fps", 30, "started_at", "1970-01-01T00:00:02.000Z", "seq", 1);
    json_object_set_new(row, "seq", json_integer(77));
    sbuf_t b = {0};
    copy_line(&b, table("video"), row);
    char *line = sb_take(&b);
    CHECK(line != NULL);
    CHECK(strstr(line, "05050505-0505-0505-0505-050505050505\t06060606-") == line);
    CHECK(strstr(line, "\tfailed\t0.5\t\\N\ttab\\there\\nnew \\\\ line\t") != NULL);
    CHECK(strstr(line, "\t{03030303-0303-0303-0303-030303030303,04040404-0404-0404-0404-040404040404}\t") != NULL);
    CHECK(strstr(line, "\\\\xabcd") != NULL);              /* bytea's backslash, escaped */
    CHECK(strstr(line, "\\t\"") != NULL || strstr(line, "16:9\\\\t") != NULL); /* jsonb escaped */
    CHECK(strstr(line, "\t77\n") != NULL && line[strlen(line) - 1] == '\n');
    int tabs = 0;
    for (char *p = line; *p; p++)
        tabs += *p == '\t';
    CHECK_EQ_INT(tabs, table("video")->n_cols - 1);
    free(line);
    json_decref(row);
}

TEST(bad_records)
{
    json_t *rows = json_array();
    char err[300];
    CHECK_EQ_INT(row_json(table("photo"), "\x93\x01\x02\x03", 4, 1, rows, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "not a msgpack map") != NULL);
    CHECK_EQ_INT(row_json(table("photo"), "\xdf\xff\xff\xff\xff", 5, 1, rows, err, sizeof(err)), -EINVAL);
    /* an id that is not 16 bytes */
    static const char rec[] = "\x81\xa2id\xc4\x03\x01\x02\x03";
    CHECK_EQ_INT(row_json(table("user"), rec, sizeof(rec) - 1, 1, rows, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "pv_users id") != NULL);
    CHECK_EQ_INT((int)json_array_size(rows), 0);
    json_decref(rows);
}

TEST(statements)
{
    char *up = upsert_sql(table("video"), true), *load = copy_sql(table("video"));
    char *del = delete_sql(table("photo")), *mig = migrate_sql();
    CHECK(up && load && del && mig);
    CHECK(strstr(up, "INSERT INTO pv_videos AS t (id, user_id, v, status, progress") == up);
    CHECK(strstr(up, "ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id") != NULL);
    CHECK(strstr(up, " id = EXCLUDED.id") == NULL); /* the key is not SET */
    CHECK(strstr(up, "WHERE EXCLUDED.seq > t.seq") != NULL);
    CHECK(strstr(load, "COPY pv_videos (id, user_id, v, status,") == load);
    CHECK(strstr(load, ", seq) FROM STDIN") != NULL);
    CHECK(strstr(del, "t.seq < d.seq") != NULL);
    /* every column of every table, added when missing; the indexes */
    for (int i = 0; i < N_TABLES; i++)
        for (int j = 1; j < pg_tables[i].n_cols; j++) {
            char want[200];
            snprintf(want, sizeof(want), "ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s",
                     pg_tables[i].table, pg_tables[i].cols[j].name, pg_tables[i].cols[j].type);
            CHECK(strstr(mig, want) != NULL);
        }
    CHECK(strstr(mig, "CREATE UNIQUE INDEX IF NOT EXISTS pv_users_email_key") != NULL);
    CHECK(strstr(mig, "CREATE INDEX IF NOT EXISTS pv_photos_user_id_idx") != NULL);
    CHECK(strstr(mig, "ADD COLUMN IF NOT EXISTS thumb_sha256 bytea;") != NULL); /* nullable */
    free(up);
    free(load);
    free(del);
    free(mig);
}

TEST(where)
{
    char w[400];
    CHECK_EQ_INT(pv_pg_where("host=db.example.com port=5433 dbname=pv user=u password=s3cret", w,
                             sizeof(w)), 0);
    CHECK_EQ_STR(w, "pg://db.example.com:5433/pv");
    CHECK_EQ_INT(pv_pg_where("postgresql://u:s3cret@db/pv2?sslmode=verify-full", w, sizeof(w)), 0);
    CHECK_EQ_STR(w, "pg://db/pv2");
    CHECK_EQ_INT(pv_pg_where("host=x bogus=1", w, sizeof(w)), -EINVAL);
    CHECK(strstr(w, "bogus") != NULL);
    CHECK_EQ_INT(pv_pg_where("host='unterminated", w, sizeof(w)), -EINVAL);
    /* which host is looked up on the pool before a connect */
    char h[256];
    CHECK_EQ_INT(pg_parse("host=db.example.com dbname=pv", w, sizeof(w), h, sizeof(h)), 0);
    CHECK_EQ_STR(h, "db.example.com");
    CHECK_EQ_INT(pg_parse("postgresql://u@db2.example.com/pv", w, sizeof(w), h, sizeof(h)), 0);
    CHECK_EQ_STR(h, "db2.example.com");
    static const char *const none[] = {
        "host=127.0.0.1", "host=::1", "host=/var/run/postgresql", "host=a,b",
        "host=db.example.com hostaddr=10.0.0.1", "dbname=pv",
    };
    for (size_t i = 0; i < PV_ARRAY_LEN(none); i++) {
        CHECK_EQ_INT(pg_parse(none[i], w, sizeof(w), h, sizeof(h)), 0);
        CHECK_EQ_STR(h, "");
    }
}

int main(void)
{
    RUN(tables_from_schema);
    RUN(user_row);
    RUN(photo_row);
    RUN(video_row);
    RUN(copy_lines);
    RUN(bad_records);
    RUN(statements);
    RUN(where);
    return t_done("pg");
}
