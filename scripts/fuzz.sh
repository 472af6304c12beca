#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz with clang (AddressSanitizer + UBSan) and runs each for
# SECONDS seconds (default 600), the new inputs going to .cache/fuzz/<target> (git-ignored), seeded
# from tests/fuzz/corpus (past findings included) and the real chat templates.
#   ./scripts/fuzz.sh [seconds] [target...]     targets: request_parsers chat_template
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-600}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(request_parsers chat_template)
CXX="${CXX:-clang++-14}"
command -v "$CXX" >/dev/null || { echo "fuzz: $CXX not found (apt install clang-14 libclang-rt-14-dev)"; exit 1; }
OUT=build/fuzz
mkdir -p "$OUT"
FLAGS=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -I.)
TEMPLATE_SRCS=(engine/tokenizer/chat_template*.cpp engine/tokenizer/utf8.cpp)
SCHEMA_SRCS=(server/completions_schema.cpp server/chat_schema.cpp server/json_params.cpp
             server/param_support.cpp server/openai_errors.cpp)
for t in "${TARGETS[@]}"; do
  case "$t" in
    request_parsers) srcs=("${SCHEMA_SRCS[@]}" "${TEMPLATE_SRCS[@]}"); seeds=tests/fuzz/corpus/request_parsers ;;
    chat_template) srcs=("${TEMPLATE_SRCS[@]}"); seeds="tests/fuzz/corpus/chat_template tests/data/chat_templates" ;;
    *) echo "fuzz: unknown target $t"; exit 2 ;;
  esac
  "$CXX" "${FLAGS[@]}" "tests/fuzz/${t}_fuzz.cpp" "${srcs[@]}" -licuuc -licui18n -o "$OUT/${t}_fuzz"
  mkdir -p ".cache/fuzz/$t"
  echo "fuzz: $t for ${SECONDS_EACH}s"
  "$OUT/${t}_fuzz" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -print_final_stats=1 ".cache/fuzz/$t" $seeds 2>&1 | tail -n 12
done
