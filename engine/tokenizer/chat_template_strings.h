// Python str operations the chat-template interpreter needs (strip, split, title, ...). Case
// mapping is Unicode (ICU); whitespace is Python's str.isspace() set.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xq::jinja {

// str.strip(chars): `custom` false strips whitespace.
std::string strip(const std::string& s, const std::string& chars, bool custom, bool left,
                  bool right);
// str.split(sep, maxsplit): `whitespace` true splits on runs of whitespace like split().
std::vector<std::string> split(const std::string& s, const std::string& sep, bool whitespace,
                               int64_t maxsplit);
std::vector<std::string> rsplit(const std::string& s, const std::string& sep, bool whitespace,
                                int64_t maxsplit);
std::vector<std::string> splitlines(const std::string& s);
std::string replace(const std::string& s, const std::string& from, const std::string& to,
                    int64_t count);
int64_t count_substr(const std::string& s, const std::string& sub);
std::string to_upper(std::string s);
std::string to_lower(std::string s);
std::string capitalize(const std::string& s);
// str.title(): a letter after a non-letter is upper-cased, every other letter lower-cased.
std::string py_title(const std::string& s);
// jinja2's |title: words split at whitespace, '-', and opening brackets.
std::string jinja_title(const std::string& s);
// str.isdigit/isalpha/isspace/isalnum over ASCII.
bool char_class_all(const std::string& s, const std::string& cls);

}  // namespace xq::jinja
