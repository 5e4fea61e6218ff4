/* SPDX-License-Identifier: MIT */
/* portico entry point: command line, configuration, workers, and the main loop that owns
 * signals. */
#include <errno.h>
#include <fcntl.h>
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
#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "core/notify.h"
#include "core/priv.h"
#include "core/regex.h"
#include "core/upgrade.h"
#include "core/worker.h"
#include "http/explain.h"
#include "stream/stream.h"
#include "net/tls.h"
#include "upstream/resilience.h"
#include "upstream/upstream.h"

#ifndef PT_DEFAULT_CONF
#define PT_DEFAULT_CONF "/etc/portico/portico.conf"
#endif

/* Descriptors a process needs besides connections: log files, event loops, wake-ups, health
 * probes, the resolver. Only used to judge whether the limit fits the configuration. */
#define PT_FD_MARGIN 64

static struct pt_runtime runtime;
static int stopping;
static const char *conf_path;
static rlim_t nofile = RLIM_INFINITY; /* the descriptor limit in force (raise_nofile) */
static int reload_again;              /* a SIGHUP came while a reload was in progress */
static ev_async reload_switched;
static int exit_code;                 /* what main returns after its loop */
static pid_t handed_to;               /* a binary upgrade handed over to this process */
static int delaying;                  /* stopping, within shutdown_delay: still serving */
static ev_timer delay_timer;

static void
usage(FILE *f)
{
    fprintf(f, "usage: portico [-c FILE] [-t [-v]] [-v] [-s SIGNAL]\n"
               "       portico explain [-c FILE] [-H 'Name: value']... [--from ADDR] "
               "'METHOD URL'\n"
               "  -c FILE    configuration file (default " PT_DEFAULT_CONF ")\n"
               "  -t         check the configuration and exit; with -v, print the routing "
               "table\n"
               "  -v         print versions of portico and its libraries\n"
               "  -s SIGNAL  tell the running portico (its `pid` file): reload, reopen, stop, "
               "quit\n"
               "             or upgrade (start the binary now at its path, hand over, drain)\n"
               "  explain    say where a request would go and what the backend would receive,\n"
               "             without sending anything (portico explain -h)\n");
}

static void
versions(void)
{
    char re[80];

    printf("portico %s\n", PACKAGE_VERSION);
    printf("libev %d.%d\n", ev_version_major(), ev_version_minor());
    printf("nghttp2 %s\n", nghttp2_version(0)->version_str);
    printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("llhttp %d.%d.%d\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH);
    printf("PCRE2 %s\n", pt_regex_version(re, sizeof(re)));
    printf("modules:");
    for (unsigned i = 0; pt_modules[i] != NULL; i++)
        printf(" %s", pt_modules[i]->name);
    printf("\n");
}

/* max_connections, when not configured, is lowered to what the descriptor limit allows (a
 * client and a backend descriptor per connection, plus a listening socket per address per
 * worker); when configured above it, a warning says so once. Main thread. */
static void
fit_max_connections(struct pt_conf *c)
{
    unsigned long long need = (unsigned long long)c->workers *
                                  (unsigned long long)c->max_connections * 2 +
                              (unsigned long long)c->n_listens * c->workers + PT_FD_MARGIN;

    if (nofile == RLIM_INFINITY || need <= nofile)
        return;
    if (c->max_connections_auto) {
        /* not configured: take what the limit allows rather than warn about a default */
        unsigned long long room = (unsigned long long)c->n_listens * c->workers + PT_FD_MARGIN;
        unsigned long long fit = nofile > room ? (nofile - room) / (2ULL * c->workers) : 0;

        c->max_connections = (int64_t)(fit < 16 ? 16 : fit);
        pt_log(PT_LOG_NOTICE, "max_connections %lld per worker, to fit the descriptor limit",
               (long long)c->max_connections);
        return;
    }
    pt_log(PT_LOG_WARN,
           "file descriptor limit %llu is below the %llu that %u worker(s) x "
           "max_connections %lld may need (a client and a backend descriptor per "
           "connection); past it accepts pause on EMFILE: raise LimitNOFILE / ulimit -n "
           "or lower max_connections",
           (unsigned long long)nofile, need, c->workers, (long long)c->max_connections);
}

/* Raises the soft RLIMIT_NOFILE to the hard limit, which any process may do: a worker out of
 * descriptors only pauses its accepts (see on_accept), but every descriptor it lacks is a
 * client kept waiting. Logs the resulting figure. Main thread, after the log is open. */
static void
raise_nofile(struct pt_conf *c)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
        int e = errno;

        pt_log(PT_LOG_WARN, "getrlimit(RLIMIT_NOFILE) failed: %s", strerror(e));
        return;
    }
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
    nofile = rl.rlim_cur;
    fit_max_connections(c);
}

