"""No argument crashes the calling process or escapes the shmstate.Error hierarchy.

Every public method of every class of the module (enumerated from the module: see argfuzz.py)
is called with generated arguments: wrong types, huge and negative numbers, NaN and inf, empty,
non-UTF-8 and surrogate strings, nested and deeply nested sequences, numpy scalars and arrays of
every dtype, None, bytes-likes contiguous or not, and every numpy index form. Each class's
methods run in a child process, which must exit normally (never by a signal); every exception a
call raises must be a shmstate.Error, and array reads must give numpy's answer for the same key.
Hypothesis runs derandomized (the same calls every run) with SHMSTATE_FUZZ_EXAMPLES examples per
method (default 40); SHMSTATE_FUZZ_REPORT=FILE writes the failures found as JSON (FILE.redis for
the Redis backend). The same wrapper classes are then fuzzed on a redis-server.
"""
import collections
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import argfuzz

EXAMPLES = int(os.environ.get("SHMSTATE_FUZZ_EXAMPLES", "40"))
BATCH_TIMEOUT_S = 240  # A hung child is a failure too (a wait that never ends).


def run_batch(server_name, targets, progress_path):
    """Runs targets in children until all ran; returns (failures, calls). A child that dies (or
    hangs) is a failure named after the call it was in; the next child starts after that
    target, so one crash does not hide the others."""
    failures, calls = [], 0
    remaining = list(targets)
    env = dict(os.environ, SHMSTATE_FUZZ_SERVER=server_name)
    while remaining:
        with open(progress_path, "w"):
            pass
        cmd = [sys.executable, argfuzz.__file__, server_name, progress_path, str(EXAMPLES),
               *remaining]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                  timeout=BATCH_TIMEOUT_S)
            returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as e:
            returncode = "hung"
            stdout = (e.stdout or b"").decode(errors="replace")
            stderr = (e.stderr or b"").decode(errors="replace")
        done = False
        for line in stdout.splitlines():
            record = json.loads(line)
            if record.get("done"):
                done, calls = True, calls + record["calls"]
            else:
                failures.append(record)
        if returncode == 0 and done:
            return failures, calls
        with open(progress_path) as f:
            progress = f.read().splitlines()
        started = [line[3:] for line in progress if line.startswith("== ")]
        current = started[-1] if started else remaining[0]
        last_call = next((line for line in reversed(progress) if not line.startswith("== ")),
                         "(before the first call)")
        if isinstance(returncode, int) and returncode < 0:
            kind = f"killed by {signal.Signals(-returncode).name}"
        else:
            kind = f"child ended with {returncode}"
        failures.append({"target": current, "kind": kind, "example": last_call,
                         "detail": stderr[-2000:]})
        remaining = remaining[remaining.index(current) + 1:] if current in remaining else []
    return failures, calls


# The cases issue 21 names, each with what it must do now. Run in a child: before the fix some
# of them killed the interpreter.
ISSUE_21_CASES = r"""
import json, sys
import numpy as np
import shmstate
st = shmstate.attach(sys.argv[1])
a = st.array("i21.a", dtype="float64", shape=(3, 4))
a[...] = np.arange(12.0).reshape(3, 4)
ref = a.to_numpy()
out = {}

def case(name, fn):
    try:
        result = fn()
        out[name] = ["ok", np.asarray(result).tolist(), list(np.shape(result))]
    except shmstate.Error as e:
        out[name] = [type(e).__name__, str(e), isinstance(e, TypeError), isinstance(e, ValueError)]
    except Exception as e:
        out[name] = ["ESCAPED " + type(e).__name__, str(e)]

mask, rows = np.array([True, False, True]), np.array([0, 2])
case("mask", lambda: a[mask])
case("rows", lambda: a[rows])
case("rows=", lambda: a.__setitem__(rows, 1.0))
case("None", lambda: a[None])
case("None,0", lambda: a[None, 0])
case("...,None", lambda: a[..., None])
case("1,None,::-2", lambda: a[1, None, ::-2])
case("True", lambda: a[True])
case("add(array)", lambda: a.add(np.array([0, 1]), 1))
case("2**63", lambda: a[2**63])
case("a[0]=ones((3,4))", lambda: a.__setitem__(0, np.ones((3, 4))))
case("incr(2**64)", lambda: st.counter("i21.c").incr(2**64))
lst = st.list("i21.l")
lst.push(b"x")
case("pop(wait=2**1100)", lambda: lst.pop(wait=2**1100).decode())
case("pop(wait=-2**1100)", lambda: lst.pop(wait=-2**1100))
d = st.dict("i21.d")
case("key U+DCFF", lambda: (d.set("\udcff", b"v"), d[b"\xff"].decode())[1])
case("key U+D800", lambda: d.set("\ud800", b"v"))
case("memoryview[::2]", lambda: (d.set("m", memoryview(b"abcdef")[::2]), d["m"].decode())[1])
s = st.sessions("i21.s")
case("create([1, 2])", lambda: s.create([1, 2]))
deep = 0
for _ in range(5000):
    deep = [deep]
case("deep", lambda: s.create({"v": deep}))
print(json.dumps({"ref": ref.tolist(), "out": out}))
"""


