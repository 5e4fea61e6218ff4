#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Generates the man pages from the Markdown documentation, so that they cannot drift from it:

    portico.conf.5  <- docs/configuration.md (all of it: every directive)
    portico.8       <- README.md (the opening paragraph) and the sections of docs/operations.md
                       named in PAGES below (command line, running, signals, reload, binary
                       upgrade, installing, systemd)

    scripts/gen-man.py [--srcdir DIR] [--outdir DIR] [PAGE...]   write the pages (default: both,
                                                                  into DIR/man of the source)
    scripts/gen-man.py --check [--srcdir DIR] [PAGE...]          exit 1 and show a diff when a
                                                                  committed page differs

The pages are committed (man/), so building and installing need no Python; tests/unit/
test_man.sh runs --check in `make check`. After editing those docs: `make man` (or this script
with no arguments) and commit the pages with the docs.

Only the Markdown the docs use is understood: ATX headings, paragraphs, "-" and "1." lists with
indented continuations, fenced and indented code blocks, pipe tables (as tagged paragraphs:
first cell the tag, the others its text), `code`, **bold**, *emphasis* and [links](target)
(the text is kept). Anything else is copied as text. The output is plain man(7) without tbl, so
`man -l`, groff -man and mandoc all render it. Python 3 standard library only.
"""

import argparse
import difflib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# portico.8: which sections of docs/operations.md become which sections of the page, in order.
# A missing section is an error, so renaming one in the docs fails `make check` until this
# list follows.
OPS_SECTIONS = [
    ("Command line", "OPTIONS"),
    ("Running", "RUNNING"),
    ("Signals", "SIGNALS"),
    ("Behind an orchestrator or a load balancer", "LOAD BALANCERS"),
    ("Reload", "RELOAD"),
    ("Binary upgrade", "BINARY UPGRADE"),
    ("Installing", "INSTALLING"),
    ("Running under systemd", "SYSTEMD"),
]


# --------------------------------------------------------------------------- inline text ---

def esc(text, code=False):
    """Escapes text for roff: backslash, non-ASCII (as \\[uXXXX]) and, in code, the minus sign
    (a plain "-" renders as a hyphen in UTF-8, which breaks copying options)."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\e")
        elif code and ch == "-":
            out.append("\\-")
        elif ord(ch) > 126:
            out.append("\\[u%04X]" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


LINK = re.compile(r"\[([^\]]+)\]\(([^)]*)\)")
CODE_LINK = re.compile(r"\[(`[^`\]]*`)\]\(([^)]*)\)")
BOLD = re.compile(r"\*\*(.+?)\*\*", re.S)
EMPH = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])", re.S)


def inline(text):
    """Markdown inline markup of one block (newlines kept) to roff."""
    # a link whose text is a code span, [`pid`](configuration.md#pid): the code span alone
    text = CODE_LINK.sub(lambda m: m.group(1), text)
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for i, p in enumerate(parts):
        if i % 2 == 1:
            # \% : never hyphenate a literal (a hyphen added at a line end would be copied)
            out.append("\\fB\\%" + esc(p[1:-1], code=True) + "\\fR")
            continue
        p = LINK.sub(lambda m: m.group(1), p)
        p = esc(p)
        p = BOLD.sub(lambda m: "\\fB" + m.group(1) + "\\fR", p)
        p = EMPH.sub(lambda m: "\\fI" + m.group(1) + "\\fR", p)
        out.append(p)
    return "".join(out)


def text_lines(text):
    """Block text to roff lines: one per source line, leading blanks dropped (a leading blank
    would break the line in roff), a leading . or ' protected (it would start a request)."""
    lines = []
    for line in inline(text).split("\n"):
        line = line.strip()
        if not line:
            continue
        if line[0] in ".'":
            line = "\\&" + line
        lines.append(line)
    return lines


def code_lines(lines):
    out = []
    for line in lines:
        line = esc(line, code=True)
        if line[:1] in (".", "'"):
            line = "\\&" + line
        out.append(line if line else "")
    return out


