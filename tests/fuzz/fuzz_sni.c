/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the ClientHello server_name parser (src/stream/sni.c), which reads bytes
 * straight from the network before anything else looks at them. Beyond "no crash, no
 * out-of-bounds read" (run with ASan/UBSan), it checks what routing relies on:
 *  - a name found is 1 to 255 printable lower-case ASCII bytes, NUL-terminated, *len its length;
 *  - answers are stable as bytes arrive: every prefix of the input answers "more" or what the
 *    whole answers (the same name when found), so a client sending byte by byte is routed like
 *    one sending all at once;
 *  - a name buffer of the minimum size is never overrun (a canary after it).
 * Self-contained: sni.c has no dependency, so it builds alone:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *       tests/fuzz/fuzz_sni.c src/stream/sni.c -o fuzz_sni
 *   ./fuzz_sni tests/fuzz/corpus/sni        (seeds: real ClientHellos, see docs/l4.md) */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stream/sni.h"

struct out {
    char name[PT_SNI_NAME_MAX + 1];
    char canary[8];
};

static enum pt_sni_rc
run(const uint8_t *p, size_t n, struct out *o)
{
    size_t len = 0;
    enum pt_sni_rc rc;

    memset(o->canary, 0x5a, sizeof(o->canary));
    rc = pt_sni_parse(p, n, o->name, sizeof(o->name), &len);
    for (size_t i = 0; i < sizeof(o->canary); i++)
        if (o->canary[i] != 0x5a)
            abort();
    if (rc == PT_SNI_FOUND) {
        if (len == 0 || len > PT_SNI_NAME_MAX || strlen(o->name) != len)
            abort();
        for (size_t i = 0; i < len; i++) {
            char c = o->name[i];

            if (c <= 0x20 || c >= 0x7f || (c >= 'A' && c <= 'Z'))
                abort();
        }
    } else if (len != 0) {
        abort();
    }
    return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct out whole, part;
    enum pt_sni_rc rc = run(data, size, &whole);
    /* a few prefixes, not all of them: quadratic work would slow the fuzzer down */
    size_t cuts[4] = {size / 2, size > 0 ? size - 1 : 0, size / 3, (size * 7) / 8};

    for (int i = 0; i < 4; i++) {
        enum pt_sni_rc prc = run(data, cuts[i], &part);

        if (prc == PT_SNI_MORE)
            continue;
        if (prc != rc || (prc == PT_SNI_FOUND && strcmp(part.name, whole.name) != 0))
            abort();
    }
    return 0;
}
