/* SPDX-License-Identifier: MIT */
/* One asynchronous Redis connection per event loop (see redis.h): hiredis does the protocol,
 * its libev adapter the I/O on the caller's loop; nothing here blocks but pt_redis_resolve,
 * which runs when a configuration is loaded. The connection's states: connecting (AUTH,
 * SELECT and SCRIPT LOAD are queued behind the connect), up (the script's SHA1 known), down
 * (waiting for the next attempt: 100 ms doubling to 5 s). */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libev.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/common.h"
#include "core/log.h"
#include "net/redis.h"

#define REDIS_PORT_DEFAULT 6379
#define REDIS_ARGS_MAX 16

struct pt_redis {
    struct ev_loop *loop;
    redisAsyncContext *ac; /* NULL while down */
    struct pt_redis_addr a;
    char *script;
    char sha[41];
    pt_redis_state_cb *state_cb;
    void *arg;
    bool up;
    unsigned failures;  /* failed attempts in a row */
    unsigned waiting;   /* commands sent and not answered */
    ev_timer retry;     /* the next attempt */
    ev_timer watchdog;  /* connect timeout, then "no answer" */
    double answer_timeout; /* seconds without an answer while commands wait: drop it */
};

/* ---- URL --------------------------------------------------------------------------------- */

static int
url_err(char *err, size_t len, const char *fmt, const char *a)
{
    snprintf(err, len, fmt, a);
    return PT_ERR;
}

int
pt_redis_parse_url(const char *url, struct pt_redis_addr *a, char *err, size_t errlen)
{
    const char *p, *at, *hs, *he, *end;
    char num[16];

    memset(a, 0, sizeof(*a));
    a->port = REDIS_PORT_DEFAULT;
    if (strncmp(url, "redis://", 8) != 0)
        return url_err(err, errlen, "expected redis://HOST:PORT[/DB], not \"%.64s\"", url);
    p = url + 8;
    /* userinfo: up to the last '@' (a password may contain '@' and '/'; the rest cannot) */
    at = strrchr(p, '@');
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen, plen;

        if (colon == NULL)
            return url_err(err, errlen, "%s", "expected redis://[USER]:PASSWORD@HOST:PORT (the "
                           "password after a colon)");
        ulen = (size_t)(colon - p);
        plen = (size_t)(at - colon - 1);
        if (ulen >= sizeof(a->user) || plen >= sizeof(a->password) || plen == 0)
            return url_err(err, errlen, "%s", "the user or password in the redis:// URL is "
                           "empty or too long (at most 127 bytes)");
        memcpy(a->user, p, ulen);
        memcpy(a->password, colon + 1, plen);
        p = at + 1;
    }
    end = p + strcspn(p, "/");
    /* host: [IPv6] or up to the port's colon */
    if (*p == '[') {
        hs = p + 1;
        he = memchr(hs, ']', (size_t)(end - hs));
        if (he == NULL)
            return url_err(err, errlen, "%s", "unclosed '[' in the redis:// host");
        p = he + 1;
    } else {
        hs = p;
        he = hs + strcspn(hs, ":/");
        if (he > end)
            he = end;
        p = he;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof(a->host))
        return url_err(err, errlen, "%s", "the redis:// URL needs a host (at most 255 bytes)");
    memcpy(a->host, hs, (size_t)(he - hs));
    if (*p == ':') {
        size_t n = (size_t)(end - p - 1);
        uint64_t port;

        if (n == 0 || n >= sizeof(num))
            return url_err(err, errlen, "%s", "expected a port from 1 to 65535 after the "
                           "redis:// host");
        memcpy(num, p + 1, n);
        num[n] = '\0';
        if (pt_parse_uint(num, 65535, &port) != PT_OK || port == 0)
            return url_err(err, errlen, "redis:// port \"%s\" is not from 1 to 65535", num);
        a->port = (uint16_t)port;
    } else if (p != end) {
        return url_err(err, errlen, "%s", "unexpected characters after the redis:// host");
    }
    if (*end == '/' && end[1] != '\0') {
        uint64_t db;

        if (pt_parse_uint(end + 1, PT_REDIS_DB_MAX, &db) != PT_OK)
            return url_err(err, errlen, "redis:// database \"%.32s\" is not a number from 0 "
                           "to 15", end + 1);
        a->db = (unsigned)db;
    }
    snprintf(a->shown, sizeof(a->shown), strchr(a->host, ':') != NULL ? "[%s]:%u" : "%s:%u",
             a->host, a->port);
    return PT_OK;
}

int
pt_redis_resolve(struct pt_redis_addr *a, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(a->host, NULL, &hints, &res);

    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "cannot resolve redis host \"%s\": %s", a->host,
                 rc != 0 ? gai_strerror(rc) : "no address");
        return PT_ERR;
    }
    if (res->ai_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, a->ip,
                  sizeof(a->ip));
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, a->ip, sizeof(a->ip));
    freeaddrinfo(res);
    return PT_OK;
}

