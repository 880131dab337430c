"""The kill loops of the RESP tests: clients run in threads while the server's workers are
SIGKILLed one after another (the manager replaces each), then the state is read once the
replacements answer."""
import os
import signal
import threading
import time

import redis


def worker_pids(server):
    """The server's worker processes now."""
    with open("/proc/%d/task/%d/children" % (server.proc.pid, server.proc.pid)) as f:
        return [int(p) for p in f.read().split()]


def run_while_killing_workers(server, client, args, stop, kills=8, every=0.2):
    """Runs client(arg) in a thread per arg, SIGKILLs a worker every `every` seconds `kills`
    times (taking turns), then sets `stop` (which the clients' loops watch) and joins them."""
    threads = [threading.Thread(target=client, args=(arg,)) for arg in args]
    for t in threads:
        t.start()
    try:
        for k in range(kills):
            time.sleep(every)
            pids = worker_pids(server)
            if pids:
                os.kill(pids[k % len(pids)], signal.SIGKILL)
    finally:
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(30)


def answer_after_kills(read, seconds=15):
    """read()'s answer once a replacement worker gives one (bounded)."""
    deadline = time.time() + seconds
    while True:
        try:
            return read()
        except redis.ConnectionError:
            assert time.time() < deadline, "the server did not answer after the kills"
            time.sleep(0.1)
