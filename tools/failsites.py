#!/usr/bin/env python3
"""failsites.py — the failure seam's sites, what fired them, and proof that
release builds carry none of it.

  failsites.py list                 every site: name and file:line
  failsites.py check LOG...         every site fired? (LOG: PV_FAILPOINTS_LOG files)
  failsites.py release BIN... [--control TESTBIN]
                                    no seam in these (release) binaries; the
                                    control (a test build) must show one, or
                                    the check itself is broken

A site is one `pv_fail("name")` call in src/, actors/ or tools/ (fail.c
itself excepted). `check` reads the lines the test build appends to
PV_FAILPOINTS_LOG for each injected failure ("name<TAB>file:line<TAB>tag",
tag: the suite that ran it), prints for each site the suites that fired it,
and fails when a site was never fired, unless EXCLUDED names it with a
reason. Call sites are matched by file and line, so a site that moved is a
site to fire again. `release` checks that no pv_fail symbol is defined or
called in a binary and that no site name is left in its read-only data.
Each mode ends with one summary line "# failsites <mode>: P passed, F failed"
for tests/run.sh.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = re.compile(r'pv_fail\("([A-Za-z0-9_.]+)"\)')
DIRS = ("src", "actors", "tools")
SKIP = {os.path.join("src", "base", "fail.c")}

# Sites no test fires, each with the reason. Keep it empty if you can.
EXCLUDED = {}


def sites():
    """[(name, "file:line")] of every call site, in source order."""
    out = []
    for d in DIRS:
        for dirpath, _, files in os.walk(os.path.join(ROOT, d)):
            for f in sorted(files):
                if not f.endswith(".c"):
                    continue
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, ROOT)
                if rel in SKIP:
                    continue
                with open(path, encoding="utf-8", errors="replace") as fh:
                    for no, line in enumerate(fh, 1):
                        for m in SITE.finditer(line):
                            out.append((m.group(1), "%s:%d" % (rel, no)))
    return sorted(out, key=lambda s: (s[1].split(":")[0], int(s[1].split(":")[1])))


def norm(place):
    """tests/unit/../../src/x.c:12 (a test that #includes the .c) -> src/x.c:12"""
    f, _, line = place.rpartition(":")
    return "%s:%s" % (os.path.normpath(f), line)


def read_logs(paths):
    fired = {}
    for p in paths:
        try:
            with open(p, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    parts = line.rstrip("\n").split("\t")
                    if len(parts) != 3:
                        continue
                    name, place, tag = parts
                    fired.setdefault((name, norm(place)), set()).add(tag)
        except OSError:
            pass
    return fired


def check(paths):
    all_sites = sites()
    fired = read_logs(paths)
    missing = []
    by_name = {}
    for name, place in all_sites:
        tags = fired.get((name, place), set())
        by_name.setdefault(name, set()).update(tags)
        why = EXCLUDED.get("%s %s" % (name, place)) or EXCLUDED.get(name)
        mark = "ok" if tags else ("excluded: " + why if why else "NEVER FIRED")
        print("%-16s %-34s %s" % (name, place, ", ".join(sorted(tags)) if tags else mark))
        if not tags and not why:
            missing.append("%s %s" % (name, place))
    known = set(all_sites)
    stale = sorted(k for k in fired if k not in known)
    for name, place in stale:
        print("# fired at %s %s, which is no site in the source now" % (name, place))
    print("# %d sites (%d names), %d fired, %d never fired"
          % (len(all_sites), len(by_name), len(all_sites) - len(missing), len(missing)))
    for m in missing:
        print("not ok - site %s was never fired by a test" % m)
    print("# failsites check: %d passed, %d failed" % (len(all_sites) - len(missing), len(missing)))
    return 1 if missing else 0


def rodata(binary):
    out = subprocess.run(["objcopy", "-O", "binary", "--only-section=.rodata", binary, "/dev/stdout"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    return out.stdout


def seam_in(binary, names):
    """(pv_fail symbols, site names in .rodata) of a binary."""
    syms = subprocess.run(["nm", "-A", binary], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          check=False).stdout.decode()
    bad = [l for l in syms.splitlines() if re.search(r"\bpv_fail(_\w+)?\b", l)]
    data = rodata(binary)
    return bad, [n for n in names if b"\0" + n.encode() + b"\0" in data]


def release(binaries):
    names = sorted({n for n, _ in sites()})
    passed = failed = 0
    control = None
    if "--control" in binaries:
        i = binaries.index("--control")
        control = binaries[i + 1] if i + 1 < len(binaries) else None
        binaries = binaries[:i] + binaries[i + 2:]
    if control:
        bad, left = seam_in(control, names)
        # Only what the program links shows (the cloud client is not in pvd
        # yet); enough that the check sees a seam where there is one.
        if bad and left:
            passed += 1
            print("ok - control %s shows the seam (%d of %d names)" % (control, len(left), len(names)))
        else:
            failed += 1
            print("not ok - control %s: the check does not see its seam (%d symbols, %d names)"
                  % (control, len(bad), len(left)))
    for b in binaries:
        bad, left = seam_in(b, names)
        if bad or left:
            failed += 1
            print("not ok - %s carries the failure seam: %s %s" % (b, bad[:3], left[:5]))
        else:
            passed += 1
            print("ok - %s: no pv_fail symbol, none of %d site names" % (b, len(names)))
    print("# failsites release: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("list", "check", "release"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "list":
        for name, place in sites():
            print("%s\t%s" % (name, place))
        return 0
    if mode == "check":
        return check(args)
    return release(args)


if __name__ == "__main__":
    sys.exit(main())
