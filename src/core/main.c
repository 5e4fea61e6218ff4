/* SPDX-License-Identifier: MIT */
/* portico entry point: command line, configuration, workers, and the main loop that owns
 * signals. */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <llhttp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "core/worker.h"
#include "http/explain.h"
#include "net/tls.h"
#include "upstream/resilience.h"

#ifndef PT_DEFAULT_CONF
#define PT_DEFAULT_CONF "/etc/portico/portico.conf"
#endif

/* Descriptors a process needs besides connections: log files, event loops, wake-ups, health
 * probes, the resolver. Only used to judge whether the limit fits the configuration. */
#define PT_FD_MARGIN 64

static struct pt_runtime runtime;
static int stopping;

static void
usage(FILE *f)
{
    fprintf(f, "usage: portico [-c FILE] [-t [-v]] [-v]\n"
               "       portico explain [-c FILE] [-H 'Name: value']... [--from ADDR] "
               "'METHOD URL'\n"
               "  -c FILE  configuration file (default " PT_DEFAULT_CONF ")\n"
               "  -t       check the configuration and exit; with -v, print the routing table\n"
               "  -v       print versions of portico and its libraries\n"
               "  explain  say where a request would go and what the backend would receive,\n"
               "           without sending anything (portico explain -h)\n");
}

static void
versions(void)
{
    printf("portico %s\n", PACKAGE_VERSION);
    printf("libev %d.%d\n", ev_version_major(), ev_version_minor());
    printf("nghttp2 %s\n", nghttp2_version(0)->version_str);
    printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("llhttp %d.%d.%d\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH);
    printf("modules:");
    for (unsigned i = 0; pt_modules[i] != NULL; i++)
        printf(" %s", pt_modules[i]->name);
    printf("\n");
}

/* Raises the soft RLIMIT_NOFILE to the hard limit, which any process may do: a worker out of
 * descriptors only pauses its accepts (see on_accept), but every descriptor it lacks is a
 * client kept waiting. Logs the resulting figure, and warns once when the configuration may
 * need more: a client and a backend descriptor per connection, workers x max_connections of
 * them, plus a listening socket per address per worker. Main thread, after the log is open. */
static void
raise_nofile(struct pt_conf *c)
{
    struct rlimit rl;
    unsigned long long need;

    if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
        int e = errno;

        pt_log(PT_LOG_WARN, "getrlimit(RLIMIT_NOFILE) failed: %s", strerror(e));
    } else {
        if (rl.rlim_cur < rl.rlim_max) {
            struct rlimit raised = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};

            if (setrlimit(RLIMIT_NOFILE, &raised) == -1) {
                int e = errno;

                pt_log(PT_LOG_WARN, "cannot raise the file descriptor limit from %llu to %llu: %s",
                       (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                       strerror(e));
            } else {
                rl.rlim_cur = rl.rlim_max;
            }
        }
        pt_log(PT_LOG_NOTICE, "file descriptor limit: %llu", (unsigned long long)rl.rlim_cur);
        need = (unsigned long long)c->workers * (unsigned long long)c->max_connections * 2 +
               (unsigned long long)c->n_listens * c->workers + PT_FD_MARGIN;
        if (c->max_connections_auto && rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur) {
            /* not configured: take what the limit allows rather than warn about a default */
            unsigned long long room = (unsigned long long)c->n_listens * c->workers +
                                      PT_FD_MARGIN;
            unsigned long long fit = rl.rlim_cur > room ? (rl.rlim_cur - room) /
                                                              (2ULL * c->workers)
                                                        : 0;

            c->max_connections = (int64_t)(fit < 16 ? 16 : fit);
            pt_log(PT_LOG_NOTICE, "max_connections %lld per worker, to fit the descriptor limit",
                   (long long)c->max_connections);
            need = 0;
        }
        if (rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur)
            pt_log(PT_LOG_WARN,
                   "file descriptor limit %llu is below the %llu that %u worker(s) x "
                   "max_connections %lld may need (a client and a backend descriptor per "
                   "connection); past it accepts pause on EMFILE: raise LimitNOFILE / ulimit -n "
                   "or lower max_connections",
                   (unsigned long long)rl.rlim_cur, need, c->workers,
                   (long long)c->max_connections);
    }
}

