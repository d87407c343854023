#!/usr/bin/env bash
# Run ON the GPU machine (from the repository root, with .devdeps carried): unpacks the carried
# packages into /tmp/moeq-deps (never into /), then configures and builds build-dev/ for Hopper.
# Afterwards: export LD_LIBRARY_PATH as printed (libfmt is a shared library).
# BUILD_DIR (default build-dev) and CMAKE_ARGS (extra -D options) make a second configuration,
# e.g. BUILD_DIR=build-ab CMAKE_ARGS=-DMOEQ_L2_EVICT_NORMAL=ON for an A/B measurement.
set -euo pipefail
cd "$(dirname "$0")/../.."
deps=/tmp/moeq-deps
if [ ! -d "$deps/usr" ]; then
  for f in .devdeps/*.deb; do dpkg -x "$f" "$deps"; done
fi
export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
dir="${BUILD_DIR:-build-dev}"
# shellcheck disable=SC2086
cmake -S . -B "$dir" ${CMAKE_ARGS:-} -DCMAKE_BUILD_TYPE=Release -DMOEQ_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DCMAKE_PREFIX_PATH="$deps/usr" -DMOEQ_ARCH=native -DMOEQ_WERROR=OFF >/dev/null
cmake --build "$dir" -j "$(nproc)" "$@"
echo "export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu:\$LD_LIBRARY_PATH"
