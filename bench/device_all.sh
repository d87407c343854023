#!/usr/bin/env bash
# The GPU machine's whole job in one call (device time is scarce): build for Hopper, run the
# backend parity tests (with `sanitize`: under compute-sanitizer memcheck and racecheck; SANITIZE_TOOLS
# and SANITIZE_FILTER narrow it), then the synthetic MiniMax-M2 benchmarks. Logs go to $OUT (or out/).
#   bash bench/device_all.sh [parity] [sanitize] [bench] [pdloff] [nostream] [batch] [ab] [stepsync] [fulldepth] [trace] [timeline] [attntl] [tmaissue] [gemvtall] [l2probe] [probe] [chain] [ncu|ncuattn]
#   (default: parity sanitize bench batch). pdloff / nostream: the decode without programmatic
#   dependent launch / with the register-loading expert kernels, for comparison; trace: per-kernel
#   timeline of the graph-replayed step (bench/kernel_trace.cpp); timeline: the streaming MoE
#   kernel's phase stamps per block (TL_AB settings); attntl: the same for the decode attention;
#   gemvtall: lm_head's product by each GEMV kernel (bench/probes/gemv_tall.cu); fulldepth: all 62
#   layers (bench --full-depth), prefill without and with cuBLAS; stepsync: the decode pipelined
#   and with --sync-steps, alternating;
#   tmaissue: the streaming ring's rate by
#   the number of bulk copies per tile (bench/probes/tma_issue.cu); probe: read bandwidth
#   of the MoE access patterns (bench/probes/read_patterns.cu); l2probe: whether bulk L2
#   prefetches land (bench/probes/l2_prefetch.cu); ncu: hardware counters; ab: the
#   decode benchmark once per knob setting of AB (see below).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-out}"
mkdir -p "$out"
what="${*:-parity sanitize bench batch}"   # also: ncu (hardware counters of the decode kernels)
# The server is not part of the GPU work; keep its sources out of this build if present.
targets="moeq test_backend_parity"
[[ "${*:-}" == *trace* ]] && targets="$targets moeq_kernel_trace"
[[ "${*:-}" == *probe* && "${*:-}" != *l2probe* ]] && targets="$targets read_patterns_probe"
[[ "${*:-}" == *tmaissue* ]] && targets="$targets tma_issue_probe"
[[ "${*:-}" == *l2probe* ]] && targets="$targets l2_prefetch_probe"
[[ "${*:-}" == *chain* || "${*:-}" == *ncuattn* ]] && targets="$targets chain_latency_probe"
[[ "${*:-}" == *gemvtall* ]] && targets="$targets gemv_tall_probe"
bash scripts/device/build.sh --target $targets 2>&1 | grep -E "error|warning: unused" | head -20
export LD_LIBRARY_PATH=/tmp/moeq-deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$out/gpu.txt"
if [[ $what == *parity* ]]; then
  timeout 300 build-dev/tests/test_backend_parity 2>&1 | tee "$out/parity.log" | grep -E "FAILED|PASSED|error|relative" | head -20
  # The dense prefill products again on the fused pipeline (cuBLAS takes them by default).
  MOEQ_GEMM_CUBLAS=0 timeout 120 build-dev/tests/test_backend_parity --gtest_filter='Parity.Linear*:Parity.Router*:Parity.TinyModel*' \
    2>&1 | tee "$out/parity-fused.log" | grep -E "FAILED|PASSED|error" | head -10
fi
if [[ $what == *sanitize* ]]; then
  # The sanitizers slow kernels down 10-100x; SANITIZE_FILTER narrows the set if needed.
  f="${SANITIZE_FILTER:-Parity.*}"
  for tool in ${SANITIZE_TOOLS:-memcheck racecheck}; do
    timeout 330 compute-sanitizer --tool $tool --error-exitcode 9 build-dev/tests/test_backend_parity \
      --gtest_filter="$f" > "$out/sanitize-$tool.log" 2>&1
    echo "compute-sanitizer $tool: exit $? ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitize-$tool.log" | tail -1))"
  done
fi
if [[ $what == *bench* ]]; then
  build-dev/moeq bench --synthetic minimax-m2 --preset mq4 --prompt 2048 --gen 128 --profile --json 2>&1 | tee "$out/bench-mq4.log"
fi
if [[ $what == *pdloff* ]]; then  # the same decode without programmatic dependent launch
  MOEQ_PDL=0 build-dev/moeq bench --synthetic minimax-m2 --preset mq4 --prompt 2048 --gen 128 2>&1 | tee "$out/bench-mq4-nopdl.log" | grep -E "decode|achieved"
