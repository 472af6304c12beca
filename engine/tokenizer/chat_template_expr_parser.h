// Expression parser of the chat-template Jinja subset, with jinja2's operator precedence:
// conditional < or < and < not < comparison < + - < ~ < * / // % < ** < unary < postfix/filter/is.
// The statement parser (chat_template_parser.cpp) builds on its token cursor.
#pragma once

#include <string>
#include <vector>

#include "engine/tokenizer/chat_template_ast.h"
#include "engine/tokenizer/chat_template_lexer.h"

namespace xq::jinja {

class ExprParser {
 public:
  explicit ExprParser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  ExprPtr parse_expr(bool allow_cond = true);
  // `a, b` without parentheses (set right-hand sides) becomes a tuple.
  ExprPtr parse_tuple_or_expr();

 protected:
  using K = Token::Kind;

  const Token& peek(size_t ahead = 0) const {
    return toks_[std::min(pos_ + ahead, toks_.size() - 1)];
  }
  const Token& next() { return toks_[pos_ < toks_.size() - 1 ? pos_++ : pos_]; }
  bool is_op(const char* op, size_t ahead = 0) const {
    return peek(ahead).kind == K::kOp && peek(ahead).value == op;
  }
  bool is_name(const char* name, size_t ahead = 0) const {
    return peek(ahead).kind == K::kName && peek(ahead).value == name;
  }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    ++pos_;
    return true;
  }
  bool accept_name(const char* name) {
    if (!is_name(name)) return false;
    ++pos_;
    return true;
  }

  [[noreturn]] static void fail(const Token& t, const std::string& what) {
    throw TemplateError("template syntax error at line " + std::to_string(t.line) + ", column " +
                        std::to_string(t.col) + ": " + what);
  }
  static std::string describe(const Token& t) {
    switch (t.kind) {
      case K::kEof:
        return "end of template";
      case K::kBlockEnd:
        return "end of statement block";
      case K::kVarEnd:
        return "end of print statement";
      case K::kText:
        return "template text";
      default:
        return "'" + t.value + "'";
    }
  }
  // Expressions and blocks nested past kMaxNesting are refused at parse time: parsing and
  // rendering recurse once per level, and a template is input (a model file, --chat-template).
  static constexpr int kMaxNesting = 128;
  struct NestingGuard {
    ExprParser& p;
    explicit NestingGuard(ExprParser& parser) : p(parser) {
      if (++p.nesting_ > kMaxNesting)
        fail(p.peek(), "nested deeper than " + std::to_string(kMaxNesting) + " levels");
    }
    ~NestingGuard() { --p.nesting_; }
    NestingGuard(const NestingGuard&) = delete;
    NestingGuard& operator=(const NestingGuard&) = delete;
  };
  int nesting_ = 0;

  void expect_op(const char* op) {
    if (!accept_op(op)) fail(peek(), std::string("expected '") + op + "', got " + describe(peek()));
  }
  std::string expect_name() {
    if (peek().kind != K::kName) fail(peek(), "expected a name, got " + describe(peek()));
    return next().value;
  }
  void expect_block_end() {
    if (peek().kind != K::kBlockEnd)
      fail(peek(), "expected end of statement block, got " + describe(peek()));
    ++pos_;
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;

 private:
  ExprPtr node(Expr::Kind kind, const Token& at);
  ExprPtr binary(const std::string& op, ExprPtr a, ExprPtr b, const Token& at);
  ExprPtr parse_or();
  ExprPtr parse_and();
  ExprPtr parse_not();
  ExprPtr parse_compare();
  ExprPtr parse_math1();
  ExprPtr parse_concat();
  ExprPtr parse_math2();
  ExprPtr parse_pow();
  ExprPtr parse_unary(bool with_filter = true);
  ExprPtr parse_primary();
  ExprPtr parse_postfix(ExprPtr e);
  ExprPtr parse_subscript(ExprPtr obj, const Token& at);
  void parse_args(Expr& e);
  ExprPtr parse_call(ExprPtr callee);
  ExprPtr parse_filters(ExprPtr e);
  bool starts_test_arg() const;
};

}  // namespace xq::jinja
