/* SPDX-License-Identifier: MIT */
/* Variables and templates (vars-t.h): compiled at load, evaluated on the exchange.
 *
 * For other features (limits, access rules, log formats), the whole API is:
 *
 *     struct pt_tpl key;                                      at load, in a directive setter
 *     pt_tpl_compile(cx, 1, cx->args[1], PT_TPL_ALLOW_BINARY, &key);
 *     char buf[256];                                          per request, no allocation
 *     ssize_t n = pt_tpl_eval_buf(x, &key, buf, sizeof(buf));
 *
 * A single variable ("$binary_remote_addr") is a template of one part. */
#ifndef PT_VARS_H
#define PT_VARS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/conf-t.h"
#include "http/vars-t.h"

struct pt_exchange;

/* What a use of a template accepts beyond the plain variables (pt_tpl_compile's `allow`). */
enum pt_tpl_allow {
    PT_TPL_ALLOW_BINARY = 1u << 0,   /* $binary_remote_addr: keys */
    PT_TPL_ALLOW_RESPONSE = 1u << 1, /* $status, $upstream_addr: response headers, logs */
    PT_TPL_NO_CONTROLS = 1u << 2,    /* the literal text may not hold control characters
                                      * (header values: CR, LF, NUL...; HTAB is allowed) */
    PT_TPL_URI_TEXT = 1u << 3,       /* the literal text is part of a URI: no space or control */
};

/* Compiles `text` (argument argi of the directive being set, for error positions) into *out,
 * in the snapshot arena. `$name` and `${name}` are variables; `$` followed by anything else is
 * a literal `$`. An unknown variable, one the use does not allow, or a forbidden literal
 * character is reported at its file:line:col; returns PT_ERR then. Main thread, at load. */
int pt_tpl_compile(struct pt_conf_ctx *cx, unsigned argi, const char *text, unsigned allow,
                   struct pt_tpl *out);
/* True when t has no variable (its value is t->text). */
bool pt_tpl_is_const(const struct pt_tpl *t);
/* Looks up a variable by name (without '$'): its id, or PT_VAR_NONE. Prefixed names
 * ($http_, $arg_, $cookie_) return their id; *arg then points at what follows the prefix. */
enum pt_var_id pt_var_lookup(const char *name, size_t len, const char **arg, size_t *arg_len);
/* The flags of a variable (enum pt_var_flag). */
unsigned pt_var_flags(enum pt_var_id id);

/* The value of one variable part for x: *v, *len (not NUL-terminated). The value may live in
 * the exchange (arena, headers), in the snapshot, or in `scratch` (numbers), so use it before
 * scratch goes. An unset variable ($http_ of an absent field, $ssl_* in cleartext) is "".
 * Returns false only when memory ran out. Worker thread. */
bool pt_var_get(struct pt_exchange *x, const struct pt_tpl_part *p, const char **v, size_t *len,
                char scratch[PT_VAR_SCRATCH]);
/* Evaluates t for x: *out, *len, NUL-terminated. A constant template or one made of a single
 * variable that needs no escaping costs no allocation; otherwise the value is built in the
 * exchange arena. PT_OK, or PT_ERR when out of memory. Worker thread. */
int pt_tpl_eval(struct pt_exchange *x, const struct pt_tpl *t, enum pt_tpl_mode mode,
                const char **out, size_t *len);
/* Evaluates t into buf (cap bytes; not NUL-terminated), without escaping and without any
 * allocation unless a variable itself needs one ($http_ of a repeated field). Returns the
 * length, or -1 when the value does not fit (or memory ran out). For keys. */
ssize_t pt_tpl_eval_buf(struct pt_exchange *x, const struct pt_tpl *t, char *buf, size_t cap);
/* True when v holds a byte a header field value must not carry (RFC 9110 section 5.5: CTL
 * other than HTAB, and DEL); NUL, CR and LF are among them. */
bool pt_field_value_unsafe(const char *v, size_t len);

#endif
