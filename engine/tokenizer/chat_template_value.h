// Value: a Jinja/Python-like dynamic value for the chat-template interpreter (undefined, none,
// bool, int, float, str, list, dict, namespace, callable), with Python's str()/repr()/truthiness.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/tokenizer/chat_template.h"

namespace xq::jinja {

struct Value;
using List = std::vector<Value>;
// Ordered like a Python dict (insertion order); keys are strings as in JSON.
using Dict = std::vector<std::pair<std::string, Value>>;

// Positional and keyword arguments of a call.
struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
  // The i-th positional or the named keyword argument, or nullptr.
  const Value* get(size_t i, std::string_view name) const;
};
using Callable = std::function<Value(const CallArgs&)>;

struct Value {
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kCallable };

  Kind kind = Kind::kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;
  // Lists and dicts are shared like Python objects (a namespace is a dict that `set ns.x` mutates).
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;
  std::shared_ptr<Callable> fn;
  bool is_namespace = false;
  bool is_tuple = false;  // a list that prints as (a, b)
  // For undefined values: the name that was looked up, or (undefined_message) the whole
  // "'dict object' has no attribute 'x'" explanation, for error messages.
  std::string undefined_name;
  bool undefined_message = false;

  static Value undefined(std::string name = {});
  static Value none();
  static Value boolean(bool v);
  static Value integer(int64_t v);
  static Value floating(double v);
  static Value string(std::string v);
  static Value new_list(List items = {});
  static Value new_dict(Dict items = {});
  static Value function(Callable fn);

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_none() const { return kind == Kind::kNone; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_list() const { return kind == Kind::kList; }
  bool is_dict() const { return kind == Kind::kDict; }
  bool is_number() const { return kind == Kind::kInt || kind == Kind::kFloat; }
  bool is_callable() const { return kind == Kind::kCallable; }

  bool truthy() const;
  double as_double() const;  // ints, floats and bools
  // Python str(): what {{ value }} prints.
  std::string str() const;
  // Python repr(): how values print inside lists and dicts.
  std::string repr() const;
  // Dict member or nullptr.
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  void set(const std::string& key, Value v);
  // Items of an iterable: list elements, dict keys, string characters (code points).
  List iterate() const;
  const char* type_name() const;
};

bool operator==(const Value& a, const Value& b);
// Python ordering for numbers and strings; throws TemplateError for other kinds.
bool less_than(const Value& a, const Value& b);

Value from_json(const nlohmann::ordered_json& j);
// json.dumps(value, ensure_ascii=False, indent=indent) as transformers' tojson filter does:
// separators ", " and ": " without indent, "," and ": " with it; keys in insertion order.
std::string to_json(const Value& v, int indent, bool sort_keys = false);
// Python float repr (shortest round-trip: 0.5, 1e-05, 1e+16, 3.0).
std::string format_float(double v);

// UTF-8 code points of a string, and back (Python indexes strings by code point).
std::vector<std::string> utf8_chars(std::string_view s);

}  // namespace xq::jinja
