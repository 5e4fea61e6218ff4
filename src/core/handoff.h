/* SPDX-License-Identifier: MIT */
/* Writing and reading binary-upgrade handoff records (see handoff-t.h). Main thread only. */
#ifndef PT_HANDOFF_H
#define PT_HANDOFF_H

#include "core/common-t.h"
#include "core/handoff-t.h"

/* An empty queue sending on fd (non-blocking, SOCK_SEQPACKET). */
void pt_handoff_init(struct pt_handoff *h, int fd);
/* Frees what is still queued; fd is not closed. */
void pt_handoff_fini(struct pt_handoff *h);

/* Building one record: begin with its type, add fields and descriptors, end queues it.
 * A string field may hold any byte but NUL (it is escaped); a number is written in decimal; a
 * key=value field is how state records name their values, so that either side may add one.
 * pt_handoff_end returns PT_ERR, and queues nothing, when the record exceeded a limit
 * (PT_HANDOFF_REC_MAX bytes, PT_HANDOFF_FIELDS_MAX fields, PT_HANDOFF_FDS_MAX descriptors). */
void pt_handoff_begin(struct pt_handoff *h, const char *type);
void pt_handoff_str(struct pt_handoff *h, const char *s);
void pt_handoff_u64(struct pt_handoff *h, uint64_t v);
void pt_handoff_i64(struct pt_handoff *h, int64_t v);
void pt_handoff_kv(struct pt_handoff *h, const char *key, int64_t v);
void pt_handoff_fd(struct pt_handoff *h, int fd);
int pt_handoff_end(struct pt_handoff *h);

/* Sends what is queued: PT_OK when everything went, PT_AGAIN when a non-blocking socket is
 * full (call again once writable), PT_DONE when the peer is gone (its process exited), PT_ERR
 * with err filled otherwise. On a blocking socket it returns when everything went. */
int pt_handoff_flush(struct pt_handoff *h, struct pt_err *err);
/* True while records wait to be sent. */
bool pt_handoff_pending(const struct pt_handoff *h);

/* Receives one record from fd: PT_OK (r filled), PT_DONE (the peer closed or exited),
 * PT_AGAIN (nothing yet on a non-blocking socket), PT_ERR (err filled: a truncated or
 * malformed record; any descriptors that came with it are closed). */
int pt_handoff_recv(int fd, struct pt_handoff_rec *r, struct pt_err *err);
/* Closes the descriptors of r that the caller did not take (set to -1 when taken). */
void pt_handoff_rec_close_fds(struct pt_handoff_rec *r);

/* The value of field `key=value` in r (after the first `skip` fields), or NULL. */
const char *pt_handoff_get(const struct pt_handoff_rec *r, unsigned skip, const char *key);
/* The same as a signed decimal number: PT_OK and *out, or PT_ERR (missing or not a number). */
int pt_handoff_get_i64(const struct pt_handoff_rec *r, unsigned skip, const char *key,
                       int64_t *out);
/* A field as a number: PT_OK and *out, or PT_ERR. */
int pt_handoff_parse_i64(const char *s, int64_t *out);
int pt_handoff_parse_u64(const char *s, uint64_t *out);

#endif
