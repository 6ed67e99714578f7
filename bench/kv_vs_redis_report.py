"""The report of bench/kv-vs-redis.sh: reads the clients' output in WORK
(redis-benchmark's CSV, shardnet-load's JSON, /proc/stat snapshots around
each run), prints the table and writes the JSON file.

    kv_vs_redis_report.py WORK OUT ROUNDS BACKEND REQUESTS LOAD_SECONDS BUSY_BEFORE CLIENT_CSUM

Per test (SET/GET, -P 1/16) and client (redis-benchmark, shardnet-load):
each server's requests/s (median over the rounds), the client's and the
server's core utilisation, the requests/s per server core (each server has
exactly one core, so this is its requests/s; and per busy server core: the
requests/s over the server core's utilisation, which only differs from it
for redis-server, as shardnet's worker busy-polls) and kv/redis.
"""
import csv
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lab_report as lab  # noqa: E402

SERVERS = ("redis", "kv")
CLIENTS = ("redis-benchmark", "shardnet-load")
# Each server runs on one core (core 1).
SERVER_CORES = 1


def redis_benchmark_rps(tag, who, test, p):
    with open(f"{tag}.csv") as f:
        data = [row for row in csv.reader(f) if row and row[0] != "test"]
    if not lab.check(len(data) == 1, f"{who} {test} -P {p}: redis-benchmark printed {data!r}"):
        return 0.0
    return float(data[0][1])


def shardnet_load_rps(tag, who, test, p):
    with open(f"{tag}.sl.json") as f:
        r = json.load(f)
    what = f"{who} {test} --pipeline {p}: shardnet-load"
    lab.check(r["proto"] == f"redis-{test}" and r["pipeline"] == p, f"{what} ran {r['proto']} --pipeline {r['pipeline']}")
    lab.check(r["completed"] > 0, f"{what} completed no request")
    for key in ("errors", "error_replies", "resets"):
        lab.check(r[key] == 0, f"{what} counted {r[key]} {key} (last errors: {r['last_errors']})")
    return float(r["per_second"])


def main():
    work, out, rounds, backend, requests, load_seconds, busy_before, client_csum = sys.argv[1:]
    rounds = int(rounds)
    result = {"backend": backend, "rounds": rounds, "connections": 50, "keyspace": 100000,
              "value_bytes": 3, "server_cores": SERVER_CORES,
              "redis_benchmark_requests": int(requests), "shardnet_load_seconds": float(load_seconds),
              "busy_before_pct": float(busy_before), "client_csum": int(client_csum), "tests": {}}
    for test in ("set", "get"):
        for p in (1, 16):
            per_client = {}
            for client in CLIENTS:
                entry = {}
                for who in SERVERS:
                    rps, cli, srv = [], [], []
                    for r in range(1, rounds + 1):
                        tag = f"{work}/{who}-r{r}-{test}-p{p}"
                        if client == "redis-benchmark":
                            rps.append(redis_benchmark_rps(tag, who, test, p))
                        else:
                            rps.append(shardnet_load_rps(tag, who, test, p))
                            tag += ".sl"
                        _, cores = lab.cores(f"{tag}.pre.stat", f"{tag}.post.stat")
                        cli.append(cores["cpu0"]["busy_pct"])
                        srv.append(cores["cpu1"]["busy_pct"])
                    server_pct = statistics.median(srv)
                    median = statistics.median(rps)
                    entry[who] = {"rps": median, "rps_rounds": rps,
                                  "rps_per_server_core": median / SERVER_CORES,
                                  "rps_per_busy_server_core": median / max(server_pct / 100, 1e-9),
                                  "client_core_pct": statistics.median(cli),
                                  "server_core_pct": server_pct}
                redis = entry["redis"]
                entry["ratio"] = entry["kv"]["rps"] / redis["rps"] if redis["rps"] else None
                entry["ratio_per_busy_server_core"] = (
                    entry["kv"]["rps_per_busy_server_core"] / redis["rps_per_busy_server_core"]
                    if redis["rps"] else None)
                per_client[client] = entry
            result["tests"][f"{test.upper()} -P {p}"] = per_client

    print()
    print(f"50 connections, random keys out of 100,000, 3-byte values; one server core (1), the client on core 0;")
    print(f"median of {rounds} round(s), {backend} backend for the kv server; -P 16 is redis-benchmark's -P 16 and")
    print("shardnet-load's --pipeline 16")
    print(f"{'test':9} {'client':15} {'redis-server req/s':>18} {'client/server core':>19} "
          f"{'kv req/s':>10} {'client/server core':>19} {'kv/redis':>8} {'per busy core':>13}")
    for name, clients in result["tests"].items():
        for client, e in clients.items():
            r, k = e["redis"], e["kv"]
            ratio = f"{e['ratio']:8.2f}" if e["ratio"] is not None else f"{'-':>8}"
            busy = (f"{e['ratio_per_busy_server_core']:13.2f}"
                    if e["ratio_per_busy_server_core"] is not None else f"{'-':>13}")
            print(f"{name:9} {client:15} {r['rps']:18,.0f} {r['client_core_pct']:8.0f}% / {r['server_core_pct']:3.0f}% "
                  f"{k['rps']:10,.0f} {k['client_core_pct']:8.0f}% / {k['server_core_pct']:3.0f}% {ratio} {busy}")
    print("Each server has one core, so requests/s per server core is its requests/s, and kv/redis is the")
    print("ratio per server core. 'per busy core' divides each by its core's utilisation (redis-server's core")
    print("may idle; shardnet's worker busy-polls, its core always shows 100%). A redis-benchmark core near")
    print("100% means the client, not the server, set the rate; shardnet-load busy-polls too (always 100%).")
    result["failures"] = lab.failures
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"written to {out}")
    for failure in lab.failures:
        print(f"CHECK FAILED: {failure}")
    sys.exit(1 if lab.failures else 0)


if __name__ == "__main__":
    main()
