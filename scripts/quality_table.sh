#!/usr/bin/env bash
# Reproduces docs/QUALITY.md: converts models/tiny-m2 with every preset at the full (default)
# calibration settings, plus mq2-lloyd-down-lloyd2 (mq2-lloyd with the down projection also at
# lloyd2_g32, not a preset), measures each against the original on the four dev domains with
# `moeq eval kld`, draws docs/quality.svg with `moeq eval compare`, and prints the markdown tables.
#
#   bash scripts/quality_table.sh                 # converted models under /tmp/moeq-quality
#   OUT=/tmp/q CHUNKS=32 CTX=512 bash scripts/quality_table.sh
#
# An existing $OUT/<model> is reused only if its config says it was made with that recipe from the
# default calibration (16384 tokens of 512 from calib_mixed.txt, routed statistics); otherwise the
# script stops. Needs build/moeq (or MOEQ=...) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

MOEQ=${MOEQ:-build/moeq}
OUT=${OUT:-/tmp/moeq-quality}
REF=models/tiny-m2
CALIB=data/calib/calib_mixed.txt
CTX=${CTX:-512}
CHUNKS=${CHUNKS:-32}
CHART_DOMAIN=${CHART_DOMAIN:-docs}
SVG=${SVG:-docs/quality.svg}
PRESETS=(awq-w4g32 rtn-w4g32 mq4 mq3-lloyd mq3 mq2-lloyd mq2)
VARIANT=mq2-lloyd-down-lloyd2
DOMAINS=(docs pycode cheaders gcide)

[ -x "$MOEQ" ] || { echo "quality_table.sh: $MOEQ not found (build first: cmake --build build --target moeq)" >&2; exit 1; }
mkdir -p "$OUT"

# reusable DIR NAME: DIR was converted with recipe NAME and the default calibration (else: stop).
reusable() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
q = json.load(open(sys.argv[1] + "/config.json"))["quantization_config"]
c = q["calibration"]
ok = (q.get("quant_method") == "moeq" and q["recipe"]["name"] == sys.argv[2] and c["tokens"] == 16384
      and c["ctx"] == 512 and not c["all_experts"] and c["file"] == "calib_mixed.txt")
if not ok:
    sys.exit(f"quality_table.sh: {sys.argv[1]} exists but was not made by {sys.argv[2]} with the "
             "default calibration; remove it or choose another OUT")
EOF
  echo "reusing $1" >&2
}

# ---- convert (default calibration: --calib-tokens 16384 --calib-ctx 512 --awq-sample-rows 512) ----
for p in "${PRESETS[@]}"; do
  if [ -e "$OUT/$p" ]; then
    reusable "$OUT/$p" "$p"
  else
    echo "converting $p ..." >&2
    "$MOEQ" convert -i "$REF" -o "$OUT/$p" --preset "$p" --calib "$CALIB" -q > "$OUT/convert-$p.log"
    cat "$OUT/convert-$p.log" >&2
  fi
done

# ---- the variant: mq2-lloyd's recipe (as recorded in its config.json) with the experts' w2 rule at
# lloyd2_g32, everything else (AWQ flags, grid) unchanged ----
if [ -e "$OUT/$VARIANT" ]; then
  reusable "$OUT/$VARIANT" "$VARIANT"
else
  python3 - "$OUT/mq2-lloyd/config.json" "$OUT/$VARIANT.recipe.json" "$VARIANT" <<'EOF'
import json, re, sys
r = json.load(open(sys.argv[1]))["quantization_config"]["recipe"]
w2 = next(x for x in r["rules"] if re.search(x["match"], "model.layers.0.block_sparse_moe.experts.0.w2"))
assert w2["format"] == "int4_g32" and not re.search(w2["match"], "model.layers.0.block_sparse_moe.experts.0.w1")
w2["format"] = "lloyd2_g32"
r["name"] = sys.argv[3]
open(sys.argv[2], "w").write(json.dumps(r, indent=1) + "\n")
EOF
  echo "converting $VARIANT ($OUT/$VARIANT.recipe.json) ..." >&2
  "$MOEQ" convert -i "$REF" -o "$OUT/$VARIANT" --recipe "$OUT/$VARIANT.recipe.json" --calib "$CALIB" -q \
    > "$OUT/convert-$VARIANT.log"
  cat "$OUT/convert-$VARIANT.log" >&2
fi
MODELS=("${PRESETS[@]}" "$VARIANT")

# ---- KLD / top-1 / PPL per model and domain ----
for p in "${MODELS[@]}"; do
  for d in "${DOMAINS[@]}"; do
    echo "eval kld $p on dev_$d ..." >&2
    "$MOEQ" eval kld -m "$OUT/$p" --ref "$REF" -f "data/eval/dev_$d.txt" --ctx "$CTX" --chunks "$CHUNKS" --json \
      2> /dev/null | tail -n 1 > "$OUT/kld-$p-$d.json"
  done
