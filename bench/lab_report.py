"""What the reports of bench/http-vs-kernel.sh and bench/axum-vs-tokio.sh
share: the list of failed checks and notes, and the readers of the files the
scripts leave in their WORK directory (client output, /proc/stat snapshots,
Prometheus /metrics scrapes).
"""
import json
import re

# The checks that failed and the notes on the run, in order; each report
# prints them and puts them in its JSON file.
failures = []
notes = []


def check(ok, what):
    """Records `what` as a failure unless `ok`; returns `ok`."""
    if not ok:
        failures.append(what)
    return ok


def read(path):
    with open(path) as f:
        return f.read()


def last_json(text):
    """The last line of `text` that holds a JSON object, parsed."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line")


def stat(path):
    """A snapshot written as `date +%s.%N; grep '^cpu[0-9]' /proc/stat`: its
    time and, per core, the first eight counters."""
    lines = read(path).splitlines()
    cpus = {}
    for line in lines[1:]:
        f = line.split()
        cpus[f[0]] = [int(x) for x in f[1:9]]
    return float(lines[0]), cpus


def cores(pre, post):
    """Seconds between the snapshots and, per core: busy (user + nice + system
    + irq + softirq), irq + softirq, and steal, in % of the interval."""
    (t0, a), (t1, b) = stat(pre), stat(post)
    res = {}
    for cpu in sorted(a):
        user, nice, system, idle, iowait, irq, softirq, steal = (y - x for x, y in zip(a[cpu], b[cpu]))
        total = (user + nice + system + idle + iowait + irq + softirq + steal) or 1
        res[cpu] = {"busy_pct": 100 * (user + nice + system + irq + softirq) / total,
                    "softirq_pct": 100 * (irq + softirq) / total,
                    "steal_pct": 100 * steal / total}
    return t1 - t0, res


METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def metrics(path):
    """The series of a Prometheus text scrape: (name, labels, value)."""
    series = []
    for line in read(path).splitlines():
        m = METRIC.match(line)
        if m and not line.startswith("#"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            series.append((m.group(1), labels, float(m.group(3))))
    return series


def mdelta(prefix, name, **labels):
    """How much the series `name` with `labels` (summed over the others) grew
    from PREFIX.pre.metrics to PREFIX.post.metrics."""
    def total(path):
        return sum(v for n, l, v in metrics(path)
                   if n == name and all(l.get(k) == x for k, x in labels.items()))
    return total(f"{prefix}.post.metrics") - total(f"{prefix}.pre.metrics")
