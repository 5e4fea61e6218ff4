/* SPDX-License-Identifier: MIT */
/* TLS termination with OpenSSL 3: one SSL_CTX per server block on a TLS listener, chosen by SNI;
 * ALPN h2 / http/1.1; TLS 1.2 and 1.3 only; session tickets with in-memory keys rotated by the
 * main thread, plus a server-side session cache; optional client certificates. Idle
 * connections stay small: SSL_MODE_RELEASE_BUFFERS drops OpenSSL's buffers between records and
 * one ticket is issued per handshake instead of OpenSSL's two. */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/handoff.h"
#include "core/log.h"
#include "core/module.h"
#include "core/priv.h"
#include "core/stats.h"
#include "core/worker.h"
#include "net/tls.h"

#define DEFAULT_CIPHERS                                                                          \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                 \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                 \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
/* AES-128-GCM first, as in the TLS 1.2 list: as safe as AES-256 for TLS (RFC 8446 makes it
 * the one suite every implementation must have) and 14 % more bulk throughput here (docs/tls.md,
 * "Protocols and ciphers"); OpenSSL's own default puts AES-256 first. */
#define DEFAULT_CIPHERSUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

/* ---- directives ----------------------------------------------------------------------- */

static int
set_tls_str(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_tls_conf *t = conf;
    const char **f = (const char **)((char *)t + d->offset);

    if (*f != NULL)
        return pt_conf_error(cx, 0, "\"%s\" directive is duplicate", d->name);
    *f = cx->args[1];
    if (d->offset == offsetof(struct pt_tls_conf, certificate)) {
        t->cert_file = cx->file;
        t->cert_line = cx->lines[1];
        t->cert_col = cx->cols[1];
    }
    return PT_OK;
}

static int
set_tls_protocols(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_tls_conf *t = conf;

    if (t->protocols != PT_UNSET)
        return pt_conf_error(cx, 0, "\"tls_protocols\" directive is duplicate");
    t->protocols = 0;
    for (unsigned i = 1; i <= cx->nargs; i++) {
        if (strcmp(cx->args[i], "TLSv1.2") == 0)
            t->protocols |= PT_TLS_V12;
        else if (strcmp(cx->args[i], "TLSv1.3") == 0)
            t->protocols |= PT_TLS_V13;
        else
            return pt_conf_error(cx, i,
                                 "unsupported protocol \"%s\" (TLSv1.2, TLSv1.3; older versions "
                                 "are not offered)",
                                 cx->args[i]);
    }
    return PT_OK;
}

static int
set_tls_verify(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_tls_conf *t = conf;

    if (t->verify_client != PT_UNSET)
        return pt_conf_error(cx, 0, "\"tls_verify_client\" directive is duplicate");
    if (strcmp(cx->args[1], "off") == 0)
        t->verify_client = PT_TLS_VERIFY_OFF;
    else if (strcmp(cx->args[1], "on") == 0)
        t->verify_client = PT_TLS_VERIFY_ON;
    else if (strcmp(cx->args[1], "optional") == 0)
        t->verify_client = PT_TLS_VERIFY_OPTIONAL;
    else
        return pt_conf_error(cx, 1, "invalid value \"%s\" (off, on, optional)", cx->args[1]);
    return PT_OK;
}

static int
set_tls_generic(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    const struct pt_directive *real = d->arg;

    return real->set(cx, real, conf);
}

#define TCTX (PT_CTX_MAIN | PT_CTX_SERVER | PT_CTX_STREAM | PT_CTX_STREAM_SERVER)

/* tls_session_ticket_key files, at most this many (the first encrypts, all decrypt) */
#define TICKET_FILES_MAX 16

static int set_ticket_key(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf);
#define TOFF(f) offsetof(struct pt_tls_conf, f)

static const struct pt_directive d_tickets = {"tls_session_tickets", TCTX, 1, 1, 0,
                                              PT_BASE_NONE, pt_set_flag, TOFF(session_tickets),
                                              NULL};
static const int64_t max_cache = 10000000;
static const struct pt_directive d_cache = {"tls_session_cache", TCTX, 1, 1, 0, PT_BASE_NONE,
                                            pt_set_count, TOFF(session_cache), &max_cache};
static const struct pt_directive d_hs = {"tls_handshake_timeout", TCTX, 1, 1, 0, PT_BASE_NONE,
                                         pt_set_msec, TOFF(handshake_timeout), NULL};

