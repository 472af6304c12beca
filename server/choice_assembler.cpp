#include "server/choice_assembler.h"

#include <algorithm>

namespace xq {

using ojson = nlohmann::ordered_json;

std::string dump_json(const ojson& j) {
  return j.dump(-1, ' ', false, ojson::error_handler_t::replace);
}

std::string sse_frame(const ojson& j) { return "data: " + dump_json(j) + "\n\n"; }

ChoiceAssembler::ChoiceAssembler(CompletionMeta meta, const PreparedCompletion& prep,
                                 const Tokenizer& tok, const char* object, const char* chunk_object)
    : meta_(std::move(meta)),
      prep_(prep),
      tok_(tok),
      states_(prep.requests.size()),
      object_(object),
      chunk_object_(chunk_object) {
  // The envelope is the same in every chunk of a stream: its text is made once, around a
  // placeholder choice.
  ojson j = envelope(chunk_object_, ojson::array({"\x01"}));
  if (prep_.body.include_usage) j["usage"] = nullptr;
  const std::string whole = sse_frame(j), marker = json_string("\x01");
  const size_t at = whole.rfind(marker);  // the choice comes after id and model
  chunk_head_ = whole.substr(0, at);
  chunk_tail_ = whole.substr(at + marker.size());
}

std::string ChoiceAssembler::json_string(const std::string& s) { return dump_json(ojson(s)); }

void ChoiceAssembler::record(int choice, const RequestEvent& ev) {
  ChoiceState& s = states_.at(choice);
  s.completion_tokens += static_cast<int>(ev.tokens.size());
  for (const GeneratedToken& t : ev.tokens)
    if (t.logprob) s.cumulative_logprob += t.logprob->logprob;
  if (!ev.finished) return;
  s.finished = true;
  s.finish_reason = ev.finish_reason;
  if (ev.stop_str) s.stop_reason = *ev.stop_str;
  if (ev.stop_token) s.stop_reason = *ev.stop_token;
  ++finished_;
  if (ev.finish_reason == "error" && !error_) {
    const std::string msg = ev.error.empty() ? "generation failed" : ev.error;
    error_ = ev.error_status == 503 ? unavailable(msg) : internal_error(msg);
  }
}

std::vector<int> ChoiceAssembler::returned_choices() const {
  const int per_prompt = prep_.body.best_of, keep = prep_.body.n;
  std::vector<int> out;
  for (int first = 0; first < num_choices(); first += per_prompt) {
    std::vector<int> group(static_cast<size_t>(per_prompt));
    for (int k = 0; k < per_prompt; ++k) group[k] = first + k;
    if (keep < per_prompt)
      std::stable_sort(group.begin(), group.end(), [this](int a, int b) {
        return states_[a].cumulative_logprob > states_[b].cumulative_logprob;
      });
    out.insert(out.end(), group.begin(), group.begin() + keep);
  }
  return out;
}

ojson ChoiceAssembler::envelope(const char* object, ojson choices) const {
  return {{"id", meta_.id},
          {"object", object},
          {"created", meta_.created},
          {"model", meta_.model},
          {"choices", std::move(choices)}};
}

ojson ChoiceAssembler::usage() const {
  int64_t prompt = 0, completion = 0;
  for (const PreparedPrompt& p : prep_.prompts) prompt += static_cast<int64_t>(p.ids.size());
  for (int i : returned_choices()) completion += states_[i].completion_tokens;
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion}};
}

std::string ChoiceAssembler::chunk_frame(const ojson& choice) const {
  return chunk_frame_text(dump_json(choice));
}

std::string ChoiceAssembler::chunk_frame_text(const std::string& choice_json) const {
  std::string out;
  out.reserve(chunk_head_.size() + choice_json.size() + chunk_tail_.size());
  out += chunk_head_;
  out += choice_json;
  out += chunk_tail_;
  return out;
}

std::string ChoiceAssembler::error_frame() const {
  return sse_frame(ojson::parse(error_body(*error_)));
}

std::string ChoiceAssembler::final_body() const {
  ojson choices = ojson::array();
  const std::vector<int> shown = returned_choices();
  for (size_t k = 0; k < shown.size(); ++k)
    choices.push_back(choice_body(shown[k], static_cast<int>(k)));
  ojson j = envelope(object_, std::move(choices));
  j["usage"] = usage();
  return dump_json(j);
}

// The usage chunk (when asked for), then `data: [DONE]`.
std::vector<std::string> ChoiceAssembler::closing_frames() const {
  std::vector<std::string> frames;
  if (prep_.body.include_usage) {
    ojson j = envelope(chunk_object_, ojson::array());
    j["usage"] = usage();
    frames.push_back(sse_frame(j));
  }
  frames.push_back("data: [DONE]\n\n");
  return frames;
}

}  // namespace xq