def quoted(arg):
    return '"%s"' % inline(arg).replace('"', '\\(dq')


# ------------------------------------------------------------------------------ blocks ---

LIST_ITEM = re.compile(r"^(\s*)(-|\d+\.)\s+(.*)$")
FENCE = re.compile(r"^(\s*)```")


def top_item(line):
    """The match of a list item that starts at column 0, else None."""
    m = LIST_ITEM.match(line)
    return m if m and not m.group(1) else None


def skip_blank(md_lines, i):
    while i < len(md_lines) and not md_lines[i].strip():
        i += 1
    return i


def indented(md_lines, i):
    """The lines from i that are indented (blank lines between them included), with two
    columns of indentation removed, and the index after them."""
    body = []
    while i < len(md_lines):
        line = md_lines[i]
        if not line.strip():
            j = skip_blank(md_lines, i)
            if j < len(md_lines) and md_lines[j].startswith("  "):
                body.extend([""] * (j - i))
                i = j
                continue
            break
        if not line.startswith("  "):
            break
        body.append(line[2:])
        i += 1
    return body, i


def blocks(md_lines):
    """Yields (kind, data): ("h", (level, title)), ("p", text), ("code", lines),
    ("table", rows), ("list", [(marker, text, [sub-blocks])])."""
    i, n = 0, len(md_lines)
    while i < n:
        line = md_lines[i]
        if not line.strip():
            i += 1
            continue
        m = FENCE.match(line)
        if m:
            ind = len(m.group(1))
            body = []
            i += 1
            while i < n and not FENCE.match(md_lines[i]):
                body.append(md_lines[i][ind:] if md_lines[i][:ind].strip() == "" else
                            md_lines[i])
                i += 1
            i += 1
            yield ("code", body)
            continue
        h = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if h:
            yield ("h", (len(h.group(1)), h.group(2)))
            i += 1
            continue
        if line.startswith("|"):
            rows = []
            while i < n and md_lines[i].startswith("|"):
                cells = [c.strip() for c in md_lines[i].strip().strip("|").split("|")]
                if not all(re.match(r"^:?-+:?$", c) for c in cells):
                    rows.append(cells)
                i += 1
            yield ("table", rows)
            continue
        if line.startswith("    "):
            body = []
            while i < n and (md_lines[i].startswith("    ") or not md_lines[i].strip()):
                body.append(md_lines[i][4:])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            yield ("code", body)
            continue
        if top_item(line):
            items = []
            while i < n and top_item(md_lines[i]):
                m = top_item(md_lines[i])
                text = [m.group(3)]
                i += 1
                # lazy continuation lines of the item's first paragraph
                while (i < n and md_lines[i].strip() and not top_item(md_lines[i]) and
                       not FENCE.match(md_lines[i]) and not md_lines[i].startswith(("#", "|"))):
                    text.append(md_lines[i].strip())
                    i += 1
                # then blocks indented under the item (code, more paragraphs), blank-separated
                sub = []
                j = skip_blank(md_lines, i)
                if j < n and md_lines[j].startswith("  "):
                    body, i = indented(md_lines, j)
                    sub = list(blocks(body))
                items.append((m.group(2), "\n".join(text), sub))
                j = skip_blank(md_lines, i)
                if j < n and top_item(md_lines[j]):
                    i = j
            yield ("list", items)
            continue
        body = []
        while i < n and md_lines[i].strip() and not FENCE.match(md_lines[i]) and \
                not re.match(r"^#{1,6}\s", md_lines[i]) and not md_lines[i].startswith("|") \
                and not (body and top_item(md_lines[i])):
            body.append(md_lines[i])
            i += 1
        yield ("p", "\n".join(body))