const struct pt_directive pt_tls_directives[] = {
    {"tls_certificate", TCTX, 1, 1, 0, PT_BASE_MODULE, set_tls_str, TOFF(certificate), NULL},
    {"tls_certificate_key", TCTX, 1, 1, 0, PT_BASE_MODULE, set_tls_str, TOFF(certificate_key),
     NULL},
    {"tls_ciphers", TCTX, 1, 1, 0, PT_BASE_MODULE, set_tls_str, TOFF(ciphers), NULL},
    {"tls_ciphersuites", TCTX, 1, 1, 0, PT_BASE_MODULE, set_tls_str, TOFF(ciphersuites), NULL},
    {"tls_client_certificate", TCTX, 1, 1, 0, PT_BASE_MODULE, set_tls_str, TOFF(client_ca), NULL},
    {"tls_protocols", TCTX, 1, 2, 0, PT_BASE_MODULE, set_tls_protocols, 0, NULL},
    {"tls_verify_client", TCTX, 1, 1, 0, PT_BASE_MODULE, set_tls_verify, 0, NULL},
    {"tls_session_tickets", TCTX, 1, 1, 0, PT_BASE_MODULE, set_tls_generic, 0, &d_tickets},
    {"tls_session_cache", TCTX, 1, 1, 0, PT_BASE_MODULE, set_tls_generic, 0, &d_cache},
    {"tls_handshake_timeout", TCTX, 1, 1, 0, PT_BASE_MODULE, set_tls_generic, 0, &d_hs},
    {"tls_session_ticket_key", PT_CTX_MAIN, 1, 1, 0, PT_BASE_MODULE, set_ticket_key, 0, NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

void
pt_tls_conf_unset(struct pt_tls_conf *t)
{
    memset(t, 0, sizeof(*t));
    t->protocols = PT_UNSET;
    t->verify_client = PT_UNSET;
    t->session_tickets = PT_UNSET;
    t->session_cache = PT_UNSET;
    t->handshake_timeout = PT_UNSET;
    t->cert_line = 1;
    t->cert_col = 1;
}

#define TMERGE(f, dflt)                                                                          \
    do {                                                                                         \
        if (child->f == PT_UNSET)                                                                \
            child->f = parent != NULL ? parent->f : (dflt);                                      \
    } while (0)
#define TMERGE_PTR(f, dflt)                                                                      \
    do {                                                                                         \
        if (child->f == NULL)                                                                    \
            child->f = parent != NULL ? parent->f : (dflt);                                      \
    } while (0)

void
pt_tls_conf_merge(const struct pt_tls_conf *parent, struct pt_tls_conf *child)
{
    if (child->certificate == NULL && parent != NULL) {
        child->certificate = parent->certificate;
        child->cert_file = parent->cert_file;
        child->cert_line = parent->cert_line;
        child->cert_col = parent->cert_col;
    }
    TMERGE_PTR(certificate_key, NULL);
    TMERGE_PTR(ciphers, DEFAULT_CIPHERS);
    TMERGE_PTR(ciphersuites, DEFAULT_CIPHERSUITES);
    TMERGE_PTR(client_ca, NULL);
    TMERGE(protocols, PT_TLS_V12 | PT_TLS_V13);
    TMERGE(verify_client, PT_TLS_VERIFY_OFF);
    TMERGE(session_tickets, 1);
    TMERGE(session_cache, 20480);
    TMERGE(handshake_timeout, 10000);
}

/* ---- ticket keys ---------------------------------------------------------------------- */

/* Three slots: the current key, the previous one (still decrypts), and the one being written
 * at rotation. A reader on a worker never sees a slot being rewritten, since rotation happens
 * hours apart and a reader holds an index for microseconds. */
struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    unsigned size; /* 48 (AES-128, HMAC key 16 bytes) or 80 (AES-256, 32); 0: in-memory, 80 */
};

static struct ticket_key ticket_keys[3];
static atomic_uint ticket_current;

/* Keys read from tls_session_ticket_key files (nginx's format and meaning: the first
 * encrypts, every one decrypts), owned by the snapshot that read them; NULL: the in-memory
 * keys above. Set by the main thread when a snapshot starts serving (pt_tls_use_conf): a
 * worker reads it inside a handshake, and the snapshot that owns the keys outlives every
 * worker's switch to a newer one. */
struct ticket_keyset {
    unsigned n;
    struct ticket_key k[TICKET_FILES_MAX];
};

static _Atomic(const struct ticket_keyset *) file_keys;

static int
make_key(struct ticket_key *k)
{
    return RAND_bytes(k->name, sizeof(k->name)) == 1 && RAND_bytes(k->aes, sizeof(k->aes)) == 1 &&
           RAND_bytes(k->hmac, sizeof(k->hmac)) == 1;
}

int
pt_tls_init(struct pt_err *err)
{
    if (!make_key(&ticket_keys[0]) || !make_key(&ticket_keys[2]))
        return pt_err_set(err, "cannot generate TLS session ticket keys");
    atomic_store(&ticket_current, 0);
    return PT_OK;
}

void
pt_tls_rotate_ticket_keys(void)
{
    unsigned cur = atomic_load(&ticket_current);
    unsigned next = (cur + 1) % 3;

    if (!make_key(&ticket_keys[next])) {
        pt_log(PT_LOG_ERROR, "TLS ticket key rotation failed; keeping the current key");
        return;
    }
    atomic_store(&ticket_current, next);
    pt_log(PT_LOG_INFO, "TLS session ticket key rotated");
}

/* A binary upgrade hands the in-memory ticket keys to the new process, so that sessions
 * resumed by ticket survive it: `tls ticket_keys CURRENT KEY0 KEY1 KEY2`, each key the hex of
 * its name, AES and HMAC parts (keys from tls_session_ticket_key files are read again by the new
 * process). The socket pair is private to the two processes; the keys are never logged. */
#define TICKET_KEY_BYTES (16 + 32 + 32)

static void
tls_upgrade_save(struct pt_conf *conf, struct pt_handoff *h)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[TICKET_KEY_BYTES];
    char text[2 * TICKET_KEY_BYTES + 1];

    pt_handoff_begin(h, pt_module_tls.name);
    pt_handoff_str(h, "ticket_keys");
    pt_handoff_u64(h, atomic_load(&ticket_current));
    for (unsigned i = 0; i < 3; i++) {
        memcpy(raw, ticket_keys[i].name, 16);
        memcpy(raw + 16, ticket_keys[i].aes, 32);
        memcpy(raw + 48, ticket_keys[i].hmac, 32);
        for (size_t j = 0; j < TICKET_KEY_BYTES; j++) {
            text[2 * j] = hex[raw[j] >> 4];
            text[2 * j + 1] = hex[raw[j] & 15];
        }
        text[sizeof(text) - 1] = '\0';
        pt_handoff_str(h, text);
    }
    pt_handoff_end(h);
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(text, sizeof(text));
    OPENSSL_cleanse(h->buf, h->len);
}

static void
tls_upgrade_load(struct pt_conf *conf, const struct pt_handoff_rec *r)
{
    struct ticket_key keys[3];
    unsigned char raw[TICKET_KEY_BYTES];
    uint64_t cur;

    if (r->n != 5 || strcmp(r->f[0], "ticket_keys") != 0 ||
        pt_handoff_parse_u64(r->f[1], &cur) != PT_OK || cur > 2)
        return;
    memset(keys, 0, sizeof(keys));
    for (unsigned i = 0; i < 3; i++) {
        const char *t = r->f[2 + i];

        if (strlen(t) != 2 * TICKET_KEY_BYTES)
            return;
        for (size_t j = 0; j < TICKET_KEY_BYTES; j++) {
            uint64_t b;

            if (pt_parse_hex_u64(t + 2 * j, 2, 255, &b) != PT_OK)
                return;
            raw[j] = (unsigned char)b;
        }
        memcpy(keys[i].name, raw, 16);
        memcpy(keys[i].aes, raw + 16, 32);
        memcpy(keys[i].hmac, raw + 48, 32);
    }
    memcpy(ticket_keys, keys, sizeof(keys));
    OPENSSL_cleanse(keys, sizeof(keys));
    OPENSSL_cleanse(raw, sizeof(raw));
    atomic_store(&ticket_current, (unsigned)cur);
}

