#include "engine/tokenizer/bpe_model.h"

#include <cstdio>
#include <queue>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace xq {
namespace {

constexpr size_t kMaxCachedPieceBytes = 256;
constexpr size_t kMaxCacheEntries = 1 << 17;

struct Symbol {
  int id;
  int prev, next;  // neighbours in the linked list, -1 at the ends
  bool alive;
};

struct Candidate {
  int rank, pos, merged;
  bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

BpeModel::BpeModel(TokenMap vocab, BpeOptions options)
    : vocab_(std::move(vocab)), options_(std::move(options)) {
  if (options_.unk_token) {
    unk_id_ = find(*options_.unk_token);
    if (!unk_id_) {
      throw TokenizerError("BPE unk_token \"" + *options_.unk_token + "\" is not in the vocab");
    }
  }
  byte_ids_.fill(-1);
  if (options_.byte_fallback) {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      if (auto id = find(name)) byte_ids_[b] = *id;
    }
  }
}

void BpeModel::add_merge(int left, int right, int rank, int merged) {
  merges_.try_emplace(pair_key(left, right), MergeRule{rank, merged});
}

void BpeModel::add_merges(const std::vector<std::pair<std::string, std::string>>& merges) {
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto left = find(a), right = find(b), merged = find(a + b);
    if (!left || !right || !merged) {
      throw TokenizerError("BPE merge #" + std::to_string(rank) + " \"" + a + " " + b +
                           "\" uses a token missing from the vocab");
    }
    add_merge(*left, *right, static_cast<int>(rank), *merged);
  }
}

std::optional<int> BpeModel::find(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::encode(std::string_view piece, std::vector<int>& out) const {
  if (piece.size() > kMaxCachedPieceBytes) return encode_uncached(piece, out);
  {
    std::lock_guard lock(cache_mutex_);
    auto it = cache_.find(piece);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int> ids;
  encode_uncached(piece, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard lock(cache_mutex_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_.emplace(std::string(piece), std::move(ids));
}

// One symbol per character: its vocab id, else its bytes as <0xNN> tokens, else unk; a
// character with none of these is dropped (as HF does).
void BpeModel::initial_symbols(std::string_view piece, std::vector<int>& ids) const {
  bool pending_unk = false;
  auto flush_unk = [&] {
    if (pending_unk) ids.push_back(*unk_id_);
    pending_unk = false;
  };
  for (size_t i = 0; i < piece.size();) {
    size_t n = utf8::char_length(piece, i);
    std::string_view ch = piece.substr(i, n);
    i += n;
    if (auto id = find(ch)) {
      flush_unk();
      ids.push_back(*id);
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (unsigned char b : ch) all = all && byte_ids_[b] >= 0;
      if (all) {
        flush_unk();
        for (unsigned char b : ch) ids.push_back(byte_ids_[b]);
        continue;
      }
    }
    if (unk_id_) {
      if (!options_.fuse_unk) flush_unk();
      pending_unk = true;
    }
  }
  flush_unk();
}

void BpeModel::encode_uncached(std::string_view piece, std::vector<int>& out) const {
  if (options_.ignore_merges) {
    if (auto id = find(piece)) {
      out.push_back(*id);
      return;
    }
  }
  std::vector<int> ids;
  initial_symbols(piece, ids);
  int n = static_cast<int>(ids.size());
  std::vector<Symbol> syms(n);
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int pos) {
    int next = syms[pos].next;
    if (next < 0) return;
    auto it = merges_.find(pair_key(syms[pos].id, syms[next].id));
    if (it != merges_.end()) queue.push({it->second.rank, pos, it->second.merged});
  };
  for (int i = 0; i < n; ++i) syms[i] = {ids[i], i - 1, i + 1 < n ? i + 1 : -1, true};
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!queue.empty()) {
    Candidate c = queue.top();
    queue.pop();
    Symbol& left = syms[c.pos];
    if (!left.alive || left.next < 0) continue;
    // Stale if either side changed since the candidate was queued.
    auto it = merges_.find(pair_key(left.id, syms[left.next].id));
    if (it == merges_.end() || it->second.merged != c.merged) continue;
    Symbol& right = syms[left.next];
    right.alive = false;
    left.id = c.merged;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = c.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(c.pos);
  }
  for (int i = n > 0 ? 0 : -1; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

}  // namespace xq
