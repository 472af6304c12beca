#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (ASan + UBSan, only the sources each
# target reaches; tests/fuzz/CMakeLists.txt, into build/fuzz) and runs each for SECONDS seconds
# (default 600), seeded from tests/fuzz/corpus/<target> (past findings included; the chat
# templates also from tests/data/chat_templates). New inputs go to .cache/fuzz/<target>, a
# finding to .cache/fuzz/findings/ and the exit status is non-zero.
#   ./scripts/fuzz.sh [seconds] [target...]
#   ./scripts/fuzz.sh --ci [seconds]   every target for `seconds` (default 20) over the committed
#                                      corpus only; skipped with a message when clang is missing
set -euo pipefail
cd "$(dirname "$0")/.."
ALL=(request_parsers chat_template tokenizer hf_tokenizer gguf safetensors model_config http)
CI=0
if [ "${1:-}" = "--ci" ]; then
  CI=1
  shift
fi
SECONDS_EACH="${1:-$((CI ? 20 : 600))}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
CXX="${CXX:-clang++-14}"
if ! command -v "$CXX" >/dev/null; then
  echo "fuzz: $CXX not found (apt install clang-14 libclang-rt-14-dev)"
  [ "$CI" = 1 ] && echo "fuzz: SKIPPED" && exit 0
  exit 1
fi
LAUNCHER=()
command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S tests/fuzz -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER="$CXX" "${LAUNCHER[@]}" >/dev/null
cmake --build build/fuzz -j"$(nproc)" --target "${TARGETS[@]/%/_fuzz}" | grep -v '^\[' || true
mkdir -p .cache/fuzz/findings
status=0
for t in "${TARGETS[@]}"; do
  seeds=("tests/fuzz/corpus/$t")
  [ "$t" = chat_template ] && seeds+=(tests/data/chat_templates)
  max_len=16384
  [ "$t" = hf_tokenizer ] && max_len=32768  # the seeds are whole tokenizer.json files
  # The CI run starts from the committed corpus alone, so that it is the same on every clone.
  work=".cache/fuzz/$t"
  [ "$CI" = 1 ] && work="$(mktemp -d)"
  mkdir -p "$work"
  echo "fuzz: $t for ${SECONDS_EACH}s"
  # CI mutates from a fixed seed, so that a clone's run explores what the last one did.
  seed=()
  [ "$CI" = 1 ] && seed=(-seed=1)
  if ! build/fuzz/"${t}_fuzz" "${seed[@]}" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
      -max_len="$max_len" -print_final_stats=1 -artifact_prefix=".cache/fuzz/findings/$t-" \
      "$work" "${seeds[@]}" >".cache/fuzz/$t.log" 2>&1; then
    status=1
    echo "fuzz: $t FOUND A PROBLEM (input in .cache/fuzz/findings/$t-*):"
    grep -vE '^(#|\s+NEW_FUNC)' ".cache/fuzz/$t.log" | tail -n 40
  else
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done)' ".cache/fuzz/$t.log" |
      tr '\n' ' '
    echo
  fi
  [ "$CI" = 1 ] && rm -rf "$work"
done
exit "$status"