/* The cipher and the HMAC key length of a key (48-byte files: AES-128; 80-byte and in-memory
 * keys: AES-256). */
static const EVP_CIPHER *
key_cipher(const struct ticket_key *k, size_t *hmac_len)
{
    if (k->size == 48) {
        *hmac_len = 16;
        return EVP_aes_128_cbc();
    }
    *hmac_len = 32;
    return EVP_aes_256_cbc();
}

static int
key_init(const struct ticket_key *k, unsigned char *iv, EVP_CIPHER_CTX *cctx,
         EVP_MAC_CTX *hctx, int enc)
{
    size_t hlen;
    const EVP_CIPHER *cipher = key_cipher(k, &hlen);
    OSSL_PARAM p2[3] = {
        OSSL_PARAM_construct_octet_string("key", (void *)k->hmac, hlen),
        OSSL_PARAM_construct_utf8_string("digest", "sha256", 0),
        OSSL_PARAM_construct_end(),
    };

    if (enc && RAND_bytes(iv, EVP_CIPHER_iv_length(cipher)) != 1)
        return -1;
    if (EVP_MAC_CTX_set_params(hctx, p2) != 1)
        return -1;
    if (enc ? EVP_EncryptInit_ex(cctx, cipher, NULL, k->aes, iv) != 1
            : EVP_DecryptInit_ex(cctx, cipher, NULL, k->aes, iv) != 1)
        return -1;
    return 1;
}

static int
ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
          EVP_MAC_CTX *hctx, int enc)
{
    const struct ticket_keyset *fk = atomic_load_explicit(&file_keys, memory_order_acquire);
    unsigned cur = atomic_load(&ticket_current);

    if (fk != NULL) {
        /* key files: the first encrypts; any decrypts, and a ticket of another than the first
         * is replaced by a fresh one */
        if (enc) {
            memcpy(name, fk->k[0].name, 16);
            return key_init(&fk->k[0], iv, cctx, hctx, 1);
        }
        for (unsigned i = 0; i < fk->n; i++)
            if (memcmp(name, fk->k[i].name, 16) == 0)
                return key_init(&fk->k[i], iv, cctx, hctx, 0) < 0 ? -1 : i == 0 ? 1 : 2;
        return 0; /* unknown key: full handshake */
    }
    if (enc) {
        memcpy(name, ticket_keys[cur].name, 16);
        return key_init(&ticket_keys[cur], iv, cctx, hctx, 1);
    }
    /* decrypt: the current key, or the previous one (then ask for a fresh ticket) */
    for (unsigned back = 0; back < 2; back++) {
        const struct ticket_key *k = &ticket_keys[(cur + 3 - back) % 3];

        if (memcmp(name, k->name, 16) == 0)
            return key_init(k, iv, cctx, hctx, 0) < 0 ? -1 : back == 0 ? 1 : 2;
    }
    return 0; /* unknown key: full handshake */
}

/* ---- SNI and ALPN --------------------------------------------------------------------- */

static int listen_ex_index = -1;
static int vhost_ex_index = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void
ex_init(void)
{
    listen_ex_index = SSL_get_ex_new_index(0, "portico listen", NULL, NULL, NULL);
    vhost_ex_index = SSL_get_ex_new_index(0, "portico vhost", NULL, NULL, NULL);
}

/* Chooses the server block by SNI before version negotiation (the ClientHello callback runs
 * first, unlike the servername callback), so tls_protocols, ciphers and client verification of
 * the chosen server all apply. The choice is remembered for pt_tls_misdirected(). */
static int
client_hello_cb(SSL *ssl, int *alert, void *arg)
{
    const struct pt_tls_listen *l = SSL_get_ex_data(ssl, listen_ex_index);
    const unsigned char *p;
    size_t len;
    char lower[256];
    const struct pt_tls_conf *t;

    if (l == NULL)
        return SSL_CLIENT_HELLO_SUCCESS;
    t = l->dflt;
    /* server_name extension (RFC 6066 section 3): list length, type 0, name length, name */
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) == 1 && len > 5 &&
        (size_t)((p[0] << 8) | p[1]) + 2 == len && p[2] == TLSEXT_NAMETYPE_host_name) {
        size_t n = (size_t)((p[3] << 8) | p[4]);

        if (n + 5 <= len && n < sizeof(lower)) {
            for (size_t i = 0; i < n; i++)
                lower[i] = (char)((p[5 + i] >= 'A' && p[5 + i] <= 'Z') ? p[5 + i] + 32 : p[5 + i]);
            lower[n] = '\0';
            t = l->select(l->arg, lower, n); /* the owner of the address decides */
        }
    }
    SSL_set_ex_data(ssl, vhost_ex_index, (void *)t);
    if (t != NULL && t->ctx != NULL && t->ctx != SSL_get_SSL_CTX(ssl)) {
        SSL_CTX *ctx = t->ctx;

        /* SSL_set_SSL_CTX switches certificate and key only: carry the rest over */
        SSL_set_SSL_CTX(ssl, ctx);
        SSL_set_min_proto_version(ssl, SSL_CTX_get_min_proto_version(ctx));
        SSL_set_max_proto_version(ssl, SSL_CTX_get_max_proto_version(ctx));
        SSL_set_cipher_list(ssl, t->ciphers);
        SSL_set_ciphersuites(ssl, t->ciphersuites);
        SSL_set_options(ssl, SSL_CTX_get_options(ctx));
        SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), NULL);
        STACK_OF(X509_NAME) *cas = SSL_CTX_get_client_CA_list(ctx);

        if (cas != NULL)
            SSL_set_client_CA_list(ssl, SSL_dup_CA_list(cas));
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

