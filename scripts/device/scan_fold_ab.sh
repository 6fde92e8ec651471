#!/bin/bash
# A/B of the backward's `fold`
# gradient loop (MAMBA_SSM_BWD=fold) against the default, fp32 and bf16, interleaved twice.
# Run from the repo root with carry ["device-bin/k4"]: bash device-bin/k4/run3.sh
# Kept in the repo as scripts/device/scan_fold_ab.sh; the binary comes from
#   cargo build --release -p mamba-ssm --features cuda --example scan_gpu_bench
# stripped and copied next to a copy of this script (e.g. device-bin/k4/).
cd "$(dirname "$0")"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
G='512,1536,128,16;128,1536,512,16;32,1536,2048,16;8,1536,8192,16'
t() { local name=$1; shift; echo "=== $name: $*"; env "$@" 2>&1 | tee -a $OUT/all.log | grep -E "^\| \[|check|settings|panicked|error|Error" ; }
SECONDS=0
t check_fold MAMBA_SSM_BWD=fold timeout 150 ./scan_gpu_bench cuda --no-sweep --fp32-only "--grid=128,1536,512,16"
echo "[$SECONDS s]"
for r in 1 2; do
t default timeout 90 ./scan_gpu_bench cuda --no-sweep --no-check "--grid=$G"
t fold MAMBA_SSM_BWD=fold timeout 90 ./scan_gpu_bench cuda --no-sweep --no-check "--grid=$G"
echo "[$SECONDS s]"
done
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for v in default fold; do
  env MAMBA_SSM_BWD=$v timeout 60 $NCU --kernel-name regex:scan_bwd --launch-skip 2 --launch-count 1 --section LaunchStats --section Occupancy --section SpeedOfLight --section InstructionStats ./scan_gpu_bench cuda --no-sweep --no-check --fp32-only "--grid=128,1536,512,16" > $OUT/ncu_bwd_$v.txt 2>&1
  echo "--- ncu scan_bwd $v"
  grep -E "Registers Per|Achieved Occupancy|Duration|Compute \(SM\)|Memory Throughput|Executed Instructions  |Issued Instructions  " $OUT/ncu_bwd_$v.txt
done
echo "[$SECONDS s]"
