// A --config file (YAML or JSON: one mapping of flag names to values) read as the command-line
// arguments its values stand for, so that the flags' own parsing and checks apply to it.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace xq {

struct ConfigFileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// {"--max-num-seqs=32", "--allowed-origins=a", "--allowed-origins=b", ...}, in the file's order.
// Keys are flag names without dashes ("max-num-seqs"; "max_num_seqs" works too); a list gives
// the flag once per item; null leaves the flag unset. Throws ConfigFileError for a file that
// cannot be read or parsed, or that is not one flat mapping.
std::vector<std::string> config_file_args(const std::string& path);

// "max_num_seqs" or "--max-num-seqs" -> "max-num-seqs".
std::string flag_key(std::string key);

}  // namespace xq
