#include "engine/tokenizer/pretokenizer.h"

#include <algorithm>
#include <utility>

#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/icu_regex.h"
#include "engine/tokenizer/tokenizer.h"

namespace xq {
namespace {

const char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct Span {
  size_t begin, end;
  bool is_match;
};

// The whole text as alternating matched / unmatched spans.
std::vector<Span> spans_of(size_t size, const std::vector<std::pair<size_t, size_t>>& matches,
                           bool invert) {
  std::vector<Span> spans;
  size_t pos = 0;
  for (auto [b, e] : matches) {
    if (pos < b) spans.push_back({pos, b, invert});
    spans.push_back({b, e, !invert});
    pos = e;
  }
  if (pos < size) spans.push_back({pos, size, invert});
  return spans;
}

// Applies the delimiter behavior; returns the kept spans (all marked unmatched).
std::vector<Span> apply_behavior(std::vector<Span> spans, SplitBehavior behavior) {
  std::vector<Span> out;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      return spans;
    case SplitBehavior::kRemoved:
      for (const Span& s : spans)
        if (!s.is_match) out.push_back(s);
      return out;
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (s.is_match && previous_match)
          out.back().end = s.end;
        else
          out.push_back(s);
        previous_match = s.is_match;
      }
      return out;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (s.is_match && !previous_match && !out.empty())
          out.back().end = s.end;
        else
          out.push_back(s);
        previous_match = s.is_match;
      }
      return out;
    case SplitBehavior::kMergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty())
          out.back().begin = it->begin;
        else
          out.push_back(*it);
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      return out;
  }
  return spans;
}

void emit_split(const PreToken& piece, const std::vector<std::pair<size_t, size_t>>& matches,
                SplitBehavior behavior, bool invert, std::vector<PreToken>& out) {
  for (const Span& s : apply_behavior(spans_of(piece.text.size(), matches, invert), behavior)) {
    if (s.begin == s.end) continue;
    out.push_back({piece.text.substr(s.begin, s.end - s.begin), piece.at_start && s.begin == 0});
  }
}

}  // namespace

SplitBehavior parse_split_behavior(const std::string& name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  throw TokenizerError("unknown split behavior \"" + name + "\"");
}

std::vector<PreToken> PreTokenizer::apply(std::string text, bool at_start) const {
  std::vector<PreToken> pieces;
  pieces.push_back({std::move(text), at_start});
  std::vector<PreToken> next;
  for (const auto& step : steps_) {
    next.clear();
    for (PreToken& p : pieces) step(p, next);
    std::swap(pieces, next);
  }
  return pieces;
}

PreTokenizeStep regex_split_step(std::shared_ptr<const IcuRegex> pattern, SplitBehavior behavior,
                                 bool invert) {
  return [=](PreToken& piece, std::vector<PreToken>& out) {
    emit_split(piece, pattern->find_all(piece.text), behavior, invert, out);
  };
}

PreTokenizeStep string_split_step(std::string delimiter, SplitBehavior behavior, bool invert) {
  return [=](PreToken& piece, std::vector<PreToken>& out) {
    std::vector<std::pair<size_t, size_t>> matches;
    if (!delimiter.empty()) {
      for (size_t hit = 0; (hit = piece.text.find(delimiter, hit)) != std::string::npos;
           hit += delimiter.size())
        matches.emplace_back(hit, hit + delimiter.size());
    }
    emit_split(piece, matches, behavior, invert, out);
  };
}

PreTokenizeStep byte_level_step(bool add_prefix_space, bool use_regex) {
  std::shared_ptr<const IcuRegex> gpt2;
  if (use_regex) gpt2 = std::make_shared<IcuRegex>(kGpt2Pattern);
  return [=](PreToken& piece, std::vector<PreToken>& out) {
    if (add_prefix_space && !piece.text.starts_with(' ')) piece.text = ' ' + piece.text;
    const ByteLevelMap& map = ByteLevelMap::instance();
    size_t first = out.size();
    if (gpt2)
      emit_split(piece, gpt2->find_all(piece.text), SplitBehavior::kIsolated, false, out);
    else if (!piece.text.empty())
      out.push_back(std::move(piece));
    for (size_t i = first; i < out.size(); ++i) out[i].text = map.encode(out[i].text);
  };
}

PreTokenizeStep metaspace_step(std::string replacement, PrependScheme scheme, bool split) {
  return [=](PreToken& piece, std::vector<PreToken>& out) {
    std::string text;
    for (char c : piece.text) {
      if (c == ' ')
        text += replacement;
      else
        text += c;
    }
    bool prepend =
        scheme == PrependScheme::kAlways || (scheme == PrependScheme::kFirst && piece.at_start);
    if (prepend && !text.starts_with(replacement)) text = replacement + text;
    PreToken replaced{std::move(text), piece.at_start};
    if (!split) {
      if (!replaced.text.empty()) out.push_back(std::move(replaced));
      return;
    }
    std::vector<std::pair<size_t, size_t>> matches;
    for (size_t hit = 0; (hit = replaced.text.find(replacement, hit)) != std::string::npos;
         hit += replacement.size())
      matches.emplace_back(hit, hit + replacement.size());
    emit_split(replaced, matches, SplitBehavior::kMergedWithNext, false, out);
  };
}

PreTokenizeStep digits_step(bool individual_digits) {
  auto digit = std::make_shared<IcuRegex>(R"(\p{N})");
  SplitBehavior behavior =
      individual_digits ? SplitBehavior::kIsolated : SplitBehavior::kContiguous;
  return [=](PreToken& piece, std::vector<PreToken>& out) {
    emit_split(piece, digit->find_all(piece.text), behavior, false, out);
  };
}

}  // namespace xq
