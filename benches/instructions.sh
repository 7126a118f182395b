#!/usr/bin/env bash
# Instructions per operation of the allocator benches' workloads, counted by callgrind
# (issue 12; docs/BENCHMARKS.md, "Instruction counts"). Each workload runs at two sizes
# and the difference is divided by the difference in operations, so start-up and exit
# cancel: the marginal cost of one operation, glibc's malloc and free included. The
# "over System" column subtracts the bare system allocator's figure: what leakwatch adds.
#
#   W1  alloc+free pairs of 16-256 B, about 24 frames deep (criterion's `churn`)
#   W2  blocks retained from 50 sites, then freed (`retained_growth`)
#   W3  W1 on two threads at once (`two_threads_churn`), per pair of either thread
#
# Usage (from anywhere; needs valgrind):
#   bash benches/instructions.sh                 the whole table (about 2 minutes)
#   bash benches/instructions.sh --check         W1 off and sampled over System against
#                                                benches/instruction-budgets.txt (CI)
#   bash benches/instructions.sh --check --budgets FILE    the same against FILE
# Exit status: 0 fine, 1 a budget exceeded or a run failed, 2 bad arguments or budgets.
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
budgets=benches/instruction-budgets.txt
while [ $# -gt 0 ]; do
  case "$1" in
    --check) check=true ;;
    --budgets)
      if [ $# -lt 2 ]; then
        echo "instructions.sh: --budgets takes a file" >&2
        exit 2
      fi
      budgets=$2
      shift
      ;;
    *)
      echo "instructions.sh: unknown argument '$1' (usage: instructions.sh [--check [--budgets FILE]])" >&2
      exit 2
      ;;
  esac
  shift
done

if ! command -v valgrind >/dev/null; then
  echo "instructions.sh: valgrind not found (apt-get install valgrind)" >&2
  exit 1
fi

# The budgets are read before anything runs, so a bad file fails at once.
declare -A budget=()
if $check; then
  if [ ! -r "$budgets" ]; then
    echo "instructions.sh: cannot read budgets file $budgets" >&2
    exit 2
  fi
  line_no=0
  while IFS= read -r line || [ -n "$line" ]; do
    line_no=$((line_no + 1))
    line=${line%%#*}
    read -r name value extra <<<"$line" || true
    [ -z "${name:-}" ] && continue
    if [ -n "${extra:-}" ] || ! [[ "${value:-}" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
      echo "instructions.sh: $budgets:$line_no: expected 'NAME INSTRUCTIONS', got '$line'" >&2
      exit 2
    fi
    case "$name" in
      w1-off | w1-sampled) budget[$name]=$value ;;
      *)
        echo "instructions.sh: $budgets:$line_no: unknown budget '$name' (w1-off, w1-sampled)" >&2
        exit 2
        ;;
    esac
  done <"$budgets"
  for name in w1-off w1-sampled; do
    if [ -z "${budget[$name]:-}" ]; then
      echo "instructions.sh: $budgets has no budget for $name" >&2
      exit 2
    fi
  done
fi

# Without the criterion and dhat-rs features: the programs need neither.
cargo build --release -q -p leakwatch-benches --no-default-features \
  --bin instructions_system --bin instructions_leakwatch

# The environment must not choose leakwatch's settings: the programs set the mode and
# rate, and their allocator's seed is fixed.
for var in $(compgen -e); do
  case "$var" in LEAKWATCH*) unset "$var" ;; esac
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# irefs MODE WORKLOAD OPS: the instructions callgrind counts in one whole run.
irefs() {
  local mode=$1 workload=$2 ops=$3 out="$work/out"
  local program=(target/release/instructions_leakwatch "$mode")
  [ "$mode" = system ] && program=(target/release/instructions_system)
  if ! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    "${program[@]}" "$workload" "$ops" >"$out" 2>&1; then
    tail -20 "$out" >&2
    echo "instructions.sh: $mode $workload $ops failed under callgrind" >&2
    exit 1
  fi
  local refs
  refs=$(sed -n 's/^==[0-9]*== I[[:space:]]*refs:[[:space:]]*//p' "$out" | tr -d ,)
  if ! [[ "$refs" =~ ^[0-9]+$ ]]; then
    tail -20 "$out" >&2
    echo "instructions.sh: no 'I refs' line from callgrind for $mode $workload $ops" >&2
    exit 1
  fi
  echo "$refs"
}

# Operation counts (N1 N2) per workload and mode. Exact mode costs about ten times as
# much per operation, so it runs fewer. W3's counts are pairs on each of its threads.
sizes() {
  case "$1/$2" in
    w1/exact) echo "20000 120000" ;;
    w1/*) echo "200000 1200000" ;;
    w2/exact) echo "100000 500000" ;;
    w2/*) echo "200000 1000000" ;;
    w3/exact) echo "10000 60000" ;;
    w3/*) echo "100000 600000" ;;
  esac
}

declare -A marginal=()
if $check; then
  workloads=(w1)
  modes=(system off sampled)
else
  workloads=(w1 w2 w3)
  modes=(system off sampled exact)
fi

echo "| workload | mode | N1 | N2 | I refs at N1 | I refs at N2 | per operation | over System |"
echo "|---|---|---|---|---|---|---|---|"
for workload in "${workloads[@]}"; do
  threads=1
  [ "$workload" = w3 ] && threads=2
  for mode in "${modes[@]}"; do
    read -r n1 n2 <<<"$(sizes "$workload" "$mode")"
    i1=$(irefs "$mode" "$workload" "$n1")
    i2=$(irefs "$mode" "$workload" "$n2")
    per=$(awk -v a="$i1" -v b="$i2" -v n1="$n1" -v n2="$n2" -v t="$threads" \
      'BEGIN { printf "%.2f", (b - a) / ((n2 - n1) * t) }')
    marginal[$workload/$mode]=$per
    over=$(awk -v p="$per" -v s="${marginal[$workload/system]}" 'BEGIN { printf "%+.2f", p - s }')
    [ "$mode" = system ] && over="-"
    echo "| ${workload^^} | $mode | $n1 | $n2 | $i1 | $i2 | $per | $over |"
  done
done

if $check; then
  failed=0
  for mode in off sampled; do
    over=$(awk -v p="${marginal[w1/$mode]}" -v s="${marginal[w1/system]}" 'BEGIN { printf "%.2f", p - s }')
    limit=${budget[w1-$mode]}
    if awk -v o="$over" -v l="$limit" 'BEGIN { exit !(o > l) }'; then
      echo "instructions.sh: W1 $mode costs $over instructions per pair over System, over its budget of $limit ($budgets)" >&2
      failed=1
    else
      echo "W1 $mode: $over instructions per pair over System, budget $limit"
    fi
  done
  exit "$failed"
fi
