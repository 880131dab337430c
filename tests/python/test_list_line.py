"""A Python process blocked in `List.pop(wait=)` waits in the same line as the HTTP workers'
parked pops (docs/http-api.md, "Waiting requests"): whoever started waiting first gets the first
push, whichever front end it came by. Steps wait for states (a process asleep in a futex, a
logged parked request), never for a time."""
import subprocess
import sys
import threading
import time
import urllib.request

# The waiter: one thread, so once it sleeps in a futex it is the pop (the GIL is released).
WAITER = """
import sys, shmstate
item = shmstate.attach(sys.argv[1]).list("line").pop(wait=30)
print(item.decode() if item is not None else "NONE", flush=True)
"""


def wait_in_futex(pid, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/wchan") as f:
            if "futex" in f.read():
                return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} never slept in a futex")


def http_pop(server, out):
    req = urllib.request.Request(server.url("/v1/lists/line/pop?wait=30"), data=b"",
                                 method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        out.append((resp.status, resp.read().decode()))


def test_python_and_http_waiters_share_one_arrival_order(make_server):
    server = make_server(workers=2, log_level="debug")
    st_list = __import__("shmstate").attach(server.name).list("line")
    child = subprocess.Popen([sys.executable, "-c", WAITER, server.name], stdout=subprocess.PIPE)
    try:
        wait_in_futex(child.pid)  # In line: it joined before it slept.
        answers = []
        waiter = threading.Thread(target=http_pop, args=(server, answers))
        waiter.start()
        server.wait_log("/v1/lists/line/pop?wait=30 parked")
        assert st_list.push(b"first") == 1
        assert st_list.push(b"second") >= 1
        out, _ = child.communicate(timeout=60)
        waiter.join(timeout=60)
        assert out.decode().strip() == "first"
        assert answers == [(200, "second")]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
