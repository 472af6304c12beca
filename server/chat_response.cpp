#include "server/chat_response.h"

namespace xq {

using ojson = nlohmann::ordered_json;

namespace {

ojson byte_list(const std::string& s) {
  ojson out = ojson::array();
  for (unsigned char ch : s) out.push_back(static_cast<int>(ch));
  return out;
}

}  // namespace

ChatAssembler::ChatAssembler(CompletionMeta meta, const PreparedCompletion& prep,
                             const Tokenizer& tok)
    : meta_(std::move(meta)), prep_(prep), tok_(tok), choices_(prep.requests.size()) {}

ojson ChatAssembler::logprob_entry(const GeneratedToken& t) const {
  // `token` is text (invalid UTF-8 replaced); `bytes` keeps the token's exact bytes.
  const std::string raw = tok_.token_bytes(t.id);
  ojson top = ojson::array();
  for (const auto& [id, logprob] : t.logprob->top) {
    const std::string b = tok_.token_bytes(id);
    top.push_back({{"token", sanitize_utf8(b)}, {"logprob", logprob}, {"bytes", byte_list(b)}});
  }
  return {{"token", sanitize_utf8(raw)},
          {"logprob", t.logprob->logprob},
          {"bytes", byte_list(raw)},
          {"top_logprobs", std::move(top)}};
}

std::vector<std::string> ChatAssembler::on_event(int index, const RequestEvent& ev) {
  Choice& c = choices_.at(index);
  if (c.finished) return {};
  std::vector<std::string> frames;
  const bool stream = prep_.body.stream;
  const bool with_logprobs = prep_.body.logprobs.has_value();
  auto frame = [&](ojson choice) {
    ojson j = chunk(ojson::array({std::move(choice)}));
    if (prep_.body.include_usage) j["usage"] = nullptr;
    frames.push_back(sse_frame(j));
  };
  if (!c.started) {
    c.started = true;
    if (stream)
      frame({{"index", index},
             {"delta", {{"role", "assistant"}, {"content", ""}}},
             {"logprobs", nullptr},
             {"finish_reason", nullptr}});
  }
  for (const GeneratedToken& t : ev.tokens) {
    ++c.completion_tokens;
    if (with_logprobs && t.logprob) c.logprobs.push_back(logprob_entry(t));
  }
  c.content += ev.text;
  if (ev.finished) {
    c.finished = true;
    c.finish_reason = ev.finish_reason;
    ++finished_;
    if (ev.finish_reason == "error" && !error_)
      error_ = internal_error(ev.error.empty() ? "generation failed" : ev.error);
  }
  if (!stream) return {};
  if (ev.finished && ev.finish_reason == "error") {
    frames.push_back(sse_frame(ojson::parse(error_body(*error_))));
    return frames;
  }
  const bool new_logprobs = c.logprobs.size() > c.streamed_logprobs;
  if (ev.text.empty() && !new_logprobs && !ev.finished) return frames;
  ojson delta = ojson::object();
  if (!ev.text.empty() || new_logprobs) delta["content"] = ev.text;
  ojson ch = {{"index", index},
              {"delta", std::move(delta)},
              {"logprobs", nullptr},
              {"finish_reason", nullptr}};
  if (with_logprobs) {
    ojson part = ojson::array();
    for (size_t i = c.streamed_logprobs; i < c.logprobs.size(); ++i) part.push_back(c.logprobs[i]);
    c.streamed_logprobs = c.logprobs.size();
    ch["logprobs"] = {{"content", std::move(part)}};
  }
  if (ev.finished) ch["finish_reason"] = c.finish_reason;
  frame(std::move(ch));
  return frames;
}

ojson ChatAssembler::chunk(const ojson& choices) const {
  return response_envelope(meta_, "chat.completion.chunk", choices);
}

ojson ChatAssembler::usage() const {
  int64_t prompt = 0, completion = 0;
  for (const PreparedPrompt& p : prep_.prompts) prompt += static_cast<int64_t>(p.ids.size());
  for (const Choice& c : choices_) completion += c.completion_tokens;
  return usage_json(prompt, completion);
}

std::string ChatAssembler::final_body() const {
  ojson choices = ojson::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
    ojson lp = nullptr;
    if (prep_.body.logprobs) lp = {{"content", c.logprobs}};
    choices.push_back({{"index", i},
                       {"message", {{"role", "assistant"}, {"content", c.content}}},
                       {"logprobs", std::move(lp)},
                       {"finish_reason", c.finish_reason}});
  }
  ojson j = response_envelope(meta_, "chat.completion", std::move(choices));
  j["usage"] = usage();
  return dump_json(j);
}

std::vector<std::string> ChatAssembler::closing_frames() const {
  if (!prep_.body.include_usage) return stream_closing_frames(nullptr);
  ojson j = chunk(ojson::array());
  j["usage"] = usage();
  return stream_closing_frames(&j);
}

}  // namespace xq