done

# ---- chart (one domain) and the bpw / size report ----
args=()
for p in "${MODELS[@]}"; do args+=(-m "$OUT/$p"); done
echo "eval compare on dev_$CHART_DOMAIN -> $SVG ..." >&2
"$MOEQ" eval compare --ref "$REF" "${args[@]}" -f "data/eval/dev_$CHART_DOMAIN.txt" --ctx "$CTX" \
  --chunks "$CHUNKS" --svg "$SVG" --json "$OUT/compare.json" 2> /dev/null > "$OUT/compare.txt"

# ---- markdown ----
python3 - "$OUT" "$REF" "$CTX" "$CHUNKS" "$CHART_DOMAIN" "${MODELS[*]}" "${DOMAINS[*]}" "$VARIANT" <<'EOF'
import glob, json, os, sys
out, ref, ctx, chunks, chart_domain = sys.argv[1:6]
presets, domains, variant = sys.argv[6].split(), sys.argv[7].split(), sys.argv[8]
name = {p: p + (" (not a preset)" if p == variant else "") for p in presets}
cmp = json.load(open(f"{out}/compare.json"))
by_label = {m["label"]: m for m in cmp["models"]}

def shard_mib(d):  # the safetensors weight shards on disk (what a model's size is made of)
    return sum(os.path.getsize(f) for f in glob.glob(f"{d}/model-*.safetensors")) / 2**20

kld = {(p, d): json.load(open(f"{out}/kld-{p}-{d}.json")) for p in presets for d in domains}
for p in presets:  # the compare run and the kld run of the chart's domain must agree exactly
    a, b = by_label[p], kld[(p, chart_domain)]
    assert a["kld_mean"] == b["kld_mean"] and a["ppl"] == b["ppl_quant"], p
ppl_ref = {d: kld[(presets[0], d)]["ppl_ref"] for d in domains}
for p in presets:
    for d in domains:
        assert kld[(p, d)]["ppl_ref"] == ppl_ref[d]

rules = {}
for p in presets:
    r = json.load(open(f"{out}/{p}/config.json"))["quantization_config"]["recipe"]["rules"]
    rules[p] = [x["format"] + (" +AWQ" if x["awq"] else "") + (" RTN" if x.get("rtn") else "") for x in r]

print(f"Settings: `moeq eval kld --ctx {ctx} --chunks {chunks}` on each file "
      f"({kld[(presets[0], domains[0])]['positions']} predicted positions per domain).\n")
print("| model | experts w1/w3 | experts w2 | attention | router | embed / lm_head | bpw | size (MiB) |")
print("| --- | --- | --- | --- | --- | --- | ---: | ---: |")
def original_format(module):  # from the original checkpoint's safetensors headers
    import struct
    for f in sorted(glob.glob(f"{ref}/model-*.safetensors")):
        with open(f, "rb") as fh:
            h = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
        if module + ".weight" in h:
            dt = h[module + ".weight"]["dtype"]
            return {"F8_E4M3": "fp8_b128", "BF16": "bf16", "F32": "f32"}.get(dt, dt)
    return "?"
orig = [original_format(m) for m in ("model.layers.0.block_sparse_moe.experts.0.w1",
                                     "model.layers.0.block_sparse_moe.experts.0.w2", "model.layers.0.self_attn.q_proj",
                                     "model.layers.0.block_sparse_moe.gate", "lm_head")]
print("| tiny-m2 (original) | " + " | ".join(orig) + f" | {cmp['reference']['bpw']:.3f} | {shard_mib(ref):.2f} |")
for p in presets:
    print(f"| {name[p]} | " + " | ".join(rules[p]) + f" | {by_label[p]['bpw']:.3f} | {shard_mib(out + '/' + p):.2f} |")
print()
print("KLD mean per domain (nats per token, vs the original):\n")
print("| model | bpw | " + " | ".join(f"dev_{d}" for d in domains) + " |")
print("| --- | ---: | " + " | ".join("---:" for _ in domains) + " |")
for p in presets:
    print(f"| {name[p]} | {by_label[p]['bpw']:.3f} | " + " | ".join(f"{kld[(p, d)]['kld_mean']:.5f}" for d in domains) + " |")
for d in domains:
    print(f"\n### dev_{d}.txt\n")
    print("| model | bpw | size (MiB) | KLD mean | KLD p99 | top-1 | PPL |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| tiny-m2 (original) | {cmp['reference']['bpw']:.3f} | {shard_mib(ref):.2f} | 0 | 0 | 100% | {ppl_ref[d]:.4f} |")
    for p in presets:
        k = kld[(p, d)]
        print(f"| {name[p]} | {by_label[p]['bpw']:.3f} | {shard_mib(out + '/' + p):.2f} | {k['kld_mean']:.5f} | "
              f"{k['kld_p99']:.5f} | {100 * k['top1']:.2f}% | {k['ppl_quant']:.4f} |")
EOF
