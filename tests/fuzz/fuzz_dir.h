// A temporary folder for the targets that read a model's files by name (tokenizer.json,
// config.json), made on first use and removed at exit, and the split of one fuzz input into a
// file and its companion (after a line "----").
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace fuzz_dir {

// A plain array, never destroyed: the exit handler that removes the folder still reads it.
inline char g_dir[] = "/tmp/xq_fuzz.XXXXXX";

inline const std::filesystem::path& dir() {
  static const std::filesystem::path d = [] {
    if (mkdtemp(g_dir) == nullptr) std::abort();
    std::atexit([] { std::filesystem::remove_all(g_dir); });
    return std::filesystem::path(g_dir);
  }();
  return d;
}

inline void write(const std::string& name, std::string_view bytes) {
  std::ofstream(dir() / name, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// `input` up to a line "----" becomes `first`, the rest `second` (absent without such a line).
inline void write_pair(std::string_view input, const std::string& first,
                       const std::string& second) {
  const size_t cut = input.find("\n----\n");
  write(first, input.substr(0, cut));
  if (cut == std::string_view::npos) {
    std::filesystem::remove(dir() / second);
  } else {
    write(second, input.substr(cut + 6));
  }
}

}  // namespace fuzz_dir
