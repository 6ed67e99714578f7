#!/usr/bin/python3
"""The report of bench/http-vs-kernel.sh: reads the snapshots and client
outputs it left in WORK, checks them against each other, prints the tables
and writes the JSON file. Exits 1 if a check failed.

  http_vs_kernel_report.py WORK OUT_JSON --seconds S --rounds R --backend B ...

Files in WORK, for CONTENDER in kernel, shardnet, round N and TEST in rps,
cps, rps-sl, cps-sl, lat-sl, bulk, rtt: CONTENDER-rN-TEST.out (the client's output),
CONTENDER-rN-TEST.{pre,post}.stat (/proc/stat's cpu lines after a timestamp)
and .client-nstat.json (the client namespace's counters), and the server's
counters: for the kernel .stub (nginx stub_status), .nstat.json and .proc
(/proc/PID/stat of the server process), for shardnet .metrics (its
Prometheus /metrics). Also shardnet-rN-idle.{pre,post}.* (shardnet idle, for
its idle poll rate), shardnet-rN-final.json (its counters at stop),
kernel-rN-sink.log (what the kernel's discard server received) and
CONTENDER-body.txt (the HTTP body each served).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

from lab_report import check, cores, failures, last_json, mdelta, notes, read

# rps and cps with wrk (the kernel's TCP), rps-sl and cps-sl the same with
# shardnet-load (shardnet's own client over AF_PACKET: more load from the same
# one client core), lat-sl keep-alive requests at a fixed rate (latency under
# load).
TESTS = ("rps", "cps", "rps-sl", "cps-sl", "lat-sl", "bulk", "rtt")
CONTENDERS = ("kernel", "shardnet")
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Ethernet + IPv4 + TCP with the timestamp option: the headers of every data
# segment of the Linux client.
HEADERS = 14 + 20 + 20 + 12

# Steal time (% of a run, on either core) above which a round does not count.
STEAL_LIMIT = 10


def proc_cpu(path):
    rest = read(path).rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def stub(path):
    accepts, handled, requests = (int(x) for x in read(path).splitlines()[2].split())
    return {"accepts": accepts, "handled": handled, "requests": requests}


def nstat(path):
    return json.loads(read(path))["kernel"]


def near(server, client, conns, what):
    """A server-side count against the client's: the client misses what was in
    flight when it stopped (at most one per connection); 2% slack otherwise."""
    return check(client * 0.98 - 10 <= server <= client + conns + 10,
                 f"{what}: server counted {server:.0f}, client {client:.0f}")


def one_round(w, c, r, t, conns, rtt_count, idle_rate):
    """One client run: its result, the cores' utilisation, the server's counts."""
    tag = f"{c}-r{r}-{t}"
    pre, post = f"{w}/{tag}.pre", f"{w}/{tag}.post"
    out = last_json(read(f"{w}/{tag}.out"))
    elapsed, cpu = cores(f"{pre}.stat", f"{post}.stat")
    u = {"client_core0": cpu["cpu0"], "server_core1": cpu["cpu1"], "seconds": elapsed}
    c0, c1 = nstat(f"{pre}.client-nstat.json"), nstat(f"{post}.client-nstat.json")
    u["client_retransmits"] = c1["TcpRetransSegs"] - c0["TcpRetransSegs"]
    if c == "kernel":
        u["server_process_cpu_pct"] = 100 * (proc_cpu(f"{post}.proc") - proc_cpu(f"{pre}.proc")) / elapsed
    else:
        # The worker polls all the time; the time it did not spend in empty
        # polls (counted, at the rate measured while idle) is its work. Empty
        # polls are slower under load (colder caches), so this over-states the
        # work: an upper bound.
        idle = mdelta(f"{w}/{tag}", "shardnet_worker_polls_total", result="idle")
        busy = 1 - (idle / idle_rate) / elapsed if idle_rate > 0 else float("nan")
        u["worker_busy_estimate_pct"] = 100 * min(1.0, max(0.0, busy))
        u["port_rx_missed"] = mdelta(f"{w}/{tag}", "shardnet_port_rx_missed_total")
        u["drops"] = mdelta(f"{w}/{tag}", "shardnet_drops_total")

    v = {}
    # lat-sl: keep-alive requests at a fixed rate; checked as rps.
    kind = {"lat": "rps"}.get(t.split("-")[0], t.split("-")[0])
    if t == "lat-sl":
        out["p50_us"], out["p99_us"] = out["latency_us"]["p50"], out["latency_us"]["p99"]
        check(abs(out["per_second"] - out["rate"]) <= 0.05 * out["rate"],
              f"{tag}: {out['per_second']:.0f} requests/s at a rate of {out['rate']}")
    if kind in ("rps", "cps"):
        if t.endswith("-sl"):
            # shardnet-load's JSON: completed responses (cps: connections
            # answered), its own errors, resets and timeouts.
            req = out["completed"]
            out["requests"] = req
            check(req >= 1000, f"{tag}: shardnet-load completed only {req}")
            for k in ("errors", "resets", "timeouts"):
                check(out[k] <= max(10, req // 100), f"{tag}: shardnet-load counted {out[k]} {k}")
        else:
            req, e = out["requests"], out["errors"]
            sock = e["connect"] + e["read"] + e["write"] + e["timeout"]
            out["per_second"] = req / (out["duration_us"] / 1e6)
            check(req >= 1000, f"{tag}: wrk completed only {req} requests")
            check(e["status"] == 0, f"{tag}: {e['status']} responses were not 2xx/3xx")
            check(sock <= max(10, req // 100), f"{tag}: {sock} socket errors in {req} requests: {e}")
        if c == "kernel":
            s0, s1 = stub(f"{pre}.stub"), stub(f"{post}.stub")
            n0, n1 = nstat(f"{pre}.nstat.json"), nstat(f"{post}.nstat.json")
            v["nginx_requests"] = s1["requests"] - s0["requests"]
            v["nginx_accepts"] = s1["accepts"] - s0["accepts"]
            v["passive_opens"] = n1["TcpPassiveOpens"] - n0["TcpPassiveOpens"]
            near(v["nginx_requests"], req, conns, f"{tag}: nginx stub_status requests")
            opened = v["nginx_accepts"]
        else:
            p = f"{w}/{tag}"
            v["passive_opens"] = mdelta(p, "shardnet_tcp_connections_opened_total", side="passive")
            v["tx_segments"] = mdelta(p, "shardnet_tcp_segments_total", direction="tx")
            v["rx_segments"] = mdelta(p, "shardnet_tcp_segments_total", direction="rx")
            v["retransmits"] = mdelta(p, "shardnet_tcp_retransmits_total")
            v["resets_tx"] = mdelta(p, "shardnet_tcp_resets_total", direction="tx")
            if kind == "rps":
                # shardnet counts no HTTP requests: count responses as
                # segments. Both clients send a connection's next request only
                # after the response, which carries the ACK of the request: one
                # segment per response, plus per connection a SYN-ACK and the
                # close (FIN, ACKs), plus retransmits.
                near(v["tx_segments"] - v["retransmits"], req, conns * 4,
                     f"{tag}: shardnet TCP segments sent less retransmits (one per response)")
            opened = v["passive_opens"]
        if kind == "rps":
            check(opened <= conns * 1.1 + 10,
                  f"{tag}: {opened:.0f} connections opened for {conns} keep-alive connections")
        else:
            near(opened, req, conns, f"{tag}: connections the server accepted (one per request)")
            if c == "kernel":
                near(v["passive_opens"], req, conns + 20, f"{tag}: the kernel's TcpPassiveOpens")
    elif t == "bulk":
        check(out["unacked_at_end"] == 0, f"{tag}: {out['unacked_at_end']} bytes never acknowledged")
        check(out["bytes_acked"] > 0, f"{tag}: nothing sent")
        if c == "kernel":
            closed = [int(x.split()[1]) for x in read(f"{w}/kernel-r{r}-sink.log").splitlines()
                      if x.startswith("closed ")]
            v["server_bytes"] = closed[-1] if closed else -1
            check(v["server_bytes"] == out["bytes_sent"],
                  f"{tag}: the sink read {v['server_bytes']} bytes, the client sent {out['bytes_sent']}")
        else:
            p = f"{w}/{tag}"
            frames = mdelta(p, "shardnet_rx_packets_total")
            v["server_payload_estimate"] = mdelta(p, "shardnet_rx_bytes_total") - HEADERS * frames
            v["rx_frames"] = frames
            v["retransmits"] = mdelta(p, "shardnet_tcp_retransmits_total")
            check(abs(v["server_payload_estimate"] - out["bytes_acked"]) <= 0.02 * out["bytes_acked"] + 65536,
                  f"{tag}: shardnet received about {v['server_payload_estimate']:.0f} payload bytes, "
                  f"the client {out['bytes_acked']}")
    else:
        check(out["mismatched"] == 0, f"{tag}: {out['mismatched']} echoes differed from the request")
        if out["round_trips"] < rtt_count:
            notes.append(f"{tag}: stopped by its time bound after {out['round_trips']} round trips")
    return out, u, v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("out")
    ap.add_argument("--seconds", type=int, required=True)
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--backend", required=True)
    ap.add_argument("--connections", type=int, required=True)
    ap.add_argument("--rtt-count", type=int, required=True)
    ap.add_argument("--lat-rate", type=int, required=True)
    ap.add_argument("--load-before", type=float, default=0)
    ap.add_argument("--load-after", type=float, default=0)
    ap.add_argument("--busy-before", type=float, default=0)
    ap.add_argument("--steer", default="1")
    ap.add_argument("--client-csum", default="1")
    ap.add_argument("--client-cc", default="")
    a = ap.parse_args()
    w, conns, rounds = a.work, a.connections, range(1, a.rounds + 1)

    res = {c: {r: {} for r in rounds} for c in CONTENDERS}
    util = {c: {r: {} for r in rounds} for c in CONTENDERS}
    verify = {c: {r: {} for r in rounds} for c in CONTENDERS}
    idle_rates, drops, tcp_final = {}, {}, {}
    for r in rounds:
        t_idle, _ = cores(f"{w}/shardnet-r{r}-idle.pre.stat", f"{w}/shardnet-r{r}-idle.post.stat")
        idle_rates[r] = mdelta(f"{w}/shardnet-r{r}-idle", "shardnet_worker_polls_total", result="idle") / t_idle
        check(idle_rates[r] > 0, f"round {r}: shardnet counted no idle polls while idle")
        for c in CONTENDERS:
            for t in TESTS:
                res[c][r][t], util[c][r][t], verify[c][r][t] = one_round(
                    w, c, r, t, conns, a.rtt_count, idle_rates[r])
        final = json.loads(read(f"{w}/shardnet-r{r}-final.json"))
        for wk in final["workers"]:
            for reason, n in wk["drops"].items():
                if n:
                    drops[reason] = drops.get(reason, 0) + n
            for k, n in wk["tcp"].items():
                tcp_final[k] = tcp_final.get(k, 0) + n
    check(drops.get("connection_limit", 0) == 0,
          f"shardnet refused {drops.get('connection_limit')} connections at its connection limit")
    kb = read(f"{w}/kernel-body.txt").split(":", 1)[1]
    sb = read(f"{w}/shardnet-body.txt").split(":", 1)[1]
    check(kb == sb, f"the bodies differ: kernel{kb!r} shardnet{sb!r}")

    # Per second of server core time: for the kernel its whole core 1 (its
    # process and its softirq: receive steering puts all of the server's
    # receive work there), for shardnet the estimated working share of its
    # busy-polling worker (an upper bound, so this is a lower bound).
    for r in rounds:
        for t in ("rps", "cps", "rps-sl", "cps-sl"):
            res["kernel"][r][t]["per_server_core_second"] = (
                res["kernel"][r][t]["per_second"] / (util["kernel"][r][t]["server_core1"]["busy_pct"] / 100))
            sw = util["shardnet"][r][t]["worker_busy_estimate_pct"] / 100
            res["shardnet"][r][t]["per_server_core_second"] = (
                res["shardnet"][r][t]["per_second"] / sw if sw > 0 else float("nan"))

    rows = [
        ("HTTP keep-alive requests/s, wrk -c%d" % conns, "rps", "per_second", "%.0f", ">= 3", True),
        ("HTTP keep-alive requests/s, shardnet-load -c%d" % conns, "rps-sl", "per_second", "%.0f", ">= 3",
         True),
        ("HTTP connections/s, wrk (Connection: close)", "cps", "per_second", "%.0f", ">= 3", True),
        ("HTTP connections/s, shardnet-load", "cps-sl", "per_second", "%.0f", ">= 3", True),
        ("HTTP latency p50 at %d requests/s, shardnet-load, us" % a.lat_rate, "lat-sl", "p50_us", "%.1f",
         "<= 1", False),
        ("HTTP latency p99 at %d requests/s, shardnet-load, us" % a.lat_rate, "lat-sl", "p99_us", "%.1f",
         "<= 1", False),
        ("1-connection throughput, Gbit/s", "bulk", "gbit_s", "%.2f", ">= 1", True),
        ("64-byte echo round trip p50, us", "rtt", "p50_us", "%.1f", "<= 1", False),
        ("64-byte echo round trip p99, us", "rtt", "p99_us", "%.1f", "<= 1", False),
        ("derived: requests per server-core second, wrk", "rps", "per_server_core_second", "%.0f", ">= 3",
         True),
        ("derived: requests per server-core second, shardnet-load", "rps-sl", "per_server_core_second",
         "%.0f", ">= 3", True),
        ("derived: connections per server-core second, wrk", "cps", "per_server_core_second", "%.0f",
         ">= 3", True),
        ("derived: connections per server-core second, shardnet-load", "cps-sl",
         "per_server_core_second", "%.0f", ">= 3", True),
    ]
    table = []
    w0 = max(len(r[0]) for r in rows)
    print(f"\nmedians over {a.rounds} round(s); ratio: median of the rounds' ratios (each round's in brackets; "
          f"* = more than {STEAL_LIMIT}% steal: not counted unless all rounds are)",
          file=sys.stderr)
    print(f"{'metric':<{w0}} | {'kernel':>9} | {'shardnet':>9} | shardnet/kernel       | target", file=sys.stderr)
    print(f"{'-' * w0}-|-{'-' * 9}-|-{'-' * 9}-|-----------------------|-----------", file=sys.stderr)
    def stolen(r, t):
        """The most steal time on either core in either contender's run of
        test t in round r, in % of the run."""
        return max(util[c][r][t][k]["steal_pct"] for c in CONTENDERS
                   for k in ("client_core0", "server_core1"))

    excluded_any = False
    for name, t, key, fmt, target, higher in rows:
        # A round in which the hypervisor took more than STEAL_LIMIT% of a core
        # from either side's run measured the VM, not the contenders: it is
        # shown (marked *) but left out of the medians, unless every round was.
        clean = [r for r in rounds if stolen(r, t) <= STEAL_LIMIT] or list(rounds)
        excluded_any |= any(stolen(r, t) > STEAL_LIMIT for r in rounds)
        k = [res["kernel"][r][t][key] for r in rounds]
        s = [res["shardnet"][r][t][key] for r in rounds]
        ratios = [y / x if x else float("nan") for x, y in zip(k, s)]
        counted = [i for i, r in enumerate(rounds) if r in clean]
        ratio = statistics.median(ratios[i] for i in counted)
        k_med = statistics.median(k[i] for i in counted)
        s_med = statistics.median(s[i] for i in counted)
        bound = float(target.split()[1])
        met = ratio >= bound if higher else ratio <= bound
        table.append({"metric": name, "test": t, "kernel": k_med,
                      "shardnet": s_med, "ratio": ratio, "kernel_per_round": k,
                      "shardnet_per_round": s, "ratio_per_round": ratios,
                      "rounds_counted": [rounds[i] for i in counted],
                      "steal_pct_per_round": [stolen(r, t) for r in rounds], "target": target,
                      "target_met": met})
        per = " ".join(f"{x:.2f}" + ("*" if stolen(r, t) > STEAL_LIMIT else "")
                       for x, r in zip(ratios, rounds))
        print(f"{name:<{w0}} | {fmt % k_med:>9} | {fmt % s_med:>9} | "
              f"{ratio:>5.2f} ({per}){' ' * max(0, 14 - len(per))} | {target} {'met' if met else 'NOT met'}",
              file=sys.stderr)
    if excluded_any:
        notes.append(f"rounds marked * lost more than {STEAL_LIMIT}% of a core to steal time in one of "
                     "the two runs; they are left out of that row's medians, unless all of its rounds are")

    print("\ncores during each run: busy = user+system+irq+softirq (irq+softirq in brackets); "
          "client retransmits; the server", file=sys.stderr)
    for r in rounds:
        for t in TESTS:
            for c in CONTENDERS:
                u = util[c][r][t]
                c0, c1 = u["client_core0"], u["server_core1"]
                if c == "kernel":
                    srv = {"rps": "nginx worker", "cps": "nginx worker", "lat": "nginx worker",
                           "bulk": "C sink",
                           "rtt": "C echo"}[t.split("-")[0]]
                    extra = f"{srv} {u['server_process_cpu_pct']:.0f}% of a core"
                else:
                    est = u["worker_busy_estimate_pct"]
                    extra = "worker polls 100%, est. working " + (f"<= {est:.0f}%" if est >= 1 else "< 1%")
                    if u["port_rx_missed"] or u["drops"]:
                        extra += f"; port missed {u['port_rx_missed']:.0f}, dropped {u['drops']:.0f}"
                print(f"r{r} {t:<6} {c:<8} | core 0 (client) {c0['busy_pct']:>3.0f}% ({c0['softirq_pct']:>2.0f}%) | "
                      f"core 1 (server) {c1['busy_pct']:>3.0f}% ({c1['softirq_pct']:>2.0f}%) | "
                      f"rexmit {u['client_retransmits']:>4} | {extra}", file=sys.stderr)
    steal = max(u[k]["steal_pct"] for c in CONTENDERS for r in rounds for u in util[c][r].values()
                for k in ("client_core0", "server_core1"))
    if steal > 5:
        notes.append(f"up to {steal:.0f}% steal time on a core in a run: the hypervisor took CPU from this VM")
    if a.busy_before > 10:
        notes.append(f"the CPUs were {a.busy_before:.0f}% busy before the run: other work shared the cores")
    if a.client_csum != "1":
        notes.append("client checksum offload off (SNB_CLIENT_CSUM=0): the client summed every segment in "
                     "software and both servers verified every one")
    if a.client_cc:
        notes.append(f"the client's TCP congestion control: {a.client_cc}")
    if a.steer != "1":
        notes.append("receive steering off (SNB_STEER=0): part of each side's receive work ran on the "
                     "other's core, and the per-server-core rows are meaningless")

    def each(c, t, f):
        return "/".join(f(verify[c][r][t], res[c][r][t]) for r in rounds)
    print(f"\nchecked, per round: wrk close-mode requests kernel "
          f"{each('kernel', 'cps', lambda v, o: str(o['requests']))}, nginx accepted "
          f"{each('kernel', 'cps', lambda v, o: str(v['nginx_accepts']))} connections; shardnet "
          f"{each('shardnet', 'cps', lambda v, o: str(o['requests']))}, accepted "
          f"{each('shardnet', 'cps', lambda v, o: '%.0f' % v['passive_opens'])}; keep-alive: wrk "
          f"{each('shardnet', 'rps', lambda v, o: str(o['requests']))} responses, shardnet sent "
          f"{each('shardnet', 'rps', lambda v, o: '%.0f' % v['tx_segments'])} segments; "
          f"shardnet-load close mode: kernel {each('kernel', 'cps-sl', lambda v, o: str(o['requests']))}, "
          f"nginx accepted {each('kernel', 'cps-sl', lambda v, o: str(v['nginx_accepts']))}; shardnet "
          f"{each('shardnet', 'cps-sl', lambda v, o: str(o['requests']))}, accepted "
          f"{each('shardnet', 'cps-sl', lambda v, o: '%.0f' % v['passive_opens'])}; keep-alive: "
          f"{each('shardnet', 'rps-sl', lambda v, o: str(o['requests']))} responses, shardnet sent "
          f"{each('shardnet', 'rps-sl', lambda v, o: '%.0f' % v['tx_segments'])} segments; "
          f"shardnet drops {drops or 'none'}, retransmits {tcp_final.get('retransmits', 0)}", file=sys.stderr)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    for f in failures:
        print(f"CHECK FAILED: {f}", file=sys.stderr)

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    doc = {"seconds_per_run": a.seconds, "rounds": a.rounds, "backend": a.backend, "connections": conns,
           "rtt_round_trips": a.rtt_count, "latency_test_rate": a.lat_rate, "receive_steering": a.steer == "1",
           "client_checksum_offload": a.client_csum == "1", "client_congestion_control": a.client_cc,
           "kernel": platform.release(), "cpus": os.cpu_count(), "commit": commit,
           "load_average_before": a.load_before, "load_average_after": a.load_after,
           "cpu_busy_pct_before": a.busy_before, "table": table, "results": res,
           "utilisation": util, "server_counters": verify,
           "shardnet_idle_polls_per_second": idle_rates, "shardnet_drops": drops,
           "shardnet_tcp_final": tcp_final, "notes": notes, "failed_checks": failures}
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"written: {a.out}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
