// Builds a Tokenizer from tokenizer.ggml.* GGUF metadata through the raw-vocabulary factories.
#include "engine/model/gguf_tokenizer.h"

#include <string>
#include <vector>

#include "engine/model/gguf_pre_tokenizers.h"
#include "engine/tokenizer/vocab_tokenizers.h"

namespace xq {
namespace {

[[noreturn]] void fail(const GgufFile& f, const std::string& what) {
  throw TokenizerError(f.path().string() + ": " + what);
}

const GgufValue& require_array(const GgufFile& f, const std::string& key, GgufType elem) {
  const GgufValue* v = f.find(key);
  if (!v) fail(f, "metadata " + key + " is missing");
  if (v->type != GgufType::Array || v->elem_type != elem) {
    fail(f, "metadata " + key + " must be an array of " + gguf_type_name(elem));
  }
  return *v;
}

int token_id(const GgufFile& f, const char* key, int fallback, size_t vocab) {
  std::optional<int64_t> id = f.get_int(key);
  if (!id) return fallback;
  if (*id < 0 || static_cast<size_t>(*id) >= vocab) {
    fail(f, std::string("metadata ") + key + " = " + std::to_string(*id) +
                " is outside the vocabulary of " + std::to_string(vocab));
  }
  return static_cast<int>(*id);
}

}  // namespace

std::unique_ptr<Tokenizer> gguf_tokenizer(const GgufFile& f, const ModelConfig& cfg) {
  const std::string model = f.get_string("tokenizer.ggml.model").value_or("");
  std::vector<std::string> pieces =
      require_array(f, "tokenizer.ggml.tokens", GgufType::String).strings;
  const size_t vocab = pieces.size();
  if (vocab == 0) fail(f, "metadata tokenizer.ggml.tokens is empty");
  if (vocab > static_cast<size_t>(cfg.vocab_size)) {
    fail(f, std::to_string(vocab) + " tokens but the embedding has only " +
                std::to_string(cfg.vocab_size) + " rows");
  }
  std::vector<int> types;
  if (const GgufValue* t = f.find("tokenizer.ggml.token_type")) {
    if (t->type != GgufType::Array || t->ints.size() != vocab) {
      fail(f, "metadata tokenizer.ggml.token_type must be an integer array of one entry per token");
    }
    types.assign(t->ints.begin(), t->ints.end());
  }
  const int bos = token_id(f, "tokenizer.ggml.bos_token_id", -1, vocab);
  std::vector<int> eos;
  for (int id : cfg.eos_token_ids) {
    if (id < 0 || static_cast<size_t>(id) >= vocab) {
      fail(f, "end-of-sequence id " + std::to_string(id) + " is outside the vocabulary");
    }
    eos.push_back(id);
  }
  std::optional<std::string> chat_template = f.get_string("tokenizer.chat_template");

  if (model == "llama") {
    const GgufValue& scores_v = require_array(f, "tokenizer.ggml.scores", GgufType::Float32);
    if (scores_v.floats.size() != vocab) {
      fail(f, "metadata tokenizer.ggml.scores has " + std::to_string(scores_v.floats.size()) +
                  " entries for " + std::to_string(vocab) + " tokens");
    }
    std::vector<float> scores(scores_v.floats.begin(), scores_v.floats.end());
    // llama.cpp's defaults for SentencePiece vocabularies when the keys are absent.
    const bool add_bos = f.get_bool("tokenizer.ggml.add_bos_token").value_or(true);
    const bool add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
    return make_spm_tokenizer(std::move(pieces), std::move(scores), std::move(types), bos,
                              std::move(eos), add_bos, add_space_prefix, std::move(chat_template));
  }
  if (model == "gpt2") {
    const std::vector<std::string>& merges =
        require_array(f, "tokenizer.ggml.merges", GgufType::String).strings;
    // llama.cpp reads a missing name as "default".
    const std::string pre = f.get_string("tokenizer.ggml.pre").value_or("default");
    const std::optional<GgufPreTokenizer> found = gguf_pre_tokenizer(pre);
    if (!found) {
      fail(f, "tokenizer.ggml.pre '" + pre +
                  "' is not supported (supported: " + gguf_pre_tokenizer_names() + ")");
    }
    const bool add_bos =
        f.get_bool("tokenizer.ggml.add_bos_token").value_or(found->add_bos) && found->has_bos;
    return make_gpt2_bpe_tokenizer(std::move(pieces), merges, std::move(types), found->regexes,
                                   found->has_bos ? bos : -1, std::move(eos), add_bos,
                                   std::move(chat_template), found->ignore_merges, found->nfc);
  }
  fail(f, "tokenizer.ggml.model '" + model + "' is not supported (llama and gpt2 are)");
}

}  // namespace xq
