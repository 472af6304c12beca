// ResponseAssembler: what a connection feeds a generation's engine events into, whichever API
// shape (text_completion, chat.completion) the response takes.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "scheduler/request.h"
#include "server/openai_errors.h"

namespace xq {

// Not thread-safe: one connection feeds it events in order.
class ResponseAssembler {
 public:
  virtual ~ResponseAssembler() = default;
  // Takes one event of choice `choice`. Streaming: returns the SSE frames to send now.
  virtual std::vector<std::string> on_event(int choice, const RequestEvent& ev) = 0;
  virtual bool done() const = 0;
  // The first engine error, if a choice ended with finish_reason "error".
  virtual const std::optional<ApiError>& error() const = 0;
  // Non-streaming: the whole response body (call when done()).
  virtual std::string final_body() const = 0;
  // Streaming: the usage chunk (when asked) and `data: [DONE]`.
  virtual std::vector<std::string> closing_frames() const = 0;
  virtual int num_choices() const = 0;
  // Tokens generated so far for one choice.
  virtual int completion_tokens(int choice) const = 0;
};

}  // namespace xq
