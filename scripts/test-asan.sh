#!/usr/bin/env bash
# The server, its unit tests (server, config, scheduler, sampler) and its HTTP tests again under
# AddressSanitizer and UndefinedBehaviorSanitizer (the `asan` preset, CPU only): a memory error
# or undefined behaviour anywhere on those paths fails the run. `--all` builds and runs every
# unit test (the engine's too), which takes several times longer.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset asan >/dev/null
UNITS=(server_response_test server_chat_response_test server_chat_schema_test
       server_completions_schema_test server_metrics_test engine_sampler_test
       config_server_config_test scheduler_event_batcher_test)
# Leaks are not checked: the model, the registry and the loggers live until exit by design.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
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
