// ChatTemplate: Jinja syntax and semantics as transformers renders chat templates (expected
// strings are what jinja2 3.1 with trim_blocks/lstrip_blocks prints), error positions, and the
// real model templates in tests/data/chat_templates.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "engine/tokenizer/chat_template.h"

namespace xq {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

std::string render(const std::string& tmpl, const json& ctx = json::object()) {
  return ChatTemplate(tmpl).render(ctx);
}

std::string error_of(const std::string& tmpl, const json& ctx = json::object()) {
  try {
    ChatTemplate(tmpl).render(ctx);
  } catch (const TemplateError& e) {
    return e.what();
  }
  return "(no error)";
}

std::string fixture(const std::string& name) {
  std::ifstream in(std::string(XQ_SOURCE_DIR) + "/tests/data/chat_templates/" + name);
  EXPECT_TRUE(in) << name;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A template is input (model files, --chat-template): nesting that would exhaust the stack while
// parsing or rendering is refused (found by scripts/fuzz.sh: 1,800 unary '+' crashed the renderer).
TEST(ChatTemplate, RefusesNestingPastTheLimit) {
  const auto repeat = [](const std::string& s, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += s;
    return out;
  };
  EXPECT_NE(error_of("{{ " + repeat("+", 5000) + "1 }}").find("nested deeper"), std::string::npos);
  EXPECT_NE(error_of("{{ " + repeat("not ", 5000) + "true }}").find("nested deeper"),
            std::string::npos);
  EXPECT_NE(
      error_of("{{ " + repeat("(", 5000) + "1" + repeat(")", 5000) + " }}").find("nested deeper"),
      std::string::npos);
  EXPECT_NE(error_of(repeat("{% if true %}", 5000) + "x" + repeat("{% endif %}", 5000))
                .find("nested deeper"),
            std::string::npos);
  // Real templates nest a few levels; 40 is far inside the limit.
  EXPECT_EQ(render("{{ " + repeat("-", 40) + "1 }}"), "1");
  EXPECT_EQ(render(repeat("{% if true %}", 40) + "x" + repeat("{% endif %}", 40)), "x");
}

TEST(ChatTemplate, TextAndOutput) {
  EXPECT_EQ(render("plain"), "plain");
  EXPECT_EQ(render("a{{ x }}b", {{"x", "X"}}), "aXb");
  EXPECT_EQ(render("{{ missing }}|{{ none }}|{{ true }}|{{ 1.5 }}|{{ 2 }}"), "|None|True|1.5|2");
  EXPECT_EQ(render("x{# comment #}y"), "xy");
  EXPECT_EQ(render("line\n"), "line");  // keep_trailing_newline=False drops one newline
  EXPECT_EQ(render("a\r\nb"), "a\nb");
}

TEST(ChatTemplate, WhitespaceControlLikeTransformers) {
  // trim_blocks removes the newline after %}; lstrip_blocks the indentation before {%.
  EXPECT_EQ(render("a\n  {% if true %}\n  b\n  {% endif %}\nc\n"), "a\n  b\nc");
  EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(render("a  {{- 'b' -}}  c"), "abc");
  EXPECT_EQ(render("{{ 'v' }}\nnext"), "v\nnext");  // trim_blocks does not apply to }}
  EXPECT_EQ(render("  {%+ if true %}x{% endif +%}\ny"), "  x\ny");
  EXPECT_EQ(render("  {# c #}\nz"), "z");
}

TEST(ChatTemplate, Literals) {
  EXPECT_EQ(render(R"({{ 'it\'s' }} {{ "a\tb\n" }}{{ '\u00e9\x41' }} {{ 'a' 'b' }})"),
            "it's a\tb\néA ab");
  EXPECT_EQ(render("{{ [1, 'a', none, true, {'k': [1.5]}] }}"),
            "[1, 'a', None, True, {'k': [1.5]}]");
  EXPECT_EQ(render("{{ (1, 'a') }} {{ [0.1 + 0.2, 1e-05, 1e16, 100.0] }}"),
            "(1, 'a') [0.30000000000000004, 1e-05, 1e+16, 100.0]");
  EXPECT_EQ(render("{{ True }}{{ False }}{{ None }}"), "TrueFalseNone");
}

TEST(ChatTemplate, Operators) {
  EXPECT_EQ(
      render("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 10 / 4 }} {{ 2 ** 10 }}"),
      "7 3 -4 2 2.5 1024");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none }} {{ 'ab' * 2 }} {{ [1] + [2] }}"), "a1None abab [1, 2]");
  EXPECT_EQ(render("{{ 1 < 2 and 'x' or 'y' }} {{ not 1 == 2 }} {{ none or 0 }}"), "x True 0");
  EXPECT_EQ(render("{{ 'b' in 'abc' }} {{ 2 not in [1, 2] }} {{ 'k' in {'k': 1} }}"),
            "True False True");
  EXPECT_EQ(render("{{ 'yes' if x else 'no' }}|{{ 'only' if false }}|", {{"x", 1}}), "yes||");
  EXPECT_EQ(render("{{ 1 == 1.0 }} {{ [1, {'a': 2}] == [1, {'a': 2}] }}"), "True True");
}

