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

void Router::add_prefix(const std::string& method, const std::string& prefix, Handler handler) {
  prefixes_[prefix][method] = std::move(handler);
}

const Router::Methods* Router::find(const std::string& path) const {
  if (auto it = routes_.find(path); it != routes_.end()) return &it->second;
  for (const auto& [prefix, methods] : prefixes_) {
    if (path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0) return &methods;
  }
  return nullptr;
}

RouteResult Router::dispatch(const HttpRequestIn& req) const {
  const std::string path = target_path(req.target);
  try {
    const Methods* methods = find(path);
    if (!methods) throw not_found(path);
    auto handler = methods->find(req.method == "HEAD" ? "GET" : req.method);
    if (handler == methods->end()) {
      std::string allow;
      for (const auto& [method, h] : *methods) {
        allow += (allow.empty() ? "" : ", ") + method;
        if (method == "GET") allow += ", HEAD";
      }
      HttpReply reply = error_reply(method_not_allowed(req.method, path));
      reply.headers.emplace_back("Allow", allow);
      return RouteResult{std::move(reply), nullptr};
    }
    return handler->second(req);
  } catch (const ApiError& e) {
    return RouteResult{error_reply(e), nullptr};
  } catch (const std::exception& e) {
    return RouteResult{error_reply(internal_error(e.what())), nullptr};
  }
}

}  // namespace xq
