#include "server/cors.h"

#include <algorithm>

#include "server/openai_errors.h"

namespace xq {

bool CorsPolicy::allows(const std::string& origin) const {
  return std::any_of(origins_.begin(), origins_.end(),
                     [&](const std::string& o) { return o == "*" || o == origin; });
}

HeaderList CorsPolicy::reply_headers(const std::string& origin) const {
  if (!enabled() || origin.empty() || !allows(origin)) return {};
  const bool any = std::find(origins_.begin(), origins_.end(), "*") != origins_.end();
  HeaderList h{{"Access-Control-Allow-Origin", any ? "*" : origin}};
  // A reply that names the origin differs per origin: caches must key on it.
  if (!any) h.emplace_back("Vary", "Origin");
  return h;
}

std::optional<HttpReply> CorsPolicy::preflight(const std::string& method, const std::string& origin,
                                               const std::string& request_method,
                                               const std::string& request_headers) const {
  if (!enabled() || method != "OPTIONS" || origin.empty() || request_method.empty())
    return std::nullopt;
  if (!allows(origin)) {
    HttpReply r = error_reply(ApiError(403, "invalid_request_error",
                                       "Origin " + origin + " is not allowed (--allowed-origins)",
                                       {}, "cors_origin_not_allowed"));
    return r;
  }
  HttpReply r{204, "text/plain", "", {}};
  r.headers = reply_headers(origin);
  r.headers.emplace_back("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
  r.headers.emplace_back("Access-Control-Allow-Headers",
                         request_headers.empty() ? "Authorization, Content-Type" : request_headers);
  r.headers.emplace_back("Access-Control-Max-Age", "600");
  return r;
}

}  // namespace xq
