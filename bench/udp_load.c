/* SPDX-License-Identifier: MIT */
/* UDP load for bench/udp.py: an echo server, and a client that keeps a window of datagrams in
 * flight on each of its sockets and counts the echoes.
 *
 *   udp_load echo PORT                          echoes every datagram (recvmmsg/sendmmsg)
 *   udp_load client PORT SOCKETS WINDOW SECONDS [SIZE]
 *       prints "sent N received M seconds S" after SECONDS; a datagram not echoed within
 *       200 ms of the last echo on its socket counts as lost and is replaced
 *
 * Plain C on 127.0.0.1, one thread, epoll; not part of portico. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
echo(int port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0), big = 8 << 20;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    static char bufs[BATCH][2048];
    struct mmsghdr m[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_in names[BATCH];

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == -1) {
        perror("bind");
        return 1;
    }
    printf("READY %d\n", port);
    fflush(stdout);
    for (;;) {
        int n;

        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){bufs[i], sizeof(bufs[i])};
            memset(&m[i].msg_hdr, 0, sizeof(m[i].msg_hdr));
            m[i].msg_hdr.msg_iov = &iov[i];
            m[i].msg_hdr.msg_iovlen = 1;
            m[i].msg_hdr.msg_name = &names[i];
            m[i].msg_hdr.msg_namelen = sizeof(names[i]);
        }
        n = recvmmsg(fd, m, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0)
            continue;
        for (int i = 0; i < n; i++)
            iov[i].iov_len = m[i].msg_len;
        sendmmsg(fd, m, (unsigned)n, 0);
    }
}

struct cs {
    int fd;
    int inflight;
    double last;
};

static int
client(int port, int nsock, int window, double secs, int size)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int ep = epoll_create1(0), big = 4 << 20;
    struct cs *c = calloc((size_t)nsock, sizeof(*c));
    char buf[2048], out[2048];
    unsigned long long sent = 0, received = 0;
    double t0, end;

    memset(out, 'x', sizeof(out));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < nsock; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};

        c[i].fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        setsockopt(c[i].fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
        if (connect(c[i].fd, (struct sockaddr *)&a, sizeof(a)) == -1) {
            perror("connect");
            return 1;
        }
        epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
    }
    t0 = now();
    end = t0 + secs;
    for (int i = 0; i < nsock; i++) {
        for (int k = 0; k < window; k++)
            if (send(c[i].fd, out, (size_t)size, 0) == size)
                sent++, c[i].inflight++;
        c[i].last = t0;
    }
    while (now() < end) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 50);
        double t = now();

        for (int e = 0; e < n; e++) {
            struct cs *s = &c[evs[e].data.u32];

            for (;;) {
                ssize_t r = recv(s->fd, buf, sizeof(buf), 0);

                if (r < 0)
                    break;
                received++;
                s->inflight--;
                s->last = t;
                if (send(s->fd, out, (size_t)size, 0) == size)
                    sent++, s->inflight++;
            }
        }
        for (int i = 0; i < nsock; i++)
            if (t - c[i].last > 0.2) { /* lost ones: refill the window */
                c[i].last = t;
                while (c[i].inflight < window * 2 &&
                       send(c[i].fd, out, (size_t)size, 0) == size)
                    sent++, c[i].inflight++;
                c[i].inflight = window;
            }
    }
    printf("sent %llu received %llu seconds %.3f\n", sent, received, now() - t0);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "echo") == 0)
        return echo(atoi(argv[2]));
    if (argc >= 6 && strcmp(argv[1], "client") == 0)
        return client(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atof(argv[5]),
                      argc > 6 ? atoi(argv[6]) : 64);
    fprintf(stderr, "usage: udp_load echo PORT | client PORT SOCKETS WINDOW SECONDS [SIZE]\n");
    return 2;
}
