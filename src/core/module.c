/* SPDX-License-Identifier: MIT */
/* Module registry built from the configure-generated list; registration cannot fail except on
 * an ABI mismatch. */
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/conf-t.h"
#include "core/module.h"

#define PT_MODULE(n) extern struct pt_module pt_module_##n;
#include "core/modules.h"
#undef PT_MODULE

#define PT_MODULE(n) &pt_module_##n,
struct pt_module *const pt_modules[] = {
#include "core/modules.h"
    NULL,
};
#undef PT_MODULE

int
pt_modules_init(void)
{
    unsigned i;

    for (i = 0; pt_modules[i] != NULL; i++) {
        if (pt_modules[i]->abi != PT_MODULE_ABI) {
            fprintf(stderr, "portico: module %s has ABI %u, expected %u\n", pt_modules[i]->name,
                    pt_modules[i]->abi, PT_MODULE_ABI);
            return PT_ERR;
        }
        pt_modules[i]->_index = i;
    }
    if (i > PT_MODULES_MAX) {
        fprintf(stderr, "portico: too many modules (%u > %d)\n", i, PT_MODULES_MAX);
        return PT_ERR;
    }
    return PT_OK;
}

const struct pt_module *
pt_module_find(const char *name, enum pt_module_kind kind)
{
    for (unsigned i = 0; pt_modules[i] != NULL; i++) {
        const struct pt_module *m = pt_modules[i];
        const char *n = m->name;

        /* lb modules are named lb_<policy>; the policy name is what users write */
        if (kind == PT_MODULE_LB && strncmp(n, "lb_", 3) == 0)
            n += 3;
        if (m->kind == kind && strcmp(n, name) == 0)
            return m;
    }
    return NULL;
}
