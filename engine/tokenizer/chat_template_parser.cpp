// Recursive-descent parser for the chat-template Jinja subset, with jinja2's operator precedence:
// conditional < or < and < not < comparison < + - < ~ < * / // % < ** < unary < postfix/filter/is.
#include <set>

#include "engine/tokenizer/chat_template_ast.h"
#include "engine/tokenizer/chat_template_lexer.h"

namespace xq::jinja {
namespace {

using K = Token::Kind;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  std::unique_ptr<Template> run() {
    auto t = std::make_unique<Template>();
    std::string end = parse_body(t->body, {});
    if (!end.empty()) fail(peek(), "unexpected '" + end + "'");
    return t;
  }

 private:
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

  // Parses nodes until a block tag whose keyword is in `ends` (left unconsumed after the keyword:
  // the returned keyword has been read, its arguments and %} not) or the end of the template.
  std::string parse_body(Body& body, const std::set<std::string>& ends) {
    for (;;) {
      const Token& t = peek();
      if (t.kind == K::kEof) {
        if (!ends.empty()) fail(t, "unexpected end of template; expected one of: " + join(ends));
        return "";
      }
      if (t.kind == K::kText) {
        Node n = make_node(Node::Kind::kText, t);
        n.text = next().value;
        body.push_back(std::move(n));
      } else if (t.kind == K::kVarBegin) {
        next();
        Node n = make_node(Node::Kind::kOutput, t);
        n.expr = parse_expr();
        if (peek().kind != K::kVarEnd)
          fail(peek(), "expected end of print statement, got " + describe(peek()));
        next();
        body.push_back(std::move(n));
      } else if (t.kind == K::kBlockBegin) {
        next();
        const Token& kw = peek();
        if (kw.kind != K::kName) fail(kw, "expected a statement keyword, got " + describe(kw));
        if (ends.count(kw.value)) {
          next();
          return kw.value;
        }
        parse_statement(body);
      } else {
        fail(t, "unexpected " + describe(t));
      }
    }
  }

  static std::string join(const std::set<std::string>& s) {
    std::string out;
    for (const auto& e : s) out += (out.empty() ? "'" : ", '") + e + "'";
    return out;
  }

  void parse_statement(Body& body) {
    const Token& kw = next();
    Node n = make_node(Node::Kind::kText, kw);
    const std::string& k = kw.value;
    if (k == "if") {
      n.kind = Node::Kind::kIf;
      ExprPtr cond = parse_expr();
      for (;;) {
        expect_block_end();
        Body branch;
        std::string end = parse_body(branch, {"elif", "else", "endif"});
        n.branches.emplace_back(std::move(cond), std::move(branch));
        if (end == "endif") break;
        if (end == "else") {
          expect_block_end();
          Body else_body;
          parse_body(else_body, {"endif"});
          n.branches.emplace_back(nullptr, std::move(else_body));
          break;
        }
        cond = parse_expr();
      }
      expect_block_end();
    } else if (k == "for") {
      n.kind = Node::Kind::kFor;
      do n.targets.push_back(expect_name());
      while (accept_op(","));
      if (!accept_name("in")) fail(peek(), "expected 'in', got " + describe(peek()));
      n.expr = parse_expr(/*allow_cond=*/false);
      if (accept_name("if")) n.filter = parse_expr(false);
      if (accept_name("recursive")) fail(kw, "recursive loops are not supported");
      expect_block_end();
      std::string end = parse_body(n.body, {"else", "endfor"});
      if (end == "else") {
        expect_block_end();
        parse_body(n.else_body, {"endfor"});
      }
      expect_block_end();
    } else if (k == "set") {
      n.targets.push_back(expect_name());
      if (accept_op(".")) {
        n.attr = expect_name();
      } else {
        while (accept_op(",")) n.targets.push_back(expect_name());
      }
      if (accept_op("=")) {
        n.kind = Node::Kind::kSet;
        n.expr = parse_tuple_or_expr();
        expect_block_end();
      } else {
        if (!n.attr.empty() || n.targets.size() != 1) fail(peek(), "expected '='");
        n.kind = Node::Kind::kSetBlock;
        expect_block_end();
        parse_body(n.body, {"endset"});
        expect_block_end();
      }
    } else if (k == "macro") {
      n.kind = Node::Kind::kMacro;
      n.targets.push_back(expect_name());
      expect_op("(");
      while (!accept_op(")")) {
        std::string param = expect_name();
        ExprPtr def;
        if (accept_op("=")) def = parse_expr();
        n.params.emplace_back(std::move(param), std::move(def));
        if (!is_op(")")) expect_op(",");
      }
      expect_block_end();
      parse_body(n.body, {"endmacro"});
      if (peek().kind == K::kName) next();  // {% endmacro name %}
      expect_block_end();
    } else if (k == "break" || k == "continue") {
      n.kind = k == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
      expect_block_end();
    } else if (k == "generation") {
      // transformers' AssistantTracker marks assistant spans; for rendering it is transparent.
      expect_block_end();
      parse_body(body, {"endgeneration"});
      expect_block_end();
      return;
    } else {
      fail(kw, "unknown statement '" + k + "'");
    }
    body.push_back(std::move(n));
  }

