"""Transactions survive SIGKILL: Python processes transferring random amounts between 16 accounts
with Client.transaction are killed at random moments (fixed seed), as are HTTP workers applying
POST /v1/tx batches from concurrent clients. A reader inside a transaction always sees the
exact total; afterwards the total is exact, the balances are what the log of committed transfers
says (each transfer applied once, both sides or neither), every acknowledged transfer is in the
log, and each killed process left at most one transfer that committed without its ack."""
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import shmstate  # noqa: E402
from tx_child import ACCOUNTS, INITIAL  # noqa: E402
from writer_child import finish, kill_round, last_generation  # noqa: E402

CHILD = os.path.join(HERE, "tx_child.py")
TOTAL = INITIAL * len(ACCOUNTS)


def start(*args):
    return subprocess.Popen([sys.executable, "-u", CHILD, *map(str, args)],
                            stdout=subprocess.PIPE, text=True)


def setup_accounts(st):
    acct = st.dict("acct")
    for a in ACCOUNTS:
        acct[a] = b"%d" % INITIAL


def check_log(st, acked, in_flight):
    """The balances are the log replayed; every acked transfer is logged; at most `in_flight`
    logged transfers were never acknowledged."""
    log = st.dict("txlog")
    balances = {a: INITIAL for a in ACCOUNTS}
    logged = set()
    for key in log.keys():
        key = key.decode()
        source, target, amount = log[key].decode().split()
        balances[source] -= int(amount)
        balances[target] += int(amount)
        logged.add(key)
    acct = st.dict("acct")
    stored = {a: int(acct[a]) for a in ACCOUNTS}
    assert sum(stored.values()) == TOTAL
    assert stored == balances, "a transfer applied partly, or twice"
    missing = set(acked) - logged
    assert not missing, f"{len(missing)} acknowledged transfers lost, e.g. {sorted(missing)[:3]}"
    assert len(logged - set(acked)) <= in_flight


def test_transfers_killed_at_random(make_server):
    server = make_server(workers=0, size="32MiB")
    st = shmstate.attach(server.name)
    setup_accounts(st)
    rng = random.Random(20261206)
    acked, in_flight, killed = [], 0, []
    reader = start("read", server.name, TOTAL)
    for round_ in range(16):
        writers = [start("transfer", server.name, 10 * round_ + w, rng.randrange(1 << 30))
                   for w in range(3)]
        victim = rng.randrange(3)
        # The victim is killed once it has committed this many transfers, with the other two.
        outputs = kill_round(writers, victim, rng.randrange(3, 120))
        for proc, output in zip(writers, outputs):
            assert proc.returncode == -signal.SIGKILL, output[-3:]
            acked += [line.split()[1] for line in output if line.startswith("t ")]
            killed.append((proc.pid, last_generation(output)))
            in_flight += 1
        assert reader.poll() is None, finish(reader)[-3:]  # No total seen was wrong.
    reader.send_signal(signal.SIGKILL)
    output = finish(reader)
    assert not [line for line in output if line.startswith("BAD")], output[-3:]
    assert any(line.startswith("r ") for line in output), "the reader never finished 100 reads"
    assert len(acked) > 100
    check_log(st, acked, in_flight)
    # What the dead left (locks, records) is settled: a transaction over every account commits.
    st.transaction(lambda tx: [tx.dict("acct").set(a, tx.dict("acct")[a]) for a in ACCOUNTS])
    # The manager settled the last dead writers.
    server.wait_clients_settled(killed[-3:], st.generation)


# --- The same over HTTP: POST /v1/tx from concurrent clients while workers are killed ---------

