/* SPDX-License-Identifier: MIT */
/* Fuzz target: the configuration loader (pt_conf_load_string): tokenizer, directive tables of
 * the core and the modules, validation, the snapshot's release. A configuration is trusted
 * input, but `portico -t` is how operators check untrusted edits, so no text may crash it,
 * hang it or leak. Access log paths open /dev/null and hosts resolve only when numeric (see
 * fuzz_glue.c). Input: the configuration text (cut at the first NUL byte). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);

    memcpy(text, data, size);
    text[size] = '\0';
    fz_conf_check(text);
    free(text);
    return 0;
}
