#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Mutation check: does the test suite notice when a guarantee of portico is broken?

Each entry of tests/mutation/mutations.txt is one small deliberate break of the source (an
exact snippet of one file, replaced) named after the guarantee it breaks, and the few tests
that should catch it.  For every entry this script, working in a scratch copy of the tree
(never in the tree itself):

  1. restores the pristine sources, then replaces the snippet (which must occur exactly once;
     otherwise the mutation is reported "did not apply": the source moved, fix the entry);
  2. builds portico (and the unit test programs the entry names);
  3. runs the entry's tests, each with a timeout, stopping at the first failure;
  4. reports KILLED (with the test that failed), SURVIVED, DID NOT APPLY or DID NOT BUILD.

A survivor must be explained in the list (`equivalent:`): a change that cannot alter
behaviour.  The run fails (exit 1) when the score (killed / applied mutations) is under
--min-score (default 90), when a survivor is not explained, when an explained one is killed
(remove its `equivalent:`), or when a mutation does not apply or does not build.

    tests/mutation/run.py                       # all (make check-mutation)
    tests/mutation/run.py --list                # names and guarantees
    tests/mutation/run.py h1-resp-trailers ...  # only these (a name or a prefix)
    tests/mutation/run.py --no-baseline         # skip the run of all tests unmutated
    tests/mutation/run.py --check               # only: does every snippet still apply?

Only one test process runs at a time.  The scratch copy is /tmp/portico-mut-XXXX (removed
at the end unless --keep); the full log of builds and test runs is /tmp/portico-mut-XXXX.log.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
LIST = os.path.join(HERE, "mutations.txt")
PYTHON = "/usr/bin/python3"
TEST_TIMEOUT = 120      # seconds per test command (a hang counts as killed: "timeout")


class Mutation:
    def __init__(self, name, lineno):
        self.name = name
        self.lineno = lineno
        self.file = None
        self.guarantee = ""
        self.tests = []
        self.equivalent = None
        self.find = None
        self.replace = None

    def check(self):
        missing = [k for k in ("file", "find", "replace") if getattr(self, k) is None]
        if missing or not self.guarantee or not self.tests:
            raise SystemExit("%s:%d: mutation %s lacks %s" % (
                LIST, self.lineno, self.name,
                ", ".join(missing + (["guarantee"] if not self.guarantee else []) +
                          (["tests"] if not self.tests else []))))
        if self.find == self.replace:
            raise SystemExit("%s:%d: mutation %s changes nothing" % (LIST, self.lineno,
                                                                      self.name))


def parse(path):
    """The list format (see the head of mutations.txt):
         [name]
         key: value            (file, guarantee, tests, equivalent; a value may continue on
                                lines that start with whitespace)
         --- find
         exact lines
         --- replace
         lines
         --- end
    Lines starting with # outside find/replace blocks are comments."""
    muts = []
    cur = None
    block = None
    buf = []
    last_key = None
    with open(path) as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines, 1):
        if block is not None:
            if line.startswith("--- "):
                text = "\n".join(buf)
                setattr(cur, block, text)
                buf = []
                tag = line[4:].strip()
                if tag == "replace" and block == "find":
                    block = "replace"
                elif tag == "end":
                    block = None
                else:
                    raise SystemExit("%s:%d: unexpected %r" % (path, i, line))
            else:
                buf.append(line)
            continue
        if not line.strip() or line.startswith("#"):
            last_key = None
            continue
        m = re.match(r"^\[([a-z0-9][a-z0-9._-]*)\]\s*$", line)
        if m:
            cur = Mutation(m.group(1), i)
            muts.append(cur)
            last_key = None
            continue
        if cur is None:
            raise SystemExit("%s:%d: text before the first [name]" % (path, i))
        if line.startswith("--- find"):
            block = "find"
            buf = []
            continue
        if line[0] in " \t" and last_key is not None:
            val = line.strip()
            if last_key == "tests":
                cur.tests += val.split()
            else:
                setattr(cur, last_key, getattr(cur, last_key) + " " + val)
            continue
        m = re.match(r"^(file|guarantee|tests|equivalent):\s*(.*)$", line)
        if not m:
            raise SystemExit("%s:%d: cannot read %r" % (path, i, line))
        key, val = m.group(1), m.group(2).strip()
        if key == "tests":
            cur.tests += val.split()
        else:
            setattr(cur, key, val)
        last_key = key
    if block is not None:
        raise SystemExit("%s: unterminated --- %s block" % (path, block))
    names = set()
    for m in muts:
        m.check()
        if m.name in names:
            raise SystemExit("%s:%d: duplicate mutation name %s" % (path, m.lineno, m.name))
        names.add(m.name)
    return muts


