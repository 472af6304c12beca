#include "engine/tokenizer/vocab_tokenizers.h"

#include <algorithm>

#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/icu_regex.h"
#include "engine/tokenizer/utf8.h"

namespace xq {
namespace {

const char kSpace[] = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

int type_of(const std::vector<int>& types, size_t id) {
  return id < types.size() && types[id] != 0 ? types[id] : kTokenNormal;
}

void check_sizes(size_t pieces, size_t other, const char* what) {
  if (other != 0 && other != pieces) {
    throw TokenizerError(std::string("vocabulary has ") + std::to_string(pieces) + " tokens but " +
                         std::to_string(other) + " " + what);
  }
}

TokenMap vocab_of(const std::vector<std::string>& pieces) {
  TokenMap vocab;
  vocab.reserve(pieces.size());
  for (size_t i = 0; i < pieces.size(); ++i) vocab.emplace(pieces[i], static_cast<int>(i));
  return vocab;
}

// Control tokens are special (skipped when asked); user-defined ones are ordinary text that
// is nevertheless never split.
std::vector<AddedToken> literal_tokens(const std::vector<std::string>& pieces,
                                       const std::vector<int>& types) {
  std::vector<AddedToken> out;
  for (size_t i = 0; i < pieces.size(); ++i) {
    int t = type_of(types, i);
    if (t != kTokenControl && t != kTokenUserDefined) continue;
    AddedToken a;
    a.id = static_cast<int>(i);
    a.content = pieces[i];
    a.special = t == kTokenControl;
    out.push_back(std::move(a));
  }
  return out;
}

void fill_common(TokenizerParts& parts, int bos, std::vector<int> eos, bool add_bos,
                 std::optional<std::string> chat_template, size_t vocab_size) {
  auto in_range = [&](int id) { return id >= 0 && static_cast<size_t>(id) < vocab_size; };
  if (bos >= 0 && !in_range(bos))
    throw TokenizerError("BOS id " + std::to_string(bos) + " out of range");
  for (int id : eos)
    if (!in_range(id)) throw TokenizerError("EOS id " + std::to_string(id) + " out of range");
  parts.bos_id = bos;
  parts.eos_ids = std::move(eos);
  if (add_bos && bos >= 0) parts.prefix_ids = {bos};
  parts.chat_template = std::move(chat_template);
}

bool mergeable(int type) { return type == kTokenNormal || type == kTokenUserDefined; }

// SentencePiece merges by the score of the result: every way of cutting a token into two
// tokens is a merge rule ranked by that token's score (equal scores share a rank, so the
// leftmost pair wins, as in SentencePiece).
void add_score_merges(BpeModel& model, const std::vector<std::string>& pieces,
                      const std::vector<float>& scores, const std::vector<int>& types) {
  std::vector<float> distinct(scores);
  std::sort(distinct.begin(), distinct.end(), std::greater<>());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  auto rank_of = [&](float s) {
    return static_cast<int>(
        std::lower_bound(distinct.begin(), distinct.end(), s, std::greater<>()) - distinct.begin());
  };
  for (size_t id = 0; id < pieces.size(); ++id) {
    if (!mergeable(type_of(types, id))) continue;
    const std::string& p = pieces[id];
    int rank = rank_of(scores[id]);
    for (size_t cut = utf8::char_length(p, 0); cut < p.size(); cut += utf8::char_length(p, cut)) {
      auto left = model.find(std::string_view(p).substr(0, cut));
      auto right = model.find(std::string_view(p).substr(cut));
      if (!left || !right) continue;
      if (!mergeable(type_of(types, *left)) || !mergeable(type_of(types, *right))) continue;
      model.add_merge(*left, *right, rank, static_cast<int>(id));
    }
  }
}

}  // namespace

std::unique_ptr<Tokenizer> make_spm_tokenizer(std::vector<std::string> pieces,
                                              std::vector<float> scores,
                                              std::vector<int> token_types, int bos,
                                              std::vector<int> eos, bool add_bos,
                                              bool add_space_prefix,
                                              std::optional<std::string> chat_template) {
  check_sizes(pieces.size(), token_types.size(), "token types");
  check_sizes(pieces.size(), scores.size(), "scores");
  scores.resize(pieces.size(), 0.0f);
  BpeOptions options;
  options.byte_fallback = true;
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (type_of(token_types, i) == kTokenUnknown) {
      options.unk_token = pieces[i];
      break;
    }
  }
  TokenizerParts parts;
  parts.model = std::make_unique<BpeModel>(vocab_of(pieces), options);
  add_score_merges(*parts.model, pieces, scores, token_types);
  parts.added_tokens = literal_tokens(pieces, token_types);
  if (add_space_prefix) parts.normalizer.add(prepend_step(kSpace));
  parts.normalizer.add(replace_step(" ", kSpace));
  parts.decoder.ops = {{DecodeOp::kReplace, kSpace, " "}, {DecodeOp::kByteFallback, "", ""}};
  parts.decoder.strip_leading_spaces = add_space_prefix ? 1 : 0;
  fill_common(parts, bos, std::move(eos), add_bos, std::move(chat_template), pieces.size());
  return std::make_unique<BpeTokenizer>(std::move(parts));
}

std::unique_ptr<Tokenizer> make_gpt2_bpe_tokenizer(
    std::vector<std::string> pieces, const std::vector<std::string>& merges,
    std::vector<int> token_types, const std::vector<std::string>& pre_tokenizer_regexes, int bos,
    std::vector<int> eos, bool add_bos, std::optional<std::string> chat_template,
    bool ignore_merges, bool nfc) {
  check_sizes(pieces.size(), token_types.size(), "token types");
  BpeOptions options;
  options.ignore_merges = ignore_merges;
  TokenizerParts parts;
  parts.model = std::make_unique<BpeModel>(vocab_of(pieces), options);
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(merges.size());
  for (const std::string& m : merges) {
    size_t space = m.find(' ', 1);
    if (space == std::string::npos) throw TokenizerError("BPE merge \"" + m + "\" has no space");
    pairs.emplace_back(m.substr(0, space), m.substr(space + 1));
  }
  parts.model->add_merges(pairs);
  parts.added_tokens = literal_tokens(pieces, token_types);
  if (nfc) parts.normalizer.add(unicode_form_step(UnicodeForm::kNFC));
  for (const std::string& r : pre_tokenizer_regexes)
    parts.pre_tokenizer.add(
        regex_split_step(std::make_shared<IcuRegex>(r), SplitBehavior::kIsolated, false));
  parts.pre_tokenizer.add(byte_level_step(false, pre_tokenizer_regexes.empty()));
  parts.decoder.ops = {{DecodeOp::kByteLevel, "", ""}};
  fill_common(parts, bos, std::move(eos), add_bos, std::move(chat_template), pieces.size());
  return std::make_unique<BpeTokenizer>(std::move(parts));
}

}  // namespace xq
