/*
 * config.h — pvd's configuration: one table of keys (src/config.c) drives
 * the file parser, the environment overrides (PV_<KEY>), the command-line
 * flags, `--check-config`, `pvctl config show` and the documentation.
 *
 * Precedence: built-in default < config file < environment < flags.
 */
#ifndef PV_CONFIG_H
#define PV_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PV_DEFAULT_CONFIG "/etc/pv/pvd.conf"
/* The one limit on a JSON request body: max_json_bytes may not exceed it,
 * and the JSON parser takes no more. */
#define PV_JSON_MAX_BYTES 65536

typedef struct pv_config {
    char data_dir[PATH_MAX];        /* store, blobs, keys, tls */
    char https_listen[128];         /* public TLS listener ADDR:PORT */
    char http_listen[128];          /* private plain listener ADDR:PORT */
    bool http_redirect;             /* it answers health checks only and
                                       redirects the rest to HTTPS */
    char admin_socket[PATH_MAX];    /* pvctl's Unix socket */
    char admin_group[64];           /* group allowed on the socket, or "" */
    char backup_dir[PATH_MAX];      /* the only place pvctl backup writes */
    char tls_cert[PATH_MAX];        /* PEM certificate chain */
    char tls_key[PATH_MAX];         /* PEM private key */
    int access_token_ttl;           /* seconds */
    int refresh_token_ttl;          /* seconds */
    int presign_ttl;                /* seconds */
    int share_max_days;             /* longest a share link may live */
    int login_account_burst;        /* login attempts per account ... */
    double login_account_per_minute;/* ... refilled at this rate */
    int login_ip_burst;             /* login attempts per address ... */
    double login_ip_per_minute;     /* ... refilled at this rate */
    char signup[16];                /* open, invite, closed */
    int signup_ip_burst;            /* sign-ups per address ... */
    double signup_ip_per_minute;    /* ... refilled at this rate */
    int hash_queue;                 /* hashes waiting per priority before 503 */
    uint64_t max_photo_pixels;      /* largest photo, declared or decoded */
    uint64_t decode_memory;         /* all photo decodes together, bytes */
    int max_video_seconds;          /* one video's length */
    int max_video_frames;           /* one video's frames (seconds x fps) */
    int user_running_jobs;          /* renders running, per user */
    int user_queued_jobs;           /* videos queued or rendering, per user */
    uint64_t user_storage_bytes;    /* photos + videos per user (0: no limit) */
    uint64_t max_upload_bytes;      /* one upload request body */
    uint64_t max_json_bytes;        /* one JSON request body */
    uint64_t map_size;              /* initial LMDB map size */
    uint64_t map_max;               /* grow the map up to this (0: never) */
    int loops;                      /* HTTP event loops */
    int workers;                    /* worker threads for blocking work */
    int render_workers;             /* render threads */
    int render_open_jobs;           /* renders started at once (time-shared) */
    char log_level[16];             /* debug, info, warn, error */
    int idle_timeout;               /* keep-alive idle, seconds */
    int read_timeout;               /* slow client sending, seconds */
    int write_timeout;              /* slow client reading, seconds */
    int header_timeout;             /* a whole request head, seconds */
    int body_timeout;               /* a body's grace, seconds ... */
    uint64_t body_min_rate;         /* ... then bytes/s it must average */
    char trusted_proxies[256];      /* addresses whose X-Forwarded-For counts */
    int max_connections;            /* public listener, in all (0: from the fd limit) */
    int max_connections_per_ip;     /* public listener, from one address (/64) */
    int max_private_connections;    /* private listener, in all */
    int changelog_trim_seconds;     /* how often the change log is trimmed */
    uint64_t changelog_alarm_bytes; /* warn past this much untrimmed log */
    char s3_bucket[64];             /* replicate to this bucket ("": no cloud) */
    char s3_prefix[256];            /* key prefix in it */
    char s3_region[32];             /* "": the AWS config's, else us-east-1 */
    char s3_endpoint[256];          /* "": AWS; else an S3-compatible URL */
    bool s3_path_style;             /* ENDPOINT/BUCKET/KEY */
    bool media_from_s3;             /* links to replicated blobs point at S3 */
    char aws_profile[64];           /* shared files' profile */
    char aws_imds_endpoint[256];    /* EC2 instance metadata; "" or "off": none */
    char pg_dsn[1024];              /* libpq connection string ("": no PostgreSQL) */
    int sync_interval;              /* seconds between passes when caught up */
    int sync_batch;                 /* entries per segment */
    uint64_t s3_multipart_threshold; /* larger files go up in parts */
    uint64_t s3_part_size;          /* the parts' size */
    char dynamodb_table[256];       /* mirror video status there ("": no DynamoDB) */
    char dynamodb_endpoint[256];    /* "": AWS's regional endpoint */
    char dynamodb_region[32];       /* "": s3_region, the AWS config's, us-east-1 */
    bool dynamodb_create;           /* make the table when it is missing */
    int snapshot_interval;          /* seconds between S3 snapshots */
    int snapshot_retention;         /* snapshots kept */
    char web_root[PATH_MAX];        /* the built web UI, or "" for the default */
} pv_config_t;

/* Fill built-in defaults. */
void pv_config_defaults(pv_config_t *c);
/* Apply one key=value; -EINVAL (err says why) for an unknown key or bad value. */
int pv_config_set(pv_config_t *c, const char *key, const char *value,
                  char *err, size_t errlen);
/* Parse a file of `key = value` lines (# comments). -ENOENT if missing. */
int pv_config_load_file(pv_config_t *c, const char *path, char *err,
                        size_t errlen);
/* Apply PV_<KEY> environment variables. */
int pv_config_load_env(pv_config_t *c, char *err, size_t errlen);
/* Fill paths that default to places under data_dir; check consistency. */
int pv_config_finish(pv_config_t *c, char *err, size_t errlen);
/* Who may sign up (the `signup` key). */
enum pv_signup_mode { PV_SIGNUP_OPEN, PV_SIGNUP_INVITE, PV_SIGNUP_CLOSED };
int pv_config_signup_mode(const pv_config_t *c); /* or -EINVAL */
/* key = value lines of the effective config (malloc'd, free()). */
char *pv_config_dump(const pv_config_t *c);

/* The table, for docs and pvctl. */
typedef struct pv_config_key {
    const char *name;   /* file key; env is PV_ + upper case */
    int type;           /* internal */
    size_t offset;      /* into pv_config_t */
    size_t size;        /* for strings */
    const char *def;    /* default as text ("" for derived) */
    const char *help;   /* one line */
} pv_config_key_t;
const pv_config_key_t *pv_config_keys(size_t *n);

#endif
