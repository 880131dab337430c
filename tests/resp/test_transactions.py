"""MULTI/EXEC, WATCH and the multi-key commands are isolated and atomic across a crash: redis-py
clients on several connections (two workers) transfer between 16 accounts (keys or hash fields),
swap keys, move list items (at the ends or in the middle of short and long lists) and write
pairs of keys while readers check invariants inside MULTI/EXEC (listings of hashes and of the
keyspace included); workers are SIGKILLed in the middle of batches. Batches of hash listings,
long-list edits, key listings and FLUSHDB are compared with Debian's redis-server. Seeded,
bounded."""
import multiprocessing
import random
import threading
import time

import redis
from conftest import start
from killing import answer_after_kills, run_while_killing_workers

ACCOUNTS = ["acct%d" % i for i in range(16)]
START = 1000


def run_clients(targets):
    """Runs each target in its own process (so the clients really run at once, not one at a
    time under the GIL) and returns everything they report, in one list."""
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()

    def main(target):
        results.put(target() or [])

    procs = [ctx.Process(target=main, args=(t,)) for t in targets]
    for p in procs:
        p.start()
    reported = []
    for _ in procs:
        reported.extend(results.get(timeout=120))
    for p in procs:
        p.join(30)
        assert p.exitcode == 0, "a client process failed"
    return reported


def test_multi_exec_transfers_keep_every_readers_total(server):
    r = server.client(decode_responses=True)
    r.flushall()
    r.mset({a: START for a in ACCOUNTS})
    def transfer(seed):
        c = server.client(decode_responses=True)
        rng = random.Random(seed)
        for _ in range(1500):
            a, b = rng.sample(ACCOUNTS, 2)
            amount = rng.randint(1, 50)
            p = c.pipeline(transaction=True)  # MULTI DECRBY INCRBY EXEC, as redis-py sends it.
            p.decrby(a, amount)
            p.incrby(b, amount)
            p.execute()

    def read():
        bad = []
        c = server.client(decode_responses=True)
        for _ in range(1500):
            p = c.pipeline(transaction=True)
            p.mget(ACCOUNTS)
            total = sum(int(v) for v in p.execute()[0])
            if total != START * len(ACCOUNTS):
                bad.append(total)
        return bad

    bad = run_clients([lambda s=s: transfer(s) for s in (1, 2, 3)] + [read, read])
    assert bad == [], "a reader's MULTI/EXEC saw a torn total"
    assert sum(int(v) for v in r.mget(ACCOUNTS)) == START * len(ACCOUNTS)


def test_mset_is_never_seen_half_done(server):
    r = server.client(decode_responses=True)
    r.flushall()
    keys = ["m%d" % i for i in range(32)]
    r.mset({k: "0" for k in keys})
    def write(tag):
        c = server.client(decode_responses=True)
        for n in range(1500):
            c.mset({k: "%s%d" % (tag, n) for k in keys})

    def read():
        mixed = []
        c = server.client(decode_responses=True)
        for _ in range(3000):
            values = c.mget(keys)
            if len(set(values)) != 1:
                mixed.append(values)
        return mixed

    mixed = run_clients([lambda: write("a"), lambda: write("b"), read])
    assert mixed == [], "MGET saw two MSETs mixed: %r" % mixed[:1]


def test_watch_is_exact_on_lists_and_hashes(server):
    r = server.client(decode_responses=True)
    other = server.client(decode_responses=True)
    r.flushall()
    for setup, write in ((lambda: r.rpush("l", "a"), lambda: other.rpush("l", "b")),
                         (lambda: r.hset("h", "f", "1"), lambda: other.hset("h", "g", "2"))):
        setup()
        key = "l" if "rpush" in str(setup.__code__.co_names) else "h"
        p = r.pipeline(transaction=True)
        p.watch(key)
        write()
        p.multi()
        p.set("flag", "1")
        try:
            p.execute()
            raised = False
        except redis.WatchError:
            raised = True
        assert raised, "EXEC ran after another client wrote the watched " + key
        assert r.get("flag") is None


