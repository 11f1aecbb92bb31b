/*
 * fuzz_web.c — libFuzzer target for what reaches actors/web.c from the
 * network: the Accept-Encoding header and the {name} of /assets/{name}.
 * Both parsers must accept any bytes without reading out of bounds, and a
 * name they accept must be one that cannot leave the assets directory.
 */
#include "../../actors/api/web.c"

#include <assert.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    (void)accepts_gzip(s);
    if (name_ok(s)) {
        assert(!strchr(s, '/') && s[0] != '.' && strlen(s) <= 128);
        (void)name_hashed(s);
        (void)web_type(s);
    }
    free(s);
    return 0;
}