fi
if [[ $what == *nostream* ]]; then  # the same decode with the register-loading expert kernels
  MOEQ_MOE_STREAM=0 build-dev/moeq bench --synthetic minimax-m2 --preset mq4 --prompt 2048 --gen 128 2>&1 | tee "$out/bench-mq4-nostream.log" | grep -E "decode|achieved"
fi
if [[ $what == *batch* ]]; then
  build-dev/moeq bench --synthetic minimax-m2 --preset mq4 --prompt 2048 --gen 64 --batch 16 --json 2>&1 | tee "$out/bench-mq4-b16.log" | grep -E "decode|prefill|layers"
fi
if [[ $what == *ab* ]]; then
  # Knob comparisons in one call: AB="MOEQ_X=0;MOEQ_X=1;..." runs the decode benchmark once per
  # setting, in that order (repeat a setting to see the run-to-run spread).
  IFS=';' read -ra settings <<< "${AB:-MOEQ_MOE_STREAM=1;MOEQ_MOE_STREAM=0}"
  for cfg in "${settings[@]}"; do
    echo "== $cfg"
    env $cfg build-dev/moeq bench --synthetic minimax-m2 --preset mq4 --prompt 2048 --gen ${AB_GEN:-128} 2>&1 \
      | tee -a "$out/ab.log" | grep -E "decode|achieved"
  done
fi
if [[ $what == *trace* ]]; then
  # Per-kernel timeline of the graph-replayed decode steps (CUPTI, bench/kernel_trace.cpp): where
  # the step's time goes with the kernels overlapping as they do in the graph.
  CUDA_INJECTION64_PATH=$PWD/build-dev/bench/libmoeq_kernel_trace.so MOEQ_TRACE_SEQUENCE=${TRACE_SEQUENCE:-26} \
    build-dev/moeq bench --synthetic minimax-m2 --preset mq4 --prompt 2048 --gen 128 2>&1 | tee "$out/trace-mq4.log" \
    | grep -vE "^(loading|building)"
fi
# A stamped build (-D$1, in $2/) of moeq, run once per knob setting of TL_AB (as AB; default $3)
# without graphs; prints the summary that starts with $4 (logged to $out/$5): docs/PERF.md.
stamped_runs() {
  BUILD_DIR=$2 CMAKE_ARGS="-DCMAKE_CUDA_FLAGS=-D$1" bash scripts/device/build.sh --target moeq 2>&1 \
    | grep -E "error" | head -20
  IFS=";" read -ra settings <<< "${TL_AB:-$3}"
  for cfg in "${settings[@]}"; do
    echo "== $4 $cfg"
    env $cfg $2/moeq bench --synthetic minimax-m2 --preset mq4 --prompt 2048 --gen 24 --no-graphs 2>&1 \
      | tee -a "$out/$5" | grep -A14 "$4"
  done
}
# Phase stamps of the streaming MoE kernel per block.
[[ $what == *timeline* ]] && stamped_runs MOEQ_MOE_TIMELINE build-tl MOEQ_MOE_STREAM=1 "moe_stream timeline" timeline.log
# Step stamps of the decode attention and its merge per block.
[[ $what == *attntl* ]] && stamped_runs MOEQ_ATTN_TIMELINE build-atl MOEQ_ATTN_EARLY=1 "attention timeline" attn-timeline.log
if [[ $what == *stepsync* ]]; then
  # The decode pipelined (default) and with each step's tokens read before the next is queued
  # (--sync-steps), alternating, STEPSYNC_PAIRS times (default 3).
  for ((i = 0; i < ${STEPSYNC_PAIRS:-3}; ++i)); do
    for flag in "" --sync-steps; do
      echo "== decode ${flag:-pipelined}"
      build-dev/moeq bench --synthetic minimax-m2 --preset mq4 --prompt 2048 --gen 128 $flag 2>&1 \
        | tee -a "$out/stepsync.log" | grep -E "decode:|achieved"
    done
  done
fi
if [[ $what == *fulldepth* ]]; then
  # All 62 layers (bench --full-depth: the weight sets that fit, reused cyclically), prefill by the
  # fused tensor-core GEMM and by cuBLAS (FD_AB overrides the settings).
  IFS=';' read -ra settings <<< "${FD_AB:-MOEQ_GEMM_CUBLAS=0;MOEQ_GEMM_CUBLAS=1}"
  for cfg in "${settings[@]}"; do
    echo "== full depth $cfg"
    env $cfg build-dev/moeq bench --synthetic minimax-m2 --preset mq4 --prompt 2048 --gen 128 --full-depth 2>&1 \
      | tee -a "$out/bench-full-depth.log" | grep -E "layers|prefill|decode|achieved"
  done