def test_watch_increments_lose_no_update(server):
    r = server.client(decode_responses=True)
    r.flushall()
    r.set("n", 0)

    def incr():
        c = server.client(decode_responses=True)
        done = 0
        while done < 250:
            with c.pipeline(transaction=True) as p:
                try:
                    p.watch("n")
                    value = int(p.get("n"))
                    p.multi()
                    p.set("n", value + 1)
                    p.execute()
                    done += 1
                except redis.WatchError:
                    continue

    run_clients([incr, incr, incr, incr])
    assert int(r.get("n")) == 1000


def test_rename_and_lmove_are_isolated(server):
    r = server.client(decode_responses=True)
    r.flushall()
    r.set("x", "v")
    r.rpush("left", *range(20))
    def swap():
        c = server.client(decode_responses=True)
        for n in range(300):
            c.rename("x", "y") if n % 2 == 0 else c.rename("y", "x")
            c.lmove("left", "right", "LEFT", "RIGHT")
            c.rpoplpush("right", "left")

    def read():
        wrong = []
        c = server.client(decode_responses=True)
        for _ in range(300):
            p = c.pipeline(transaction=True)
            p.exists("x")
            p.exists("y")
            p.llen("left")
            p.llen("right")
            x, y, left, right = p.execute()
            if x + y != 1 or left + right != 20:
                wrong.append((x, y, left, right))
        return wrong

    wrong = run_clients([swap, read])
    assert wrong == [], "a MULTI/EXEC saw a rename or a move half done: %r" % wrong[:1]


def test_sigkilled_workers_apply_each_acknowledged_exec_once(server):
    r = server.client(decode_responses=True)
    r.flushall()
    r.mset({a: START for a in ACCOUNTS})
    stop = threading.Event()
    acked, wrong = [], []
    lock = threading.Lock()

    def transfer(seed):
        c = server.client(decode_responses=True, socket_timeout=5)
        rng = random.Random(seed)
        n = 0
        while not stop.is_set():
            a, b = rng.sample(ACCOUNTS, 2)
            amount = rng.randint(1, 50)
            tid = "t%d_%d" % (seed, n)
            n += 1
            try:
                p = c.pipeline(transaction=True)
                p.decrby(a, amount)
                p.incrby(b, amount)
                p.set("log:" + tid, "%s %s %d" % (a, b, amount))
                p.execute()
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.01)
                continue
            with lock:
                acked.append(tid)

    run_while_killing_workers(server, transfer, (11, 12, 13), stop)

    def read():
        balances = {a: int(v) for a, v in zip(ACCOUNTS, r.mget(ACCOUNTS))}
        return balances, {k: r.get(k) for k in r.scan_iter("log:*", count=1000)}

    balances, logs = answer_after_kills(read)
    assert sum(balances.values()) == START * len(ACCOUNTS)
    expected = {a: START for a in ACCOUNTS}
    for entry in logs.values():
        a, b, amount = entry.split()
        expected[a] -= int(amount)
        expected[b] += int(amount)
    assert balances == expected, "a transfer was applied partly or twice"
    missing = [t for t in acked if "log:" + t not in logs]
    assert missing == [], "acknowledged transfers lost: %r" % missing[:5]
    assert acked, "no transfer was acknowledged"


