/* SPDX-License-Identifier: MIT */
/* The HTTP subsystem's registration with the core (see http.c). */
#ifndef PT_HTTP_H
#define PT_HTTP_H

#include "core/module-t.h"

extern struct pt_module pt_module_http;

#endif
