"""A writer the Manager kill tests start and kill: dict sets of self-checking values, list
appends, `Value += 1` under the Lock, and Queue puts through shmstate.Manager proxies, one
acknowledgement line on stdout after each call returned ("d KEY SEQ", "l ITEM", "v VALUE",
"q ITEM"; list inserts at the front ack as "l ITEM"; item sets of a second, fixed-length list
ack as "s INDEX"). With a seventh handle (an RLock, a BoundedSemaphore(2), a Namespace, an
Array, a JoinableQueue, an Event): nested RLock blocks setting a Namespace attribute, Array item
sets under the semaphore, JoinableQueue puts ("j ITEM"), Event set/clear, and dict pops and
setdefaults of other keys. Usage: manager_child.py HEX_PICKLED_PROXIES WRITER SEED."""
import pickle
import random
import sys

import shmstate  # noqa: F401  (the proxies' classes)
from writer_child import payload


def main():
    handles = pickle.loads(bytes.fromhex(sys.argv[1]))
    d, lst, value, lock, q, slots = handles[:6]
    extra = handles[6] if len(handles) > 6 else None
    writer, seed = int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    out = sys.stdout
    for seq in range(10**9):
        op = rng.randrange(11 if extra else 6)
        if op >= 6:
            more(extra, d, op, writer, seq, rng, out)
            out.flush()
            continue
        if op == 0:
            key = f"w{writer}-{rng.randrange(8)}"
            d[key] = payload(writer, seq, rng.randrange(8, 2000))
            out.write(f"d {key} {seq}\n")
        elif op == 1:
            item = payload(writer, seq, rng.randrange(8, 200)).decode()
            lst.append(item)
            out.write(f"l {item}\n")
        elif op == 2:
            with lock:
                value.value += 1
                now = value.value
            out.write(f"v {now}\n")
        elif op == 3:
            item = payload(writer, seq, rng.randrange(8, 200)).decode()
            q.put(item)
            out.write(f"q {item}\n")
        elif op == 4:
            item = payload(writer, seq, rng.randrange(8, 200)).decode()
            lst.insert(0, item)  # A whole-content replace (List::Replace).
            out.write(f"l {item}\n")
        else:
            index = rng.randrange(8)
            slots[index] = payload(writer, seq, rng.randrange(8, 200))  # List::Set.
            out.write(f"s {index}\n")
        out.flush()


def more(extra, d, op, writer, seq, rng, out):
    rlock, sem, ns, arr, jq, ev = extra
    if op == 6:
        with rlock:
            with rlock:  # Reentrant: one holder entry, its count 2.
                ns.x = payload(writer, seq, rng.randrange(8, 200))
    elif op == 7:
        with sem:
            arr[rng.randrange(8)] = seq
    elif op == 8:
        item = payload(writer, seq, rng.randrange(8, 200)).decode()
        jq.put(item)
        out.write(f"j {item}\n")
    elif op == 9:
        ev.set() if rng.randrange(2) else ev.clear()
    else:
        key = f"p{writer}-{rng.randrange(4)}"
        if rng.randrange(2):
            d.pop(key, None)
        else:
            d.setdefault(key, payload(writer, seq, rng.randrange(8, 200)))


if __name__ == "__main__":
    main()
