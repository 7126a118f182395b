#!/usr/bin/env bash
# Time ratios of the allocator benches against System, in interleaved rounds (issue 12,
# item 2; docs/BENCHMARKS.md, "Time ratios in rounds"). One criterion run of each bench
# binary is a few seconds of one process on a shared machine: a neighbour's burst moves
# one configuration and not the other. So each round runs `alloc_system` and
# `alloc_leakwatch` one after the other (the order alternating from round to round) on
# churn, two_threads_churn and retained_growth, keeps that round's results, and the
# summary takes every configuration's ratio to System within each round: the median over
# rounds, its range, and in how many rounds it was slower than System.
#
# Usage (from anywhere): bash benches/time_ratios.sh [ROUNDS]   (default 9; ~1.5 min a round)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-9}
case "$rounds" in
  '' | *[!0-9]*) echo "time_ratios.sh: ROUNDS must be a positive number, not '$rounds'" >&2; exit 2 ;;
esac
if [ "$rounds" -lt 1 ]; then
  echo "time_ratios.sh: ROUNDS must be at least 1" >&2
  exit 2
fi
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
out="$target/time-ratios"
bins=$(cargo bench -p leakwatch-benches --bench alloc_system --bench alloc_leakwatch --no-run \
  --message-format=json 2>/dev/null |
  grep -o '"executable":"[^"]*alloc_\(system\|leakwatch\)-[^"]*"' | cut -d'"' -f4)
system=$(echo "$bins" | grep 'alloc_system-')
leakwatch=$(echo "$bins" | grep 'alloc_leakwatch-')
filter='^(churn|two_threads_churn|retained_growth)/'
args=(--bench --noplot --warm-up-time 1 --measurement-time 3)
rm -rf "$out"
for round in $(seq 1 "$rounds"); do
  # Each round writes criterion's results into a directory of its own (not
  # target/criterion, whose earlier runs stay as they were).
  if [ $((round % 2)) -eq 1 ]; then order=("$system" "$leakwatch"); else order=("$leakwatch" "$system"); fi
  for bin in "${order[@]}"; do
    CRITERION_HOME="$out/round-$round" "$bin" "${args[@]}" "$filter" > /dev/null
  done
  echo "round $round of $rounds done" >&2
done
cargo run -q --release -p leakwatch-benches --bin bench_summary -- --rounds "$out"
