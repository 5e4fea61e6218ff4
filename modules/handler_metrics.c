/* SPDX-License-Identifier: MIT */
/* `metrics;` in a location: the Prometheus text exposition format (version 0.0.4), built at
 * scrape time on the worker that serves the scrape. Counters live per worker in the workers'
 * counter registries (core/stats.h): this sums every worker's blocks of each kind by name,
 * reading other workers' counters with plain 64-bit loads, no lock. Gauges of servers (state,
 * weight, in-flight requests, health checks) come from the snapshot the scrape runs on.
 *
 * Labels carry configured names only: the server block's first server_name (or "_"), the
 * upstream's name, the server's address, and fixed words (protocol, status class, reason), so
 * the number of series is bounded by the configuration, never by traffic. The metrics, their
 * labels and meaning are listed in docs/operations.md. */
#include <llhttp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "core/buf.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/module.h"
#include "core/stats.h"
#include "core/worker.h"
#include "http/access-t.h"
#include "http/limit.h"
#include "http/exchange.h"
#include "http/http.h"
#include "http/http_stats.h"
#include "net/relay-t.h"
#include "net/tls-t.h"
#include "stream/stream-t.h"
#include "upstream/upstream.h"

/* The text being built: a chain of chunks, handed to the frontend whole. */
struct out {
    struct pt_chunk_pool *pool;
    struct pt_chain ch;
    int failed; /* out of memory: answer 500 */
};

static void
put(struct out *o, const char *s, size_t n)
{
    if (!o->failed && pt_chain_append(o->pool, &o->ch, s, n) != PT_OK)
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
        o->failed = 1; /* only numbers go through here */
        return;
    }
    put(o, buf, (size_t)n);
}

/* A label value: backslash, double quote and newline escaped (the text format's rule). */
static void
put_value(struct out *o, const char *v)
{
    const char *run = v;

    for (; *v; v++) {
        const char *esc = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;

        if (esc == NULL)
            continue;
        put(o, run, (size_t)(v - run));
        puts_(o, esc);
        run = v + 1;
    }
    put(o, run, (size_t)(v - run));
}

static void
family(struct out *o, const char *name, const char *type, const char *help)
{
    putf(o, "# HELP %s ", name);
    puts_(o, help);
    putf(o, "\n# TYPE %s %s\n", name, type);
}

/* name{k0="v0",k1="v1",...} — kv holds names and values alternately, NULL-terminated; an
 * extra label (le) may follow. */
static void
series(struct out *o, const char *name, const char *suffix, const char *const *kv,
       const char *extra_k, const char *extra_v)
{
    int first = 1;

    puts_(o, name);
    puts_(o, suffix);
    for (unsigned i = 0; kv != NULL && kv[i] != NULL; i += 2) {
        puts_(o, first ? "{" : ",");
        puts_(o, kv[i]);
        puts_(o, "=\"");
        put_value(o, kv[i + 1]);
        puts_(o, "\"");
        first = 0;
    }
    if (extra_k != NULL) {
        puts_(o, first ? "{" : ",");
        putf(o, "%s=\"%s\"", extra_k, extra_v);
        first = 0;
    }
    if (!first)
        puts_(o, "}");
}

static void
sample(struct out *o, const char *name, const char *const *kv, uint64_t v)
{
    series(o, name, "", kv, NULL, NULL);
    putf(o, " %llu\n", (unsigned long long)v);
}

/* A value in milliseconds written as seconds. */
static void
sample_ms(struct out *o, const char *name, const char *const *kv, int64_t ms)
{
    series(o, name, "", kv, NULL, NULL);
    putf(o, " %s%lld.%03lld\n", ms < 0 ? "-" : "", (long long)(ms < 0 ? -ms : ms) / 1000,
         (long long)(ms < 0 ? -ms : ms) % 1000);
}

