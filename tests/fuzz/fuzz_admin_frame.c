/*
 * fuzz_admin_frame.c — libFuzzer target for what reaches pvd through the
 * admin socket: a stream of length-prefixed frames, each one msgpack
 * request validated against the command table (src/admin_proto.c).
 *
 * Input: the bytes a client writes. They are split into frames as pvd
 * splits them; each payload goes through pv_admin_request_parse (the
 * daemon's path) and pv_admin_unpack (pvctl's path for answers). Checks:
 * results are only 0 or -EINVAL; a value that unpacks packs again and
 * unpacks to an equal value; an accepted request names a command from the
 * table with args that pass the table's own check.
 * A second use of the same bytes: split on NUL as a pvctl command line.
 */
#include "base/admin_proto.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_payload(const uint8_t *p, size_t n)
{
    json_t *req = NULL, *args = NULL;
    const pv_admin_cmd_t *cmd = NULL;
    pv_admin_err_t e = {"", ""};
    int rc = pv_admin_request_parse(p, n, &req, &cmd, &args, &e);
    if (rc != 0 && rc != -EINVAL && rc != -ENOMEM)
        abort();
    if (rc == 0) {
        if (!cmd || !json_is_object(args) || pv_admin_args_check(cmd, args, &e) != 0)
            abort();
        json_decref(req);
    } else if (!e.code[0] || !e.message[0]) {
        abort();
    }

    json_t *v = NULL;
    rc = pv_admin_unpack(p, n, SIZE_MAX, &v);
    if (rc != 0 && rc != -EINVAL && rc != -ENOMEM)
        abort();
    if (rc != 0)
        return;
    char *buf;
    size_t len;
    if (pv_admin_frame_pack(v, PV_ADMIN_RESP_MAX, &buf, &len) == 0) {
        json_t *w = NULL;
        if (pv_admin_unpack(buf + PV_ADMIN_HDR, len - PV_ADMIN_HDR, SIZE_MAX, &w) != 0 ||
            !json_equal(v, w))
            abort();
        json_decref(w);
        free(buf);
    }
    bool ok;
    json_t *result;
    const char *code, *msg;
    pv_admin_answer_parse(v, &ok, &result, &code, &msg);
    json_decref(v);
}

static void check_argv(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (!copy)
        return;
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *argv[16];
    int argc = 0;
    for (char *p = copy; p < copy + size + 1 && argc < 16; p += strlen(p) + 1)
        argv[argc++] = p;
    const pv_admin_cmd_t *cmd;
    json_t *args;
    bool prompt;
    pv_admin_err_t e = {"", ""};
    if (pv_admin_argv(argc, argv, &cmd, &args, &prompt, &e) == 0)
        json_decref(args);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        long n = pv_admin_frame_check(data + off, size - off, PV_ADMIN_REQ_MAX);
        if (n == -EAGAIN) {
            /* A truncated last frame: pvd waits for more; still parse what
             * is there as if it were a payload (junk of any length). */
            check_payload(data + off, size - off);
            break;
        }
        if (n < 0) {
            if (n != -EMSGSIZE)
                abort();
            break; /* pvd answers too_large and closes */
        }
        check_payload(data + off + PV_ADMIN_HDR, (size_t)n);
        off += PV_ADMIN_HDR + (size_t)n;
    }
    if (size < 512)
        check_argv(data, size);
    return 0;
}
