// OpenAI-shaped errors: {"error": {"message", "type", "param", "code"}} with an HTTP status, and
// the exception the request parsers throw to produce one.
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace xq {

struct ApiError : std::runtime_error {
  ApiError(int status, std::string type, std::string message, std::optional<std::string> param = {},
           std::optional<std::string> code = {})
      : std::runtime_error(message),
        status(status),
        type(std::move(type)),
        param(std::move(param)),
        code(std::move(code)) {}
  int status;
  std::string type;
  std::optional<std::string> param;
  std::optional<std::string> code;
};

// 400 invalid_request_error naming the offending parameter.
ApiError invalid_request(std::string message, std::optional<std::string> param = {},
                         std::optional<std::string> code = {});
ApiError unauthorized();
ApiError model_not_found(const std::string& model);
ApiError not_found(const std::string& path);
ApiError method_not_allowed(const std::string& method, const std::string& path);
ApiError body_too_large(size_t limit);
ApiError internal_error(const std::string& message);
ApiError unavailable(const std::string& message);

// The JSON body of an error (compact, no trailing newline).
std::string error_body(const ApiError& e);

}  // namespace xq
