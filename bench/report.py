#!/usr/bin/env python3
"""Turns the raw files of one bench/run (a directory) into bench/results/<date>.md and a PNG chart.

Inputs, all optional (a missing file leaves its section empty, marked "not measured"):
  facts.tsv   key<TAB>value                        machine facts
  proxy.csv   Google Benchmark CSV                  single-threaded proxy operations
  mp.tsv      workload<TAB>procs<TAB>value<TAB>unit mp_driver (value < 0: the ops failed)
  refs.tsv    same format                           redis-benchmark, multiprocessing.Manager
  resp.tsv    resp|cpu|client<TAB>test<TAB>pipeline<TAB>redis<TAB>shmstate[<TAB>redis-io2]
                                                    bench/resp_compare
  http.tsv    target<TAB>workers<TAB>route<TAB>label<TAB>RESULT k=v...<TAB>cpu_us=N
  checks.tsv  target<TAB>workers<TAB>check<TAB>label<TAB>verdict
  python.tsv  python<TAB>impl<TAB>op<TAB>procs<TAB>value<TAB>unit   bench/python_inproc.py
"""
import csv
import os
import shutil
import subprocess
import sys

TARGETS_NOTE = "DESIGN.md \"Performance targets\""


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def load_values(path):
    """{(workload, procs): value} from mp.tsv / refs.tsv."""
    values = {}
    for row in read_tsv(path):
        if len(row) >= 3:
            try:
                values[(row[0], int(row[1]))] = float(row[2])
            except ValueError:
                pass
    return values


def load_http(path):
    rows = []
    for row in read_tsv(path):
        if len(row) < 6:
            continue
        fields = dict(kv.split("=", 1) for kv in (row[4].split()[1:] + [row[5]]))
        numbers = {k: float(v) for k, v in fields.items()}
        seconds = numbers["duration_us"] / 1e6
        rows.append({
            "target": row[0], "workers": int(row[1]), "route": row[2], "label": row[3],
            "rps": numbers["requests"] / seconds if seconds > 0 else 0.0,
            "p50": numbers["p50_us"] / 1e3, "p99": numbers["p99_us"] / 1e3,
            "p999": numbers["p999_us"] / 1e3,
            "cpu": numbers["cpu_us"] / numbers["requests"] if numbers["requests"] else 0.0,
            "errors": int(numbers["errors"] + numbers["non2xx"]),
        })
    return rows


def load_python(path):
    """{(impl, op): value} from python.tsv."""
    values = {}
    for row in read_tsv(path):
        if len(row) >= 6 and row[0] == "python":
            try:
                values[(row[1], row[2])] = float(row[4])
            except ValueError:
                pass
    return values


def human(value, unit="ops/s"):
    if value is None:
        return "not measured"
    if value < 0:
        return "FAILED"
    if unit == "B/s":
        return "%.2f GB/s" % (value / 1e9)
    if value >= 1e6:
        return "%.2fM %s" % (value / 1e6, unit)
    if value >= 1e3:
        return "%.1fk %s" % (value / 1e3, unit)
    return "%.0f %s" % (value, unit)


def ratio(a, b):
    if a is None or b is None or a < 0 or b <= 0:
        return None
    return a / b


class Targets:
    """Rows of the headline table: measured, reference, ratio, goal, verdict."""

    def __init__(self):
        self.rows = []
        self.pairs = []  # (what, reference_name, ratio, goal, met) of every measured add().

    def add(self, what, measured, reference_name, reference, goal, unit="ops/s", higher=True):
        r = ratio(measured, reference)
        if r is None:
            verdict = "not measured" if measured is None or reference is None else "FAILED"
        else:
            met = r >= goal if higher else r <= goal
            verdict = "met" if met else "**missed**"
            self.pairs.append((what, reference_name, r, goal, met))
        self.rows.append("| %s | %s | %s: %s | %s | %s %.4g× | %s |" % (
            what, human(measured, unit), reference_name, human(reference, unit),
            "-" if r is None else "%.3g×" % r, ">=" if higher else "<=", goal, verdict))

    def add_raw(self, what, measured, reference_text, r, goal_text, met):
        self.rows.append("| %s | %s | %s | %s | %s | %s |" % (
            what, measured, reference_text, "-" if r is None else "%.3g×" % r, goal_text,
            "not measured" if met is None else ("met" if met else "**missed**")))

    def markdown(self):
        return ["| target | shmstate | reference | ratio | goal | verdict |",
                "|---|---|---|---|---|---|"] + self.rows


