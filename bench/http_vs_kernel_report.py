#!/usr/bin/python3
"""The report of bench/http-vs-kernel.sh: reads the snapshots and client
outputs it left in WORK, checks them against each other, prints the tables
and writes the JSON file. Exits 1 if a check failed.

  http_vs_kernel_report.py WORK OUT_JSON --seconds S --backend B ...

Files in WORK, for CONTENDER in kernel, shardnet and TEST in rps, cps, bulk,
rtt: CONTENDER-TEST.out (the client's output), CONTENDER-TEST.{pre,post}.stat
(/proc/stat's cpu lines after a timestamp), and the server's counters: for the
kernel .stub (nginx stub_status), .nstat.json and .proc (/proc/PID/stat of the
server process), for shardnet .metrics (its Prometheus /metrics).
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys

TESTS = ("rps", "cps", "bulk", "rtt")
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Ethernet + IPv4 + TCP with the timestamp option: the headers of every data
# segment of the Linux client.
HEADERS = 14 + 20 + 20 + 12

failures = []
notes = []


def check(ok, what):
    if not ok:
        failures.append(what)
    return ok


def read(path):
    with open(path) as f:
        return f.read()


def last_json(text):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line")


def stat(path):
    lines = read(path).splitlines()
    t = float(lines[0])
    cpus = {}
    for line in lines[1:]:
        f = line.split()
        cpus[f[0]] = [int(x) for x in f[1:9]]
    return t, cpus


def cores(pre, post):
    """Per core: busy (user+nice+system+irq+softirq), softirq and steal, in % of the interval."""
    (t0, a), (t1, b) = stat(pre), stat(post)
    res = {}
    for cpu in sorted(a):
        d = [y - x for x, y in zip(a[cpu], b[cpu])]
        user, nice, system, idle, iowait, irq, softirq, steal = d
        total = sum(d) or 1
        res[cpu] = {"busy_pct": 100 * (user + nice + system + irq + softirq) / total,
                    "softirq_pct": 100 * (irq + softirq) / total,
                    "steal_pct": 100 * steal / total}
    return t1 - t0, res


def proc_cpu(path):
    rest = read(path).rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def stub(path):
    lines = read(path).splitlines()
    accepts, handled, requests = (int(x) for x in lines[2].split())
    return {"accepts": accepts, "handled": handled, "requests": requests}


def nstat(path):
    return json.loads(read(path))["kernel"]


METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def metrics(path):
    series = []
    for line in read(path).splitlines():
        if line.startswith("#"):
            continue
        m = METRIC.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            series.append((m.group(1), labels, float(m.group(3))))
    return series


def msum(series, name, **labels):
    return sum(v for n, l, v in series if n == name and all(l.get(k) == x for k, x in labels.items()))


def mdelta(work, tag, name, **labels):
    return (msum(metrics(f"{work}/{tag}.post.metrics"), name, **labels)
            - msum(metrics(f"{work}/{tag}.pre.metrics"), name, **labels))


def near(server, client, conns, what):
    """A server-side count against the client's: the client misses what was in
    flight when it stopped (at most one per connection); 2% slack otherwise."""
    ok = client * 0.98 - 10 <= server <= client + conns + 10
    check(ok, f"{what}: server counted {server:.0f}, client {client:.0f}")
    return ok


def main():
    p = argparse.ArgumentParser()
    p.add_argument("work")
    p.add_argument("out")
    p.add_argument("--seconds", type=int, required=True)
    p.add_argument("--backend", required=True)
    p.add_argument("--connections", type=int, required=True)
    p.add_argument("--rtt-count", type=int, required=True)
    p.add_argument("--load-before", type=float, default=0)
    p.add_argument("--load-after", type=float, default=0)
    a = p.parse_args()
    w, conns = a.work, a.connections

    res = {c: {} for c in ("kernel", "shardnet")}
    util = {c: {} for c in ("kernel", "shardnet")}
    verify = {c: {} for c in ("kernel", "shardnet")}

    # shardnet's idle poll rate, for its busy-time estimate.
    t_idle, _ = cores(f"{w}/shardnet-idle.pre.stat", f"{w}/shardnet-idle.post.stat")
    idle_rate = mdelta(w, "shardnet-idle", "shardnet_worker_polls_total", result="idle") / t_idle
    check(idle_rate > 0, "shardnet: no idle polls counted while idle")

    for c in ("kernel", "shardnet"):
        for t in TESTS:
            tag = f"{c}-{t}"
            out = last_json(read(f"{w}/{tag}.out"))
            elapsed, cpu = cores(f"{w}/{tag}.pre.stat", f"{w}/{tag}.post.stat")
            u = {"client_core0": cpu["cpu0"], "server_core1": cpu["cpu1"], "seconds": elapsed}
            c0, c1 = nstat(f"{w}/{tag}.pre.client-nstat.json"), nstat(f"{w}/{tag}.post.client-nstat.json")
            u["client_retransmits"] = c1["TcpRetransSegs"] - c0["TcpRetransSegs"]
            if c == "kernel":
                u["server_process_cpu_pct"] = 100 * (proc_cpu(f"{w}/{tag}.post.proc")
                                                     - proc_cpu(f"{w}/{tag}.pre.proc")) / elapsed
            else:
                idle = mdelta(w, tag, "shardnet_worker_polls_total", result="idle")
                busy = 1 - (idle / idle_rate) / elapsed if idle_rate > 0 else float("nan")
                u["worker_busy_estimate_pct"] = 100 * min(1.0, max(0.0, busy))
                u["port_rx_missed"] = mdelta(w, tag, "shardnet_port_rx_missed_total")
                u["drops"] = mdelta(w, tag, "shardnet_drops_total")
            util[c][t] = u
            res[c][t] = out

            if t in ("rps", "cps"):
                req = out["requests"]
                e = out["errors"]
                sock = e["connect"] + e["read"] + e["write"] + e["timeout"]
                out["per_second"] = req / (out["duration_us"] / 1e6)
                check(req >= 1000, f"{tag}: wrk completed only {req} requests")
                check(e["status"] == 0, f"{tag}: {e['status']} responses were not 2xx/3xx")
                check(sock <= max(10, req // 100), f"{tag}: {sock} socket errors in {req} requests: {e}")
                v = {}
                if c == "kernel":
                    s0, s1 = stub(f"{w}/{tag}.pre.stub"), stub(f"{w}/{tag}.post.stub")
                    n0, n1 = nstat(f"{w}/{tag}.pre.nstat.json"), nstat(f"{w}/{tag}.post.nstat.json")
                    v["nginx_requests"] = s1["requests"] - s0["requests"]
                    v["nginx_accepts"] = s1["accepts"] - s0["accepts"]
                    v["passive_opens"] = n1["TcpPassiveOpens"] - n0["TcpPassiveOpens"]
                    near(v["nginx_requests"], req, conns, f"{tag}: nginx stub_status requests")
                    opened = v["nginx_accepts"]
                else:
                    v["passive_opens"] = mdelta(w, tag, "shardnet_tcp_connections_opened_total", side="passive")
                    v["tx_segments"] = mdelta(w, tag, "shardnet_tcp_segments_total", direction="tx")
                    v["rx_segments"] = mdelta(w, tag, "shardnet_tcp_segments_total", direction="rx")
                    v["retransmits"] = mdelta(w, tag, "shardnet_tcp_retransmits_total")
                    v["resets_tx"] = mdelta(w, tag, "shardnet_tcp_resets_total", direction="tx")
                    if t == "rps":
                        # One segment per response: wrk sends a connection's
                        # next request only after the response, which carries
                        # the ACK of the request. Besides: per connection a
                        # SYN-ACK and the close (FIN, ACKs), and retransmits.
                        near(v["tx_segments"] - v["retransmits"], req, conns * 4,
                             f"{tag}: shardnet TCP segments sent less retransmits (one per response)")
                    opened = v["passive_opens"]
                if t == "rps":
                    check(opened <= conns * 1.1 + 10,
                          f"{tag}: {opened:.0f} connections opened for {conns} keep-alive connections")
                else:
                    near(opened, req, conns, f"{tag}: connections the server accepted (one per request)")
                    if c == "kernel":
                        near(v["passive_opens"], req, conns + 20, f"{tag}: kernel TcpPassiveOpens")
                verify[c][t] = v
            elif t == "bulk":
                check(out["unacked_at_end"] == 0, f"{tag}: {out['unacked_at_end']} bytes never acknowledged")
                check(out["bytes_acked"] > 0, f"{tag}: nothing sent")
                if c == "kernel":
                    closed = [int(x.split()[1]) for x in read(f"{w}/kernel-sink.log").splitlines()
                              if x.startswith("closed ")]
                    got = closed[-1] if closed else -1
                    verify[c][t] = {"server_bytes": got}
                    check(got == out["bytes_sent"], f"{tag}: the sink read {got} bytes, the client sent {out['bytes_sent']}")
                else:
                    frames = mdelta(w, tag, "shardnet_rx_packets_total")
                    payload = mdelta(w, tag, "shardnet_rx_bytes_total") - HEADERS * frames
                    verify[c][t] = {"server_payload_estimate": payload, "rx_frames": frames,
                                    "retransmits": mdelta(w, tag, "shardnet_tcp_retransmits_total")}
                    check(abs(payload - out["bytes_acked"]) <= 0.02 * out["bytes_acked"] + 65536,
                          f"{tag}: shardnet received about {payload:.0f} payload bytes, the client {out['bytes_acked']}")
            else:
                check(out["mismatched"] == 0, f"{tag}: {out['mismatched']} echoes differed from the request")
                if out["round_trips"] < a.rtt_count:
                    notes.append(f"{tag}: stopped by its time bound after {out['round_trips']} round trips")

    kb = read(f"{w}/kernel-body.txt").split(":", 1)[1]
    sb = read(f"{w}/shardnet-body.txt").split(":", 1)[1]
    check(kb == sb, f"the bodies differ: kernel{kb!r} shardnet{sb!r}")
    final = json.loads(read(f"{w}/shardnet-final.json"))
    drops = {}
    for wk in final["workers"]:
        for reason, n in wk["drops"].items():
            if n:
                drops[reason] = drops.get(reason, 0) + n
    check(drops.get("connection_limit", 0) == 0, f"shardnet dropped {drops.get('connection_limit')} SYNs at its connection limit")
    tcp_final = {k: sum(wk["tcp"][k] for wk in final["workers"]) for k in final["workers"][0]["tcp"]}

    rows = [
        ("HTTP keep-alive requests/s (wrk -c%d)" % conns, "rps", lambda r: r["per_second"], "%.0f", ">= 3", True),
        ("HTTP connections/s (Connection: close)", "cps", lambda r: r["per_second"], "%.0f", ">= 3", True),
        ("1-connection throughput Gbit/s", "bulk", lambda r: r["gbit_s"], "%.2f", ">= 1", True),
        ("64-byte echo round trip p50 us", "rtt", lambda r: r["p50_us"], "%.1f", "<= 1", False),
        ("64-byte echo round trip p99 us", "rtt", lambda r: r["p99_us"], "%.1f", "<= 1", False),
    ]
    table = []
    w0 = max(len(r[0]) for r in rows)
    print(f"\n{'metric':<{w0}} | {'kernel':>10} | {'shardnet':>10} | {'shardnet/kernel':>15} | target", file=sys.stderr)
    print(f"{'-' * w0}-|-{'-' * 10}-|-{'-' * 10}-|-{'-' * 15}-|-------", file=sys.stderr)
    for name, t, get, fmt, target, higher in rows:
        k, s = get(res["kernel"][t]), get(res["shardnet"][t])
        ratio = s / k if k else float("nan")
        met = ratio >= float(target.split()[1]) if higher else ratio <= float(target.split()[1])
        table.append({"metric": name, "test": t, "kernel": k, "shardnet": s, "ratio": ratio,
                      "target": target, "target_met": met})
        print(f"{name:<{w0}} | {fmt % k:>10} | {fmt % s:>10} | {ratio:>15.2f} | {target} "
              f"{'met' if met else 'NOT met'}", file=sys.stderr)

    # Per second of server core time: the kernel's whole core 1 (its process,
    # its softirq, RPS steers all of the server's receive work there); for
    # shardnet the estimated working share of its busy-polling worker.
    derived = {}
    print(f"{'derived: per second of server core time':<{w0}} |", file=sys.stderr)
    for name, t in (("  HTTP requests per server-core second", "rps"),
                    ("  HTTP connections per server-core second", "cps")):
        k = res["kernel"][t]["per_second"] / (util["kernel"][t]["server_core1"]["busy_pct"] / 100)
        sw = util["shardnet"][t]["worker_busy_estimate_pct"] / 100
        s_ = res["shardnet"][t]["per_second"] / sw if sw > 0 else float("nan")
        derived[t] = {"kernel": k, "shardnet": s_, "ratio": s_ / k}
        print(f"{name:<{w0}} | {k:>10.0f} | {s_:>10.0f} | {s_ / k:>15.2f} | (shardnet: >=, from the estimate)",
              file=sys.stderr)

    print("\ncore utilisation during each run (busy = user+system+irq+softirq; softirq part in brackets)", file=sys.stderr)
    print(f"{'test':<5} {'contender':<9} | {'core 0 (client)':>16} | {'core 1 (server)':>16} | "
          f"{'client rexmits':>14} | server process", file=sys.stderr)
    for t in TESTS:
        for c in ("kernel", "shardnet"):
            u = util[c][t]
            c0, c1 = u["client_core0"], u["server_core1"]
            if c == "kernel":
                srv = {"rps": "nginx worker", "cps": "nginx worker", "bulk": "C sink", "rtt": "C echo"}[t]
                extra = f"{srv} {u['server_process_cpu_pct']:.0f}%"
            else:
                extra = f"worker polls 100%, est. working <= {u['worker_busy_estimate_pct']:.0f}%"
                if u["port_rx_missed"] or u["drops"]:
                    extra += f"; port missed {u['port_rx_missed']:.0f}, dropped {u['drops']:.0f}"
            print(f"{t:<5} {c:<9} | {c0['busy_pct']:>5.0f}% ({c0['softirq_pct']:>3.0f}%)     | "
                  f"{c1['busy_pct']:>5.0f}% ({c1['softirq_pct']:>3.0f}%)     | {u['client_retransmits']:>14} | "
                  f"{extra}", file=sys.stderr)
    steal = max(u[k]["steal_pct"] for c in util for u in util[c].values() for k in ("client_core0", "server_core1"))
    if steal > 5:
        notes.append(f"up to {steal:.0f}% steal time on a core: the hypervisor took CPU from this VM")
    if a.load_before > 0.5:
        notes.append(f"load average {a.load_before} before the run: other work shared the cores")

    print(f"\nchecks: wrk {res['kernel']['rps']['requests']}/{res['shardnet']['rps']['requests']} keep-alive and "
          f"{res['kernel']['cps']['requests']}/{res['shardnet']['cps']['requests']} close-mode requests (kernel/shardnet); "
          f"connections accepted in close mode: nginx {verify['kernel']['cps']['nginx_accepts']}, "
          f"shardnet {verify['shardnet']['cps']['passive_opens']:.0f}; "
          f"shardnet drops {drops or 'none'}, retransmits {tcp_final['retransmits']}", file=sys.stderr)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    for f in failures:
        print(f"CHECK FAILED: {f}", file=sys.stderr)

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    doc = {"seconds_per_run": a.seconds, "backend": a.backend, "connections": conns,
           "rtt_round_trips": a.rtt_count, "kernel": platform.release(), "cpus": os.cpu_count(),
           "commit": commit, "load_average_before": a.load_before, "load_average_after": a.load_after,
           "table": table, "per_server_core_second": derived, "results": res, "utilisation": util, "server_counters": verify,
           "shardnet_idle_polls_per_second": idle_rate, "shardnet_drops": drops,
           "shardnet_tcp_final": tcp_final, "notes": notes, "failed_checks": failures}
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"written: {a.out}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
