#!/usr/bin/env bash
# Usage: bash benches/report_names.sh BINARY [exact|sampled]
# Addresses the model server symbolizes for 10 JSON reports of the top 10 lines, then
# for one report of every line (HTML), with load in between.
set -euo pipefail
bin=$1; mode=${2:-exact}; port=18433; url=http://127.0.0.1:$port
"$bin" serve --addr "127.0.0.1:$port" --leakwatch "$mode" >/tmp/topnames.log 2>&1 &
pid=$!; trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 100); do curl -sf -m 2 -o /dev/null "$url/healthz" && break; sleep 0.1; done
for i in $(seq 50); do curl -sf -m 10 -o /dev/null -X POST "$url/v1/generate" -H 'content-type: application/json' -d '{"session_id":"s1","prompt":"hello world","max_tokens":16}' || true; done
sleep 3
resolved() { curl -sf -m 60 "$url/debug/leaks?format=json&top=$1" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["symbolizer"]["resolved"], r["tracker"]["sites"], len(r["sites"]), r["omitted_sites"])'; }
for i in $(seq 10); do resolved 10 >/dev/null; done
echo "after 10 top-10 reports: resolved sites shown omitted = $(resolved 10)"
curl -sf -m 60 -o /dev/null "$url/debug/leaks?format=html"
echo "after an HTML report: $(resolved 10)"
