#!/usr/bin/env python3
"""Drives the array_demo server (examples/array_demo/main.cc) from numpy and checks its answers.

Three jobs, each spread over the server's workers by concurrent requests (one connection per
request, so the kernel hands them to whichever worker accepts first):
  matmul      C = A @ B: A and B are uploaded as .npy, workers compute row stripes of C in place;
  mandelbrot  escape counts of an image, row stripes, compared exactly with numpy's own loop;
  hist        batches of samples binned by workers with per-element atomics; totals must match.
Results are read back with GET /v1/arrays/{name}/data?format=npy. Prints one line per job and a
verdict; exits 0 when every check passed, 1 when one failed, 2 when numpy is missing or the server
cannot be reached. Usage: demo.py --port PORT [--size 512 --stripes 16 ...] (see --help).
"""

import argparse
import concurrent.futures
import http.client
import io
import json
import sys
import time

try:
    import numpy as np
except ImportError:
    sys.stderr.write("array demo: numpy is missing; install it with:\n"
                     "  sudo apt-get install python3-numpy\n")
    sys.exit(2)

ARRAYS = ("demo.A", "demo.B", "demo.C", "demo.mandel", "demo.hist")
# The Mandelbrot region of main.cc: pixel (i, j) is (RE_MIN + j * (RE_SPAN / w),
# IM_MIN + i * (IM_SPAN / h)).
RE_MIN, RE_SPAN, IM_MIN, IM_SPAN = -2.2, 3.0, -1.2, 2.4


class ServerError(Exception):
    pass


class Client:
    def __init__(self, host, port, timeout):
        self.host, self.port, self.timeout = host, port, timeout

    def request(self, method, path, body=b"", ok=(200, 201)):
        """One request on a fresh connection; returns (status, worker pid, body bytes)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            data = response.read()
            pid = response.getheader("X-Worker-Pid", "?")
        finally:
            conn.close()
        if response.status not in ok:
            raise ServerError(f"{method} {path}: {response.status} {data.decode(errors='replace')}")
        return response.status, pid, data

    def upload(self, name, array):
        buffer = io.BytesIO()
        np.save(buffer, array)
        self.request("POST", f"/v1/arrays/{name}", buffer.getvalue())

    def create(self, name, dtype, shape):
        body = json.dumps({"dtype": dtype, "shape": list(shape)}).encode()
        self.request("POST", f"/v1/arrays/{name}", body)

    def fetch(self, name):
        _, _, data = self.request("GET", f"/v1/arrays/{name}/data?format=npy")
        return np.load(io.BytesIO(data))


def fan_out(client, paths, bodies, concurrency):
    """POSTs every path at once (bounded by `concurrency`); returns the answering worker pids."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(client.request, "POST", p, b) for p, b in zip(paths, bodies)]
        return [f.result()[1] for f in futures]


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def mandelbrot_numpy(height, width, max_iter):
    """The same arithmetic as main.cc's EscapeCount, vectorised: identical float64 operations."""
    cx = RE_MIN + np.arange(width, dtype=np.float64) * (RE_SPAN / width)
    cy = IM_MIN + np.arange(height, dtype=np.float64) * (IM_SPAN / height)
    cx, cy = np.broadcast_to(cx, (height, width)), np.broadcast_to(cy[:, None], (height, width))
    x = np.zeros((height, width))
    y = np.zeros((height, width))
    counts = np.zeros((height, width), dtype=np.int32)
    active = np.ones((height, width), dtype=bool)
    for _ in range(max_iter):
        x2, y2 = x * x, y * y
        active &= (x2 + y2) <= 4.0
        if not active.any():
            break
        y = np.where(active, 2.0 * x * y + cy, y)
        x = np.where(active, x2 - y2 + cx, x)
        counts += active
    return counts


def stripe_paths(job, stripes, query=""):
    return [f"/demo/{job}/{i}?stripes={stripes}{query}" for i in range(stripes)]


def report(job, ok, detail, server_s, numpy_s, pids):
    verdict = "OK  " if ok else "FAIL"
    print(f"{verdict} {job:<10} {detail}; server {server_s * 1000:.0f} ms on "
          f"{len(set(pids))} worker(s) {sorted(set(pids))}, numpy {numpy_s * 1000:.0f} ms")
    return ok


