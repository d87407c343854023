#!/usr/bin/env bash
# One device call's whole plan, with elapsed seconds stamped on each step (device time is scarce):
# build + parity (and the MoE tests per PARITY_AB setting), then A/B decode runs of the knobs in AB, the batch-16 figure, and the sanitizers
# on the tests in SANITIZE_FILTER. Logs go to $OUT (or out/); the built binaries too (BIN_OUT=1),
# so that a second call can rerun them without building.
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
if [[ "${BIN_OUT:-0}" == 1 ]]; then cp build-dev/moeq build-dev/tests/test_backend_parity "$out/" 2>/dev/null; fi
stamp "sanitize"
bash bench/device_all.sh sanitize
stamp "done"
