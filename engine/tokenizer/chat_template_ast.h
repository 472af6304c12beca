// Syntax tree of a parsed chat template: expressions (Expr) and statements (Node).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tokenizer/chat_template_value.h"

namespace xq::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,  // literal
    kName,     // name
    kList,     // children: elements
    kTuple,    // children: elements
    kDict,     // children: key0, value0, key1, value1, ...
    kAttr,     // children[0].name
    kItem,     // children[0][children[1]]
    kSlice,    // children[0][children[1]:children[2]:children[3]] (null = omitted)
    kCall,     // children[0](children[1..], kwargs)
    kFilter,   // children[0] | name(children[1..], kwargs)
    kTest,     // children[0] is [not] name(children[1..])
    kUnary,    // name in {not, -, +}; children[0]
    kBinary,   // name is the operator; children[0], children[1]
    kCond,     // children[0] if children[1] else children[2] (null = undefined)
    kCompare,  // children[0] ops[0] children[1] ops[1] ... chained as in Python
  };
  Kind kind = Kind::kLiteral;
  int line = 0;
  int col = 0;
  std::string name;
  Value literal;
  bool negated = false;
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;  // kCompare
};

struct Node;
using Body = std::vector<Node>;

struct Node {
  enum class Kind { kText, kOutput, kIf, kFor, kSet, kSetBlock, kMacro, kBreak, kContinue };
  Kind kind = Kind::kText;
  int line = 0;
  int col = 0;
  std::string text;  // kText
  ExprPtr expr;      // kOutput value, kFor iterable, kSet value
  // kIf: (condition, body) pairs; a null condition is the else branch.
  std::vector<std::pair<ExprPtr, Body>> branches;
  // kFor loop variables; kSet/kSetBlock target names (`a, b = ...` has two); kMacro name in [0].
  std::vector<std::string> targets;
  std::string attr;  // kSet of `ns.attr`
  ExprPtr filter;    // kFor `if` clause
  Body body;         // kFor, kSetBlock, kMacro
  Body else_body;    // kFor
  // kMacro parameters with optional defaults.
  std::vector<std::pair<std::string, ExprPtr>> params;
};

struct Template {
  Body body;
};

// Throws TemplateError("template syntax error at line L, column C: ...").
std::unique_ptr<Template> parse(const std::string& source);

}  // namespace xq::jinja
