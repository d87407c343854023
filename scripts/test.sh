#!/usr/bin/env bash
# The test command: installs dependencies, builds (release), runs every test with ctest, then the
# input-validation tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
# MOEQ_SKIP_ASAN=1 skips the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
python3 -m pip install -q --disable-pip-version-check -r scripts/requirements-test.txt 2>&1 | grep -v "as the 'root' user" || true
bash scripts/build.sh release
jobs="${MOEQ_JOBS:-$(nproc)}"
ctest --test-dir build --output-on-failure -j "$jobs"
if [ "${MOEQ_SKIP_ASAN:-0}" != "1" ]; then
  bash scripts/build.sh asan
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -R "$(cat scripts/asan-tests.txt | paste -sd'|')"
fi
