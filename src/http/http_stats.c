/* SPDX-License-Identifier: MIT */
/* Request and tunnel counters. An exchange is counted in the block named by its server block's
 * label and its location's upstream (core/stats: per worker, outliving snapshots), found
 * through a per-worker map indexed by location: one array load per request. The map belongs
 * to one snapshot (by generation, which is never reused): a reload rebuilds it for the new
 * one (worker_reload), and an exchange of another snapshot (one that started before the
 * reload and ends after it) looks its block up by name. No lock, no atomic. */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/stats.h"
#include "core/worker.h"
#include "http/http.h"
#include "http/http_stats.h"

/* The HTTP subsystem's per-worker state (w->mod[its index]). */
struct http_worker {
    struct pt_http_worker_stats *gauges;
    struct pt_http_stats *fallback;  /* exchanges with no server block at all */
    unsigned map_gen;                /* the generation of the snapshot the map is for (0:
                                      * none) */
    unsigned map_n;
    struct pt_http_stats **map;      /* [vhost index]: unrouted; [n_vhosts + loc index] */
    struct pt_x_cache x_cache;
    struct pt_x_cache cache[PT_HTTP_CACHE__N];
};

const char *
pt_http_vhost_label(const struct pt_vhost *vh)
{
    return vh->n_names > 0 ? vh->names[0] : "_";
}

static struct http_worker *
worker_state(struct pt_worker *w)
{
    return w != NULL ? w->mod[pt_module_http._index] : NULL;
}

static struct pt_http_stats *
block(struct pt_worker *w, const struct pt_vhost *vh, const struct pt_location *loc)
{
    const char *up = loc != NULL && loc->upstream != NULL ? loc->upstream->name : "";

    return pt_stats_get(&w->stats, "http", pt_http_vhost_label(vh), up,
                        sizeof(struct pt_http_stats));
}

/* Builds the map of conf (blocks are shared by every slot with the same names). */
static int
map_build(struct http_worker *hw, struct pt_worker *w, const struct pt_conf *conf)
{
    const struct pt_http_main *m = pt_http_main(conf);
    unsigned n = m->n_vhosts + m->n_locs;
    struct pt_http_stats **map = calloc(n + 1, sizeof(*map));

    if (map == NULL)
        return PT_ERR;
    for (unsigned i = 0; i < m->n_vhosts; i++) {
        const struct pt_vhost *vh = m->vhosts[i];

        map[vh->index] = block(w, vh, NULL);
        for (unsigned j = 0; j < vh->n_locs; j++)
            map[m->n_vhosts + vh->locs[j]->index] = block(w, vh, vh->locs[j]);
    }
    for (unsigned i = 0; i < n; i++)
        if (map[i] == NULL) {
            free(map);
            return PT_ERR;
        }
    free(hw->map);
    hw->map = map;
    hw->map_n = n;
    hw->map_gen = conf->generation;
    return PT_OK;
}

/* The block x is counted in, or NULL (out of memory). */
static struct pt_http_stats *
stats_of(struct http_worker *hw, struct pt_worker *w, struct pt_conf *conf,
         const struct pt_listen *listen, const struct pt_vhost *vh, const struct pt_location *loc)
{
    unsigned slot;

    if (vh == NULL && listen != NULL)
        vh = pt_http_listen(listen)->default_vhost; /* unrouted: the default server */
    if (vh == NULL)
        return hw->fallback;
    if (PT_UNLIKELY(hw->map_gen != conf->generation) &&
        (conf != w->conf || map_build(hw, w, conf) != PT_OK))
        return block(w, vh, loc);
    slot = loc != NULL ? pt_http_main(conf)->n_vhosts + loc->index : vh->index;
    return slot < hw->map_n ? hw->map[slot] : NULL;
}

void
pt_http_stats_begin(struct pt_exchange *x, enum pt_http_proto proto)
{
    struct http_worker *hw = worker_state(x->w);

    x->proto = proto;
    if (hw != NULL)
        hw->gauges->active[proto]++;
}

void
pt_http_stats_end(const struct pt_x_log *l)
{
    struct http_worker *hw = worker_state(l->w);
    struct pt_http_stats *s;
    unsigned cls;

    if (hw == NULL)
        return;
    hw->gauges->active[l->proto]--;
    if (l->method_name == NULL ||
        (s = stats_of(hw, l->w, l->conf, l->listen, l->vh, l->loc)) == NULL)
        return; /* bytes that never became a request are not one (as in the access log) */
    cls = l->status >= 100 && l->status < 600 ? l->status / 100 - 1 : PT_HTTP_CLASSES - 1;
    s->requests[l->proto][cls]++;
    s->bytes_in[l->proto] += l->req_body_bytes;
    s->bytes_out[l->proto] += l->resp_body_bytes;
    if (l->proto != PT_HTTP_PROTO_WS)
        pt_hist_observe(&s->duration, l->t_end - l->t_start);
}

