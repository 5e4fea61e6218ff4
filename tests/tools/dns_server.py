#!/usr/bin/python3
"""A tiny authoritative DNS server for portico's tests (stdlib only, UDP, 127.0.0.1).

It answers A, AAAA and SRV questions from a JSON zone file that it reads again for every
question, so a test changes the answers by rewriting the file (write a temporary file and
rename it over the zone, so a question never sees half a file):

    {"app.test": {"A": [["127.0.0.1", 30]], "AAAA": [["::1", 30]]},
     "_http._tcp.svc.test": {"SRV": [[10, 5, 9001, "b1.test", 30]]},
     "down.test": {"rcode": "SERVFAIL"},       # or "NXDOMAIN", or "drop" (no answer at all)
    }

A record is [value, ttl]; an SRV record [priority, weight, port, target, ttl]. A name not in
the zone gets NXDOMAIN; a name without records of the asked type gets an empty answer
(NOERROR). Every question is logged as one line "<unix time> <name> <type>" to --log, so a
test can count how often a name was asked (TTLs honoured).

Start: /usr/bin/python3 tests/tools/dns_server.py --port 0 --zone FILE --log FILE
Prints "READY <port>" when listening.
"""

import argparse
import json
import socket
import struct
import sys
import time

TYPES = {1: "A", 28: "AAAA", 33: "SRV"}
RCODES = {"NOERROR": 0, "SERVFAIL": 2, "NXDOMAIN": 3, "REFUSED": 5}


def read_name(msg, p):
    labels = []
    while True:
        n = msg[p]
        p += 1
        if n == 0:
            return ".".join(labels), p
        if n & 0xC0:
            raise ValueError("compression in a question")
        labels.append(msg[p:p + n].decode("ascii", "replace"))
        p += n


def encode_name(name):
    out = b""
    for label in name.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


def answer(msg, zone):
    qid, flags, qd = struct.unpack(">HHH", msg[:6])
    if qd != 1:
        return None
    name, p = read_name(msg, 12)
    qtype, qclass = struct.unpack(">HH", msg[p:p + 4])
    question = msg[12:p + 4]
    entry = zone.get(name.lower().rstrip("."))
    rcode = 0
    records = []
    if entry is None:
        rcode = 3
    elif "rcode" in entry:
        if entry["rcode"] == "drop":
            return None
        rcode = RCODES[entry["rcode"]]
    else:
        t = TYPES.get(qtype)
        for rec in entry.get(t, []) if t else []:
            if t == "A":
                rdata = socket.inet_pton(socket.AF_INET, rec[0])
                ttl = rec[1]
            elif t == "AAAA":
                rdata = socket.inet_pton(socket.AF_INET6, rec[0])
                ttl = rec[1]
            else:
                rdata = struct.pack(">HHH", rec[0], rec[1], rec[2]) + encode_name(rec[3])
                ttl = rec[4]
            records.append(b"\xc0\x0c" + struct.pack(">HHIH", qtype, 1, ttl, len(rdata)) +
                           rdata)
    rflags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
    head = struct.pack(">HHHHHH", qid, rflags, 1, len(records), 0, 0)
    return head + question + b"".join(records), name, TYPES.get(qtype, str(qtype))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--zone", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", a.port))
    print("READY %d" % s.getsockname()[1], flush=True)
    log = open(a.log, "a", buffering=1)
    while True:
        msg, peer = s.recvfrom(4096)
        try:
            with open(a.zone) as f:
                zone = {k.lower(): v for k, v in json.load(f).items()}
            r = answer(msg, zone)
        except (ValueError, OSError, KeyError, struct.error, IndexError) as e:
            print("dns_server: %r" % e, file=sys.stderr, flush=True)
            continue
        if r is None:
            continue
        data, name, qtype = r
        log.write("%.3f %s %s\n" % (time.time(), name.lower(), qtype))
        s.sendto(data, peer)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
