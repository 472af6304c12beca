#!/usr/bin/env bash
# Installs what xquant-server needs to build and test on Debian bookworm. Idempotent: a second
# run installs nothing and only checks. Also creates .venv (Python test tools) unless --no-venv.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libboost-dev libboost-system-dev nlohmann-json3-dev libspdlog-dev prometheus-cpp-dev
  libgtest-dev libcli11-dev libopenblas-dev liblapacke-dev libicu-dev
  python3 python3-venv python3-numpy python3-torch curl
)
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

if [ "${1:-}" != "--no-venv" ]; then
  # Debian's numpy and torch are the test references; pip adds the client-side tools.
  if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
  fi
  if ! .venv/bin/python -c "import openai, safetensors, gguf, tokenizers, pytest, requests, jinja2, sentencepiece, google.protobuf, prometheus_client" 2>/dev/null; then
    .venv/bin/pip install -q --disable-pip-version-check \
      "openai>=1.40" "safetensors>=0.4" "gguf>=0.10" "tokenizers>=0.19" "pytest>=7" requests "jinja2>=3.1" "sentencepiece>=0.1.99" "protobuf>=3.20" "prometheus-client>=0.17" "numpy<2"
  fi
fi
echo "bootstrap: ok"
