// Byte-pair-encoding model: a vocabulary plus ranked merge rules, encoding one pre-token at a
// time (HF "BPE" model semantics: byte fallback, unk fusing, ignore_merges).
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace xq {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int, StringHash, std::equal_to<>>;

struct BpeOptions {
  std::optional<std::string> unk_token;
  bool byte_fallback = false;  // unknown characters become <0xNN> tokens of their bytes
  bool fuse_unk = false;       // consecutive unknown characters share one unk token
  bool ignore_merges = false;  // a pre-token that is itself in the vocab is taken whole
};

class BpeModel {
 public:
  BpeModel(TokenMap vocab, BpeOptions options);

  // Rule: the adjacent pair (left, right) becomes `merged`; lower rank merges first, equal ranks
  // leftmost first.
  void add_merge(int left, int right, int rank, int merged);
  // Adds "left right" merges in priority order; throws TokenizerError naming a merge whose
  // parts or result are missing from the vocabulary.
  void add_merges(const std::vector<std::pair<std::string, std::string>>& merges);

  // Appends the ids of one pre-token.
  void encode(std::string_view piece, std::vector<int>& out) const;

  std::optional<int> find(std::string_view token) const;
  const TokenMap& vocab() const { return vocab_; }

 private:
  void encode_uncached(std::string_view piece, std::vector<int>& out) const;
  void initial_symbols(std::string_view piece, std::vector<int>& ids) const;

  struct MergeRule {
    int rank;
    int merged;
  };
  static uint64_t pair_key(int left, int right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

  TokenMap vocab_;
  BpeOptions options_;
  std::optional<int> unk_id_;
  std::array<int, 256> byte_ids_;  // id of <0xNN>, or -1
  std::unordered_map<uint64_t, MergeRule> merges_;

  // Natural text repeats its words; remembering them makes long prompts cheap.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int>, StringHash, std::equal_to<>> cache_;
};

}  // namespace xq
