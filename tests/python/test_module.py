"""The shmstate module against a real server, what only shm:// has: attach errors, the HTTP view of
the same state, fork safety and exact counts across processes."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import shmstate


def test_attach_to_a_missing_server_names_it_and_how_to_start_it():
    with pytest.raises(shmstate.NotFound, match=r"shmstate serve --name no-such-server"):
        shmstate.attach("no-such-server")
    with pytest.raises(shmstate.InvalidArgument):
        shmstate.attach("../etc")


def test_connect_shm_url_is_attach(server):
    st = shmstate.connect(f"shm://{server.name}")
    assert st.name == server.name and st.generation == 1
    with pytest.raises(shmstate.InvalidArgument):
        shmstate.connect("ftp://x")


# The kinds' behaviour (counter, dict, list, lock, sessions, array, objects) is tested once, on
# every backend, in test_backends.py (its `shm` parameter is this module on a real server). Here:
# what only shm:// has, the HTTP view of the same words.


def test_http_sees_what_the_module_writes(st, server):
    st.counter("hits").set(-3)
    status, body = server.http("GET", "/v1/counters/hits")
    assert status == 200 and json.loads(body)["value"] == -3
    d = st.dict("cache")
    d["k"] = b"w"
    status, body = server.http("GET", "/v1/dicts/cache/k")
    assert status == 200 and body == b"w"
    a = st.array("m", dtype="int32", shape=(3, 4), fill=1)
    a[2] = np.arange(4) * 2
    status, body = server.http("GET", "/v1/arrays/m/data?slice=2")
    assert status == 200 and json.loads(body)["data"] == [0, 2, 4, 6]
    assert "cache" in repr(d)


def _incr_in_child(name, n, attach_in_child, preloaded, out_fd):
    hits = shmstate.attach(name).counter("hits") if attach_in_child else preloaded
    got = [hits.incr() for _ in range(n)]
    os.write(out_fd, (json.dumps(got) + "\n").encode())


@pytest.mark.parametrize("attach_in_child", [False, True], ids=["attach-before-fork", "after"])
def test_forked_processes_count_exactly(server, attach_in_child):
    """The gunicorn shapes: --preload (handles made before fork used in children) and post_fork."""
    preloaded = None if attach_in_child else shmstate.attach(server.name).counter("hits")
    if preloaded is not None:
        preloaded.incr(by=0)
    read_fd, write_fd = os.pipe()
    children, per_child = 4, 2000
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _incr_in_child(server.name, per_child, attach_in_child, preloaded, write_fd)
            except BaseException:
                code = 1
            os._exit(code)
        pids.append(pid)
    os.close(write_fd)
    with os.fdopen(read_fd) as lines:
        results = [json.loads(line) for line in lines]
    for pid in pids:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    values = sorted(v for r in results for v in r)
    assert values == list(range(1, children * per_child + 1))


def test_stats_count_live_attached_clients_only(server):
    st = shmstate.attach(server.name)
    st.counter("hits").incr()  # This process now holds an intent slot.
    before = server.stats()["clients"]
    assert before >= 1
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, shmstate; hits = shmstate.attach(sys.argv[1])"
         ".counter('hits'); hits.incr(); print('ready', flush=True); sys.stdin.read()",
         server.name],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    assert server.stats()["clients"] == before + 1
    status, metrics = server.http("GET", "/metrics")
    assert f"shmstate_attached_clients {before + 1}\n" in metrics.decode()
    child.kill()
    child.wait(timeout=10)
    assert server.stats()["clients"] == before  # Dead is not live, even before the manager reaps.
    server.wait_log(f"attached client pid {child.pid} is gone", timeout=10)


def test_limits_are_the_librarys_one_table(st):
    """shmstate.LIMITS is shm/limits.h (docs/limits.md): the bounds the module enforces."""
    assert shmstate.LIMITS["key"] == 65536
    assert shmstate.LIMITS["value"] == 16 << 20
    assert shmstate.LIMITS["object_name"] == 200
    d = st.dict("limits")
    longest = b"k" * shmstate.LIMITS["key"]
    d[longest] = b"v"
    assert d[longest] == b"v"
    with pytest.raises(shmstate.InvalidArgument, match="key longer than 65536 bytes"):
        d[longest + b"k"] = b"v"
    assert len(d) == 1
    with pytest.raises(shmstate.InvalidArgument):
        st.dict("n" * (shmstate.LIMITS["object_name"] + 1))
