/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the PROXY protocol parser (src/net/proxy_proto.c): any input is safe, a
 * complete header never names a length past the input, and no prefix of an input answers
 * other than "more" or what the whole answers (the property the listener relies on when a
 * header arrives in pieces). Built by `make fuzz-build` with the others; run with
 * tests/fuzz/run.sh proxy_proto (docs/testing.md, "Fuzzing and sanitizers").
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "net/proxy_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pt_pp_result r, pr;
    enum pt_pp_rc rc = pt_pp_parse(data, size, &r);

    if (rc == PT_PP_DONE && (r.len == 0 || r.len > size))
        abort();
    for (size_t k = 0; k < size && k < 256; k++) {
        enum pt_pp_rc prc = pt_pp_parse(data, k, &pr);

        if (prc == PT_PP_MORE)
            continue;
        if (prc != rc || (rc == PT_PP_DONE && pr.len != r.len))
            abort();
    }
    return 0;
}
