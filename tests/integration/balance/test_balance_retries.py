"""Retries on another server: connect errors, retry_on statuses, the retry budget, and
non-idempotent requests that must not be replayed."""

import pytest

from lbutil import Client, counts, dead_port, log_lines, names, statuses


def test_balance_retry_connect_error_one_dead(start_backend, start_lb):
    # defaults only (retries 1, retry_on connect_error): a refused connection is retried on
    # the other server, so the client never sees the dead one
    a = start_backend("A")
    p = start_lb([a.addr, "127.0.0.1:%d" % dead_port()])
    c = Client(p.host, p.port)
    res = names(c, "/name", 100)
    c.close()
    assert statuses(res) == {200: 100}, "%r; %d connect() failed lines in the log" % (
        statuses(res), len(log_lines(p, "connect() failed")))
    assert counts(res) == {"A": 100}
    assert a.stats()["requests"] == 100


def test_balance_retry_connect_error_one_dead_full_budget(start_backend, start_lb):
    # the same with a budget that allows one retry per request: isolates the retry itself
    a = start_backend("A")
    p = start_lb([a.addr, "127.0.0.1:%d" % dead_port()], "retry_budget 100%;")
    c = Client(p.host, p.port)
    res = names(c, "/name", 100)
    c.close()
    assert statuses(res) == {200: 100}, statuses(res)
    assert a.stats()["requests"] == 100
    assert log_lines(p, "connect() failed"), "the dead server was never tried"


def test_balance_retry_on_503(start_backend, start_flaky, start_lb):
    # BAD answers 503 to everything; retry_on 503 sends those requests to GOOD. The budget
    # is raised to 100% so that this tests retry_on, not the budget (20% by default)
    bad = start_flaky("BAD", status=503)
    good = start_backend("GOOD")
    p = start_lb([bad.addr, good.addr], "retry_on connect_error 503;\n    retry_budget 100%;")
    c = Client(p.host, p.port)
    res = names(c, "/name", 20)
    c.close()
    assert res == [(200, "GOOD")] * 20, res
    # BAD was asked (and answered 503): the retries really happened, once per 503
    nbad = bad.stats()["requests"]
    assert nbad >= 10, nbad
    assert len(log_lines(p, "answered 503: retrying GET /name elsewhere")) == nbad, p.logs()
    assert good.stats()["requests"] == 20


def test_balance_rr_retries_do_not_skew_first_attempts(start_backend, start_flaky, start_lb):
    # round robin over BAD (503) and GOOD: first attempts should still alternate, so BAD
    # sees about half of the requests. If a retry's pick advances the shared sequence, the
    # next request's first attempt lands on BAD again, and BAD takes every first attempt
    # (double latency for every request, and twice the retries the budget planned for)
    bad = start_flaky("BAD", status=503)
    good = start_backend("GOOD")
    p = start_lb([bad.addr, good.addr], "retry_on connect_error 503;\n    retry_budget 100%;",
                 workers=1)
    c = Client(p.host, p.port)
    res = names(c, "/name", 40)
    c.close()
    assert res == [(200, "GOOD")] * 40, res
    nbad = bad.stats()["requests"]
    assert nbad <= 28, "BAD got %d of 40 first attempts (its round-robin share is 20)" % nbad


def test_balance_503_not_retried_by_default(start_backend, start_flaky, start_lb):
    # the counterpart: without retry_on 503 the backend's 503 reaches the client
    bad = start_flaky("BAD", status=503)
    good = start_backend("GOOD")
    p = start_lb([bad.addr, good.addr])
    c = Client(p.host, p.port)
    res = names(c, "/name", 10)
    c.close()
    assert sorted(res) == sorted([(200, "GOOD")] * 5 + [(503, "BAD")] * 5), res


@pytest.mark.hard_timeout(40)
def test_balance_retry_budget_bounds_attempts(start_flaky, start_lb):
    # every server answers 503 and retry_on 503 resends the request; retries 3 would allow a
    # second attempt for each request (2 servers), but the 10% budget (10 banked per worker +
    # 0.1 per request) keeps the attempts near the number of requests. (Connection failures
    # are retried without the budget: nothing was sent. test_balance_dead_servers.py.)
    a = start_flaky("A", status=503)
    b = start_flaky("B", status=503)
    p = start_lb([a.addr, b.addr], "retries 3;\n    retry_on 503;\n    retry_budget 10%;",
                 workers=2)
    n = 100
    c = Client(p.host, p.port)
    res = names(c, "/name", n)
    c.close()
    assert statuses(res) == {503: n}, statuses(res)
    attempts = a.stats()["requests"] + b.stats()["requests"]
    retries = attempts - n
    # at most 10 banked + 0.1 × 100 earned in each of the 2 workers
    assert 0 < retries <= 2 * (10 + 0.1 * n), "%d attempts for %d requests" % (attempts, n)
    assert attempts < 1.5 * n
    assert log_lines(p, "retry budget exhausted"), p.logs()


def test_balance_post_not_retried_after_reset(start_backend, start_lb):
    # the backend reads the request and resets the connection: a GET is retried on the
    # other server (retry_on reset), a POST is not (it may have been acted on)
    a, b = start_backend("A"), start_backend("B")
    p = start_lb([a.addr, b.addr], "retry_on connect_error reset;")

    def seen():
        return a.stats()["requests"] + b.stats()["requests"]

    c = Client(p.host, p.port)
    st, _, hs = c.get("/reset", {"Content-Type": "text/plain"}, method="POST", body=b"order=1")
    assert st == 502, hs
    assert seen() == 1, "a POST was replayed after a reset"
    c.close()

    c = Client(p.host, p.port)
    st, _, hs = c.get("/reset")
    assert st == 502, hs
    assert seen() == 3, "a GET was not retried on the other server after a reset"
    c.close()


def test_balance_post_retried_with_retry_non_idempotent(start_backend, start_lb):
    a, b = start_backend("A"), start_backend("B")
    p = start_lb([a.addr, b.addr], "retry_on connect_error reset;\n    retry_non_idempotent on;")
    c = Client(p.host, p.port)
    st, _, hs = c.get("/reset", {"Content-Type": "text/plain"}, method="POST", body=b"order=1")
    c.close()
    assert st == 502, hs
    assert a.stats()["requests"] == 1 and b.stats()["requests"] == 1, \
        "retry_non_idempotent on: the POST should have been tried on both servers"
