// The id that names one HTTP request in its X-Request-Id header and its log lines.
#pragma once

#include <string>
#include <string_view>

namespace xq {

// The client's X-Request-Id when it sent a usable one (1 to 128 visible ASCII characters), so
// ids set by a proxy carry through; otherwise a new random one ("req-" and 16 hex digits).
std::string request_id_for(std::string_view from_client);

}  // namespace xq