bool
pt_tls_misdirected(SSL *ssl, const struct pt_tls_conf *routed)
{
    const struct pt_tls_conf *chosen = SSL_get_ex_data(ssl, vhost_ex_index);

    /* A request for another server block than the handshake chose is refused when either of
     * them verifies client certificates: otherwise a client could present the SNI of a server
     * with `tls_verify_client off` and reach one with `on` without a certificate. */
    if (chosen == NULL || routed == NULL || chosen == routed)
        return false;
    return chosen->verify_client != PT_TLS_VERIFY_OFF ||
           routed->verify_client != PT_TLS_VERIFY_OFF;
}

static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
        unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x02h2\x08http/1.1";

    if (SSL_select_next_proto((unsigned char **)out, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no overlap: carry on without ALPN (HTTP/1.1) */
    return SSL_TLSEXT_ERR_OK;
}

/* ---- contexts ------------------------------------------------------------------------- */

static void
ssl_errors(char *buf, size_t len)
{
    unsigned long e;
    size_t o = 0;

    buf[0] = '\0';
    while ((e = ERR_get_error()) != 0 && o + 2 < len) {
        char one[256];

        ERR_error_string_n(e, one, sizeof(one));
        o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? "; " : "", one);
    }
    if (buf[0] == '\0')
        snprintf(buf, len, "unknown error");
}

/* ---- PEM files ------------------------------------------------------------------------ */

/* Certificates, keys and CA bundles are read whole through pt_priv (the privileged helper once
 * portico runs as `user`, so a reload still reads a key only root can read), then parsed from
 * memory. A CA bundle of the system store is about 200 KB. */
#define PT_TLS_PEM_MAX (16 * 1024 * 1024)

/* An encrypted key is an error, never a passphrase prompt on the terminal. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

/* The file in a memory BIO over *data (freed by the caller after the BIO). NULL with why set. */
static BIO *
pem_open(const char *path, const char *directive, char **data, char *why, size_t wlen)
{
    struct pt_err err = {{0}};
    size_t len;
    BIO *b;

    if (pt_priv_read_file(path, PT_TLS_PEM_MAX, data, &len, &err) != PT_OK) {
        snprintf(why, wlen, "cannot load %s \"%s\": %s", directive, path, err.msg);
        return NULL;
    }
    b = BIO_new_mem_buf(*data, (int)len);
    if (b == NULL) {
        free(*data);
        *data = NULL;
        snprintf(why, wlen, "cannot load %s \"%s\": out of memory", directive, path);
    }
    return b;
}

static void
pem_close(BIO *b, char *data)
{
    BIO_free(b);
    free(data);
}

/* What SSL_CTX_use_certificate_chain_file does, from memory: the first certificate is the
 * server's, the ones after it its chain. 1, or 0 with OpenSSL's errors queued. */
static int
use_chain(SSL_CTX *ctx, BIO *b)
{
    X509 *x = PEM_read_bio_X509_AUX(b, NULL, no_passphrase, NULL);
    unsigned long e;
    int ok;

    if (x == NULL)
        return 0;
    ok = SSL_CTX_use_certificate(ctx, x);
    X509_free(x);
    if (ok != 1 || SSL_CTX_clear_chain_certs(ctx) != 1)
        return 0;
    for (;;) {
        X509 *ca = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);

        if (ca == NULL)
            break;
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            return 0;
        }
    }
    e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE)
        return 0;
    ERR_clear_error(); /* the end of the file */
    return 1;
}

/* Every certificate (and CRL) of a bundle into the context's trust store, and with
 * client_list, the certificates' names into the list of CAs sent to clients. The number of
 * certificates (0: none, or an error with OpenSSL's errors queued). */
static int
load_cas(SSL_CTX *ctx, BIO *b, bool client_list)
{
    STACK_OF(X509_INFO) *infos = PEM_X509_INFO_read_bio(b, NULL, no_passphrase, NULL);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int n = 0;

    if (infos == NULL)
        return 0;
    for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *xi = sk_X509_INFO_value(infos, i);

        if (xi->x509 != NULL) {
            if (X509_STORE_add_cert(store, xi->x509) != 1 ||
                (client_list && SSL_CTX_add_client_CA(ctx, xi->x509) != 1)) {
                n = 0;
                break;
            }
            n++;
        }
        if (xi->crl != NULL && X509_STORE_add_crl(store, xi->crl) != 1) {
            n = 0;
            break;
        }
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    return n;
}

/* Sets tls_ciphersuites, checking each name on its own: OpenSSL skips the names it does not
 * know when one other is valid, so a misspelt suite would vanish without a word. */
static bool
ciphersuites_valid(SSL_CTX *ctx, const struct pt_tls_conf *t, char *why, size_t wlen)
{
    const char *p = t->ciphersuites;

    if (*p == '\0' && (t->protocols & PT_TLS_V13)) {
        snprintf(why, wlen, "tls_ciphersuites is empty, but tls_protocols has TLSv1.3");
        return false;
    }
    while (*p != '\0') {
        const char *end = strchr(p, ':');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        char one[64];

        if (n == 0 || n >= sizeof(one)) {
            snprintf(why, wlen, "invalid tls_ciphersuites \"%s\"", t->ciphersuites);
            return false;
        }
        memcpy(one, p, n);
        one[n] = '\0';
        if (SSL_CTX_set_ciphersuites(ctx, one) != 1) {
            snprintf(why, wlen, "unknown TLS 1.3 cipher suite \"%s\" in tls_ciphersuites", one);
            return false;
        }
        p += n + (end != NULL);
    }
    if (SSL_CTX_set_ciphersuites(ctx, t->ciphersuites) != 1) {
        snprintf(why, wlen, "invalid tls_ciphersuites \"%s\"", t->ciphersuites);
        return false;
    }
    return true;
}