double
pt_redis_backoff(unsigned failures)
{
    double d = 0.1;

    for (unsigned i = 0; i < failures && d < 5.0; i++)
        d *= 2;
    return d < 5.0 ? d : 5.0;
}

/* ---- the connection ---------------------------------------------------------------------- */

static void attempt(struct pt_redis *r);

static void
watchdog_update(struct pt_redis *r)
{
    if (r->waiting > 0 || (r->ac != NULL && !r->up)) {
        r->watchdog.repeat = r->answer_timeout;
        ev_timer_again(r->loop, &r->watchdog);
    } else {
        ev_timer_stop(r->loop, &r->watchdog);
    }
}

/* The connection failed: close it (its waiting commands are answered with nothing), report,
 * and try again after the backoff. */
static void
fail(struct pt_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;

    r->ac = NULL;
    r->up = false;
    if (ac != NULL) {
        ac->data = NULL; /* its disconnect callback is ours no more */
        redisAsyncFree(ac); /* deferred by hiredis when inside its callback */
    }
    r->waiting = 0;
    ev_timer_stop(r->loop, &r->watchdog);
    ev_timer_set(&r->retry, pt_redis_backoff(r->failures), 0.);
    ev_timer_start(r->loop, &r->retry);
    if (r->failures < 64)
        r->failures++;
    r->state_cb(r, false, why, r->arg);
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
    struct pt_redis *r = ac->data;
    char why[160];

    if (r == NULL || status == REDIS_OK)
        return;
    /* hiredis frees ac after this callback */
    snprintf(why, sizeof(why), "connect: %s", ac->errstr[0] != '\0' ? ac->errstr : "failed");
    ((redisAsyncContext *)ac)->data = NULL;
    r->ac = NULL;
    fail(r, why);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    struct pt_redis *r = ac->data;
    char why[160];

    (void)status;
    if (r == NULL)
        return;
    snprintf(why, sizeof(why), "connection lost: %s",
             ac->errstr[0] != '\0' ? ac->errstr : "closed by the server");
    r->ac = NULL; /* hiredis frees it */
    fail(r, why);
}

static void
on_watchdog(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_redis *r = pt_container_of(t, struct pt_redis, watchdog);

    (void)loop;
    (void)revents;
    char why[64];

    snprintf(why, sizeof(why), "%s within %gs", r->up ? "no answer" : "not connected",
             r->answer_timeout);
    fail(r, why);
}

static void
on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    attempt(pt_container_of(t, struct pt_redis, retry));
}

/* AUTH and SELECT: an error reply fails the connection (NULL: the connection failed and
 * reports it itself). */
static void
on_setup(redisAsyncContext *ac, void *reply, void *priv)
{
    struct pt_redis *r = ac->data;
    redisReply *rep = reply;
    char why[200];

    if (r == NULL || rep == NULL)
        return;
    r->waiting--;
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "%s: %.150s", (const char *)priv, rep->str);
        fail(r, why);
        return;
    }
    watchdog_update(r);
}

static void
on_script_load(redisAsyncContext *ac, void *reply, void *priv)
{
    struct pt_redis *r = ac->data;
    redisReply *rep = reply;
    char why[200];

    (void)priv;
    if (r == NULL || rep == NULL)
        return;
    r->waiting--;
    if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
        snprintf(why, sizeof(why), "SCRIPT LOAD: %.150s",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected answer");
        fail(r, why);
        return;
    }
    memcpy(r->sha, rep->str, 40);
    r->sha[40] = '\0';
    r->up = true;
    r->failures = 0;
    watchdog_update(r);
    r->state_cb(r, true, NULL, r->arg);
}

static void
attempt(struct pt_redis *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->a.ip[0] != '\0' ? r->a.ip : r->a.host,
                                              r->a.port);
    char why[160];

    if (ac == NULL || ac->err != 0) {
        snprintf(why, sizeof(why), "connect: %s", ac != NULL ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        fail(r, why);
        return;
    }
    if (redisLibevAttach(r->loop, ac) != REDIS_OK) {
        redisAsyncFree(ac);
        fail(r, "connect: cannot attach to the event loop");
        return;
    }
    ac->data = r;
    r->ac = ac;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* queued behind the connect, answered in order */
    if (r->a.password[0] != '\0') {
        if (r->a.user[0] != '\0')
            redisAsyncCommand(ac, on_setup, "AUTH", "AUTH %s %s", r->a.user, r->a.password);
        else
            redisAsyncCommand(ac, on_setup, "AUTH", "AUTH %s", r->a.password);
        r->waiting++;
    }
    if (r->a.db != 0) {
        redisAsyncCommand(ac, on_setup, "SELECT", "SELECT %u", r->a.db);
        r->waiting++;
    }
    redisAsyncCommand(ac, on_script_load, NULL, "SCRIPT LOAD %s", r->script);
    r->waiting++;
    watchdog_update(r);
}

