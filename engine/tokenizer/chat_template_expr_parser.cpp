#include "engine/tokenizer/chat_template_expr_parser.h"

#include <set>

#include "engine/tokenizer/chat_template.h"

namespace xq::jinja {

ExprPtr ExprParser::node(Expr::Kind kind, const Token& at) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = at.line;
  e->col = at.col;
  return e;
}

ExprPtr ExprParser::parse_tuple_or_expr() {
  const Token& at = peek();
  ExprPtr first = parse_expr();
  if (!is_op(",")) return first;
  auto t = node(Expr::Kind::kTuple, at);
  t->children.push_back(std::move(first));
  while (accept_op(",")) t->children.push_back(parse_expr());
  return t;
}

ExprPtr ExprParser::parse_expr(bool allow_cond) {
  const NestingGuard nested(*this);
  const Token& at = peek();
  ExprPtr e = parse_or();
  while (allow_cond && accept_name("if")) {
    auto c = node(Expr::Kind::kCond, at);
    c->children.push_back(std::move(e));
    c->children.push_back(parse_or());
    c->children.push_back(accept_name("else") ? parse_expr() : nullptr);
    e = std::move(c);
  }
  return e;
}

ExprPtr ExprParser::binary(const std::string& op, ExprPtr a, ExprPtr b, const Token& at) {
  auto e = node(Expr::Kind::kBinary, at);
  e->name = op;
  e->children.push_back(std::move(a));
  e->children.push_back(std::move(b));
  return e;
}

ExprPtr ExprParser::parse_or() {
  ExprPtr e = parse_and();
  while (is_name("or")) {
    const Token& at = next();
    e = binary("or", std::move(e), parse_and(), at);
  }
  return e;
}
ExprPtr ExprParser::parse_and() {
  ExprPtr e = parse_not();
  while (is_name("and")) {
    const Token& at = next();
    e = binary("and", std::move(e), parse_not(), at);
  }
  return e;
}
ExprPtr ExprParser::parse_not() {
  const NestingGuard nested(*this);
  if (is_name("not")) {
    auto e = node(Expr::Kind::kUnary, next());
    e->name = "not";
    e->children.push_back(parse_not());
    return e;
  }
  return parse_compare();
}
ExprPtr ExprParser::parse_compare() {
  ExprPtr first = parse_math1();
  ExprPtr e;
  for (;;) {
    const Token& at = peek();
    std::string op;
    if (at.kind == K::kOp && (at.value == "==" || at.value == "!=" || at.value == "<" ||
                              at.value == "<=" || at.value == ">" || at.value == ">=")) {
      op = next().value;
    } else if (is_name("in")) {
      next();
      op = "in";
    } else if (is_name("not") && is_name("in", 1)) {
      pos_ += 2;
      op = "not in";
    } else {
      return e ? std::move(e) : std::move(first);
    }
    if (!e) {
      e = node(Expr::Kind::kCompare, at);
      e->children.push_back(std::move(first));
    }
    e->ops.push_back(op);
    e->children.push_back(parse_math1());
  }
}
ExprPtr ExprParser::parse_math1() {
  ExprPtr e = parse_concat();
  while (is_op("+") || is_op("-")) {
    const Token& at = next();
    e = binary(at.value, std::move(e), parse_concat(), at);
  }
  return e;
}
ExprPtr ExprParser::parse_concat() {
  ExprPtr e = parse_math2();
  while (is_op("~")) {
    const Token& at = next();
    e = binary("~", std::move(e), parse_math2(), at);
  }
  return e;
}
ExprPtr ExprParser::parse_math2() {
  ExprPtr e = parse_pow();
  while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
    const Token& at = next();
    e = binary(at.value, std::move(e), parse_pow(), at);
  }
  return e;
}
ExprPtr ExprParser::parse_pow() {
  ExprPtr e = parse_unary();
  while (is_op("**")) {
    const Token& at = next();
    e = binary("**", std::move(e), parse_unary(), at);
  }
  return e;
}
ExprPtr ExprParser::parse_unary(bool with_filter) {
  const NestingGuard nested(*this);
  ExprPtr e;
  if (is_op("-") || is_op("+")) {
    e = node(Expr::Kind::kUnary, peek());
    e->name = next().value;
    e->children.push_back(parse_unary(false));
  } else {
    e = parse_postfix(parse_primary());
  }
  return with_filter ? parse_filters(std::move(e)) : std::move(e);
}

