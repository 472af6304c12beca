// Built-ins of the chat-template interpreter: attribute/item access with Python methods (str.strip,
// dict.items, ...), jinja2 filters and tests, and the globals transformers provides (range,
// namespace, dict, raise_exception, strftime_now).
#pragma once

#include <string>

#include "engine/tokenizer/chat_template_value.h"

namespace xq::jinja {

// obj.name as jinja2 resolves it: a method of str/dict first, then a dict member. Undefined (not
// an error) when absent or when obj is itself undefined.
Value get_attr(const Value& obj, const std::string& name);
// obj[key]: dict member, list/str index (negative from the end), else as get_attr.
Value get_item(const Value& obj, const Value& key);
// obj[start:stop:step] for lists and strings (undefined bounds are omitted ones).
Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step);

// Throws TemplateError for an unknown filter or test.
Value apply_filter(const std::string& name, const Value& input, const CallArgs& args);
bool apply_test(const std::string& name, const Value& input, const CallArgs& args);

// The global functions; undefined when `name` is none of them.
Value builtin_global(const std::string& name);

// Python's `a in b`.
bool contains(const Value& container, const Value& item);

}  // namespace xq::jinja