def test_the_cases_issue_21_names(make_server):
    import numpy as np
    server = make_server(workers=0)
    proc = subprocess.run([sys.executable, "-c", ISSUE_21_CASES, server.name],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    ref, out = np.array(result["ref"]), result["out"]
    assert not [k for k, v in out.items() if v[0].startswith("ESCAPED")], out

    def read(name, expected):
        status, values, shape = out[name]
        assert status == "ok" and list(np.shape(expected)) == shape, (name, out[name])
        np.testing.assert_array_equal(np.array(values).reshape(shape), expected)

    read("mask", ref[np.array([True, False, True])])
    read("rows", ref[np.array([0, 2])])
    read("None", ref[None])
    read("None,0", ref[None, 0])
    read("...,None", ref[..., None])
    read("1,None,::-2", ref[1, None, ::-2])
    read("True", ref[True])
    assert out["rows="][0] == "InvalidArgument" and "advanced indexing" in out["rows="][1]
    assert out["add(array)"][0] == "InvalidType" and out["add(array)"][2] is True  # TypeError.
    assert out["2**63"][0] == "InvalidArgument" and "out of bounds" in out["2**63"][1]
    # Also a ValueError, as numpy's broadcast error was.
    assert out["a[0]=ones((3,4))"][0] == "InvalidArgument" and out["a[0]=ones((3,4))"][3]
    assert out["incr(2**64)"][0] == "InvalidArgument"
    assert out["pop(wait=2**1100)"][:2] == ["ok", "x"]  # A huge wait waits at most 24 h.
    assert out["pop(wait=-2**1100)"][0] == "InvalidArgument"
    assert out["key U+DCFF"][:2] == ["ok", "v"]  # surrogateescape: the key is the byte 0xff.
    assert out["key U+D800"][0] == "InvalidArgument"
    assert out["memoryview[::2]"][:2] == ["ok", "ace"]  # Not contiguous: gathered.
    assert out["create([1, 2])"][0] == "InvalidType"
    assert out["deep"][0] == "InvalidArgument"


def test_every_public_method_has_a_strategy(make_server):
    server = make_server(workers=0)
    targets, missing = argfuzz.enumerate_targets(argfuzz.Fixtures(server.name))
    assert not missing, f"public methods without a strategy in argfuzz.SPECS: {missing}"
    stale = sorted(set(argfuzz.SPECS) - set(targets))
    assert not stale, f"argfuzz.SPECS names methods the module no longer has: {stale}"
    # Sanity: the enumeration sees every class and the operators.
    for target in ("Array.__getitem__", "Array.__setitem__", "Dict.__setitem__", "Counter.incr",
                   "Sessions.create", "Lock.acquire", "List.pop", "_Array.read",
                   "module.attach"):
        assert target in targets


def fuzz(server_name, targets, tmp_path, report_suffix=""):
    """Runs the targets, one child per class; asserts no failure."""
    batches = collections.defaultdict(list)
    for target in targets:
        batches[target.split(".", 1)[0]].append(target)
    started = time.monotonic()
    failures, calls = [], 0
    for cls_name, batch in sorted(batches.items()):
        found, n = run_batch(server_name, batch, str(tmp_path / f"progress-{cls_name}"))
        failures += found
        calls += n
    elapsed = time.monotonic() - started
    report = os.environ.get("SHMSTATE_FUZZ_REPORT")
    if report:
        with open(report + report_suffix, "w") as f:
            json.dump({"calls": calls, "seconds": round(elapsed, 1), "failures": failures}, f,
                      indent=1)
    print(f"argument fuzz: {len(targets)} targets, {calls} calls, {len(failures)} failure "
          f"kinds, {elapsed:.1f} s")
    assert not failures, "\n".join(
        f"{f['target']}: {f['kind']}: {f['detail'][:200]}\n    e.g. {f['example'][:300]}"
        for f in failures)
    assert calls >= EXAMPLES * 10  # The children really ran the calls.


def test_no_argument_crashes_or_escapes_the_error_hierarchy(make_server, tmp_path):
    server = make_server(workers=0, size="64MiB")
    targets, missing = argfuzz.enumerate_targets(argfuzz.Fixtures(server.name))
    assert not missing
    fuzz(server.name, targets, tmp_path)


def test_the_redis_backend_takes_the_same_arguments(tmp_path):
    """The same classes on redis:// (shmstate/redis_backend.py, which uses the module's own
    converters): the wrapper classes' methods, through to the Redis-side objects."""
    import test_backends
    if not (test_backends.REDIS_SERVER and test_backends.REDIS_CLI):
        pytest.skip("needs redis-server and redis-cli (scripts/setup --test)")
    node = test_backends.RedisNode(str(tmp_path))
    try:
        url = f"redis://127.0.0.1:{node.port}"
        targets, missing = argfuzz.enumerate_targets(argfuzz.Fixtures(url))
        # The module's functions attach to shm servers; the native classes are shm's own.
        shm_only = ("module.", "_")
        targets = [t for t in targets if not t.startswith(shm_only)]
        missing = [t for t in missing if not t.startswith(shm_only)]
        assert not missing and len(targets) > 50
        fuzz(url, targets, tmp_path, ".redis")
    finally:
        node.kill()
