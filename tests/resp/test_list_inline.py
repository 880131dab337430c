"""Every list command on items across the inline boundary, differentially against redis-server.

shmstate keeps items of at most 7 bytes in their ring slot word and bigger ones in a block
(shared/src/list_rep.h). A seeded run sends the same list commands, with binary items of 0..9
bytes (NUL, 0xff and bytes with the tag bit among them), to Debian's redis-server and to
shmstate, and compares every reply on the wire, then every key's whole content. LSET, LINSERT and
LREM move items between the two forms both ways; LPOS, LINDEX and LRANGE read both; LMOVE,
RPOPLPUSH, LMPOP and the blocking pops (on keys that hold items, or after a 1 ms timeout) carry
them between keys.
"""
import random

import pytest

from test_differential import Wire, redis_port  # noqa: F401 (a fixture, used by name)

SEED = 2323
COMMANDS = 1500
KEYS = ["li:a", "li:b", "li:c"]
ALPHABET = b"\x00\xff\x01z\x80\x7f\x03x"


def item(rng):
    size = rng.choice([0, 1, 3, 6, 7, 7, 8, 8, 9])
    return bytes(rng.choice(ALPHABET) for _ in range(size))


def command(rng):
    k, k2 = rng.choice(KEYS), rng.choice(KEYS)
    end = rng.choice(["LEFT", "RIGHT"])
    if rng.random() < 0.04:  # Blocking pops, rarely: redis-server times out on its 100 ms cron.
        return rng.choice([["BLPOP", k, k2, "0.001"], ["BRPOP", k, "0.001"],
                           ["BLMOVE", k, k2, end, "LEFT", "0.001"]])
    return rng.choice([
        ["LPUSH", k] + [item(rng) for _ in range(rng.randint(1, 3))],
        ["RPUSH", k] + [item(rng) for _ in range(rng.randint(1, 3))],
        ["LPUSHX", k, item(rng)], ["RPUSHX", k, item(rng)],
        ["LPOP", k], ["RPOP", k], ["LPOP", k, rng.choice(["1", "2"])], ["RPOP", k, "2"],
        ["LLEN", k], ["LRANGE", k, "0", "-1"], ["LRANGE", k, "1", "3"],
        ["LINDEX", k, rng.choice(["0", "-1", "2"])],
        ["LSET", k, rng.choice(["0", "-1", "1"]), item(rng)],
        ["LINSERT", k, rng.choice(["BEFORE", "AFTER"]), item(rng), item(rng)],
        ["LREM", k, rng.choice(["0", "1", "-1", "2"]), item(rng)],
        ["LTRIM", k, rng.choice(["0", "1"]), rng.choice(["-1", "-2", "4"])],
        ["LPOS", k, item(rng)], ["LPOS", k, item(rng), "RANK", "-1", "COUNT", "0"],
        ["LMOVE", k, k2, end, rng.choice(["LEFT", "RIGHT"])],
        ["RPOPLPUSH", k, k2],
        ["LMPOP", "2", k, k2, end, "COUNT", "2"],
    ])


def test_every_list_command_matches_redis_on_inline_and_block_items(redis_port, server):  # noqa: F811
    rng = random.Random(SEED)
    ref, shm = Wire(redis_port), Wire(server.port)
    for wire in (ref, shm):
        assert wire.call(["FLUSHALL"]) == ("+", b"OK")
    mismatches = []
    for i in range(COMMANDS):
        cmd = command(rng)
        expected, got = ref.call(cmd), shm.call(cmd)
        if expected != got:
            mismatches.append((i, cmd, expected, got))
    for k in KEYS:
        whole = ["LRANGE", k, "0", "-1"]
        expected, got = ref.call(whole), shm.call(whole)
        if expected != got:
            mismatches.append(("end", whole, expected, got))
    report = "\n".join("#%s %r\n    redis:    %r\n    shmstate: %r" % m for m in mismatches[:10])
    assert not mismatches, "%d replies differ:\n%s" % (len(mismatches), report)


@pytest.mark.parametrize("size", range(10))
def test_each_size_round_trips_through_push_set_insert_and_pop(redis_port, server, size):  # noqa: F811
    """Sizes 0..9, one by one: pushed, replaced by LSET with the other form, inserted, popped."""
    value = bytes(ALPHABET[i % len(ALPHABET)] for i in range(size))
    other = b"\x00" * (15 - size)  # Inline when value is a block and the other way round.
    script = [["DEL", "s"], ["RPUSH", "s", value, value], ["LINDEX", "s", "0"],
              ["LSET", "s", "0", other], ["LRANGE", "s", "0", "-1"],
              ["LINSERT", "s", "AFTER", other, value], ["LPOS", "s", value, "COUNT", "0"],
              ["LREM", "s", "1", other], ["LRANGE", "s", "0", "-1"], ["LPOP", "s"],
              ["RPOP", "s"], ["EXISTS", "s"]]
    ref, shm = Wire(redis_port), Wire(server.port)
    for cmd in script:
        assert ref.call(cmd) == shm.call(cmd), cmd


def test_blocking_moves_time_out_with_redis_reply(redis_port, server):  # noqa: F811
    """BLMOVE and BRPOPLPUSH on an empty key time out with a null array, as every blocking list
    command does in Redis 7.0 (their non-blocking forms answer a null bulk)."""
    ref, shm = Wire(redis_port), Wire(server.port)
    for cmd in (["DEL", "empty"], ["BLMOVE", "empty", "dst", "LEFT", "RIGHT", "0.001"],
                ["BRPOPLPUSH", "empty", "dst", "0.001"], ["LMOVE", "empty", "dst", "LEFT", "LEFT"],
                ["RPOPLPUSH", "empty", "dst"]):
        assert ref.call(cmd) == shm.call(cmd), cmd