def test_sigkilled_workers_lose_and_duplicate_no_moved_job(server):
    """LMOVE, and MULTI LMOVE INCR EXEC, are one crash-atomic transaction each: workers killed
    mid-move leave every job in exactly one list once, and the move counter counts each
    acknowledged move (plus those whose reply a kill cut off)."""
    r = server.client(decode_responses=True)
    r.flushall()
    jobs = ["job%d" % i for i in range(40)]
    r.rpush("q:a", *jobs)
    queues = ["q:a", "q:b", "q:c"]
    stop = threading.Event()
    acked = []
    unanswered = []  # A MULTI whose reply a kill cut off may have committed.
    lock = threading.Lock()

    def move(seed):
        c = server.client(decode_responses=True, socket_timeout=5)
        rng = random.Random(seed)
        n = 0
        while not stop.is_set():
            src, dst = rng.sample(queues, 2)
            ends = rng.choice(["LEFT", "RIGHT"]), rng.choice(["LEFT", "RIGHT"])
            try:
                if n % 2 == 0:
                    p = c.pipeline(transaction=True)
                    p.lmove(src, dst, *ends)
                    p.incr("moves")
                    p.execute()
                    counted = 1
                else:
                    c.lmove(src, dst, *ends)
                    counted = 0
            except (redis.ConnectionError, redis.TimeoutError):
                with lock:
                    unanswered.append(n % 2 == 0)
                n += 1
                time.sleep(0.01)
                continue
            n += 1
            with lock:
                acked.append(counted)

    run_while_killing_workers(server, move, (21, 22, 23), stop)

    def read():
        found = [item for q in queues for item in r.lrange(q, 0, -1)]
        return found, int(r.get("moves") or 0)

    found, moves = answer_after_kills(read)
    assert sorted(found) == sorted(jobs), "a job was lost or duplicated by a killed move"
    counted = sum(acked)
    assert counted <= moves <= counted + sum(unanswered), (counted, moves, sum(unanswered))
    assert len(acked) > 50, "too few moves were acknowledged"


def hash_batch(p):
    """Queues hash commands covering each reply kind and error: what EXEC answers for them must
    be what the same commands answer one by one."""
    p.hset("h", "b", "2")
    p.hset("h", "b", "3")
    p.hsetnx("h", "b", "4")
    p.hsetnx("h", "c", "5")
    p.hget("h", "b")
    p.hmget("h", "a", "b", "zz")
    p.hincrby("h", "a", 10)
    p.hincrbyfloat("h", "f", 1.5)
    p.hincrbyfloat("h", "f", "2.25")
    p.hexists("h", "c")
    p.hexists("h", "zz")
    p.hstrlen("h", "s")
    p.hlen("h")
    p.hdel("h", "c", "nope")
    p.hlen("h")
    p.hincrby("h", "s", 1)  # Not an integer.
    p.hincrby("h", "a", 2 ** 63 - 1)  # Overflow.
    p.hincrbyfloat("h", "s", 1)  # Not a float.
    p.hincrby("str", "x", 1)  # WRONGTYPE.
    p.hget("str", "x")  # WRONGTYPE.
    p.hget("nokey", "f")
    p.hlen("nokey")
    p.hdel("nokey", "f")
    p.hset("gone", "only", "1")
    p.hdel("gone", "only")
    p.exists("gone")
    p.hset("new", mapping={"x": "1", "y": "2"})
    p.hmget("new", "x", "y")
    p.hget("h", "a")


def seed_hashes(r):
    r.flushall()
    r.hset("h", mapping={"a": "1", "s": "text"})
    r.set("str", "x")


def replies(results):
    return [("error", str(v)) if isinstance(v, redis.ResponseError) else v for v in results]


def test_exec_with_hash_commands_answers_as_the_commands_alone(server):
    r = server.client(decode_responses=True)
    seed_hashes(r)
    alone = r.pipeline(transaction=False)
    hash_batch(alone)
    expected = replies(alone.execute(raise_on_error=False))
    state = (r.hgetall("h"), r.hgetall("new"), r.exists("gone"))

    seed_hashes(r)
    p = r.pipeline(transaction=True)
    hash_batch(p)
    got = replies(p.execute(raise_on_error=False))
    assert got == expected
    assert (r.hgetall("h"), r.hgetall("new"), r.exists("gone")) == state
    # Redis's replies, for the record.
    assert got[:5] == [1, 0, False, True, "3"]
    assert got[6] == 11 and got[8] == 3.75 and got[12] == 5 and got[14] == 4
    assert got[15] == ("error", "hash value is not an integer")
    assert got[16] == ("error", "increment or decrement would overflow")
    assert got[18][1].startswith("WRONGTYPE") and got[19][1].startswith("WRONGTYPE")
    assert got[25] == 0 and got[-1] == "11"
    assert state[0] == {"a": "11", "s": "text", "b": "3", "f": "3.75"}


