#!/usr/bin/env bash
# Configures and builds one preset (default: release, into build/; the CLI lands at build/moeq).
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
jobs="${MOEQ_JOBS:-$(nproc)}"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$jobs"
