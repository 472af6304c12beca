// What a connection makes of the bytes a client sends, and the header fields it writes around a
// route's reply: Beast's request parser with the server's limits, the parts of a request the
// router sees, the answer to a request that could not be read. HttpSession runs them on the
// socket; the HTTP fuzz target (tests/fuzz/http_fuzz.cpp) runs the same functions on any bytes.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
// Boost 1.74 Asio uses std::exchange without including <utility>.
// clang-format off
#include <utility>
#include <boost/beast/http.hpp>
// clang-format on

#include "server/cors.h"
#include "server/router.h"

namespace xq {

using RequestBody = boost::beast::http::string_body;
using RequestParser = boost::beast::http::request_parser<RequestBody>;

// The body and header limits every request on a connection is read under.
void limit_parser(RequestParser& parser, size_t max_body_bytes, size_t max_header_bytes);

// The parts of a parsed request the router looks at; the body is moved out of `req`.
HttpRequestIn request_in(boost::beast::http::request<RequestBody>& req);

// The answer to a request whose read ended in `ec`: 413 past the body limit, 431 past the
// header limit, 400 for a malformed request. nullopt where the connection just ends: the
// client closed (before or inside a request), a timeout, a reset.
std::optional<HttpReply> read_failure_reply(const boost::beast::error_code& ec,
                                            size_t max_body_bytes);

// The header fields of a reply (a whole one, or the head of a HEAD answer or a stream).
template <class Body>
void set_reply_head(boost::beast::http::response<Body>& res, const HttpReply& reply,
                    const std::string& request_id, const HeaderList& cors, bool keep_alive) {
  res.set(boost::beast::http::field::server, "xquant-server");
  res.set("X-Request-Id", request_id);
  res.set(boost::beast::http::field::content_type, reply.content_type);
  res.keep_alive(keep_alive);
  for (const auto& [name, value] : reply.headers) res.set(name, value);
  for (const auto& [name, value] : cors) res.set(name, value);
}

}  // namespace xq
