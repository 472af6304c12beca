// libFuzzer target: encode and decode of arbitrary bytes (a prompt is client input, partial
// UTF-8 included) on small tokenizers of each kind the GGUF loader builds: SentencePiece BPE with
// byte fallback, GPT-2 byte-level BPE, Llama 3's (ignore_merges) and Qwen's (NFC). The first
// byte picks the tokenizer and the flags, the rest is the text, and again read as token ids.
// Checked besides "no crash": every id is in the vocabulary, valid UTF-8 survives
// encode -> decode, and the streaming detokenizer says what the full decode says.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/model/gguf_pre_tokenizers.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "engine/tokenizer/vocab_tokenizers.h"

namespace {

using xq::Tokenizer;

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "tokenizer_fuzz: %s\n", what);
  std::abort();
}

// Words whose merges the BPE vocabularies hold, so that merging (not only bytes) is exercised.
const std::vector<std::string> kWords = {"the",  " the", "hello", " world", "in", "ing",
                                         "日本", "é",    "  ",    "\n\n",   "12", "'s"};
const std::vector<std::string> kSpecials = {"<|endoftext|>", "<|im_start|>", "<start_of_turn>"};

std::unique_ptr<Tokenizer> make_spm(bool add_space_prefix) {
  std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
  std::vector<int> types = {xq::kTokenUnknown, xq::kTokenControl, xq::kTokenControl};
  char hex[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    pieces.push_back(hex);
    types.push_back(xq::kTokenByte);
  }
  // Every prefix of every word (spaces as "▁"), so that each merge has its parts.
  for (const std::string& w : kWords) {
    std::string piece;
    for (char c : w) {
      piece += c == ' ' ? std::string("\xe2\x96\x81") : std::string(1, c);
      if (xq::utf8::is_valid(piece)) {
        pieces.push_back(piece);
        types.push_back(xq::kTokenNormal);
      }
    }
  }
  for (const std::string& s : kSpecials) {
    pieces.push_back(s);
    types.push_back(s == "<|im_start|>" ? xq::kTokenUserDefined : xq::kTokenControl);
  }
  std::vector<float> scores;
  for (size_t i = 0; i < pieces.size(); ++i) scores.push_back(-static_cast<float>(i % 17));
  return xq::make_spm_tokenizer(std::move(pieces), std::move(scores), std::move(types), 1, {2},
                                true, add_space_prefix, std::nullopt);
}

std::unique_ptr<Tokenizer> make_bpe(const char* pre, bool ignore_merges, bool nfc) {
  const xq::ByteLevelMap& map = xq::ByteLevelMap::instance();
  std::vector<std::string> pieces;
  for (int b = 0; b < 256; ++b) pieces.push_back(map.encode(std::string(1, static_cast<char>(b))));
  std::vector<std::string> merges;
  for (const std::string& w : kWords) {
    std::string left = map.encode(w.substr(0, 1));
    for (size_t i = 1; i < w.size(); ++i) {
      const std::string right = map.encode(w.substr(i, 1));
      merges.push_back(left + " " + right);
      left += right;
      pieces.push_back(left);
    }
  }
  std::vector<int> types(pieces.size(), xq::kTokenNormal);
  for (const std::string& s : kSpecials) {
    pieces.push_back(s);
    types.push_back(xq::kTokenControl);
  }
  const int eos = static_cast<int>(pieces.size()) - 3;
  return xq::make_gpt2_bpe_tokenizer(std::move(pieces), merges, std::move(types),
                                     xq::gguf_pre_tokenizer(pre)->regexes, eos, {eos}, false,
                                     std::nullopt, ignore_merges, nfc);
}

struct Kind {
  std::unique_ptr<Tokenizer> tok;
  bool lossless;  // decode(encode(valid UTF-8)) gives the text back
};

const std::vector<Kind>& tokenizers() {
  static const std::vector<Kind> all = [] {
    std::vector<Kind> v;
    v.push_back({make_spm(true), true});
    v.push_back({make_spm(false), true});
    v.push_back({make_bpe("gpt2", false, false), true});
    v.push_back({make_bpe("llama3", true, false), true});
    v.push_back({make_bpe("qwen2", false, true), false});  // NFC changes non-NFC text
    return v;
  }();
  return all;
}

void check_ids(const Tokenizer& tok, const std::vector<int>& ids) {
  for (int id : ids) {
    if (id < 0 || id >= tok.vocab_size()) finding("encode gave an id outside the vocabulary");
  }
}

// The SentencePiece round trip is exact only for text without "▁" (decoded as a space) and
// without special tokens such as <s> (a text run after one gets its own space prefix).
bool round_trips(const Kind& k, std::string_view text, bool spm) {
  if (!k.lossless || !xq::utf8::is_valid(text)) return false;
  if (!spm) return true;
  if (text.find("\xe2\x96\x81") != std::string_view::npos) return false;
  return text.find('<') == std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::vector<Kind>& all = tokenizers();
  const Kind& kind = all[data[0] % all.size()];
  const bool spm = data[0] % all.size() < 2;
  const bool add_special = (data[0] >> 4) & 1;
  const bool skip_special = (data[0] >> 5) & 1;
  const Tokenizer& tok = *kind.tok;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  const std::vector<int> ids = tok.encode(text, add_special);
  check_ids(tok, ids);
  const std::string decoded = tok.decode(ids, skip_special);
  if (!add_special && !skip_special && round_trips(kind, text, spm) && decoded != text) {
    finding("decode(encode(text)) differs from the text");
  }
  xq::IncrementalDetokenizer stream(tok, skip_special);
  std::string streamed;
  for (int id : ids) streamed += stream.push(id);
  streamed += stream.flush();
  if (!spm && streamed != xq::sanitize_utf8(decoded)) {
    finding("the streamed text differs from the full decode");
  }

  // The same bytes as 16-bit ids, in range or not: a bad id is a TokenizerError, never a crash.
  std::vector<int> raw;
  for (size_t i = 1; i + 1 < size; i += 2) raw.push_back(int16_t(data[i] | data[i + 1] << 8));
  try {
    tok.decode(raw, skip_special);
  } catch (const xq::TokenizerError&) {
  }
  xq::IncrementalDetokenizer raw_stream(tok, skip_special);
  try {
    for (int id : raw) raw_stream.push(id);
  } catch (const xq::TokenizerError&) {
  }
  raw_stream.flush();
  return 0;
}
