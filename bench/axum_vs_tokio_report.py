#!/usr/bin/python3
"""The report of bench/axum-vs-tokio.sh: reads the client outputs and
snapshots it left in WORK, checks them against each other, prints the table
and writes the JSON file. Exits 1 if a check failed.

  axum_vs_tokio_report.py WORK OUT_JSON --seconds S --rounds R --backend B ...

Files in WORK, for CONTENDER in nginx, tokio, http, axum, round N and TEST in
rps (wrk) and rps-sl (shardnet-load): CONTENDER-rN-TEST.out (the client's
output, a JSON line last), CONTENDER-rN-TEST.{pre,post}.stat (/proc/stat's cpu
lines after a timestamp), and the server's counters: nginx's stub_status
(.stub), shardnet's /metrics (.metrics); CONTENDER-sizes.txt (the header and
body bytes of one response) and CONTENDER-headers.txt.
"""
import argparse
import json
import platform
import re
import statistics
import sys

from lab_report import check, cores, failures, last_json, mdelta, notes, read

CONTENDERS = ("nginx", "tokio", "http", "axum")
NAMES = {
    "nginx": "nginx (kernel TCP)",
    "tokio": "axum on tokio (kernel TCP)",
    "http": "shardnet built-in http",
    "axum": "axum on shardnet",
}
TESTS = {"rps": "wrk -t1", "rps-sl": "shardnet-load"}


def stub(path):
    accepts, _, requests = (int(x) for x in read(path).splitlines()[2].split())
    return accepts, requests


