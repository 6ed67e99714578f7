"""The table and JSON of bench/scaling.sh.

Usage: scaling_report.py WORK OUT_JSON SECONDS CORES "W..." "REFUSED..."

WORK holds, per worker count W, shardnet-load's JSON of each mode
(udp-W.json, http-W.json) and the server's metrics before and after each run
(m-W-MODE-a.prom, m-W-MODE-b.prom).
"""

import json
import os
import re
import sys

SAMPLE = re.compile(r'^(\w+)\{([^}]*)\}\s+(\S+)$')


def metrics(path):
    """{(name, labels): value} of a Prometheus text exposition."""
    samples = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = SAMPLE.match(line.strip())
            if m:
                labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2))))
                samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def delta(work, w, mode):
    """The server's per-worker RX packets and steered packets over one run."""
    a = metrics(os.path.join(work, f"m-{w}-{mode}-a.prom"))
    b = metrics(os.path.join(work, f"m-{w}-{mode}-b.prom"))
    rx, steered = {}, 0.0
    for key, value in b.items():
        name, labels = key
        d = value - a.get(key, 0.0)
        labels = dict(labels)
        if name == "shardnet_rx_packets_total":
            rx[labels.get("worker", "?")] = d
        elif name == "shardnet_steered_packets_total" and labels.get("direction") == "out":
            steered += d
    return rx, steered


def run(work, w, mode):
    with open(os.path.join(work, f"{mode}-{w}.json"), encoding="utf-8") as f:
        load = json.load(f)
    rx, steered = delta(work, w, mode)
    total = sum(rx.values())
    mean = total / len(rx) if rx else 0.0
    return {
        "per_second": load["per_second"],
        "completed": load["completed"],
        "seconds": load["seconds"],
        "errors": load["errors"],
        "timeouts": load["timeouts"],
        "resets": load["resets"],
        "latency_us": {k: load["latency_us"][k] for k in ("p50", "p99", "p999")},
        "server_rx_packets_per_worker": rx,
        # The least-loaded worker's share against an even spread (1.0).
        "spread_min_over_mean": (min(rx.values()) / mean) if mean > 0 else 0.0,
        "server_steered_packets": steered,
        "steered_fraction": steered / total if total > 0 else 0.0,
    }


def main():
    work, out, secs, cores = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    plan = [int(w) for w in sys.argv[5].split()]
    refused = [int(w) for w in sys.argv[6].split()]
    rows = []
    for w in plan:
        rows.append({"workers": w, "udp": run(work, w, "udp"), "http": run(work, w, "http")})
    base = rows[0]
    for row in rows:
        for mode in ("udp", "http"):
            per_worker = row[mode]["per_second"] / row["workers"]
            base_per_worker = base[mode]["per_second"] / base["workers"]
            row[mode]["efficiency"] = per_worker / base_per_worker if base_per_worker > 0 else 0.0
    result = {
        "cores": cores,
        "seconds_per_run": secs,
        "baseline_workers": base["workers"],
        "refused_workers": refused,
        "efficiency": "(rate / workers) / (rate at the baseline / its workers)",
        "rows": rows,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    print(f"shardnet scaling over net_memif, {cores} cores, {secs} s per run; "
          f"efficiency against {base['workers']} worker(s)")
    print(f"{'workers':>7} {'UDP Mpps':>9} {'eff':>5} {'HTTP req/s':>11} {'eff':>5}"
          f" {'UDP spread':>10} {'steered':>8} {'errors':>6}")
    for row in rows:
        u, h = row["udp"], row["http"]
        errors = u["errors"] + u["timeouts"] + h["errors"] + h["resets"]
        steered = max(u["steered_fraction"], h["steered_fraction"])
        print(f"{row['workers']:>7} {u['per_second'] / 1e6:>9.3f} {u['efficiency']:>5.2f}"
              f" {h['per_second']:>11,.0f} {h['efficiency']:>5.2f}"
              f" {u['spread_min_over_mean']:>10.2f} {100 * steered:>7.1f}% {errors:>6}")
    if refused:
        print(f"refused (not enough cores for the server and the generator): {refused}")
    for row in rows:
        u = row["udp"]
        if row["workers"] > 1 and u["spread_min_over_mean"] < 0.5:
            print(f"WARNING: {row['workers']} workers: a server worker received "
                  f"{u['spread_min_over_mean']:.2f} of the mean: flows not spread over the queues")
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
