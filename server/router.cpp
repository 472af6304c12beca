#include "server/router.h"

namespace xq {

HttpReply error_reply(const ApiError& e) {
  return HttpReply{static_cast<unsigned>(e.status), "application/json", error_body(e), {}};
}

HttpReply json_reply(std::string body, unsigned status) {
  return HttpReply{status, "application/json", std::move(body), {}};
}

std::string target_path(const std::string& target) {
  return target.substr(0, target.find_first_of("?#"));
}

void Router::add(const std::string& method, const std::string& path, Handler handler) {
  routes_[path][method] = std::move(handler);
}

RouteResult Router::dispatch(const HttpRequestIn& req) const {
  const std::string path = target_path(req.target);
  try {
    auto by_path = routes_.find(path);
    if (by_path == routes_.end()) throw not_found(path);
    auto handler = by_path->second.find(req.method);
    if (handler == by_path->second.end()) throw method_not_allowed(req.method, path);
    return handler->second(req);
  } catch (const ApiError& e) {
    return RouteResult{error_reply(e), nullptr};
  } catch (const std::exception& e) {
    return RouteResult{error_reply(internal_error(e.what())), nullptr};
  }
}

}  // namespace xq
