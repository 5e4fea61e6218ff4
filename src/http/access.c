/* SPDX-License-Identifier: MIT */
/* The access subsystem (docs/access.md): allow / deny by client address and basic
 * authentication, with nginx's syntax and semantics, run as the access phase between the
 * rewrite phase and the handler. */
#include <crypt.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "core/regex.h"
#include "core/stats.h"
#include "core/worker-t.h"
#include "http/access.h"
#include "http/errors.h"
#include "http/exchange.h"
#include "http/headers.h"
#include "http/http.h"
#include "http/limit.h"
#include "http/trace.h"
#include "net/tls-t.h"

#define ACCESS_CTX (PT_CTX_MAIN | PT_CTX_SERVER | PT_CTX_LOCATION)

/* Successful basic-authentication checks a worker remembers, so that a valid client does not
 * pay bcrypt per request: a direct-mapped table of SHA-256 digests of (a per-worker random
 * key, the stored hash, user, password). 32 bytes a slot; a collision evicts. A changed
 * password or hash makes another digest, so nothing stale can match. */
#define AUTH_CACHE_SLOTS 512
/* Longest Authorization value decoded (user:password up to 3/4 of it). */
#define AUTH_MAX 512
/* Longest hash accepted in a user file (SHA-512 crypt with a long salt and rounds= is ~125). */
#define AUTH_HASH_MAX 200

/* What a worker keeps: its counters, crypt_r's work area, the verification cache. */
struct access_worker {
    struct pt_access_stats *stats;
    struct crypt_data *crypt; /* about 32 KiB, made on first use */
    unsigned char key[32];
    unsigned char cache[AUTH_CACHE_SLOTS][SHA256_DIGEST_LENGTH];
    unsigned char used[AUTH_CACHE_SLOTS];
};

static struct pt_access_conf *
conf_of(void **slots)
{
    return slots != NULL ? (struct pt_access_conf *)slots[pt_module_access._index] : NULL;
}

static struct access_worker *
worker_of(const struct pt_exchange *x)
{
    return x->w != NULL ? (struct access_worker *)x->w->mod[pt_module_access._index] : NULL;
}

static void
count_denied(struct pt_exchange *x, enum pt_deny_reason why)
{
    struct access_worker *aw = worker_of(x);

    if (aw != NULL && aw->stats != NULL)
        __atomic_store_n(&aw->stats->denied[why], aw->stats->denied[why] + 1, __ATOMIC_RELAXED);
}

/* ---- configuration ---------------------------------------------------------------------- */

