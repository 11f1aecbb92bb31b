#!/usr/bin/env python3
"""layers.py [OBJDIR] — check that pv's layers only point down.

The layers, bottom first (README, "How a request flows"):

  base     src/base/      the result convention, logs, config, crypto, record shapes
  runtime  src/runtime/   loops, actors, mailboxes, pools
  cloud    src/cloud/     AWS signing and credentials (pure), the S3 client on libcurl+libevent
  store    src/store/     LMDB, records, the change log, blobs, backups
  http     src/http/      the HTTP/1.1 server, its parser, TLS, multipart
  media    src/media/     image decoding, the render pipeline
  model    src/model/     users, photos, videos at the transaction level
  app      src/app/       the context, calls, the handlers' kit, metrics
  actors   actors/        one actor a file, each with the header of its messages
  api      actors/api/    the HTTP handlers and the route table on top
  main     src/pvd.c, tools/*.c   programs: may use anything

Each layer may include its own headers and those of the layers it names
below; anything else (an include that points up, or sideways to a layer it
does not build on) is an error. With OBJDIR (the release objects), it also
checks that no two object files call each other around a ring (nm).
Exit 1 on any finding.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# layer -> the layers it may include (besides itself)
ALLOWED = {
    "base": set(),
    "runtime": {"base"},
    "cloud": {"base"},
    "store": {"base", "runtime"},
    "http": {"base", "runtime"},
    "media": {"base"},
    "model": {"base", "store", "media"},
    "app": {"base", "runtime", "store", "http", "media", "model"},
    "actors": {"base", "runtime", "cloud", "store", "http", "media", "model", "app"},
    "api": {"base", "runtime", "cloud", "store", "http", "media", "model", "app", "actors"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(rel):
    """The layer of a file (path relative to the repository), or None."""
    parts = rel.split("/")
    if parts[0] == "src" and len(parts) == 3 and parts[1] in ALLOWED:
        return parts[1]
    if parts[0] == "actors" and len(parts) == 2:
        return "actors"
    if parts[0] == "actors" and len(parts) == 3 and parts[1] == "api":
        return "api"
    if rel == "src/pvd.c" or (parts[0] == "tools" and rel.endswith(".c")):
        return "main"
    if parts[0] == "build" and len(parts) == 3 and parts[1] == "gen":
        return "base"  # tables generated from schema/ (tools/gen_*.py): data, no includes
    return None


def resolve(inc, including):
    """The repository path an include names, the way the build's -Isrc -I.
    finds it; None for a header outside the tree."""
    for base in (os.path.dirname(including), "src", "."):
        p = os.path.normpath(os.path.join(base, inc))
        if os.path.isfile(os.path.join(ROOT, p)):
            return p
    return None


def check_includes():
    errors, files = [], 0
    for top in ("src", "actors", "tools"):
        for dp, _, fs in os.walk(os.path.join(ROOT, top)):
            for f in sorted(fs):
                if not f.endswith((".c", ".h")):
                    continue
                rel = os.path.relpath(os.path.join(dp, f), ROOT)
                me = layer_of(rel)
                if me is None:
                    errors.append("%s: in no layer (put it in one of %s)" % (rel, ", ".join(ALLOWED)))
                    continue
                files += 1
                with open(os.path.join(ROOT, rel), encoding="utf-8") as fh:
                    text = fh.read()
                for n, line in enumerate(text.splitlines(), 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    target = resolve(m.group(1), rel)
                    if target is None:
                        errors.append("%s:%d: #include \"%s\" names no file of the tree" % (rel, n, m.group(1)))
                        continue
                    them = layer_of(target)
                    if me == "main" or them == me:
                        continue
                    if them is None or them == "main" or them not in ALLOWED[me]:
                        errors.append("%s:%d: %s includes %s (%s): %s may use only %s" % (
                            rel, n, me, target, them, me, ", ".join(sorted(ALLOWED[me])) or "itself"))
    return errors, files


def check_calls(objdir):
    """Rings of object files that call each other (Tarjan's SCC over nm)."""
    defs, uses = {}, {}
    for dp, _, fs in os.walk(objdir):
        for f in fs:
            if not f.endswith(".o"):
                continue
            p = os.path.join(dp, f)
            mod = os.path.relpath(p, objdir)[:-2]
            if mod.startswith("main/") or not os.path.isfile(os.path.join(ROOT, mod + ".c")):
                continue  # a program's main, or a stale object of a moved file
            out = subprocess.run(["nm", "-g", p], capture_output=True, text=True).stdout
            for line in out.splitlines():
                w = line.split()
                if len(w) == 3 and w[1] in "TDBR":
                    defs[w[2]] = mod
                elif len(w) == 2 and w[0] == "U":
                    uses.setdefault(mod, set()).add(w[1])
    edges = {m: {defs[s] for s in ss if s in defs and defs[s] != m} for m, ss in uses.items()}
    index, low, stack, on, rings, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                rings.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(set(edges) | set(defs.values())):
        if v not in index:
            visit(v)
    return ["files that call each other in a ring: " + " ".join(r) for r in rings]


def main():
    errors, files = check_includes()
    if len(sys.argv) > 1 and os.path.isdir(sys.argv[1]):
        errors += check_calls(sys.argv[1])
    for e in errors:
        print("layers: " + e)
    print("layers: %d files checked, %d findings" % (files, len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