def http_lookup(http, target, workers, route):
    for row in http:
        if (row["target"], row["workers"], row["route"]) == (target, workers, route):
            return row
    return None


def build_targets(mp, refs, http, checks):
    t = Targets()
    t.add("Counter add, 2 processes", mp.get(("counter add, one object", 2)), "raw fetch_add",
          mp.get(("raw fetch_add (shared mmap)", 2)), 0.8)
    for op, redis_op in (("get", "GET"), ("set", "SET")):
        shm_value = mp.get(("dict %s, one object" % op, 2))
        t.add("Dict %s, 2 processes" % op, shm_value, "Redis %s -P 16" % redis_op,
              refs.get(("redis %s P16" % redis_op, 1)), 20)
        t.add("Dict %s, 2 processes" % op, shm_value, "Manager dict %s" % op,
              refs.get(("manager dict %s" % op, 2)), 500)
    # Writes scale with processes (issue 11): 2 processes against 1 on the same workload.
    for workload in ("dict set, one object", "dict set, object per process",
                     "list push/pop, one object", "list push/pop, object per process"):
        t.add("%s%s: 2 processes" % (workload[0].upper(), workload[1:]), mp.get((workload, 2)),
              "1 process", mp.get((workload, 1)), 1.7)
    shm_set = mp.get(("dict set, one object", 2))
    t.add("Dict set, 2 processes (write goal)", shm_set, "Redis SET -P 16",
          refs.get(("redis SET P16", 1)), 8)
    t.add("Dict set, 2 processes (write goal)", shm_set, "Manager dict set",
          refs.get(("manager dict set", 2)), 100)
    for direction in ("out", "in"):
        t.add("Array slice copy %s (1 MiB), 2 processes" % direction,
              mp.get(("array slice copy %s (1 MiB), one object" % direction, 2)),
              "memcpy", mp.get(("memcpy %s shared mmap (1 MiB)" % (
                  "out of" if direction == "out" else "into"), 2)), 0.8, unit="B/s")
    for route, label in (("incr", "POST /v1/counters/x/incr"), ("get", "GET dict key"),
                         ("put", "PUT dict key")):
        shm_row = http_lookup(http, "shmstate", 2, route)
        ngx_row = http_lookup(http, "nginx-lua", 2, route)
        if shm_row is None or ngx_row is None:
            t.add_raw("HTTP %s, 2 workers" % label, "not measured", "nginx lua_shared_dict",
                      None, "", None)
            continue
        t.add("HTTP %s, 2 workers: requests/s" % label, shm_row["rps"], "nginx lua_shared_dict",
              ngx_row["rps"], 1.0, unit="req/s")
        t.add_raw("HTTP %s, 2 workers: p99" % label, "%.2f ms" % shm_row["p99"],
                  "nginx: %.2f ms" % ngx_row["p99"], ratio(shm_row["p99"], ngx_row["p99"]),
                  "<= 1×", shm_row["p99"] <= ngx_row["p99"])
        t.add_raw("HTTP %s, 2 workers: server CPU/request" % label, "%.1f µs" % shm_row["cpu"],
                  "nginx: %.1f µs" % ngx_row["cpu"], ratio(shm_row["cpu"], ngx_row["cpu"]),
                  "<= 1×", shm_row["cpu"] <= ngx_row["cpu"])
    wrong = [c for c in checks if len(c) >= 5 and c[0] == "shmstate" and c[4] != "ok"]
    t.add_raw("100 concurrent increments answer 1..100", "wrong" if wrong else (
        "ok" if any(c[0] == "shmstate" for c in checks) else "not measured"), "-", None,
        "exact", None if not checks else not wrong)
    return t


