#include "engine/tokenizer/chat_template_lexer.h"

#include <algorithm>
#include <cctype>
#include <string_view>

#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/utf8.h"

namespace xq::jinja {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

class Lexer {
 public:
  explicit Lexer(std::string src) : src_(std::move(src)) {
    for (size_t k = 0; k < src_.size(); ++k)
      if (src_[k] == '\n') line_starts_.push_back(k + 1);
  }

  std::vector<Token> run() {
    bool line_starting = true;  // at the source start, or the last tag ended with a newline
    bool strip_next = false;    // the last tag ended with `-`
    while (pos_ < src_.size()) {
      size_t tag = find_tag(pos_);
      std::string text = src_.substr(pos_, (tag == std::string::npos ? src_.size() : tag) - pos_);
      if (strip_next) {
        size_t k = 0;
        while (k < text.size() && is_space(text[k])) ++k;
        text.erase(0, k);
        strip_next = false;
      }
      if (tag == std::string::npos) {
        emit_text(std::move(text), pos_);
        break;
      }
      char type = src_[tag + 1];
      char sign = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      if (sign == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (sign != '+' && type != '{') {
        // lstrip_blocks: drop spaces/tabs between a line start and a block or comment tag.
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
            std::all_of(text.begin() + l_pos, text.end(), is_space))
          text.erase(l_pos);
      }
      emit_text(std::move(text), pos_);
      pos_ = tag + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      size_t close_end;
      if (type == '#') {
        size_t end = src_.find("#}", pos_);
        if (end == std::string::npos) fail(tag, "unterminated comment");
        bool dash = end > pos_ && src_[end - 1] == '-';
        close_end = end + 2;
        strip_next = dash;
        if (!dash && close_end < src_.size() && src_[close_end] == '\n') ++close_end;
      } else {
        close_end = lex_tag(tag, type, strip_next);
      }
      line_starting = close_end > 0 && src_[close_end - 1] == '\n';
      pos_ = close_end;
    }
    tokens_.push_back(make(Token::Kind::kEof, "", src_.size()));
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t k = src_.find('{', from); k != std::string::npos; k = src_.find('{', k + 1)) {
      if (k + 1 < src_.size() && (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#'))
        return k;
    }
    return std::string::npos;
  }

  Token make(Token::Kind kind, std::string value, size_t offset) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    int line = static_cast<int>(it - line_starts_.begin());
    int col = static_cast<int>(offset - line_starts_[line - 1]) + 1;
    return Token{kind, std::move(value), line, col};
  }

  [[noreturn]] void fail(size_t offset, const std::string& what) const {
    Token t = make(Token::Kind::kEof, "", offset);
    throw TemplateError("template syntax error at line " + std::to_string(t.line) + ", column " +
                        std::to_string(t.col) + ": " + what);
  }

  void emit_text(std::string text, size_t offset) {
    if (!text.empty()) tokens_.push_back(make(Token::Kind::kText, std::move(text), offset));
  }