/* portico -s SIGNAL: the running process is the one the configuration's pid file names. */
static int
send_signal(const char *path, const char *name)
{
    static const struct {
        const char *name;
        int sig;
    } sigs[] = {{"reload", SIGHUP},
                {"reopen", SIGUSR1},
                {"stop", SIGTERM},
                {"quit", SIGTERM},
                {"upgrade", SIGUSR2}};
    struct pt_err err = {{0}};
    struct pt_conf *conf;
    int sig = 0;
    char buf[64];
    uint64_t pid;
    FILE *f;

    for (unsigned i = 0; i < PT_ARRAY_LEN(sigs); i++)
        if (strcmp(sigs[i].name, name) == 0)
            sig = sigs[i].sig;
    if (sig == 0) {
        fprintf(stderr, "portico: unknown signal \"%s\" (reload, reopen, stop, quit, upgrade)\n",
                name);
        return 2;
    }
    conf = pt_conf_load(path, stderr, &err);
    if (conf == NULL)
        return 1;
    if (conf->pid_file == NULL) {
        fprintf(stderr, "portico: %s has no \"pid\" directive: cannot find the running "
                        "process (send %s with kill, or systemctl)\n", path, name);
        pt_conf_unref(conf);
        return 1;
    }
    f = fopen(conf->pid_file, "r");
    if (f == NULL) {
        fprintf(stderr, "portico: cannot open pid file %s: %s\n", conf->pid_file,
                strerror(errno));
        pt_conf_unref(conf);
        return 1;
    }
    if (fgets(buf, sizeof(buf), f) == NULL) {
        buf[0] = '\0';
    }
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    if (pt_parse_uint(buf, INT32_MAX, &pid) != PT_OK || pid < 2) {
        fprintf(stderr, "portico: pid file %s does not hold a process id\n", conf->pid_file);
        pt_conf_unref(conf);
        return 1;
    }
    if (kill((pid_t)pid, sig) == -1) {
        fprintf(stderr, "portico: kill(%llu, %s): %s\n", (unsigned long long)pid, name, strerror(errno));
        pt_conf_unref(conf);
        return 1;
    }
    pt_conf_unref(conf);
    return 0;
}

/* ---- reload -------------------------------------------------------------------------------- */

/* Settings a reload cannot change in a running process: the new snapshot takes the running
 * values, and the log says which were ignored. */
static void
keep_process_settings(struct pt_conf *c, const struct pt_conf *old)
{
    if (c->workers != old->workers) {
        pt_log(PT_LOG_WARN, "reload: workers %u needs a restart; keeping %u", c->workers,
               old->workers);
        c->workers = old->workers;
    }
    if (!pt_str_eq(c->error_log, old->error_log)) {
        pt_log(PT_LOG_WARN, "reload: error_log %s needs a restart; still logging to %s",
               c->error_log != NULL ? c->error_log : "stderr",
               old->error_log != NULL ? old->error_log : "stderr");
        /* the new snapshot's own copy: the old one's arena goes with it */
        c->error_log = old->error_log != NULL ? pt_arena_strdup(&c->arena, old->error_log)
                                              : NULL;
    }
    if (!pt_str_eq(c->user, old->user) || !pt_str_eq(c->group, old->group)) {
        pt_log(PT_LOG_WARN, "reload: user %s%s%s needs a restart; keeping user %s%s%s",
               c->user != NULL ? c->user : "(none)", c->group != NULL ? " " : "",
               c->group != NULL ? c->group : "", old->user != NULL ? old->user : "(none)",
               old->group != NULL ? " " : "", old->group != NULL ? old->group : "");
        c->user = old->user != NULL ? pt_arena_strdup(&c->arena, old->user) : NULL;
        c->group = old->group != NULL ? pt_arena_strdup(&c->arena, old->group) : NULL;
        c->uid = old->uid;
        c->gid = old->gid;
        c->user_pos = old->user_pos;
    }
    if (c->error_log_level != old->error_log_level) {
        pt_log(PT_LOG_NOTICE, "reload: error_log level %s", pt_log_level_name(c->error_log_level));
        pt_log_set_level((enum pt_log_level)c->error_log_level);
    }
}

