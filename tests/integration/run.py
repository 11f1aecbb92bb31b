#!/usr/bin/python3
"""run.py — the integration test runner.

Finds tests/integration/test_*.py, runs each module's test_* functions in
source order and prints TAP-like lines:

    ok - module.test
    not ok - module.test
    #   <assertion message, pvd log tail>
    ...
    # integration: N passed, M failed

Fixtures are chosen by parameter name:
  pvd  the module's shared pvd (harness.Pvd), started on first use with the
       module's PVD_CONFIG dict; stopped with SIGTERM after the module, which
       is checked as one more test, "module.clean_shutdown" (exit 0, no
       sanitizer report);
  tmp  a fresh temporary directory for this test.
A test raising harness.Skip prints "ok - ... # SKIP reason" and counts as
passed. Each test has a wall-clock budget (PV_TEST_TIMEOUT, default 120 s;
a module whose tests run longer by design sets its own, TEST_TIMEOUT).

Usage: tests/integration/run.py [-k SUBSTRING]... [-v] [MODULE.py ...]
Environment: PVD (binary, default build/test/bin/pvd), PV_KEEP=1 keeps temp dirs.
"""

import argparse
import glob
import importlib.util
import inspect
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

TEST_TIMEOUT = float(os.environ.get("PV_TEST_TIMEOUT", "120"))


class TestTimeout(Exception):
    pass


def _alarm(budget):
    raise TestTimeout("test took longer than %.0f s" % budget)


class Module:
    def __init__(self, name, mod):
        self.name = name
        self.mod = mod
        self.pvd = None
        self.start_error = None

    def get_pvd(self):
        if self.start_error:
            raise AssertionError("module pvd failed to start earlier: " + self.start_error)
        if self.pvd is None:
            p = harness.Pvd(getattr(self.mod, "PVD_CONFIG", None), name=self.name)
            try:
                p.start()
            except BaseException as e:
                self.start_error = str(e)
                p.cleanup()
                raise
            self.pvd = p
        elif not self.pvd.running():
            # A test left it stopped or killed: bring it back on the same data.
            self.pvd.start()
        return self.pvd


def load(path):
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return name, mod


def tests_of(mod):
    fns = [(n, f) for n, f in vars(mod).items()
           if n.startswith("test_") and inspect.isfunction(f) and f.__module__ == mod.__name__]
    fns.sort(key=lambda nf: nf[1].__code__.co_firstlineno)
    return fns


def indent(text):
    return "\n".join("#   " + l for l in text.rstrip().splitlines())


class Runner:
    def __init__(self, verbose):
        self.passed = 0
        self.failed = 0
        self.verbose = verbose

    def report(self, full, ok, detail=None, skip=None, secs=0.0):
        if ok:
            self.passed += 1
            line = "ok - " + full + (" # SKIP " + skip if skip else "")
        else:
            self.failed += 1
            line = "not ok - " + full
        if self.verbose:
            line += "  (%.1fs)" % secs
        print(line, flush=True)
        if detail and not ok:
            print(indent(detail), flush=True)

    def run_test(self, m, tname, fn):
        full = "%s.%s" % (m.name, tname)
        before = list(harness.Pvd.live)
        tmp = None
        t0 = time.monotonic()
        err, skip = None, None
        budget = float(getattr(m.mod, "TEST_TIMEOUT", TEST_TIMEOUT))
        signal.signal(signal.SIGALRM, lambda signum, frame: _alarm(budget))
        signal.setitimer(signal.ITIMER_REAL, budget)
        try:
            kwargs = {}
            for p in inspect.signature(fn).parameters:
                if p == "pvd":
                    kwargs[p] = m.get_pvd()
                elif p == "tmp":
                    tmp = kwargs[p] = tempfile.mkdtemp(prefix="pvit-tmp-")
                else:
                    raise AssertionError("unknown fixture parameter %r" % p)
            fn(**kwargs)
        except harness.Skip as e:
            skip = str(e) or "skipped"
        except AssertionError as e:
            err = str(e) or traceback.format_exc()
            tb = traceback.extract_tb(e.__traceback__)
            where = [f for f in tb if f.filename.endswith(".py") and "test_" in os.path.basename(f.filename)]
            if where:
                err += "\n(at %s:%d)" % (os.path.basename(where[-1].filename), where[-1].lineno)
        except BaseException as e:  # noqa: BLE001 - any crash of a test is a failure
            if isinstance(e, KeyboardInterrupt):
                raise
            err = "unexpected %s: %s\n%s" % (type(e).__name__, e, traceback.format_exc(limit=6))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        secs = time.monotonic() - t0
        # Instances the test started itself and left behind.
        extra = [p for p in harness.Pvd.live if p not in before and p is not m.pvd]
        if err:
            shown = ([m.pvd] if m.pvd else []) + extra
            for p in shown:
                err += "\n-- log tail of %s (%s):\n%s" % (p.name, p.log_path, p.log_tail(20) or "(empty)")
        for p in extra:
            p.cleanup()
        if tmp and not harness.KEEP:
            shutil.rmtree(tmp, ignore_errors=True)
        self.report(full, err is None, err, skip, secs)

    def finish_module(self, m):
        if m.pvd is None:
            return
        full = "%s.clean_shutdown" % m.name
        err = None
        log = m.pvd.log_path
        try:
            m.pvd.stop_clean()
        except AssertionError as e:
            err = str(e) + "\n-- log tail (%s):\n%s" % (log, m.pvd.log_tail(30))
        except Exception as e:  # noqa: BLE001
            err = "unexpected %s: %s" % (type(e).__name__, e)
        finally:
            m.pvd.cleanup()
        self.report(full, err is None, err)


def main():
    ap = argparse.ArgumentParser(description="pv integration tests")
    ap.add_argument("-k", action="append", default=[], help="run tests whose module.test contains this")
    ap.add_argument("-v", action="store_true", help="show each test's time")
    ap.add_argument("modules", nargs="*", help="test_*.py files (default: all)")
    args = ap.parse_args()

    paths = args.modules or sorted(glob.glob(os.path.join(HERE, "test_*.py")))
    r = Runner(args.v)
    t0 = time.monotonic()
    if not os.access(harness.PVD_BIN, os.X_OK):
        print("# note: no pvd binary at %s (build it: make build/test/bin/pvd)" % harness.PVD_BIN)
    for path in paths:
        try:
            name, mod = load(path)
        except Exception as e:  # noqa: BLE001 - a module that does not import is one failure
            r.report(os.path.basename(path), False, "cannot import: %s\n%s" % (e, traceback.format_exc(limit=3)))
            continue
        m = Module(name, mod)
        # Failures the seam injects in this module's pvds are logged as its
        # own (tools/failsites.py check; tests/run.sh sets the log).
        os.environ["PV_FAILPOINTS_TAG"] = "integration:" + name
        selected = [(n, f) for n, f in tests_of(mod)
                    if not args.k or any(k in "%s.%s" % (name, n) for k in args.k)]
        try:
            for tname, fn in selected:
                r.run_test(m, tname, fn)
        finally:
            r.finish_module(m)
    for p in list(harness.Pvd.live):
        p.cleanup()
    if args.v:
        print("# %.1f s" % (time.monotonic() - t0))
    print("# integration: %d passed, %d failed" % (r.passed, r.failed), flush=True)
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