static void
histogram(struct out *o, const char *name, const char *const *kv, const struct pt_hist *h)
{
    uint64_t cum = 0;

    for (unsigned i = 0; i < PT_HIST_BUCKETS; i++) {
        cum += h->bucket[i];
        series(o, name, "_bucket", kv, "le",
               i < PT_HIST_BOUNDS ? pt_hist_bounds_text[i] : "+Inf");
        putf(o, " %llu\n", (unsigned long long)cum);
    }
    series(o, name, "_sum", kv, NULL, NULL);
    putf(o, " %llu.%09llu\n", (unsigned long long)(h->sum_ns / 1000000000ULL),
         (unsigned long long)(h->sum_ns % 1000000000ULL));
    series(o, name, "_count", kv, NULL, NULL);
    putf(o, " %llu\n", (unsigned long long)cum);
}

static const char *const proto_names[PT_HTTP_PROTOS] = {"http1", "h2", "ws"};
static const char *const class_names[PT_HTTP_CLASSES] = {"1xx", "2xx", "3xx",
                                                         "4xx", "5xx", "none"};
static const char *const ws_close_names[PT_WS_CLOSES] = {
    "normal", "going_away", "protocol_error", "message_too_big",
    "idle_timeout", "fin_timeout", "error",
};
static const char *const tls_side_names[PT_TLS_SIDES] = {"frontend", "backend"};
static const char *const tls_fail_names[PT_TLS_FAILS] = {
    "protocol_version", "no_shared_cipher", "http_request", "certificate",
    "closed", "timeout", "other",
};

/* ---- families -------------------------------------------------------------------------- */

/* The configuration: its generation and load time are the snapshot's this scrape runs on (the
 * newest once this worker has switched); the reload counts are the main thread's. */
static void
runtime_metrics(struct out *o, const struct pt_runtime *rt, const struct pt_conf *conf)
{
    const char *kv[] = {"version", PACKAGE_VERSION, NULL};
    const char *ikv[] = {"instance_name", conf->instance_name, "version", PACKAGE_VERSION, NULL};

    family(o, "portico_build_info", "gauge", "portico's version (always 1).");
    sample(o, "portico_build_info", kv, 1);
    /* instance_name on this one series only, to join on (docs/operations.md#metrics says why
     * not on every series) */
    family(o, "portico_instance_info", "gauge",
           "This instance: its instance_name and version (always 1).");
    sample(o, "portico_instance_info", ikv, 1);
    family(o, "portico_start_time_seconds", "gauge", "When the process started (Unix time).");
    sample_ms(o, "portico_start_time_seconds", NULL, rt->started_at);
    family(o, "portico_workers", "gauge", "Worker threads.");
    sample(o, "portico_workers", NULL, rt->n_workers);
    family(o, "portico_config_generation", "gauge",
           "Number of the configuration in force: 1 at start, +1 per successful reload.");
    sample(o, "portico_config_generation", NULL, conf->generation);
    family(o, "portico_config_generations_live", "gauge",
           "Configuration snapshots still in use (the newest and older ones in-flight "
           "requests hold).");
    sample(o, "portico_config_generations_live", NULL, pt_conf_generations_live());
    family(o, "portico_config_loaded_timestamp_seconds", "gauge",
           "When the configuration in force was loaded (Unix time).");
    sample(o, "portico_config_loaded_timestamp_seconds", NULL, (uint64_t)conf->loaded_at);
    family(o, "portico_config_reloads_total", "counter", "Successful configuration reloads.");
    sample(o, "portico_config_reloads_total", NULL, pt_stats_load(&rt->reloads));
    family(o, "portico_config_reload_failures_total", "counter",
           "Reloads refused because the new configuration was invalid (the running one "
           "stayed).");
    sample(o, "portico_config_reload_failures_total", NULL, pt_stats_load(&rt->reloads_failed));
}

