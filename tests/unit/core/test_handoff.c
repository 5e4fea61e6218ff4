/* SPDX-License-Identifier: MIT */
/* Unit tests for the binary-upgrade handoff records (src/core/handoff.c), over a real
 * SOCK_SEQPACKET socket pair: fields with every byte that needs escaping come back as they
 * were, empty fields too; key=value lookups; descriptors travel with their record; records
 * that break the format (bad escapes, %00, double spaces, bytes outside ASCII, too long) are
 * refused with the descriptors closed; a peer that closes reads as PT_DONE. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "core/handoff.h"

struct pair {
    int fd[2];
    struct pt_handoff *h;
    struct pt_handoff_rec *r;
};

static int
setup(void **state)
{
    struct pair *p = calloc(1, sizeof(*p));

    if (p == NULL || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p->fd) != 0)
        return -1;
    p->h = malloc(sizeof(*p->h));
    p->r = malloc(sizeof(*p->r));
    pt_handoff_init(p->h, p->fd[0]);
    *state = p;
    return 0;
}

static int
teardown(void **state)
{
    struct pair *p = *state;

    pt_handoff_fini(p->h);
    close(p->fd[0]);
    if (p->fd[1] != -1)
        close(p->fd[1]);
    free(p->h);
    free(p->r);
    free(p);
    return 0;
}

/* Sends raw bytes as one record, as a broken or hostile peer would. */
static int
recv_raw(struct pair *p, const char *raw, size_t len, struct pt_err *err)
{
    assert_int_equal(send(p->fd[0], raw, len, 0), (ssize_t)len);
    memset(err, 0, sizeof(*err));
    return pt_handoff_recv(p->fd[1], p->r, err);
}

static void
test_fields_round_trip(void **state)
{
    struct pair *p = *state;
    struct pt_err err = {{0}};
    char all[256];

    for (int i = 1; i < 256; i++)
        all[i - 1] = (char)i;
    all[255] = '\0';
    pt_handoff_begin(p->h, "upstream");
    pt_handoff_str(p->h, "server");
    pt_handoff_str(p->h, "a name with spaces and 100%");
    pt_handoff_str(p->h, "");
    pt_handoff_str(p->h, all);
    pt_handoff_u64(p->h, UINT64_MAX);
    pt_handoff_i64(p->h, INT64_MIN);
    pt_handoff_kv(p->h, "ejected_until", -5);
    pt_handoff_kv(p->h, "down", 1);
    pt_handoff_str(p->h, "");
    assert_int_equal(pt_handoff_end(p->h), PT_OK);
    assert_int_equal(pt_handoff_flush(p->h, &err), PT_OK);
    assert_int_equal(pt_handoff_recv(p->fd[1], p->r, &err), PT_OK);
    assert_string_equal(p->r->type, "upstream");
    assert_int_equal(p->r->n, 9);
    assert_string_equal(p->r->f[0], "server");
    assert_string_equal(p->r->f[1], "a name with spaces and 100%");
    assert_string_equal(p->r->f[2], "");
    assert_string_equal(p->r->f[3], all);
    assert_string_equal(p->r->f[4], "18446744073709551615");
    assert_string_equal(p->r->f[5], "-9223372036854775808");
    assert_string_equal(p->r->f[8], "");
    assert_int_equal(p->r->n_fds, 0);

    int64_t v;
    uint64_t u;

    assert_int_equal(pt_handoff_get_i64(p->r, 1, "ejected_until", &v), PT_OK);
    assert_true(v == -5);
    assert_int_equal(pt_handoff_get_i64(p->r, 1, "down", &v), PT_OK);
    assert_true(v == 1);
    assert_int_equal(pt_handoff_get_i64(p->r, 1, "missing", &v), PT_ERR);
    assert_null(pt_handoff_get(p->r, 1, "eject")); /* a prefix is not a key */
    assert_int_equal(pt_handoff_parse_u64(p->r->f[4], &u), PT_OK);
    assert_true(u == UINT64_MAX);
    assert_int_equal(pt_handoff_parse_i64(p->r->f[5], &v), PT_OK);
    assert_true(v == INT64_MIN);
    assert_int_equal(pt_handoff_parse_i64("12x", &v), PT_ERR);
    assert_int_equal(pt_handoff_parse_i64("-", &v), PT_ERR);
}