struct pt_redis *
pt_redis_new(struct ev_loop *loop, const struct pt_redis_addr *a, const char *script,
             double answer_timeout, pt_redis_state_cb *state_cb, void *arg)
{
    struct pt_redis *r = calloc(1, sizeof(*r));

    if (r == NULL || (r->script = strdup(script)) == NULL) {
        free(r);
        return NULL;
    }
    r->loop = loop;
    r->a = *a;
    r->answer_timeout = answer_timeout > 0 ? answer_timeout : 1.0;
    r->state_cb = state_cb;
    r->arg = arg;
    ev_timer_init(&r->retry, on_retry, 0., 0.);
    ev_init(&r->watchdog, on_watchdog);
    attempt(r);
    return r;
}

void
pt_redis_free(struct pt_redis *r)
{
    if (r == NULL)
        return;
    ev_timer_stop(r->loop, &r->retry);
    ev_timer_stop(r->loop, &r->watchdog);
    if (r->ac != NULL) {
        redisAsyncContext *ac = r->ac;

        r->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac); /* answers every waiting command with nothing */
    }
    explicit_bzero(r->a.password, sizeof(r->a.password));
    free(r->script);
    free(r);
}

bool
pt_redis_up(const struct pt_redis *r)
{
    return r != NULL && r->up && r->ac != NULL;
}

/* ---- scripts ----------------------------------------------------------------------------- */

/* A command waiting for its answer: the arguments are kept to send EVAL after NOSCRIPT. */
struct cmd {
    struct pt_redis *r;
    redisAsyncContext *ac; /* the connection it was sent on */
    pt_redis_reply_cb *cb;
    void *arg;
    unsigned nkeys, argc;
    bool retried;
    const char *argv[REDIS_ARGS_MAX];
    size_t argvlen[REDIS_ARGS_MAX];
    char data[];
};

static int send_cmd(struct cmd *c, bool full);

static void
on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cmd *c = priv;
    struct pt_redis *r = ac->data; /* NULL once the connection failed or closed */
    redisReply *rep = reply;
    int64_t v[8];
    unsigned n = 0;
    const char *err = NULL;

    if (r != NULL && r->ac == ac && c->r == r) {
        r->waiting--;
        watchdog_update(r);
    }
    if (rep == NULL) {
        err = "no connection";
    } else if (rep->type == REDIS_REPLY_ERROR) {
        if (!c->retried && strncmp(rep->str, "NOSCRIPT", 8) == 0 && r != NULL && r->ac == ac) {
            c->retried = true;
            if (send_cmd(c, true) == PT_OK)
                return;
        }
        err = rep->str;
    } else if (rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < rep->elements && n < PT_ARRAY_LEN(v); i++) {
            if (rep->element[i]->type != REDIS_REPLY_INTEGER) {
                err = "unexpected answer";
                break;
            }
            v[n++] = rep->element[i]->integer;
        }
    } else {
        err = "unexpected answer";
    }
    c->cb(c->arg, err == NULL ? v : NULL, n, err);
    free(c);
}

static int
send_cmd(struct cmd *c, bool full)
{
    struct pt_redis *r = c->r;
    const char *argv[REDIS_ARGS_MAX + 3];
    size_t argvlen[REDIS_ARGS_MAX + 3];
    char nk[12];

    if (!pt_redis_up(r))
        return PT_ERR;
    snprintf(nk, sizeof(nk), "%u", c->nkeys);
    argv[0] = full ? "EVAL" : "EVALSHA";
    argvlen[0] = strlen(argv[0]);
    argv[1] = full ? r->script : r->sha;
    argvlen[1] = strlen(argv[1]);
    argv[2] = nk;
    argvlen[2] = strlen(nk);
    for (unsigned i = 0; i < c->argc; i++) {
        argv[3 + i] = c->argv[i];
        argvlen[3 + i] = c->argvlen[i];
    }
    if (redisAsyncCommandArgv(r->ac, on_reply, c, (int)c->argc + 3, argv, argvlen) != REDIS_OK)
        return PT_ERR;
    c->ac = r->ac;
    r->waiting++;
    watchdog_update(r);
    return PT_OK;
}

int
pt_redis_eval(struct pt_redis *r, unsigned nkeys, unsigned argc, const char **argv,
              const size_t *argvlen, pt_redis_reply_cb *cb, void *arg)
{
    size_t total = 0;
    struct cmd *c;
    char *p;

    if (!pt_redis_up(r) || argc > REDIS_ARGS_MAX || nkeys > argc)
        return PT_ERR;
    for (unsigned i = 0; i < argc; i++)
        total += argvlen[i];
    c = malloc(sizeof(*c) + total + 1);
    if (c == NULL)
        return PT_ERR;
    *c = (struct cmd){.r = r, .cb = cb, .arg = arg, .nkeys = nkeys, .argc = argc};
    p = c->data;
    for (unsigned i = 0; i < argc; i++) {
        memcpy(p, argv[i], argvlen[i]);
        c->argv[i] = p;
        c->argvlen[i] = argvlen[i];
        p += argvlen[i];
    }
    if (send_cmd(c, false) != PT_OK) {
        free(c);
        return PT_ERR;
    }
    return PT_OK;
}