  // Lexes the inside of {{ }} or {% %} starting at pos_; returns the offset after the closing
  // delimiter (and after the newline trim_blocks removes, or with strip_next set for `-`).
  size_t lex_tag(size_t open, char type, bool& strip_next) {
    bool block = type == '%';
    tokens_.push_back(make(block ? Token::Kind::kBlockBegin : Token::Kind::kVarBegin, "", open));
    std::string_view close = block ? "%}" : "}}";
    int depth = 0;
    for (;;) {
      while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
      if (pos_ >= src_.size()) fail(open, block ? "unterminated block tag" : "unterminated {{");
      std::string_view rest(src_.data() + pos_, src_.size() - pos_);
      if (depth == 0) {
        bool dash = rest.size() > 2 && rest[0] == '-' && rest.substr(1, 2) == close;
        bool plus = block && rest.size() > 2 && rest[0] == '+' && rest.substr(1, 2) == close;
        if (dash || plus || rest.substr(0, 2) == close) {
          tokens_.push_back(make(block ? Token::Kind::kBlockEnd : Token::Kind::kVarEnd, "", pos_));
          size_t end = pos_ + 2 + (dash || plus ? 1 : 0);
          if (dash) strip_next = true;
          if (block && !dash && !plus && end < src_.size() && src_[end] == '\n') ++end;
          return end;
        }
      }
      char c = rest[0];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t k = 1;
        while (k < rest.size() &&
               (std::isalnum(static_cast<unsigned char>(rest[k])) || rest[k] == '_'))
          ++k;
        tokens_.push_back(make(Token::Kind::kName, std::string(rest.substr(0, k)), pos_));
        pos_ += k;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        lex_number(rest);
      } else if (c == '\'' || c == '"') {
        lex_string(c);
      } else {
        static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "<", ">", "+",
                                     "-",  "*",  "/",  "%",  "~",  "(",  ")", "[", "]",
                                     "{",  "}",  ",",  ".",  ":",  "|",  "="};
        const char* op = nullptr;
        for (const char* o : kOps)
          if (rest.substr(0, std::char_traits<char>::length(o)) == o) {
            op = o;
            break;
          }
        if (!op) fail(pos_, std::string("unexpected character '") + c + "'");
        std::string o(op);
        if (o == "(" || o == "[" || o == "{") ++depth;
        if ((o == ")" || o == "]" || o == "}") && depth > 0) --depth;
        tokens_.push_back(make(Token::Kind::kOp, o, pos_));
        pos_ += o.size();
      }
    }
  }

  void lex_number(std::string_view rest) {
    size_t k = 0;
    auto digits = [&] {
      while (k < rest.size() &&
             (std::isdigit(static_cast<unsigned char>(rest[k])) || rest[k] == '_'))
        ++k;
    };
    digits();
    bool is_float = false;
    if (k + 1 < rest.size() && rest[k] == '.' &&
        std::isdigit(static_cast<unsigned char>(rest[k + 1]))) {
      is_float = true;
      ++k;
      digits();
    }
    if (k < rest.size() && (rest[k] == 'e' || rest[k] == 'E')) {
      size_t save = k++;
      if (k < rest.size() && (rest[k] == '+' || rest[k] == '-')) ++k;
      if (k < rest.size() && std::isdigit(static_cast<unsigned char>(rest[k]))) {
        is_float = true;
        digits();
      } else {
        k = save;
      }
    }
    std::string spelled(rest.substr(0, k));
    spelled.erase(std::remove(spelled.begin(), spelled.end(), '_'), spelled.end());
    tokens_.push_back(make(is_float ? Token::Kind::kFloat : Token::Kind::kInt, spelled, pos_));
    pos_ += k;
  }

  // Python string escapes, as jinja2 decodes literals ("unicode-escape").
  void lex_string(char quote) {
    size_t start = pos_++;
    std::string out;
    while (pos_ < src_.size() && src_[pos_] != quote) {
      char c = src_[pos_++];
      if (c != '\\' || pos_ >= src_.size()) {
        out += c;
        continue;
      }
      char e = src_[pos_++];
      auto hex = [&](int n) {
        uint32_t cp = 0;
        for (int k = 0; k < n; ++k, ++pos_) {
          if (pos_ >= src_.size() || !std::isxdigit(static_cast<unsigned char>(src_[pos_])))
            fail(pos_, "truncated \\x/\\u escape in string");
          char h = src_[pos_];
          cp = cp * 16 + (std::isdigit(static_cast<unsigned char>(h))
                              ? h - '0'
                              : (std::tolower(h) - 'a' + 10));
        }
        utf8::append_codepoint(out, static_cast<char32_t>(cp));
      };
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case 'a':
          out += '\a';
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case '\n':
          break;
        case 'x':
          hex(2);
          break;
        case 'u':
          hex(4);
          break;
        case 'U':
          hex(8);
          break;
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = e - '0';
            for (int k = 0; k < 2 && pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '7';
                 ++k)
              cp = cp * 8 + (src_[pos_++] - '0');
            utf8::append_codepoint(out, static_cast<char32_t>(cp));
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    if (pos_ >= src_.size()) fail(start, "unterminated string literal");
    ++pos_;
    tokens_.push_back(make(Token::Kind::kString, std::move(out), start));
  }

  std::string src_;
  size_t pos_ = 0;
  std::vector<size_t> line_starts_{0};
  std::vector<Token> tokens_;
};

// jinja2 reads templates with universal newlines and drops one trailing newline
// (keep_trailing_newline=False).
std::string normalize_newlines(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t k = 0; k < s.size(); ++k) {
    if (s[k] == '\r') {
      out += '\n';
      if (k + 1 < s.size() && s[k + 1] == '\n') ++k;
    } else {
      out += s[k];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace

std::vector<Token> lex(const std::string& source) {
  return Lexer(normalize_newlines(source)).run();
}

}  // namespace xq::jinja
