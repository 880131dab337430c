"""A writer the kill tests start and kill: counter increments, dict sets of self-checking values
and list pushes through the shmstate module, one acknowledgement line on stdout after each call
returned ("c VALUE", "d KEY SEQ", "l ITEM"), and "g GENERATION" after a call made in a segment
generation it had not written in yet (the generation it holds a client slot in). Usage: writer_child.py NAME ID SEED [LIMIT]."""
import random
import signal
import sys
import zlib

import shmstate


def payload(writer, seq, size):
    """Bytes that say who wrote them and carry their own checksum, so a torn value shows."""
    body = (f"{writer}:{seq}:".encode() * (size // 8 + 1))[:size]
    return body + b"|%08x" % zlib.crc32(body)


def check(value):
    """(writer, seq) of a whole payload; AssertionError on a torn one."""
    body, _, crc = value.rpartition(b"|")
    assert crc == b"%08x" % zlib.crc32(body), f"torn value {value[:40]!r}..."
    writer, seq, _ = body.split(b":", 2)
    return int(writer), int(seq)


def finish(proc):
    """The rest of a dead (or dying) child's output lines. Read through proc.stdout itself:
    communicate(timeout=...) reads the raw pipe and would drop what readline() buffered."""
    rest = proc.stdout.read()
    proc.stdout.close()
    proc.wait(timeout=30)
    return rest.splitlines(keepends=True)


def kill_round(children, victim, lines_before_kill):
    """Reads up to `lines_before_kill` acknowledgement lines of children[victim], then SIGKILLs
    it mid-flight and every other child; returns each child's whole output."""
    lines = [[] for _ in children]
    for _ in range(lines_before_kill):
        line = children[victim].stdout.readline()
        if not line:
            break
        lines[victim].append(line)
    for proc in [children[victim]] + children:
        proc.send_signal(signal.SIGKILL)
    return [lines[i] + finish(proc) for i, proc in enumerate(children)]


def last_generation(lines):
    """The generation of a child's last "g N" line: the segment generation it last wrote in
    (holds a client slot in); None when it never wrote (killed during its imports)."""
    generations = [int(line.split()[1]) for line in lines if line.startswith("g ")]
    return generations[-1] if generations else None


def main():
    name, writer, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    limit = int(sys.argv[4]) if len(sys.argv) > 4 else 10**9
    rng = random.Random(seed)
    st = shmstate.attach(name)
    hits, d, jobs = st.counter("hits"), st.dict("kv"), st.list("jobs")
    out = sys.stdout
    generation = None
    for seq in range(limit):
        op = rng.randrange(3)
        if op == 0:
            out.write(f"c {hits.incr()}\n")
        elif op == 1:
            key = f"w{writer}-{rng.randrange(16)}"
            d[key] = payload(writer, seq, rng.randrange(8, 3000))
            out.write(f"d {key} {seq}\n")
        else:
            item = payload(writer, seq, rng.randrange(8, 600))
            jobs.push(item)
            out.write(f"l {item.decode()}\n")
        if st.generation != generation:
            generation = st.generation
            out.write(f"g {generation}\n")
        out.flush()


if __name__ == "__main__":
    main()
