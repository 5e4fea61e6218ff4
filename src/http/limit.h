/* SPDX-License-Identifier: MIT */
/* Request-rate and concurrency limits (limit_req, limit_conn), part of the access phase. */
#ifndef PT_LIMIT_H
#define PT_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/module-t.h"
#include "http/limit-t.h"

struct pt_conf;
struct pt_exchange;
struct pt_location;

extern struct pt_module pt_module_limit;

/* The local key table: `bytes` of memory hold bytes / PT_LIMIT_KEY_COST keys (at least 8).
 * NULL when out of memory. Any thread; operations lock. */
struct pt_limit_store *pt_limit_local_new(uint64_t bytes);
/* A key's hash for the zones' tables (FNV-1a, then murmur3's final mix so every bit counts);
 * `seed` is per table, so keys cannot be chosen to collide without knowing it. */
uint64_t pt_limit_key_hash(uint64_t seed, const uint8_t *k, size_t n);
/* Keys dropped from a local table to make room so far. */
uint64_t pt_limit_local_evicted(const struct pt_limit_store *s);

/* True when conf has a limit_req_zone `name` with a store (for the metrics). */
bool pt_limit_store_zone(const struct pt_conf *conf, const char *name);

/* The limits of x's location: limit_req zones in the order written, then limit_conn. Refuses
 * through pt_access_refuse(); an admitted request that must wait sets x->limit_delay_ns (the
 * content phase waits). Worker thread. */
void pt_limit_phase(struct pt_exchange *x);
/* For portico explain: the limits in effect at loc, one line each, prefixed by `first` then
 * `indent`. */
void pt_limit_print(const struct pt_location *loc, FILE *out, const char *first,
                    const char *indent);
/* Gives back what x holds (limit_conn) and stops its delay timer. */
void pt_limit_end(struct pt_exchange *x);
/* Gives back n limit_conn slots (a tunnel's, kept from its exchange: pt_x_tunnel_end). */
void pt_limit_release(struct pt_limit_hold *held, unsigned n);
/* Runs x's handler after x->limit_delay_ns (limit_req's delay); true when it took x over. */
bool pt_limit_wait(struct pt_exchange *x);

#endif