def test_exec_lists_a_hash_it_changed(server):
    """HGETALL, HKEYS, HVALS, HSCAN and HRANDFIELD of a hash the same EXEC changed see the
    change, in the transaction (the staged fields laid over the committed ones)."""
    r = server.client(decode_responses=True)
    seed_hashes(r)
    p = r.pipeline(transaction=True)
    p.hset("h", "z", "26")
    p.hdel("h", "s")
    p.hgetall("h")
    p.hkeys("h")
    p.hvals("h")
    p.hscan("h", 0)
    p.hrandfield("h", 5)
    got = p.execute()
    assert got[2] == {"a": "1", "z": "26"}
    assert got[3] == ["a", "z"] and got[4] == ["1", "26"]
    assert got[5] == (0, {"a": "1", "z": "26"})
    assert got[6] == ["a", "z"]
    # Unchanged by the batch: listed through the transaction, with the field commands.
    p = r.pipeline(transaction=True)
    p.hgetall("h")
    p.hincrby("other", "n", 1)
    assert p.execute() == [{"a": "1", "z": "26"}, 1]
    # A hash past HSCAN's whole-hash size, scanned by cursor with its staged fields.
    r.hset("big", mapping={"f%d" % i: i for i in range(300)})
    p = r.pipeline(transaction=True)
    p.hdel("big", *("f%d" % i for i in range(0, 300, 3)))
    p.hset("big", mapping={"n%d" % i: i for i in range(20)})
    p.hset("big", "f1", "one")
    p.hscan("big", 0, count=10000)
    p.hlen("big")
    got = p.execute()
    expected = {"f%d" % i: str(i) for i in range(300) if i % 3}
    expected.update({"n%d" % i: str(i) for i in range(20)}, f1="one")
    assert got[3] == (0, expected) and got[4] == len(expected)
    assert r.hgetall("big") == expected


def ordered(reply):
    """A reply with every dict (HGETALL, HSCAN) turned into its items in order, so replies
    compare in order."""
    if isinstance(reply, dict):
        return [(k, ordered(v)) for k, v in reply.items()]
    if isinstance(reply, (list, tuple)):
        return [ordered(v) for v in reply]
    if isinstance(reply, redis.ResponseError):
        return ("error", str(reply))
    return reply


def random_hash_batch(p, rng):
    """Seeded MULTI batch of hash writes and listings of the hashes it writes."""
    keys, fields = ["h0", "h1"], ["f%d" % i for i in range(6)]
    for _ in range(rng.randint(4, 14)):
        key, field, op = rng.choice(keys), rng.choice(fields), rng.randrange(9)
        if op == 0:
            p.hset(key, mapping={f: rng.randint(0, 9) for f in rng.sample(fields, 2)})
        elif op == 1:
            p.hdel(key, *rng.sample(fields, rng.randint(1, 3)))
        elif op == 2:
            p.hsetnx(key, field, rng.randint(0, 9))
        elif op == 3:
            p.hincrby(key, field, rng.randint(-3, 3))
        elif op == 4:
            p.hgetall(key)
        elif op == 5:
            p.hkeys(key)
        elif op == 6:
            p.hvals(key)
        elif op == 7:
            p.hscan(key, 0)
        else:
            p.hrandfield(key, 10, withvalues=rng.random() < 0.5)


def test_exec_listings_of_changed_hashes_answer_as_redis(server, real_redis):
    """Seeded batches of hash writes and listings (HGETALL, HKEYS, HVALS, HSCAN, HRANDFIELD of
    the whole hash) in MULTI/EXEC answer what Debian's redis-server answers, in its order: a
    rewritten field in place, a deleted one gone, a new or re-created one last."""
    r = server.client(decode_responses=True)
    rng = random.Random(24)
    for batch in range(60):
        answers = []
        seed = rng.random()
        for client in (real_redis, r):
            client.flushall()
            client.hset("h0", mapping={"f0": 0, "f1": 1, "f2": 2})
            client.hset("h1", mapping={"f3": 3, "f1": 1})
            p = client.pipeline(transaction=True)
            random_hash_batch(p, random.Random(seed))
            answers.append(ordered([p.execute(raise_on_error=False),
                                    client.hgetall("h0"), client.hgetall("h1")]))
        assert answers[1] == answers[0], "batch %d differs from redis-server" % batch


