"""CPython's own manager tests, run against shmstate.Manager() (or the stock manager).

Runs every WithManagerTest* class and TestSyncManagerTypes of Lib/test/_test_multiprocessing.py
from Debian's libpython3.11-testsuite, under one start method, with ManagerMixin.manager and
TestSyncManagerTypes' manager made by shmstate.Manager(). The package is unpacked (apt-get
download + dpkg -x, never installed: that would upgrade the system's python3.11) into
$SHMSTATE_BUILD_DIR/cpython-tests on first use.

    run_manager_suite.py fork|spawn [--stock] [-v]

Tests named in skiplist.txt (with the reason) are skipped; any other failure fails the run.
The last line is a summary: "<start method> <manager>: N passed, N skipped, N failed".

This file is imported again as __mp_main__ by spawned children, so the installation of the
tests happens at import time and is steered by environment variables the children inherit.
"""
import fcntl
import glob
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_DIR = os.environ.get("SHMSTATE_BUILD_DIR") or os.path.join(HERE, "..", "..", "..", "build")
SUITE_DIR = os.path.join(os.path.abspath(BUILD_DIR), "cpython-tests")
PACKAGE = "libpython3.11-testsuite"


def _installed_python_version():
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libpython3.11-stdlib"],
                         capture_output=True, text=True)
    return out.stdout.strip()


def fetch_suite():
    """Unpacks Lib/test of the testsuite package into SUITE_DIR/test (once, under a file lock)."""
    os.makedirs(SUITE_DIR, exist_ok=True)
    with open(os.path.join(SUITE_DIR, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(SUITE_DIR, "test", "_test_multiprocessing.py")):
            return
        with tempfile.TemporaryDirectory() as tmp:
            # The version matching the installed interpreter if the mirror still has it, else
            # the newest one (the test files of a 3.11.2 point release differ only in fixes).
            version = _installed_python_version()
            got = subprocess.run(["apt-get", "download", f"{PACKAGE}={version}"], cwd=tmp,
                                 capture_output=True, text=True)
            if got.returncode != 0:
                got = subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp,
                                     capture_output=True, text=True)
            if got.returncode != 0 and os.geteuid() == 0:  # No package lists yet (fresh CI).
                subprocess.run(["apt-get", "update", "-qq"], check=True)
                got = subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp,
                                     capture_output=True, text=True)
            if got.returncode != 0:
                sys.exit(f"apt-get download {PACKAGE} failed:\n{got.stderr}")
            deb = glob.glob(os.path.join(tmp, "*.deb"))[0]
            subprocess.run(["dpkg-deb", "-x", deb, os.path.join(tmp, "x")], check=True)
            src = os.path.join(tmp, "x", "usr", "lib", "python3.11", "test")
            # Only the `test` package: the deb also holds unittest/test etc., which must not
            # shadow the installed stdlib packages.
            subprocess.run(["cp", "-a", src, os.path.join(SUITE_DIR, "test.tmp")], check=True)
            os.rename(os.path.join(SUITE_DIR, "test.tmp"), os.path.join(SUITE_DIR, "test"))
            with open(os.path.join(SUITE_DIR, "VERSION"), "w") as f:
                f.write(os.path.basename(deb) + "\n")


START_METHOD = os.environ.get("SHM_MP_START_METHOD", "fork")
USE_STOCK = os.environ.get("SHM_MP_STOCK") == "1"

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("fork", "spawn", "forkserver"):
        sys.exit(__doc__)
    START_METHOD = os.environ["SHM_MP_START_METHOD"] = sys.argv[1]
    USE_STOCK = "--stock" in sys.argv
    os.environ["SHM_MP_STOCK"] = "1" if USE_STOCK else "0"
    fetch_suite()

sys.path.insert(0, os.path.join(os.path.abspath(BUILD_DIR), "python"))

import multiprocessing  # noqa: E402
import test  # noqa: E402  (the installed package: __init__ and support/ match the interpreter)

# The testsuite's modules after the installed ones of the same package.
test.__path__.append(os.path.join(SUITE_DIR, "test"))
import test._test_multiprocessing as suite  # noqa: E402

if not USE_STOCK:
    import shmstate  # noqa: E402

    def _manager_set_up_class(cls):
        suite.BaseMixin.setUpClass.__func__(cls)
        cls.manager = shmstate.Manager()

    suite.ManagerMixin.setUpClass = classmethod(_manager_set_up_class)
    suite.TestSyncManagerTypes.manager_class = shmstate.SyncManager

suite.install_tests_in_module_dict(globals(), START_METHOD)
# Keep only the manager tests: WithManagerTest* and TestSyncManagerTypes.
for _name in [n for n, v in list(globals().items()) if isinstance(v, type)
              and issubclass(v, unittest.TestCase)]:
    if not (_name.startswith("WithManagerTest") or _name == "TestSyncManagerTypes"):
        del globals()[_name]


def _load_skiplist():
    skips = {}
    path = os.path.join(HERE, "skiplist.txt")
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line and not line.startswith("#"):
                test_id, _, reason = line.partition(" ")
                skips[test_id] = reason.strip()
    return skips


class _Result(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passed = []

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed.append(test)


def main():
    skips = {} if USE_STOCK else _load_skiplist()
    module = sys.modules[__name__]
    tests = unittest.defaultTestLoader.loadTestsFromModule(module)

    def apply_skips(suite_or_test):
        if isinstance(suite_or_test, unittest.TestSuite):
            for t in suite_or_test:
                apply_skips(t)
            return
        short = suite_or_test.id().split(".", 1)[1]
        for key in (f"{START_METHOD}:{short}", short):
            if key in skips:
                reason = skips[key]
                setattr(suite_or_test, suite_or_test._testMethodName,
                        lambda *a, r=reason: suite_or_test.skipTest("shmstate skip list: " + r))

    apply_skips(tests)
    verbosity = 2 if "-v" in sys.argv else 1
    runner = unittest.TextTestRunner(verbosity=verbosity, resultclass=_Result)
    result = runner.run(tests)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    name = "stock" if USE_STOCK else "shmstate"
    print(f"{START_METHOD} {name}: {len(result.passed)} passed, {len(result.skipped)} skipped, "
          f"{failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