int
pt_tls_server_ctx(struct pt_tls_conf *t, char *why, size_t wlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char errs[300];

    if (ctx == NULL)
        goto ssl_fail;
    SSL_CTX_set_min_proto_version(ctx, (t->protocols & PT_TLS_V12) ? TLS1_2_VERSION
                                                                   : TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, (t->protocols & PT_TLS_V13) ? TLS1_3_VERSION
                                                                   : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_set_cipher_list(ctx, t->ciphers) != 1) {
        snprintf(why, wlen, "invalid tls_ciphers \"%s\"", t->ciphers);
        goto fail;
    }
    if (!ciphersuites_valid(ctx, t, why, wlen))
        goto fail;
    {
        char *data;
        BIO *b = pem_open(t->certificate, "tls_certificate", &data, why, wlen);
        int ok;

        if (b == NULL)
            goto fail;
        ok = use_chain(ctx, b);
        pem_close(b, data);
        if (!ok) {
            ssl_errors(errs, sizeof(errs));
            snprintf(why, wlen, "cannot load tls_certificate \"%s\": %s", t->certificate,
                     errs);
            goto fail;
        }
    }
    {
        char *data;
        BIO *b = pem_open(t->certificate_key, "tls_certificate_key", &data, why, wlen);
        EVP_PKEY *key;
        int ok;

        if (b == NULL)
            goto fail;
        key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
        ok = key != NULL && SSL_CTX_use_PrivateKey(ctx, key) == 1;
        EVP_PKEY_free(key);
        pem_close(b, data);
        if (!ok) {
            ssl_errors(errs, sizeof(errs));
            snprintf(why, wlen, "cannot load tls_certificate_key \"%s\": %s",
                     t->certificate_key, errs);
            goto fail;
        }
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(why, wlen, "tls_certificate_key \"%s\" does not match tls_certificate \"%s\"",
                 t->certificate_key, t->certificate);
        goto fail;
    }
    if (t->client_ca != NULL) {
        char *data;
        BIO *b = pem_open(t->client_ca, "tls_client_certificate", &data, why, wlen);
        int n;

        if (b == NULL)
            goto fail;
        n = load_cas(ctx, b, true);
        pem_close(b, data);
        if (n == 0) {
            ssl_errors(errs, sizeof(errs));
            snprintf(why, wlen, "cannot load tls_client_certificate \"%s\": %s", t->client_ca,
                     strcmp(errs, "unknown error") == 0 ? "no certificate in it" : errs);
            goto fail;
        }
    }
    if (t->verify_client != PT_TLS_VERIFY_OFF) {
        if (t->client_ca == NULL) {
            snprintf(why, wlen, "tls_verify_client needs tls_client_certificate");
            goto fail;
        }
        SSL_CTX_set_verify(ctx,
                           SSL_VERIFY_PEER | (t->verify_client == PT_TLS_VERIFY_ON
                                                  ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                                  : 0),
                           NULL);
    }
    SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, NULL);
    if (!t->no_alpn)
        SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"portico", 7);
    if (t->session_cache > 0) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(ctx, (long)t->session_cache);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    if (t->session_tickets) {
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
        SSL_CTX_set_num_tickets(ctx, 1);
    } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, t->session_cache > 0 ? 1 : 0);
    }
    t->ctx = ctx;
    return PT_OK;
ssl_fail:
    ssl_errors(errs, sizeof(errs));
    snprintf(why, wlen, "cannot create TLS context: %s", errs);
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return PT_ERR;
}

void
pt_tls_alpn_http11(SSL *ssl)
{
    static const unsigned char alpn_h1[] = "\x08http/1.1";

    SSL_set_alpn_protos(ssl, alpn_h1, sizeof(alpn_h1) - 1);
}

/* A client context for an upstream: TLS 1.2+, the trusted CAs (or the system store), ALPN for
 * the backend protocol. Certificate and host name are checked per connection. */
