// Attribute and item access, str/dict methods and the global functions of the chat-template
// interpreter.
#include <ctime>

#include "engine/tokenizer/chat_template_builtins.h"
#include "engine/tokenizer/chat_template_strings.h"

namespace xq::jinja {
namespace {

std::string arg_str(const CallArgs& a, size_t i, const char* name, const std::string& def) {
  const Value* v = a.get(i, name);
  if (!v || v->is_none() || v->is_undefined()) return def;
  if (!v->is_string()) throw TemplateError(std::string("expected a string for '") + name + "'");
  return v->s;
}

int64_t arg_int(const CallArgs& a, size_t i, const char* name, int64_t def) {
  const Value* v = a.get(i, name);
  if (!v || v->is_none() || v->is_undefined()) return def;
  if (v->kind != Value::Kind::kInt && v->kind != Value::Kind::kBool)
    throw TemplateError(std::string("expected an integer for '") + name + "'");
  return v->kind == Value::Kind::kBool ? v->b : v->i;
}

// str.startswith/endswith accept a string or a tuple of strings.
bool affix_match(const std::string& s, const Value& affix, bool prefix) {
  auto one = [&](const std::string& a) {
    if (a.size() > s.size()) return false;
    return prefix ? s.compare(0, a.size(), a) == 0
                  : s.compare(s.size() - a.size(), a.size(), a) == 0;
  };
  if (affix.is_string()) return one(affix.s);
  if (affix.is_list()) {
    for (const auto& a : *affix.list)
      if (a.is_string() && one(a.s)) return true;
    return false;
  }
  throw TemplateError("startswith/endswith expects a string or a tuple of strings");
}

// "{} and {0}".format(...): positional fields only.
std::string py_format(const std::string& fmt, const CallArgs& a) {
  std::string out;
  size_t auto_index = 0;
  for (size_t k = 0; k < fmt.size(); ++k) {
    char c = fmt[k];
    if ((c == '{' || c == '}') && k + 1 < fmt.size() && fmt[k + 1] == c) {
      out += c;
      ++k;
    } else if (c == '{') {
      size_t end = fmt.find('}', k);
      if (end == std::string::npos) throw TemplateError("str.format: single '{' in format string");
      std::string field = fmt.substr(k + 1, end - k - 1);
      const Value* v = nullptr;
      if (field.empty()) {
        v = a.get(auto_index++, "");
      } else if (std::isdigit(static_cast<unsigned char>(field[0]))) {
        v = a.get(std::stoul(field), "");
      } else {
        v = a.get(SIZE_MAX, field);
      }
      if (!v) throw TemplateError("str.format: no argument for {" + field + "}");
      out += v->str();
      k = end;
    } else {
      out += c;
    }
  }
  return out;
}

Value string_method(const std::string& s, const std::string& name) {
  using S = std::string;
  auto bind = [](auto fn) { return Value::function(fn); };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    bool left = name != "rstrip", right = name != "lstrip";
    return bind([s, left, right](const CallArgs& a) {
      const Value* chars = a.get(0, "chars");
      bool custom = chars && chars->is_string();
      return Value::string(strip(s, custom ? chars->s : S(), custom, left, right));
    });
  }
  if (name == "split" || name == "rsplit")
    return bind([s, name](const CallArgs& a) {
      const Value* sep = a.get(0, "sep");
      bool ws = !sep || sep->is_none() || sep->is_undefined();
      List out;
      auto fn = name == "split" ? split : rsplit;
      for (auto& part :
           fn(s, ws ? S() : arg_str(a, 0, "sep", ""), ws, arg_int(a, 1, "maxsplit", -1)))
        out.push_back(Value::string(std::move(part)));
      return Value::new_list(std::move(out));
    });
  if (name == "splitlines")
    return bind([s](const CallArgs&) {
      List out;
      for (auto& line : splitlines(s)) out.push_back(Value::string(std::move(line)));
      return Value::new_list(std::move(out));
    });
  if (name == "startswith" || name == "endswith") {
    bool prefix = name == "startswith";
    return bind([s, prefix](const CallArgs& a) {
      const Value* affix = a.get(0, "prefix");
      if (!affix) throw TemplateError("startswith/endswith needs an argument");
      return Value::boolean(affix_match(s, *affix, prefix));
    });
  }
  if (name == "upper") return bind([s](const CallArgs&) { return Value::string(to_upper(s)); });
  if (name == "lower") return bind([s](const CallArgs&) { return Value::string(to_lower(s)); });
  if (name == "title") return bind([s](const CallArgs&) { return Value::string(py_title(s)); });
  if (name == "capitalize")
    return bind([s](const CallArgs&) { return Value::string(capitalize(s)); });
  if (name == "replace")
    return bind([s](const CallArgs& a) {
      return Value::string(replace(s, arg_str(a, 0, "old", ""), arg_str(a, 1, "new", ""),
                                   arg_int(a, 2, "count", -1)));
    });
  if (name == "find" || name == "count")
    return bind([s, name](const CallArgs& a) {
      std::string sub = arg_str(a, 0, "sub", "");
      if (name == "count") return Value::integer(count_substr(s, sub));
      size_t at = s.find(sub);
      return Value::integer(
          at == S::npos ? -1 : static_cast<int64_t>(utf8_chars(s.substr(0, at)).size()));
    });
  if (name == "join")
    return bind([s](const CallArgs& a) {
      const Value* items = a.get(0, "iterable");
      std::string out;
      bool first = true;
      for (const auto& v : items ? items->iterate() : List{}) {
        if (!first) out += s;
        first = false;
        out += v.str();
      }
      return Value::string(std::move(out));
    });
  if (name == "format")
    return bind([s](const CallArgs& a) { return Value::string(py_format(s, a)); });
  if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum")
    return bind([s, name](const CallArgs&) { return Value::boolean(char_class_all(s, name)); });
  return Value::undefined(name);
}

Value dict_method(const Value& d, const std::string& name) {
  if (name == "get")
    return Value::function([d](const CallArgs& a) {
      const Value* key = a.get(0, "key");
      const Value* found = key && key->is_string() ? d.find(key->s) : nullptr;
      if (found) return *found;
      const Value* def = a.get(1, "default");
      return def ? *def : Value::none();
    });
  if (name == "items" || name == "keys" || name == "values")
    return Value::function([d, name](const CallArgs&) {
      List out;
      for (const auto& [k, v] : *d.dict) {
        if (name == "keys") {
          out.push_back(Value::string(k));
        } else if (name == "values") {
          out.push_back(v);
        } else {
          Value pair = Value::new_list({Value::string(k), v});
          pair.is_tuple = true;
          out.push_back(std::move(pair));
        }
      }
      return Value::new_list(std::move(out));
    });
  return Value::undefined(name);
}

int64_t normalize_index(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

}  // namespace

Value get_attr(const Value& obj, const std::string& name) {
  if (obj.is_string()) return string_method(obj.s, name);
  if (obj.is_dict()) {
    if (!obj.is_namespace) {
      Value m = dict_method(obj, name);
      if (!m.is_undefined()) return m;
    }
    const Value* v = obj.find(name);
    return v ? *v : Value::undefined(name);
  }
  return Value::undefined(name);
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_dict() && key.is_string()) {
    if (const Value* v = obj.find(key.s)) return *v;
    return obj.is_namespace ? Value::undefined(key.s) : dict_method(obj, key.s);
  }
  if ((obj.is_list() || obj.is_string()) &&
      (key.kind == Value::Kind::kInt || key.kind == Value::Kind::kBool)) {
    int64_t raw = key.kind == Value::Kind::kBool ? key.b : key.i;
    if (obj.is_list()) {
      int64_t i = normalize_index(raw, static_cast<int64_t>(obj.list->size()));
      if (i < 0 || i >= static_cast<int64_t>(obj.list->size())) return Value::undefined();
      return (*obj.list)[i];
    }
    auto chars = utf8_chars(obj.s);
    int64_t i = normalize_index(raw, static_cast<int64_t>(chars.size()));
    if (i < 0 || i >= static_cast<int64_t>(chars.size())) return Value::undefined();
    return Value::string(chars[i]);
  }
  if (key.is_string()) return get_attr(obj, key.s);
  return Value::undefined();
}

Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  auto bound = [](const Value& v, int64_t def) {
    if (v.is_undefined() || v.is_none()) return std::pair<bool, int64_t>{false, def};
    if (v.kind != Value::Kind::kInt) throw TemplateError("slice indices must be integers");
    return std::pair<bool, int64_t>{true, v.i};
  };
  int64_t st = bound(step, 1).second;
  if (st == 0) throw TemplateError("slice step cannot be zero");
  List items;
  std::vector<std::string> chars;
  if (obj.is_list()) {
    items = *obj.list;
  } else if (obj.is_string()) {
    chars = utf8_chars(obj.s);
  } else {
    throw TemplateError(std::string("'") + obj.type_name() + "' object is not subscriptable");
  }
  int64_t n =
      obj.is_list() ? static_cast<int64_t>(items.size()) : static_cast<int64_t>(chars.size());
  // Python's slice.indices().
  auto clamp = [&](std::pair<bool, int64_t> b, int64_t def_pos, int64_t def_neg) {
    if (!b.first) return st > 0 ? def_pos : def_neg;
    int64_t i = b.second < 0 ? b.second + n : b.second;
    if (st > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  int64_t lo = clamp(bound(start, 0), 0, n - 1);
  int64_t hi = clamp(bound(stop, 0), n, -1);
  List out_list;
  std::string out_str;
  for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) {
    if (obj.is_list()) {
      out_list.push_back(items[i]);
    } else {
      out_str += chars[i];
    }
  }
  return obj.is_list() ? Value::new_list(std::move(out_list)) : Value::string(std::move(out_str));
}

