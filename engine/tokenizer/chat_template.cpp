// Evaluator of the chat-template Jinja subset: scopes as jinja2 has them (each for-loop iteration
// is its own scope, `if` is not, macros see the template's top level), expressions with Python
// semantics, and loop controls.
#include "engine/tokenizer/chat_template.h"

#include <cmath>
#include <unordered_map>

#include "engine/tokenizer/chat_template_ast.h"
#include "engine/tokenizer/chat_template_builtins.h"

namespace xq {
namespace jinja {
namespace {

enum class Flow { kNormal, kBreak, kContinue };

[[noreturn]] void undefined_error(const Value& v) {
  if (v.undefined_message) throw TemplateError(v.undefined_name);
  throw TemplateError("'" + (v.undefined_name.empty() ? std::string("value") : v.undefined_name) +
                      "' is undefined");
}

// Marks a failed lookup with jinja2's explanation, used if the result is later misused.
Value explain_missing(Value result, const Value& obj, const Value& key) {
  if (!result.is_undefined()) return result;
  std::string what = std::string(obj.type_name()) + " object";
  result.undefined_message = true;
  result.undefined_name = key.is_string() ? "'" + what + "' has no attribute '" + key.s + "'"
                                          : what + " has no element " + key.str();
  return result;
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// Integer power by squaring; Python's ints do not overflow, ours report it.
int64_t int_pow(int64_t base, int64_t exp) {
  int64_t result = 1;
  while (exp > 0) {
    if ((exp & 1) && __builtin_mul_overflow(result, base, &result))
      throw TemplateError("integer overflow in **");
    exp >>= 1;
    if (exp > 0 && __builtin_mul_overflow(base, base, &base))
      throw TemplateError("integer overflow in **");
  }
  return result;
}

Value arithmetic(const std::string& op, const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  auto is_intlike = [](const Value& v) { return v.kind == K::kInt || v.kind == K::kBool; };
  auto as_int = [](const Value& v) { return v.kind == K::kBool ? int64_t{v.b} : v.i; };
  bool nums = (a.is_number() || a.kind == K::kBool) && (b.is_number() || b.kind == K::kBool);
  bool ints = is_intlike(a) && is_intlike(b);
  if (op == "+") {
    if (ints) return Value::integer(as_int(a) + as_int(b));
    if (nums) return Value::floating(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) return Value::string(a.s + b.s);
    if (a.is_list() && b.is_list()) {
      List out = *a.list;
      out.insert(out.end(), b.list->begin(), b.list->end());
      return Value::new_list(std::move(out));
    }
  } else if (op == "-" && nums) {
    return ints ? Value::integer(as_int(a) - as_int(b))
                : Value::floating(a.as_double() - b.as_double());
  } else if (op == "*") {
    if (ints) return Value::integer(as_int(a) * as_int(b));
    if (nums) return Value::floating(a.as_double() * b.as_double());
    const Value* seq = a.is_string() || a.is_list() ? &a : &b;
    const Value* n = seq == &a ? &b : &a;
    if ((seq->is_string() || seq->is_list()) && is_intlike(*n)) {
      int64_t times = std::max<int64_t>(0, as_int(*n));
      if (seq->is_string()) {
        std::string out;
        for (int64_t k = 0; k < times; ++k) out += seq->s;
        return Value::string(std::move(out));
      }
      List out;
      for (int64_t k = 0; k < times; ++k)
        out.insert(out.end(), seq->list->begin(), seq->list->end());
      return Value::new_list(std::move(out));
    }
  } else if (nums) {
    double x = a.as_double(), y = b.as_double();
    if (op == "**") {
      if (ints && as_int(b) >= 0) return Value::integer(int_pow(as_int(a), as_int(b)));
      return Value::floating(std::pow(x, y));
    }
    if (y == 0) throw TemplateError(op == "%" ? "integer modulo by zero" : "division by zero");
    if (op == "/") return Value::floating(x / y);
    if (op == "//") {
      if (ints) return Value::integer(floor_div(as_int(a), as_int(b)));
      return Value::floating(std::floor(x / y));
    }
    if (op == "%") {
      if (ints) return Value::integer(as_int(a) - floor_div(as_int(a), as_int(b)) * as_int(b));
      double r = std::fmod(x, y);
      if (r != 0 && ((r < 0) != (y < 0))) r += y;
      return Value::floating(r);
    }
  }
  throw TemplateError("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" +
                      b.type_name() + "'");
}

bool compare(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return a == b;
  if (op == "!=") return !(a == b);
  if (op == "<") return less_than(a, b);
  if (op == ">") return less_than(b, a);
  if (op == "<=") return !less_than(b, a);
  if (op == ">=") return !less_than(a, b);
  if (op == "in") return contains(b, a);
  return !contains(b, a);  // not in
}

class Renderer {
 public:
  explicit Renderer(Value context) {
    frames_.emplace_back();
    for (const char* g : {"raise_exception", "range", "namespace", "dict", "strftime_now"})
      frames_[0][g] = builtin_global(g);
    frames_.emplace_back();
    for (auto& [k, v] : *context.dict) frames_[1][k] = v;
  }

  std::string run(const Body& body) {
    std::string out;
    exec(body, out);
    return out;
  }

 private:
  using Frame = std::unordered_map<std::string, Value>;

  Value lookup(const std::string& name) const {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value::undefined(name);
  }

  Flow exec(const Body& body, std::string& out) {
    for (const Node& n : body) {
      Flow f = exec(n, out);
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

  Flow exec(const Node& n, std::string& out) {
    switch (n.kind) {
      case Node::Kind::kText:
        out += n.text;
        return Flow::kNormal;
      case Node::Kind::kOutput:
        out += eval(*n.expr).str();
        return Flow::kNormal;
      case Node::Kind::kIf:
        for (const auto& [cond, body] : n.branches)
          if (!cond || eval(*cond).truthy()) return exec(body, out);
        return Flow::kNormal;
      case Node::Kind::kFor:
        return exec_for(n, out);
      case Node::Kind::kSet:
        assign(n, eval(*n.expr));
        return Flow::kNormal;
      case Node::Kind::kSetBlock: {
        std::string captured;
        exec(n.body, captured);
        assign(n, Value::string(std::move(captured)));
        return Flow::kNormal;
      }
      case Node::Kind::kMacro:
        frames_.back()[n.targets[0]] = make_macro(n);
        return Flow::kNormal;
      case Node::Kind::kBreak:
        return Flow::kBreak;
      case Node::Kind::kContinue:
        return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  void assign(const Node& n, Value v) {
    if (!n.attr.empty()) {
      Value ns = lookup(n.targets[0]);
      if (!ns.is_dict() || !ns.is_namespace)
        throw TemplateError("line " + std::to_string(n.line) + ": cannot assign attribute '" +
                            n.attr + "' on a non-namespace object");
      ns.set(n.attr, std::move(v));
      return;
    }
    if (n.targets.size() == 1) {
      frames_.back()[n.targets[0]] = std::move(v);
      return;
    }
    List items = v.iterate();
    if (items.size() != n.targets.size())
      throw TemplateError("line " + std::to_string(n.line) + ": cannot unpack " +
                          std::to_string(items.size()) + " values into " +
                          std::to_string(n.targets.size()) + " names");
    for (size_t k = 0; k < items.size(); ++k) frames_.back()[n.targets[k]] = items[k];
  }

  void bind_targets(Frame& frame, const Node& n, const Value& item) {
    if (n.targets.size() == 1) {
      frame[n.targets[0]] = item;
      return;
    }
    List parts = item.iterate();
    if (parts.size() != n.targets.size())
      throw TemplateError("line " + std::to_string(n.line) + ": cannot unpack " +
                          std::to_string(parts.size()) + " values into " +
                          std::to_string(n.targets.size()) + " loop variables");
    for (size_t k = 0; k < parts.size(); ++k) frame[n.targets[k]] = parts[k];
  }

  Flow exec_for(const Node& n, std::string& out) {
    Value iterable = eval(*n.expr);
    if (iterable.is_dict() && !iterable.is_namespace)
      iterable = Value::new_list(iterable.iterate());
    List all = iterable.iterate();
    List items;
    if (n.filter) {
      for (const auto& item : all) {
        frames_.emplace_back();
        bind_targets(frames_.back(), n, item);
        bool keep = eval(*n.filter).truthy();
        frames_.pop_back();
        if (keep) items.push_back(item);
      }
    } else {
      items = std::move(all);
    }
    if (items.empty()) return exec(n.else_body, out);
    const int64_t len = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < len; ++k) {
      Value loop = Value::new_dict({{"index", Value::integer(k + 1)},
                                    {"index0", Value::integer(k)},
                                    {"revindex", Value::integer(len - k)},
                                    {"revindex0", Value::integer(len - k - 1)},
                                    {"first", Value::boolean(k == 0)},
                                    {"last", Value::boolean(k == len - 1)},
                                    {"length", Value::integer(len)},
                                    {"depth", Value::integer(1)},
                                    {"depth0", Value::integer(0)}});
      loop.is_namespace = true;  // attribute access only, no dict methods
      if (k > 0) loop.set("previtem", items[k - 1]);
      if (k + 1 < len) loop.set("nextitem", items[k + 1]);
      loop.set("cycle", Value::function([k](const CallArgs& a) {
                 if (a.args.empty()) throw TemplateError("loop.cycle needs at least one argument");
                 return a.args[k % a.args.size()];
               }));
      frames_.emplace_back();
      frames_.back()["loop"] = loop;
      bind_targets(frames_.back(), n, items[k]);
      Flow f;
      try {
        f = exec(n.body, out);
      } catch (...) {
        frames_.pop_back();
        throw;
      }
      frames_.pop_back();
      if (f == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  Value make_macro(const Node& n) {
    return Value::function([this, &n](const CallArgs& a) {
      // jinja2 stops runaway recursion with Python's recursion limit; so do we, before the stack.
      if (macro_depth_ >= kMaxMacroDepth)
        throw TemplateError("macro '" + n.targets[0] + "' recursed too deeply");
      struct DepthGuard {
        int& d;
        ~DepthGuard() { --d; }
      } guard{++macro_depth_};
      Frame frame;
      for (size_t k = 0; k < n.params.size(); ++k) {
        const auto& [param, def] = n.params[k];
        const Value* given = a.get(k, param);
        frame[param] = given ? *given : def ? eval(*def) : Value::undefined(param);
      }
      // A macro sees the template's top level and its arguments, not the caller's locals.
      std::vector<Frame> saved(frames_.begin() + 2, frames_.end());
      frames_.resize(2);
      frames_.push_back(std::move(frame));
      std::string out;
      try {
        exec(n.body, out);
      } catch (...) {
        frames_.resize(2);
        frames_.insert(frames_.end(), saved.begin(), saved.end());
        throw;
      }
      frames_.resize(2);
      frames_.insert(frames_.end(), saved.begin(), saved.end());
      return Value::string(std::move(out));
    });
  }

  static Value defined(Value v) {
    if (v.is_undefined()) undefined_error(v);
    return v;
  }

  CallArgs eval_args(const Expr& e) {
    CallArgs a;
    for (size_t k = 1; k < e.children.size(); ++k) a.args.push_back(eval(*e.children[k]));
    for (const auto& [key, value] : e.kwargs) a.kwargs.emplace_back(key, eval(*value));
    return a;
  }

  Value eval(const Expr& e) {
    try {
      return eval_inner(e);
    } catch (const TemplateError&) {
      throw;
    } catch (const std::exception& ex) {
      throw TemplateError("line " + std::to_string(e.line) + ", column " + std::to_string(e.col) +
                          ": " + ex.what());
    }
  }

  Value eval_inner(const Expr& e) {
    using EK = Expr::Kind;
    switch (e.kind) {
      case EK::kLiteral:
        return e.literal;
      case EK::kName:
        return lookup(e.name);
      case EK::kList:
      case EK::kTuple: {
        List items;
        for (const auto& c : e.children) items.push_back(eval(*c));
        Value v = Value::new_list(std::move(items));
        v.is_tuple = e.kind == EK::kTuple;
        return v;
      }
      case EK::kDict: {
        Value d = Value::new_dict();
        for (size_t k = 0; k + 1 < e.children.size(); k += 2)
          d.set(eval(*e.children[k]).str(), eval(*e.children[k + 1]));
        return d;
      }
      // As in jinja2, looking into an undefined value is an error (it names the missing variable).
      case EK::kAttr: {
        Value obj = defined(eval(*e.children[0]));
        return explain_missing(get_attr(obj, e.name), obj, Value::string(e.name));
      }
      case EK::kItem: {
        Value obj = defined(eval(*e.children[0]));
        Value key = eval(*e.children[1]);
        return explain_missing(get_item(obj, key), obj, key);
      }
      case EK::kSlice: {
        auto part = [&](size_t k) { return e.children[k] ? eval(*e.children[k]) : Value::none(); };
        return get_slice(defined(eval(*e.children[0])), part(1), part(2), part(3));
      }
      case EK::kCall: {
        Value fn = eval(*e.children[0]);
        if (!fn.is_callable()) {
          if (fn.is_undefined()) undefined_error(fn);
          throw TemplateError(std::string("'") + fn.type_name() + "' object is not callable");
        }
        return (*fn.fn)(eval_args(e));
      }
      case EK::kFilter: {
        Value input = eval(*e.children[0]);
        return apply_filter(e.name, input, eval_args(e));
      }
      case EK::kTest: {
        Value input = eval(*e.children[0]);
        return Value::boolean(apply_test(e.name, input, eval_args(e)) != e.negated);
      }
      case EK::kUnary: {
        Value v = eval(*e.children[0]);
        if (e.name == "not") return Value::boolean(!v.truthy());
        if (v.kind == Value::Kind::kInt) return Value::integer(e.name == "-" ? -v.i : v.i);
        if (v.is_undefined()) undefined_error(v);
        double d = v.as_double();
        return Value::floating(e.name == "-" ? -d : d);
      }
      case EK::kBinary:
        return eval_binary(e);
      case EK::kCompare: {
        // a < b < c is (a < b) and (b < c), each operand evaluated once.
        Value left = eval(*e.children[0]);
        for (size_t k = 0; k < e.ops.size(); ++k) {
          Value right = eval(*e.children[k + 1]);
          if (!compare(e.ops[k], left, right)) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case EK::kCond:
        if (eval(*e.children[1]).truthy()) return eval(*e.children[0]);
        return e.children[2] ? eval(*e.children[2]) : Value::undefined();
    }
    return Value::undefined();
  }

  Value eval_binary(const Expr& e) {
    const std::string& op = e.name;
    Value a = eval(*e.children[0]);
    if (op == "and") return a.truthy() ? eval(*e.children[1]) : a;
    if (op == "or") return a.truthy() ? a : eval(*e.children[1]);
    Value b = eval(*e.children[1]);
    if (op == "~") return Value::string(a.str() + b.str());
    return arithmetic(op, a, b);
  }

  static constexpr int kMaxMacroDepth = 100;
  std::vector<Frame> frames_;
  int macro_depth_ = 0;
};

}  // namespace
}  // namespace jinja

ChatTemplate::ChatTemplate(std::string source)
    : source_(std::move(source)), tmpl_(jinja::parse(source_)) {}
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::json& context) const {
  return render_ordered(nlohmann::ordered_json(context));
}

std::string ChatTemplate::render_ordered(const nlohmann::ordered_json& context) const {
  if (!context.is_object()) throw TemplateError("chat template context must be a JSON object");
  jinja::Renderer r(jinja::from_json(context));
  return r.run(tmpl_->body);
}

}  // namespace xq