def one(w, c, r, t, conns):
    tag = f"{w}/{c}-r{r}-{t}"
    out = last_json(read(f"{tag}.out"))
    _, cpu = cores(f"{tag}.pre.stat", f"{tag}.post.stat")
    where = f"{c} round {r} {TESTS[t]}"
    if t == "rps":
        req, e = out["requests"], out["errors"]
        rate = req / (out["duration_us"] / 1e6)
        sock = e["connect"] + e["read"] + e["write"] + e["timeout"]
        check(e["status"] == 0, f"{where}: {e['status']} responses were not 2xx/3xx")
        check(sock <= max(10, req // 100), f"{where}: {sock} socket errors in {req} requests: {e}")
    else:
        req, rate = out["completed"], out["per_second"]
        for k in ("errors", "resets", "timeouts"):
            check(out[k] <= max(10, req // 100), f"{where}: shardnet-load counted {out[k]} {k}")
    check(req >= 1000, f"{where}: only {req} requests completed")
    # The server's own counts against the client's: it cannot have answered
    # fewer (the client misses at most one in flight per connection at the
    # stop), and it did not open many more connections than the client's.
    if c == "nginx":
        (a0, q0), (a1, q1) = stub(f"{tag}.pre.stub"), stub(f"{tag}.post.stub")
        check(q1 - q0 >= req * 0.98 - 10, f"{where}: nginx counted {q1 - q0} requests, the client {req}")
        check(a1 - a0 <= conns * 1.1 + 10, f"{where}: nginx accepted {a1 - a0} connections for {conns}")
    elif c in ("http", "axum"):
        tx = mdelta(tag, "shardnet_tcp_segments_total", direction="tx")
        opened = mdelta(tag, "shardnet_tcp_connections_opened_total", side="passive")
        # Every response leaves in one segment or more.
        check(tx >= req * 0.98 - 10, f"{where}: shardnet sent {tx:.0f} TCP segments for {req} responses")
        check(opened <= conns * 1.1 + 10, f"{where}: shardnet opened {opened:.0f} connections for {conns}")
    for core in ("cpu0", "cpu1"):
        if cpu[core]["steal_pct"] >= 10:
            notes.append(f"{where}: {cpu[core]['steal_pct']:.0f}% steal on {core} (the VM's host was busy)")
    return {"requests": req, "per_second": rate, "client_core0_busy_pct": cpu["cpu0"]["busy_pct"],
            "server_core1_busy_pct": cpu["cpu1"]["busy_pct"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("work")
    p.add_argument("out")
    for a in ("seconds", "rounds", "connections", "busy-before", "client-csum"):
        p.add_argument(f"--{a}", type=int, required=True)
    for a in ("load-before", "load-after"):
        p.add_argument(f"--{a}", type=float, required=True)
    p.add_argument("--backend", required=True)
    a = p.parse_args()
    w = a.work

    result = {"seconds": a.seconds, "rounds": a.rounds, "backend": a.backend, "connections": a.connections,
              "client_checksum_offload": bool(a.client_csum), "cpu_busy_pct_before": a.busy_before,
              "loadavg_before": a.load_before, "loadavg_after": a.load_after,
              "host": platform.node(), "kernel": platform.release(), "contenders": {}}
    for c in CONTENDERS:
        header, body = (int(x) for x in read(f"{w}/{c}-sizes.txt").split())
        entry = {"response_header_bytes": header, "response_body_bytes": body,
                 "response_headers": read(f"{w}/{c}-headers.txt").strip().splitlines(), "tests": {}}
        for t in TESTS:
            runs = [one(w, c, r, t, a.connections) for r in range(1, a.rounds + 1)]
            med = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
            entry["tests"][t] = {"median": med, "rounds": runs}
        result["contenders"][c] = entry

    def rate(c, t):
        return result["contenders"][c]["tests"][t]["median"]["per_second"]

    ratios = {}
    for t in TESTS:
        ratios[t] = {
            "axum_shardnet_over_axum_tokio": rate("axum", t) / rate("tokio", t),
            "axum_shardnet_over_builtin_http": rate("axum", t) / rate("http", t),
            **{f"{c}_over_nginx": rate(c, t) / rate("nginx", t) for c in ("tokio", "http", "axum")},
        }
    result["ratios"] = ratios
    # axum_tokio's own count at its exit: each round's two clients opened
    # `connections` each, twice (warm-up and run), plus three curls.
    for r in range(1, a.rounds + 1):
        m = re.search(r"accepted (\d+) connections", read(f"{w}/tokio-r{r}.log"))
        if check(m is not None, f"tokio round {r}: no count of accepted connections in its log"):
            n = int(m.group(1))
            result["contenders"]["tokio"][f"accepted_connections_r{r}"] = n
            check(4 * a.connections <= n <= 4 * a.connections * 1.1 + 10,
                  f"tokio round {r}: accepted {n} connections for 4 x {a.connections}")
    result["targets"] = {"axum_shardnet_over_axum_tokio": 2.5, "axum_shardnet_over_builtin_http": 0.5}
    result["failures"] = failures
    result["notes"] = notes

    print(f"\nHTTP keep-alive GET /, {a.connections} connections, one server core (1), the client on core 0; "
          f"{a.seconds} s per run, median of {a.rounds} round(s), {a.backend} backend for shardnet")
    print(f"{'server':<28} {'response bytes':>14} "
          + " ".join(f"{TESTS[t] + ' req/s':>20} {'client/server core':>19}" for t in TESTS))
    for c in CONTENDERS:
        e = result["contenders"][c]
        line = f"{NAMES[c]:<28} {e['response_header_bytes']:>6} + {e['response_body_bytes']:<5} "
        for t in TESTS:
            m = e["tests"][t]["median"]
            line += (f" {m['per_second']:>20,.0f} {m['client_core0_busy_pct']:>8.0f}% / "
                     f"{m['server_core1_busy_pct']:>4.0f}%")
        print(line)
    print()
    print(f"{'ratio':<36} " + " ".join(f"{TESTS[t]:>14}" for t in TESTS) + "   target")
    targets = {"axum_shardnet_over_axum_tokio": ">= 2.5", "axum_shardnet_over_builtin_http": ">= 0.5"}
    for k in ratios["rps"]:
        print(f"{k.replace('_', ' '):<36} " + " ".join(f"{ratios[t][k]:>14.2f}" for t in TESTS)
              + f"   {targets.get(k, '')}")
    for n in notes:
        print(f"NOTE: {n}")
    print("\nA wrk core near 100% busy means the client, not the server, set the rate. shardnet-load and"
          "\nshardnet's worker busy-poll: their cores always show 100%; shardnet-load drives about twice"
          "\nwhat wrk does from the same core.")
    if a.busy_before > 10:
        print(f"WARNING: the CPUs were {a.busy_before}% busy before the run: noisy")
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"written to {a.out}")
    if failures:
        print("\nCHECKS FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
