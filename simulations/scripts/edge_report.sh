#!/usr/bin/env bash
# The edge benchmark's full report (issue 5): N = 8 and 16 hosts,
# U0 = 20 and 100 Mbit/s, u = d = 100 Mbit/s, a 64 MiB single-layer and a
# 64 MiB six-layer image; each scenario pulled straight from the origin and
# through shoal. Writes the markdown of every run to $out/report.md and an
# SVG of completion times per run to $out/edge-<N>-<U0>-<image>.svg.
#
#   sudo bash simulations/scripts/edge_report.sh [out-dir] [modes]
#
# Needs root (network namespaces). Takes about 40 minutes, most of it the
# direct pulls of 16 hosts through 20 Mbit/s.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$root/docs/img}"
modes="${2:-direct,shoal}"
target="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$out"
report="$out/report.md"
: >"$report"
cargo build --release -p shoal -p shoal-simulations --manifest-path "$root/Cargo.toml"
for hosts in 8 16; do
    for origin in 20 100; do
        for image in single-64m multi-64m; do
            echo "== N=$hosts U0=$origin $image" | tee -a "$report"
            SHOAL_BIN="$target/release/shoal" "$target/release/edge_bench" run \
                --hosts "$hosts" --origin-mbit "$origin" --up-mbit 100 --down-mbit 100 \
                --image "$image" --modes "$modes" \
                --plot "$out/edge-$hosts-$origin-$image.svg" --report "$report" ||
                echo "run failed: N=$hosts U0=$origin $image" | tee -a "$report"
        done
    done
done
echo "report: $report"
