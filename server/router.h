// Router: method + path -> handler, with the OpenAI-shaped 404/405 for everything else. The
// handlers are functions from a request to a reply (or to a generation job the connection runs).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "server/completions_response.h"
#include "server/completions_schema.h"
#include "server/openai_errors.h"

namespace xq {

// The parts of an HTTP request the handlers look at.
struct HttpRequestIn {
  std::string method;
  std::string target;         // path and query
  std::string authorization;  // the Authorization header, if any
  std::string body;
};

struct HttpReply {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (CORS)
};

// A generation the connection drives: submit every choice's Request, feed the events to the
// assembler, stream or answer at the end.
struct CompletionJob {
  PreparedCompletion prep;
  CompletionMeta meta;
  std::unique_ptr<ResponseAssembler> assembler;  // refers to prep: the job does not move
};

// A handler gives a reply, or a job (then `reply` is unused).
struct RouteResult {
  HttpReply reply;
  std::shared_ptr<CompletionJob> job;
};

using Handler = std::function<RouteResult(const HttpRequestIn&)>;

HttpReply error_reply(const ApiError& e);
HttpReply json_reply(std::string body, unsigned status = 200);

class Router {
 public:
  void add(const std::string& method, const std::string& path, Handler handler);
  // A handler for every path under `prefix` (which ends with '/') that has no route of its own.
  void add_prefix(const std::string& method, const std::string& prefix, Handler handler);
  // Never throws: ApiError becomes its reply, any other exception (std::bad_alloc too) a 500.
  // HEAD runs the GET handler (the connection sends the headers only); a 405 lists the
  // path's methods in Allow.
  RouteResult dispatch(const HttpRequestIn& req) const;

 private:
  using Methods = std::map<std::string, Handler>;
  const Methods* find(const std::string& path) const;

  std::map<std::string, Methods> routes_;    // path -> method -> handler
  std::map<std::string, Methods> prefixes_;  // path prefix -> method -> handler
};

// The path of a request target, without the query string.
std::string target_path(const std::string& target);

}  // namespace xq