def sh(cmd, cwd, timeout=None, log=None):
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        out, rc = p.stdout.decode("utf-8", "replace"), p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace") + "\n[timeout after %ss]" % timeout
        rc = "timeout"
    if log is not None:
        log.write("$ (%s) %s\n%s\n[rc=%s, %.1fs]\n" % (cwd, " ".join(cmd), out[-20000:], rc,
                                                      time.monotonic() - t0))
        log.flush()
    return rc, out


def unit_targets(tests):
    return ["tests/unit/" + t[5:] for t in tests if t.startswith("unit:")]


def run_test(t, scratch, log):
    """Run one test (unit:NAME, or a pytest node id under tests/integration/); True if it
    passed, else the reason."""
    if t.startswith("unit:"):
        cmd = ["./tests/unit/" + t[5:]]
    else:
        cmd = [PYTHON, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:xdist",
               "tests/integration/" + t]
    rc, out = sh(cmd, scratch, TEST_TIMEOUT, log)
    if rc == 0:
        return True
    if rc == 5:
        return "no test collected (bad test id?)"
    return "timeout" if rc == "timeout" else "failed (rc %s)" % rc


def prepare_scratch(keep):
    scratch = tempfile.mkdtemp(prefix="portico-mut-")
    # the tree as it is (uncommitted changes included), with its build products when there
    # are any, so that each mutation recompiles one file
    shutil.copytree(REPO, scratch, symlinks=True, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".git", "__pycache__", "*.log", "*.trs"))
    return scratch


def build(scratch, targets, log):
    if not os.path.exists(os.path.join(scratch, "Makefile")):
        rc, out = sh(["bash", "scripts/build.sh", "--enable-debug"], scratch, 1200, log)
        if rc != 0:
            return out
    rc, out = sh(["make", "-j2", "-s", "portico"] + targets, scratch, 1200, log)
    return None if rc == 0 else out


