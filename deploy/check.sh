#!/usr/bin/env bash
# Checks the monitoring kit: the Prometheus config, the alert rules and their
# unit tests, and the Grafana dashboard's JSON.
#
#   deploy/check.sh                      # from the repo root (or anywhere)
#   deploy/check.sh METRICS_TEXT_FILE    # also check the metric names against
#                                        # a /metrics scrape (check_names.py)
#
# Needs promtool (Debian/Ubuntu: apt-get install prometheus) and python3.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PROMTOOL="${PROMTOOL:-promtool}"
if ! command -v "$PROMTOOL" >/dev/null 2>&1; then
    echo "check.sh: promtool not found (apt-get install prometheus, or set PROMTOOL=)" >&2
    exit 1
fi

echo "== promtool check config deploy/prometheus.yml"
"$PROMTOOL" check config deploy/prometheus.yml

echo "== promtool check rules deploy/alerts.yml"
"$PROMTOOL" check rules deploy/alerts.yml

echo "== promtool test rules deploy/alerts_test.yml"
"$PROMTOOL" test rules deploy/alerts_test.yml

echo "== JSON: deploy/grafana/*.json"
for f in deploy/grafana/*.json; do
    python3 -m json.tool "$f" >/dev/null
    echo "  OK: $f"
done

if [ "$#" -ge 1 ]; then
    echo "== check_names.py $1"
    python3 deploy/check_names.py "$1"
fi

echo "== all checks passed"
