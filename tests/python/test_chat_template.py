"""Compares xquant-server's chat-template renderer with Python jinja2 configured as transformers'
apply_chat_template configures it, byte for byte: real model templates (tests/data/chat_templates)
on several conversations, and small templates for each supported feature.

Needs the test-support executable render_template_cli from the build in $XQ_BUILD_DIR
(default build/release); skipped when it is absent.
"""

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

jinja2 = pytest.importorskip("jinja2")
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "tests" / "data" / "chat_templates"


def _cli() -> Path:
    build = Path(os.environ.get("XQ_BUILD_DIR", ROOT / "build" / "release"))
    if not build.is_absolute():
        build = ROOT / build
    for candidate in (build / "tests" / "render_template_cli", build / "render_template_cli"):
        if candidate.is_file():
            return candidate
    pytest.skip(f"render_template_cli not built in {build} (set XQ_BUILD_DIR)")


class TemplateRaised(Exception):
    pass


def _hf_environment():
    """jinja2 as transformers' _compile_jinja_template sets it up."""

    def raise_exception(message):
        raise TemplateRaised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


ENV = _hf_environment()


def reference(template: str, context: dict):
    """('ok', text) or ('error', message-or-None)."""
    try:
        return "ok", ENV.from_string(template).render(**context)
    except TemplateRaised as e:
        return "error", str(e)
    except Exception:  # noqa: BLE001 - any jinja2 failure must be a failure of ours too
        return "error", None


def ours(template: str, context: dict, tmp_path: Path):
    tpl = tmp_path / "t.jinja"
    ctx = tmp_path / "c.json"
    tpl.write_bytes(template.encode("utf-8"))
    ctx.write_text(json.dumps(context, ensure_ascii=False), encoding="utf-8")
    proc = subprocess.run([str(_cli()), str(tpl), str(ctx)], capture_output=True, timeout=30)
    if proc.returncode == 0:
        return "ok", proc.stdout.decode("utf-8")
    assert proc.returncode == 2, proc.stderr.decode()
    return "error", proc.stderr.decode("utf-8").strip().removeprefix("TemplateError: ")


def check(template: str, context: dict, tmp_path: Path):
    want = reference(template, context)
    got = ours(template, context, tmp_path)
    if want[0] == "ok":
        assert got == want, f"\n--- jinja2:\n{want[1]!r}\n--- ours:\n{got[1]!r}"
    else:
        assert got[0] == "error", f"jinja2 failed but we rendered {got[1]!r}"
        if want[1] is not None:  # raise_exception: the message is passed on as-is
            assert got[1] == want[1]


def base(messages, add_generation_prompt=True, **extra):
    ctx = {"messages": messages, "add_generation_prompt": add_generation_prompt,
           "bos_token": "<s>", "eos_token": "</s>"}
    ctx.update(extra)
    return ctx


SYSTEM = {"role": "system", "content": "You are a terse assistant.  "}
USER1 = {"role": "user", "content": "  Hello there! Ünïcödé ✓ \"quotes\" and 'apostrophes'\n"}
ASSIST1 = {"role": "assistant", "content": "Hi. How can I help?"}
USER2 = {"role": "user", "content": "Tell me a joke about {{ braces }} and {% tags %}."}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]

RICH_TOOLS = TOOLS + [{"type": "function", "function": {
    "name": "search", "description": "Searches documents. ",
    "parameters": {"type": "object", "properties": {
        "terms": {"type": "array", "items": {"type": "string"}, "description": " search terms "},
        "limit": {"type": ["integer", "null"], "description": "max hits"},
        "filters": {"type": "object", "additionalProperties": {"type": "number"},
                    "description": "numeric filters"},
        "exact": {"type": "boolean", "description": "exact match"}},
        "required": ["terms"]},
    "return": {"type": "array", "items": {"type": "object"}, "description": "matching docs"}}},
    {"type": "function", "function": {"name": "now", "description": "Time",
                                      "parameters": {"type": "object", "properties": {}}}}]

# Without array or "null" types, which send Hermes 3's json_to_python_type macro into endless
# recursion (in jinja2 too; rich_tools checks that both fail).
TYPED_TOOLS = [{"type": "function", "function": {
    "name": "lookup", "description": "Looks up a key.",
    "parameters": {"type": "object", "properties": {
        "key": {"type": "string", "description": "the key "},
        "limit": {"type": ["integer", "string"], "description": "max hits"},
        "weights": {"type": "object", "additionalProperties": {"type": "number"},
                    "description": "weights"}},
        "required": ["key"]},
    "return": {"type": "object", "description": "the record"}}}]

