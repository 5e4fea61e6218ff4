/* SPDX-License-Identifier: MIT */
/* `status;` in a location: what portico is doing now, as JSON (`Accept: application/json` or
 * `?format=json`) or as an HTML page for a browser (rendered here: the page needs no script),
 * and the admin actions on servers:
 *
 *   POST LOCATION/servers/UPSTREAM/ADDRESS/drain    no new request to the server
 *   POST LOCATION/servers/UPSTREAM/ADDRESS/enable   back in rotation
 *   POST LOCATION/servers/UPSTREAM/ADDRESS/check    an active health check now
 *
 * Reading follows the location's allow / deny rules (nginx semantics: no matching rule lets
 * the client in). An action needs `status_write on` and an `allow` rule that matches the
 * client: refused with 403 otherwise, so an admin endpoint is never open by default.
 *
 * Counters are summed over every worker's counter blocks at request time (core/stats.h); the
 * state of servers comes from the snapshot the request runs on. */
#include <llhttp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "core/stats.h"
#include "core/worker.h"
#include "http/exchange.h"
#include "http/headers.h"
#include "http/http.h"
#include "http/http_stats.h"
#include "net/relay-t.h"
#include "stream/stream-t.h"
#include "upstream/resilience.h"
#include "upstream/upstream.h"

/* The module's conf of a location (its slot; also the handler's conf). */
struct status_conf {
    int write; /* status_write: admin actions allowed (with an allow rule) */
    int write_line, write_col;
};

extern struct pt_module pt_module_handler_status;

/* ---- output ----------------------------------------------------------------------------- */

struct out {
    struct pt_chunk_pool *pool;
    struct pt_chain ch;
    int failed;
};

static void
put(struct out *o, const char *s, size_t n)
{
    if (!o->failed && n > 0 && pt_chain_append(o->pool, &o->ch, s, n) != PT_OK)
        o->failed = 1;
}

static void
puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3)))
putf(struct out *o, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        o->failed = 1; /* numbers and fixed words only */
        return;
    }
    put(o, buf, (size_t)n);
}

/* A JSON string: quotes, backslashes and control bytes escaped (RFC 8259 section 7). */
static void
put_json(struct out *o, const char *s)
{
    const char *run = s;

    puts_(o, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        put(o, run, (size_t)(s - run));
        if (ch == '"' || ch == '\\')
            putf(o, "\\%c", ch);
        else
            putf(o, "\\u%04x", ch);
        run = s + 1;
    }
    put(o, run, (size_t)(s - run));
    puts_(o, "\"");
}

/* Text in HTML (element content or a quoted attribute value). */
static void
put_html(struct out *o, const char *s)
{
    const char *run = s;

    for (; *s; s++) {
        const char *esc = *s == '&'    ? "&amp;"
                          : *s == '<'  ? "&lt;"
                          : *s == '>'  ? "&gt;"
                          : *s == '"'  ? "&quot;"
                          : *s == '\'' ? "&#39;"
                                       : NULL;

        if (esc == NULL)
            continue;
        put(o, run, (size_t)(s - run));
        puts_(o, esc);
        run = s + 1;
    }
    put(o, run, (size_t)(s - run));
}

/* A path segment in a URL: everything but unreserved characters percent-encoded. */
static void
put_url_segment(struct out *o, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~')
            put(o, (const char *)&ch, 1);
        else
            putf(o, "%%%02X", ch);
    }
}

/* Unix milliseconds as ISO 8601 UTC. */
static const char *
iso_time(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    size_t n;

    gmtime_r(&t, &tm);
    n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03dZ", (int)(ms % 1000));
    return buf;
}

/* A pt_now_ms() time as Unix milliseconds. */
static int64_t
mono_to_wall(int64_t mono)
{
    return pt_wall_ms() - (pt_now_ms() - mono);
}

/* ---- what the page shows ---------------------------------------------------------------- */

/* Everything summed once per request. */
struct view {
    struct pt_worker *w;           /* the worker serving the page: its newest server lists */
    const struct pt_runtime *rt;
    const struct pt_conf *conf;
    struct pt_stats_set servers;   /* "upstream_server" blocks */
    struct pt_stats_set upstreams; /* "upstream" blocks */
};

