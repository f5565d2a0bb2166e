#!/usr/bin/env bash
# The benchmark suite behind `just bench` (docs/PERFORMANCE.md): load scenarios at 100, 1,000
# and 10,000 actors, idle cost, start-up with an empty and a 100,000-run store, the divan
# micro-benchmarks and the container image size. Every scenario is bounded in time.
# Results: printed, and appended as JSON lines to target/bench/results.jsonl.
# Environment: BENCH_SECONDS (load window, default 30), BENCH_IDLE_SECONDS (default 60),
# BENCH_ACTORS (default "100 1000 10000").
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${BENCH_SECONDS:-30}
idle_seconds=${BENCH_IDLE_SECONDS:-60}
actors=${BENCH_ACTORS:-"100 1000 10000"}
export RUST_BACKTRACE=0

echo "== build (release)"
cargo build --release --locked --bin bot-server --example bench_load
driver=target/release/examples/bench_load
mkdir -p target/bench
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"

for n in $actors; do
    echo "== load: $n actors, 3-act narrative every second, ${seconds}s"
    timeout $((seconds + 240)) "$driver" load --actors "$n" --seconds "$seconds"
done

echo "== idle: demo config, ${idle_seconds}s"
timeout $((idle_seconds + 120)) "$driver" idle --seconds "$idle_seconds"

echo "== start-up: empty store, then 100,000 stored runs"
timeout 300 "$driver" startup --runs 0
timeout 600 "$driver" startup --runs 100000

echo "== micro-benchmarks (divan)"
cargo bench --locked --bench hot_paths

echo "== container image size"
if command -v podman >/dev/null 2>&1; then
    CONTAINERS_CONF=${CONTAINERS_CONF:-containers/containers.conf} podman images \
        --format '{{.Repository}}:{{.Tag}} {{.Size}}' 2>/dev/null | grep -i botticelli || echo "no botticelli image built (just build-container)"
else
    echo "podman not installed: image size not measured"
fi
