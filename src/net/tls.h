/* SPDX-License-Identifier: MIT */
/* TLS termination (OpenSSL 3) and the socket I/O helpers every frontend connection uses, so a
 * codec reads and writes the same way over cleartext and TLS. */
#ifndef PT_TLS_H
#define PT_TLS_H

#include <ev.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "core/arena-t.h"
#include "core/conf-t.h"
#include "core/module-t.h"
#include "net/tls-t.h"

/* The TLS subsystem: its directives (tls_certificate, ...) keep a struct pt_tls_conf in the
 * module slot of the main level and of every block that opens the SERVER level; whoever owns
 * those blocks merges them (pt_conf_modules_merge) and builds their contexts. */
extern struct pt_module pt_module_tls;
extern const struct pt_directive pt_tls_directives[];

/* The merged TLS settings in a block's module slots (NULL where the level has none). */
static inline struct pt_tls_conf *
pt_tls_conf_of(void **slots)
{
    return (struct pt_tls_conf *)slots[pt_module_tls._index];
}

/* Fills unset TLS fields of child from parent (or defaults when parent is NULL). */
void pt_tls_conf_merge(const struct pt_tls_conf *parent, struct pt_tls_conf *child);
void pt_tls_conf_unset(struct pt_tls_conf *t);
/* Builds t->ctx from the certificate, key and CA files of t. PT_OK, or PT_ERR with why filled.
 * Main thread, at load; the context is freed with the snapshot. */
int pt_tls_server_ctx(struct pt_tls_conf *t, char *why, size_t wlen);
/* A client context for backends: TLS 1.2+, the CA file `trusted` (or the system store),
 * certificate checks when verify, ALPN h2 or http/1.1. NULL with why filled. The caller frees
 * it (SSL_CTX_free). Main thread, at load. */
SSL_CTX *pt_tls_client_ctx(const char *trusted, bool verify, bool h2, char *why, size_t wlen);
/* Process-wide setup: session-ticket keys. Main thread, once. */
int pt_tls_init(struct pt_err *err);
/* Replaces the ticket encryption key; the previous one still decrypts. Main thread. */
void pt_tls_rotate_ticket_keys(void);

/* A server-side SSL for an accepted socket on a TLS listener: l's default settings, switched
 * by SNI through l->select. NULL on failure (logged). */
SSL *pt_tls_accept(const struct pt_tls_listen *l, int fd);
/* Drives the handshake: PT_OK when done, PT_AGAIN (sets *want_write when it waits for
 * writability), PT_ERR (logged with the client address). */
int pt_tls_handshake(SSL *ssl, const char *peer, bool *want_write);
/* A frontend handshake ran out of tls_handshake_timeout: counted for metrics. Worker thread. */
void pt_tls_count_timeout(void);
/* True when ALPN chose "h2". */
bool pt_tls_alpn_h2(SSL *ssl);
/* The verified client certificate subject (RFC 2253) copied into the arena, or NULL. */
const char *pt_tls_client_subject(SSL *ssl, struct pt_arena *a);

/* A client SSL for a backend connection: SNI `name` (not sent for an IP literal), the name or
 * address checked against the certificate when verify, resuming `resume` when not NULL. NULL
 * on failure. */
SSL *pt_tls_connect(SSL_CTX *ctx, const char *name, bool verify, int fd, SSL_SESSION *resume);
/* A snapshot starts serving (start-up, a reload taken): its tls_session_ticket_key keys, or
 * none (the in-memory keys), are the ones tickets use from now on. Main thread, before the
 * workers see the snapshot; the previous snapshot must live until every worker switched. */
void pt_tls_use_conf(struct pt_conf *conf);
/* Offers only "http/1.1" in ALPN on a client session made from an h2 context (a WebSocket to a
 * server without extended CONNECT), before its handshake. */
void pt_tls_alpn_http11(SSL *ssl);
/* Frees a backend SSL keeping its session resumable. */
void pt_tls_client_free(SSL *ssl);
/* Keeps ssl's session in *slot (an SSL_SESSION *) when it can be resumed; TLS 1.3 tickets
 * arrive after the handshake, so call it once data has been read. */
bool pt_tls_save_session(SSL *ssl, void **slot);
/* True when a request routed to a block with settings `routed` must be refused with 421 on this
 * TLS connection (the handshake chose another block and one of them verifies client
 * certificates). */
bool pt_tls_misdirected(SSL *ssl, const struct pt_tls_conf *routed);
/* Drives a client handshake like pt_tls_handshake; errors are logged with `who`. */
int pt_tls_connect_step(SSL *ssl, const char *who, bool *want_write);
/* The same for a connection with separate read and write watchers: wio runs exactly while the
 * handshake waits for writability. PT_OK, PT_AGAIN or PT_ERR (logged). */
int pt_tls_connect_io(struct ev_loop *loop, ev_io *wio, SSL *ssl, const char *who);

/* Reads into buf: > 0 bytes, 0 at EOF, PT_AGAIN, PT_ERR (errno set for socket errors). */
ssize_t pt_io_read(int fd, SSL *ssl, char *buf, size_t n);
/* After pt_io_read returned PT_ERR with errno EPROTO: OpenSSL's reasons, and whether it was only
 * an EOF without close_notify (a client that went away, not one that misbehaved). */
const char *pt_io_tls_error(bool *eof);
/* Makes the coming close() of fd an abortive one (RST, SO_LINGER 0): for a client cut for not
 * reading, whose unsent bytes the kernel would otherwise keep trying to deliver. */
void pt_io_reset_on_close(int fd);
/* Writes from iov: bytes written, PT_AGAIN, or PT_ERR. Over TLS, a write that would block must
 * be retried with the same length (OpenSSL's rule); *retry_len remembers it between calls. */
ssize_t pt_io_writev(int fd, SSL *ssl, const struct iovec *iov, int n, size_t *retry_len);
/* Closes the TLS session (close_notify, best effort) and frees ssl. */
void pt_tls_free(SSL *ssl);

#endif