static void
connection_metrics(struct out *o, const struct pt_runtime *rt)
{
    /* connection kinds: HTTP's, WebSocket tunnels (relays that took an HTTP/1.1 connection's
     * place), stream servers' connections */
    static const struct {
        unsigned kind;
        const char *name;
    } kinds[] = {{PT_HTTP_CONN_H1, "http1"},
                 {PT_HTTP_CONN_H2, "h2"},
                 {PT_RELAY_CONN_KIND, "ws"},
                 {PT_STREAM_CONN_KIND, "stream"}};
    static const char *const rate_names[PT_RATE_KINDS] = {"header", "body", "send"};
    uint64_t accepted = 0, by_kind[PT_CONN_KINDS] = {0}, cuts[PT_RATE_KINDS] = {0};
    char wname[16];

    for (unsigned i = 0; i < rt->n_workers; i++) {
        const struct pt_worker *w = &rt->workers[i];

        accepted += pt_stats_load(&w->n_accepted);
        for (unsigned k = 0; k < PT_CONN_KINDS; k++)
            by_kind[k] += pt_stats_load(&w->n_conns_kind[k]);
        for (unsigned k = 0; k < PT_RATE_KINDS; k++)
            cuts[k] += pt_stats_load(&w->n_rate_cuts[k]);
    }
    family(o, "portico_connections_accepted_total", "counter", "Client connections accepted.");
    sample(o, "portico_connections_accepted_total", NULL, accepted);
    family(o, "portico_connections_active", "gauge",
           "Open client connections by protocol (ws: WebSocket tunnels that took over an "
           "HTTP/1.1 connection; stream: connections of stream servers).");
    for (unsigned k = 0; k < PT_ARRAY_LEN(kinds); k++) {
        const char *kv[] = {"protocol", kinds[k].name, NULL};

        sample(o, "portico_connections_active", kv, by_kind[kinds[k].kind]);
    }
    family(o, "portico_slow_clients_closed_total", "counter",
           "Clients cut for sending or reading slower than a minimum rate allows, by what they "
           "were slow at (header: client_header_min_rate, body: client_body_min_rate, send: "
           "send_min_rate).");
    for (unsigned k = 0; k < PT_RATE_KINDS; k++) {
        const char *kv[] = {"reason", rate_names[k], NULL};

        sample(o, "portico_slow_clients_closed_total", kv, cuts[k]);
    }
    family(o, "portico_worker_connections_active", "gauge",
           "Open client connections per worker thread.");
    for (unsigned i = 0; i < rt->n_workers; i++) {
        const char *kv[] = {"worker", wname, NULL};

        snprintf(wname, sizeof(wname), "w%u", i);
        sample(o, "portico_worker_connections_active", kv,
               __atomic_load_n(&rt->workers[i].n_conns, __ATOMIC_RELAXED));
    }

    struct pt_stats_set set;
    const struct pt_stats_sum *g;

    if (pt_stats_collect(rt, "http_worker", &set) != PT_OK) {
        o->failed = 1;
        return;
    }
    g = pt_stats_find(&set, NULL, NULL);
    family(o, "portico_streams_active", "gauge",
           "Requests in flight by frontend protocol: HTTP/1.1 requests, HTTP/2 streams, "
           "WebSocket tunnels.");
    for (unsigned p = 0; p < PT_HTTP_PROTOS; p++) {
        const char *kv[] = {"protocol", proto_names[p], NULL};

        sample(o, "portico_streams_active", kv,
               g != NULL ? ((const struct pt_http_worker_stats *)g->v)->active[p] : 0);
    }
    pt_stats_set_free(&set);
}