/* Logs each line the loader wrote (file:line:col: message) as an error, or a warning. */
static void
log_lines(char *text, size_t len)
{
    char *p = text, *end = text + len;

    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);

        if (n > 0)
            pt_log(memmem(p, n, ": warning: ", 11) != NULL ? PT_LOG_WARN : PT_LOG_ERROR,
                   "reload: %.*s", (int)n, p);
        p += n + 1;
    }
}

static void
reload(struct ev_loop *loop)
{
    struct pt_err err = {{0}};
    struct pt_conf *old = runtime.conf, *conf;
    char *text = NULL;
    size_t len = 0;
    FILE *errout;

    if (stopping) {
        if (delaying) /* the loop still runs during shutdown_delay: say why nothing happens */
            pt_log(PT_LOG_WARN, "reload refused: this process is stopping (shutdown_delay)");
        return;
    }
    if (pt_upgrade_starting() || pt_upgrade_is_child()) {
        pt_log(PT_LOG_WARN, "reload refused: a binary upgrade is in progress (the new process "
               "reads the configuration file itself); reload again once it is over");
        return;
    }
    if (pt_runtime_reloading(&runtime)) {
        pt_log(PT_LOG_NOTICE, "reload: the previous one is still switching workers; "
               "reloading again once it is done");
        reload_again = 1;
        return;
    }
    pt_log(PT_LOG_NOTICE, "reloading %s", conf_path);
    pt_notify_reloading();
    pt_priv_rescan(); /* after the drop, the helper learns what the file names now */
    errout = open_memstream(&text, &len);
    conf = pt_conf_load(conf_path, errout != NULL ? errout : stderr, &err);
    if (errout != NULL)
        fclose(errout);
    if (conf == NULL) {
        log_lines(text, len);
        if (len == 0)
            pt_log(PT_LOG_ERROR, "reload: %s", err.msg);
        runtime.reloads_failed++;
        pt_log(PT_LOG_ERROR, "reload failed: still serving configuration generation %u",
               old->generation);
        free(text);
        pt_notify_ready("reload failed: still serving the previous configuration");
        return;
    }
    log_lines(text, len); /* warnings */
    free(text);
    keep_process_settings(conf, old);
    fit_max_connections(conf);
    for (unsigned i = 0; pt_modules[i] != NULL; i++)
        if (pt_modules[i]->conf_adopt != NULL)
            pt_modules[i]->conf_adopt(conf, old);
    pt_health_stop();
    conf->generation = old->generation + 1; /* before the workers see it */
    pt_tls_use_conf(conf);                  /* its ticket keys, for every new handshake */
    if (pt_runtime_reload(&runtime, conf, &err) != PT_OK) {
        pt_tls_use_conf(old);
        pt_log(PT_LOG_ERROR, "reload: %s", err.msg);
        pt_log(PT_LOG_ERROR, "reload failed: still serving configuration generation %u",
               old->generation);
        runtime.reloads_failed++;
        pt_conf_unref(conf);
        conf = old;
    }
    if (conf != old) {
        for (unsigned i = 0; i < conf->n_listens; i++) {
            unsigned j;

            for (j = 0; j < old->n_listens; j++)
                if (pt_listen_same(old->listens[j], conf->listens[i]))
                    break;
            if (j == old->n_listens)
                pt_log(PT_LOG_NOTICE, "listening on %s%s", conf->listens[i]->addr.name,
                       conf->listens[i]->udp ? " udp" : "");
        }
        for (unsigned j = 0; j < old->n_listens; j++) {
            unsigned i;

            for (i = 0; i < conf->n_listens; i++)
                if (pt_listen_same(old->listens[j], conf->listens[i]))
                    break;
            if (i == conf->n_listens)
                pt_log(PT_LOG_NOTICE, "no longer listening on %s%s", old->listens[j]->addr.name,
                       old->listens[j]->udp ? " udp" : "");
        }
        if (conf->pid_file != NULL &&
            (old->pid_file == NULL || strcmp(conf->pid_file, old->pid_file) != 0)) {
            struct pt_err perr = {{0}};

            if (pt_priv_pid_write(conf->pid_file, &perr) != PT_OK)
                pt_log(PT_LOG_ERROR, "reload: %s", perr.msg);
            else if (old->pid_file != NULL)
                pt_priv_pid_remove(old->pid_file);
        } else if (conf->pid_file == NULL && old->pid_file != NULL) {
            pt_priv_pid_remove(old->pid_file);
        }
        pt_log(PT_LOG_NOTICE, "reloaded: configuration generation %u", conf->generation);
    }
    if (pt_health_start(loop, conf, &err) != PT_OK)
        pt_log(PT_LOG_ERROR, "reload: %s", err.msg);
    if (pt_resolve_start(loop, conf, &err) != PT_OK) /* follows the new snapshot's names */
        pt_log(PT_LOG_ERROR, "reload: %s", err.msg);
    {
        char status[128];

        snprintf(status, sizeof(status), "configuration generation %u", conf->generation);
        pt_notify_ready(status);
    }
}