/* `allow ADDRESS|CIDR|all;` / `deny ...;`: appended in order. */
static int
set_access(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_access_conf *ac = conf;
    struct pt_access_rule r = {.allow = d->name[0] == 'a', .file = cx->file,
                               .line = cx->lines[0], .text = cx->args[1]};
    struct pt_access_rule *v;
    unsigned n = ac->n_rules == PT_UNSET ? 0 : (unsigned)ac->n_rules;

    if (strcmp(cx->args[1], "all") != 0 && pt_cidr_parse(cx->args[1], &r.cidr) != PT_OK)
        return pt_conf_error(cx, 1, "invalid address, CIDR or \"all\" \"%s\" in \"%s\"",
                             cx->args[1], d->name);
    v = pt_arena_grow(&cx->conf->arena, ac->rules, n * sizeof(*v), (n + 1) * sizeof(*v));
    if (v == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    v[n] = r;
    ac->rules = v;
    ac->n_rules = (int)n + 1;
    return PT_OK;
}

/* `auth_basic "realm" | off;` */
static int
set_auth_basic(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_access_conf *ac = conf;
    const char *realm = cx->args[1];
    char where[512], *hdr, *o;
    size_t n = strlen(realm);

    (void)d;
    if (ac->auth_set != PT_UNSET)
        return pt_conf_duplicate(cx);
    ac->auth_set = 1;
    snprintf(where, sizeof(where), "%s:%d", cx->file, cx->lines[0]);
    ac->auth_where = pt_arena_strdup(&cx->conf->arena, where);
    ac->auth_line = cx->lines[0];
    ac->auth_col = cx->cols[0];
    if (strcmp(realm, "off") == 0) {
        ac->realm = NULL;
        return PT_OK;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)realm[i] < 0x20 || realm[i] == 0x7f)
            return pt_conf_error(cx, 1, "the realm may not hold a control character");
    /* a quoted-string (RFC 9110 section 5.6.4): '"' and '\\' escaped */
    hdr = pt_arena_alloc(&cx->conf->arena, 2 * n + 48);
    if (hdr == NULL || ac->auth_where == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    o = hdr + sprintf(hdr, "Basic realm=\"");
    for (size_t i = 0; i < n; i++) {
        if (realm[i] == '"' || realm[i] == '\\')
            *o++ = '\\';
        *o++ = realm[i];
    }
    strcpy(o, "\", charset=\"UTF-8\"");
    ac->realm = realm;
    ac->www_authenticate = hdr;
    return PT_OK;
}

static int
user_cmp(const void *a, const void *b)
{
    return strcmp(((const struct pt_auth_user *)a)->name, ((const struct pt_auth_user *)b)->name);
}

/* A hash portico accepts: bcrypt, SHA-512 or SHA-256 crypt, well formed (crypt_checksalt). */
static const char *
hash_problem(const char *h)
{
    if (strncmp(h, "$2y$", 4) != 0 && strncmp(h, "$2b$", 4) != 0 && strncmp(h, "$2a$", 4) != 0 &&
        strncmp(h, "$6$", 3) != 0 && strncmp(h, "$5$", 3) != 0)
        return h[0] == '$' || h[0] == '{' ? "a hash scheme portico does not accept (use bcrypt, "
                                            "$6$ or $5$)"
                                          : "a plaintext password or an old DES hash (use bcrypt, "
                                            "$6$ or $5$)";
    if (strlen(h) > AUTH_HASH_MAX)
        return "a hash too long";
    switch (crypt_checksalt(h)) {
    case CRYPT_SALT_OK:
    case CRYPT_SALT_METHOD_LEGACY:
    case CRYPT_SALT_TOO_CHEAP:
        return NULL;
    default:
        return "a malformed hash";
    }
}

/* `auth_basic_user_file FILE;`: read now (and on every reload), never per request. Lines are
 * `user:hash` or `user:hash:comment`; `#` comments and blank lines are skipped. A line whose
 * hash portico does not accept is a warning, and that user cannot log in. */
static int
set_auth_user_file(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_access_conf *ac = conf;
    struct pt_auth_file *af;
    struct pt_arena *a = &cx->conf->arena;
    FILE *f;
    char line[4096];
    unsigned lineno = 0, cap = 0;

    (void)d;
    if (ac->users != NULL)
        return pt_conf_duplicate(cx);
    f = fopen(cx->args[1], "r");
    if (f == NULL)
        return pt_conf_error(cx, 1, "cannot read \"%s\": %s", cx->args[1], strerror(errno));
    af = pt_arena_calloc(a, sizeof(*af));
    if (af == NULL) {
        fclose(f);
        return pt_conf_error(cx, 0, "out of memory");
    }
    af->path = cx->args[1];
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t n = strlen(line);
        char *colon, *hash, *end;
        const char *why;

        lineno++;
        if (n > 0 && line[n - 1] != '\n' && !feof(f)) {
            pt_conf_warn_at(cx, cx->lines[1], cx->cols[1], "%s:%u: line too long, skipped",
                            af->path, lineno);
            int c;

            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
            continue;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        colon = strchr(line, ':');
        if (colon == NULL || colon == line) {
            pt_conf_warn_at(cx, cx->lines[1], cx->cols[1], "%s:%u: not \"user:hash\", skipped",
                            af->path, lineno);
            continue;
        }
        *colon = '\0';
        hash = colon + 1;
        /* bcrypt and crypt hashes hold no ':'; what follows one is a comment */
        end = strchr(hash, ':');
        if (end != NULL)
            *end = '\0';
        why = hash_problem(hash);
        if (why != NULL) {
            /* the password is never echoed: only the user and what is wrong */
            pt_conf_warn_at(cx, cx->lines[1], cx->cols[1],
                            "%s:%u: user \"%s\" has %s: that user cannot log in", af->path,
                            lineno, line, why);
            continue;
        }
        if (af->n_users == cap) {
            unsigned nc = cap == 0 ? 16 : cap * 2;
            struct pt_auth_user *v = pt_arena_grow(a, af->users, cap * sizeof(*v),
                                                   nc * sizeof(*v));

            if (v == NULL)
                break;
            af->users = v;
            cap = nc;
        }
        af->users[af->n_users].name = pt_arena_strdup(a, line);
        af->users[af->n_users].hash = pt_arena_strdup(a, hash);
        if (af->users[af->n_users].name == NULL || af->users[af->n_users].hash == NULL)
            break;
        af->n_users++;
    }
    OPENSSL_cleanse(line, sizeof(line));
    fclose(f);
    if (af->n_users > 1)
        qsort(af->users, af->n_users, sizeof(*af->users), user_cmp);
    for (unsigned i = 1; i < af->n_users; i++)
        if (strcmp(af->users[i - 1].name, af->users[i].name) == 0)
            pt_conf_warn_at(cx, cx->lines[1], cx->cols[1],
                            "%s: user \"%s\" is listed twice: either password works",
                            af->path, af->users[i].name);
    if (af->n_users == 0)
        pt_conf_warn_at(cx, cx->lines[1], cx->cols[1], "%s: no usable user: every request "
                        "will get 401", af->path);
    ac->users = af;
    return PT_OK;
}

/* `require_client_cert on | off;` and `require_client_cert_subject REGEX;` (which implies on):
 * written once per level, the later one wins over what the level inherits. */
static int
set_cert(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_access_conf *ac = conf;
    char where[512];

    if (ac->cert != PT_UNSET)
        return pt_conf_error(cx, 0, "\"%s\": the level already has a client-certificate "
                             "requirement", d->name);
    snprintf(where, sizeof(where), "%s:%d", cx->file, cx->lines[0]);
    ac->cert_where = pt_arena_strdup(&cx->conf->arena, where);
    ac->cert_line = cx->lines[0];
    ac->cert_col = cx->cols[0];
    if (strcmp(d->name, "require_client_cert") == 0) {
        if (strcmp(cx->args[1], "on") != 0 && strcmp(cx->args[1], "off") != 0)
            return pt_conf_error(cx, 1, "expected on or off in \"require_client_cert\"");
        ac->cert = cx->args[1][1] == 'n';
        return PT_OK;
    }
    ac->cert = 1;
    ac->cert_subject = pt_conf_regex(cx, 1, false);
    ac->cert_subject_text = cx->args[1];
    return ac->cert_subject != NULL ? PT_OK : PT_ERR;
}

static const struct pt_directive access_directives[] = {
    {"allow", ACCESS_CTX, 1, 1, 0, PT_BASE_MODULE, set_access, 0, NULL},
    {"deny", ACCESS_CTX, 1, 1, 0, PT_BASE_MODULE, set_access, 0, NULL},
    {"require_client_cert", ACCESS_CTX, 1, 1, 0, PT_BASE_MODULE, set_cert, 0, NULL},
    {"require_client_cert_subject", ACCESS_CTX, 1, 1, 0, PT_BASE_MODULE, set_cert, 0, NULL},
    {"auth_basic", ACCESS_CTX, 1, 1, 0, PT_BASE_MODULE, set_auth_basic, 0, NULL},
    {"auth_basic_user_file", ACCESS_CTX, 1, 1, 0, PT_BASE_MODULE, set_auth_user_file, 0, NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

static void *
access_conf_create(struct pt_conf_ctx *cx, unsigned level)
{
    struct pt_access_conf *ac;

    if (level != PT_CTX_MAIN && level != PT_CTX_SERVER && level != PT_CTX_LOCATION)
        return NULL;
    ac = pt_arena_calloc(&cx->conf->arena, sizeof(*ac));
    if (ac != NULL) {
        ac->n_rules = PT_UNSET;
        ac->auth_set = PT_UNSET;
        ac->cert = PT_UNSET;
    }
    return ac;
}

/* nginx's inheritance: a level without allow / deny rules of its own takes its parent's list
 * whole; one with rules replaces it. */
static int
access_conf_merge(struct pt_conf_ctx *cx, void *parent, void *child)
{
    const struct pt_access_conf *p = parent;
    struct pt_access_conf *c = child;

    (void)cx;
    if (p == NULL)
        return PT_OK;
    if (c->n_rules == PT_UNSET) {
        c->rules = p->rules;
        c->n_rules = p->n_rules;
    }
    if (c->auth_set == PT_UNSET) {
        c->auth_set = p->auth_set;
        c->realm = p->realm;
        c->www_authenticate = p->www_authenticate;
        c->auth_where = p->auth_where;
        c->auth_line = p->auth_line;
        c->auth_col = p->auth_col;
    }
    if (c->users == NULL)
        c->users = p->users;
    if (c->cert == PT_UNSET) {
        c->cert = p->cert;
        c->cert_subject = p->cert_subject;
        c->cert_subject_text = p->cert_subject_text;
        c->cert_where = p->cert_where;
        c->cert_line = p->cert_line;
        c->cert_col = p->cert_col;
    }
    return PT_OK;
}

/* After HTTP merged the levels: auth_basic needs a user file wherever it is on. */
static int
access_conf_validate(struct pt_conf_ctx *cx)
{
    struct pt_http_main *m = pt_http_main(cx->conf);

    for (unsigned i = 0; m != NULL && i < m->n_vhosts; i++) {
        struct pt_vhost *vh = m->vhosts[i];

        for (unsigned j = 0; j < vh->n_locs; j++) {
            struct pt_access_conf *ac = conf_of(vh->locs[j]->mod);

            /* a certificate portico never asks for cannot be required */
            if (ac != NULL && ac->cert == 1 && !ac->cert_reported &&
                (vh->tls == NULL || vh->tls->verify_client == PT_TLS_VERIFY_OFF)) {
                pt_conf_error_at(cx, ac->cert_line, ac->cert_col,
                                 "a client-certificate requirement (location \"%s\") in a "
                                 "server block without \"tls_verify_client on\" or "
                                 "\"optional\"", vh->locs[j]->path);
                ac->cert_reported = 1;
            }
            if (ac != NULL && ac->realm != NULL && ac->users == NULL && !ac->reported) {
                pt_conf_error_at(cx, ac->auth_line, ac->auth_col,
                                 "\"auth_basic\" without \"auth_basic_user_file\" (location "
                                 "\"%s\")", vh->locs[j]->path);
                ac->reported = 1;
            }
        }
    }
    return pt_conf_nerrors(cx) > 0 ? PT_ERR : PT_OK;
}

static int
access_worker_init(struct pt_worker *w)
{
    struct access_worker *aw = calloc(1, sizeof(*aw));

    if (aw == NULL)
        return PT_ERR;
    aw->stats = pt_stats_get(&w->stats, "access", NULL, NULL, sizeof(*aw->stats));
    if (RAND_bytes(aw->key, sizeof(aw->key)) != 1) {
        free(aw);
        return PT_ERR;
    }
    w->mod[pt_module_access._index] = aw;
    return aw->stats != NULL ? PT_OK : PT_ERR;
}

static void
access_worker_fini(struct pt_worker *w)
{
    struct access_worker *aw = w->mod[pt_module_access._index];

    if (aw != NULL) {
        OPENSSL_cleanse(aw->cache, sizeof(aw->cache));
        if (aw->crypt != NULL)
            OPENSSL_cleanse(aw->crypt, sizeof(*aw->crypt));
        free(aw->crypt);
    }
    free(aw);
    w->mod[pt_module_access._index] = NULL; /* the counters live on in w->stats */
}

struct pt_module pt_module_access = {
    .abi = PT_MODULE_ABI,
    .name = "access",
    .kind = PT_MODULE_SUBSYSTEM,
    .directives = access_directives,
    .conf_create = access_conf_create,
    .conf_merge = access_conf_merge,
    .conf_validate = access_conf_validate,
    .worker_init = access_worker_init,
    .worker_fini = access_worker_fini,
};

/* ---- running ---------------------------------------------------------------------------- */

static const struct pt_access_rule *
first_match(const struct pt_access_conf *ac, const struct sockaddr *client)
{
    for (int i = 0; ac != NULL && i < ac->n_rules; i++) {
        const struct pt_access_rule *r = &ac->rules[i];

        if (r->cidr.family == 0 || pt_cidr_match(&r->cidr, 1, client))
            return r;
    }
    return NULL;
}

enum pt_access
pt_http_access(const struct pt_exchange *x)
{
    const struct pt_access_rule *r =
        x->loc != NULL ? first_match(conf_of(x->loc->mod), pt_exchange_client(x)) : NULL;

    return r == NULL ? PT_ACCESS_DEFAULT : r->allow ? PT_ACCESS_ALLOWED : PT_ACCESS_DENIED;
}

void
pt_access_refuse(struct pt_exchange *x, enum pt_deny_reason why, unsigned status, const char *body,
       const char *hname, const char *hvalue, const char *details)
{
    x->deny_status = status;
    x->deny_body = body;
    x->deny_hname = hname;
    x->deny_hvalue = hvalue;
    x->perr = PT_PERR_HTTP_REQUEST_DENIED;
    x->perr_details = details;
    count_denied(x, why);
}

static int
b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Standard base64 (RFC 4648 section 4), padding optional. Length, or -1. */
static ssize_t
b64decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    unsigned acc = 0, bits = 0;

    while (n > 0 && s[n - 1] == '=')
        n--;
    for (size_t i = 0; i < n; i++) {
        int v = b64val((unsigned char)s[i]);

        if (v < 0)
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    return (ssize_t)o;
}

/* Basic authentication of x against ac's users. NULL when the credentials are good; else why
 * not (for the log; never the password). *user: the user name tried, or NULL. */
static const char *
check_basic(struct pt_exchange *x, const struct pt_access_conf *ac, char *user, size_t ucap)
{
    struct access_worker *aw = worker_of(x);
    int hi = pt_hdrs_find_name(&x->req, "authorization", 13);
    char cred[AUTH_MAX + 1];
    const char *v, *pass, *why = NULL;
    size_t vl;
    ssize_t n;
    char *colon;
    const struct pt_auth_user *u;
    unsigned char dig[SHA256_DIGEST_LENGTH];
    unsigned slot;

    user[0] = '\0';
    if (hi < 0)
        return "no credentials";
    v = x->req.v[hi].value;
    vl = x->req.v[hi].vlen;
    if (vl < 6 || strncasecmp(v, "basic ", 6) != 0)
        return "not Basic credentials";
    v += 6;
    vl -= 6;
    while (vl > 0 && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    if (vl > AUTH_MAX * 4 / 3 + 4)
        return "credentials too long";
    n = b64decode(v, vl, cred, AUTH_MAX);
    if (n < 0)
        return "credentials not valid base64";
    cred[n] = '\0';
    colon = memchr(cred, ':', (size_t)n);
    if (colon == NULL || memchr(cred, '\0', (size_t)n) != NULL) {
        why = "credentials without user:password";
        goto out;
    }
    *colon = '\0';
    pass = colon + 1;
    snprintf(user, ucap, "%s", cred);
    u = bsearch(&(struct pt_auth_user){.name = cred}, ac->users->users, ac->users->n_users,
                sizeof(*u), user_cmp);
    if (u == NULL) {
        why = "unknown user";
        goto out;
    }
    if (aw == NULL) {
        why = "no worker state";
        goto out;
    }
    /* the cache: a digest of key, hash, user and password */
    {
        unsigned char m[sizeof(aw->key) + AUTH_HASH_MAX + 1 + AUTH_MAX + 1];
        size_t hl = strlen(u->hash), cl = (size_t)n; /* cred holds user\0password */

        memcpy(m, aw->key, sizeof(aw->key));
        memcpy(m + sizeof(aw->key), u->hash, hl + 1);
        memcpy(m + sizeof(aw->key) + hl + 1, cred, cl);
        SHA256(m, sizeof(aw->key) + hl + 1 + cl, dig);
        OPENSSL_cleanse(m, sizeof(m));
    }
    slot = ((unsigned)dig[0] | (unsigned)dig[1] << 8) % AUTH_CACHE_SLOTS;
    if (aw->used[slot] && CRYPTO_memcmp(aw->cache[slot], dig, sizeof(dig)) == 0)
        goto out; /* verified before */
    if (aw->crypt == NULL && (aw->crypt = calloc(1, sizeof(*aw->crypt))) == NULL) {
        why = "out of memory";
        goto out;
    }
    {
        const char *h = crypt_r(pass, u->hash, aw->crypt);
        size_t hl = strlen(u->hash);

        if (h == NULL || strlen(h) != hl || CRYPTO_memcmp(h, u->hash, hl) != 0) {
            why = "wrong password";
            goto out;
        }
    }
    memcpy(aw->cache[slot], dig, sizeof(dig));
    aw->used[slot] = 1;
out:
    OPENSSL_cleanse(cred, sizeof(cred));
    OPENSSL_cleanse(dig, sizeof(dig));
    return why;
}

/* A user name for a log line: printable ASCII only, so a client cannot forge lines. */
static void
log_safe(char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f || *s == '"')
            *s = '?';
}

void
pt_access_phase(struct pt_exchange *x)
{
    const struct pt_access_conf *ac;
    const struct pt_access_rule *r;

    if (x->fe == NULL || x->loc == NULL)
        return;
    /* nginx's preaccess phase first: limit_req and limit_conn, so that a limit also bounds
     * what a client guessing passwords costs (a bcrypt check holds the worker for
     * milliseconds) */
    pt_limit_phase(x);
    if (x->deny_status != 0)
        return;
    ac = conf_of(x->loc->mod);
    if (ac == NULL)
        return;
    r = first_match(ac, pt_exchange_client(x));
    if (r != NULL && !r->allow) {
        pt_log(PT_LOG_INFO, "client %s: denied by \"deny %s\" at %s:%d, answering 403 "
               "request_id=%s", x->peer_ip != NULL ? x->peer_ip : "?", r->text, r->file,
               r->line, pt_request_id(x));
        pt_access_refuse(x, PT_DENY_ACCESS, 403, "403 Forbidden: access denied by portico's rules\n",
               NULL, NULL, "access denied by a deny rule");
        return;
    }
    if (ac->cert == 1) {
        const char *subj = x->tls_client_subject;
        int rc = subj == NULL || ac->cert_subject == NULL
                     ? 1
                     : pt_regex_match(ac->cert_subject, subj, strlen(subj), NULL);

        if (subj == NULL || rc != 1) {
            char shown[256];

            snprintf(shown, sizeof(shown), "%s", subj != NULL ? subj : "");
            log_safe(shown);
            if (subj == NULL)
                pt_log(PT_LOG_INFO, "client %s: no verified client certificate "
                       "(require_client_cert at %s), answering 403 request_id=%s",
                       x->peer_ip != NULL ? x->peer_ip : "?", ac->cert_where, pt_request_id(x));
            else
                pt_log(PT_LOG_INFO, "client %s: client certificate subject \"%s\" %s "
                       "\"%s\" (require_client_cert_subject at %s), answering 403 "
                       "request_id=%s", x->peer_ip != NULL ? x->peer_ip : "?", shown,
                       rc == 0 ? "does not match" : "could not be matched against",
                       ac->cert_subject_text, ac->cert_where, pt_request_id(x));
            pt_access_refuse(x, PT_DENY_CERT, 403,
                             subj == NULL ? "403 Forbidden: portico requires a client "
                                            "certificate here\n"
                                          : "403 Forbidden: portico does not accept this client "
                                            "certificate here\n",
                             NULL, NULL,
                             subj == NULL ? "no client certificate"
                                          : "client certificate subject not accepted");
            return;
        }
    }
    if (ac->realm != NULL && ac->users != NULL) {
        char user[128];
        const char *why = check_basic(x, ac, user, sizeof(user));

        if (why != NULL) {
            log_safe(user);
            pt_log(PT_LOG_INFO, "client %s: basic authentication (auth_basic at %s) failed: %s%s%s%s, "
                   "answering 401 request_id=%s", x->peer_ip != NULL ? x->peer_ip : "?",
                   ac->auth_where, why, user[0] != '\0' ? " (user \"" : "", user,
                   user[0] != '\0' ? "\")" : "", pt_request_id(x));
            pt_access_refuse(x, PT_DENY_AUTH, 401,
                   "401 Unauthorized: portico needs valid credentials (basic authentication)\n",
                   "WWW-Authenticate", ac->www_authenticate, "basic authentication failed");
            return;
        }
    }
}

bool
pt_access_explain(struct pt_exchange *x, FILE *out)
{
    const struct pt_access_conf *ac = conf_of(x->loc->mod);
    const struct pt_access_rule *r;

    pt_limit_print(x->loc, out, "limits    ", "          ");
    if (ac == NULL)
        return false;
    if (ac->n_rules > 0) {
        r = first_match(ac, pt_exchange_client(x));
        if (r == NULL) {
            fprintf(out, "access    no allow / deny rule matches %s: let in\n",
                    x->peer_ip != NULL ? x->peer_ip : "the client");
        } else if (r->allow) {
            fprintf(out, "access    let in by \"allow %s\" (%s:%d)\n", r->text, r->file, r->line);
        } else {
            fprintf(out, "access    refused by \"deny %s\" (%s:%d)\n", r->text, r->file,
                    r->line);
            fprintf(out, "answer    403 from portico: access denied by portico's rules "
                         "(Proxy-Status error=http_request_denied)\n");
            return true;
        }
    }
    if (ac->cert == 1) {
        if (ac->cert_subject != NULL)
            fprintf(out, "client cert a verified client certificate whose subject matches \"%s\" "
                         "(%s), else 403\n", ac->cert_subject_text, ac->cert_where);
        else
            fprintf(out, "client cert a verified client certificate (%s), else 403\n",
                    ac->cert_where);
    }
    if (ac->realm != NULL && ac->users != NULL)
        fprintf(out, "auth      basic, realm \"%s\", %u user(s) of %s (auth_basic at %s): "
                     "without valid credentials 401\n",
                ac->realm, ac->users->n_users, ac->users->path, ac->auth_where);
    return false;
}

void
pt_access_end(struct pt_exchange *x)
{
    pt_limit_end(x);
}
