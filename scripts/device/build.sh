#!/usr/bin/env bash
# Run ON the GPU machine (from the repository root, with .devdeps carried): unpacks the carried
# packages into /tmp/moeq-deps (never into /), then configures and builds build-dev/ for Hopper.
# Afterwards: export LD_LIBRARY_PATH as printed (libfmt is a shared library).
set -euo pipefail
cd "$(dirname "$0")/../.."
deps=/tmp/moeq-deps
if [ ! -d "$deps/usr" ]; then
  for f in .devdeps/*.deb; do dpkg -x "$f" "$deps"; done
fi
export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
cmake -S . -B build-dev -DCMAKE_BUILD_TYPE=Release -DMOEQ_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DCMAKE_PREFIX_PATH="$deps/usr" -DMOEQ_ARCH=native -DMOEQ_WERROR=OFF >/dev/null
cmake --build build-dev -j "$(nproc)" "$@"
echo "export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu:\$LD_LIBRARY_PATH"
