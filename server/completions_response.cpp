#include "server/completions_response.h"

namespace xq {

using ojson = nlohmann::ordered_json;

std::string dump_json(const ojson& j) {
  return j.dump(-1, ' ', false, ojson::error_handler_t::replace);
}

std::string sse_frame(const ojson& j) { return "data: " + dump_json(j) + "\n\n"; }

int64_t utf8_length(const std::string& s) {
  int64_t n = 0;
  for (unsigned char ch : s) n += (ch & 0xC0) != 0x80;
  return n;
}

CompletionAssembler::CompletionAssembler(CompletionMeta meta, const PreparedCompletion& prep,
                                         const Tokenizer& tok)
    : meta_(std::move(meta)), prep_(prep), tok_(tok), choices_(prep.requests.size()) {
  for (size_t i = 0; i < choices_.size(); ++i) choices_[i].prompt = prep.choice_prompt[i];
}

void CompletionAssembler::add_logprob(Choice& c, int token, const std::string& text,
                                      const std::optional<TokenLogprob>& lp) {
  Logprobs& l = c.logprobs;
  l.tokens.push_back(text);
  l.text_offset.push_back(c.offset);
  c.offset += utf8_length(text);
  if (!lp) {
    l.token_logprobs.push_back(nullptr);
    l.top_logprobs.push_back(nullptr);
    return;
  }
  l.token_logprobs.push_back(lp->logprob);
  // Keys are token texts, best first; the token itself is always listed, as vLLM does.
  ojson top = ojson::object();
  for (const auto& [id, logprob] : lp->top) {
    const std::string key = tok_.token_bytes(id);
    if (!top.contains(key)) top[key] = logprob;
  }
  if (!top.contains(text)) top[text] = lp->logprob;
  l.top_logprobs.push_back(std::move(top));
}

void CompletionAssembler::add_echo(Choice& c, const RequestEvent& ev) {
  const PreparedPrompt& p = prep_.prompts[c.prompt];
  c.text = p.text;
  if (!prep_.body.logprobs) return;
  c.offset = 0;
  for (size_t i = 0; i < p.ids.size(); ++i) {
    std::optional<TokenLogprob> lp;
    if (ev.prompt_logprobs && i < ev.prompt_logprobs->size()) lp = (*ev.prompt_logprobs)[i];
    add_logprob(c, p.ids[i], tok_.token_bytes(p.ids[i]), lp);
  }
  c.offset = utf8_length(c.text);
}

std::vector<std::string> CompletionAssembler::on_event(int index, const RequestEvent& ev) {
  Choice& c = choices_.at(index);
  if (c.finished) return {};
  const size_t text_before = c.text.size();
  if (!c.started) {
    c.started = true;
    if (prep_.body.echo) add_echo(c, ev);
  }
  for (const GeneratedToken& t : ev.tokens) {
    ++c.completion_tokens;
    if (prep_.body.logprobs) add_logprob(c, t.id, t.text, t.logprob);
  }
  c.text += ev.text;
  if (ev.finished) {
    c.finished = true;
    c.finish_reason = ev.finish_reason;
    ++finished_;
    if (ev.finish_reason == "error" && !error_)
      error_ = internal_error(ev.error.empty() ? "generation failed" : ev.error);
  }
  if (!prep_.body.stream) return {};
  if (ev.finished && ev.finish_reason == "error")
    return {sse_frame(ojson::parse(error_body(*error_)))};
  const size_t lp_count = c.logprobs.tokens.size();
  const bool new_logprobs = prep_.body.logprobs && lp_count > c.streamed_tokens;
  if (c.text.size() == text_before && !new_logprobs && !ev.finished) return {};
  ojson ch = {{"index", index},
              {"text", c.text.substr(text_before)},
              {"logprobs", nullptr},
              {"finish_reason", nullptr}};
  if (prep_.body.logprobs) ch["logprobs"] = logprobs_json(c.logprobs, c.streamed_tokens);
  c.streamed_tokens = lp_count;
  if (ev.finished) ch["finish_reason"] = c.finish_reason;
  ojson j = chunk(ojson::array({ch}));
  if (prep_.body.include_usage) j["usage"] = nullptr;
  return {sse_frame(j)};
}

ojson CompletionAssembler::logprobs_json(const Logprobs& lp, size_t from) const {
  auto tail = [from](const ojson& a) {
    ojson out = ojson::array();
    for (size_t i = from; i < a.size(); ++i) out.push_back(a[i]);
    return out;
  };
  return {{"tokens", tail(lp.tokens)},
          {"token_logprobs", tail(lp.token_logprobs)},
          {"top_logprobs", tail(lp.top_logprobs)},
          {"text_offset", tail(lp.text_offset)}};
}

ojson response_envelope(const CompletionMeta& meta, const char* object, ojson choices) {
  return {{"id", meta.id},
          {"object", object},
          {"created", meta.created},
          {"model", meta.model},
          {"choices", std::move(choices)}};
}

ojson usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

std::vector<std::string> stream_closing_frames(const ojson* usage_chunk) {
  std::vector<std::string> frames;
  if (usage_chunk) frames.push_back(sse_frame(*usage_chunk));
  frames.push_back("data: [DONE]\n\n");
  return frames;
}

ojson CompletionAssembler::chunk(const ojson& choices) const {
  return response_envelope(meta_, "text_completion", choices);
}

ojson CompletionAssembler::usage() const {
  int64_t prompt = 0, completion = 0;
  for (const PreparedPrompt& p : prep_.prompts) prompt += static_cast<int64_t>(p.ids.size());
  for (const Choice& c : choices_) completion += c.completion_tokens;
  return usage_json(prompt, completion);
}

std::string CompletionAssembler::final_body() const {
  ojson choices = ojson::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
    choices.push_back({{"index", i},
                       {"text", c.text},
                       {"logprobs", prep_.body.logprobs ? logprobs_json(c.logprobs, 0) : ojson()},
                       {"finish_reason", c.finish_reason}});
  }
  ojson j = chunk(choices);
  j["usage"] = usage();
  return dump_json(j);
}

std::vector<std::string> CompletionAssembler::closing_frames() const {
  if (!prep_.body.include_usage) return stream_closing_frames(nullptr);
  ojson j = chunk(ojson::array());
  j["usage"] = usage();
  return stream_closing_frames(&j);
}

}  // namespace xq