static void
on_reload_switched(struct ev_loop *loop, ev_async *a, int revents)
{
    if (!pt_runtime_reloading(&runtime) && runtime.old_conf != NULL)
        pt_runtime_reload_done(&runtime);
    if (reload_again && !pt_runtime_reloading(&runtime)) {
        reload_again = 0;
        reload(loop);
    }
}

/* systemd (Type=notify): ready once the listeners are open and the workers run */
static void
notify_started(const char *path)
{
    char status[512];

    snprintf(status, sizeof(status), "portico %s: %u worker(s), config %s", PACKAGE_VERSION,
             runtime.n_workers, path);
    pt_notify_ready(status);
}

/* The graceful stop proper (docs/operations.md, "Graceful stop"): workers drain, the main loop
 * ends, main joins them. */
static void
drain_now(struct ev_loop *loop)
{
    pt_runtime_stop(&runtime);
    pt_health_stop();
    pt_resolve_stop();
    ev_break(loop, EVBREAK_ALL);
}

static void
on_delay_over(struct ev_loop *loop, ev_timer *t, int revents)
{
    delaying = 0;
    pt_log(PT_LOG_NOTICE, "shutdown_delay over: stopping gracefully (shutdown_timeout %lldms)",
           (long long)runtime.conf->shutdown_timeout);
    drain_now(loop);
}

/* SIGTERM, SIGINT. Readiness turns 503 at once (and systemd hears STOPPING=1); with
 * shutdown_delay the listeners go on accepting and serving as before for that long, so that
 * balancers that poll the readiness probe, or deregister the instance on their own clock, stop
 * sending before anything is refused; then the drain. A second signal during the delay starts
 * the drain at once; one during the drain is ignored. */
static void
on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    pt_msec delay = runtime.conf->shutdown_delay;

    if (delaying) {
        ev_timer_stop(loop, &delay_timer);
        delaying = 0;
        pt_log(PT_LOG_NOTICE, "%s again during shutdown_delay: stopping gracefully now "
               "(shutdown_timeout %lldms)", strsignal(w->signum),
               (long long)runtime.conf->shutdown_timeout);
        drain_now(loop);
        return;
    }
    if (stopping)
        return;
    stopping = 1;
    pt_upgrade_abandon("a stop signal came while the new process was starting; stopped it");
    pt_runtime_set_readiness(PT_READINESS_STOPPING);
    pt_notify_stopping();
    if (delay > 0) {
        delaying = 1;
        pt_log(PT_LOG_NOTICE, "%s: not ready; still serving for shutdown_delay %lldms, then "
               "stopping gracefully (shutdown_timeout %lldms)", strsignal(w->signum),
               (long long)delay, (long long)runtime.conf->shutdown_timeout);
        ev_timer_init(&delay_timer, on_delay_over, (double)delay / 1000.0, 0.);
        ev_timer_start(loop, &delay_timer);
        pt_runtime_part(&runtime);
        return;
    }
    pt_log(PT_LOG_NOTICE, "%s: stopping gracefully (shutdown_timeout %lldms)",
           strsignal(w->signum), (long long)runtime.conf->shutdown_timeout);
    drain_now(loop);
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
    reload(loop);
}