CONVERSATIONS = {
    "typed_tools": base([USER1, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call00002", "type": "function",
         "function": {"name": "lookup", "arguments": '{"key": "k"}'}}]},
        {"role": "tool", "tool_call_id": "call00002", "content": "{}"},
        {"role": "tool", "tool_call_id": "call00002", "content": "{}"},
        {"role": "assistant", "content": "Done."}], tools=TYPED_TOOLS),
    "rich_tools": base([SYSTEM, USER1, {"role": "assistant", "tool_calls": [
        {"id": "call00001", "type": "function",
         "function": {"name": "search", "arguments": {"terms": ["a", "b"], "limit": 3}}}]},
        {"role": "tool", "tool_call_id": "call00001", "content": "[]"},
        {"role": "assistant", "content": "Nothing found."}], tools=RICH_TOOLS),
    "user_only": base([USER1]),
    "system_user": base([SYSTEM, USER1]),
    "multi_turn": base([SYSTEM, USER1, ASSIST1, USER2]),
    "multi_turn_no_prompt": base([USER1, ASSIST1, USER2, ASSIST1], add_generation_prompt=False),
    "content_list": base([{"role": "system", "content": [{"type": "text", "text": "Sys list."}]},
                          {"role": "user", "content": [{"type": "text", "text": "Part one. "},
                                                       {"type": "text", "text": " Part two"}]}]),
    "bad_alternation": base([USER1, USER2]),
    "with_tools": base([SYSTEM, USER1], tools=TOOLS),
    "tools_none": base([USER1, ASSIST1, USER2], tools=None),
    "tool_call_round_trip": base([
        USER1,
        {"role": "assistant", "content": "", "tool_calls": [{"id": "abcdefghi", "type": "function",
         "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_call_id": "abcdefghi", "content": "22 C"},
        {"role": "assistant", "content": "It is 22 C."}], tools=TOOLS),
    "llama_date_string": base([USER1], date_string="01 Jan 2025", tools_in_user_message=False,
                              tools=TOOLS),
    "llama_builtin_tools": base([
        SYSTEM, USER1,
        {"role": "assistant", "tool_calls": [{"function": {"name": "brave_search",
                                                            "arguments": {"query": "weather"}}}]},
        {"role": "ipython", "content": {"result": "sunny", "temp": 21.5}}],
        builtin_tools=["brave_search", "code_interpreter"], tools=TOOLS),
    "reasoning": base([
        SYSTEM, USER1, {"role": "assistant", "content": "<think>\nplan it\n</think>\n\nAnswer."},
        USER2, {"role": "assistant", "content": "",
                "tool_calls": [{"function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "content": "cold"}, {"role": "tool", "content": "windy"}],
        enable_thinking=False, tools=TOOLS),
    "empty": base([], add_generation_prompt=True),
}

TEMPLATE_FILES = sorted(p.name for p in TEMPLATES.glob("*.jinja"))


def test_fixtures_present():
    names = set(TEMPLATE_FILES)
    for want in ("llama-3.1-8b-instruct.jinja", "llama-3.2-3b-instruct.jinja",
                 "qwen2.5-7b-instruct.jinja", "qwen3-0.6b.jinja",
                 "mistral-7b-instruct-v0.3.jinja", "gemma-3-it.jinja"):
        assert want in names


@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
@pytest.mark.parametrize("template_file", TEMPLATE_FILES)
def test_real_templates_match_jinja2(template_file, conversation, tmp_path):
    template = (TEMPLATES / template_file).read_text(encoding="utf-8")
    check(template, CONVERSATIONS[conversation], tmp_path)


def test_test_tokenizer_templates_match_jinja2(tmp_path):
    import sys
    sys.path.insert(0, str(ROOT / "tests" / "python"))
    import make_test_tokenizer as mtt
    for template in (mtt.LLAMA3_CHAT_TEMPLATE, mtt.MISTRAL_CHAT_TEMPLATE):
        for name in ("user_only", "multi_turn_no_prompt", "bad_alternation", "system_user"):
            check(template, CONVERSATIONS[name], tmp_path)


SNIPPETS = [
    "{{ -2**2 }} {{ not 1 == 2 }} {{ 'a' if false }}|{{ [1,2,3][-1] }} {{ 'abc' in 'xabcx' }}",
    "{{ 1 + 2 ~ 3 * 2 }}",
    "{{ 'x' ~ [1] }} {{ -3 // 2 }} {{ 7.5 // 2 }} {{ 7 % -3 }} {{ 5.5 % 2 }} {{ 10 / 4 }}",
    "{{ x|default('d') }} {{ none|default('d') }} {{ none|default('d', true) }} {{ ''|d('e', true) }}",
    "{{ [1,2]|first }} {{ 'abc'|last }} {{ 'abc'|list }} {{ {'a':1}|items|list }} {{ 2.5|int }}"
    " {{ '3'|int }} {{ 'x'|int }} {{ '2.5'|float }}",
    "{{ [{'a':1},{'a':2}]|map(attribute='a')|list }} {{ ['a','B']|map('upper')|join }}"
    " {{ [1,1,2]|unique|list }} {{ [1,2]|reverse|list }} {{ 'abc'|reverse }}",
    "{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\nb'|indent(first=true, width='> ') }}",
    "{{ 3.14159|round(2) }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.45|round(1, 'floor') }} {{ 7|round }}",
    "{{ range(3)|list }} {{ range(1,5,2)|list }} {{ dict(a=1, b='x') }} {{ 'a-b-c'.split('-', 1) }}"
    " {{ 'aXbX'.replace('X','y') }} {{ '  a '.rstrip() }} {{ 'xxaxx'.strip('x') }}",
    "{{ 'hello'.startswith(('he','x')) }} {{ 'Hello'.upper() }} {{ 'a b'.title() }}"
    " {{ '{} and {}'.format(1, 'b') }} {{ ' a  b '.split() }}",
    "{% for i in range(3) %}{{ loop.index }}{{ loop.revindex }}{{ loop.first }}{{ loop.last }}"
    "{{ loop.length }}{% if loop.previtem is defined %}p{{loop.previtem}}{% endif %},{% endfor %}",
    "{% for i in [] %}x{% else %}empty{% endfor %} {% for i in [1,2,3,4] if i is even %}{{ i }}"
    "{{ loop.index }}{{ loop.length }}{% endfor %}",
    "{% for i in [1,2,3] %}{% if i == 2 %}{% continue %}{% endif %}{{ i }}{% if i == 3 %}"
    "{% break %}{% endif %}{% endfor %}",
    "{% macro f(a, b='B') %}[{{ a }}{{ b }}]{% endmacro %}{{ f(1) }}{{ f(2, b=3) }}"
    "{% set y %}in{{ 1 }}{% endset %}{{ y }}",
    "{{ {'b':1,'a':2}|tojson }} {{ [1,2]|length }} {{ 'héllo'|length }} {{ {'a':1}|count }}"
    " {{ [3,1]|max }} {{ [1,2]|sum }}",
    "{{ [{'r':'u'},{'r':'a'},{'r':'u'}]|selectattr('r','equalto','u')|list|length }}"
    " {{ [{'r':'u'},{'x':1}]|selectattr('r')|list }} {{ [{'r':'u'},{'r':'a'}]|rejectattr('r', '==', 'u')|list }}"
    " {{ [1,2,3,4]|select('odd')|list }} {{ [1,2,3]|reject('gt', 1)|list }}",
    "{{ [{'n':'b'},{'n':'a'}]|sort(attribute='n')|map(attribute='n')|join(',') }} {{ ['b','A','c']|sort }}"
    " {{ [3,1,2]|sort(reverse=true) }}",
    "{{ 'ab' * 2 }} {{ [1] + [2] }} {{ 1 + 2.0 }} {{ true + 1 }} {{ 'a' ~ true }} {{ 0.1 * 3 }}"
    " {{ 1e300 * 1e10 }}",
    "{{ x is string }} {{ x is mapping }} {{ x is iterable }} {{ x is sequence }} {{ 1 is number }}"
    " {{ true is boolean }} {{ 1 is integer }} {{ 1.0 is float }} {{ none is none }} {{ x is defined }}"
    " {{ y is undefined }} {{ {'a':1} is mapping }} {{ 3 is divisibleby 3 }} {{ 'a' is lower }}",
    "{{ (1,2)|list }} {{ {'a':1}.items()|list }} {{ {'a':1}.keys()|list }} {{ {'a': 1}['a'] }}"
    " {{ {'a':1}.a }} {{ 'abc'.x is defined }} {{ (1, 'a') }}",
    "{{ 'a' == 'a' and 'b' or 'c' }} {{ none or 0 }} {{ [] and 1 }}",
    "{% set a, b = [1, 2] %}{{ a }}{{ b }}{% set ns = namespace(x=1, y=[]) %}"
    "{% set ns.x = ns.x + 1 %}{{ ns.x }}{{ ns }}",
    "{{ [1,2,3][1:] }} {{ [1,2,3][:-1] }} {{ [1,2,3][::2] }} {{ 'hello'[-3:] }} {{ [1,2,3][5:] }}"
    " {{ 'abc'[1] }} {{ 'abc'[::-1] }} {{ 'héllo'[1:3] }} {{ [1,2,3,4,5][-1:0:-2] }}",
    "{{ 'a' < 'b' }} {{ [1] == [1] }} {{ {'a':1} == {'a':1} }} {{ 1 == 1.0 }} {{ 1 == true }}",
    "{{ x['missing'] }}|{{ x.missing }}|{{ x[0] }}",
    "{{ [1.5, 1e-7, 123456789012345678.0, -0.0, 100.0, 0.0001, 1e16, 1e15] }}",
    "{% if x %}a{% elif y %}b{% else %}c{% endif %}",
    "{{ 'abc' | replace('b', 'X') }} {{ 'aaa'|replace('a','b',2) }}|{{ [1,[2,3]]|tojson }}"
    " {{ 'é\"\\\\\\t'|tojson }} {{ 1.0|tojson }} {{ none|tojson }} {{ {'a': [1, {}], 'b': []}|tojson(indent=2) }}",
    "a\n  {% if true %}\n  b\n  {% endif %}\nc\n",
    "  {# comment #}\n{%- if true -%}  x  {%- endif %}\n  {{ 'y' }}  \n{%+ if true %}z{% endif +%}\n",
    "{% for m in msgs %}\n  {{ m }}\n{% endfor %}\n\n",
    "{{ raise_exception('boom ' ~ 1) }}",
    "{{ 'a' + 1 }}",
    "{{ 'hello world'|title }} {{ 'hELLO'|capitalize }} {{ '  x  '|trim }} {{ 'ab'|upper }}",
    "{{ 'single \\' and \"double\"' }} {{ \"tab\\there\" }} {{ '\\u00e9\\x41' }}",
    "{% set d = {'k': 'v', 'n': none, 't': true, 'f': 1.25} %}{{ d }}{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}",
    "{{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='content')|join(' | ') }}",
    "{% for m in msgs %}{{ loop.cycle('odd', 'even') }}{% endfor %}",
    "{% set ns = namespace(found=false) %}{% for m in msgs %}{% if m.role == 'user' %}"
    "{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}",
    "{{ msgs[0].content.strip() }} {{ msgs|length }} {{ msgs|last|tojson }}",
]


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_feature_snippets_match_jinja2(index, tmp_path):
    ctx = {"x": "s", "msgs": [{"role": "user", "content": " hi "},
                              {"role": "assistant", "content": "yo"},
                              {"role": "user", "content": "bye"}]}
    check(SNIPPETS[index], ctx, tmp_path)


EDGE_SNIPPETS = (Path(__file__).with_name("chat_template_snippets.txt")
                 .read_text(encoding="utf-8").split("\n====\n"))


@pytest.mark.parametrize("index", range(len(EDGE_SNIPPETS)))
def test_edge_snippets_match_jinja2(index, tmp_path):
    ctx = {"x": "s", "n": None, "f": 2.5, "i": -3, "e": [], "u": "héllo wörld straße",
           "d": {"b": 1, "a": [1, 2]},
           "msgs": [{"role": "user", "content": " hi "}, {"role": "assistant", "content": "yo"}]}
    check(EDGE_SNIPPETS[index], ctx, tmp_path)


def test_strftime_now(tmp_path):
    template = ("{%- if strftime_now is defined %}{{ strftime_now('%d %b %Y') }}"
                "{%- else %}26 Jul 2024{%- endif %}")
    kind, text = ours(template, {}, tmp_path)
    assert kind == "ok"
    assert text in {datetime.now().strftime("%d %b %Y")}