def test_watch_is_exact_for_an_exec_of_hash_commands(server):
    r = server.client(decode_responses=True)
    other = server.client(decode_responses=True)
    r.flushall()
    r.hset("h", "n", "0")
    for write in (lambda: other.hset("h", "m", "1"), lambda: other.hdel("h", "m"),
                  lambda: other.hincrby("h", "n", 1)):
        p = r.pipeline(transaction=True)
        p.watch("h")
        before = r.hgetall("h")
        write()
        p.multi()
        p.hincrby("h", "n", 100)
        try:
            p.execute()
            raised = False
        except redis.WatchError:
            raised = True
        assert raised, "EXEC ran after another client wrote the watched hash"
        assert int(r.hget("h", "n")) < 100, (before, r.hgetall("h"))
    p = r.pipeline(transaction=True)
    p.watch("h")
    p.multi()
    p.hincrby("h", "n", 100)
    assert p.execute() == [101]


def test_sigkilled_workers_keep_hash_field_transfers_exact(server):
    """MULTI HINCRBY HINCRBY SET HGETALL HGETALL EXEC between fields of two hashes is one
    crash-atomic transaction: the listings of the hashes it changed always sum to the total,
    workers killed mid-EXEC leave the fields' sum exact, and the fields are what the logged
    transfers (each acknowledged one among them) make them."""
    r = server.client(decode_responses=True)
    r.flushall()
    accounts = [("bank:%d" % (i % 2), "f%d" % i) for i in range(16)]
    for key, field in accounts:
        r.hset(key, field, START)
    stop = threading.Event()
    acked, wrong = [], []
    lock = threading.Lock()

    def transfer(seed):
        c = server.client(decode_responses=True, socket_timeout=5)
        rng = random.Random(seed)
        n = 0
        while not stop.is_set():
            (ka, fa), (kb, fb) = rng.sample(accounts, 2)
            amount = rng.randint(1, 50)
            tid = "t%d_%d" % (seed, n)
            n += 1
            try:
                p = c.pipeline(transaction=True)
                p.hincrby(ka, fa, -amount)
                p.hincrby(kb, fb, amount)
                p.set("log:" + tid, "%s %s %s %s %d" % (ka, fa, kb, fb, amount))
                p.hgetall("bank:0")
                p.hgetall("bank:1")
                listed = p.execute()[3:]
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.01)
                continue
            total = sum(int(v) for fields in listed for v in fields.values())
            with lock:
                acked.append(tid)
                if total != START * len(accounts):
                    wrong.append(total)

    run_while_killing_workers(server, transfer, (31, 32, 33), stop)

    def read():
        balances = {(k, f): int(v) for k in ("bank:0", "bank:1")
                    for f, v in r.hgetall(k).items()}
        return balances, {k: r.get(k) for k in r.scan_iter("log:*", count=1000)}

    balances, logs = answer_after_kills(read)
    assert sum(balances.values()) == START * len(accounts)
    expected = {a: START for a in accounts}
    for entry in logs.values():
        ka, fa, kb, fb, amount = entry.split()
        expected[(ka, fa)] -= int(amount)
        expected[(kb, fb)] += int(amount)
    assert balances == expected, "a transfer was applied partly or twice"
    missing = [t for t in acked if "log:" + t not in logs]
    assert missing == [], "acknowledged transfers lost: %r" % missing[:5]
    assert wrong == [], "an EXEC listed hashes it changed with a wrong total: %r" % wrong[:5]
    assert len(acked) > 50, "too few transfers were acknowledged"


def list_batch(p):
    """Queues edits in a list's middle and reads of the list they changed: EXEC must answer what
    the commands answer one by one."""
    p.rpush("l", "x")
    p.lset("l", 1, "B")
    p.lset("l", -1, "X")
    p.lset("l", 99, "no")  # Out of range.
    p.lset("nokey", 0, "no")  # No such key.
    p.lset("str", 0, "no")  # WRONGTYPE.
    p.linsert("l", "before", "B", "b0")
    p.linsert("l", "after", "zz", "no")
    p.linsert("nokey", "after", "a", "no")
    p.lrem("l", 0, "a")
    p.lrem("l", -1, "c")
    p.lrange("l", 0, -1)
    p.llen("l")
    p.lindex("l", 1)
    p.ltrim("l", 1, -2)
    p.lrange("l", 0, -1)
    p.lpush("l", "first")
    p.ltrim("l", 5, 10)  # Empties the list: the key goes.
    p.exists("l")
    p.ltrim("two", 0, 0)
    p.lpop("two")
    p.exists("two")