TEST(ChatTemplate, AccessAndSlices) {
  json ctx = {{"m", {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "hi"}}}}}}};
  EXPECT_EQ(render("{{ m.role }} {{ m['role'] }} {{ m['content'][0]['text'] }} {{ m.nope }}|", ctx),
            "user user hi |");
  EXPECT_EQ(render("{{ [1,2,3][1:] }} {{ [1,2,3][-1] }} {{ 'hello'[::-1] }} {{ 'héllo'[1:3] }}"),
            "[2, 3] 3 olleh él");
  EXPECT_EQ(render("{{ m.get('role') }} {{ m.get('x', 'd') }} {{ m.keys()|list }}", ctx),
            "user d ['content', 'role']");  // nlohmann::json sorts keys
}

TEST(ChatTemplate, Loops) {
  EXPECT_EQ(render("{% for x in [3, 4, 5] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
                   "{{ loop.first }}{{ loop.last }}{{ loop.length }}:{{ x }} {% endfor %}"),
            "103TrueFalse3:3 212FalseFalse3:4 321FalseTrue3:5 ");
  EXPECT_EQ(render("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"),
            "a=1;b=2;");
  EXPECT_EQ(render("{% for c in 'ab' %}[{{ c }}]{% endfor %}"), "[a][b]");
  EXPECT_EQ(render("{% for i in range(5) if i is odd %}{{ i }}/{{ loop.length }} {% endfor %}"),
            "1/2 3/2 ");
  EXPECT_EQ(render("{% for i in range(9) %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}"
                   "{% if i == 3 %}{% break %}{% endif %}{% endfor %}"),
            "023");
}

TEST(ChatTemplate, ScopesAndNamespaces) {
  // A set inside a loop iteration is local to that iteration, as in jinja2.
  EXPECT_EQ(
      render("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}"),
      "221");
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for i in [1, 2] %}{% set ns.n = ns.n + i %}"
                   "{% endfor %}{{ ns.n }}"),
            "3");
  EXPECT_EQ(
      render("{% set a, b = [1, 2] %}{{ b }}{{ a }}{% set blk %}x{{ a }}{% endset %}{{ blk }}"),
      "21x1");
  EXPECT_EQ(render("{% macro tag(name, v='d') %}<{{ name }}={{ v }}>{% endmacro %}"
                   "{{ tag('a') }}{{ tag('b', v=2) }}"),
            "<a=d><b=2>");
}