def render(bks, out, shift=0, in_list=False):
    """Roff for blocks. Headings: level 2 -> .SH (upper case), 3 and deeper -> .SS; `shift`
    moves levels (a level-2 section embedded under another .SH uses shift=1)."""
    for kind, data in bks:
        if kind == "h":
            level, title = data
            level += shift
            if level <= 2:
                out.append(".SH " + quoted(title.upper()))
            else:
                out.append(".SS " + quoted(title))
        elif kind == "p":
            out.append(".IP \"\" 4" if in_list else ".PP")
            out.extend(text_lines(data))
        elif kind == "code":
            if in_list:
                # indented as the item's text
                out += [".IP \"\" 4", ".nf"] + code_lines(data) + [".fi"]
            else:
                out += [".PP", ".RS 4", ".nf"] + code_lines(data) + [".fi", ".RE"]
        elif kind == "table":
            # a row is a tagged paragraph: the first cell is the tag; with two columns the
            # second is the text, with more each other cell is a line "Header: cell"
            head = data[0]
            for row in data[1:]:
                out.append(".TP")
                out.extend(text_lines(row[0]) or ["\\&"])
                if len(row) == 2:
                    out.extend(text_lines(row[1]))
                    continue
                for k, cell in enumerate(row[1:], 1):
                    if k > 1:
                        out.append(".br")
                    name = head[k] if k < len(head) else ""
                    out.extend(text_lines("%s: %s" % (name, cell)))
        elif kind == "list":
            out.append(".RS 0" if not in_list else ".RS 4")
            for marker, text, sub in data:
                out.append(".IP %s 4" % ("\\(bu" if marker == "-" else marker))
                out.extend(text_lines(text))
                render(sub, out, shift, in_list=True)
            out.append(".RE")
        else:
            raise ValueError(kind)


# ------------------------------------------------------------------------------- pages ---

def read(srcdir, rel):
    with open(os.path.join(srcdir, rel), encoding="utf-8") as f:
        return f.read().split("\n")


def version(srcdir):
    m = re.search(r"AC_INIT\(\[portico\],\s*\[([^\]]+)\]",
                  "\n".join(read(srcdir, "configure.ac")))
    if not m:
        sys.exit("gen-man: no version in configure.ac AC_INIT")
    return m.group(1)


def sections(md_lines, level=2):
    """{title: lines} of the level-`level` sections of a Markdown file (outside code fences)."""
    out, cur, fence = {}, None, False
    for line in md_lines:
        if FENCE.match(line):
            fence = not fence
        h = None if fence else re.match(r"^(#{1,6})\s+(.*?)\s*$", line)
        if h and len(h.group(1)) <= level:
            cur = h.group(2) if len(h.group(1)) == level else None
            if cur is not None:
                out[cur] = []
            continue
        if cur is not None:
            out[cur].append(line)
    return out


def header(name, section, ver, title, manual):
    return ['.\\" SPDX-License-Identifier: MIT',
            '.\\" Generated by scripts/gen-man.py from %s: do not edit; run `make man`.' % title,
            '.TH %s %s "" "portico %s" "%s"' % (name.upper(), section, ver, manual)]


def page_conf(srcdir):
    md = read(srcdir, "docs/configuration.md")
    ver = version(srcdir)
    out = header("portico.conf", 5, ver, "docs/configuration.md", "File Formats Manual")
    out += [".SH NAME", "portico.conf \\- configuration file of the portico reverse proxy",
            ".SH SYNOPSIS",
            "\\fI/etc/portico/portico.conf\\fR (packages),",
            "\\fI/usr/local/etc/portico/portico.conf\\fR (built with the default prefix),",
            "or the file given to \\fBportico \\-c\\fR",
            ".SH DESCRIPTION"]
    body = list(blocks(md))
    if not body or body[0][0] != "h" or body[0][1][0] != 1:
        sys.exit("gen-man: docs/configuration.md does not start with a level-1 heading")
    render(body[1:], out)
    out += [".SH SEE ALSO", "\\fBportico\\fR(8)", ".PP",
            "The Markdown documentation this page is generated from, with the pages it links",
            "to: docs/configuration.md in the source, installed under",
            "\\fI/usr/local/share/doc/portico\\fR with the default prefix."]
    return "\n".join(out) + "\n"