/* ---- binary upgrade ------------------------------------------------------------------------ */

/* The running process: the new one is ready and accepts on our sockets from now on. Stop
 * accepting, let the connections finish, and leave the main loop; main waits for the workers
 * (pt_runtime_join) and exits 0. */
static void
upgrade_commit(pid_t pid)
{
    pt_msec t = runtime.conf->shutdown_timeout;

    stopping = 1;
    handed_to = pid;
    pt_log(PT_LOG_NOTICE, "upgrade: handed over to pid %ld; draining: connections finish what "
           "they do for %lldms, then the rest drain as on SIGTERM until shutdown_timeout "
           "(%lldms)", (long)pid, (long long)(t / 2), (long long)t);
    pt_runtime_handover(&runtime);
    pt_health_stop();
    pt_resolve_stop();
    ev_break(runtime.main_loop, EVBREAK_ALL);
}

static void
on_upgrade_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    if (stopping) {
        pt_log(PT_LOG_WARN, "upgrade refused: this process is stopping");
        return;
    }
    pt_upgrade_start(loop, &runtime, upgrade_commit);
}

/* The new process: the previous one stopped accepting ("go"). */
static void
upgrade_go(pid_t previous)
{
    char status[512];

    pt_runtime_set_readiness(PT_READINESS_READY);
    pt_runtime_accept(&runtime);
    runtime.upgrades++; /* this one */
    if (runtime.conf->pid_file != NULL) {
        struct pt_err err = {{0}};

        if (pt_priv_pid_write(runtime.conf->pid_file, &err) != PT_OK)
            pt_log(PT_LOG_ERROR, "%s", err.msg); /* too late to give up */
    }
    pt_log(PT_LOG_NOTICE, "upgrade: accepting connections as pid %ld; the previous process "
           "(pid %ld) drains", (long)getpid(), (long)previous);
    snprintf(status, sizeof(status), "portico %s: %u worker(s), config %s, upgraded from pid %ld",
             PACKAGE_VERSION, runtime.n_workers, conf_path, (long)previous);
    pt_notify_ready(status);
}

/* The new process: the previous one never said "go". It keeps serving; this one leaves. */
static void
upgrade_give_up(void)
{
    stopping = 1;
    exit_code = 1;
    pt_runtime_set_readiness(PT_READINESS_STOPPING);
    pt_runtime_stop(&runtime);
    pt_health_stop();
    pt_resolve_stop();
    ev_break(runtime.main_loop, EVBREAK_ALL);
}

/* A start-up failure: logged, and told to the previous process in an upgrade. */
static int
start_failed(const char *msg)
{
    pt_log(PT_LOG_EMERG, "%s", msg);
    pt_upgrade_fail(msg);
    return 1;
}

/* Loads the configuration, its messages on stderr; in an upgrade the first error also goes
 * to the previous process, which logs it. */
static struct pt_conf *
load_conf(const char *path, int upgrading, struct pt_err *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = upgrading ? open_memstream(&text, &len) : NULL;
    struct pt_conf *conf = pt_conf_load(path, out != NULL ? out : stderr, err);

    if (out != NULL) {
        fclose(out);
        fwrite(text, 1, len, stderr);
        if (conf == NULL) {
            char *nl = memchr(text, '\n', len);

            if (nl != NULL)
                *nl = '\0';
            pt_upgrade_fail(len > 0 ? text : err->msg);
        }
        free(text);
    }
    return conf;
}