def python_targets(t, python, http, checks):
    """The Python module's goals (issue 9): in-process and the seed app over HTTP."""
    for op, what in (("incr", "counter incr"), ("get", "dict get"), ("set", "dict set")):
        t.add("Python %s, 2 processes" % what, python.get(("shmstate", op)), "redis-py",
              python.get(("redis-py", op)), 20)
        t.add("Python %s, 2 processes" % what, python.get(("shmstate", op)), "Manager",
              python.get(("Manager", op)), 100)
    t.add("Python array read 1 MiB into a fresh ndarray", python.get(("shmstate",
          "array read 1 MiB")), "numpy copyto", python.get(("numpy copyto", "array read 1 MiB")),
          0.8, unit="B/s")
    ours = http_lookup(http, "flask-shmstate", 2, "incr")
    for target, name, goal in (("flask-redis-gthread", "Flask + Redis", 1.8),
                               ("flask-global", "Flask global counter (wrong)", 0.9)):
        other = http_lookup(http, target, 2, "incr")
        t.add("Seed app incr (gunicorn gthread 2x4)", ours and ours["rps"], name,
              other and other["rps"], goal, unit="req/s")
    # Requests per second of server CPU (the apps' processes, and Redis for Flask + Redis): the
    # figure that holds when the machine's load moves between the runs.
    for target, name, goal in (("flask-redis-gthread", "Flask + Redis", 1.8),
                               ("flask-global", "Flask global counter (wrong)", 0.9)):
        other = http_lookup(http, target, 2, "incr")
        t.add("Seed app incr: requests per server CPU-second", ours and ours["cpu"] and
              1e6 / ours["cpu"], name, other and other["cpu"] and 1e6 / other["cpu"], goal,
              unit="req/CPU-s")
    verdict = [c[4] for c in checks if len(c) >= 5 and c[0] == "flask-shmstate"]
    t.add_raw("Seed app: 100 concurrent increments answer 1..100",
              verdict[0] if verdict else "not measured", "-", None, "exact",
              None if not verdict else verdict[0] == "ok")


def python_table(python):
    if not python:
        return ["not measured"]
    out = ["| operation | shmstate module | redis-py | multiprocessing.Manager | × redis-py | "
           "× Manager |", "|---|---|---|---|---|---|"]
    for op in ("incr", "get", "set"):
        s, r, m = (python.get((impl, op)) for impl in ("shmstate", "redis-py", "Manager"))
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            op, human(s), human(r), human(m),
            "-" if ratio(s, r) is None else "%.3g×" % ratio(s, r),
            "-" if ratio(s, m) is None else "%.3g×" % ratio(s, m)))
    a, c, f = (python.get((impl, "array read 1 MiB"))
               for impl in ("shmstate", "numpy copyto", "numpy copy (fresh)"))
    out += ["", "| array read 1 MiB | shmstate `a.to_numpy()` | numpy `copyto` from "
            "shared_memory | numpy `.copy()` (fresh) | × copyto | × fresh |",
            "|---|---|---|---|---|---|",
            "| float64 | %s | %s | %s | %s | %s |" % (
                human(a, "B/s"), human(c, "B/s"), human(f, "B/s"),
                "-" if ratio(a, c) is None else "%.3g×" % ratio(a, c),
                "-" if ratio(a, f) is None else "%.3g×" % ratio(a, f))]
    return out


def proxy_table(path):
    if not os.path.exists(path):
        return ["not measured"]
    with open(path) as f:
        lines = [line for line in f if line.startswith("name,") or line.startswith('"BM_')]
    out = ["| operation | CPU time/op | throughput |", "|---|---|---|"]
    for row in csv.DictReader(lines):
        if row.get("error_occurred") == "true":
            out.append("| %s | FAILED: %s | |" % (row["name"], row.get("error_message", "")))
            continue
        extra = ""
        if row.get("bytes_per_second"):
            extra = "%.2f GB/s" % (float(row["bytes_per_second"]) / 1e9)
        elif row.get("items_per_second"):
            extra = "%.2fM items/s" % (float(row["items_per_second"]) / 1e6)
        out.append("| %s | %.1f %s | %s |" % (row["name"], float(row["cpu_time"]),
                                              row["time_unit"], extra))
    return out


REFERENCE_OF = {  # mp_driver workload -> the reference it is divided by.
    "pthread mutex (process-shared)": "raw fetch_add (shared mmap)",
    "counter add": "raw fetch_add (shared mmap)",
    "array slice copy out": "memcpy out of shared mmap (1 MiB)",
    "array slice copy in": "memcpy into shared mmap (1 MiB)",
}


