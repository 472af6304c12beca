// Lexer for the chat-template Jinja subset: splits a template into text and tag tokens, applying
// jinja2's whitespace control as transformers configures it (trim_blocks, lstrip_blocks, `-`/`+`
// signs, one trailing newline dropped).
#pragma once

#include <string>
#include <vector>

namespace xq::jinja {

struct Token {
  enum class Kind {
    kText,
    kVarBegin,
    kVarEnd,
    kBlockBegin,
    kBlockEnd,
    kName,
    kString,
    kInt,
    kFloat,
    kOp,
    kEof
  };
  Kind kind;
  std::string value;  // text, name, decoded string literal, number spelling or operator
  int line = 1;
  int col = 1;
};

// Throws TemplateError with line/column on an unterminated tag, comment or string.
std::vector<Token> lex(const std::string& source);

}  // namespace xq::jinja