int
main(int argc, char **argv)
{
    const char *path = PT_DEFAULT_CONF, *signame = NULL;
    int test = 0, verbose = 0, opt, upgrading, drop_first;
    struct pt_err err = {{0}};
    struct pt_conf *conf;
    struct ev_loop *loop;
    struct pt_upgrade_inherit inherit = {0};
    ev_signal sig_term, sig_int, sig_usr1, sig_hup, sig_usr2;
    sigset_t early;
    ev_timer ticket_timer;

    pt_upgrade_set_command(argc, argv);
    if (argc > 1 && strcmp(argv[1], "explain") == 0) {
        if (pt_modules_init() != PT_OK)
            return 1;
        return pt_explain_main(argc - 1, argv + 1, PT_DEFAULT_CONF);
    }
    while ((opt = getopt(argc, argv, "c:s:tvh")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 's':
            signame = optarg;
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
    if (signame != NULL)
        return send_signal(path, signame);
    /* started by a running portico's upgrade: its socket comes in PORTICO_UPGRADE_FD */
    upgrading = 0;
    if (!test) {
        int rc = pt_upgrade_inherited(&err);

        if (rc == PT_ERR) {
            fprintf(stderr, "portico: %s\n", err.msg);
            return 1;
        }
        upgrading = rc == PT_OK;
    }
    conf_path = path;
    conf = load_conf(path, upgrading, &err);
    if (conf == NULL) {
        if (test)
            fprintf(stderr, "portico: configuration file %s test failed\n", path);
        return 1;
    }
    conf->generation = 1;
    if (test) {
        if (verbose) {
            pt_http_routes_print(conf, stdout);
            pt_stream_print(conf, stdout);
        }
        printf("portico: configuration file %s test is successful\n", path);
        pt_conf_unref(conf);
        return 0;
    }
    if (pt_log_open(conf->error_log, (enum pt_log_level)conf->error_log_level, &err) != PT_OK) {
        fprintf(stderr, "portico: %s\n", err.msg);
        pt_upgrade_fail(err.msg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    /* a signal that comes before its watcher exists (a SIGHUP as soon as the port accepts,
     * while the helper starts) waits for it rather than ending the process */
    sigemptyset(&early);
    sigaddset(&early, SIGHUP);
    sigaddset(&early, SIGTERM);
    sigaddset(&early, SIGINT);
    sigaddset(&early, SIGUSR1);
    sigaddset(&early, SIGUSR2);
    sigprocmask(SIG_BLOCK, &early, NULL);
    if (pt_priv_check(conf, &err) != PT_OK)
        return start_failed(err.msg);
    raise_nofile(conf);
    if (pt_tls_init(&err) != PT_OK)
        return start_failed(err.msg);
    /* an upgrade's new process switches to `user` first: the previous process runs as `user`
     * and may have been taken over, so what it sends is parsed without root (addresses it does
     * not hand over are bound below through the helper, like a reload's) */
    drop_first = upgrading;
    if (drop_first && pt_priv_drop(conf, path, &err) != PT_OK)
        return start_failed(err.msg);
    if (upgrading) {
        /* the previous process's sockets, counters and module state (after pt_tls_init: the
         * TLS ticket keys it hands over replace the fresh ones) */
        if (pt_upgrade_receive(conf, &runtime, conf->upgrade_timeout, &inherit, &err) != PT_OK)
            return start_failed(err.msg);
        runtime.held = 1; /* accept nothing until the previous process says "go" */
        pt_log(PT_LOG_NOTICE, "upgrade: configuration generation %u; before it: %llu reload(s) "
               "(%llu failed), %llu upgrade(s) (%llu failed)", conf->generation,
               (unsigned long long)runtime.reloads, (unsigned long long)runtime.reloads_failed,
               (unsigned long long)runtime.upgrades,
               (unsigned long long)runtime.upgrades_failed);
    }
    pt_tls_use_conf(conf);
    for (unsigned i = 0; i < inherit.n_listens; i++)
        inherit.listens[i].n_handed = inherit.listens[i].socks.n;
    if (pt_runtime_listen(&runtime, conf, inherit.listens, inherit.n_listens, &err) != PT_OK)
        return start_failed(err.msg);
    for (unsigned i = 0; i < inherit.n_listens; i++) {
        const struct pt_inherited_listen *l = &inherit.listens[i];

        if (l->taken)
            pt_log(PT_LOG_NOTICE, "upgrade: %s keeps its %u listening socket(s)", l->name,
                   l->n_handed);
        else
            pt_log(PT_LOG_NOTICE, "upgrade: %s is no longer listened on: closing its %u "
                   "socket(s)", l->name, l->n_handed);
    }
    pt_upgrade_inherit_free(&inherit);
    /* ports bound, logs and keys open: switch to `user` before any other thread exists (an
     * upgrade's new process did before it read the handoff) */
    if (!drop_first && pt_priv_drop(conf, path, &err) != PT_OK)
        return start_failed(err.msg);
    loop = ev_default_loop(EVFLAG_AUTO);
    ev_async_init(&reload_switched, on_reload_switched);
    ev_async_start(loop, &reload_switched);
    runtime.main_loop = loop;
    runtime.switched = &reload_switched;
    ev_signal_init(&sig_term, on_stop_signal, SIGTERM);
    ev_signal_init(&sig_int, on_stop_signal, SIGINT);
    ev_signal_init(&sig_usr1, on_reopen_signal, SIGUSR1);
    ev_signal_init(&sig_hup, on_hup_signal, SIGHUP);
    ev_signal_init(&sig_usr2, on_upgrade_signal, SIGUSR2);
    ev_signal_start(loop, &sig_term);
    ev_signal_start(loop, &sig_int);
    ev_signal_start(loop, &sig_usr1);
    ev_signal_start(loop, &sig_hup);
    ev_signal_start(loop, &sig_usr2);
    sigprocmask(SIG_UNBLOCK, &early, NULL);
    /* session ticket keys rotate hourly; the previous key still decrypts for one more hour */
    ev_timer_init(&ticket_timer, on_ticket_rotate, 3600., 3600.);
    ev_timer_start(loop, &ticket_timer);
    /* a worker answers a probe only once it accepts: ready from its first connection on, except
     * in an upgrade's new process, held until the previous one says "go" (upgrade_go) */
    if (!upgrading)
        pt_runtime_set_readiness(PT_READINESS_READY);
    if (pt_runtime_start(&runtime, &err) != PT_OK)
        return start_failed(err.msg);
    if (pt_health_start(loop, conf, &err) != PT_OK)
        return start_failed(err.msg);
    if (pt_resolve_start(loop, conf, &err) != PT_OK)
        return start_failed(err.msg);
    for (unsigned i = 0; i < conf->n_listens; i++)
        pt_log(PT_LOG_NOTICE, "listening on %s%s", conf->listens[i]->addr.name,
               conf->listens[i]->udp ? " udp" : "");
    if (upgrading) {
        /* ready: configuration, TLS, modules, workers and the first health checks are up; the
         * previous process hands over when it hears it */
        pt_log(PT_LOG_NOTICE, "portico %s (instance %s) started with %u worker(s), config %s; "
               "ready, waiting for the previous process to hand over", PACKAGE_VERSION,
               conf->instance_name, runtime.n_workers, path);
        if (pt_upgrade_ready(loop, conf->pid_file, conf->upgrade_timeout, upgrade_go,
                             upgrade_give_up, &err) != PT_OK)
            return start_failed(err.msg);
    } else {
        if (conf->pid_file != NULL && pt_priv_pid_write(conf->pid_file, &err) != PT_OK)
            return start_failed(err.msg);
        pt_log(PT_LOG_NOTICE, "portico %s (instance %s) started with %u worker(s), config %s",
               PACKAGE_VERSION, conf->instance_name, runtime.n_workers, path);
        notify_started(path);
    }
    ev_run(loop, 0);
    {
        const char *pid_file = runtime.conf->pid_file;

        /* after a handover the new process owns the file when it names the same one */
        if (pid_file != NULL && !pt_upgrade_pid_file_taken(pid_file))
            pt_priv_pid_remove(pid_file);
    }
    pt_runtime_join(&runtime);
    if (handed_to > 0)
        pt_log(PT_LOG_NOTICE, "stopped (pid %ld, handed over to pid %ld)", (long)getpid(),
               (long)handed_to);
    else
        pt_log(PT_LOG_NOTICE, "stopped");
    return exit_code;
}
