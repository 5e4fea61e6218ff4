/* SPDX-License-Identifier: MIT */
/* Reading a configuration back: `portico -t -v` prints the resolved routing table, and
 * `portico explain` says what one request would do (listener, server block, location,
 * upstream, the request as the backend would get it, the limits), without sending anything.
 * Both run the real router and the proxy's forwarding code on the loaded snapshot. Main
 * thread, before any worker exists. */
#ifndef PT_EXPLAIN_H
#define PT_EXPLAIN_H

#include <stdio.h>

#include "core/conf-t.h"

/* Prints every listening address -> server block -> location -> handler with the effective
 * settings, then every upstream with its servers (pt_upstream_print). */
void pt_http_routes_print(const struct pt_conf *c, FILE *out);
/* `portico explain [-c FILE] [-H 'Name: value']... [--from ADDR] 'METHOD URL'`: argv[0] is
 * "explain". Loads the configuration (errors on stderr), prints the explanation on stdout.
 * Returns the exit status: 0 explained, 1 configuration error or no listener for the URL,
 * 2 usage error. */
int pt_explain_main(int argc, char **argv, const char *default_conf);

#endif
