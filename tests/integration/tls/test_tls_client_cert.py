"""Client certificates: tls_client_certificate + tls_verify_client on|optional; the verified
subject reaches the backend as X-Client-Cert-Subject and a client cannot forge it."""

import json

import pytest

from tls_h2_testlib import log_size, wait_log

ON = "    tls_client_certificate %s;\n    tls_verify_client on;\n"
OPTIONAL = "    tls_client_certificate %s;\n    tls_verify_client optional;\n"
SPOOF = "CN=admin,O=Spoofed"


def subjects(r):
    """Values of X-Client-Cert-Subject the backend received (/headers)."""
    assert r.status == 200, r
    return [v for n, v in json.loads(r.body)["headers"]
            if n.lower() == "x-client-cert-subject"]


def with_cert(certs, which="client"):
    if which == "client":
        return ["--cert", certs.client, "--key", certs.client_key]
    return ["--cert", certs.other_client, "--key", certs.other_client_key]


def assert_subject(values, certs):
    assert len(values) == 1, values
    v = values[0]
    assert "CN=%s" % certs.client_cn in v, v
    assert "O=Portico Tests" in v, v
    assert "admin" not in v and "Spoofed" not in v, v


@pytest.mark.parametrize("flag", ["--http1.1", "--http2"])
def test_tls_verify_client_on_rejects_without_cert(tls_front, certs, flag):
    f = tls_front(extra=ON % certs.ca, vhosts=False)
    start = log_size(f.portico.error_log)
    r, _ = f.curl("/name", flag)
    assert r.rc != 0 and r.status is None, r
    assert wait_log(f.portico.error_log, r"TLS handshake with 127\.0\.0\.1 failed", 3, start), \
        f.portico.logs()
    # a certificate from another CA is refused too
    r, _ = f.curl("/name", flag, *with_cert(certs, "other"))
    assert r.rc != 0 and r.status is None, r


@pytest.mark.parametrize("flag", ["--http1.1", "--http2"])
def test_tls_verify_client_on_accepts_cert_and_forwards_subject(tls_front, certs, flag):
    f = tls_front(extra=ON % certs.ca, vhosts=False)
    r, ver = f.curl("/headers", flag, *with_cert(certs))
    assert r.rc == 0, r
    assert ver == ("2" if flag == "--http2" else "1.1")
    assert_subject(subjects(r), certs)


@pytest.mark.parametrize("flag", ["--http1.1", "--http2"])
def test_tls_client_cert_subject_spoof_dropped(tls_front, certs, flag):
    f = tls_front(extra=ON % certs.ca, vhosts=False)
    r, _ = f.curl("/headers", flag, *with_cert(certs), "-H", "X-Client-Cert-Subject: " + SPOOF,
                  "-H", "x-client-cert-subject: " + SPOOF)
    assert r.rc == 0, r
    assert_subject(subjects(r), certs)


@pytest.mark.parametrize("flag", ["--http1.1", "--http2"])
def test_tls_verify_client_optional(tls_front, certs, flag):
    f = tls_front(extra=OPTIONAL % certs.ca, vhosts=False)
    # no certificate: served, and no subject (a forged one is dropped)
    r, _ = f.curl("/headers", flag, "-H", "X-Client-Cert-Subject: " + SPOOF)
    assert r.rc == 0, r
    assert subjects(r) == []
    # with a certificate: its subject
    r, _ = f.curl("/headers", flag, *with_cert(certs), "-H", "X-Client-Cert-Subject: " + SPOOF)
    assert r.rc == 0, r
    assert_subject(subjects(r), certs)


def test_tls_no_client_verification_no_subject(tls_front, certs):
    """Without tls_verify_client nobody gets a subject, and a forged header is still dropped."""
    f = tls_front(vhosts=False, plain=True)
    r, _ = f.curl("/headers", *with_cert(certs), "-H", "X-Client-Cert-Subject: " + SPOOF)
    assert r.rc == 0 and subjects(r) == [], r
    import portico_testlib as lib
    r = lib.curl("http://127.0.0.1:%d/headers" % f.plain_port,
                 "-H", "X-Client-Cert-Subject: " + SPOOF)
    assert subjects(r) == [], r