def run_matmul(client, args, rng):
    n = args.size
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    client.upload("demo.A", a)
    client.upload("demo.B", b)
    client.create("demo.C", "float64", (n, n))
    pids, server_s = timed(lambda: fan_out(
        client, stripe_paths("matmul", args.stripes), [b""] * args.stripes, args.concurrency))
    c = client.fetch("demo.C")
    expected, numpy_s = timed(lambda: a @ b)
    error = float(np.max(np.abs(c - expected)))
    ok = c.shape == (n, n) and np.allclose(c, expected, rtol=1e-10, atol=1e-10)
    return report("matmul", ok, f"C = A @ B ({n}x{n}, {args.stripes} stripes): max abs error "
                  f"{error:.2e} vs numpy", server_s, numpy_s, pids)


def run_mandelbrot(client, args):
    h, w = args.height, args.width
    client.create("demo.mandel", "int32", (h, w))
    paths = stripe_paths("mandelbrot", args.stripes, f"&max_iter={args.max_iter}")
    pids, server_s = timed(
        lambda: fan_out(client, paths, [b""] * args.stripes, args.concurrency))
    image = client.fetch("demo.mandel")
    expected, numpy_s = timed(lambda: mandelbrot_numpy(h, w, args.max_iter))
    equal = image.shape == expected.shape and np.array_equal(image, expected)
    wrong = int(np.count_nonzero(image != expected)) if image.shape == expected.shape else h * w
    if args.image:
        write_pgm(args.image, image, args.max_iter)
    return report("mandelbrot", equal, f"{w}x{h} image, max_iter {args.max_iter}: "
                  f"{'exactly equal' if equal else f'{wrong} pixels differ'}",
                  server_s, numpy_s, pids)


def run_histogram(client, args, rng):
    client.create("demo.hist", "int64", (args.bins,))
    samples = rng.beta(2.0, 5.0, size=args.samples)
    batches = np.array_split(samples, args.batches)
    bodies = []
    for batch in batches:
        buffer = io.BytesIO()
        np.save(buffer, batch)
        bodies.append(buffer.getvalue())
    pids, server_s = timed(lambda: fan_out(
        client, ["/demo/hist"] * len(bodies), bodies, args.concurrency))
    hist = client.fetch("demo.hist")
    bins = np.minimum((samples * args.bins).astype(np.int64), args.bins - 1)
    expected, numpy_s = timed(lambda: np.bincount(bins, minlength=args.bins))
    total = int(hist.sum())
    ok = total == args.samples and np.array_equal(hist, expected)
    return report("hist", ok, f"{args.samples} samples in {args.batches} batches, {args.bins} "
                  f"bins: total {total} == {args.samples} sent: {total == args.samples}, bins "
                  f"{'equal' if np.array_equal(hist, expected) else 'differ'}",
                  server_s, numpy_s, pids)


def write_pgm(path, image, max_iter):
    """The escape counts as a greyscale PGM (points in the set are black)."""
    shade = np.where(image >= max_iter, 0, 255 - (255 * np.sqrt(image / max_iter)).astype(int))
    with open(path, "wb") as out:
        out.write(f"P5 {image.shape[1]} {image.shape[0]} 255\n".encode())
        out.write(shade.astype(np.uint8).tobytes())


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--size", type=int, default=512, help="matmul: n of the n x n matrices")
    p.add_argument("--width", type=int, default=960, help="mandelbrot image width")
    p.add_argument("--height", type=int, default=640, help="mandelbrot image height")
    p.add_argument("--max-iter", type=int, default=256)
    p.add_argument("--stripes", type=int, default=32, help="stripe requests per job")
    p.add_argument("--samples", type=int, default=400000, help="histogram samples")
    p.add_argument("--batches", type=int, default=40, help="histogram requests")
    p.add_argument("--bins", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--image", help="also write the Mandelbrot image to this .pgm file")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    return p.parse_args()


def main():
    args = parse_args()
    client = Client(args.host, args.port, args.timeout)
    rng = np.random.default_rng(args.seed)
    try:
        for name in ARRAYS:  # A rerun against the same server starts from fresh arrays.
            client.request("DELETE", f"/v1/arrays/{name}", ok=(200, 204, 404))
        start = time.perf_counter()
        results = [run_matmul(client, args, rng), run_mandelbrot(client, args),
                   run_histogram(client, args, rng)]
    except (OSError, ServerError) as e:
        print(f"array demo: {e}", file=sys.stderr)
        return 2
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed "
          f"({time.perf_counter() - start:.2f} s in all, numpy {np.__version__})")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