def mp_table(path, refs):
    rows = read_tsv(path)
    if not rows:
        return ["not measured"]
    values = load_values(path)
    out = ["| workload | procs | result | vs reference | vs Redis -P 16 | vs Manager |",
           "|---|---|---|---|---|---|"]
    for row in rows:
        name, procs, unit = row[0], int(row[1]), row[3]
        value = float(row[2])
        reference = next((r for prefix, r in REFERENCE_OF.items() if name.startswith(prefix)),
                         None)
        if reference is None and name.startswith(("dict", "list")):
            reference = "pthread mutex (process-shared)"
        r = ratio(value, values.get((reference, procs))) if reference else None
        vs_ref = "-" if r is None else "%.3g× %s" % (r, reference.split(" (")[0])
        vs_redis = vs_manager = "-"
        if name.startswith("dict get") or name.startswith("dict set"):
            op = name.split()[1]
            rr = ratio(value, refs.get(("redis %s P16" % op.upper(), 1)))
            rm = ratio(value, refs.get(("manager dict %s" % op, 2)))
            vs_redis = "-" if rr is None else "%.3g×" % rr
            vs_manager = "-" if rm is None else "%.3g×" % rm
        out.append("| %s | %d | %s | %s | %s | %s |" % (name, procs, human(value, unit), vs_ref,
                                                        vs_redis, vs_manager))
    return out


def http_table(http, checks):
    if not http:
        return ["not measured"]
    verdicts = {(c[0], int(c[1])): c[4] for c in checks if len(c) >= 5}
    out = ["| server | workers | route | requests/s | p50 | p99 | p99.9 | server CPU/req | "
           "errors | 100 concurrent incr |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in http:
        out.append("| %s | %d | %s | %.0f | %.2f ms | %.2f ms | %.2f ms | %.1f µs | %d | %s |" % (
            r["target"], r["workers"], r["label"], r["rps"], r["p50"], r["p99"], r["p999"],
            r["cpu"], r["errors"], verdicts.get((r["target"], r["workers"]), "not run")))
    return out


def short_label(what, reference_name, goal):
    """'Dict get, 2 processes', 'Redis GET -P 16', 20 -> 'dict get\nvs Redis -P16\ngoal 20×'."""
    what = what.replace(", 2 processes", "").replace(", 2 workers: requests/s", "")
    what = what.replace("HTTP POST /v1/counters/x/incr", "HTTP incr").replace(
        "HTTP GET dict key", "HTTP dict get").replace("Array slice copy", "array copy")
    what = what.replace(" (1 MiB)", "").replace("Counter", "counter").replace("Dict", "dict")
    reference_name = reference_name.replace("nginx lua_shared_dict", "nginx lua").replace(
        "Manager dict get", "mp.Manager").replace("Manager dict set", "mp.Manager").replace(
        "raw fetch_add", "fetch_add").replace(" GET -P 16", " -P16").replace(" SET -P 16", " -P16")
    return "%s\nvs %s\ngoal %.3g×" % (what, reference_name, goal)


def chart(pairs, http, png):
    """The picture a reader looks at first. Left: every target as two bars side by side, the
    baseline measured in the same run (1x) and shmstate (its ratio to it), log scale, green when
    the goal is met and red when missed. Right: HTTP requests/s and server CPU per request for
    each server (the most workers measured)."""
    if not pairs or shutil.which("gnuplot") is None:
        return False
    files = {"pairs": png[:-4] + ".pairs.dat"}
    with open(files["pairs"], "w") as f:
        for what, reference_name, r, goal, met in pairs:
            label = short_label(what, reference_name, goal).replace('"', "'")
            f.write('"%s" 1 %.6g %s "%.3g×"\n' % (
                label.replace("\n", "\\n"), r, "0x2ca02c" if met else "0xd62728", r))
    workers = max((r["workers"] for r in http), default=0)
    servers = [s for s in ("shmstate", "nginx-lua", "flask-redis")
               if any(r["target"] == s for r in http)]
    routes = [r for r in ("incr", "get", "put") if any(x["route"] == r for x in http)]
    for key in ("rps", "cpu"):
        files[key] = png[:-4] + ".%s.dat" % key
        with open(files[key], "w") as f:
            f.write("route " + " ".join(servers) + "\n")
            for route in routes:
                cells = []
                for s in servers:
                    row = http_lookup(http, s, workers, route)
                    cells.append("%.1f" % row[key] if row else "NaN")
                f.write("%s %s\n" % (route, " ".join(cells)))
    script = """set terminal pngcairo size 1500,680 noenhanced font ',10'
set output '{png}'
set multiplot title 'shmstate against the baselines measured in the same run, same machine'
set style fill solid 0.85 border -1
set grid ytics
set size 0.62,0.94
set origin 0,0
set bmargin 5
set title 'shmstate / baseline (log scale; the baseline is 1×)'
set logscale y
set yrange [0.1:3000]
set xrange [-0.6:{last}+0.6]
set xtics rotate by 0 font ',8'
set key top left
set boxwidth 0.36
plot '{pairs}' using ($0-0.19):2:xtic(1) with boxes lc rgb '#9aa0a6' title 'baseline', \\
     '' using ($0+0.19):3:4 with boxes lc rgb variable title 'shmstate (green: goal met, red: missed)', \\
     '' using ($0+0.19):($3*1.35):5 with labels font ',9' notitle
unset logscale y
set bmargin 3
set xrange [*:*]
set xtics font ',9'
set boxwidth 0.9 relative
set style data histograms
set style histogram clustered gap 1
set key top left
""".format(png=png, pairs=files["pairs"], last=len(pairs) - 1)
    if servers and routes:
        script += """set size 0.38,0.47
set origin 0.62,0.47
set title 'HTTP requests/s, wrk -t2 -c64, {workers} worker(s)'
set yrange [0:*]
plot for [i=2:{n}] '{rps}' using i:xtic(1) title columnheader(i)
set origin 0.62,0
set title 'server CPU time per request, µs (log)'
set logscale y
set yrange [1:*]
plot for [i=2:{n}] '{cpu}' using i:xtic(1) title columnheader(i)
""".format(workers=workers, n=len(servers) + 1, rps=files["rps"], cpu=files["cpu"])
    script += "unset multiplot\n"
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True, timeout=30,
                       capture_output=True)
    except (subprocess.SubprocessError, OSError) as e:
        print("report.py: gnuplot failed: %s" % getattr(e, "stderr", e), file=sys.stderr)
        return False
    finally:
        for path in files.values():
            if os.path.exists(path):
                os.remove(path)
    return os.path.exists(png)


