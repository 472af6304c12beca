// Log set-up for the server: human-readable lines or JSON objects one per line, and the request
// id a log line carries while a request's work runs on this thread.
#pragma once

#include <string>

namespace xq {

// format: "text" (time, level, message) or "json" ({"time","level","message"[,"request_id"]}).
// level: spdlog's names (trace ... off).
void configure_logging(const std::string& level, const std::string& format);

// While one lives, log lines this thread writes carry `id` ("[id] " before the text message; a
// "request_id" field in JSON). Scopes nest: the inner id wins until it ends.
class RequestLogScope {
 public:
  explicit RequestLogScope(const std::string& id);
  ~RequestLogScope();
  RequestLogScope(const RequestLogScope&) = delete;
  RequestLogScope& operator=(const RequestLogScope&) = delete;

 private:
  std::string previous_;
};

}  // namespace xq