class HttpClient:
    """One keep-alive connection; None for a request whose answer was lost (worker killed)."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def post(self, ops):
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            self.conn.request("POST", "/v1/tx", json.dumps({"ops": ops}),
                              {"Content-Type": "application/json"})
            resp = self.conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            return None, None


def http_transfer(client, rng, ref):
    """Moves a random amount between two accounts with preconditions on the versions read,
    retrying on 409 and after a lost answer (the log key, if_absent, says whether it landed).
    Returns the number of 409s it retried."""
    source, target = rng.sample(ACCOUNTS, 2)
    amount = rng.randrange(1, 200)
    conflicts = 0
    for _ in range(10000):  # Bounded: a server that stopped answering fails the test.
        status, body = client.post([{"op": "get", "dict": "acct", "key": source},
                                    {"op": "get", "dict": "acct", "key": target},
                                    {"op": "get", "dict": "txlog", "key": ref}])
        if status is None or status == 503:
            continue
        assert status == 200, body
        have, want, logged = body["results"]
        if logged["value"] is not None:
            return conflicts  # An earlier attempt committed; its answer was lost.
        moved = min(amount, int(have["value"]))
        status, body = client.post([
            {"op": "set", "dict": "acct", "key": source, "value": str(int(have["value"]) - moved),
             "if_version": have["version"]},
            {"op": "set", "dict": "acct", "key": target, "value": str(int(want["value"]) + moved),
             "if_version": want["version"]},
            {"op": "set", "dict": "txlog", "key": ref, "value": f"{source} {target} {moved}",
             "if_absent": True}])
        if status == 200:
            return conflicts
        if status == 409:
            assert body["error"]["code"] == "Conflict" and body["error"]["index"] in (0, 1, 2)
            conflicts += 1
    raise AssertionError(f"transfer {ref} never went through")


HTTP_CLIENT = r"""
import random, sys
sys.path.insert(0, sys.argv[1])
import test_tx_kill as t
client = t.HttpClient(int(sys.argv[2]))
rng = random.Random(int(sys.argv[3]))
conflicts = 0
for seq in range(int(sys.argv[4])):
    conflicts += t.http_transfer(client, rng, f"h{sys.argv[3]}:{seq}")
    print(f"t h{sys.argv[3]}:{seq}", flush=True)
print(f"conflicts {conflicts}", flush=True)
"""

# Reads the 16 balances in one batch until told to stop (stdin closed): every total is exact.
HTTP_READER = r"""
import sys, threading
sys.path.insert(0, sys.argv[1])
import test_tx_kill as t
client = t.HttpClient(int(sys.argv[2]))
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
reads = 0
while not stop.is_set():
    status, body = client.post([{"op": "get", "dict": "acct", "key": a} for a in t.ACCOUNTS])
    if status != 200:
        continue
    seen = sum(int(r["value"]) for r in body["results"])
    if seen != t.TOTAL:
        print(f"BAD total {seen}", flush=True)
        sys.exit(3)
    reads += 1
print(f"reads {reads}", flush=True)
"""


def test_http_batches_from_concurrent_clients_while_workers_are_killed(make_server):
    server = make_server(workers=2, size="32MiB")
    st = shmstate.attach(server.name)
    setup_accounts(st)
    st.dict("txlog")
    rng = random.Random(24)
    clients = [subprocess.Popen([sys.executable, "-u", "-c", HTTP_CLIENT, HERE, str(server.port),
                                 str(seed), "150"], stdout=subprocess.PIPE, text=True)
               for seed in range(3)]
    reader = subprocess.Popen([sys.executable, "-u", "-c", HTTP_READER, HERE, str(server.port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    # Kill a worker now and then while the clients run; the manager replaces it.
    kills = 0
    while any(c.poll() is None for c in clients) and kills < 6:
        time.sleep(rng.uniform(0.05, 0.3))
        workers = [int(pid) for pid in open(f"/proc/{server.proc.pid}/task/"
                                            f"{server.proc.pid}/children").read().split()]
        try:
            os.kill(rng.choice(workers), signal.SIGKILL)
            kills += 1
        except (IndexError, ProcessLookupError):
            pass  # Between a death and its replacement (a killed worker not yet reaped).
    acked, conflicts = [], 0
    for c in clients:
        out, _ = c.communicate(timeout=240)
        assert c.returncode == 0, out[-500:]
        acked += [line.split()[1] for line in out.splitlines() if line.startswith("t ")]
        conflicts += int(out.split("conflicts ")[1])
    out, _ = reader.communicate("", timeout=60)
    assert reader.returncode == 0 and int(out.split("reads ")[1]) > 0, out[-500:]
    assert len(acked) == 450
    check_log(st, acked, in_flight=0)  # A lost answer was looked up: every transfer is acked.
    # A reader's batch of 16 gets sees the exact total.
    status, body = HttpClient(server.port).post(
        [{"op": "get", "dict": "acct", "key": a} for a in ACCOUNTS])
    assert status == 200 and sum(int(r["value"]) for r in body["results"]) == TOTAL
    print(f"{kills} workers killed, {conflicts} conflicts retried")
