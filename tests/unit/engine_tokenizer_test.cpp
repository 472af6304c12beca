// Tokenizer unit tests: UTF-8 helpers, streaming detokenization, added-token splitting, BOS
// rules of tokenizer.json/tokenizer_config.json, the SentencePiece factory, and load errors.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "engine/tokenizer/vocab_tokenizers.h"

namespace xq {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8, CompletePrefixHoldsBackOnlyAnUnfinishedLastCharacter) {
  EXPECT_EQ(complete_utf8_prefix(""), 0u);
  EXPECT_EQ(complete_utf8_prefix("abc"), 3u);
  EXPECT_EQ(complete_utf8_prefix("a\xC3"), 1u);             // é cut after its lead byte
  EXPECT_EQ(complete_utf8_prefix("a\xC3\xA9"), 3u);         // é complete
  EXPECT_EQ(complete_utf8_prefix("x\xF0\x9F\x99"), 1u);     // 🙂 missing its last byte
  EXPECT_EQ(complete_utf8_prefix("\xF0\x9F\x99\x82"), 4u);  // 🙂 complete
  EXPECT_EQ(complete_utf8_prefix("\xE6\x97"), 0u);          // 日 missing a byte
  // Bytes that can never complete a character are not held.
  EXPECT_EQ(complete_utf8_prefix("a\x80"), 2u);
  EXPECT_EQ(complete_utf8_prefix("a\xFF"), 2u);
  EXPECT_EQ(complete_utf8_prefix("a\xE0\x80"), 3u);  // E0 needs A0..BF next
  EXPECT_EQ(complete_utf8_prefix("a\xC3\x28"), 3u);
}

TEST(Utf8, SanitizeReplacesEachMaximalInvalidSubpart) {
  EXPECT_EQ(sanitize_utf8("caf\xC3\xA9"), "caf\xC3\xA9");
  EXPECT_EQ(sanitize_utf8("a\xF0\x9F\x99"), "a" + kFffd);           // one truncated sequence
  EXPECT_EQ(sanitize_utf8("\xC0\xAF"), kFffd + kFffd);              // overlong: two bad bytes
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80"), kFffd + kFffd + kFffd);  // surrogate
  EXPECT_EQ(sanitize_utf8("\xE2\x82x"), kFffd + "x");
  EXPECT_TRUE(utf8::is_valid(sanitize_utf8("\xFF\xFE\x80 ok \xF4\x90\x80\x80")));
}

TEST(AddedTokens, LeftmostLongestMatchWins) {
  AddedTokenMatcher m;
  m.add({.id = 1, .content = "<|a|>"});
  m.add({.id = 2, .content = "<|a|>b"});
  m.add({.id = 3, .content = "|a"});
  auto segs = m.split("x<|a|>b<|a|>|a");
  ASSERT_EQ(segs.size(), 4u);
  EXPECT_EQ(segs[0].token_id, -1);
  EXPECT_EQ(segs[0].text, "x");
  EXPECT_EQ(segs[1].token_id, 2);
  EXPECT_EQ(segs[2].token_id, 1);
  EXPECT_EQ(segs[3].token_id, 3);
  EXPECT_EQ(segs[3].offset, 12u);
}

TEST(AddedTokens, StripAndSingleWordRules) {
  AddedTokenMatcher m;
  m.add({.id = 7, .content = "<mask>", .lstrip = true, .rstrip = true});
  m.add({.id = 8, .content = "cat", .single_word = true});
  auto segs = m.split("a  <mask>  b");
  ASSERT_EQ(segs.size(), 3u);
  EXPECT_EQ(segs[0].text, "a");
  EXPECT_EQ(segs[1].text, "  <mask>  ");
  EXPECT_EQ(segs[2].text, "b");
  auto words = m.split("concat cat cats");
  ASSERT_EQ(words.size(), 3u);
  EXPECT_EQ(words[0].text, "concat ");
  EXPECT_EQ(words[1].token_id, 8);
  EXPECT_EQ(words[2].text, " cats");
}