ExprPtr ExprParser::parse_primary() {
  const Token& t = peek();
  if (t.kind == K::kName) {
    next();
    auto e = node(Expr::Kind::kLiteral, t);
    const std::string& v = t.value;
    if (v == "true" || v == "True")
      e->literal = Value::boolean(true);
    else if (v == "false" || v == "False")
      e->literal = Value::boolean(false);
    else if (v == "none" || v == "None")
      e->literal = Value::none();
    else {
      e->kind = Expr::Kind::kName;
      e->name = v;
    }
    return e;
  }
  if (t.kind == K::kString) {
    auto e = node(Expr::Kind::kLiteral, t);
    std::string s;
    while (peek().kind == K::kString) s += next().value;  // adjacent literals concatenate
    e->literal = Value::string(std::move(s));
    return e;
  }
  if (t.kind == K::kInt || t.kind == K::kFloat) {
    next();
    auto e = node(Expr::Kind::kLiteral, t);
    try {
      e->literal = t.kind == K::kInt ? Value::integer(std::stoll(t.value))
                                     : Value::floating(std::stod(t.value));
    } catch (const std::exception&) {
      fail(t, "number out of range: " + t.value);
    }
    return e;
  }
  if (accept_op("(")) {
    if (accept_op(")")) return node(Expr::Kind::kTuple, t);
    ExprPtr first = parse_expr();
    if (accept_op(")")) return first;
    auto tup = node(Expr::Kind::kTuple, t);
    tup->children.push_back(std::move(first));
    while (accept_op(",")) {
      if (is_op(")")) break;
      tup->children.push_back(parse_expr());
    }
    expect_op(")");
    return tup;
  }
  if (accept_op("[")) {
    auto e = node(Expr::Kind::kList, t);
    while (!accept_op("]")) {
      e->children.push_back(parse_expr());
      if (!is_op("]")) expect_op(",");
    }
    return e;
  }
  if (accept_op("{")) {
    auto e = node(Expr::Kind::kDict, t);
    while (!accept_op("}")) {
      e->children.push_back(parse_expr());
      expect_op(":");
      e->children.push_back(parse_expr());
      if (!is_op("}")) expect_op(",");
    }
    return e;
  }
  fail(t, "unexpected " + describe(t));
}

ExprPtr ExprParser::parse_postfix(ExprPtr e) {
  for (;;) {
    const Token& at = peek();
    if (accept_op(".")) {
      auto a = node(Expr::Kind::kAttr, at);
      if (peek().kind == K::kInt) {  // x.0 is x[0] in jinja2
        auto idx = node(Expr::Kind::kLiteral, peek());
        idx->literal = Value::integer(std::stoll(next().value));
        a->kind = Expr::Kind::kItem;
        a->children.push_back(std::move(e));
        a->children.push_back(std::move(idx));
      } else {
        a->name = expect_name();
        a->children.push_back(std::move(e));
      }
      e = std::move(a);
    } else if (accept_op("[")) {
      e = parse_subscript(std::move(e), at);
    } else if (is_op("(")) {
      e = parse_call(std::move(e));
    } else {
      return e;
    }
  }
}

ExprPtr ExprParser::parse_subscript(ExprPtr obj, const Token& at) {
  ExprPtr parts[3];
  bool slice = false;
  for (int k = 0; k < 3; ++k) {
    if (!is_op(":") && !is_op("]")) parts[k] = parse_expr();
    if (k < 2 && accept_op(":")) {
      slice = true;
      continue;
    }
    break;
  }
  expect_op("]");
  auto e = node(slice ? Expr::Kind::kSlice : Expr::Kind::kItem, at);
  e->children.push_back(std::move(obj));
  if (!slice && !parts[0]) fail(at, "expected a subscript");
  for (int k = 0; k < (slice ? 3 : 1); ++k) e->children.push_back(std::move(parts[k]));
  return e;
}

// Call arguments `(a, b, key=value)` appended to e's children/kwargs.
void ExprParser::parse_args(Expr& e) {
  expect_op("(");
  while (!accept_op(")")) {
    if (peek().kind == K::kName && is_op("=", 1)) {
      std::string key = next().value;
      next();
      e.kwargs.emplace_back(std::move(key), parse_expr());
    } else {
      e.children.push_back(parse_expr());
    }
    if (!is_op(")")) expect_op(",");
  }
}

ExprPtr ExprParser::parse_call(ExprPtr callee) {
  auto e = node(Expr::Kind::kCall, peek());
  e->children.push_back(std::move(callee));
  parse_args(*e);
  return e;
}

ExprPtr ExprParser::parse_filters(ExprPtr e) {
  for (;;) {
    const Token& at = peek();
    if (accept_op("|")) {
      auto f = node(Expr::Kind::kFilter, at);
      f->name = expect_name();
      while (accept_op(".")) {
        f->name += '.';
        f->name += expect_name();
      }
      f->children.push_back(std::move(e));
      if (is_op("(")) parse_args(*f);
      e = std::move(f);
    } else if (is_name("is")) {
      next();
      auto t = node(Expr::Kind::kTest, at);
      t->negated = accept_name("not");
      t->name = expect_name();
      t->children.push_back(std::move(e));
      if (is_op("(")) {
        parse_args(*t);
      } else if (starts_test_arg()) {
        t->children.push_back(parse_postfix(parse_primary()));
      }
      e = std::move(t);
    } else if (is_op("(")) {
      e = parse_call(std::move(e));
    } else {
      return e;
    }
  }
}

// jinja2 takes one bare argument after a test name (`is divisibleby 3`, `is sameas none`).
bool ExprParser::starts_test_arg() const {
  const Token& t = peek();
  if (t.kind == K::kString || t.kind == K::kInt || t.kind == K::kFloat) return true;
  if (t.kind == K::kOp) return t.value == "[" || t.value == "{";
  if (t.kind != K::kName) return false;
  static const std::set<std::string> kStop = {"else", "or", "and", "if", "is", "in", "not"};
  return !kStop.count(t.value);
}

}  // namespace xq::jinja
