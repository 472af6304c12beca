// ChoiceAssembler: what the two completion endpoints' response assemblers share: per-choice
// token counts and finish reasons, the first engine error, usage, the response envelope, the
// stream's chunk frames and its end. A subclass adds its own per-choice content and the shape of
// one choice.
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

// "data: <json>\n\n"
std::string sse_frame(const nlohmann::ordered_json& j);
// JSON text with invalid UTF-8 replaced by U+FFFD.
std::string dump_json(const nlohmann::ordered_json& j);

struct CompletionMeta {
  std::string id;  // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;
  std::string model;
};

class ChoiceAssembler : public ResponseAssembler {
 public:
  bool done() const override { return finished_ == num_choices(); }
  const std::optional<ApiError>& error() const override { return error_; }
  std::string final_body() const override;
  std::vector<std::string> closing_frames() const override;
  int num_choices() const override { return static_cast<int>(states_.size()); }
  int completion_tokens(int choice) const override { return states_.at(choice).completion_tokens; }

 protected:
  struct ChoiceState {
    int completion_tokens = 0;
    bool started = false;
    bool finished = false;
    std::string finish_reason;
    nlohmann::ordered_json stop_reason;  // vLLM's: the stop string or stop token id, else null
    double cumulative_logprob = 0;       // ranks best_of candidates
  };

  // object: the body's "object" ("text_completion"); chunk_object: a stream chunk's.
  ChoiceAssembler(CompletionMeta meta, const PreparedCompletion& prep, const Tokenizer& tok,
                  const char* object, const char* chunk_object);

  // Counts ev's tokens and records how the choice ended (and the first error).
  void record(int choice, const RequestEvent& ev);
  // The SSE frame of a chunk carrying one choice (usage null when the stream will end with it).
  std::string chunk_frame(const nlohmann::ordered_json& choice) const;
  // The same with the choice already JSON text: the per-token path of the common case, which
  // writes its few fields directly instead of building a JSON object for each token.
  std::string chunk_frame_text(const std::string& choice_json) const;
  // `s` as a JSON string literal (invalid UTF-8 replaced).
  static std::string json_string(const std::string& s);
  // The SSE frame of the stream's error, once a choice ended with one.
  std::string error_frame() const;
  // How logprobs name a token: its text, or "token_id:<id>" (return_tokens_as_token_ids).
  std::string token_name(int id, const std::string& text) const {
    return prep_.body.tokens_as_ids ? "token_id:" + std::to_string(id) : text;
  }
  // One choice of the final (non-streaming) body, shown at `index` (best_of keeps only some).
  virtual nlohmann::ordered_json choice_body(int choice, int index) const = 0;
  // `"stop_reason":...` JSON text of a finished choice, for the hand-written stream chunks.
  std::string stop_reason_text(int choice) const {
    return dump_json(states_.at(choice).stop_reason);
  }

  CompletionMeta meta_;
  const PreparedCompletion& prep_;
  const Tokenizer& tok_;
  std::vector<ChoiceState> states_;

 private:
  nlohmann::ordered_json envelope(const char* object, nlohmann::ordered_json choices) const;
  nlohmann::ordered_json usage() const;
  // The choices the response shows, in order: all of them, or per prompt the n of its best_of
  // candidates with the highest cumulative logprob.
  std::vector<int> returned_choices() const;

  const char* object_;
  const char* chunk_object_;
  std::string chunk_head_;  // "data: {...,\"choices\":[" of every stream chunk
  std::string chunk_tail_;  // "]}\n\n", usage null included when asked
  int finished_ = 0;
  std::optional<ApiError> error_;
};

}  // namespace xq
