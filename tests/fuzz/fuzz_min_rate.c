/* SPDX-License-Identifier: MIT */
/* Fuzz target: the slow-client limits: client_header_min_rate, client_body_min_rate and
 * send_min_rate as the configuration loader reads them (RATE [PERIOD]), then the meter
 * (src/core/rate.c) run with what was read against a client the input plays.
 *
 * Input: byte 0 picks the directive (% 3); the argument text follows, up to the first LF
 * (NUL bytes end it); the rest are meter operations.
 * Checked:
 * - directive: when the arguments are plain words (letters, digits, dots, blanks), the verdict
 *   and the stored values are what docs/configuration.md says: one or two words, RATE `off` or
 *   a size (pt_parse_size, itself checked by fuzz_numbers) of at most 1g, PERIOD a time of 1ms
 *   to 1h; otherwise (quotes, semicolons, braces, ...) whatever the loader decides, a stored
 *   value is in those ranges. PERIOD left out is the directive's default (10s, 60s, 60s: the
 *   configuration is read back after the http level was merged with the defaults);
 * - meter, operations of 5 bytes (what, then 4 bytes): start, the client moving N bytes,
 *   pause, resume, time passing. The harness checks the meter before each operation and cuts
 *   the client (stops the meter) once it expired, as the codecs do. Invariants: the credit never
 *   exceeds PERIOD; a running meter's deadline is its `until`; and the guarantee the docs give:
 *   a client not cut after T microseconds of running time moved more than RATE x (T - PERIOD)
 *   bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

static const char *const directives[3] = {"client_header_min_rate", "client_body_min_rate",
                                          "send_min_rate"};

static int
plain(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == ' ' || c == '\t'))
            return 0;
    }
    return 1;
}

/* the reference for plain arguments: FZ_OK with *rate and *period */
static int
ref_args(unsigned which, const char *s, size_t n, int64_t *rate, int64_t *period)
{
    char words[3][256];
    unsigned nw = 0;
    size_t i = 0;
    uint64_t r;
    int64_t p;

    while (i < n) {
        size_t b;

        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i == n)
            break;
        b = i;
        while (i < n && s[i] != ' ' && s[i] != '\t')
            i++;
        if (nw == 3 || i - b >= sizeof(words[0]))
            return FZ_ERR;
        memcpy(words[nw], s + b, i - b);
        words[nw++][i - b] = '\0';
    }
    if (nw < 1 || nw > 2)
        return FZ_ERR;
    if (strcmp(words[0], "off") == 0)
        r = 0;
    else if (fz_parse_size(words[0], &r) != FZ_OK || r > (uint64_t)1 << 30)
        return FZ_ERR;
    p = which == 0 ? 10000 : 60000; /* left out: the matching timeout's default */
    if (nw == 2 && (fz_parse_msec(words[1], &p) != FZ_OK || p < 1 || p > 3600 * 1000))
        return FZ_ERR;
    *rate = (int64_t)r;
    *period = p;
    return FZ_OK;
}

static void
run_meter(int64_t rate, int64_t period, const uint8_t *d, size_t n)
{
    struct fz_meter *m = fz_meter_new(rate, period);
    int64_t now = (int64_t)1 << 40, cap = period * 1000, until, running_us = 0;
    unsigned __int128 bytes = 0;
    int started = 0;

    for (size_t i = 0; i + 5 <= n; i += 5) {
        uint32_t arg = (uint32_t)d[i + 1] << 24 | (uint32_t)d[i + 2] << 16 |
                       (uint32_t)d[i + 3] << 8 | d[i + 4];
        int st = fz_meter_state(m, &until);

        /* what the codec's timer or its next check does */
        if (st == 1 && fz_meter_expired(m, now, 0)) {
            fz_meter_stop(m);
            started = 0;
            st = 0;
        }
        if (st == 1) {
            if (fz_meter_deadline(m) != until)
                fz_fail("running meter: deadline %lld, until %lld", (long long)fz_meter_deadline(m),
                        (long long)until);
            if (until - now > cap)
                fz_fail("credit %lld us above the period %lld us", (long long)(until - now),
                        (long long)cap);
            if (started && bytes * 1000000 <= (unsigned __int128)rate *
                                                   (unsigned __int128)(running_us > cap
                                                                           ? running_us - cap
                                                                           : 0) &&
                running_us > cap)
                fz_fail("not cut after %lld us running with %llu bytes at %lld B/s, %lld ms",
                        (long long)running_us, (unsigned long long)bytes, (long long)rate,
                        (long long)period);
        } else if (st == 2) {
            if (until < 0 || until > cap)
                fz_fail("paused credit %lld us, period %lld us", (long long)until, (long long)cap);
            if (fz_meter_deadline(m) != INT64_MAX || fz_meter_expired(m, now, 0))
                fz_fail("a paused meter has a deadline");
        } else if (fz_meter_deadline(m) != INT64_MAX || fz_meter_expired(m, now, 0)) {
            fz_fail("a stopped meter has a deadline");
        }
        switch (d[i] % 5) {
        case 0:
            fz_meter_start(m);
            started = rate > 0;
            bytes = 0;
            running_us = 0;
            break;
        case 1:
            fz_meter_add(m, now, arg);
            bytes += arg;
            break;
        case 2:
            fz_meter_pause(m, now);
            break;
        case 3:
            fz_meter_resume(m, now);
            break;
        default:
            now += arg;
            if (st == 1)
                running_us += arg;
            break;
        }
    }
    fz_meter_free(m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char tail[] = "\nserver {\n    listen 127.0.0.1:8080;\n"
                               "    location / { return 204; }\n}\n";
    const char *name;
    const char *args;
    size_t alen, i;
    char *text;
    int64_t rate = -1, period = -1, wrate = -1, wperiod = -1;
    int rc, want;

    if (size < 1)
        return 0;
    name = directives[data[0] % 3];
    args = (const char *)data + 1;
    for (alen = 0; alen < size - 1 && args[alen] != '\n' && args[alen] != '\0'; alen++)
        ;
    if (alen > 512)
        return 0;
    text = malloc(strlen(name) + alen + sizeof(tail) + 8);
    i = (size_t)sprintf(text, "%s ", name);
    memcpy(text + i, args, alen);
    i += alen;
    memcpy(text + i, ";", 1);
    memcpy(text + i + 1, tail, sizeof(tail));
    rc = fz_conf_min_rate(text, data[0] % 3, &rate, &period);
    free(text);
    if (plain(args, alen)) {
        want = ref_args(data[0] % 3, args, alen, &wrate, &wperiod);
        if ((rc == FZ_OK) != (want == FZ_OK))
            fz_fail("%s %.*s: %s, want %s", name, (int)alen, args,
                    rc == FZ_OK ? "accepted" : "refused", want == FZ_OK ? "accepted" : "refused");
        if (rc == FZ_OK && (rate != wrate || period != wperiod))
            fz_fail("%s %.*s: stored %lld %lld, want %lld %lld", name, (int)alen, args,
                    (long long)rate, (long long)period, (long long)wrate, (long long)wperiod);
    }
    if (rc != FZ_OK)
        return 0;
    if (rate < 0 || rate > (int64_t)1 << 30 || period < 1 || period > 3600 * 1000)
        fz_fail("%s %.*s: stored %lld %lld", name, (int)alen, args, (long long)rate,
                (long long)period);
    if (1 + alen < size)
        run_meter(rate, period, data + 2 + alen, size - 2 - alen);
    return 0;
}
