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
    : ChoiceAssembler(std::move(meta), prep, tok, "chat.completion", "chat.completion.chunk"),
      choices_(prep.requests.size()) {}

ojson ChatAssembler::logprob_entry(const GeneratedToken& t) const {
  // `token` is text (invalid UTF-8 replaced); `bytes` keeps the token's exact bytes.
  const std::string raw = tok_.token_bytes(t.id);
  ojson top = ojson::array();
  for (const auto& [id, logprob] : t.logprob->top) {
    const std::string b = tok_.token_bytes(id);
    top.push_back({{"token", token_name(id, sanitize_utf8(b))},
                   {"logprob", logprob},
                   {"bytes", byte_list(b)}});
  }
  return {{"token", token_name(t.id, sanitize_utf8(raw))},
          {"logprob", t.logprob->logprob},
          {"bytes", byte_list(raw)},
          {"top_logprobs", std::move(top)}};
}

std::vector<std::string> ChatAssembler::on_event(int index, const RequestEvent& ev) {
  ChoiceState& st = states_.at(index);
  if (st.finished) return {};
  Choice& c = choices_.at(index);
  std::vector<std::string> frames;
  const bool stream = prep_.body.stream;
  const bool with_logprobs = prep_.body.logprobs.has_value();
  if (!st.started) {
    st.started = true;
    if (stream)
      frames.push_back(chunk_frame({{"index", index},
                                    {"delta", {{"role", "assistant"}, {"content", ""}}},
                                    {"logprobs", nullptr},
                                    {"finish_reason", nullptr}}));
  }
  for (const GeneratedToken& t : ev.tokens) {
    if (with_logprobs && t.logprob) c.logprobs.push_back(logprob_entry(t));
  }
  c.content += ev.text;
  record(index, ev);
  if (!stream) return {};
  if (ev.finished && ev.finish_reason == "error") {
    frames.push_back(error_frame());
    return frames;
  }
  const bool new_logprobs = c.logprobs.size() > c.streamed_logprobs;
  if (ev.text.empty() && !new_logprobs && !ev.finished) return frames;
  if (!with_logprobs && !ev.text.empty()) {  // the per-token common case, written directly
    frames.push_back(chunk_frame_text(
        "{\"index\":" + std::to_string(index) + ",\"delta\":{\"content\":" + json_string(ev.text) +
        "},\"logprobs\":null,\"finish_reason\":" +
        (ev.finished ? json_string(st.finish_reason) + ",\"stop_reason\":" + stop_reason_text(index)
                     : std::string("null")) +
        "}"));
    return frames;
  }
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
  if (ev.finished) {
    ch["finish_reason"] = st.finish_reason;
    ch["stop_reason"] = st.stop_reason;
  }
  frames.push_back(chunk_frame(ch));
  return frames;
}

ojson ChatAssembler::choice_body(int i, int index) const {
  const Choice& c = choices_.at(i);
  ojson lp = nullptr;
  if (prep_.body.logprobs) lp = {{"content", c.logprobs}};
  return {{"index", index},
          {"message", {{"role", "assistant"}, {"content", c.content}}},
          {"logprobs", std::move(lp)},
          {"finish_reason", states_.at(i).finish_reason},
          {"stop_reason", states_.at(i).stop_reason}};
}

}  // namespace xq
