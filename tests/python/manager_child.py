"""A writer the Manager kill tests start and kill: dict sets of self-checking values, list
appends, `Value += 1` under the Lock, and Queue puts through shmstate.Manager proxies, one
acknowledgement line on stdout after each call returned ("d KEY SEQ", "l ITEM", "v VALUE",
"q ITEM"; list inserts at the front ack as "l ITEM"; item sets of a second, fixed-length list
ack as "s INDEX"). Usage: manager_child.py HEX_PICKLED_PROXIES WRITER SEED."""
import pickle
import random
import sys

import shmstate  # noqa: F401  (the proxies' classes)
from writer_child import payload


def main():
    d, lst, value, lock, q, slots = pickle.loads(bytes.fromhex(sys.argv[1]))
    writer, seed = int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    out = sys.stdout
    for seq in range(10**9):
        op = rng.randrange(6)
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


if __name__ == "__main__":
    main()