bool contains(const Value& container, const Value& item) {
  if (container.is_string()) {
    if (!item.is_string())
      throw TemplateError("'in <string>' requires string as left operand, not " +
                          std::string(item.type_name()));
    return container.s.find(item.s) != std::string::npos;
  }
  if (container.is_list()) {
    for (const auto& v : *container.list)
      if (v == item) return true;
    return false;
  }
  if (container.is_dict()) return item.is_string() && container.find(item.s) != nullptr;
  if (container.is_undefined()) return false;
  throw TemplateError(std::string("argument of type '") + container.type_name() +
                      "' is not iterable");
}

Value builtin_global(const std::string& name) {
  if (name == "raise_exception")
    return Value::function([](const CallArgs& a) -> Value {
      const Value* msg = a.get(0, "message");
      throw TemplateError(msg ? msg->str() : "raise_exception called");
    });
  if (name == "range")
    return Value::function([](const CallArgs& a) {
      int64_t start = 0, stop = 0, step = 1;
      if (a.args.size() == 1) {
        stop = arg_int(a, 0, "stop", 0);
      } else {
        start = arg_int(a, 0, "start", 0);
        stop = arg_int(a, 1, "stop", 0);
        step = arg_int(a, 2, "step", 1);
      }
      if (step == 0) throw TemplateError("range() arg 3 must not be zero");
      List out;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        if (out.size() >= 100000) throw TemplateError("range() too large");
        out.push_back(Value::integer(i));
      }
      return Value::new_list(std::move(out));
    });
  if (name == "namespace" || name == "dict")
    return Value::function([name](const CallArgs& a) {
      Value d = Value::new_dict();
      d.is_namespace = name == "namespace";
      for (const auto& arg : a.args)
        if (arg.is_dict())
          for (const auto& [k, v] : *arg.dict) d.set(k, v);
      for (const auto& [k, v] : a.kwargs) d.set(k, v);
      return d;
    });
  if (name == "strftime_now")
    return Value::function([](const CallArgs& a) {
      std::string fmt = arg_str(a, 0, "format", "");
      std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      char buf[256];
      size_t n = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
      return Value::string(std::string(buf, n));
    });
  return Value::undefined(name);
}

}  // namespace xq::jinja