static void
http_metrics(struct out *o, const struct pt_runtime *rt)
{
    struct pt_stats_set set;

    if (pt_stats_collect(rt, "http", &set) != PT_OK) {
        o->failed = 1;
        return;
    }
#define EACH_HTTP                                                                                 \
    for (unsigned i = 0; i < set.n; i++)                                                         \
        for (const struct pt_http_stats *s = (const void *)set.v[i]->v; s != NULL; s = NULL)
#define HTTP_KV(...)                                                                              \
    {"server_name", set.v[i]->labels[0], "upstream", set.v[i]->labels[1], __VA_ARGS__}
    family(o, "portico_http_requests_total", "counter",
           "Requests by server block (its first server_name, or _), upstream (empty: answered "
           "by portico), response status class (none: no response) and frontend protocol.");
    EACH_HTTP
    {
        for (unsigned p = 0; p < PT_HTTP_PROTOS; p++)
            for (unsigned c = 0; c < PT_HTTP_CLASSES; c++) {
                const char *kv[] = HTTP_KV("code_class", class_names[c], "protocol",
                                           proto_names[p], NULL);

                sample(o, "portico_http_requests_total", kv, s->requests[p][c]);
            }
    }
    family(o, "portico_http_request_duration_seconds", "histogram",
           "Time from the first byte of a request to the end of its response (WebSocket "
           "tunnels not included).");
    EACH_HTTP
    {
        const char *kv[] = HTTP_KV(NULL);

        histogram(o, "portico_http_request_duration_seconds", kv, &s->duration);
    }
    family(o, "portico_http_request_body_bytes_total", "counter",
           "Request body bytes received from clients (WebSocket: frames from the client).");
    EACH_HTTP
    {
        for (unsigned p = 0; p < PT_HTTP_PROTOS; p++) {
            const char *kv[] = HTTP_KV("protocol", proto_names[p], NULL);

            sample(o, "portico_http_request_body_bytes_total", kv, s->bytes_in[p]);
        }
    }
    family(o, "portico_http_response_body_bytes_total", "counter",
           "Response body bytes sent to clients (WebSocket: frames from the server).");
    EACH_HTTP
    {
        for (unsigned p = 0; p < PT_HTTP_PROTOS; p++) {
            const char *kv[] = HTTP_KV("protocol", proto_names[p], NULL);

            sample(o, "portico_http_response_body_bytes_total", kv, s->bytes_out[p]);
        }
    }
    family(o, "portico_websocket_tunnels_active", "gauge", "Open WebSocket tunnels.");
    EACH_HTTP
    {
        const char *kv[] = HTTP_KV(NULL);
        uint64_t closed = 0;

        for (unsigned r = 0; r < PT_WS_CLOSES; r++)
            closed += s->ws_closed[r];
        sample(o, "portico_websocket_tunnels_active", kv,
               s->ws_opened >= closed ? s->ws_opened - closed : 0);
    }
    family(o, "portico_websocket_tunnels_closed_total", "counter",
           "WebSocket tunnels that ended, by reason.");
    EACH_HTTP
    {
        for (unsigned r = 0; r < PT_WS_CLOSES; r++) {
            const char *kv[] = HTTP_KV("reason", ws_close_names[r], NULL);

            sample(o, "portico_websocket_tunnels_closed_total", kv, s->ws_closed[r]);
        }
    }
    family(o, "portico_websocket_messages_total", "counter",
           "WebSocket data messages relayed, counted when their tunnel ends.");
    EACH_HTTP
    {
        const char *kv0[] = HTTP_KV("direction", "client_to_server", NULL);
        const char *kv1[] = HTTP_KV("direction", "server_to_client", NULL);

        sample(o, "portico_websocket_messages_total", kv0, s->ws_messages[0]);
        sample(o, "portico_websocket_messages_total", kv1, s->ws_messages[1]);
    }
    family(o, "portico_websocket_bytes_total", "counter",
           "WebSocket bytes relayed (frames with their headers), counted when their tunnel "
           "ends.");
    EACH_HTTP
    {
        const char *kv0[] = HTTP_KV("direction", "client_to_server", NULL);
        const char *kv1[] = HTTP_KV("direction", "server_to_client", NULL);

        sample(o, "portico_websocket_bytes_total", kv0, s->bytes_in[PT_HTTP_PROTO_WS]);
        sample(o, "portico_websocket_bytes_total", kv1, s->bytes_out[PT_HTTP_PROTO_WS]);
    }
#undef HTTP_KV
#undef EACH_HTTP
    pt_stats_set_free(&set);
}