def resp_table(path):
    """redis-benchmark against redis-server, shmstate's RESP listener and (when measured)
    redis-server --io-threads 2, as ratios; then the server CPU per command of each test against
    the goal (shmstate <= 1.0x redis-server's at -P 1, <= 0.7x at -P 16) and how busy
    redis-benchmark's one thread was (near 1.0 it, not the server, set the pace)."""
    rows = [r + [""] * (6 - len(r)) for r in read_tsv(path) if len(r) in (5, 6)]
    if not rows:
        return ["not measured"]
    io2 = any(r[5] for r in rows)
    lines = ["| test | -P | redis-server | shmstate (2 workers) | ratio | goal |" +
             (" redis-server --io-threads 2 | shmstate / io-threads |" if io2 else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if io2 else "")]
    client = {(r[1], r[2]): r[3:] for r in rows if r[0] == "client"}
    cpu_lines = ["", "| server CPU per command (us) | -P | redis-server | shmstate | ratio | "
                 "goal |" + (" redis --io-threads 2 | shmstate / io-threads |" if io2 else "") +
                 " redis-benchmark busy (Redis run / shmstate run%s) |" %
                 (" / io-threads run" if io2 else ""),
                 "|---|---|---|---|---|---|" + ("---|---|" if io2 else "") + "---|"]

    def io2_cells(shm, other):
        if not io2:
            return ""
        other = float(other) if other else 0.0
        return " %s | %s |" % ("%.3f" % other if other else "",
                               "%.2fx" % ratio(shm, other) if other else "")

    for kind, test, pipeline, redis, shm, other in rows:
        redis, shm = float(redis), float(shm)
        if kind == "cpu":
            want = 0.7 if pipeline == "16" else 1.0
            busy = client.get((test, pipeline))
            cpu_lines.append("| %s | %s | %.3f | %.3f | %.2fx | <= %.1fx %s |%s %s |" % (
                test, pipeline, redis, shm, ratio(shm, redis) or 0, want,
                "met" if redis > 0 and shm <= want * redis else "NOT met",
                io2_cells(shm, other),
                " / ".join(b for b in busy if b) + " core" if busy else ""))
            continue
        if kind != "resp":
            continue
        want = 2.0 if pipeline == "16" and test in ("GET", "INCR") else 1.5
        met = redis > 0 and shm / redis >= want
        cells = ""
        if io2:
            cells = " %s | %s |" % (human(float(other)) if other else "",
                                    "%.2fx" % ratio(shm, float(other)) if other else "")
        lines.append("| %s | %s | %s | %s | %.2fx | >= %.1fx %s |%s" %
                     (test, pipeline, human(redis), human(shm), ratio(shm, redis) or 0, want,
                      "met" if met else "NOT met", cells))
    return lines + cpu_lines


