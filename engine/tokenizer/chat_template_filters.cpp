// jinja2 filters and tests of the chat-template interpreter (tojson as transformers defines it).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "engine/tokenizer/chat_template_builtins.h"
#include "engine/tokenizer/chat_template_strings.h"

namespace xq::jinja {
namespace {

const Value kUndefined;

const Value& arg(const CallArgs& a, size_t i, const char* name) {
  const Value* v = a.get(i, name);
  return v ? *v : kUndefined;
}

bool given(const Value& v) { return !v.is_undefined() && !v.is_none(); }

// "a.b.0" looked up item by item, as jinja2's attribute= arguments do.
Value attr_path(const Value& obj, const std::string& path) {
  Value cur = obj;
  size_t start = 0;
  for (;;) {
    size_t dot = path.find('.', start);
    std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    cur = get_item(cur, digits ? Value::integer(std::stoll(part)) : Value::string(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

CallArgs rest_args(const CallArgs& a, size_t from) {
  CallArgs out;
  for (size_t k = from; k < a.args.size(); ++k) out.args.push_back(a.args[k]);
  return out;
}

// selectattr/rejectattr/select/reject: keep items whose test result equals `keep`.
Value select_items(const Value& input, const CallArgs& a, bool by_attr, bool keep) {
  List out;
  size_t test_at = by_attr ? 1 : 0;
  std::string attr = by_attr ? arg(a, 0, "attribute").str() : "";
  const Value& test = arg(a, test_at, "test");
  for (const auto& item : input.iterate()) {
    Value v = by_attr ? attr_path(item, attr) : item;
    bool ok =
        test.is_undefined() ? v.truthy() : apply_test(test.str(), v, rest_args(a, test_at + 1));
    if (ok == keep) out.push_back(item);
  }
  return Value::new_list(std::move(out));
}

// Python round(): correctly rounded (half to even on exact ties), as glibc's printf rounds.
double py_round(double x, int64_t digits) {
  char buf[512];
  std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(std::clamp<int64_t>(digits, 0, 300)), x);
  return std::strtod(buf, nullptr);
}

Value do_round(const Value& v, const CallArgs& a) {
  double x = v.as_double();
  int64_t p = given(arg(a, 0, "precision")) ? arg(a, 0, "precision").i : 0;
  std::string method = given(arg(a, 1, "method")) ? arg(a, 1, "method").s : "common";
  if (method == "common")  // Python's round() keeps ints ints
    return (v.kind == Value::Kind::kInt || v.kind == Value::Kind::kBool) && p >= 0
               ? Value::integer(static_cast<int64_t>(x))
               : Value::floating(py_round(x, p));
  double scale = std::pow(10.0, static_cast<double>(p));
  if (method == "floor") return Value::floating(std::floor(x * scale) / scale);
  if (method == "ceil") return Value::floating(std::ceil(x * scale) / scale);
  throw TemplateError("round: method must be 'common', 'ceil' or 'floor'");
}

Value do_int(const Value& v, const CallArgs& a) {
  Value def = given(arg(a, 0, "default")) ? arg(a, 0, "default") : Value::integer(0);
  switch (v.kind) {
    case Value::Kind::kInt:
      return v;
    case Value::Kind::kBool:
      return Value::integer(v.b);
    case Value::Kind::kFloat:
      return std::isfinite(v.f) ? Value::integer(static_cast<int64_t>(v.f)) : def;
    case Value::Kind::kString: {
      std::string s = strip(v.s, "", false, true, true);
      char* end = nullptr;
      long long i = std::strtoll(s.c_str(), &end, 10);
      if (!s.empty() && *end == '\0') return Value::integer(i);
      double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && *end == '\0' && std::isfinite(d))
        return Value::integer(static_cast<int64_t>(d));
      return def;
    }
    default:
      return def;
  }
}

Value do_float(const Value& v, const CallArgs& a) {
  Value def = given(arg(a, 0, "default")) ? arg(a, 0, "default") : Value::floating(0);
  if (v.is_number() || v.kind == Value::Kind::kBool) return Value::floating(v.as_double());
  if (v.is_string()) {
    std::string s = strip(v.s, "", false, true, true);
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && *end == '\0') return Value::floating(d);
  }
  return def;
}

Value do_indent(const Value& v, const CallArgs& a) {
  const Value& width = arg(a, 0, "width");
  std::string pad = width.is_string() ? width.s : std::string(given(width) ? width.i : 4, ' ');
  bool first = arg(a, 1, "first").truthy(), blank = arg(a, 2, "blank").truthy();
  std::vector<std::string> lines = splitlines(v.str() + "\n");
  std::string out;
  for (size_t k = 0; k < lines.size(); ++k) {
    if (k) out += "\n";
    if (k && (blank || !lines[k].empty())) out += pad;
    out += lines[k];
  }
  return Value::string(first ? pad + out : out);
}

Value do_sort(const Value& v, const CallArgs& a) {
  List items = v.iterate();
  bool reverse = arg(a, 0, "reverse").truthy(),
       case_sensitive = arg(a, 1, "case_sensitive").truthy();
  const Value& attribute = arg(a, 2, "attribute");
  auto key = [&](const Value& item) {
    Value k = given(attribute) ? attr_path(item, attribute.str()) : item;
    if (!case_sensitive && k.is_string()) k.s = to_lower(k.s);
    return k;
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    return reverse ? less_than(key(y), key(x)) : less_than(key(x), key(y));
  });
  return Value::new_list(std::move(items));
}

Value do_map(const Value& v, const CallArgs& a) {
  List out;
  const Value& attribute = arg(a, SIZE_MAX, "attribute");
  for (const auto& item : v.iterate()) {
    if (given(attribute)) {
      Value x = attr_path(item, attribute.str());
      const Value* def = a.get(SIZE_MAX, "default");
      out.push_back(x.is_undefined() && def ? *def : x);
    } else {
      out.push_back(apply_filter(arg(a, 0, "name").str(), item, rest_args(a, 1)));
    }
  }
  return Value::new_list(std::move(out));
}

Value min_max(const Value& v, const CallArgs& a, bool want_max) {
  List items = v.iterate();
  if (items.empty()) return Value::undefined();
  const Value& attribute = arg(a, 1, "attribute");
  auto key = [&](const Value& item) {
    Value k = given(attribute) ? attr_path(item, attribute.str()) : item;
    if (!arg(a, 0, "case_sensitive").truthy() && k.is_string()) k.s = to_lower(k.s);
    return k;
  };
  Value best = items[0];
  for (const auto& item : items)
    if (want_max ? less_than(key(best), key(item)) : less_than(key(item), key(best))) best = item;
  return best;
}

// Python's "fmt % args" for the conversions templates use: s r d i f e x o c and %%.
std::string percent_format(const std::string& fmt, const List& args) {
  std::string out;
  size_t next = 0;
  for (size_t k = 0; k < fmt.size(); ++k) {
    if (fmt[k] != '%') {
      out += fmt[k];
      continue;
    }
    size_t start = k++;
    while (k < fmt.size() && std::string("-+ #0123456789.").find(fmt[k]) != std::string::npos) ++k;
    if (k >= fmt.size()) throw TemplateError("format: incomplete format");
    char conv = fmt[k];
    if (conv == '%') {
      out += '%';
      continue;
    }
    if (next >= args.size()) throw TemplateError("format: not enough arguments for format string");
    const Value& v = args[next++];
    std::string spec = fmt.substr(start, k - start);
    auto printf_one = [&](const std::string& f, auto x) {
      int n = std::snprintf(nullptr, 0, f.c_str(), x);
      std::string buf(static_cast<size_t>(n) + 1, '\0');
      std::snprintf(buf.data(), buf.size(), f.c_str(), x);
      out.append(buf.data(), static_cast<size_t>(n));
    };
    switch (conv) {
      case 's':
      case 'r': {
        std::string text = conv == 's' ? v.str() : v.repr();
        printf_one(spec + "s", text.c_str());
        break;
      }
      case 'd':
      case 'i':
      case 'x':
      case 'X':
      case 'o':
        printf_one(spec + "ll" + (conv == 'i' ? 'd' : conv), static_cast<long long>(v.as_double()));
        break;
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G':
        printf_one(spec + conv, v.as_double());
        break;
      case 'c':
        out += v.is_string() ? v.s : std::string(1, static_cast<char>(v.as_double()));
        break;
      default:
        throw TemplateError(std::string("format: unsupported format character '") + conv + "'");
    }
  }
  if (next < args.size())
    throw TemplateError("format: not all arguments converted during string formatting");
  return out;
}

Value do_dictsort(const Value& v, const CallArgs& a) {
  if (!v.is_dict()) throw TemplateError("dictsort expects a mapping");
  bool case_sensitive = arg(a, 0, "case_sensitive").truthy();
  bool by_value = given(arg(a, 1, "by")) && arg(a, 1, "by").str() == "value";
  bool reverse = arg(a, 2, "reverse").truthy();
  List items = *(*get_attr(v, "items").fn)(CallArgs{}).list;
  auto key = [&](const Value& pair) {
    Value k = (*pair.list)[by_value ? 1 : 0];
    if (!case_sensitive && k.is_string()) k.s = to_lower(k.s);
    return k;
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    return reverse ? less_than(key(y), key(x)) : less_than(key(x), key(y));
  });
  return Value::new_list(std::move(items));
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace

Value apply_filter(const std::string& name, const Value& v, const CallArgs& a) {
  if (name == "trim") {
    const Value& chars = arg(a, 0, "chars");
    return Value::string(
        strip(v.str(), chars.is_string() ? chars.s : "", chars.is_string(), true, true));
  }
  if (name == "tojson") {
    const Value& indent = arg(a, 0, "indent");
    return Value::string(to_json(v, given(indent) ? static_cast<int>(indent.i) : -1,
                                 arg(a, SIZE_MAX, "sort_keys").truthy()));
  }
  if (name == "length" || name == "count") {
    if (v.is_string()) return Value::integer(static_cast<int64_t>(utf8_chars(v.s).size()));
    if (v.is_list()) return Value::integer(static_cast<int64_t>(v.list->size()));
    if (v.is_dict()) return Value::integer(static_cast<int64_t>(v.dict->size()));
    if (v.is_undefined()) return Value::integer(0);
    throw TemplateError(std::string("object of type '") + v.type_name() + "' has no len()");
  }
  if (name == "upper") return Value::string(to_upper(v.str()));
  if (name == "lower") return Value::string(to_lower(v.str()));
  if (name == "title") return Value::string(jinja_title(v.str()));
  if (name == "capitalize") return Value::string(capitalize(v.str()));
  if (name == "default" || name == "d") {
    bool use_default = arg(a, 1, "boolean").truthy() ? !v.truthy() : v.is_undefined();
    if (!use_default) return v;
    const Value& def = arg(a, 0, "default_value");
    return def.is_undefined() ? Value::string("") : def;
  }
  if (name == "join") {
    std::string sep = given(arg(a, 0, "d")) ? arg(a, 0, "d").str() : "";
    const Value& attribute = arg(a, 1, "attribute");
    std::string out;
    bool first = true;
    for (const auto& item : v.iterate()) {
      if (!first) out += sep;
      first = false;
      out += (given(attribute) ? attr_path(item, attribute.str()) : item).str();
    }
    return Value::string(std::move(out));
  }
  if (name == "first" || name == "last") {
    List items = v.iterate();
    if (items.empty()) return Value::undefined();
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return Value::new_list(v.iterate());
  if (name == "string") return Value::string(v.str());
  if ((name == "int" || name == "float") && v.is_undefined())  // int(Undefined) fails in jinja2
    throw TemplateError("'" + (v.undefined_name.empty() ? std::string("value") : v.undefined_name) +
                        "' is undefined");
  if (name == "int") return do_int(v, a);
  if (name == "float") return do_float(v, a);
  if (name == "abs")
    return v.kind == Value::Kind::kInt ? Value::integer(std::llabs(v.i))
                                       : Value::floating(std::fabs(v.as_double()));
  if (name == "items") {
    if (v.is_undefined()) return Value::new_list();
    if (!v.is_dict()) throw TemplateError("items filter expects a mapping");
    return get_attr(v, "items").fn->operator()(CallArgs{});
  }
  if (name == "replace") {
    const Value& count = arg(a, 2, "count");
    return Value::string(replace(v.str(), arg(a, 0, "old").str(), arg(a, 1, "new").str(),
                                 given(count) ? count.i : -1));
  }
  if (name == "round") return do_round(v, a);
  if (name == "safe") return v;
  if (name == "e" || name == "escape") return Value::string(html_escape(v.str()));
  if (name == "selectattr" || name == "rejectattr")
    return select_items(v, a, true, name == "selectattr");
  if (name == "select" || name == "reject") return select_items(v, a, false, name == "select");
  if (name == "map") return do_map(v, a);
  if (name == "unique") {
    List out;
    for (const auto& item : v.iterate()) {
      Value k = item.is_string() && !arg(a, 0, "case_sensitive").truthy()
                    ? Value::string(to_lower(item.s))
                    : item;
      bool seen = std::any_of(out.begin(), out.end(), [&](const Value& o) {
        return (o.is_string() && !arg(a, 0, "case_sensitive").truthy()
                    ? Value::string(to_lower(o.s))
                    : o) == k;
      });
      if (!seen) out.push_back(item);
    }
    return Value::new_list(std::move(out));
  }
  if (name == "reverse") {
    List items = v.iterate();
    std::reverse(items.begin(), items.end());
    if (!v.is_string()) return Value::new_list(std::move(items));
    std::string out;
    for (const auto& c : items) out += c.s;
    return Value::string(std::move(out));
  }
  if (name == "sort") return do_sort(v, a);
  if (name == "dictsort") return do_dictsort(v, a);
  if (name == "format") return Value::string(percent_format(v.str(), a.args));
  if (name == "indent") return do_indent(v, a);
  if (name == "max" || name == "min") return min_max(v, a, name == "max");
  if (name == "sum") {
    Value total = given(arg(a, 1, "start")) ? arg(a, 1, "start") : Value::integer(0);
    const Value& attribute = arg(a, 0, "attribute");
    for (const auto& item : v.iterate()) {
      Value x = given(attribute) ? attr_path(item, attribute.str()) : item;
      if (total.kind == Value::Kind::kInt && x.kind == Value::Kind::kInt)
        total.i += x.i;
      else
        total = Value::floating(total.as_double() + x.as_double());
    }
    return total;
  }
  throw TemplateError("no filter named '" + name + "'");
}

bool apply_test(const std::string& name, const Value& v, const CallArgs& a) {
  using K = Value::Kind;
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict() && !v.is_namespace;
  if (name == "iterable") return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
  if (name == "sequence") return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
  if (name == "number") return v.is_number() || v.kind == K::kBool;
  if (name == "integer") return v.kind == K::kInt;
  if (name == "float") return v.kind == K::kFloat;
  if (name == "boolean") return v.kind == K::kBool;
  if (name == "true") return v.kind == K::kBool && v.b;
  if (name == "false") return v.kind == K::kBool && !v.b;
  if (name == "callable") return v.is_callable();
  if (name == "lower") return v.is_string() && to_lower(v.s) == v.s;
  if (name == "upper") return v.is_string() && to_upper(v.s) == v.s;
  if (name == "odd" || name == "even") {  // value % 2 == 1 (or == 0), as Python computes it
    if (!v.is_number() && v.kind != K::kBool) throw TemplateError("odd/even test expects a number");
    double r = std::fmod(v.as_double(), 2.0);
    if (r < 0) r += 2.0;
    return r == (name == "odd" ? 1.0 : 0.0);
  }
  if (name == "divisibleby") {
    const Value& n = arg(a, 0, "num");
    if (v.kind != K::kInt || n.kind != K::kInt || n.i == 0)
      throw TemplateError("divisibleby expects integers");
    return v.i % n.i == 0;
  }
  const Value& other = arg(a, 0, "other");
  if (name == "equalto" || name == "eq" || name == "==") return v == other;
  if (name == "ne" || name == "!=") return !(v == other);
  if (name == "lt" || name == "lessthan" || name == "<") return less_than(v, other);
  if (name == "le" || name == "<=") return !less_than(other, v);
  if (name == "gt" || name == "greaterthan" || name == ">") return less_than(other, v);
  if (name == "ge" || name == ">=") return !less_than(v, other);
  if (name == "in") return contains(arg(a, 0, "seq"), v);
  if (name == "sameas") {
    if (v.kind != other.kind) return false;
    if (v.is_list()) return v.list == other.list;
    if (v.is_dict()) return v.dict == other.dict;
    if (v.is_callable()) return v.fn == other.fn;
    return v == other;
  }
  throw TemplateError("no test named '" + name + "'");
}

}  // namespace xq::jinja
