#include "server/completions_response.h"

namespace xq {

using ojson = nlohmann::ordered_json;

int64_t utf8_length(const std::string& s) {
  int64_t n = 0;
  for (unsigned char ch : s) n += (ch & 0xC0) != 0x80;
  return n;
}

CompletionAssembler::CompletionAssembler(CompletionMeta meta, const PreparedCompletion& prep,
                                         const Tokenizer& tok)
    : ChoiceAssembler(std::move(meta), prep, tok, "text_completion", "text_completion"),
      choices_(prep.requests.size()) {
  for (size_t i = 0; i < choices_.size(); ++i) choices_[i].prompt = prep.choice_prompt[i];
}

void CompletionAssembler::add_logprob(Choice& c, int token, const std::string& text,
                                      const std::optional<TokenLogprob>& lp) {
  Logprobs& l = c.logprobs;
  // The same naming for the token and its alternatives, so that a token whose bytes are not
  // valid UTF-8 is not listed twice (once raw, once replaced).
  const std::string name = token_key(token);
  l.tokens.push_back(name);
  l.text_offset.push_back(c.offset);
  c.offset += utf8_length(text);
  if (!lp) {
    l.token_logprobs.push_back(nullptr);
    l.top_logprobs.push_back(nullptr);
    return;
  }
  l.token_logprobs.push_back(lp->logprob);
  // Keys are token names, best first; the token itself is always listed, as vLLM does.
  ojson top = ojson::object();
  for (const auto& [id, logprob] : lp->top) {
    const std::string key = token_key(id);
    if (!top.contains(key)) top[key] = logprob;
  }
  if (!top.contains(name)) top[name] = lp->logprob;
  l.top_logprobs.push_back(std::move(top));
}

// The prompt's tokens with their logprobs. A token's offset is where its text starts in the
// prompt as detokenized without special tokens (a BOS adds no text), so offsets never go back.
void CompletionAssembler::add_echo(Choice& c, const RequestEvent& ev) {
  const PreparedPrompt& p = prep_.prompts[c.prompt];
  c.text = p.text;
  if (!prep_.body.logprobs) return;
  c.offset = 0;
  IncrementalDetokenizer detok(tok_, true);
  for (size_t i = 0; i < p.ids.size(); ++i) {
    std::optional<TokenLogprob> lp;
    if (ev.prompt_logprobs && i < ev.prompt_logprobs->size()) lp = (*ev.prompt_logprobs)[i];
    add_logprob(c, p.ids[i], detok.push(p.ids[i]), lp);
  }
  c.offset = utf8_length(c.text);
}

std::vector<std::string> CompletionAssembler::on_event(int index, const RequestEvent& ev) {
  ChoiceState& st = states_.at(index);
  if (st.finished) return {};
  Choice& c = choices_.at(index);
  const size_t text_before = c.text.size();
  if (!st.started) {
    st.started = true;
    if (prep_.body.echo) add_echo(c, ev);
  }
  for (const GeneratedToken& t : ev.tokens) {
    if (prep_.body.logprobs) add_logprob(c, t.id, t.text, t.logprob);
  }
  c.text += ev.text;
  record(index, ev);
  if (!prep_.body.stream) return {};
  if (ev.finished && ev.finish_reason == "error") return {error_frame()};
  const size_t lp_count = c.logprobs.tokens.size();
  const bool new_logprobs = prep_.body.logprobs && lp_count > c.streamed_tokens;
  if (c.text.size() == text_before && !new_logprobs && !ev.finished) return {};
  if (!prep_.body.logprobs) {  // the per-token common case, written directly
    return {chunk_frame_text(
        "{\"index\":" + std::to_string(index) + ",\"text\":" +
        json_string(c.text.substr(text_before)) + ",\"logprobs\":null,\"finish_reason\":" +
        (ev.finished ? json_string(st.finish_reason) + ",\"stop_reason\":" + stop_reason_text(index)
                     : std::string("null")) +
        "}")};
  }
  ojson ch = {{"index", index},
              {"text", c.text.substr(text_before)},
              {"logprobs", nullptr},
              {"finish_reason", nullptr}};
  if (prep_.body.logprobs) ch["logprobs"] = logprobs_json(c.logprobs, c.streamed_tokens);
  c.streamed_tokens = lp_count;
  if (ev.finished) {
    ch["finish_reason"] = st.finish_reason;
    ch["stop_reason"] = st.stop_reason;
  }
  return {chunk_frame(ch)};
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

ojson CompletionAssembler::choice_body(int i, int index) const {
  const Choice& c = choices_.at(i);
  return {{"index", index},
          {"text", c.text},
          {"logprobs", prep_.body.logprobs ? logprobs_json(c.logprobs, 0) : ojson()},
          {"finish_reason", states_.at(i).finish_reason},
          {"stop_reason", states_.at(i).stop_reason}};
}

}  // namespace xq