TEST(ChatTemplate, Filters) {
  EXPECT_EQ(render("{{ '  x '|trim }}|{{ 'aB'|upper }}{{ 'aB'|lower }}|{{ 'hello world'|title }}|"
                   "{{ 'hELLO'|capitalize }}"),
            "x|ABab|Hello World|Hello");
  EXPECT_EQ(
      render("{{ [1,2]|length }} {{ 'héllo'|count }} {{ x|default('d') }} {{ ''|d('e', true) }}"),
      "2 5 d e");
  EXPECT_EQ(render("{{ [1,2]|join(', ') }} {{ [3,1]|first }} {{ 'ab'|last }} {{ 'ab'|list }}"),
            "1, 2 3 b ['a', 'b']");
  EXPECT_EQ(render("{{ 2.7|int }} {{ '5'|int }} {{ 'x'|int }} {{ 2|float }} {{ 2.5|round }} "
                   "{{ 3.14159|round(2) }} {{ 1|string ~ 2 }}"),
            "2 5 0 2.0 2.0 3.14 12");
  EXPECT_EQ(render("{{ 'aaa'|replace('a', 'b', 2) }} {{ [1, 1, 2]|unique|list }} "
                   "{{ [1, 2]|reverse|list }} {{ ['b', 'A', 'c']|sort }}"),
            "bba [1, 2] [2, 1] ['A', 'b', 'c']");
  EXPECT_EQ(render("{{ 'a\nb\n\nc'|indent(2) }}|{{ 'a\nb'|indent(2, true) }}"),
            "a\n  b\n\n  c|  a\n  b");
  json msgs = {{"m", {{{"role", "user"}, {"n", 1}}, {{"role", "bot"}, {"n", 2}}}}};
  EXPECT_EQ(
      render(
          "{{ m|selectattr('role', 'equalto', 'user')|map(attribute='n')|list }} "
          "{{ m|rejectattr('role', 'equalto', 'user')|list|length }} "
          "{{ m|map(attribute='role')|join('+') }} {{ m|sort(attribute='n', reverse=true)|first }}",
          msgs),
      "[1] 1 user+bot {'n': 2, 'role': 'bot'}");
}

TEST(ChatTemplate, TojsonIsJsonDumpsWithoutAsciiEscaping) {
  ordered_json ctx = {{"t", {{"name", "f"}, {"d", "é\"\n"}, {"p", {1, 2.5, nullptr, true}}}}};
  ChatTemplate t(
      "{{ t|tojson }}\n{{ t|tojson(indent=2) }}\n{{ {}|tojson }}{{ []|tojson(indent=4) }}");
  EXPECT_EQ(
      t.render_ordered(ctx),
      "{\"name\": \"f\", \"d\": \"é\\\"\\n\", \"p\": [1, 2.5, null, true]}\n"
      "{\n  \"name\": \"f\",\n  \"d\": \"é\\\"\\n\",\n  \"p\": [\n    1,\n    2.5,\n    null,\n"
      "    true\n  ]\n}\n{}[]");
}

TEST(ChatTemplate, Tests) {
  EXPECT_EQ(
      render("{{ x is defined }} {{ y is undefined }} {{ none is none }} {{ 'a' is string }} "
             "{{ {} is mapping }} {{ [] is iterable }} {{ 1 is number }} {{ [] is sequence }} "
             "{{ true is boolean }} {{ 4 is divisibleby 2 }} {{ 3 is not even }}",
             {{"x", 0}}),
      "True True True True True True True True True True True");
}

TEST(ChatTemplate, StringMethods) {
  EXPECT_EQ(
      render("{{ ' a '.strip() }}|{{ 'xax'.strip('x') }}|{{ ' a'.lstrip() }}|{{ 'a '.rstrip() }}|"
             "{{ 'a,b,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'ab'.startswith('a') }}|"
             "{{ 'ab'.endswith(('x', 'b')) }}|{{ 'aX'.replace('X', 'y') }}|{{ 'a b'.title() }}|"
             "{{ '{} {}'.format(1, 'z') }}"),
      "a|a|a|a|['a', 'b', 'c']|['a', 'b']|True|True|ay|A B|1 z");
}

TEST(ChatTemplate, Globals) {
  EXPECT_EQ(render("{{ range(3)|list }} {{ range(1, 6, 2)|list }} {{ dict(a=1) }}"),
            "[0, 1, 2] [1, 3, 5] {'a': 1}");
  EXPECT_EQ(error_of("{{ raise_exception('Conversation roles must alternate') }}"),
            "Conversation roles must alternate");
  std::string date = render("{{ strftime_now('%Y') }}");
  EXPECT_EQ(date.size(), 4u);
  EXPECT_EQ(render("{% if not date_string is defined %}{% set date_string = '26 Jul 2024' %}"
                   "{% endif %}{{ date_string }}",
                   {{"date_string", "01 Jan 2025"}}),
            "01 Jan 2025");
}

