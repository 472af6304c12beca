#!/usr/bin/env bash
# The server, its unit tests (server, config, scheduler, sampler) and its HTTP tests again under
# AddressSanitizer and UndefinedBehaviorSanitizer (the `asan` preset, CPU only): a memory error
# or undefined behaviour anywhere on those paths fails the run. `--all` builds and runs every
# unit test (the engine's too), which takes several times longer.
# `--quick` (what scripts/test.sh runs): the unit tests of the parsers, tokenizers, chat
# templates, model files, config, sampler and scheduler (over the CPU engine), then the server's
# HTTP tests against xquant-server itself, all built with clang at -O1 from the objects the fuzz
# targets share (tests/fuzz/CMakeLists.txt, build/fuzz); minutes on 2 cores, where the preset's
# build takes about twenty. Skipped without clang.
set -euo pipefail
cd "$(dirname "$0")/.."
# Leaks are not checked: the model, the registry and the loggers live until exit by design.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [[ "${1:-}" == "--quick" ]]; then
  CXX="${CXX:-clang++-14}"
  if ! command -v "$CXX" >/dev/null; then
    echo "test-asan: $CXX not found (apt install clang-14 libclang-rt-14-dev); SKIPPED"
    exit 0
  fi
  LAUNCHER=()
  command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S tests/fuzz -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER="$CXX" "${LAUNCHER[@]}" >/dev/null
  QUICK=(engine_tokenizer_test engine_gguf_pre_tokenizers_test engine_chat_template_test
         engine_gguf_test config_model_config_test server_completions_schema_test
         server_chat_schema_test engine_sampler_test engine_sampler_summary_test
         scheduler_step_draws_test scheduler_event_batcher_test scheduler_planner_test
         scheduler_engine_health_test)
  # A build that fails fails the run (the HTTP tests would only skip without the binary).
  if ! cmake --build build/fuzz -j"$(nproc)" --target "${QUICK[@]}" xquant-server \
      >build/fuzz/build.log 2>&1; then
    tail -n 40 build/fuzz/build.log
    echo "test-asan: the sanitized build failed"
    exit 1
  fi
  for t in "${QUICK[@]}"; do
    # The statistical test draws millions of tokens: minutes under ASan, and no memory access
    # that the other sampler tests do not make.
    build/fuzz/units/"$t" --gtest_brief=1 \
      --gtest_filter=-Sampler.LargeVocabularyDrawsFollowTheReferenceKeptSet | grep -v '^Running'
  done
  # Left out: the tests that make the engine compute for long (a stalled step, slow readers:
  # minutes at -O1 under ASan) or race it against sleeps (the queue cap), and those that
  # exhaust the file descriptors: the sanitizers' own memory checks need one, and without it
  # UBSan's vptr check calls a live connection invalid (with the check off, ASan finds nothing).
  XQ_BUILD_DIR="$PWD/build/fuzz" .venv/bin/python -m pytest -q -ra \
    tests/python/test_server_http.py tests/python/test_chat_http.py \
    tests/python/test_hardening_http.py tests/python/test_hardening_limits.py \
    tests/python/test_padded_vocab.py tests/python/test_stream_interval.py \
    tests/python/test_sliding_window_server.py \
    -k "not stalls and not out_of_descriptors and not queue_cap"
  exit 0
fi
cmake --preset asan >/dev/null
UNITS=(server_response_test server_chat_response_test server_chat_schema_test
       server_completions_schema_test server_metrics_test engine_sampler_test
       config_server_config_test scheduler_event_batcher_test)
if [[ "${1:-}" == "--all" ]]; then
  cmake --build --preset asan -j"$(nproc)"
  ctest --test-dir build/asan --output-on-failure -j"$(nproc)" --timeout 1200
else
  cmake --build --preset asan -j"$(nproc)" --target xquant-server "${UNITS[@]}"
  for t in "${UNITS[@]}"; do build/asan/tests/"$t" --gtest_brief=1; done
fi
XQ_BUILD_DIR="$PWD/build/asan" .venv/bin/python -m pytest -q -ra \
  tests/python/test_server_http.py tests/python/test_chat_http.py \
  tests/python/test_hardening_http.py tests/python/test_hardening_limits.py \
  tests/python/test_padded_vocab.py tests/python/test_stream_interval.py \
  tests/python/test_slow_reader.py tests/python/test_sliding_window_server.py