def main():
    ap = argparse.ArgumentParser(description="portico mutation check")
    ap.add_argument("names", nargs="*", help="mutation names or name prefixes (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--check", action="store_true",
                    help="only check that every snippet occurs exactly once (no build)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch copy")
    ap.add_argument("--no-baseline", action="store_true",
                    help="do not first run the selected tests on the unmutated build")
    ap.add_argument("--min-score", type=float, default=90.0)
    ap.add_argument("--log", default=None, help="full log (default: SCRATCH.log)")
    args = ap.parse_args()

    muts = parse(LIST)
    if args.names:
        sel = [m for m in muts if any(m.name == n or m.name.startswith(n) for n in args.names)]
        if not sel:
            raise SystemExit("no mutation matches %s" % " ".join(args.names))
        muts = sel
    if args.list:
        for m in muts:
            print("%-40s %s\n%40s %s: %s%s" % (m.name, m.guarantee, "", m.file,
                                              " ".join(m.tests),
                                              "\n%40s equivalent: %s" % ("", m.equivalent)
                                              if m.equivalent else ""))
        print("%d mutations" % len(muts))
        return 0

    if args.check:
        bad = 0
        for m in muts:
            try:
                with open(os.path.join(REPO, m.file)) as f:
                    n = f.read().count(m.find)
            except OSError:
                n = -1
            if n != 1:
                bad += 1
                print("DID NOT APPLY %s (%s:%d): snippet found %s in %s" % (
                    m.name, os.path.basename(LIST), m.lineno,
                    "no file" if n < 0 else "%d times" % n, m.file))
        print("%d mutations, %d do not apply" % (len(muts), bad))
        return 1 if bad else 0

    scratch = prepare_scratch(args.keep)
    logpath = args.log or scratch + ".log"
    log = open(logpath, "w")
    print("scratch copy %s, log %s" % (scratch, logpath), flush=True)
    pristine = {}
    for m in muts:
        if m.file not in pristine:
            try:
                with open(os.path.join(REPO, m.file)) as f:
                    pristine[m.file] = f.read()
            except OSError:
                pristine[m.file] = None
    all_units = sorted({u for m in muts for u in unit_targets(m.tests)})
    err = build(scratch, all_units, log)
    if err is not None:
        print("the unmutated tree does not build:\n" + err[-3000:])
        return 1
    if not args.no_baseline:
        tests = []
        for m in muts:
            for t in m.tests:
                if t not in tests:
                    tests.append(t)
        print("baseline: %d tests on the unmutated build" % len(tests), flush=True)
        bad = []
        for t in tests:
            ok = run_test(t, scratch, log)
            if ok is not True:
                bad.append("%s: %s" % (t, ok))
        if bad:
            print("baseline failures (a mutation cannot be judged by a failing test):\n  " +
                  "\n  ".join(bad))
            return 1

    results = []
    t_start = time.monotonic()
    for i, m in enumerate(muts, 1):
        t0 = time.monotonic()
        src = pristine[m.file]
        path = os.path.join(scratch, m.file)
        log.write("\n==== %s (%s) ====\n" % (m.name, m.file))
        n = src.count(m.find) if src is not None else 0
        if n != 1:
            why = "file %s does not exist" % m.file if src is None else \
                "snippet found %d times in %s (must be exactly once): the source moved, " \
                "re-point the mutation (%s:%d)" % (n, m.file, os.path.basename(LIST), m.lineno)
            results.append((m, "did not apply", why))
        else:
            with open(path, "w") as f:
                f.write(src.replace(m.find, m.replace))
            err = build(scratch, unit_targets(m.tests), log)
            if err is not None:
                tail = [ln for ln in err.splitlines() if "error" in ln][:3]
                results.append((m, "did not build", "; ".join(tail) or err[-300:]))
            else:
                killer = None
                for t in m.tests:
                    ok = run_test(t, scratch, log)
                    if ok is not True:
                        killer = "%s (%s)" % (t, ok)
                        break
                results.append((m, "killed", killer) if killer else (m, "survived", ""))
            with open(path, "w") as f:   # back to pristine for the next one
                f.write(src)
        m_, verdict, why = results[-1]
        print("[%2d/%d] %-13s %-40s %s  (%.0fs)" % (i, len(muts), verdict.upper(), m.name,
                                                    why, time.monotonic() - t0), flush=True)
    log.close()

    applied = [r for r in results if r[1] in ("killed", "survived")]
    killed = [r for r in applied if r[1] == "killed"]
    survived = [r for r in applied if r[1] == "survived"]
    broken = [r for r in results if r[1] not in ("killed", "survived")]
    unexplained = [r for r in survived if not r[0].equivalent]
    stale = [r for r in killed if r[0].equivalent]
    score = 100.0 * len(killed) / len(applied) if applied else 0.0
    print("\nmutation score: %d/%d killed (%.1f%%) over %d mutations in %.0f s" % (
        len(killed), len(applied), score, len(results), time.monotonic() - t_start))
    for m, _, _ in survived:
        print("  survived %s: %s" % (m.name, m.equivalent or "NOT EXPLAINED (add a test that "
                                     "kills it, or an `equivalent:` saying why none can)"))
    for m, _, _ in stale:
        print("  killed but marked equivalent: %s (remove its `equivalent:`)" % m.name)
    for m, v, why in broken:
        print("  %s %s: %s" % (v, m.name, why))
    ok = score >= args.min_score and not unexplained and not stale and not broken
    print("%d passed, %d failed" % (len(killed) + len(survived) - len(unexplained),
                                    len(unexplained) + len(broken) + len(stale)))
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        print("kept %s" % scratch)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
