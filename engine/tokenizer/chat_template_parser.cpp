// Statement parser of the chat-template Jinja subset: text, {{ }}, if/elif/else, for/else (with
// an `if` filter), set (also block set and ns.attr), macro, break/continue; `generation` blocks
// (transformers' assistant-mask marker) are transparent.
#include <set>

#include "engine/tokenizer/chat_template_expr_parser.h"

namespace xq::jinja {
namespace {

class Parser : public ExprParser {
 public:
  using ExprParser::ExprParser;

  std::unique_ptr<Template> run() {
    auto t = std::make_unique<Template>();
    std::string end = parse_body(t->body, {});
    if (!end.empty()) fail(peek(), "unexpected '" + end + "'");
    return t;
  }

 private:
  // Parses nodes until a block tag whose keyword is in `ends` (left unconsumed after the keyword:
  // the returned keyword has been read, its arguments and %} not) or the end of the template.
  std::string parse_body(Body& body, const std::set<std::string>& ends) {
    const NestingGuard nested(*this);
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
};

}  // namespace

std::unique_ptr<Template> parse(const std::string& source) { return Parser(lex(source)).run(); }

}  // namespace xq::jinja