/* Requests the access phase refused, by reason (src/http/access-t.h). */
static void
access_metrics(struct out *o, const struct pt_runtime *rt)
{
    static const char *const reasons[PT_DENY_REASONS] = {"access", "auth", "client_cert",
                                                         "limit_req", "limit_conn"};
    struct pt_stats_set set;
    const struct pt_stats_sum *g;
    struct pt_access_stats zero = {{0}}, st;

    if (pt_stats_collect(rt, "access", &set) != PT_OK) {
        o->failed = 1;
        return;
    }
    g = pt_stats_find(&set, NULL, NULL);
    st = g != NULL ? *(const struct pt_access_stats *)g->v : zero;
    pt_stats_set_free(&set);
    family(o, "portico_http_requests_denied_total", "counter",
           "Requests portico refused before their handler, by reason (access: a deny rule; "
           "auth: basic authentication; client_cert: a location's client-certificate "
           "requirement; limit_req, limit_conn: a limit).");
    for (unsigned r = 0; r < PT_DENY_REASONS; r++) {
        const char *kv[] = {"reason", reasons[r], NULL};

        sample(o, "portico_http_requests_denied_total", kv, st.denied[r]);
    }
}

/* limit_req zones with a store (src/http/limit_store.c): whether every worker reaches Redis,
 * and the requests store_fail decided. Only the zones of the running configuration. */
static void
limit_store_metrics(struct out *o, const struct pt_runtime *rt)
{
    struct pt_stats_set set;

    if (pt_stats_collect(rt, "limit_store", &set) != PT_OK) {
        o->failed = 1;
        return;
    }
    for (int pass = 0; pass < 2; pass++) {
        const char *name = pass == 0 ? "portico_limit_req_store_up"
                                     : "portico_limit_req_store_fallback_total";

        if (pass == 0)
            family(o, name, "gauge", "1 while every worker reaches the Redis of a limit_req "
                   "zone with store=, else 0.");
        else
            family(o, name, "counter", "Requests of a limit_req zone with store= that "
                   "store_fail decided (Redis down, slow, or no answer within store_timeout).");
        for (unsigned i = 0; i < set.n; i++) {
            const struct pt_stats_sum *g = set.v[i];
            const struct pt_limit_store_stats *st = (const void *)g->v;
            const char *kv[] = {"zone", g->labels[0], NULL};

            if (!pt_limit_store_zone(rt->conf, g->labels[0]))
                continue;
            sample(o, name, kv, pass == 0 ? (pt_stats_load(&st->down) == 0)
                                          : pt_stats_load(&st->fallback));
        }
    }
    pt_stats_set_free(&set);
}

static void
tls_metrics(struct out *o, const struct pt_runtime *rt)
{
    struct pt_stats_set set;
    const struct pt_stats_sum *g;
    struct pt_tls_stats zero = {{0}}, st;

    if (pt_stats_collect(rt, "tls", &set) != PT_OK) {
        o->failed = 1;
        return;
    }
    g = pt_stats_find(&set, NULL, NULL);
    st = g != NULL ? *(const struct pt_tls_stats *)g->v : zero;
    pt_stats_set_free(&set);
    family(o, "portico_tls_handshakes_total", "counter",
           "TLS handshakes completed, with clients (frontend) and with TLS backends.");
    for (unsigned d = 0; d < PT_TLS_SIDES; d++) {
        const char *kv[] = {"side", tls_side_names[d], NULL};

        sample(o, "portico_tls_handshakes_total", kv, st.handshakes[d]);
    }
    family(o, "portico_tls_sessions_resumed_total", "counter",
           "Completed TLS handshakes that resumed a session (ticket or cache).");
    for (unsigned d = 0; d < PT_TLS_SIDES; d++) {
        const char *kv[] = {"side", tls_side_names[d], NULL};

        sample(o, "portico_tls_sessions_resumed_total", kv, st.resumed[d]);
    }
    family(o, "portico_tls_handshake_failures_total", "counter",
           "TLS handshakes that failed, by reason.");
    for (unsigned d = 0; d < PT_TLS_SIDES; d++)
        for (unsigned r = 0; r < PT_TLS_FAILS; r++) {
            const char *kv[] = {"side", tls_side_names[d], "reason", tls_fail_names[r], NULL};

            sample(o, "portico_tls_handshake_failures_total", kv, st.failures[d][r]);
        }
}

