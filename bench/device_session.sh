#!/usr/bin/env bash
# One device call's whole plan, with elapsed seconds stamped on each step (device time is scarce):
# build + parity (and the MoE tests again per PARITY_AB setting), then A/B decode runs of the knobs
# in AB, the batch-16 figure, and the sanitizers on the tests in SANITIZE_FILTER. Logs go to $OUT
# (or out/). (The built binaries are over the device tool's 16 MiB a file: a second call rebuilds.)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-out}"; mkdir -p "$out"
t0=$(date +%s)
stamp() { echo "[+$(($(date +%s) - t0)) s] $*"; }
stamp "build + parity"
bash bench/device_all.sh parity
# The MoE parity tests again under each knob setting of PARITY_AB ("MOEQ_X=1;MOEQ_Y=0").
IFS=';' read -ra psets <<< "${PARITY_AB:-}"
for cfg in "${psets[@]}"; do
  echo "== parity with $cfg"
  env $cfg timeout 200 build-dev/tests/test_backend_parity --gtest_filter='Parity.Moe*' 2>&1 | tee -a "$out/parity-ab.log" \
    | grep -E "FAILED|PASSED|error" | head -10
done
stamp "A/B"
bash bench/device_all.sh ab
stamp "batch"
bash bench/device_all.sh batch
stamp "sanitize"
bash bench/device_all.sh sanitize
stamp "done"