fi
if [[ $what == *gemvtall* ]]; then  # lm_head's product by each GEMV kernel against a plain read (bench/probes/gemv_tall.cu)
  timeout 120 build-dev/bench/gemv_tall_probe 2>&1 | tee "$out/gemv-tall.log"
fi
if [[ $what == *tmaissue* ]]; then  # bulk copies per tile (bench/probes/tma_issue.cu)
  timeout 120 build-dev/bench/tma_issue_probe 2>&1 | tee "$out/tma-issue.log"
fi
if [[ $what == *l2probe* ]]; then  # bulk L2 prefetches: do they land, what do they save (bench/probes/l2_prefetch.cu)
  timeout 120 build-dev/bench/l2_prefetch_probe 2>&1 | tee "$out/l2-prefetch.log"
fi
if [[ $what == *probe* && $what != *l2probe* ]]; then  # read bandwidth of the MoE access patterns (bench/probes/read_patterns.cu)
  timeout 240 build-dev/bench/read_patterns_probe 2>&1 | tee "$out/read-patterns.log"
fi
if [[ $what == *chain* ]]; then  # per-launch cost of the short decode kernels in a PDL chain
  timeout 120 build-dev/bench/chain_latency_probe 2>&1 | tee "$out/chain-latency.log"
fi
if [[ $what == *ncuattn* ]]; then
  # Hardware counters and per-instruction stall samples of the decode attention and its merge,
  # from the chain probe (ncu serialises the launches; caches flushed between passes).
  timeout 200 ncu --clock-control none --set full --import-source no --kernel-name regex:"attention_decode|decode_merge" \
    --launch-skip 4 --launch-count 2 -o "$out/attention" build-dev/bench/chain_latency_probe > "$out/ncu-attention-run.log" 2>&1
  echo "ncu attention: exit $?"
  ncu -i "$out/attention.ncu-rep" --page source --csv --print-source sass > "$out/attention-sass.csv" 2>&1
  ncu -i "$out/attention.ncu-rep" > "$out/attention-details.txt" 2>&1
  grep -E "Duration|Issued Instructions  |Registers Per|Achieved Active|Warp Cycles Per Issued|No Eligible" "$out/attention-details.txt"
elif [[ $what == *ncu* ]]; then
  # Hardware counters of one decode step's kernels (1 layer, no graphs so kernels are separate).
  k='regex:attention_decode|moe_stream|w13_decode|w2_decode|w13_mma|w2_mma|gemv_kernel|qk_norm_rope|router_kernel|rmsnorm'
  timeout 300 ncu --clock-control none --kernel-name "$k" --launch-skip 40 --launch-count 14 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
    build-dev/moeq bench --synthetic minimax-m2 --layers 1 --preset mq4 --prompt 512 --gen 24 --no-graphs \
    > "$out/ncu.log" 2>&1
  echo "ncu: exit $?"
  python3 - "$out/ncu.log" <<'PY'
import re, sys
rows, cur = [], None
keys = {"Duration": "dur", "DRAM Throughput": "dram", "Compute (SM) Throughput": "sm",
        "Achieved Occupancy": "occ", "Registers Per Thread": "regs", "Grid Size": "grid",
        "Warp Cycles Per Issued Instruction": "cpi"}
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"\s+(\S.*?) \(\d+, \d+, \d+\)x\(\d+, \d+, \d+\)", line)
    if m:
        cur = {"name": m.group(1)[:44]}; rows.append(cur); continue
    for k, short in keys.items():
        m = re.match(r"\s+" + re.escape(k) + r"\s+(\S+)\s+([\d.,]+)", line)
        if m and cur is not None: cur[short] = m.group(2) + m.group(1).replace("usecond", "us").replace("%", "%")
    m = re.search(r"(Stall \w+|stalled \w+ [\w ]+?) ", line)
for r in rows:
    print(" ".join(f"{k}={r.get(k,'?')}" for k in ["name", "dur", "dram", "sm", "occ", "regs", "grid", "cpi"]))
PY
  grep -iE "stall|bottleneck|is stalled" "$out/ncu.log" | sed -E 's/ +/ /g' | sort | uniq -c | sort -rn | head -20
fi
