#!/usr/bin/env bash
# Per-kernel time and DRAM traffic of the CUDA engine under Nsight Compute, over what
# scripts/gpu_pack.sh packed into .gpu/: one xquant-bench process per phase (random weights in the
# Llama-3-8B shape, 4 layers), each kernel's duration and bytes read summed by kernel name and grid,
# so a weight-streaming product shows its achieved bandwidth. Prints the tables; logs to $OUT.
#   ./bench/gpu_kernels.sh
# Phases: "decode1" batch 1 decode steps (tiny context: the weight products dominate), "prefill"
# three warm 512-token prompts (kernels of the 16-token set-up prompt have other grids). Set
# PHASES to run fewer.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh /tmp/gpu_kernels
B=.gpu/bin/xquant-bench
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "gpu_kernels: no ncu on this machine"; exit 1; }
METRICS=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum
profile() {  # label launch-skip launch-count -- bench args
  local label=$1 skip=$2 count=$3; shift 4
  "$NCU" --clock-control none --metrics "$METRICS" --csv --page raw --launch-skip "$skip" \
    --launch-count "$count" "$B" --device cuda --shape llama3-8b --layers 4 "$@" \
    >"$OUT/ncu_$label.csv" 2>"$OUT/ncu_$label.err"
  python3 - "$OUT/ncu_$label.csv" "$label" <<'PY'
import csv, sys, collections
path, label = sys.argv[1], sys.argv[2]
lines = [l for l in open(path) if l.startswith('"')]
rows = list(csv.DictReader(lines))
rows = [r for r in rows if r.get("Kernel Name") and r.get("gpu__time_duration.sum", "").replace(".", "").replace(",", "").isdigit()]
def num(r, k):
    return float(r[k].replace(",", ""))
# Units: ncu's raw page gives the unit in the second header row; time in ns, bytes in bytes
# unless that row says otherwise.
agg = collections.OrderedDict()
for r in rows:
    key = (r["Kernel Name"][:60], r.get("Grid Size", ""))
    a = agg.setdefault(key, [0, 0.0, 0.0])
    a[0] += 1
    a[1] += num(r, "gpu__time_duration.sum")
    a[2] += num(r, "dram__bytes_read.sum") + num(r, "dram__bytes_write.sum")
total = sum(a[1] for a in agg.values())
print(f"\n### {label}: {len(rows)} kernels, {total/1e6:.3f} ms of kernel time")
print("| kernel | grid | calls | total us | % | us/call | GB/s |")
print("|---|---|---|---|---|---|---|")
for (name, grid), (n, t, b) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:25]:
    print(f"| {name} | {grid} | {n} | {t/1e3:.1f} | {100*t/total:.1f} | {t/n/1e3:.2f} | {b/t:.0f} |")
PY
}
# One decode launch of the fp16 paged attention kernel at 32 x 4K in detail (speed of light,
# occupancy, warp stalls): the 32 prompts take the first 32 launches.
attn_detail() {
  "$NCU" --clock-control none -k regex:paged_attention --launch-skip 34 --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
    "$B" --device cuda --shape llama3-8b --layers 1 --batch 32 --context 4096 --chunk 4096 --steps 2 \
    --prefill 0 --formats fp16 >"$OUT/ncu_attn.txt" 2>&1
  grep -E "paged_attention|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Achieved Occupancy|Theoretical Occupancy|Registers Per|Shared Memory Configuration Size|Dynamic Shared|Block Limit|Grid Size|Issue Slots Busy|Stall|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth|Executed Ipc" "$OUT/ncu_attn.txt" | head -60
}
PHASES="${PHASES:-decode1 prefill attn}"
for ph in $PHASES; do
  case $ph in
    decode1) profile decode1 0 2000 -- --batch 1 --context 16 --steps 4 --prefill 0 --formats fp16 ;;
    prefill) profile prefill 0 4000 -- --batch 1 --context 16 --steps 1 --prefill 512 --formats fp16 ;;
    attn) attn_detail ;;
  esac
done