def seed_lists(r):
    r.flushall()
    r.rpush("l", "a", "b", "c", "a", "c")
    r.rpush("two", "p", "q")
    r.set("str", "x")


def test_exec_with_list_middle_edits_answers_as_the_commands_alone(server):
    r = server.client(decode_responses=True)
    seed_lists(r)
    alone = r.pipeline(transaction=False)
    list_batch(alone)
    expected = replies(alone.execute(raise_on_error=False))
    seed_lists(r)
    p = r.pipeline(transaction=True)
    list_batch(p)
    got = replies(p.execute(raise_on_error=False))
    assert got == expected
    assert got[11] == ["b0", "B", "c", "X"] and got[15] == ["B", "c"]
    assert got[18] == 0 and got[21] == 0
    assert r.keys("*") == ["str"]


def test_exec_edits_a_long_lists_middle_as_redis(server, real_redis):
    """LSET, LINSERT, LREM and LTRIM of a list longer than a transaction's 4096 operations, in
    one EXEC with reads of it and pushes after the edits, answer what redis-server answers, and
    leave the list (and its expiry) as it does."""
    long = ["i%d" % i for i in range(6000)]
    answers = []
    for client in (real_redis, server.client(decode_responses=True)):
        client.flushall()
        client.rpush("long", *long)
        client.expire("long", 1000)
        p = client.pipeline(transaction=True)
        p.lset("long", 3000, "X")
        p.linsert("long", "before", "i4000", "Y")
        p.lrem("long", 1, "i10")
        p.lrange("long", 2998, 3001)
        p.rpush("long", "tail")
        p.lset("long", -1, "TAIL")
        p.ltrim("long", 5, -5)
        p.lindex("long", 0)
        p.llen("long")
        p.lpop("long")
        p.lrange("long", -3, -1)
        got = p.execute()
        answers.append((got, client.lrange("long", 0, -1), 0 < client.ttl("long") <= 1000))
    assert answers[1] == answers[0]
    assert answers[0][0][8] == 5992


def test_sigkilled_workers_keep_jobs_moved_by_middle_edits_exactly_once(server):
    """MULTI LREM src 1 job, LPUSH dst job, LINSERT/LSET/LREM of a probe in dst EXEC (edits in
    lists' middles) is one crash-atomic transaction: workers killed mid-EXEC leave every job in
    exactly one list once, and no probe."""
    r = server.client(decode_responses=True)
    r.flushall()
    jobs = ["job%d" % i for i in range(30)]
    queues = ["m:a", "m:b", "m:c"]
    r.rpush("m:a", *jobs)
    stop = threading.Event()
    acked = []
    lock = threading.Lock()

    def move(seed):
        c = server.client(decode_responses=True, socket_timeout=5)
        rng = random.Random(seed)
        while not stop.is_set():
            src, dst = rng.sample(queues, 2)
            job = rng.choice(jobs)
            try:
                p = c.pipeline(transaction=True)
                p.watch(src)
                if job not in p.lrange(src, 0, -1):
                    p.unwatch()
                    continue
                p.multi()
                p.lrem(src, 1, job)
                p.lpush(dst, job)
                p.linsert(dst, "after", job, "probe")
                p.lset(dst, 1, "probe2")
                p.lrem(dst, 1, "probe2")
                p.ltrim(dst, 0, -1)
                p.execute()
            except redis.WatchError:
                continue
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.01)
                continue
            with lock:
                acked.append(job)

    run_while_killing_workers(server, move, (41, 42, 43), stop)
    found = answer_after_kills(lambda: [item for q in queues for item in r.lrange(q, 0, -1)])
    assert not {"probe", "probe2"} & set(found), "a killed EXEC left part of its batch"
    assert sorted(found) == sorted(jobs), "a job was lost or duplicated by a killed move"
    assert len(acked) > 50, "too few moves were acknowledged"


