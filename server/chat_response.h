// The /v1/chat/completions response: engine events of every choice become the OpenAI
// "chat.completion" JSON, or "chat.completion.chunk" SSE frames (a role delta first, then
// content deltas, a finish_reason, optionally usage) ending with `data: [DONE]`.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "server/completions_response.h"
#include "server/completions_schema.h"
#include "server/response_assembler.h"

namespace xq {

class ChatAssembler : public ResponseAssembler {
 public:
  // meta.id is "chatcmpl-..."
  ChatAssembler(CompletionMeta meta, const PreparedCompletion& prep, const Tokenizer& tok);

  std::vector<std::string> on_event(int choice, const RequestEvent& ev) override;
  bool done() const override { return finished_ == static_cast<int>(choices_.size()); }
  const std::optional<ApiError>& error() const override { return error_; }
  std::string final_body() const override;
  std::vector<std::string> closing_frames() const override;
  int num_choices() const override { return static_cast<int>(choices_.size()); }
  int completion_tokens(int choice) const override { return choices_.at(choice).completion_tokens; }

 private:
  struct Choice {
    std::string content;
    nlohmann::ordered_json logprobs = nlohmann::ordered_json::array();  // "content" entries
    size_t streamed_logprobs = 0;
    int completion_tokens = 0;
    bool started = false;
    bool finished = false;
    std::string finish_reason;
  };

  // {token, logprob, bytes, top_logprobs} for one generated token.
  nlohmann::ordered_json logprob_entry(const GeneratedToken& t) const;
  nlohmann::ordered_json chunk(const nlohmann::ordered_json& choices) const;
  nlohmann::ordered_json usage() const;

  CompletionMeta meta_;
  const PreparedCompletion& prep_;
  const Tokenizer& tok_;
  std::vector<Choice> choices_;
  int finished_ = 0;
  std::optional<ApiError> error_;
};

}  // namespace xq
