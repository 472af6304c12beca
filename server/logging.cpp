#include "server/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

namespace xq {
namespace {

// The id of the request whose work this thread does now. Thread-local because the formatter
// runs in the logging thread (spdlog's loggers here are synchronous).
thread_local std::string current_request_id;

std::string json_string(std::string_view text) {
  return nlohmann::json(std::string(text))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void append(spdlog::memory_buf_t& dest, std::string_view text) {
  dest.append(text.data(), text.data() + text.size());
}

// %* in the JSON pattern: the message, escaped, then the request id field when there is one.
class JsonMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    append(dest, json_string(std::string_view(msg.payload.data(), msg.payload.size())));
    if (current_request_id.empty()) return;
    append(dest, ",\"request_id\":");
    append(dest, json_string(current_request_id));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

// %& in the text pattern: "[id] " when there is a request id.
class TextRequestFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    if (current_request_id.empty()) return;
    append(dest, "[" + current_request_id + "] ");
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<TextRequestFlag>();
  }
};

}  // namespace

void configure_logging(const std::string& level, const std::string& format) {
  spdlog::set_level(spdlog::level::from_str(level));
  std::unique_ptr<spdlog::pattern_formatter> f;
  if (format == "json") {
    // UTC with microseconds, ISO 8601: what log collectors parse without configuration.
    f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    f->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","message":%*})");
  } else {
    f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<TextRequestFlag>('&').set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %&%v");
  }
  spdlog::set_formatter(std::move(f));
}

RequestLogScope::RequestLogScope(const std::string& id) : previous_(current_request_id) {
  current_request_id = id;
}

RequestLogScope::~RequestLogScope() { current_request_id = previous_; }

}  // namespace xq