static void
server_metrics(struct out *o, struct pt_worker *w, const struct pt_conf *conf)
{
    const struct pt_runtime *rt = w->rt;
    const struct pt_upstream_main *m = pt_upstream_main(conf);
    struct pt_stats_set set;

    if (pt_stats_collect(rt, "upstream_server", &set) != PT_OK) {
        o->failed = 1;
        return;
    }
#define EACH_SRV                                                                                  \
    for (unsigned i = 0; i < set.n; i++)                                                         \
        for (const struct pt_server_stats *s = (const void *)set.v[i]->v; s != NULL; s = NULL)
#define SRV_KV(...)                                                                               \
    {"upstream", set.v[i]->labels[0], "server", set.v[i]->labels[1], __VA_ARGS__}
    family(o, "portico_upstream_requests_total", "counter",
           "Attempts sent to a server (a retried request counts once per attempt).");
    EACH_SRV
    {
        const char *kv[] = SRV_KV(NULL);

        sample(o, "portico_upstream_requests_total", kv, s->requests);
    }
    family(o, "portico_upstream_responses_total", "counter",
           "Response heads received from a server, by status class.");
    EACH_SRV
    {
        for (unsigned c = 0; c < 5; c++) {
            const char *kv[] = SRV_KV("code_class", class_names[c], NULL);

            sample(o, "portico_upstream_responses_total", kv, s->responses[c]);
        }
    }
    family(o, "portico_upstream_failures_total", "counter",
           "Attempts that failed: connect error or timeout, TLS failure, reset, read or send "
           "timeout, invalid response.");
    EACH_SRV
    {
        const char *kv[] = SRV_KV(NULL);

        sample(o, "portico_upstream_failures_total", kv, s->failures);
    }
    family(o, "portico_upstream_response_time_seconds", "histogram",
           "Time from the start of an attempt (connection included) to the server's response "
           "head.");
    EACH_SRV
    {
        const char *kv[] = SRV_KV(NULL);

        histogram(o, "portico_upstream_response_time_seconds", kv, &s->response_time);
    }
    family(o, "portico_upstream_connections_opened_total", "counter",
           "New connections opened to a server.");
    EACH_SRV
    {
        const char *kv[] = SRV_KV(NULL);

        sample(o, "portico_upstream_connections_opened_total", kv, s->conns_opened);
    }
    family(o, "portico_upstream_connections_reused_total", "counter",
           "Attempts sent on an already open connection (pooled HTTP/1.1, shared HTTP/2).");
    EACH_SRV
    {
        const char *kv[] = SRV_KV(NULL);

        sample(o, "portico_upstream_connections_reused_total", kv, s->conns_reused);
    }
    family(o, "portico_upstream_connections_idle", "gauge",
           "Idle HTTP/1.1 connections in the pools (all workers).");
    EACH_SRV
    {
        const char *kv[] = SRV_KV(NULL);

        sample(o, "portico_upstream_connections_idle", kv, s->idle);
    }
#undef SRV_KV
#undef EACH_SRV
    pt_stats_set_free(&set);

    /* the servers of the configuration in force, as this worker's newest server list has them
     * (DNS may have changed it since the snapshot): state from those objects */
#define EACH_SERVER                                                                               \
    for (unsigned u = 0; u < m->n_upstreams; u++)                                                \
        for (struct pt_upstream *live = pt_upstream_live(w, m->upstreams[u]); live != NULL;      \
             live = NULL)                                                                        \
            for (unsigned j = 0; j < live->n_servers; j++)                                       \
                for (struct pt_server *srv = live->servers[j]; srv != NULL; srv = NULL)
#define SERVER_KV(...)                                                                            \
    {"upstream", srv->upstream->name, "server", srv->addr.name, __VA_ARGS__}
    family(o, "portico_upstream_server_state", "gauge",
           "1 for the state a server is in: up, down (active health checks), ejected (outlier "
           "detection), draining (admin), disabled (down in the configuration).");
    EACH_SERVER
    {
        enum pt_server_state now = pt_server_state(srv);

        for (unsigned k = 0; k < PT_SRV_STATES; k++) {
            const char *kv[] = SERVER_KV("state", pt_server_state_names[k], NULL);

            sample(o, "portico_upstream_server_state", kv, now == k);
        }
    }
    family(o, "portico_upstream_server_weight", "gauge", "A server's configured weight.");
    EACH_SERVER
    {
        const char *kv[] = SERVER_KV(NULL);

        sample(o, "portico_upstream_server_weight", kv, srv->weight);
    }
    family(o, "portico_upstream_server_active_requests", "gauge",
           "Requests in flight on a server (all workers).");
    EACH_SERVER
    {
        const char *kv[] = SERVER_KV(NULL);

        sample(o, "portico_upstream_server_active_requests", kv,
               atomic_load_explicit(&srv->_active, memory_order_relaxed));
    }
    family(o, "portico_upstream_server_ejections_total", "counter",
           "Times outlier detection ejected a server.");
    EACH_SERVER
    {
        const char *kv[] = SERVER_KV(NULL);

        sample(o, "portico_upstream_server_ejections_total", kv,
               atomic_load_explicit(&srv->_ejections, memory_order_relaxed));
    }
    family(o, "portico_upstream_health_checks_total", "counter",
           "Active health checks by result (servers of upstreams with health_check).");
    EACH_SERVER
    {
        const char *pass[] = SERVER_KV("result", "pass", NULL);
        const char *fail[] = SERVER_KV("result", "fail", NULL);

        if (!srv->upstream->res.health.enabled)
            continue;
        sample(o, "portico_upstream_health_checks_total", pass,
               atomic_load_explicit(&srv->_hc_passes, memory_order_relaxed));
        sample(o, "portico_upstream_health_checks_total", fail,
               atomic_load_explicit(&srv->_hc_fails, memory_order_relaxed));
    }
#undef SERVER_KV
#undef EACH_SERVER
    family(o, "portico_upstream_pending_requests", "gauge",
           "Requests waiting in an upstream's max_pending queue (all workers).");
    for (unsigned u = 0; u < m->n_upstreams; u++) {
        const char *kv[] = {"upstream", m->upstreams[u]->name, NULL};

        sample(o, "portico_upstream_pending_requests", kv,
               atomic_load_explicit(&m->upstreams[u]->_pending, memory_order_relaxed));
    }
}

