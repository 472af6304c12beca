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
#include "server/completions_schema.h"
#include "server/openai_errors.h"
#include "server/response_assembler.h"

namespace xq {

struct CompletionMeta {
  std::string id;  // "cmpl-..."
  int64_t created = 0;
  std::string model;
};

// The fields every response body and stream chunk of both endpoints starts with.
nlohmann::ordered_json response_envelope(const CompletionMeta& meta, const char* object,
                                         nlohmann::ordered_json choices);
// The end of a stream: the usage chunk (when there is one), then `data: [DONE]`.
std::vector<std::string> stream_closing_frames(const nlohmann::ordered_json* usage_chunk);
// OpenAI's usage object.
nlohmann::ordered_json usage_json(int64_t prompt_tokens, int64_t completion_tokens);

// The "text_completion" shape.
class CompletionAssembler : public ResponseAssembler {
 public:
  CompletionAssembler(CompletionMeta meta, const PreparedCompletion& prep, const Tokenizer& tok);

  std::vector<std::string> on_event(int choice, const RequestEvent& ev) override;
  bool done() const override { return finished_ == static_cast<int>(choices_.size()); }
  const std::optional<ApiError>& error() const override { return error_; }
  std::string final_body() const override;
  std::vector<std::string> closing_frames() const override;
  int num_choices() const override { return static_cast<int>(choices_.size()); }
  int completion_tokens(int choice) const override { return choices_.at(choice).completion_tokens; }

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
    int completion_tokens = 0;
    bool started = false;
    bool finished = false;
    std::string finish_reason;
  };

  // Appends one token (prompt or generated) to a choice's logprobs.
  void add_logprob(Choice& c, int token, const std::string& text,
                   const std::optional<TokenLogprob>& lp);
  void add_echo(Choice& c, const RequestEvent& ev);
  nlohmann::ordered_json chunk(const nlohmann::ordered_json& choices) const;
  nlohmann::ordered_json logprobs_json(const Logprobs& lp, size_t from) const;
  nlohmann::ordered_json usage() const;

  CompletionMeta meta_;
  const PreparedCompletion& prep_;
  const Tokenizer& tok_;
  std::vector<Choice> choices_;
  int finished_ = 0;
  std::optional<ApiError> error_;
};

// "data: <json>\n\n"
std::string sse_frame(const nlohmann::ordered_json& j);
// Number of code points in UTF-8 text (invalid bytes count one each), for text_offset.
int64_t utf8_length(const std::string& s);
// JSON text with invalid UTF-8 replaced by U+FFFD.
std::string dump_json(const nlohmann::ordered_json& j);

}  // namespace xq