TEST(ChatTemplate, SyntaxErrorsNamePositions) {
  auto syntax_error = [](const std::string& tmpl) {
    try {
      ChatTemplate t(tmpl);
    } catch (const TemplateError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(syntax_error("ab\n  {% if x %}y"),
            "template syntax error at line 2, column 14: unexpected end of template; expected one "
            "of: 'elif', 'else', 'endif'")
      << "unclosed if";
  EXPECT_EQ(syntax_error("{{ 1 + }}"),
            "template syntax error at line 1, column 8: unexpected end of print statement");
  EXPECT_EQ(syntax_error("x\n{{ 'abc }}"),
            "template syntax error at line 2, column 4: unterminated string literal");
  EXPECT_EQ(syntax_error("{% frob %}"),
            "template syntax error at line 1, column 4: unknown statement 'frob'");
  EXPECT_EQ(syntax_error("{# never closed"),
            "template syntax error at line 1, column 1: unterminated comment");
  EXPECT_EQ(syntax_error("{% for x in y %}{% endif %}"),
            "template syntax error at line 1, column 20: unknown statement 'endif'");
}

TEST(ChatTemplate, RuntimeErrors) {
  EXPECT_EQ(error_of("{{ messages[0]['role'] }}", {{"messages", json::array()}}),
            "list object has no element 0");
  EXPECT_EQ(error_of("{{ m.content + 'x' }}", {{"m", {{"role", "user"}}}}),
            "'dict object' has no attribute 'content'");
  EXPECT_EQ(error_of("{{ m.content.text }}", {{"m", {{"role", "user"}}}}),
            "'dict object' has no attribute 'content'");
  EXPECT_EQ(error_of("{{ nothing ~ 1 }}{{ nothing.x }}"), "'nothing' is undefined");
  EXPECT_NE(error_of("{{ 'a' + 1 }}").find("unsupported operand"), std::string::npos);
  EXPECT_NE(error_of("{{ x|nosuchfilter }}").find("no filter named 'nosuchfilter'"),
            std::string::npos);
  EXPECT_NE(error_of("{{ undefined_fn() }}").find("'undefined_fn' is undefined"),
            std::string::npos);
}

// The templates make_test_tokenizer.py ships.
TEST(ChatTemplate, TestTokenizerTemplates) {
  const std::string llama3 =
      "{% set loop_messages = messages %}{% for message in loop_messages %}"
      "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
      "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
      "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
      "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
      "{% endif %}";
  json ctx = {{"messages",
               {{{"role", "system"}, {"content", " S "}}, {{"role", "user"}, {"content", "U\n"}}}},
              {"add_generation_prompt", true},
              {"bos_token", "<|begin_of_text|>"}};
  EXPECT_EQ(render(llama3, ctx),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");

  std::string mistral = fixture("mistral-7b-instruct-v0.1.jinja");
  json chat = {{"messages",
                {{{"role", "user"}, {"content", "Hi"}},
                 {{"role", "assistant"}, {"content", "Yo"}},
                 {{"role", "user"}, {"content", "Bye"}}}},
               {"bos_token", "<s>"},
               {"eos_token", "</s>"}};
  EXPECT_EQ(render(mistral, chat), "<s>[INST] Hi [/INST]Yo</s>[INST] Bye [/INST]");
  chat["messages"][1]["role"] = "user";
  EXPECT_EQ(error_of(mistral, chat),
            "Conversation roles must alternate user/assistant/user/assistant/...");
}

TEST(ChatTemplate, RealTemplates) {
  json sys_user = {
      {"messages",
       {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}}},
      {"add_generation_prompt", true},
      {"bos_token", "<|begin_of_text|>"},
      {"eos_token", "<|eot_id|>"}};
  EXPECT_EQ(ChatTemplate(fixture("llama-3.1-8b-instruct.jinja")).render(sys_user),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(ChatTemplate(fixture("qwen2.5-7b-instruct.jinja")).render(sys_user),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
  sys_user["bos_token"] = "<bos>";
  sys_user["messages"][0]["content"] = {{{"type", "text"}, {"text", "Be brief."}}};
  EXPECT_EQ(ChatTemplate(fixture("gemma-3-it.jinja")).render(sys_user),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
  sys_user["bos_token"] = "<s>";
  sys_user["eos_token"] = "</s>";
  sys_user["messages"][0]["content"] = "Be brief.";
  EXPECT_EQ(ChatTemplate(fixture("mistral-7b-instruct-v0.3.jinja")).render(sys_user),
            "<s>[INST] Be brief.\n\nHi[/INST]");
}

}  // namespace
}  // namespace xq