// A tiny SentencePiece vocabulary: specials, the 256 byte tokens, and a few merges whose
// scores spell out the merge order of "hello world".
struct SpmVocab {
  std::vector<std::string> pieces{"<unk>", "<s>", "</s>"};
  std::vector<float> scores{0, 0, 0};
  std::vector<int> types{kTokenUnknown, kTokenControl, kTokenControl};
  int add(const std::string& p, float score, int type = kTokenNormal) {
    pieces.push_back(p);
    scores.push_back(score);
    types.push_back(type);
    return static_cast<int>(pieces.size()) - 1;
  }
  SpmVocab() {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      add(name, 0, kTokenByte);
    }
    for (const char* c : {"\xE2\x96\x81", "h", "e", "l", "o", "w", "r", "d"}) add(c, -100);
  }
  std::unique_ptr<Tokenizer> make(bool add_bos = true) const {
    return make_spm_tokenizer(pieces, scores, types, 1, {2}, add_bos, true, "{{ messages }}");
  }
};

TEST(SpmFactory, MergesByScoreAndFallsBackToBytes) {
  SpmVocab v;
  v.add("ll", -1);
  v.add("\xE2\x96\x81h", -2);
  v.add("\xE2\x96\x81he", -3);
  v.add("llo", -4);
  int hello = v.add("\xE2\x96\x81hello", -5);
  int w = v.add("\xE2\x96\x81w", -6);
  auto tok = v.make();
  EXPECT_EQ(tok->encode("hello", false), std::vector<int>{hello});
  // "world" only gets as far as "▁w" + characters; é has no token and becomes its two bytes.
  auto ids = tok->encode("hello world\xC3\xA9", true);
  std::vector<int> expect{1,
                          hello,
                          w,
                          *tok->token_id("o"),
                          *tok->token_id("r"),
                          *tok->token_id("l"),
                          *tok->token_id("d"),
                          *tok->token_id("<0xC3>"),
                          *tok->token_id("<0xA9>")};
  EXPECT_EQ(ids, expect);
  EXPECT_EQ(tok->encode("llo", false),
            (std::vector<int>{*tok->token_id("\xE2\x96\x81"), *tok->token_id("llo")}));
  EXPECT_EQ(tok->decode(ids, true), "hello world\xC3\xA9");
  EXPECT_EQ(tok->decode(ids, false), "<s> hello world\xC3\xA9");
  EXPECT_EQ(tok->token_bytes(hello), " hello");
  EXPECT_EQ(tok->token_bytes(*tok->token_id("<0xC3>")), "\xC3");
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_ids(), std::vector<int>{2});
  EXPECT_TRUE(tok->is_special(1));
  EXPECT_FALSE(tok->is_special(hello));
  EXPECT_EQ(tok->chat_template(), "{{ messages }}");
}

TEST(SpmFactory, ScoresDecideBetweenCompetingMerges) {
  // "hel": "he" and "el" compete for the middle "e"; the better score takes it.
  for (bool he_first : {true, false}) {
    SpmVocab v;
    int he = v.add("he", he_first ? -1 : -2);
    int el = v.add("el", he_first ? -2 : -1);
    auto tok = v.make(false);
    auto ids = tok->encode("hel", false);  // "▁" "h" "e" "l"
    ASSERT_EQ(ids.size(), 3u);
    if (he_first)
      EXPECT_EQ(ids[1], he);
    else
      EXPECT_EQ(ids[2], el);
  }
}

TEST(SpmFactory, ControlTokensInTextBecomeTheirIds) {
  SpmVocab v;
  auto tok = v.make(false);
  auto ids = tok->encode("he</s>lo", false);
  int s = *tok->token_id("\xE2\x96\x81");
  EXPECT_EQ(ids, (std::vector<int>{s, *tok->token_id("h"), *tok->token_id("e"), 2, s,
                                   *tok->token_id("l"), *tok->token_id("o")}));
  EXPECT_EQ(tok->decode(ids, true), "he lo");
}

TEST(SpmFactory, InvalidUtf8InputIsEncodedAsReplacementCharacters) {
  SpmVocab v;
  auto tok = v.make(false);
  auto ids = tok->encode("h\xFF", false);
  ASSERT_EQ(ids.size(), 5u);  // "▁" "h" and the three bytes of U+FFFD
  EXPECT_EQ(tok->decode(ids, false), "h" + kFffd);
}

