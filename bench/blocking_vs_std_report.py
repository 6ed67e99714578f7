#!/usr/bin/python3
"""The report of bench/blocking-vs-std.sh: reads the client outputs and
/proc/stat snapshots it left in WORK, prints the table and the derived costs
and writes the JSON file. Exits 1 if a check failed.

  blocking_vs_std_report.py WORK OUT_JSON --seconds S --rounds R --backend B ...

Files in WORK, for CONTENDER in std, blocking, round N and TEST in small,
big, latency: CONTENDER-rN-TEST.out (shardnet-load's JSON line) and
CONTENDER-rN-TEST.{pre,post}.stat.

Derived costs, from the server core's CPU (core 1: the server's threads, and
its stack: shardnet's worker, or the kernel's TCP and softirqs):
  cpu_per_request_us = busy fraction of core 1 / requests per second, from
    the small messages (64 B: the per-call cost dominates);
  cpu_per_kib_us = (cpu per request, big - cpu per request, small) /
    ((BIG - 64) / 1024): the slope per KiB echoed (in and out);
and blocking's extra cost = blocking's figure - std's.
"""
import argparse
import json
import platform
import statistics
import sys

from lab_report import check, cores, failures, last_json, notes, read

CONTENDERS = ("std", "blocking")
NAMES = {
    "std": "echo on std::net (kernel TCP)",
    "blocking": "echo on shardnet::net::blocking",
}
TESTS = ("small", "big", "latency")


def one(w, c, r, t):
    tag = f"{w}/{c}-r{r}-{t}"
    out = last_json(read(f"{tag}.out"))
    _, cpu = cores(f"{tag}.pre.stat", f"{tag}.post.stat")
    where = f"{c} round {r} {t}"
    req, rate = out["completed"], out["per_second"]
    for k in ("errors", "resets", "timeouts"):
        check(out[k] == 0, f"{where}: shardnet-load counted {out[k]} {k}")
    check(req > 0, f"{where}: no request completed")
    busy = cpu.get("cpu1", {}).get("busy_pct", 0.0)
    client = cpu.get("cpu0", {}).get("busy_pct", 0.0)
    return {
        "per_second": rate,
        "completed": req,
        "server_core_busy_pct": busy,
        "client_core_busy_pct": client,
        "p50_us": out["latency_us"]["p50"],
        "p99_us": out["latency_us"]["p99"],
        "cpu_per_request_us": (busy / 100) / rate * 1e6 if rate > 0 else None,
    }


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("out")
    for name in ("seconds", "rounds", "connections", "big"):
        ap.add_argument(f"--{name}", type=int, required=True)
    for name in ("backend", "idle", "load-before", "load-after", "busy-before", "client-csum"):
        ap.add_argument(f"--{name}", required=True)
    a = ap.parse_args()

    runs = {c: {t: [one(a.work, c, r, t) for r in range(1, a.rounds + 1)] for t in TESTS}
            for c in CONTENDERS}
    med = {c: {t: {k: median([x[k] for x in runs[c][t]]) for k in runs[c][t][0]} for t in TESTS}
           for c in CONTENDERS}

    def ratio(x, y):
        return x / y if x and y else None

    derived = {}
    for c in CONTENDERS:
        small = med[c]["small"]["cpu_per_request_us"]
        big = med[c]["big"]["cpu_per_request_us"]
        per_kib = (big - small) / ((a.big - 64) / 1024) if small is not None and big is not None else None
        derived[c] = {"cpu_per_request_us": small, "cpu_per_kib_us": per_kib}
    extra = {k: (derived["blocking"][k] - derived["std"][k])
             if derived["blocking"][k] is not None and derived["std"][k] is not None else None
             for k in ("cpu_per_request_us", "cpu_per_kib_us")}

    f = lambda v, spec=".1f": "-" if v is None else format(v, spec)
    print()
    print(f"blocking sockets vs std::net, echo, {a.backend}, worker idle {a.idle}, "
          f"{a.rounds} round(s) of {a.seconds} s, medians; server on core 1, shardnet-load on core 0")
    print(f"{'test':<34}{'std req/s':>12}{'blocking':>12}{'ratio':>7}"
          f"{'core1 std%':>11}{'core1 blk%':>11}{'core0 std%':>11}{'core0 blk%':>11}")
    labels = {"small": f"64 B, {a.connections} conns", "big": f"{a.big} B, {a.connections} conns",
              "latency": "64 B, 1 conn"}
    for t in TESTS:
        s, b = med["std"][t], med["blocking"][t]
        print(f"{labels[t]:<34}{f(s['per_second'], '.0f'):>12}{f(b['per_second'], '.0f'):>12}"
              f"{f(ratio(b['per_second'], s['per_second']), '.2f'):>7}"
              f"{f(s['server_core_busy_pct']):>11}{f(b['server_core_busy_pct']):>11}"
              f"{f(s['client_core_busy_pct']):>11}{f(b['client_core_busy_pct']):>11}")
    s, b = med["std"]["latency"], med["blocking"]["latency"]
    print(f"latency, 1 connection (us):  std p50 {f(s['p50_us'])} p99 {f(s['p99_us'])};  "
          f"blocking p50 {f(b['p50_us'])} p99 {f(b['p99_us'])}")
    print("server core CPU:              "
          f"std {f(derived['std']['cpu_per_request_us'], '.2f')} us/request + "
          f"{f(derived['std']['cpu_per_kib_us'], '.3f')} us/KiB;  "
          f"blocking {f(derived['blocking']['cpu_per_request_us'], '.2f')} us/request + "
          f"{f(derived['blocking']['cpu_per_kib_us'], '.3f')} us/KiB")
    print(f"blocking adds:                {f(extra['cpu_per_request_us'], '.2f')} us/request "
          f"(a read and a write call each), {f(extra['cpu_per_kib_us'], '.3f')} us/KiB echoed")
    print("(a request is SIZE bytes in and SIZE out; near 100% on core 0 means the client limits)")
    if float(a.busy_before) > 10:
        notes.append(f"the CPUs were {a.busy_before}% busy before the run: numbers are noisy")
    for n in notes:
        print("note:", n)
    for x in failures:
        print("FAILED:", x)
    result = {
        "bench": "blocking-vs-std",
        "seconds": a.seconds, "rounds": a.rounds, "backend": a.backend, "idle": a.idle,
        "connections": a.connections, "big": a.big, "client_csum": a.client_csum,
        "load_before": a.load_before, "load_after": a.load_after, "busy_before": a.busy_before,
        "kernel": platform.release(),
        "medians": med, "derived": derived, "blocking_extra": extra, "runs": runs,
        "notes": notes, "failures": failures,
    }
    with open(a.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {a.out}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