struct server_view {
    enum pt_server_state state;
    const struct pt_server_stats *st; /* NULL: nothing counted yet */
    unsigned active;
    int hc_result, hc_detail;
    int64_t hc_at;      /* Unix ms; 0 never */
    int64_t eject_end;  /* Unix ms while ejected; else 0 */
    uint64_t passes, fails;
    unsigned ejections;
    char reason[128];
    const char *reason_text;
};

static void
server_view(const struct view *v, struct pt_server *s, struct server_view *sv)
{
    const struct pt_stats_sum *sum = pt_stats_find(&v->servers, s->upstream->name, s->addr.name);
    int64_t until = atomic_load_explicit(&s->_ejected_until, memory_order_relaxed);
    int64_t at = atomic_load_explicit(&s->_hc_at, memory_order_relaxed);

    sv->state = pt_server_state(s);
    sv->st = sum != NULL ? (const struct pt_server_stats *)sum->v : NULL;
    sv->active = atomic_load_explicit(&s->_active, memory_order_relaxed);
    sv->hc_result = atomic_load_explicit(&s->_hc_result, memory_order_relaxed);
    sv->hc_detail = atomic_load_explicit(&s->_hc_detail, memory_order_relaxed);
    sv->hc_at = at != 0 ? mono_to_wall(at) : 0;
    sv->eject_end = until > pt_now_ms() ? mono_to_wall(until) : 0;
    sv->passes = atomic_load_explicit(&s->_hc_passes, memory_order_relaxed);
    sv->fails = atomic_load_explicit(&s->_hc_fails, memory_order_relaxed);
    sv->ejections = atomic_load_explicit(&s->_ejections, memory_order_relaxed);
    sv->reason_text = pt_health_result_text((enum pt_hc_result)sv->hc_result, sv->hc_detail,
                                            sv->reason, sizeof(sv->reason));
}

static const char *
balance_name(const struct pt_upstream *up)
{
    return strncmp(up->lb->name, "lb_", 3) == 0 ? up->lb->name + 3 : up->lb->name;
}

static uint64_t
ucount(const struct view *v, const struct pt_upstream *up, size_t off)
{
    const struct pt_stats_sum *sum = pt_stats_find(&v->upstreams, up->name, NULL);

    return sum != NULL ? sum->v[off / sizeof(uint64_t)] : 0;
}

#define UCOUNT(v, up, field) ucount(v, up, offsetof(struct pt_upstream_stats, field))

/* ---- JSON -------------------------------------------------------------------------------- */

static void
json_time(struct out *o, const char *key, int64_t ms)
{
    char buf[40];

    putf(o, "\"%s\":", key);
    if (ms == 0) {
        puts_(o, "null");
        return;
    }
    put_json(o, iso_time(ms, buf, sizeof(buf)));
}