static void
upstream_metrics(struct out *o, const struct pt_runtime *rt)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } fams[] = {
        {"portico_upstream_retries_total",
         "Attempts made after a failed one (connect errors, retry_on failures and statuses).",
         offsetof(struct pt_upstream_stats, retries)},
        {"portico_upstream_retry_budget_exhausted_total",
         "Retries retry_on allowed but the retry budget refused.",
         offsetof(struct pt_upstream_stats, retries_denied)},
        {"portico_upstream_no_server_total",
         "Requests answered 503 because no server could be picked (queue_full included).",
         offsetof(struct pt_upstream_stats, no_server)},
        {"portico_upstream_queued_total",
         "Requests that waited in the max_pending queue for a server under max_conns.",
         offsetof(struct pt_upstream_stats, queued)},
        {"portico_upstream_queue_full_total",
         "Requests refused (503) because the max_pending queue was full.",
         offsetof(struct pt_upstream_stats, queue_full)},
        {"portico_upstream_queue_timeouts_total",
         "Queued requests answered 503 after queue_timeout.",
         offsetof(struct pt_upstream_stats, queue_timeouts)},
    };
    struct pt_stats_set set;

    if (pt_stats_collect(rt, "upstream", &set) != PT_OK) {
        o->failed = 1;
        return;
    }
    for (unsigned f = 0; f < PT_ARRAY_LEN(fams); f++) {
        family(o, fams[f].name, "counter", fams[f].help);
        for (unsigned i = 0; i < set.n; i++) {
            const char *kv[] = {"upstream", set.v[i]->labels[0], NULL};

            sample(o, fams[f].name, kv, set.v[i]->v[fams[f].off / sizeof(uint64_t)]);
        }
    }
    pt_stats_set_free(&set);
}