static void
on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    if (stopping)
        return;
    stopping = 1;
    pt_log(PT_LOG_NOTICE, "%s: stopping gracefully (shutdown_timeout %lldms)",
           strsignal(w->signum), (long long)runtime.conf->shutdown_timeout);
    pt_runtime_stop(&runtime);
    pt_health_stop();
    ev_break(loop, EVBREAK_ALL);
}

static void
on_reopen_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct pt_err err;

    if (pt_log_reopen(&err) != PT_OK)
        pt_log(PT_LOG_ERROR, "%s", err.msg);
    for (unsigned i = 0; pt_modules[i] != NULL; i++)
        if (pt_modules[i]->reopen != NULL)
            pt_modules[i]->reopen(runtime.conf);
    pt_log(PT_LOG_NOTICE, "log files reopened");
}

static void
on_ticket_rotate(struct ev_loop *loop, ev_timer *t, int revents)
{
    pt_tls_rotate_ticket_keys();
}

static void
on_hup_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    pt_log(PT_LOG_WARN, "SIGHUP: configuration reload is not supported yet; ignoring");
}

int
main(int argc, char **argv)
{
    const char *path = PT_DEFAULT_CONF;
    int test = 0, verbose = 0, opt;
    struct pt_err err = {{0}};
    struct pt_conf *conf;
    struct ev_loop *loop;
    ev_signal sig_term, sig_int, sig_usr1, sig_hup;
    ev_timer ticket_timer;

    if (argc > 1 && strcmp(argv[1], "explain") == 0) {
        if (pt_modules_init() != PT_OK)
            return 1;
        return pt_explain_main(argc - 1, argv + 1, PT_DEFAULT_CONF);
    }
    while ((opt = getopt(argc, argv, "c:tvh")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (pt_modules_init() != PT_OK)
        return 1;
    if (verbose && !test) {
        versions();
        return 0;
    }
    conf = pt_conf_load(path, stderr, &err);
    if (conf == NULL) {
        if (test)
            fprintf(stderr, "portico: configuration file %s test failed\n", path);
        return 1;
    }
    if (test) {
        if (verbose)
            pt_http_routes_print(conf, stdout);
        printf("portico: configuration file %s test is successful\n", path);
        pt_conf_unref(conf);
        return 0;
    }
    if (pt_log_open(conf->error_log, (enum pt_log_level)conf->error_log_level, &err) != PT_OK) {
        fprintf(stderr, "portico: %s\n", err.msg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(conf);
    if (pt_tls_init(&err) != PT_OK) {
        pt_log(PT_LOG_EMERG, "%s", err.msg);
        return 1;
    }
    if (pt_runtime_listen(&runtime, conf, &err) != PT_OK) {
        pt_log(PT_LOG_EMERG, "%s", err.msg);
        return 1;
    }
    loop = ev_default_loop(EVFLAG_AUTO);
    ev_signal_init(&sig_term, on_stop_signal, SIGTERM);
    ev_signal_init(&sig_int, on_stop_signal, SIGINT);
    ev_signal_init(&sig_usr1, on_reopen_signal, SIGUSR1);
    ev_signal_init(&sig_hup, on_hup_signal, SIGHUP);
    ev_signal_start(loop, &sig_term);
    ev_signal_start(loop, &sig_int);
    ev_signal_start(loop, &sig_usr1);
    ev_signal_start(loop, &sig_hup);
    /* session ticket keys rotate hourly; the previous key still decrypts for one more hour */
    ev_timer_init(&ticket_timer, on_ticket_rotate, 3600., 3600.);
    ev_timer_start(loop, &ticket_timer);
    if (pt_runtime_start(&runtime, &err) != PT_OK) {
        pt_log(PT_LOG_EMERG, "%s", err.msg);
        return 1;
    }
    if (pt_health_start(loop, conf, &err) != PT_OK) {
        pt_log(PT_LOG_EMERG, "%s", err.msg);
        return 1;
    }
    for (unsigned i = 0; i < conf->n_listens; i++)
        pt_log(PT_LOG_NOTICE, "listening on %s", conf->listens[i]->addr.name);
    pt_log(PT_LOG_NOTICE, "portico %s started with %u worker(s), config %s", PACKAGE_VERSION,
           runtime.n_workers, path);
    ev_run(loop, 0);
    pt_runtime_join(&runtime);
    pt_log(PT_LOG_NOTICE, "stopped");
    return 0;
}
