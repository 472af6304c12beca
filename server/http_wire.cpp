#include "server/http_wire.h"

#include "server/openai_errors.h"

namespace xq {

namespace http = boost::beast::http;

void limit_parser(RequestParser& parser, size_t max_body_bytes, size_t max_header_bytes) {
  parser.body_limit(max_body_bytes);
  parser.header_limit(static_cast<uint32_t>(max_header_bytes));
}

HttpRequestIn request_in(http::request<RequestBody>& req) {
  return HttpRequestIn{std::string(req.method_string()), std::string(req.target()),
                       std::string(req[http::field::authorization]), std::move(req.body())};
}

std::optional<HttpReply> read_failure_reply(const boost::beast::error_code& ec,
                                            size_t max_body_bytes) {
  if (ec == http::error::body_limit) return error_reply(body_too_large(max_body_bytes));
  if (ec == http::error::header_limit)
    return error_reply(ApiError(431, "invalid_request_error", "Request headers are too large", {},
                                "request_header_fields_too_large"));
  // Beast's parse errors share one category; socket errors and timeouts have their own.
  const bool parse_error =
      ec.category() == http::make_error_code(http::error::bad_method).category();
  if (parse_error && ec != http::error::end_of_stream && ec != http::error::partial_message)
    return error_reply(invalid_request("Malformed HTTP request: " + ec.message()));
  return std::nullopt;
}

}  // namespace xq
