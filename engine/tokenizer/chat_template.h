// ChatTemplate: renders a model's Jinja chat template (tokenizer_config.json "chat_template" or
// GGUF tokenizer.chat_template) the way transformers' apply_chat_template does: jinja2 with
// trim_blocks and lstrip_blocks, loop controls, raise_exception, strftime_now and a tojson that
// is json.dumps(ensure_ascii=False).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace xq {

// Syntax errors (with "line L, column C") and render-time errors, raise_exception(msg) included.
struct TemplateError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace jinja {
struct Template;
}

class ChatTemplate {
 public:
  // Parses the template; throws TemplateError on a syntax error.
  explicit ChatTemplate(std::string source);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // context: {"messages": [...], "add_generation_prompt": bool, "bos_token": "...",
  // "eos_token": "...", "tools": null, ...}; every key becomes a template variable. As in
  // jinja2, an undefined variable prints empty and is falsy, while looking into it (x.y, x[0]) or
  // computing with it is an error. Throws TemplateError (raise_exception's message verbatim).
  // nlohmann::json sorts object keys; use render_ordered to keep the caller's key order (it shows
  // in `tojson` of tools and in dict iteration).
  std::string render(const nlohmann::json& context) const;
  std::string render_ordered(const nlohmann::ordered_json& context) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::unique_ptr<jinja::Template> tmpl_;
};

}  // namespace xq