static void
json_server(struct out *o, const struct view *v, struct pt_server *s)
{
    struct server_view sv;
    static const char *const cls[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

    server_view(v, s, &sv);
    puts_(o, "{\"address\":");
    put_json(o, s->addr.name);
    puts_(o, ",\"name\":");
    put_json(o, s->name);
    putf(o, ",\"state\":\"%s\",\"weight\":%u,\"backup\":%s,\"max_conns\":%u,\"draining\":%s",
         pt_server_state_names[sv.state], s->weight, s->backup ? "true" : "false",
         s->max_conns, sv.state == PT_SRV_DRAINING ? "true" : "false");
    putf(o, ",\"active\":%u,\"idle\":%llu,\"requests\":%llu,\"failures\":%llu", sv.active,
         (unsigned long long)(sv.st ? sv.st->idle : 0),
         (unsigned long long)(sv.st ? sv.st->requests : 0),
         (unsigned long long)(sv.st ? sv.st->failures : 0));
    putf(o, ",\"connections_opened\":%llu,\"connections_reused\":%llu",
         (unsigned long long)(sv.st ? sv.st->conns_opened : 0),
         (unsigned long long)(sv.st ? sv.st->conns_reused : 0));
    puts_(o, ",\"responses\":{");
    for (unsigned c = 0; c < 5; c++)
        putf(o, "%s\"%s\":%llu", c ? "," : "", cls[c],
             (unsigned long long)(sv.st ? sv.st->responses[c] : 0));
    puts_(o, "},\"health\":");
    if (!s->upstream->res.health.enabled) {
        puts_(o, "null");
    } else {
        putf(o, "{\"last\":%s,\"reason\":",
             sv.hc_result == PT_HC_NONE   ? "null"
             : sv.hc_result == PT_HC_PASS ? "\"passed\""
                                          : "\"failed\"");
        if (sv.hc_result == PT_HC_NONE || sv.hc_result == PT_HC_PASS)
            puts_(o, "null");
        else
            put_json(o, sv.reason_text);
        puts_(o, ",");
        json_time(o, "checked_at", sv.hc_at);
        putf(o, ",\"passes\":%llu,\"fails\":%llu}", (unsigned long long)sv.passes,
             (unsigned long long)sv.fails);
    }
    putf(o, ",\"ejected\":%s,", sv.eject_end != 0 ? "true" : "false");
    json_time(o, "ejected_until", sv.eject_end);
    putf(o, ",\"ejections\":%u}", sv.ejections);
}

static void
json_page(struct out *o, const struct view *v)
{
    const struct pt_upstream_main *m = pt_upstream_main(v->conf);

    puts_(o, "{\"version\":\"" PACKAGE_VERSION "\",\"instance\":");
    put_json(o, v->conf->instance_name);
    putf(o, ",\"generation\":%u,", v->conf->generation);
    json_time(o, "loaded_at", (int64_t)v->conf->loaded_at * 1000);
    puts_(o, ",");
    json_time(o, "started_at", v->rt->started_at);
    putf(o, ",\"reloads\":%llu,\"reload_failures\":%llu,\"generations_live\":%u,",
         (unsigned long long)pt_stats_load(&v->rt->reloads),
         (unsigned long long)pt_stats_load(&v->rt->reloads_failed), pt_conf_generations_live());
    puts_(o, "\"workers\":[");
    for (unsigned i = 0; i < v->rt->n_workers; i++) {
        const struct pt_worker *w = &v->rt->workers[i];

        putf(o, "%s{\"id\":%u,\"name\":\"w%u\",\"connections\":%u,", i ? "," : "", i, i,
             __atomic_load_n(&w->n_conns, __ATOMIC_RELAXED));
        putf(o, "\"http1\":%llu,\"h2\":%llu,\"ws\":%llu,\"stream\":%llu,",
             (unsigned long long)pt_stats_load(&w->n_conns_kind[PT_HTTP_CONN_H1]),
             (unsigned long long)pt_stats_load(&w->n_conns_kind[PT_HTTP_CONN_H2]),
             (unsigned long long)pt_stats_load(&w->n_conns_kind[PT_RELAY_CONN_KIND]),
             (unsigned long long)pt_stats_load(&w->n_conns_kind[PT_STREAM_CONN_KIND]));
        putf(o, "\"accepted\":%llu,\"requests\":%llu}",
             (unsigned long long)pt_stats_load(&w->n_accepted),
             (unsigned long long)pt_stats_load(&w->n_requests));
    }
    puts_(o, "],\"upstreams\":[");
    for (unsigned u = 0; u < m->n_upstreams; u++) {
        struct pt_upstream *up = m->upstreams[u];

        puts_(o, u ? ",{\"name\":" : "{\"name\":");
        put_json(o, up->name);
        putf(o, ",\"balance\":\"%s\",\"protocol\":\"%s\",\"health_check\":%s,\"pending\":%u,",
             balance_name(up), up->protocol == PT_PROTO_H2 ? (up->tls ? "h2" : "h2c") : "http1",
             up->res.health.enabled ? "true" : "false",
             atomic_load_explicit(&up->_pending, memory_order_relaxed));
        putf(o, "\"retries\":%llu,\"retry_budget_exhausted\":%llu,\"no_server\":%llu,",
             (unsigned long long)UCOUNT(v, up, retries),
             (unsigned long long)UCOUNT(v, up, retries_denied),
             (unsigned long long)UCOUNT(v, up, no_server));
        puts_(o, "\"servers\":[");
        /* the server list this worker uses now (DNS may have changed the snapshot's) */
        struct pt_upstream *live = pt_upstream_live(v->w, up);

        for (unsigned j = 0; j < live->n_servers; j++) {
            if (j)
                puts_(o, ",");
            json_server(o, v, live->servers[j]);
        }
        puts_(o, "]}");
    }
    puts_(o, "]}\n");
}

/* ---- HTML -------------------------------------------------------------------------------- */

static void
html_action(struct out *o, const char *base, const struct pt_server *s, const char *action)
{
    puts_(o, "<form method=\"post\" action=\"");
    put_html(o, base);
    puts_(o, "/servers/");
    put_url_segment(o, s->upstream->name);
    puts_(o, "/");
    put_url_segment(o, s->addr.name);
    putf(o, "/%s\"><button type=\"submit\" class=\"%s\">%s</button></form>", action, action,
         action);
}

static void
html_page(struct out *o, const struct view *v, const char *base, bool admin)
{
    const struct pt_upstream_main *m = pt_upstream_main(v->conf);
    char t1[40], t2[40];

    puts_(o, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             "<title>portico status</title>"
             "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;"
             "margin-bottom:1.5em}th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
             ".state-up{color:#060}.state-down,.state-ejected{color:#b00}"
             ".state-draining,.state-disabled{color:#a60}form{display:inline}</style>"
             "</head><body>\n<h1><span id=\"instance\">");
    put_html(o, v->conf->instance_name);
    puts_(o, "</span>: portico " PACKAGE_VERSION "</h1>\n");
    putf(o, "<p id=\"config\">Configuration generation <span id=\"generation\">%u</span>, "
            "loaded <span id=\"loaded-at\">%s</span>; started %s; ",
         v->conf->generation, iso_time((int64_t)v->conf->loaded_at * 1000, t1, sizeof(t1)),
         iso_time(v->rt->started_at, t2, sizeof(t2)));
    putf(o, "reloads %llu (%llu failed), generations live %u. <a href=\"?format=json\">JSON</a>"
            "</p>\n",
         (unsigned long long)pt_stats_load(&v->rt->reloads),
         (unsigned long long)pt_stats_load(&v->rt->reloads_failed), pt_conf_generations_live());
    puts_(o, "<h2>Workers</h2>\n<table id=\"workers\"><tr><th>worker</th><th>connections</th>"
             "<th>HTTP/1.1</th><th>HTTP/2</th><th>WebSocket</th><th>stream</th><th>accepted</th>"
             "<th>requests</th></tr>\n");
    for (unsigned i = 0; i < v->rt->n_workers; i++) {
        const struct pt_worker *w = &v->rt->workers[i];

        putf(o, "<tr class=\"worker\"><td>w%u</td><td class=\"connections\">%u</td>", i,
             __atomic_load_n(&w->n_conns, __ATOMIC_RELAXED));
        putf(o, "<td>%llu</td><td>%llu</td><td>%llu</td><td>%llu</td><td>%llu</td><td>%llu</td>"
                "</tr>\n",
             (unsigned long long)pt_stats_load(&w->n_conns_kind[PT_HTTP_CONN_H1]),
             (unsigned long long)pt_stats_load(&w->n_conns_kind[PT_HTTP_CONN_H2]),
             (unsigned long long)pt_stats_load(&w->n_conns_kind[PT_RELAY_CONN_KIND]),
             (unsigned long long)pt_stats_load(&w->n_conns_kind[PT_STREAM_CONN_KIND]),
             (unsigned long long)pt_stats_load(&w->n_accepted),
             (unsigned long long)pt_stats_load(&w->n_requests));
    }
    puts_(o, "</table>\n");
    for (unsigned u = 0; u < m->n_upstreams; u++) {
        struct pt_upstream *up = m->upstreams[u];

        puts_(o, "<h2>Upstream <span class=\"upstream-name\">");
        put_html(o, up->name);
        putf(o, "</span></h2>\n<p>balance %s, %u server(s), %u pending, retries %llu, "
                "no server %llu</p>\n",
             balance_name(up), pt_upstream_live(v->w, up)->n_servers,
             atomic_load_explicit(&up->_pending, memory_order_relaxed),
             (unsigned long long)UCOUNT(v, up, retries),
             (unsigned long long)UCOUNT(v, up, no_server));
        puts_(o, "<table class=\"upstream\" data-upstream=\"");
        put_html(o, up->name);
        puts_(o, "\"><tr><th>server</th><th>state</th><th>weight</th><th>active</th>"
                 "<th>idle</th><th>requests</th><th>failures</th><th>last health check</th>"
                 "<th>ejections</th>");
        if (admin)
            puts_(o, "<th>actions</th>");
        puts_(o, "</tr>\n");
        for (unsigned j = 0; j < pt_upstream_live(v->w, up)->n_servers; j++) {
            struct pt_server *s = pt_upstream_live(v->w, up)->servers[j];
            struct server_view sv;
            const char *st;

            server_view(v, s, &sv);
            st = pt_server_state_names[sv.state];
            puts_(o, "<tr class=\"server\" data-server=\"");
            put_html(o, s->addr.name);
            puts_(o, "\"><td class=\"name\">");
            put_html(o, s->name);
            if (s->backup)
                puts_(o, " (backup)");
            putf(o, "</td><td class=\"state state-%s\">%s", st, st);
            if (sv.eject_end != 0)
                putf(o, " until %s", iso_time(sv.eject_end, t1, sizeof(t1)));
            putf(o, "</td><td>%u</td><td class=\"active\">%u</td><td class=\"idle\">%llu</td>"
                    "<td class=\"requests\">%llu</td><td class=\"failures\">%llu</td>"
                    "<td class=\"health\">",
                 s->weight, sv.active, (unsigned long long)(sv.st ? sv.st->idle : 0),
                 (unsigned long long)(sv.st ? sv.st->requests : 0),
                 (unsigned long long)(sv.st ? sv.st->failures : 0));
            if (!up->res.health.enabled) {
                puts_(o, "-");
            } else {
                put_html(o, sv.reason_text);
                if (sv.hc_at != 0)
                    putf(o, " at %s", iso_time(sv.hc_at, t1, sizeof(t1)));
            }
            putf(o, "</td><td>%u</td>", sv.ejections);
            if (admin) {
                puts_(o, "<td>");
                html_action(o, base, s, sv.state == PT_SRV_DRAINING ? "enable" : "drain");
                if (up->res.health.enabled)
                    html_action(o, base, s, "check");
                puts_(o, "</td>");
            }
            puts_(o, "</tr>\n");
        }
        puts_(o, "</table>\n");
    }
    puts_(o, "</body></html>\n");
}

/* ---- requests ---------------------------------------------------------------------------- */

/* True when the client asked for JSON: ?format=json, or an Accept that names
 * application/json (browsers ask for text/html and get the page). */
static bool
wants_json(const struct pt_exchange *x)
{
    const char *q = memchr(x->target, '?', x->target_len);
    int i;

    if (q != NULL) {
        size_t n = x->target_len - (size_t)(q - x->target);

        if (memmem(q, n, "format=json", 11) != NULL)
            return true;
        if (memmem(q, n, "format=html", 11) != NULL)
            return false;
    }
    i = pt_hdrs_find_name(&x->req, "accept", 6);
    if (i >= 0 && memmem(x->req.v[i].value, x->req.v[i].vlen, "application/json", 16) != NULL)
        return true;
    return i < 0 || memmem(x->req.v[i].value, x->req.v[i].vlen, "text/html", 9) == NULL;
}

static int
respond_json(struct pt_exchange *x, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A short JSON answer (admin actions, errors); fmt's arguments are configured names or fixed
 * words, escaped by the caller. */
static int
respond_json(struct pt_exchange *x, unsigned status, const char *fmt, ...)
{
    struct pt_chain ch;
    char buf[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    pt_chain_init(&ch);
    if (n < 0 || (size_t)n >= sizeof(buf) - 1 ||
        pt_chain_append(&x->w->chunks, &ch, buf, (size_t)n) != PT_OK ||
        pt_chain_append(&x->w->chunks, &ch, "\n", 1) != PT_OK) {
        pt_chain_free(&x->w->chunks, &ch);
        return pt_exchange_respond(x, 500, "500 Internal Server Error\n");
    }
    return pt_exchange_respond_chain(x, status, "application/json", &ch, NULL, NULL);
}

/* The next '/'-separated segment of *p (at most len bytes), NUL-terminated in buf. */
static bool
segment(const char **p, const char *end, char *buf, size_t len)
{
    const char *slash = memchr(*p, '/', (size_t)(end - *p));
    const char *e = slash != NULL ? slash : end;
    size_t n = (size_t)(e - *p);

    if (n == 0 || n >= len)
        return false;
    memcpy(buf, *p, n);
    buf[n] = '\0';
    *p = slash != NULL ? slash + 1 : end;
    return true;
}

/* POST .../servers/UPSTREAM/ADDRESS/ACTION (the path already percent-decoded by the router). */
static int
admin_action(struct pt_exchange *x, const struct status_conf *sc, const char *p,
             const char *end)
{
    char upname[256], addr[128], action[16], who[80];
    struct pt_upstream *up;
    struct pt_server *s = NULL;
    bool changed;

    if (!segment(&p, end, upname, sizeof(upname)) || !segment(&p, end, addr, sizeof(addr)) ||
        !segment(&p, end, action, sizeof(action)) || p != end)
        return respond_json(x, 404, "{\"error\":\"not found: use servers/UPSTREAM/ADDRESS/"
                                    "drain, enable or check\"}");
    if (x->method != HTTP_POST)
        return pt_exchange_respond_with(x, 405, "405 Method Not Allowed\n", "Allow", "POST");
    if (!sc->write)
        return respond_json(x, 403, "{\"error\":\"forbidden: status_write is off\"}");
    if (pt_http_access(x) != PT_ACCESS_ALLOWED)
        return respond_json(x, 403, "{\"error\":\"forbidden: no allow rule matches the "
                                    "client\"}");
    up = pt_upstream_find(x->conf, upname);
    if (up != NULL)
        up = pt_upstream_live(x->w, up); /* the servers new requests pick from now */
    for (unsigned i = 0; up != NULL && i < up->n_servers && s == NULL; i++)
        if (strcmp(up->servers[i]->addr.name, addr) == 0)
            s = up->servers[i];
    if (s == NULL)
        return respond_json(x, 404, "{\"error\":\"no such server\"}");
    snprintf(who, sizeof(who), "admin %s", x->peer_ip != NULL ? x->peer_ip : "?");
    if (strcmp(action, "drain") == 0 || strcmp(action, "enable") == 0) {
        changed = pt_upstream_server_drain(s, action[0] == 'd', who);
    } else if (strcmp(action, "check") == 0) {
        if (!pt_health_check_now(s))
            return respond_json(x, 409, "{\"error\":\"upstream has no health_check\"}");
        pt_log(PT_LOG_NOTICE, "server %s in %s: health check asked for by %s", s->name,
               up->name, who);
        changed = true;
    } else {
        return respond_json(x, 404, "{\"error\":\"unknown action (drain, enable, check)\"}");
    }
    if (!wants_json(x)) {
        /* a form on the HTML page: back to the page */
        const char *page = pt_arena_strndup(&x->arena, x->loc->path, x->loc->path_len);

        return pt_exchange_respond_with(x, 303, NULL, "Location", page != NULL ? page : "/");
    }
    struct out o = {.pool = &x->w->chunks};

    pt_chain_init(&o.ch);
    puts_(&o, "{\"upstream\":");
    put_json(&o, up->name);
    puts_(&o, ",\"server\":");
    put_json(&o, s->addr.name);
    putf(&o, ",\"action\":\"%s\",\"changed\":%s,\"state\":\"%s\"}\n", action,
         changed ? "true" : "false", pt_server_state_names[pt_server_state(s)]);
    if (o.failed) {
        pt_chain_free(o.pool, &o.ch);
        return pt_exchange_respond(x, 500, "500 Internal Server Error\n");
    }
    return pt_exchange_respond_chain(x, strcmp(action, "check") == 0 ? 202 : 200,
                                     "application/json", &o.ch, NULL, NULL);
}

static int
status_handle(struct pt_exchange *x, const void *conf)
{
    const struct status_conf *sc = conf;
    const char *p = x->path, *end = x->path + x->path_len;
    struct view v = {.w = x->w, .rt = x->w->rt, .conf = x->conf};
    struct out o = {.pool = &x->w->chunks};
    bool json;

    x->discard_body = 1;
    if (!x->loc->exact && x->path_len >= x->loc->path_len)
        p += x->loc->path_len;
    else
        p = end;
    while (p < end && *p == '/')
        p++;
    if (p < end) {
        if ((size_t)(end - p) > 8 && memcmp(p, "servers/", 8) == 0)
            return admin_action(x, sc, p + 8, end);
        return respond_json(x, 404, "{\"error\":\"not found\"}");
    }
    if (x->method != HTTP_GET && x->method != HTTP_HEAD)
        return pt_exchange_respond_with(x, 405, "405 Method Not Allowed\n", "Allow", "GET, HEAD");
    json = wants_json(x);
    if (pt_stats_collect(v.rt, "upstream_server", &v.servers) != PT_OK ||
        pt_stats_collect(v.rt, "upstream", &v.upstreams) != PT_OK) {
        pt_stats_set_free(&v.servers);
        return pt_exchange_respond(x, 500, "500 Internal Server Error\n");
    }
    pt_chain_init(&o.ch);
    if (json) {
        json_page(&o, &v);
    } else {
        const char *base = pt_arena_strndup(&x->arena, x->loc->path, x->loc->path_len);
        size_t bl = base != NULL ? strlen(base) : 0;

        if (base != NULL && bl > 0 && base[bl - 1] == '/')
            ((char *)base)[bl - 1] = '\0'; /* forms post to BASE/servers/... */
        html_page(&o, &v, base != NULL ? base : "", sc->write &&
                  pt_http_access(x) == PT_ACCESS_ALLOWED);
    }
    pt_stats_set_free(&v.servers);
    pt_stats_set_free(&v.upstreams);
    if (o.failed) {
        pt_chain_free(o.pool, &o.ch);
        return pt_exchange_respond(x, 500, "500 Internal Server Error\n");
    }
    return pt_exchange_respond_chain(x, 200, json ? "application/json"
                                                  : "text/html; charset=utf-8",
                                     &o.ch, "Vary", "Accept");
}

static const struct pt_handler_ops status_ops = {
    .handle = status_handle,
};

/* ---- configuration ------------------------------------------------------------------------ */

static void *
status_conf_create(struct pt_conf_ctx *cx, unsigned level)
{
    struct status_conf *sc;

    if (level != PT_CTX_LOCATION)
        return NULL;
    sc = pt_arena_calloc(&cx->conf->arena, sizeof(*sc));
    if (sc != NULL)
        sc->write = PT_UNSET;
    return sc;
}

static int
set_status(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_location *loc = cx->block;

    if (loc->handler != NULL)
        return pt_conf_error(cx, 0, "location \"%s\" already has a handler", loc->path);
    /* the page links to, and the admin actions are, sub-paths of the location's path: a
     * regex has none */
    if (loc->regex != NULL)
        return pt_conf_error(cx, 0, "\"status\" needs a prefix or exact location, not a regex "
                                    "one (its admin actions are paths under the location's)");
    if (loc->mod[pt_module_handler_status._index] == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    loc->handler = &status_ops;
    loc->handler_conf = loc->mod[pt_module_handler_status._index];
    return PT_OK;
}

static int
set_status_write(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct status_conf *sc = conf;

    if (sc == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    sc->write_line = cx->lines[0];
    sc->write_col = cx->cols[0];
    return pt_set_flag(cx, d, conf);
}

/* status_write only means something where `status` answers; off unless set. */
static int
status_conf_validate(struct pt_conf_ctx *cx)
{
    const struct pt_http_main *m = pt_http_main(cx->conf);

    for (unsigned i = 0; i < m->n_vhosts; i++)
        for (unsigned j = 0; j < m->vhosts[i]->n_locs; j++) {
            struct pt_location *loc = m->vhosts[i]->locs[j];
            struct status_conf *sc = loc->mod[pt_module_handler_status._index];

            if (sc == NULL)
                continue;
            if (sc->write != PT_UNSET && loc->handler != &status_ops)
                pt_conf_error_at(cx, sc->write_line, sc->write_col,
                                 "\"status_write\" is only valid in a location with \"status\"");
            if (sc->write == PT_UNSET)
                sc->write = 0;
        }
    return pt_conf_nerrors(cx) > 0 ? PT_ERR : PT_OK;
}

static const struct pt_directive status_directives[] = {
    {"status", PT_CTX_LOCATION, 0, 0, 0, PT_BASE_NONE, set_status, 0, NULL},
    {"status_write", PT_CTX_LOCATION, 1, 1, 0, PT_BASE_MODULE, set_status_write,
     offsetof(struct status_conf, write), NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

struct pt_module pt_module_handler_status = {
    .abi = PT_MODULE_ABI,
    .name = "handler_status",
    .kind = PT_MODULE_HANDLER,
    .directives = status_directives,
    .conf_create = status_conf_create,
    .conf_validate = status_conf_validate,
    .ops = &status_ops,
};