void
pt_http_stats_ws_open(struct pt_exchange *x)
{
    struct http_worker *hw = worker_state(x->w);
    struct pt_http_stats *s;

    if (hw == NULL)
        return;
    hw->gauges->active[x->proto]--;
    x->proto = PT_HTTP_PROTO_WS;
    hw->gauges->active[PT_HTTP_PROTO_WS]++;
    if ((s = stats_of(hw, x->w, x->conf, x->listen, x->vh, x->loc)) != NULL)
        s->ws_opened++;
}

static enum pt_ws_close_reason
close_reason(const char *why, unsigned code, bool goodbye)
{
    if (code == 1002)
        return PT_WS_CLOSE_PROTOCOL_ERROR;
    if (code == 1009)
        return PT_WS_CLOSE_TOO_BIG;
    if (goodbye || strcmp(why, "worker stopped") == 0)
        return PT_WS_CLOSE_GOING_AWAY;
    if (strcmp(why, "closed by both sides") == 0 || strcmp(why, "finished") == 0)
        return PT_WS_CLOSE_NORMAL;
    if (strcmp(why, "idle timeout") == 0)
        return PT_WS_CLOSE_IDLE_TIMEOUT;
    if (strstr(why, "timeout") != NULL || strstr(why, "in time") != NULL)
        return PT_WS_CLOSE_FIN_TIMEOUT;
    return PT_WS_CLOSE_ERROR;
}

void
pt_http_stats_ws_closed(const struct pt_x_log *l, const char *why, unsigned code, bool goodbye,
                        uint64_t msgs_client, uint64_t msgs_server)
{
    struct http_worker *hw = worker_state(l->w);
    struct pt_http_stats *s;

    if (hw == NULL || (s = stats_of(hw, l->w, l->conf, l->listen, l->vh, l->loc)) == NULL)
        return;
    s->ws_closed[close_reason(why != NULL ? why : "", code, goodbye)]++;
    s->ws_messages[0] += msgs_client;
    s->ws_messages[1] += msgs_server;
}

struct pt_x_cache *
pt__http_x_cache(struct pt_worker *w)
{
    struct http_worker *hw = worker_state(w);

    return hw != NULL ? &hw->x_cache : NULL;
}

struct pt_x_cache *
pt__http_cache(struct pt_worker *w, enum pt_http_cache k)
{
    struct http_worker *hw = PT_HTTP_CACHE_ON ? worker_state(w) : NULL;

    return hw != NULL ? &hw->cache[k] : NULL;
}

int
pt__http_stats_worker_init(struct pt_worker *w)
{
    struct http_worker *hw = calloc(1, sizeof(*hw));

    if (hw == NULL)
        return PT_ERR;
    w->mod[pt_module_http._index] = hw;
    hw->gauges = pt_stats_get(&w->stats, "http_worker", NULL, NULL, sizeof(*hw->gauges));
    hw->fallback = pt_stats_get(&w->stats, "http", "_", NULL, sizeof(*hw->fallback));
    /* every configured series exists (at zero) from the start */
    if (hw->gauges == NULL || hw->fallback == NULL || map_build(hw, w, w->conf) != PT_OK)
        return PT_ERR;
    return PT_OK;
}

void
pt__http_stats_worker_reload(struct pt_worker *w, struct pt_conf *old)
{
    struct http_worker *hw = worker_state(w);

    /* the new server blocks' series exist from now on; if the map cannot be built, the next
     * request of the new snapshot tries again */
    if (hw != NULL && map_build(hw, w, w->conf) != PT_OK)
        hw->map_gen = 0;
}

void
pt__http_stats_worker_fini(struct pt_worker *w)
{
    struct http_worker *hw = worker_state(w);

    if (hw == NULL)
        return;
    pt__exchange_cache_free(&hw->x_cache);
    for (unsigned k = 0; k < PT_HTTP_CACHE__N; k++) {
        void *p;

        while ((p = pt__cache_get(&hw->cache[k])) != NULL)
            free(p);
    }
    free(hw->map);
    free(hw);
    w->mod[pt_module_http._index] = NULL;
}
