#!/usr/bin/env python3
"""Fires N concurrent requests at a shmstate server and checks the numbering is exact.

Each request increments one counter (POST /v1/counters/<name>/incr by default, or GET /hits of
the hit_counter example with --hits). The answers must be exactly 1..N (no duplicate, no gap),
and must come from more than one worker process (X-Worker-Pid). The kernel does not promise to
spread one burst over the workers (on a loaded machine one worker may accept every connection),
so when a burst reaches a single worker, up to 4 more bursts follow, each of which must be exactly
numbered too (N+1..2N, ...). Prints a one-line verdict and exits 0 when both hold, 1 otherwise.
Python 3 standard library only.

  ./build/shmstate serve --workers 4 &
  python3 examples/clients/concurrent_hits.py --port 8080
"""
import argparse
import http.client
import json
import sys
import threading
import time


def one_request(host, port, path, method, timeout, barrier, results, index):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.connect()  # Connect first, so every request is in flight at the same moment.
        barrier.wait(timeout)
        conn.request(method, path, body=b"" if method == "POST" else None)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            results[index] = ("error", f"HTTP {response.status}: {body[:200]!r}")
            return
        document = json.loads(body)
        number = document.get("value", document.get("hits"))
        results[index] = (int(number), response.getheader("X-Worker-Pid", "?"))
    except Exception as error:  # Reported in the verdict, never raised.
        results[index] = ("error", f"{type(error).__name__}: {error}")
    finally:
        conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--requests", type=int, default=100, help="concurrent requests (1-1000)")
    parser.add_argument("--counter", default=f"concurrent-hits-{int(time.time() * 1000)}",
                        help="counter name (default: a fresh one per run, so answers start at 1)")
    parser.add_argument("--hits", action="store_true",
                        help="use GET /hits of examples/hit_counter (needs a fresh server)")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    if not 1 <= args.requests <= 1000:
        print("FAIL: --requests must be from 1 to 1000")
        return 1

    path, method = ("/hits", "GET") if args.hits else (f"/v1/counters/{args.counter}/incr", "POST")
    workers = set()
    for burst in range(5):
        results = fire_burst(args, path, method)
        errors = [r[1] for r in results if r is None or r[0] == "error"]
        if errors:
            print(f"FAIL: {len(errors)} of {args.requests} requests failed, first: {errors[0]}")
            return 1
        numbers = sorted(r[0] for r in results)
        first = burst * args.requests + 1
        last = first + args.requests - 1
        if numbers != list(range(first, last + 1)):
            duplicates = len(numbers) - len(set(numbers))
            print(f"FAIL: answers are not exactly {first}..{last} "
                  f"({duplicates} duplicates, range {numbers[0]}..{numbers[-1]})")
            return 1
        workers |= {r[1] for r in results}
        if len(workers) >= 2:
            break
    if len(workers) < 2:
        print(f"FAIL: all answers of {burst + 1} bursts came from one worker (pid {workers.pop()})")
        return 1
    extra = f" (over {burst + 1} bursts, each exact)" if burst else ""
    print(f"OK: {args.requests} concurrent requests got exactly 1..{args.requests} "
          f"from {len(workers)} workers{extra}")
    return 0


def fire_burst(args, path, method):
    """Sends args.requests requests at once, each on its own connection; returns the answers."""
    results = [None] * args.requests
    barrier = threading.Barrier(args.requests)
    threads = [threading.Thread(target=one_request,
                                args=(args.host, args.port, path, method, args.timeout, barrier,
                                      results, i))
               for i in range(args.requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results

if __name__ == "__main__":
    sys.exit(main())
