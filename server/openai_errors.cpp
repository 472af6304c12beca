#include "server/openai_errors.h"

#include <nlohmann/json.hpp>

namespace xq {

ApiError invalid_request(std::string message, std::optional<std::string> param,
                         std::optional<std::string> code) {
  return ApiError(400, "invalid_request_error", std::move(message), std::move(param),
                  std::move(code));
}

ApiError unauthorized() {
  return ApiError(401, "invalid_request_error",
                  "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.", {},
                  "invalid_api_key");
}

ApiError model_not_found(const std::string& model) {
  return ApiError(404, "invalid_request_error", "The model `" + model + "` does not exist.",
                  "model", "model_not_found");
}

ApiError not_found(const std::string& path) {
  return ApiError(404, "invalid_request_error", "Unknown path: " + path, {}, "not_found");
}

ApiError method_not_allowed(const std::string& method, const std::string& path) {
  return ApiError(405, "invalid_request_error", "Method " + method + " is not allowed on " + path,
                  {}, "method_not_allowed");
}

ApiError body_too_large(size_t limit) {
  return ApiError(413, "invalid_request_error",
                  "Request body is larger than the limit of " + std::to_string(limit) + " bytes",
                  {}, "request_too_large");
}

ApiError internal_error(const std::string& message) {
  return ApiError(500, "internal_error", message, {}, "internal_error");
}

ApiError unavailable(const std::string& message) {
  return ApiError(503, "service_unavailable", message, {}, "service_unavailable");
}

std::string error_body(const ApiError& e) {
  nlohmann::json err = {
      {"message", e.what()}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (e.param) err["param"] = *e.param;
  if (e.code) err["code"] = *e.code;
  return nlohmann::json{{"error", err}}.dump(-1, ' ', false,
                                             nlohmann::json::error_handler_t::replace);
}

}  // namespace xq
