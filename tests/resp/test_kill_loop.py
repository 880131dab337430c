"""The kill loop over RESP: workers are SIGKILLed while redis-py clients INCR and RPUSH; every
acknowledged reply is durable and whole, and the server keeps answering."""
import threading
import time

import redis
from killing import answer_after_kills, run_while_killing_workers

KILLS = 12


def test_acknowledged_writes_survive_killed_workers(server):
    server.client().flushall()
    stop = threading.Event()
    acked_incr, acked_push = [], []
    lock = threading.Lock()

    def client_loop(index):
        r = server.client(socket_timeout=5, retry_on_timeout=False)
        n = 0
        while not stop.is_set():
            item = "c%d-%d-" % (index, n) + "x" * (n % 300)
            n += 1
            try:
                value = r.incr("counter")
                r.rpush("items", item)
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.01)
                continue
            with lock:
                acked_incr.append(value)
                acked_push.append(item)

    run_while_killing_workers(server, client_loop, range(4), stop, kills=KILLS, every=0.15)
    assert server.alive()
    r = server.client(decode_responses=True)
    final = answer_after_kills(lambda: int(r.get("counter")), seconds=10)
    assert len(set(acked_incr)) == len(acked_incr)
    assert final >= max(acked_incr, default=0) and final >= len(acked_incr)
    items = r.lrange("items", 0, -1)
    present = set(items)
    assert len(items) == len(present), "an item appears twice"
    missing = [i for i in acked_push if i not in present]
    assert not missing, "acknowledged pushes lost: %d of %d (list %d): %r" % (len(missing), len(acked_push), len(items), missing[:3])
    for item in items:  # Whole: every item is one of ours, complete.
        prefix, _, tail = item.rpartition("-")
        n = int(prefix.split("-")[1])
        assert tail == "x" * (n % 300)
    assert len(acked_incr) > 0