TEST(IncrementalDetokenizer, NeverEmitsHalfACharacter) {
  SpmVocab v;
  auto tok = v.make(false);
  std::string text =
      "h\xF0\x9F\x99\x82"
      "e\xE6\x97\xA5\xC3\xA9";  // h🙂e日é
  auto ids = tok->encode(text, false);
  IncrementalDetokenizer detok(*tok, true);
  std::string streamed;
  int empty_deltas = 0;
  for (int id : ids) {
    std::string delta = detok.push(id);
    EXPECT_TRUE(utf8::is_valid(delta)) << "delta after id " << id;
    empty_deltas += delta.empty();
    streamed += delta;
  }
  streamed += detok.flush();
  EXPECT_EQ(streamed, " " + text);     // the stream keeps the dummy-prefix space
  EXPECT_GE(empty_deltas, 3 + 2 + 1);  // held bytes of 🙂, 日 and é
}

TEST(IncrementalDetokenizer, FlushReplacesATruncatedTail) {
  SpmVocab v;
  auto tok = v.make(false);
  IncrementalDetokenizer detok(*tok, false);
  EXPECT_EQ(detok.push(*tok->token_id("h")), "h");
  EXPECT_EQ(detok.push(*tok->token_id("<0xE6>")), "");
  EXPECT_EQ(detok.push(*tok->token_id("<0x97>")), "");
  EXPECT_EQ(detok.flush(), kFffd);
  EXPECT_EQ(detok.push(*tok->token_id("<0x80>")), kFffd);  // a stray continuation byte
  EXPECT_EQ(detok.push(1), "<s>");
  IncrementalDetokenizer skipping(*tok, true);
  EXPECT_EQ(skipping.push(1), "");
}

// A byte-level tokenizer.json with every byte as a token and a couple of merges.
json byte_level_tokenizer_json() {
  json vocab = json::object();
  int next = 0;
  for (char c = 0x21; c <= 0x7E; ++c) vocab[std::string(1, c)] = next++;
  vocab["\xC4\xA0"] = next++;  // "Ġ", the byte-level space
  vocab["hi"] = next++;
  vocab["th"] = next++;
  // Both spellings of a merge: ["a", "b"] (newer files) and "a b".
  json merges = json::array({json::array({"h", "i"}), "t h"});
  return {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}},
      {"added_tokens",
       {{{"id", next}, {"content", "<bos>"}, {"special", true}},
        {{"id", next + 1}, {"content", "<eos>"}, {"special", true}}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}}};
}

fs::path write_dir(const std::string& name, const json& tokenizer, const json* config) {
  fs::path dir = fs::temp_directory_path() / ("xq_tok_test_" + name);
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tokenizer.dump();
  fs::remove(dir / "tokenizer_config.json");
  if (config) std::ofstream(dir / "tokenizer_config.json") << config->dump();
  return dir;
}

