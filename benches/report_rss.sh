#!/usr/bin/env bash
# What building reports costs the model server: its RSS after start-up, then after 10
# HTML reports (/debug/leaks?format=html) and 10 pprof profiles (/debug/pprof/heap), with
# no load in between; and, from a JSON report, process live bytes minus the sites' sum.
# Usage: bash benches/report_rss.sh BINARY [sampled|exact] [PORT]
#   (BINARY: a release build of the model server, e.g. target/release/model-server)
# Prints one line: mode, RSS at start, after the reports, the difference, the gap, and
# the peak RSS (VmHWM) at start and after the reports (the symbolizer's batches run
# during the first reports, so the second peak is theirs unless start-up's was higher).
# Binds 127.0.0.1 only; stops the server on exit; every curl is bounded to 60 s.
set -euo pipefail
bin=${1:?usage: report_rss.sh BINARY [sampled|exact] [PORT]}
mode=${2:-sampled}
port=${3:-18431}
url=http://127.0.0.1:$port
"$bin" serve --addr "127.0.0.1:$port" --leakwatch "$mode" >/tmp/report_rss.$$.log 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f /tmp/report_rss.$$.log' EXIT
for _ in $(seq 100); do
  curl -sf -m 2 -o /dev/null "$url/healthz" && break
  sleep 0.1
done
# Let the recorder take a few snapshots.
sleep 3
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$pid/status"; }
start=$(rss)
peak_start=$(hwm)
for _ in $(seq 10); do
  curl -sf -m 60 -o /dev/null "$url/debug/leaks?format=html"
  curl -sf -m 60 -o /dev/null "$url/debug/pprof/heap"
done
after=$(rss)
peak_after=$(hwm)
# The gap from a snapshot taken after the reports (the recorder takes one a second).
sleep 2
gap=$(curl -sf -m 60 "$url/debug/leaks?format=json&top=1000" | python3 -c '
import json, sys
r = json.load(sys.stdin)
sites = sum(s["live_bytes"] for s in r["sites"]) + r["omitted_live_bytes"]
print(r["process"]["live_bytes"] - sites)')
echo "mode=$mode rss_start_kib=$start rss_after_kib=$after growth_kib=$((after - start)) live_minus_sites_bytes=$gap peak_start_kib=$peak_start peak_after_kib=$peak_after"
