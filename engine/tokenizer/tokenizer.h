// Tokenizer: text <-> token ids for byte-level BPE (GPT-2, Llama 3, Qwen) and SentencePiece-style
// BPE with byte fallback (Llama 2, Mistral, Gemma), with added/special tokens.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace xq {

struct TokenizerError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Special/added tokens written literally in `text` (e.g. "<|eot_id|>") become their ids.
  // add_special_tokens prepends BOS when the tokenizer config asks for it.
  virtual std::vector<int> encode(std::string_view text, bool add_special_tokens) const = 0;
  // The exact bytes a token stands for (byte-level decoded, "▁" as space, <0xNN> as the byte).
  // Special tokens give their literal text.
  virtual std::string token_bytes(int id) const = 0;
  // Full decode; may contain invalid UTF-8 only if the ids do. A SentencePiece tokenizer with a
  // dummy prefix drops the single leading space of the first token.
  virtual std::string decode(std::span<const int> ids, bool skip_special_tokens) const = 0;

  virtual int vocab_size() const = 0;
  virtual bool is_special(int id) const = 0;
  virtual std::optional<int> token_id(std::string_view token) const = 0;
  int bos_id() const { return bos_id_; }
  const std::vector<int>& eos_ids() const { return eos_ids_; }
  bool add_bos() const { return add_bos_; }
  const std::optional<std::string>& chat_template() const { return chat_template_; }

 protected:
  int bos_id_ = -1;
  std::vector<int> eos_ids_;
  bool add_bos_ = false;
  std::optional<std::string> chat_template_;
};

// DIR/tokenizer.json (+ tokenizer_config.json for BOS handling, special tokens, chat template).
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::filesystem::path& dir);

// Turns a stream of token ids into text deltas that never end inside a UTF-8 character.
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tok, bool skip_special_tokens)
      : tok_(tok), skip_special_(skip_special_tokens) {}
  // The text that became complete with this token (possibly empty).
  std::string push(int id);
  // Whatever is left at the end (invalid trailing bytes become U+FFFD).
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::string pending_;
};

// Length of the longest prefix of `s` that is complete UTF-8 (an incomplete tail is held back;
// invalid bytes count as complete so that they are not held forever).
size_t complete_utf8_prefix(std::string_view s);
// Replaces invalid UTF-8 sequences with U+FFFD.
std::string sanitize_utf8(std::string_view s);

}  // namespace xq
