#include "server/request_id.h"

#include <algorithm>
#include <cstdio>
#include <random>

namespace xq {

std::string request_id_for(std::string_view from_client) {
  const bool usable = !from_client.empty() && from_client.size() <= 128 &&
                      std::all_of(from_client.begin(), from_client.end(), [](char ch) {
                        return ch > ' ' && ch < 127 && ch != '"' && ch != '\\';
                      });
  if (usable) return std::string(from_client);
  // One generator per HTTP thread: no lock, and ids of different threads do not repeat.
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char id[24];
  std::snprintf(id, sizeof id, "req-%016llx", static_cast<unsigned long long>(rng()));
  return id;
}

}  // namespace xq
