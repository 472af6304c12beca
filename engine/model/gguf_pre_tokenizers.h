// What each GGUF tokenizer.ggml.pre name means for a byte-level BPE vocabulary: the regex splits
// before the byte mapping and the flags llama.cpp ties to the name.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace xq {

struct GgufPreTokenizer {
  // Applied in turn, each splitting every piece into its matches and the text between them
  // (HF's Split with "Isolated", llama.cpp's unicode_regex_split).
  std::vector<std::string> regexes;
  bool ignore_merges = false;  // a pre-token that is itself a token is taken whole (Llama 3)
  bool add_bos = false;        // when the file has no tokenizer.ggml.add_bos_token
  bool has_bos = true;         // false: the name drops the BOS id (ChatGLM)
  // NFC before splitting, as Qwen's tokenizer.json asks (llama.cpp skips it; it changes only
  // text that is not already NFC).
  bool nfc = false;
};

// The pre-tokenizer of a tokenizer.ggml.pre value, or nullopt when it is not supported.
std::optional<GgufPreTokenizer> gguf_pre_tokenizer(std::string_view name);

// The supported names, comma-separated, for error messages.
std::string gguf_pre_tokenizer_names();

}  // namespace xq