def page_portico(srcdir):
    ops = sections(read(srcdir, "docs/operations.md"))
    readme = read(srcdir, "README.md")
    ver = version(srcdir)
    out = header("portico", 8, ver, "README.md and docs/operations.md",
                 "System Manager's Manual")
    out += [".SH NAME",
            "portico \\- HTTP/1.1, HTTP/2 and WebSocket reverse proxy and load balancer"]
    # SYNOPSIS: the first code block of "Command line"
    first = ops.get("Command line")
    if first is None:
        sys.exit("gen-man: docs/operations.md has no section \"## Command line\"")
    bks = list(blocks(first))
    syn = next((i for i, b in enumerate(bks) if b[0] == "code"), None)
    if syn is None:
        sys.exit("gen-man: \"## Command line\" in docs/operations.md has no usage block")
    out.append(".SH SYNOPSIS")
    for line in bks[syn][1]:
        if line.strip():
            out.append(".B " + esc(line.strip(), code=True))
            out.append(".br")
    # DESCRIPTION: README's text before its first "##"
    intro, started = [], False
    for line in readme:
        if line.startswith("# "):
            started = True
            continue
        if line.startswith("## "):
            break
        if started:
            intro.append(line)
    out.append(".SH DESCRIPTION")
    render(list(blocks(intro)), out)
    out += [".PP", "The configuration file is described in \\fBportico.conf\\fR(5)."]
    for title, sh in OPS_SECTIONS:
        if title not in ops:
            sys.exit("gen-man: docs/operations.md has no section \"## %s\" (see OPS_SECTIONS "
                     "in scripts/gen-man.py)" % title)
        bks = list(blocks(ops[title]))
        if title == "Command line":
            del bks[syn]
        out.append(".SH " + sh)
        render(bks, out, shift=0)
    out += [".SH FILES",
            ".TP", "\\fI/usr/local/etc/portico/portico.conf\\fR",
            "The default configuration with the default prefix",
            "(\\fI/etc/portico/portico.conf\\fR in packages built with",
            "\\fB\\-\\-sysconfdir=/etc\\fR); \\fBportico \\-h\\fR prints the one compiled in.",
            ".TP", "\\fIportico.conf.default\\fR",
            "Next to it: the configuration as shipped, rewritten on every install.",
            ".TP", "\\fIportico.service\\fR",
            "The systemd unit, in the system unit directory.",
            ".SH SEE ALSO",
            "\\fBportico.conf\\fR(5), \\fBsystemctl\\fR(1), \\fBsystemd.service\\fR(5),",
            "\\fBsd_notify\\fR(3)",
            ".PP",
            "docs/operations.md and the other Markdown files of the source, installed under",
            "\\fI/usr/local/share/doc/portico\\fR with the default prefix."]
    return "\n".join(out) + "\n"


PAGES = {"portico.8": page_portico, "portico.conf.5": page_conf}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--srcdir", default=os.path.dirname(HERE))
    ap.add_argument("--outdir", help="where to write (default SRCDIR/man)")
    ap.add_argument("--check", action="store_true",
                    help="compare with the pages in SRCDIR/man instead of writing")
    ap.add_argument("pages", nargs="*", default=sorted(PAGES))
    a = ap.parse_args()
    outdir = a.outdir or os.path.join(a.srcdir, "man")
    bad = 0
    for page in a.pages:
        if page not in PAGES:
            sys.exit("gen-man: unknown page %s (%s)" % (page, ", ".join(sorted(PAGES))))
        text = PAGES[page](a.srcdir)
        path = os.path.join(outdir, page)
        if a.check:
            try:
                with open(path, encoding="utf-8") as f:
                    old = f.read()
            except OSError as e:
                print("gen-man: %s: %s" % (path, e.strerror))
                bad = 1
                continue
            if old != text:
                bad = 1
                print("gen-man: %s differs from what the docs generate (run `make man` and "
                      "commit it):" % path)
                sys.stdout.writelines(difflib.unified_diff(
                    old.splitlines(True), text.splitlines(True), path, "generated", n=1))
            continue
        os.makedirs(outdir, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    return bad


if __name__ == "__main__":
    sys.exit(main())