def test_sigkilled_workers_keep_jobs_moved_out_of_a_long_lists_middle_exactly_once(server):
    """MULTI LREM src 1 job, LINSERT dst BEFORE pivot job EXEC between a list longer than a
    transaction's 4096 operations and a short one (each edit one change of the commit, whatever
    the length): workers killed mid-EXEC leave every job in exactly one list once and the long
    list's other items in their order."""
    r = server.client(decode_responses=True)
    r.flushall()
    jobs = ["job%d" % i for i in range(20)]
    pads = ["pad%d" % i for i in range(4500)]
    r.rpush("long", *pads[:2000], *jobs[:10], *pads[2000:])
    r.rpush("short", "pivot", *jobs[10:])
    stop = threading.Event()
    acked = []
    lock = threading.Lock()

    def move(seed):
        c = server.client(decode_responses=True, socket_timeout=10)
        rng = random.Random(seed)
        while not stop.is_set():
            src, dst = rng.sample(["long", "short"], 2)
            job = rng.choice(jobs)
            try:
                p = c.pipeline(transaction=True)
                p.watch(src)
                if p.lpos(src, job) is None:
                    p.unwatch()
                    continue
                p.multi()
                p.lrem(src, 1, job)
                p.linsert(dst, "before", "pivot" if dst == "short" else "pad2000", job)
                p.execute()
            except redis.WatchError:
                continue
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.01)
                continue
            with lock:
                acked.append(job)

    run_while_killing_workers(server, move, (51, 52), stop)
    found = answer_after_kills(lambda: r.lrange("long", 0, -1) + r.lrange("short", 0, -1))
    assert [item for item in found if item.startswith("pad")] == pads
    assert sorted(item for item in found if item.startswith("job")) == sorted(jobs), \
        "a job was lost or duplicated by a killed move"
    assert len(acked) > 10, "too few moves were acknowledged"


def keys_batch(p, rng):
    """Seeded MULTI batch of key writes (COPY and MOVE of every type included) with KEYS, SCAN,
    DBSIZE, EXISTS and FLUSHDB between."""
    keys = ["k%d" % i for i in range(6)]
    for _ in range(rng.randint(3, 12)):
        key, op = rng.choice(keys), rng.randrange(12)
        if op == 10:
            p.copy(key, rng.choice(keys))
            p.lrange(key, 0, -1)
            continue
        if op == 11:
            p.move(key, 1)
            continue
        if op == 0:
            p.set(key, rng.randint(0, 9))
        elif op == 1:
            p.delete(*rng.sample(keys, 2))
        elif op == 2:
            p.rename(key, rng.choice(keys))
        elif op == 3:
            p.rpush(key, "x")
        elif op == 4:
            p.hset(key, "f", 1)
        elif op == 5:
            p.keys("*")
        elif op == 6:
            p.scan(0, count=1000)
        elif op == 7:
            p.dbsize()
        elif op == 8:
            p.exists(*keys)
        elif rng.random() < 0.3:
            p.flushdb()
        else:
            p.randomkey()


def unordered_keys(reply):
    """KEYS and SCAN replies compared as sets (their order is the server's hash order, a
    documented difference); RANDOMKEY's as whether it answered a key."""
    if isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[1], list):
        return ("scan", reply[0], sorted(reply[1]))
    if isinstance(reply, list):
        return sorted(reply)
    if isinstance(reply, str) and reply.startswith("k") and len(reply) == 2:
        return "a key"
    return ordered(reply)


def test_exec_key_listings_and_flushdb_answer_as_redis(server, real_redis):
    """Seeded batches of key writes with COPY, MOVE, KEYS, SCAN, DBSIZE, RANDOMKEY and FLUSHDB
    in MULTI/EXEC (one transaction: they see the batch's own writes) answer what redis-server
    answers."""
    r = server.client(decode_responses=True)
    rng = random.Random(2424)
    for batch in range(60):
        answers = []
        seed = rng.random()
        for client in (real_redis, r):
            client.flushall()
            client.set("k0", "a")
            client.rpush("k1", "x", "y")
            client.hset("k2", "f", "v")
            p = client.pipeline(transaction=True)
            keys_batch(p, random.Random(seed))
            got = p.execute(raise_on_error=False)
            answers.append(([unordered_keys(v) for v in got], sorted(client.keys("*"))))
        assert answers[1] == answers[0], "batch %d differs from redis-server" % batch