static void
stream_metrics(struct out *o, const struct pt_runtime *rt)
{
    static const char *const statuses[PT_STREAM_STATUSES] = {"200", "400", "403",
                                                             "500", "502", "503"};
    struct pt_stats_set set;

    if (pt_stats_collect(rt, "stream", &set) != PT_OK) {
        o->failed = 1;
        return;
    }
#define EACH_STREAM                                                                               \
    for (unsigned i = 0; i < set.n; i++)                                                         \
        for (const struct pt_stream_stats *s = (const void *)set.v[i]->v; s != NULL; s = NULL)
#define STREAM_KV(...)                                                                            \
    {"listen", set.v[i]->labels[0], "upstream", set.v[i]->labels[1], __VA_ARGS__}
    family(o, "portico_stream_sessions_total", "counter",
           "Stream server connections that ended, by listening address, upstream (empty: not "
           "routed) and status (as in the access log: 200 relayed, 400 bad or slow ClientHello, "
           "500 internal, 502 no route or every connect failed, 503 no server).");
    EACH_STREAM
    {
        for (unsigned c = 0; c < PT_STREAM_STATUSES; c++) {
            const char *kv[] = STREAM_KV("status", statuses[c], NULL);

            sample(o, "portico_stream_sessions_total", kv, s->sessions[c]);
        }
    }
    family(o, "portico_stream_bytes_total", "counter",
           "Bytes stream servers relayed, counted when their connection ends (cleartext where "
           "TLS ends or starts in portico).");
    EACH_STREAM
    {
        const char *kv0[] = STREAM_KV("direction", "client_to_server", NULL);
        const char *kv1[] = STREAM_KV("direction", "server_to_client", NULL);

        sample(o, "portico_stream_bytes_total", kv0, s->bytes_from_client);
        sample(o, "portico_stream_bytes_total", kv1, s->bytes_from_server);
    }
    family(o, "portico_stream_session_duration_seconds", "histogram",
           "Time from accepting a stream server connection to its end.");
    EACH_STREAM
    {
        const char *kv[] = STREAM_KV(NULL);

        histogram(o, "portico_stream_session_duration_seconds", kv, &s->duration);
    }
#undef STREAM_KV
#undef EACH_STREAM
    pt_stats_set_free(&set);
}

/* ---- the handler ------------------------------------------------------------------------ */

static int
metrics_handle(struct pt_exchange *x, const void *conf)
{
    const struct pt_runtime *rt = x->w->rt;
    struct out o = {.pool = &x->w->chunks};

    x->discard_body = 1;
    if (x->method != HTTP_GET && x->method != HTTP_HEAD) {
        pt_exchange_respond_with(x, 405, "405 Method Not Allowed\n", "Allow", "GET, HEAD");
        return PT_OK;
    }
    pt_chain_init(&o.ch);
    runtime_metrics(&o, rt, x->conf);
    connection_metrics(&o, rt);
    http_metrics(&o, rt);
    access_metrics(&o, rt);
    limit_store_metrics(&o, rt);
    tls_metrics(&o, rt);
    upstream_metrics(&o, rt);
    stream_metrics(&o, rt);
    server_metrics(&o, x->w, x->conf);
    if (o.failed) {
        pt_chain_free(o.pool, &o.ch);
        pt_exchange_respond(x, 500, "500 Internal Server Error\n");
        return PT_OK;
    }
    return pt_exchange_respond_chain(x, 200, "text/plain; version=0.0.4; charset=utf-8", &o.ch,
                                     NULL, NULL);
}

static const struct pt_handler_ops metrics_ops = {
    .handle = metrics_handle,
};

static int
set_metrics(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_location *loc = cx->block;

    if (loc->handler != NULL)
        return pt_conf_error(cx, 0, "location \"%s\" already has a handler", loc->path);
    loc->handler = &metrics_ops;
    loc->handler_conf = NULL;
    return PT_OK;
}

static const struct pt_directive metrics_directives[] = {
    {"metrics", PT_CTX_LOCATION, 0, 0, 0, PT_BASE_NONE, set_metrics, 0, NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

struct pt_module pt_module_handler_metrics = {
    .abi = PT_MODULE_ABI,
    .name = "handler_metrics",
    .kind = PT_MODULE_HANDLER,
    .directives = metrics_directives,
    .ops = &metrics_ops,
};
