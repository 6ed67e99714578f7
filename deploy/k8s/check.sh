#!/usr/bin/env bash
# Offline checks of the Kubernetes manifest: YAML lint, the Kubernetes JSON
# schemas (kubernetes-validate from PyPI, which ships them; --strict rejects
# unknown fields), the Guaranteed-QoS and placeholder rules that the schema
# cannot see, and shellcheck on the ConfigMap's start.sh. With a shardnet
# binary as $1, also `shardnet check` on the ConfigMap's TOML once filled in.
#
#   deploy/k8s/check.sh [SHARDNET_BINARY]
#
# Needs yamllint and shellcheck (apt), and kubernetes-validate in
# /opt/shardnet-tools (scripts/install-deps.sh installs all three).
set -euo pipefail
shardnet_bin=""
if [ "$#" -ge 1 ]; then
    shardnet_bin=$(realpath "$1")
fi
cd "$(dirname "${BASH_SOURCE[0]}")"

VALIDATE="${KUBERNETES_VALIDATE:-/opt/shardnet-tools/bin/kubernetes-validate}"
PY="${KIT_PYTHON:-/opt/shardnet-tools/bin/python}"
for tool in "$VALIDATE" "$PY" yamllint shellcheck; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "k8s/check.sh: $tool not found (run scripts/install-deps.sh)" >&2
        exit 1
    fi
done

echo "== yamllint deploy/k8s/daemonset.yaml"
yamllint -d '{extends: default, rules: {line-length: {max: 130}, document-start: {present: true}}}' \
    daemonset.yaml

echo "== kubernetes-validate --strict deploy/k8s/daemonset.yaml"
"$VALIDATE" --strict daemonset.yaml

echo "== QoS, placeholders, start.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" - "$tmp" <<'PYEOF'
import sys, yaml, tomllib
out = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open("daemonset.yaml")) if d]
kinds = {d["kind"]: d for d in docs}
ds, cm = kinds["DaemonSet"], kinds["ConfigMap"]
fail = []
spec = ds["spec"]["template"]["spec"]
if not spec.get("hostNetwork"):
    fail.append("hostNetwork must be true (the exception port is the node's)")
for c in spec["containers"]:
    r = c["resources"]
    if r["requests"] != r["limits"]:
        fail.append(c["name"] + ": requests must equal limits (Guaranteed QoS)")
    cpu = str(r["limits"].get("cpu", ""))
    if not cpu.isdigit() or int(cpu) < 2:
        fail.append(c["name"] + ": whole CPUs, at least 2 (static CPU manager)")
    if not any(k.startswith("hugepages-") for k in r["limits"]):
        fail.append(c["name"] + ": no hugepages resource")
    if "memory" not in r["limits"]:
        fail.append(c["name"] + ": a memory limit is needed with hugepages")
    if not c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz":
        fail.append(c["name"] + ": liveness on /healthz")
    caps = c["securityContext"]["capabilities"]
    if caps.get("drop") != ["ALL"] or "IPC_LOCK" not in caps.get("add", []):
        fail.append(c["name"] + ": drop ALL, add IPC_LOCK (and what the comment says)")
    if c["securityContext"].get("privileged"):
        fail.append(c["name"] + ": not privileged")
ann = ds["spec"]["template"]["metadata"]["annotations"]
if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != "9464":
    fail.append("Prometheus scrape annotations")
toml_text = cm["data"]["shardnet.toml"]
for ph in ("@WORKERS@", "@CONTROL_CORE@", "@PCI@"):
    if ph not in toml_text:
        fail.append("shardnet.toml lacks " + ph)
# Cores 0 and 1: online on any machine that runs this check.
filled = (toml_text.replace("@WORKERS@", "1").replace("@CONTROL_CORE@", "0")
          .replace("@PCI@", "0000:3b:02.0"))
try:
    conf = tomllib.loads(filled)
    port = conf["metrics"]["listen"].rsplit(":", 1)[1]
    if port != str(ann.get("prometheus.io/port")):
        fail.append("[metrics] listen's port is not the scraped one")
except Exception as e:  # noqa: BLE001
    fail.append("shardnet.toml: " + str(e))
open(out + "/shardnet.toml", "w").write(filled)
open(out + "/start.sh", "w").write(cm["data"]["start.sh"])
for f in fail:
    print("FAIL: " + f)
sys.exit(1 if fail else 0)
PYEOF
shellcheck -s sh "$tmp/start.sh"
echo "  OK"

if [ -n "$shardnet_bin" ]; then
    echo "== $shardnet_bin check (the ConfigMap's TOML, placeholders filled)"
    "$shardnet_bin" check --config "$tmp/shardnet.toml"
fi
echo "== k8s checks passed"