def test_sigkilled_workers_keep_batches_that_count_and_list_keys_whole(server):
    """Batches that write two keys of a pair (or remove a pair, or FLUSHDB and write a pair) and
    count and list the keys in the same EXEC are one crash-atomic transaction: every DBSIZE and
    KEYS inside sees whole pairs only, and so does the keyspace after workers were SIGKILLed
    mid-batch."""
    r = server.client(decode_responses=True)
    r.flushall()
    stop = threading.Event()
    acked, wrong = [], []
    lock = threading.Lock()

    def pairs_whole(keys):
        names = sorted(keys)
        return len(names) % 2 == 0 and all(
            a[:-1] == b[:-1] and a.endswith("a") and b.endswith("b")
            for a, b in zip(names[::2], names[1::2]))

    def client(seed):
        c = server.client(decode_responses=True, socket_timeout=5)
        rng = random.Random(seed)
        mine = []
        n = 0
        while not stop.is_set():
            n += 1
            tid = "p:%d:%d:" % (seed, n)
            try:
                p = c.pipeline(transaction=True)
                op = rng.random()
                if op < 0.05:
                    p.flushdb()
                if op < 0.7 or not mine:
                    p.set(tid + "a", 1)
                    p.set(tid + "b", 1)
                else:
                    old = mine.pop(rng.randrange(len(mine)))
                    p.delete(old + "a", old + "b")
                p.dbsize()
                p.keys("p:*")
                got = p.execute()
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.01)
                continue
            if op < 0.7 or not mine:
                mine.append(tid)
            with lock:
                acked.append(tid)
                if got[-2] % 2 or not pairs_whole(got[-1]):
                    wrong.append((got[-2], got[-1]))

    run_while_killing_workers(server, client, (61, 62, 63), stop)
    keys = answer_after_kills(lambda: r.keys("*"))
    assert wrong == [], "a batch counted or listed half a pair: %r" % wrong[:3]
    assert pairs_whole(keys), "a killed EXEC left half a pair: %r" % sorted(keys)[:10]
    assert len(acked) > 50, "too few batches were acknowledged"


def test_a_batch_of_thousands_of_keys_is_one_transaction(server):
    """MSET of 5000 keys and a batch reading 5000 keys' types stay within one transaction's
    limits (Transaction::kMaxOps): whole replies, no error after part of a batch applied."""
    r = server.client(decode_responses=True)
    r.flushall()
    assert r.mset({"k%d" % i: i for i in range(5000)}) is True
    assert r.dbsize() == 5000
    p = r.pipeline(transaction=True)
    p.set("extra", "x")
    p.scan(0, count=10000, _type="string")
    p.keys("k1*")
    got = p.execute()
    assert got[1][0] == 0 and len(got[1][1]) == 5001
    assert len(got[2]) == 1 + 10 + 100 + 1000


def test_batches_past_a_transactions_limits_run_whole(request):
    """A batch with more operations than one transaction holds (Transaction::kMaxOps, 262,144:
    here 270,000 keys read by three MGETs beside a write) runs whole under the database's locks:
    never an error after part of it was applied, never a reply missing keys."""
    big = start(request, ("--size", "256MiB"))
    r = big.client(decode_responses=True)
    keys, chunk = 270000, 90000
    for first in range(0, keys, chunk):
        assert r.mset({"k%d" % i: i for i in range(first, first + chunk)}) is True
    p = r.pipeline(transaction=True)
    p.set("extra", "x")
    for first in range(0, keys, chunk):
        p.mget(["k%d" % i for i in range(first, first + chunk)])
    p.dbsize()
    got = p.execute()
    assert got[0] is True
    values = [v for reply in got[1:-1] for v in reply]
    assert values == [str(i) for i in range(keys)]
    assert got[-1] == keys + 1