SSL_CTX *
pt_tls_client_ctx(const char *trusted, bool verify, bool h2, char *why, size_t wlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char errs[300];
    static const unsigned char alpn_h2[] = "\x02h2";
    static const unsigned char alpn_h1[] = "\x08http/1.1";

    if (ctx == NULL) {
        ssl_errors(errs, sizeof(errs));
        snprintf(why, wlen, "cannot create TLS client context: %s", errs);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    if (trusted != NULL) {
        char *data;
        BIO *b = pem_open(trusted, "tls_trusted_certificate", &data, why, wlen);
        int n = 0;

        if (b != NULL) {
            n = load_cas(ctx, b, false);
            pem_close(b, data);
            if (n == 0) {
                ssl_errors(errs, sizeof(errs));
                snprintf(why, wlen, "cannot load tls_trusted_certificate \"%s\": %s", trusted,
                         strcmp(errs, "unknown error") == 0 ? "no certificate in it" : errs);
            }
        }
        if (n == 0) {
            ERR_clear_error();
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else {
        SSL_CTX_set_default_verify_paths(ctx);
    }
    SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (h2)
        SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof(alpn_h2) - 1);
    else
        SSL_CTX_set_alpn_protos(ctx, alpn_h1, sizeof(alpn_h1) - 1);
    return ctx;
}

void
pt_tls_client_free(SSL *ssl)
{
    if (ssl == NULL)
        return;
    /* no close_notify (the server may be gone), but a quiet shutdown, so the session is not
     * marked unusable and the next connection can resume it */
    SSL_set_quiet_shutdown(ssl, 1);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    ERR_clear_error();
}

bool
pt_tls_save_session(SSL *ssl, void **slot)
{
    SSL_SESSION *sess = SSL_get1_session(ssl);

    if (sess == NULL)
        return false;
    if (!SSL_SESSION_is_resumable(sess)) {
        SSL_SESSION_free(sess);
        return false;
    }
    SSL_SESSION_free(*slot);
    *slot = sess;
    return true;
}

SSL *
pt_tls_connect(SSL_CTX *ctx, const char *name, bool verify, int fd, SSL_SESSION *resume)
{
    SSL *ssl = SSL_new(ctx);
    struct in6_addr tmp;
    int is_ip = inet_pton(AF_INET, name, &tmp) == 1 || inet_pton(AF_INET6, name, &tmp) == 1;

    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_connect_state(ssl);
    if (!is_ip)
        SSL_set_tlsext_host_name(ssl, name); /* RFC 6066: no IP literals in SNI */
    if (verify) {
        if (is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
        else
            SSL_set1_host(ssl, name);
    }
    if (resume != NULL)
        SSL_set_session(ssl, resume);
    return ssl;
}

/* ---- counting (metrics) ---------------------------------------------------------------- */

/* The calling worker's counters (NULL on the main thread: health checks are not counted). */
static struct pt_tls_stats *
tls_stats(void)
{
    struct pt_worker *w = pt_worker_self();

    return w != NULL ? w->mod[pt_module_tls._index] : NULL;
}

static enum pt_tls_fail
fail_reason(int code, unsigned long e)
{
    if (e == 0)
        return code == SSL_ERROR_SYSCALL || code == SSL_ERROR_ZERO_RETURN ? PT_TLS_FAIL_CLOSED
                                                                           : PT_TLS_FAIL_OTHER;
    switch (ERR_GET_REASON(e)) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        return PT_TLS_FAIL_PROTOCOL;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_CIPHERS_AVAILABLE:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
        return PT_TLS_FAIL_CIPHER;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
        return PT_TLS_FAIL_HTTP;
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        return PT_TLS_FAIL_CERTIFICATE;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return PT_TLS_FAIL_CLOSED;
    default:
        return PT_TLS_FAIL_OTHER;
    }
}

static void
count_done(enum pt_tls_side side, SSL *ssl)
{
    struct pt_tls_stats *st = tls_stats();

    if (st == NULL)
        return;
    st->handshakes[side]++;
    if (SSL_session_reused(ssl))
        st->resumed[side]++;
}

static void
count_failed(enum pt_tls_side side, enum pt_tls_fail why)
{
    struct pt_tls_stats *st = tls_stats();

    if (st != NULL)
        st->failures[side][why]++;
}

void
pt_tls_count_timeout(void)
{
    count_failed(PT_TLS_FRONTEND, PT_TLS_FAIL_TIMEOUT);
}

static int
tls_worker_init(struct pt_worker *w)
{
    w->mod[pt_module_tls._index] =
        pt_stats_get(&w->stats, "tls", NULL, NULL, sizeof(struct pt_tls_stats));
    return w->mod[pt_module_tls._index] != NULL ? PT_OK : PT_ERR;
}

static void
tls_worker_fini(struct pt_worker *w)
{
    w->mod[pt_module_tls._index] = NULL; /* the block itself lives on in w->stats */
}

/* The common part of both handshake drivers: PT_OK, PT_AGAIN (with *want_write), or PT_ERR
 * with the SSL error code in *code (errors left on OpenSSL's queue for the caller). */
static int
handshake_step(SSL *ssl, bool *want_write, int *code)
{
    int rc = SSL_do_handshake(ssl);

    *want_write = false;
    if (rc == 1)
        return PT_OK;
    *code = SSL_get_error(ssl, rc);
    if (*code == SSL_ERROR_WANT_READ)
        return PT_AGAIN;
    if (*code == SSL_ERROR_WANT_WRITE) {
        *want_write = true;
        return PT_AGAIN;
    }
    return PT_ERR;
}

int
pt_tls_connect_step(SSL *ssl, const char *who, bool *want_write)
{
    char errs[300];
    int code, rc = handshake_step(ssl, want_write, &code);

    if (rc == PT_OK)
        count_done(PT_TLS_BACKEND, ssl);
    if (rc != PT_ERR)
        return rc;
    count_failed(PT_TLS_BACKEND, SSL_get_verify_result(ssl) != X509_V_OK
                                     ? PT_TLS_FAIL_CERTIFICATE
                                     : fail_reason(code, ERR_peek_error()));
    if (SSL_get_verify_result(ssl) != X509_V_OK)
        snprintf(errs, sizeof(errs), "certificate verification failed: %s",
                 X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
    else
        ssl_errors(errs, sizeof(errs));
    ERR_clear_error();
    pt_log(PT_LOG_ERROR, "%s: TLS handshake failed: %s", who, errs);
    return PT_ERR;
}

int
pt_tls_connect_io(struct ev_loop *loop, ev_io *wio, SSL *ssl, const char *who)
{
    bool want_write;
    int rc = pt_tls_connect_step(ssl, who, &want_write);

    if (rc == PT_AGAIN && want_write) {
        if (!ev_is_active(wio))
            ev_io_start(loop, wio);
    } else if (ev_is_active(wio)) {
        ev_io_stop(loop, wio);
    }
    return rc;
}

/* The TLS subsystem's main-level slot: the main-level settings, and every conf it made (one
 * per server block), so their contexts are freed with the snapshot. */
struct tls_main {
    struct pt_tls_conf conf;
    struct pt_tls_conf **all;
    unsigned n_all, cap_all;
    /* tls_session_ticket_key: the files, where they were named, and the keys read at load */
    const char *ticket_files[TICKET_FILES_MAX];
    int ticket_lines[TICKET_FILES_MAX], ticket_cols[TICKET_FILES_MAX];
    unsigned n_ticket_files;
    struct ticket_keyset *keys; /* heap (key material is wiped when freed) */
};

static int
set_ticket_key(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct tls_main *m = conf; /* the main-level slot: tls_main starts with its conf */

    if (m->n_ticket_files == TICKET_FILES_MAX)
        return pt_conf_error(cx, 1, "too many \"tls_session_ticket_key\" files (at most %d)",
                             TICKET_FILES_MAX);
    m->ticket_files[m->n_ticket_files] = cx->args[1];
    m->ticket_lines[m->n_ticket_files] = cx->lines[1];
    m->ticket_cols[m->n_ticket_files] = cx->cols[1];
    m->n_ticket_files++;
    return PT_OK;
}

/* Reads one key file: 48 bytes (name, AES-128 key, HMAC key) or 80 (name, HMAC key, AES-256
 * key), nginx's layout. */
static int
read_ticket_file(struct pt_conf_ctx *cx, struct tls_main *m, unsigned i, struct ticket_key *k)
{
    unsigned char buf[81];
    /* through pt_priv: after the drop to `user`, the privileged helper opens it for a reload;
     * read(), not stdio, so no copy of the key stays in a stdio buffer */
    int fd = pt_priv_open(m->ticket_files[i], PT_PRIV_READ);
    size_t n = 0;

    if (fd == -1)
        return pt_conf_error_at(cx, m->ticket_lines[i], m->ticket_cols[i],
                                "cannot open tls_session_ticket_key \"%s\": %s",
                                m->ticket_files[i], strerror(errno));
    while (n < sizeof(buf)) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);

        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            int e = errno;

            close(fd);
            OPENSSL_cleanse(buf, sizeof(buf));
            return pt_conf_error_at(cx, m->ticket_lines[i], m->ticket_cols[i],
                                    "cannot read tls_session_ticket_key \"%s\": %s",
                                    m->ticket_files[i], strerror(e));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (n != 48 && n != 80) {
        OPENSSL_cleanse(buf, sizeof(buf));
        return pt_conf_error_at(cx, m->ticket_lines[i], m->ticket_cols[i],
                                "tls_session_ticket_key \"%s\" must be 48 or 80 bytes of random "
                                "data (it has %s%zu)", m->ticket_files[i], n > 80 ? "more than " : "",
                                n > 80 ? (size_t)80 : n);
    }
    k->size = (unsigned)n;
    memcpy(k->name, buf, 16);
    if (n == 48) {
        memcpy(k->aes, buf + 16, 16);
        memcpy(k->hmac, buf + 32, 16);
    } else {
        memcpy(k->hmac, buf + 16, 32);
        memcpy(k->aes, buf + 48, 32);
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return PT_OK;
}

static int
tls_conf_validate(struct pt_conf_ctx *cx)
{
    struct tls_main *m = (struct tls_main *)cx->conf->mod[pt_module_tls._index];

    if (m == NULL || m->n_ticket_files == 0)
        return PT_OK;
    m->keys = calloc(1, sizeof(*m->keys));
    if (m->keys == NULL)
        return pt_conf_error_at(cx, m->ticket_lines[0], m->ticket_cols[0], "out of memory");
    for (unsigned i = 0; i < m->n_ticket_files; i++)
        if (read_ticket_file(cx, m, i, &m->keys->k[i]) != PT_OK)
            return PT_ERR;
    m->keys->n = m->n_ticket_files;
    return PT_OK;
}

void
pt_tls_use_conf(struct pt_conf *conf)
{
    struct tls_main *m = conf->mod[pt_module_tls._index];

    atomic_store_explicit(&file_keys, m != NULL ? m->keys : NULL, memory_order_release);
}

static void *
tls_conf_create(struct pt_conf_ctx *cx, unsigned level)
{
    struct tls_main *m;
    struct pt_tls_conf *t;

    if (level == PT_CTX_MAIN) {
        m = pt_arena_calloc(&cx->conf->arena, sizeof(*m));
        if (m != NULL)
            pt_tls_conf_unset(&m->conf);
        return m != NULL ? &m->conf : NULL;
    }
    if (level != PT_CTX_SERVER && level != PT_CTX_STREAM && level != PT_CTX_STREAM_SERVER)
        return NULL;
    m = (struct tls_main *)cx->conf->mod[pt_module_tls._index];
    t = pt_arena_calloc(&cx->conf->arena, sizeof(*t));
    if (t == NULL || m == NULL)
        return NULL;
    if (m->n_all == m->cap_all) {
        unsigned cap = m->cap_all ? m->cap_all * 2 : 8;
        struct pt_tls_conf **v = pt_arena_grow(&cx->conf->arena, m->all,
                                               m->cap_all * sizeof(*v), cap * sizeof(*v));

        if (v == NULL)
            return NULL;
        m->all = v;
        m->cap_all = cap;
    }
    m->all[m->n_all++] = t;
    pt_tls_conf_unset(t);
    return t;
}

static int
tls_conf_merge(struct pt_conf_ctx *cx, void *parent, void *child)
{
    pt_tls_conf_merge(parent, child);
    return PT_OK;
}

static void
tls_conf_release(struct pt_conf *conf)
{
    struct tls_main *m = conf->mod[pt_module_tls._index];

    if (m == NULL)
        return;
    if (m->keys != NULL) {
        OPENSSL_cleanse(m->keys, sizeof(*m->keys));
        free(m->keys);
        m->keys = NULL;
    }
    SSL_CTX_free(m->conf.ctx);
    m->conf.ctx = NULL;
    for (unsigned i = 0; i < m->n_all; i++) {
        SSL_CTX_free(m->all[i]->ctx);
        m->all[i]->ctx = NULL;
    }
}

/* conf->mod[] of a main-level slot points at the embedded conf, the first member */
_Static_assert(offsetof(struct tls_main, conf) == 0, "tls_main starts with its conf");

struct pt_module pt_module_tls = {
    .abi = PT_MODULE_ABI,
    .name = "tls",
    .kind = PT_MODULE_SUBSYSTEM,
    .directives = pt_tls_directives,
    .conf_create = tls_conf_create,
    .conf_merge = tls_conf_merge,
    .conf_validate = tls_conf_validate,
    .conf_release = tls_conf_release,
    .worker_init = tls_worker_init,
    .worker_fini = tls_worker_fini,
    .upgrade_save = tls_upgrade_save,
    .upgrade_load = tls_upgrade_load,
};

/* ---- connections ---------------------------------------------------------------------- */

SSL *
pt_tls_accept(const struct pt_tls_listen *l, int fd)
{
    SSL *ssl = SSL_new(l->dflt->ctx);

    if (ssl == NULL) {
        ERR_clear_error();
        pt_log(PT_LOG_ERROR, "SSL_new failed for a new TLS connection");
        return NULL;
    }
    pthread_once(&ex_once, ex_init);
    SSL_set_ex_data(ssl, listen_ex_index, (void *)l);
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

int
pt_tls_handshake(SSL *ssl, const char *peer, bool *want_write)
{
    char errs[300];
    int code, rc = handshake_step(ssl, want_write, &code);

    if (rc == PT_OK)
        count_done(PT_TLS_FRONTEND, ssl);
    if (rc != PT_ERR)
        return rc;
    count_failed(PT_TLS_FRONTEND, fail_reason(code, ERR_peek_error()));
    if (code == SSL_ERROR_SYSCALL) {
        ERR_clear_error();
        pt_log(PT_LOG_INFO, "TLS handshake with %s failed: %s", peer,
               errno != 0 ? strerror(errno) : "connection closed");
        return PT_ERR;
    }
    ssl_errors(errs, sizeof(errs));
    pt_log(PT_LOG_INFO, "TLS handshake with %s failed: %s", peer, errs);
    return PT_ERR;
}

bool
pt_tls_alpn_h2(SSL *ssl)
{
    const unsigned char *p;
    unsigned int n;

    SSL_get0_alpn_selected(ssl, &p, &n);
    return n == 2 && memcmp(p, "h2", 2) == 0;
}

const char *
pt_tls_client_subject(SSL *ssl, struct pt_arena *a)
{
    X509 *cert = SSL_get0_peer_certificate(ssl);
    char buf[1024];
    BIO *bio;
    int n;

    if (cert == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
        return NULL;
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return NULL;
    X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    n = BIO_read(bio, buf, sizeof(buf) - 1);
    BIO_free(bio);
    if (n <= 0)
        return NULL;
    /* a header value must not carry CR, LF or NUL */
    for (int i = 0; i < n; i++)
        if (buf[i] == '\r' || buf[i] == '\n' || buf[i] == '\0')
            buf[i] = '?';
    return pt_arena_strndup(a, buf, (size_t)n);
}

/* Why the last pt_io_read of this thread failed on a TLS connection (PT_ERR with EPROTO). */
static __thread char io_error[256];
static __thread bool io_error_eof;

const char *
pt_io_tls_error(bool *eof)
{
    *eof = io_error_eof;
    return io_error;
}

void
pt_io_reset_on_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

ssize_t
pt_io_read(int fd, SSL *ssl, char *buf, size_t n)
{
    if (ssl == NULL) {
        ssize_t r = read(fd, buf, n);

        if (r >= 0)
            return r;
        return errno == EAGAIN || errno == EINTR ? PT_AGAIN : PT_ERR;
    }
    int r = SSL_read(ssl, buf, (int)(n > INT32_MAX ? INT32_MAX : n));

    if (r > 0)
        return r;
    switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return PT_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (errno == 0)
            return 0; /* EOF without close_notify: treat as EOF */
        return PT_ERR;
    default:
        /* a protocol error (a bad record, a renegotiation refused, ...) or, with OpenSSL 3, an
         * EOF without close_notify (a truncation): the caller says which */
        io_error_eof = ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
        ssl_errors(io_error, sizeof(io_error));
        errno = EPROTO;
        return PT_ERR;
    }
}

/* A TLS record's most plaintext (RFC 8446 section 5.1). */
#define TLS_RECORD_MAX 16384

/* Small buffers gathered into one record (pt_io_writev); only this thread uses it. */
static __thread char gather_buf[TLS_RECORD_MAX];

ssize_t
pt_io_writev(int fd, SSL *ssl, const struct iovec *iov, int n, size_t *retry_len)
{
    ssize_t total = 0;
    int i = 0;
    size_t off = 0; /* bytes of iov[i] already written */

    if (ssl == NULL) {
        ssize_t w = writev(fd, iov, n);

        if (w >= 0)
            return w;
        return errno == EAGAIN || errno == EINTR ? PT_AGAIN : PT_ERR;
    }
    /* OpenSSL has no writev: each SSL_write makes its own records. A buffer of a record or
     * more is written from where it is (one call, OpenSSL cuts it into full records); smaller
     * ones that follow each other are gathered into one record while they fit, so a frame
     * header, a head or a chunk-size line does not go out as a record of its own. */
    while (i < n) {
        const char *src = (const char *)iov[i].iov_base + off;
        size_t have = iov[i].iov_len - off, len;

        if (have == 0) {
            i++;
            off = 0;
            continue;
        }
        if (*retry_len != 0) {
            len = *retry_len; /* the write that would block, again: the same bytes */
        } else {
            len = have;
            if (have < TLS_RECORD_MAX)
                for (int j = i + 1; j < n && len + iov[j].iov_len <= TLS_RECORD_MAX; j++)
                    len += iov[j].iov_len;
        }
        if (len > have) {
            size_t got = 0, o = off;

            for (int j = i; j < n && got < len; j++, o = 0) {
                size_t k = PT_MIN(len - got, iov[j].iov_len - o);

                memcpy(gather_buf + got, (const char *)iov[j].iov_base + o, k);
                got += k;
            }
            len = got;
            src = gather_buf;
        }
        int w = SSL_write(ssl, src, (int)len);

        if (w > 0) {
            size_t adv = (size_t)w;

            *retry_len = 0;
            total += w;
            while (adv > 0 && i < n) {
                size_t k = PT_MIN(adv, iov[i].iov_len - off);

                adv -= k;
                off += k;
                if (off == iov[i].iov_len) {
                    i++;
                    off = 0;
                }
            }
            if ((size_t)w < len)
                break;
            continue;
        }
        int e = SSL_get_error(ssl, w);

        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            /* after the caller consumes `total`, these bytes are first: same length again */
            *retry_len = len;
            return total > 0 ? total : PT_AGAIN;
        }
        ERR_clear_error();
        if (total > 0)
            return total;
        errno = e == SSL_ERROR_SYSCALL && errno != 0 ? errno : EPROTO;
        return PT_ERR;
    }
    return total;
}

void
pt_tls_free(SSL *ssl)
{
    if (ssl == NULL)
        return;
    SSL_set_quiet_shutdown(ssl, 0);
    SSL_shutdown(ssl); /* best effort close_notify; we do not wait for the reply */
    SSL_free(ssl);
    ERR_clear_error();
}
