#!/usr/bin/env bash
# Installs the Debian packages moeq builds against (idempotent; skips what is already there).
# Used by the README quick start and by .ci/run.
set -euo pipefail
pkgs=(build-essential cmake pkg-config nlohmann-json3-dev libcli11-dev libfmt-dev libpcre2-dev
      libgtest-dev libgmock-dev libbenchmark-dev python3 python3-pip)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
