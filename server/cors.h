// CORS (--allowed-origins): which browser origins may call the API, the headers that say so on
// every reply, and the 204 answer to a preflight OPTIONS request. Off when no origin is allowed.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "server/router.h"

namespace xq {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

class CorsPolicy {
 public:
  explicit CorsPolicy(std::vector<std::string> origins) : origins_(std::move(origins)) {}

  bool enabled() const { return !origins_.empty(); }
  // The Access-Control-* headers for a reply to a request from `origin` (empty when CORS is off,
  // the request has no Origin, or the origin is not allowed).
  HeaderList reply_headers(const std::string& origin) const;
  // An OPTIONS request with Origin and Access-Control-Request-Method is a preflight: 204 with
  // the allowed methods and headers, or 403 for an origin not allowed. nullopt otherwise (or
  // when CORS is off), and the request is routed as usual.
  std::optional<HttpReply> preflight(const std::string& method, const std::string& origin,
                                     const std::string& request_method,
                                     const std::string& request_headers) const;

 private:
  bool allows(const std::string& origin) const;
  std::vector<std::string> origins_;
};

}  // namespace xq
