"""A process the transaction tests start (and kill): transfers between the 16 accounts of the
dict "acct" with Client.transaction, or reads their total in transactions.

    tx_child.py transfer URL WRITER SEED [LIMIT]   one line "t WRITER:SEQ" after each commit, and
                                                   "g N" after a commit in a segment generation it
                                                   had not committed in before (shm servers)
    tx_child.py read URL TOTAL [LIMIT]             "r N" every 100 reads; "BAD ..." and exit 3
                                                   when a transaction saw another total

URL is a shm server's name or a redis:// URL. A transfer moves a random amount from one account to
another and records it in the dict "txlog" under "WRITER:SEQ" ("FROM TO AMOUNT"), all in one
transaction, so the balances can be recomputed from the log afterwards.
"""
import random
import sys

import shmstate

ACCOUNTS = [f"a{i:02d}" for i in range(16)]
INITIAL = 1000


def client(url):
    return shmstate.connect(url) if "://" in url else shmstate.attach(url)


def transfer(tx, source, target, amount, ref):
    acct = tx.dict("acct")
    have = int(acct[source])
    amount = min(amount, have)  # Balances stay >= 0.
    acct[source] = b"%d" % (have - amount)
    acct[target] = b"%d" % (int(acct[target]) + amount)
    tx.dict("txlog")[ref] = f"{source} {target} {amount}".encode()
    return amount


def total(tx):
    acct = tx.dict("acct")
    return sum(int(acct[a]) for a in ACCOUNTS)


def run_transfers(url, writer, seed, limit):
    st = client(url)
    rng = random.Random(seed)
    out = sys.stdout
    generation = None
    for seq in range(limit):
        source, target = rng.sample(ACCOUNTS, 2)
        ref = f"{writer}:{seq}"
        st.transaction(transfer, source, target, rng.randrange(1, 200), ref, retries=10000)
        out.write(f"t {ref}\n")
        if getattr(st, "generation", None) != generation:  # A redis:// client has none.
            generation = st.generation
            out.write(f"g {generation}\n")
        out.flush()


def run_reader(url, expected, limit):
    st = client(url)
    for n in range(1, limit + 1):
        seen = st.transaction(total, retries=10000)
        if seen != expected:
            print(f"BAD total {seen} != {expected} at read {n}", flush=True)
            sys.exit(3)
        if n % 100 == 0:
            print(f"r {n}", flush=True)


def main():
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "transfer":
        limit = int(sys.argv[5]) if len(sys.argv) > 5 else 10**9
        run_transfers(url, int(sys.argv[3]), int(sys.argv[4]), limit)
    else:
        limit = int(sys.argv[4]) if len(sys.argv) > 4 else 10**9
        run_reader(url, int(sys.argv[3]), limit)


if __name__ == "__main__":
    main()
