#!/usr/bin/env bash
# Run HERE (not on the GPU machine): downloads the Debian packages moeq builds against into
# .devdeps/ (git-ignored) so that a device `run` can carry them (carry: [".devdeps"]). The GPU
# machine cannot reach any package registry.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .devdeps
cd .devdeps
apt-get download libfmt-dev libfmt9 nlohmann-json3-dev libcli11-dev libpcre2-dev libpcre2-8-0 libgtest-dev 2>/dev/null
ls -1
