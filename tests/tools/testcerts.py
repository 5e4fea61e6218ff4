#!/usr/bin/python3
"""Test certificates for portico's TLS, HTTP/2 and gRPC integration tests (openssl CLI only).

make(directory) creates, with EC P-256 keys:
  ca.pem / ca.key                 the test CA ("portico test CA")
  localhost.pem / .key            server cert, CN=localhost, SAN DNS:localhost, IP:127.0.0.1
  a.example.pem / .key            server cert, CN=a.example, SAN DNS:a.example
  b.example.pem / .key            server cert, CN=b.example, SAN DNS:b.example
  wild.pem / .key                 server cert, CN=*.w.example, SAN DNS:*.w.example
  client.pem / .key               client cert (extendedKeyUsage clientAuth),
                                  CN=portico-test-client, O=Portico Tests
  other-ca.pem / .key             a second CA nobody trusts
  other-localhost.pem / .key      CN=localhost signed by other-ca (untrusted)
  other-client.pem / .key         client cert signed by other-ca
  mismatched.key                  a fresh key matching no certificate
  garbage.key                     a file that is not a PEM key at all
and returns a Certs object with the paths as attributes (ca, ca_key, localhost,
localhost_key, ..., mismatched_key, garbage_key) and .dir.

CLI: /usr/bin/python3 tests/tools/testcerts.py DIR   (prints the directory)
"""

import os
import subprocess
import sys

CLIENT_CN = "portico-test-client"
CLIENT_ORG = "Portico Tests"


def _run(args, cwd):
    p = subprocess.run(["openssl"] + args, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args),
                                                       p.stdout.decode("utf-8", "replace")))


def _key(d, name):
    _run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
          "-out", name], d)


def _ca(d, base, cn):
    _key(d, base + ".key")
    _run(["req", "-x509", "-new", "-key", base + ".key", "-sha256", "-days", "3650",
          "-subj", "/CN=%s" % cn, "-out", base + ".pem",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)


def _leaf(d, base, subj, ca, ext_lines):
    _key(d, base + ".key")
    _run(["req", "-new", "-key", base + ".key", "-subj", subj, "-out", base + ".csr"], d)
    with open(os.path.join(d, base + ".ext"), "w") as f:
        f.write("\n".join(ext_lines) + "\n")
    _run(["x509", "-req", "-in", base + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
          "-CAcreateserial", "-days", "825", "-sha256", "-extfile", base + ".ext",
          "-out", base + ".pem"], d)
    os.unlink(os.path.join(d, base + ".csr"))
    os.unlink(os.path.join(d, base + ".ext"))


def _server(d, base, cn, sans, ca="ca"):
    _leaf(d, base, "/CN=%s" % cn, ca,
          ["basicConstraints=CA:FALSE",
           "keyUsage=critical,digitalSignature",
           "extendedKeyUsage=serverAuth",
           "subjectAltName=" + ",".join(sans)])


def _client(d, base, ca="ca"):
    _leaf(d, base, "/O=%s/CN=%s" % (CLIENT_ORG, CLIENT_CN), ca,
          ["basicConstraints=CA:FALSE",
           "keyUsage=critical,digitalSignature",
           "extendedKeyUsage=clientAuth"])


class Certs:
    def __init__(self, d):
        self.dir = d
        for base in ("ca", "localhost", "a.example", "b.example", "wild", "client",
                     "other-ca", "other-localhost", "other-client"):
            attr = base.replace(".", "_").replace("-", "_")
            setattr(self, attr, os.path.join(d, base + ".pem"))
            setattr(self, attr + "_key", os.path.join(d, base + ".key"))
        self.mismatched_key = os.path.join(d, "mismatched.key")
        self.garbage_key = os.path.join(d, "garbage.key")
        self.client_cn = CLIENT_CN

    def pair(self, base):
        """(cert, key) of a server certificate: localhost, a.example, b.example, wild."""
        attr = base.replace(".", "_").replace("-", "_")
        return getattr(self, attr), getattr(self, attr + "_key")


def make(d):
    os.makedirs(d, exist_ok=True)
    _ca(d, "ca", "portico test CA")
    _server(d, "localhost", "localhost", ["DNS:localhost", "IP:127.0.0.1"])
    _server(d, "a.example", "a.example", ["DNS:a.example"])
    _server(d, "b.example", "b.example", ["DNS:b.example"])
    _server(d, "wild", "*.w.example", ["DNS:*.w.example"])
    _client(d, "client")
    _ca(d, "other-ca", "untrusted test CA")
    _server(d, "other-localhost", "localhost", ["DNS:localhost", "IP:127.0.0.1"],
            ca="other-ca")
    _client(d, "other-client", ca="other-ca")
    _key(d, "mismatched.key")
    with open(os.path.join(d, "garbage.key"), "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\nthis is not a key\n-----END PRIVATE KEY-----\n")
    return Certs(d)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: testcerts.py DIR")
    make(sys.argv[1])
    print(sys.argv[1])