def main():
    src, out_md = sys.argv[1], sys.argv[2]
    facts = read_tsv(os.path.join(src, "facts.tsv"))
    mp = load_values(os.path.join(src, "mp.tsv"))
    refs = load_values(os.path.join(src, "refs.tsv"))
    http = load_http(os.path.join(src, "http.tsv"))
    checks = read_tsv(os.path.join(src, "checks.tsv"))
    python = load_python(os.path.join(src, "python.tsv"))
    png = out_md[:-3] + ".png" if out_md.endswith(".md") else out_md + ".png"
    targets = build_targets(mp, refs, http, checks)
    python_targets(targets, python, http, checks)
    has_chart = chart(targets.pairs, http, png)

    lines = ["# shmstate benchmark results", "",
             "Produced by `bench/run`; every figure below was measured in the same run on this "
             "machine. Goals from %s. See `docs/benchmarks.md` for what each row measures and "
             "what limits the missed targets." % TARGETS_NOTE, "",
             "| fact | value |", "|---|---|"]
    lines += ["| %s | %s |" % (k, v) for k, v in (f for f in facts if len(f) == 2)]
    lines += ["", "## Targets", ""]
    if has_chart:
        lines += ["![shmstate against each baseline, and HTTP requests/s and CPU per request](%s)"
                  % os.path.basename(png), ""]
    lines += targets.markdown()
    lines += ["", "## Processes on shared objects (mp_driver)", "",
              "One object: every process hammers the same object; object per process: each its "
              "own. Dict: 1024 keys of 16 bytes, 64-byte values, random keys; list: 64-byte "
              "items, a push then a pop; array: a 1 MiB float64 array copied whole.", ""]
    lines += mp_table(os.path.join(src, "mp.tsv"), refs)
    lines += ["", "## References: Redis and multiprocessing.Manager", "",
              "redis-benchmark `-t get,set -d 64 -r 100000` (50 clients) with and without "
              "`-P 16`; Manager: bench/manager_dict.py, 2 processes, same keys and values.", "",
              "| reference | procs | ops/s |", "|---|---|---|"]
    lines += ["| %s | %d | %s |" % (k[0], k[1], human(v)) for k, v in refs.items()] or [
        "not measured"]
    lines += ["", "## Redis protocol (redis-benchmark -c 50 -r 100000)", "",
              "bench/resp_compare: the same redis-benchmark tests against redis-server, "
              "against `shmstate serve --workers 2 --resp-listen` and against `redis-server "
              "--io-threads 2`, in one run.", ""]
    lines += resp_table(os.path.join(src, "resp.tsv"))
    lines += ["", "## HTTP (wrk -t2 -c64 --latency)", "",
              "Server CPU per request: utime+stime of the server's processes (and, for "
              "Flask, its Redis) before and after each wrk run, divided by the requests.", ""]
    lines += http_table(http, checks)
    lines += ["", "## Python module in-process (bench/python_inproc.py)", "",
              "2 forked Python processes at once, counter incr and dict get/set (1024 keys of 16 "
              "bytes, 64-byte values, random keys), through the module, redis-py to a local "
              "redis-server, and a multiprocessing.Manager (dict proxy; a registered counter "
              "object for incr). HTTP rows flask-*: the seed app (examples/flask_counter), "
              "Flask + Redis and the global counter, gunicorn gthread 2 workers x 4 threads.", ""]
    lines += python_table(python)
    lines += ["", "## Single-threaded proxy operations (proxy_bench)", ""]
    lines += proxy_table(os.path.join(src, "proxy.csv"))
    calls = os.path.join(src, "py_calls.txt")
    if os.path.exists(calls) and os.path.getsize(calls) > 0:
        lines += ["", "## Python calls against a C floor (bench/py_calls.py)", "",
                  "ns per call from one process and ops/s from two (separate objects), against "
                  "bench/pyfloor built in the same run; medians of alternating rounds.", "", "```"]
        lines += open(calls).read().rstrip("\n").split("\n") + ["```"]
    manager = os.path.join(src, "manager_compare.md")
    if os.path.exists(manager) and os.path.getsize(manager) > 0:
        lines += ["", "## shmstate.Manager against multiprocessing.Manager (bench/manager_compare.py)",
                  "", "2 forked processes on one object per row, each manager in turn; memory "
                  "per object over 1000 objects. See docs/manager.md.", ""]
        lines += open(manager).read().rstrip("\n").split("\n")
    with open(out_md, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
