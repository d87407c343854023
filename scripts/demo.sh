#!/usr/bin/env bash
# The demo: installs dependencies, builds, generates text from models/tiny-m2 and prints its
# perplexity on held-out documentation text.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh release
echo "== moeq run (greedy, 64 tokens) =="
build/moeq run -m models/tiny-m2 -p "The Python standard library" -n 64 --greedy
echo
echo "== moeq eval ppl (dev_docs.txt, 32 windows of 512 tokens) =="
build/moeq eval ppl -m models/tiny-m2 -f data/eval/dev_docs.txt --ctx 512 --chunks 32