static void
test_descriptors_travel_with_their_record(void **state)
{
    struct pair *p = *state;
    struct pt_err err = {{0}};
    int fds[3];
    struct stat a, b;

    for (int i = 0; i < 3; i++) {
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(fds[i] >= 0);
    }
    pt_handoff_begin(p->h, "listen");
    pt_handoff_str(p->h, "127.0.0.1:80");
    pt_handoff_u64(p->h, 3);
    for (int i = 0; i < 3; i++)
        pt_handoff_fd(p->h, fds[i]);
    assert_int_equal(pt_handoff_end(p->h), PT_OK);
    pt_handoff_begin(p->h, "end");
    assert_int_equal(pt_handoff_end(p->h), PT_OK);
    assert_true(pt_handoff_pending(p->h));
    assert_int_equal(pt_handoff_flush(p->h, &err), PT_OK);
    assert_false(pt_handoff_pending(p->h));
    assert_int_equal(pt_handoff_recv(p->fd[1], p->r, &err), PT_OK);
    assert_string_equal(p->r->type, "listen");
    assert_int_equal(p->r->n_fds, 3);
    for (int i = 0; i < 3; i++) {
        /* the same open file, a new descriptor, close-on-exec */
        assert_int_equal(fstat(fds[i], &a), 0);
        assert_int_equal(fstat(p->r->fds[i], &b), 0);
        assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
        assert_true(p->r->fds[i] != fds[i]);
        assert_true(fcntl(p->r->fds[i], F_GETFD) & FD_CLOEXEC);
        close(fds[i]);
    }
    pt_handoff_rec_close_fds(p->r);
    for (int i = 0; i < 3; i++)
        assert_int_equal(p->r->fds[i], -1);
    /* the next record has none */
    assert_int_equal(pt_handoff_recv(p->fd[1], p->r, &err), PT_OK);
    assert_string_equal(p->r->type, "end");
    assert_int_equal(p->r->n, 0);
    assert_int_equal(p->r->n_fds, 0);
}

static void
test_limits_refuse_the_record(void **state)
{
    struct pair *p = *state;
    char big[PT_HANDOFF_REC_MAX];

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    pt_handoff_begin(p->h, "big");
    pt_handoff_str(p->h, big);
    assert_int_equal(pt_handoff_end(p->h), PT_ERR);
    pt_handoff_begin(p->h, "many");
    for (int i = 0; i < PT_HANDOFF_FIELDS_MAX; i++)
        pt_handoff_str(p->h, "f");
    assert_int_equal(pt_handoff_end(p->h), PT_ERR);
    pt_handoff_begin(p->h, "fds");
    for (int i = 0; i <= PT_HANDOFF_FDS_MAX; i++)
        pt_handoff_fd(p->h, 0);
    assert_int_equal(pt_handoff_end(p->h), PT_ERR);
    assert_false(pt_handoff_pending(p->h)); /* nothing queued */
    /* a record just under the limits goes */
    pt_handoff_begin(p->h, "many");
    for (int i = 1; i < PT_HANDOFF_FIELDS_MAX; i++)
        pt_handoff_str(p->h, "f");
    assert_int_equal(pt_handoff_end(p->h), PT_OK);
}

static void
test_malformed_records(void **state)
{
    struct pair *p = *state;
    struct pt_err err;
    static const char *bad[] = {
        "a %4",     /* escape cut short */
        "a %zz",    /* not hex */
        "a %00",    /* NUL */
        "a  b",     /* empty field written as nothing */
        "a\tb",     /* a control byte */
        "a \xc3\xa9", /* not ASCII */
        "",         /* nothing: an empty datagram is not a record */
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = recv_raw(p, bad[i], strlen(bad[i]), &err);

        if (bad[i][0] == '\0') {
            assert_int_equal(rc, PT_DONE); /* indistinguishable from the peer's close */
            continue;
        }
        assert_int_equal(rc, PT_ERR);
        assert_true(err.msg[0] != '\0');
    }
    /* a NUL inside the datagram */
    assert_int_equal(recv_raw(p, "a\0b", 3, &err), PT_ERR);
    /* escapes that are fine */
    assert_int_equal(recv_raw(p, "t %25%20x %", strlen("t %25%20x %"), &err), PT_OK);
    assert_int_equal(p->r->n, 2);
    assert_string_equal(p->r->f[0], "% x");
    assert_string_equal(p->r->f[1], "");
}

static void
test_malformed_record_closes_its_descriptors(void **state)
{
    struct pair *p = *state;
    struct pt_err err = {{0}};
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    char ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = "x %zz", .iov_len = 5};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                         .msg_controllen = sizeof(ctl)};
    struct cmsghdr *c;
    int before, after;

    memset(ctl, 0, sizeof(ctl));
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    assert_int_equal(sendmsg(p->fd[0], &msg, 0), 5);
    close(fd);
    before = open("/dev/null", O_RDONLY); /* the lowest free descriptor now */
    close(before);
    assert_int_equal(pt_handoff_recv(p->fd[1], p->r, &err), PT_ERR);
    after = open("/dev/null", O_RDONLY);
    assert_int_equal(after, before); /* the received descriptor was closed again */
    close(after);
}

static void
test_peer_gone(void **state)
{
    struct pair *p = *state;
    struct pt_err err = {{0}};

    close(p->fd[1]);
    p->fd[1] = -1;
    pt_handoff_begin(p->h, "go");
    assert_int_equal(pt_handoff_end(p->h), PT_OK);
    assert_int_equal(pt_handoff_flush(p->h, &err), PT_DONE);
}

static void
test_peer_closed_reads_done(void **state)
{
    struct pair *p = *state;
    struct pt_err err = {{0}};

    close(p->fd[0]);
    p->fd[0] = open("/dev/null", O_RDONLY); /* for teardown */
    assert_int_equal(pt_handoff_recv(p->fd[1], p->r, &err), PT_DONE);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fields_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_descriptors_travel_with_their_record, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_limits_refuse_the_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_record_closes_its_descriptors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_peer_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_closed_reads_done, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
