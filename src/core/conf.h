/* SPDX-License-Identifier: MIT */
/* Configuration loading: tokenizer, parser driven by directive tables (core + modules),
 * validation, and the snapshot's lifetime. */
#ifndef PT_CONF_H
#define PT_CONF_H

#include <stdbool.h>
#include <stdio.h>

#include "core/conf-t.h"

/* Loads and validates a file. Every error is printed to errout (when not NULL) as
 * "file:line:col: message"; err receives the first. Returns a snapshot with one reference,
 * or NULL. Main thread. */
struct pt_conf *pt_conf_load(const char *path, FILE *errout, struct pt_err *err);
/* Same, from a string (unit tests); `name` stands for the file name in messages. */
struct pt_conf *pt_conf_load_string(const char *name, const char *text, FILE *errout,
                                    struct pt_err *err);
void pt_conf_ref(struct pt_conf *c);
/* Snapshots alive now: the current one and those that exchanges, connections or tunnels still
 * hold after a reload. Any thread. */
unsigned pt_conf_generations_live(void);
/* Drops a reference; the last one releases module resources and the arena. Any thread. */
void pt_conf_unref(struct pt_conf *c);

/* For directive setters: report an error at argument i (0 = the directive name). Returns PT_ERR. */
int pt_conf_error(struct pt_conf_ctx *cx, unsigned i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Reports an error at byte `off` of argument i, as the setter sees the argument (quotes
 * removed, escapes decoded): the column of a variable in a value, of a regex error. PT_ERR. */
int pt_conf_error_in(struct pt_conf_ctx *cx, unsigned i, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Compiles argument i as a regular expression (PCRE2; caseless for ~* and the like) that lives
 * as long as the snapshot. NULL after reporting the error at the offending character. */
struct pt_regex *pt_conf_regex(struct pt_conf_ctx *cx, unsigned i, bool caseless);
/* Reports an error at a position of the file being loaded (validation of a block recorded
 * earlier). Returns PT_ERR. */
int pt_conf_error_at(struct pt_conf_ctx *cx, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Reports something that works but is probably not what was meant, as
 * "file:line:col: warning: message"; the configuration still loads. Returns PT_OK. */
int pt_conf_warn_at(struct pt_conf_ctx *cx, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* "\"NAME\" directive is duplicate" at the directive. Returns PT_ERR. */
int pt_conf_duplicate(struct pt_conf_ctx *cx);
/* Errors reported so far. */
unsigned pt_conf_nerrors(const struct pt_conf_ctx *cx);
/* Opens a block from its directive's setter: the block's object and its module slots (the
 * modules' conf_create runs for the level), then parses the block's body. The parser restores
 * cx when the setter returns. Returns PT_OK or PT_ERR. */
int pt_conf_block_open(struct pt_conf_ctx *cx, unsigned level, void *block, void **slots);
/* Parses the body of a block just opened; the setter has already switched cx to the new level. */
int pt_conf_parse_block(struct pt_conf_ctx *cx);
/* The module slot array of the current level. */
void **pt_conf_mod_slots(struct pt_conf_ctx *cx);
/* Runs every module's conf_merge from a parent level's slots to a child's (parent NULL: the
 * main level, defaults). Called by whoever owns the child block, in its conf_validate. */
void pt_conf_modules_merge(struct pt_conf_ctx *cx, void **parent, void **child);
/* Appends item to an arena-allocated array of pointers (*arr, *n). PT_OK or PT_ERR. */
int pt_conf_push(struct pt_arena *a, void ***arr, unsigned *n, void *item);
#define PT_CONF_PUSH(a, arr, n, item) pt_conf_push((a), (void ***)(arr), (n), (item))
/* The listening address addr of protocol proto, shared by every block that listens there: made
 * on first use; an error (at argument argi) when it is already used by another protocol or
 * with another tls flag. NULL after reporting. */
struct pt_listen *pt_conf_listen(struct pt_conf_ctx *cx, unsigned argi, const struct pt_addr *addr,
                                 int tls, const struct pt_listen_proto *proto);

/* Generic setters; `offset` is relative to the directive's base, `arg` as noted. */
pt_directive_set_cb pt_set_flag;  /* on|off into int */
pt_directive_set_cb pt_set_msec;  /* time into pt_msec */
pt_directive_set_cb pt_set_size;  /* size into int64_t */
pt_directive_set_cb pt_set_count; /* integer into int64_t; arg: const int64_t *max or NULL */

/* Resolves "host:port", "[v6]:port" or (listen only) "port" / "*:port" to one address: the
 * first that getaddrinfo() returns. */
int pt_addr_parse(const char *s, int listen, struct pt_addr *out, struct pt_err *err);
/* Resolves "host:port" or "[v6]:port" to every address of host, IPv4 and IPv6, in
 * getaddrinfo()'s order, each once: *out (allocated from arena `a`) receives *n >= 1 of them.
 * *named is set when host is a name rather than an IP literal. PT_OK, or PT_ERR with err
 * filled. Main thread, at load (it may block on DNS). */
int pt_addr_resolve(const char *s, struct pt_arena *a, struct pt_addr **out, unsigned *n,
                    bool *named, struct pt_err *err);
/* Formats a sockaddr as "ip:port" / "[ip]:port". */
void pt_addr_format(const struct sockaddr *sa, char *buf, size_t len);
/* The IP of sa as text (IPv4-mapped IPv6 shown as IPv4) in buf; returns buf. */
const char *pt_addr_ip(const struct sockaddr *sa, char *buf, size_t len);
/* Returns 1 when the address is inside one of the blocks. */
int pt_cidr_match(const struct pt_cidr *c, int n, const struct sockaddr *sa);
int pt_cidr_parse(const char *s, struct pt_cidr *out);

#endif
