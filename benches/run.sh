#!/usr/bin/env bash
# Runs every allocator benchmark and prints the tables for docs/BENCHMARKS.md.
# Usage: bash benches/run.sh            (from the workspace root; about 10 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p leakwatch-benches "$@"
echo
echo "## Time per operation (mean; ratio to the bare system allocator)"
cargo run -q --release -p leakwatch-benches --bin bench_summary
echo
echo "## Peak memory, retained growth (1M blocks from 50 sites)"
cargo run -q --release -p leakwatch-benches --bin memory_system
for mode in off sampled exact; do
  cargo run -q --release -p leakwatch-benches --bin memory_leakwatch -- "$mode"
done
cargo run -q --release -p leakwatch-benches --bin memory_dhat
echo
echo "## Snapshot cost"
cargo run -q --release -p leakwatch-benches --bin memory_leakwatch -- snapshot-cost
