// The /v1/completions response: assembles engine events of every choice into the OpenAI
// "text_completion" JSON, or into SSE chunks of the same shape ending with `data: [DONE]`.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "scheduler/request.h"
#include "server/choice_assembler.h"
#include "server/completions_schema.h"

namespace xq {

// The "text_completion" shape.
class CompletionAssembler : public ChoiceAssembler {
 public:
  CompletionAssembler(CompletionMeta meta, const PreparedCompletion& prep, const Tokenizer& tok);

  std::vector<std::string> on_event(int choice, const RequestEvent& ev) override;

 private:
  struct Logprobs {
    nlohmann::ordered_json tokens = nlohmann::ordered_json::array();
    nlohmann::ordered_json token_logprobs = nlohmann::ordered_json::array();
    nlohmann::ordered_json top_logprobs = nlohmann::ordered_json::array();
    nlohmann::ordered_json text_offset = nlohmann::ordered_json::array();
  };
  struct Choice {
    int prompt = 0;
    std::string text;
    Logprobs logprobs;
    size_t streamed_tokens = 0;  // logprob entries already sent
    int64_t offset = 0;          // text offset (code points) of the next token
  };

  // Appends one token (prompt or generated) to a choice's logprobs; `text` is what the token
  // adds to the choice's text (for text_offset).
  void add_logprob(Choice& c, int token, const std::string& text,
                   const std::optional<TokenLogprob>& lp);
  // How logprobs name a token: its bytes with invalid UTF-8 replaced, or "token_id:<id>".
  std::string token_key(int id) const {
    return token_name(id, sanitize_utf8(tok_.token_bytes(id)));
  }
  void add_echo(Choice& c, const RequestEvent& ev);
  nlohmann::ordered_json logprobs_json(const Logprobs& lp, size_t from) const;
  nlohmann::ordered_json choice_body(int choice, int index) const override;

  std::vector<Choice> choices_;
};

// Number of code points in UTF-8 text (invalid bytes count one each), for text_offset.
int64_t utf8_length(const std::string& s);

}  // namespace xq
