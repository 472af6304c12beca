// The /v1/chat/completions response: engine events of every choice become the OpenAI
// "chat.completion" JSON, or "chat.completion.chunk" SSE frames (a role delta first, then
// content deltas, a finish_reason, optionally usage) ending with `data: [DONE]`.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "server/choice_assembler.h"

namespace xq {

class ChatAssembler : public ChoiceAssembler {
 public:
  // meta.id is "chatcmpl-..."
  ChatAssembler(CompletionMeta meta, const PreparedCompletion& prep, const Tokenizer& tok);

  std::vector<std::string> on_event(int choice, const RequestEvent& ev) override;

 private:
  struct Choice {
    std::string content;
    nlohmann::ordered_json logprobs = nlohmann::ordered_json::array();  // "content" entries
    size_t streamed_logprobs = 0;
  };

  // {token, logprob, bytes, top_logprobs} for one generated token.
  nlohmann::ordered_json logprob_entry(const GeneratedToken& t) const;
  nlohmann::ordered_json choice_body(int choice, int index) const override;

  std::vector<Choice> choices_;
};

}  // namespace xq