TEST(HfLoader, BosFromTemplateProcessing) {
  json tj = byte_level_tokenizer_json();
  int bos = tj["added_tokens"][0]["id"];
  tj["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"special_tokens", {{"<bos>", {{"id", "<bos>"}, {"ids", {bos}}, {"tokens", {"<bos>"}}}}}}};
  json cfg = {{"bos_token", "<bos>"},
              {"eos_token", {{"content", "<eos>"}}},
              {"chat_template", json::array({{{"name", "tool_use"}, {"template", "T"}},
                                             {{"name", "default"}, {"template", "D"}}})}};
  auto tok = load_hf_tokenizer(write_dir("template", tj, &cfg));
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(tok->bos_id(), bos);
  EXPECT_EQ(tok->eos_ids(), std::vector<int>{bos + 1});
  EXPECT_EQ(tok->chat_template(), "D");
  int hi = *tok->token_id("hi");
  EXPECT_EQ(tok->encode("hi", true), (std::vector<int>{bos, hi}));
  EXPECT_EQ(tok->encode("hi", false), std::vector<int>{hi});
  EXPECT_EQ(tok->encode("<bos>hi<eos>", false), (std::vector<int>{bos, hi, bos + 1}));
  auto ids = tok->encode("<bos>hi there", true);
  EXPECT_EQ(ids, (std::vector<int>{bos, bos, hi, *tok->token_id("\xC4\xA0"), *tok->token_id("th"),
                                   *tok->token_id("e"), *tok->token_id("r"), *tok->token_id("e")}));
  EXPECT_EQ(tok->decode(ids, true), "hi there");
  EXPECT_EQ(tok->decode(ids, false), "<bos><bos>hi there");
}

TEST(HfLoader, BosFromConfigWhenThereIsNoPostProcessor) {
  json tj = byte_level_tokenizer_json();
  int bos = tj["added_tokens"][0]["id"];
  json with = {{"bos_token", "<bos>"}, {"add_bos_token", true}};
  auto tok = load_hf_tokenizer(write_dir("cfg_bos", tj, &with));
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(tok->encode("hi", true).front(), bos);
  json without = {{"bos_token", "<bos>"}};
  auto plain = load_hf_tokenizer(write_dir("cfg_nobos", tj, &without));
  EXPECT_FALSE(plain->add_bos());
  EXPECT_EQ(plain->bos_id(), bos);
  EXPECT_EQ(plain->encode("hi", true), plain->encode("hi", false));
  EXPECT_FALSE(plain->chat_template().has_value());
}

// Found by the hf_tokenizer fuzzer: an id of 8.9e47 was converted to int (undefined behaviour),
// and an integer past int's range was silently truncated to another token's id.
TEST(HfLoader, IdsThatAreNotTokenIdsAreNamed) {
  const std::vector<json> bad = {8.888e47, 4294967296 + 5, -1, 1.5, "3", json::array()};
  for (const json& id : bad) {
    json tj = byte_level_tokenizer_json();
    tj["model"]["vocab"]["hi"] = id;
    try {
      load_hf_tokenizer(write_dir("bad_vocab_id", tj, nullptr));
      ADD_FAILURE() << "vocab id " << id.dump() << " was accepted";
    } catch (const TokenizerError& e) {
      EXPECT_NE(std::string(e.what()).find("tokenizer.json: the id of vocab entry \"hi\" is " +
                                           id.dump() + ", not a token id"),
                std::string::npos)
          << e.what();
    }
    tj = byte_level_tokenizer_json();
    tj["added_tokens"][0]["id"] = id;
    EXPECT_THROW(load_hf_tokenizer(write_dir("bad_added_id", tj, nullptr)), TokenizerError);
  }
}

TEST(HfLoader, BrokenFilesFailWithTheirName) {
  fs::path dir = fs::temp_directory_path() / "xq_tok_test_broken";
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << R"({"model": {"type": "BPE", "vocab": {"a": 0}, )";
  try {
    load_hf_tokenizer(dir);
    FAIL() << "truncated JSON was accepted";
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
  json tj = byte_level_tokenizer_json();
  tj["model"]["type"] = "WordPiece";
  EXPECT_THROW(load_hf_tokenizer(write_dir("wordpiece", tj, nullptr)), TokenizerError);
  tj = byte_level_tokenizer_json();
  tj["model"]["merges"] = json::array({"h zz"});
  EXPECT_THROW(load_hf_tokenizer(write_dir("badmerge", tj, nullptr)), TokenizerError);
  tj = byte_level_tokenizer_json();
  tj["pre_tokenizer"] = {{"type", "Split"},
                         {"pattern", {{"Regex", "(unclosed"}}},
                         {"behavior", "Isolated"},
                         {"invert", false}};
  EXPECT_THROW(load_hf_tokenizer(write_dir("badregex", tj, nullptr)), TokenizerError);
  EXPECT_THROW(load_hf_tokenizer(dir / "missing"), TokenizerError);
  auto tok = load_hf_tokenizer(write_dir("ok", byte_level_tokenizer_json(), nullptr));
  EXPECT_THROW(tok->token_bytes(tok->vocab_size()), TokenizerError);
}

}  // namespace
}  // namespace xq