  static Node make_node(Node::Kind kind, const Token& at) {
    Node n;
    n.kind = kind;
    n.line = at.line;
    n.col = at.col;
    return n;
  }

  ExprPtr node(Expr::Kind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->col = at.col;
    return e;
  }

  // `a, b` without parentheses (set right-hand sides) becomes a tuple.
  ExprPtr parse_tuple_or_expr() {
    const Token& at = peek();
    ExprPtr first = parse_expr();
    if (!is_op(",")) return first;
    auto t = node(Expr::Kind::kTuple, at);
    t->children.push_back(std::move(first));
    while (accept_op(",")) t->children.push_back(parse_expr());
    return t;
  }

  ExprPtr parse_expr(bool allow_cond = true) {
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

  ExprPtr binary(const std::string& op, ExprPtr a, ExprPtr b, const Token& at) {
    auto e = node(Expr::Kind::kBinary, at);
    e->name = op;
    e->children.push_back(std::move(a));
    e->children.push_back(std::move(b));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      const Token& at = next();
      e = binary("or", std::move(e), parse_and(), at);
    }
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      const Token& at = next();
      e = binary("and", std::move(e), parse_not(), at);
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      auto e = node(Expr::Kind::kUnary, next());
      e->name = "not";
      e->children.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
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
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& at = next();
      e = binary(at.value, std::move(e), parse_concat(), at);
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      const Token& at = next();
      e = binary("~", std::move(e), parse_math2(), at);
    }
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& at = next();
      e = binary(at.value, std::move(e), parse_pow(), at);
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary();
    while (is_op("**")) {
      const Token& at = next();
      e = binary("**", std::move(e), parse_unary(), at);
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter = true) {
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

  ExprPtr parse_primary() {
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

  ExprPtr parse_postfix(ExprPtr e) {
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

  ExprPtr parse_subscript(ExprPtr obj, const Token& at) {
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
  void parse_args(Expr& e) {
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

  ExprPtr parse_call(ExprPtr callee) {
    auto e = node(Expr::Kind::kCall, peek());
    e->children.push_back(std::move(callee));
    parse_args(*e);
    return e;
  }

  ExprPtr parse_filters(ExprPtr e) {
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
  bool starts_test_arg() const {
    const Token& t = peek();
    if (t.kind == K::kString || t.kind == K::kInt || t.kind == K::kFloat) return true;
    if (t.kind == K::kOp) return t.value == "[" || t.value == "{";
    if (t.kind != K::kName) return false;
    static const std::set<std::string> kStop = {"else", "or", "and", "if", "is", "in", "not"};
    return !kStop.count(t.value);
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
};

}  // namespace

std::unique_ptr<Template> parse(const std::string& source) { return Parser(lex(source)).run(); }

}  // namespace xq::jinja
