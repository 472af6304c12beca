// The tokenizer.ggml.pre table: every name resolves to regexes ICU accepts, the flags llama.cpp
// ties to a few names, and unknown names stay unknown. (tests/python/test_gguf_pre_tokenizers.py
// checks each name's splits against HF tokenizers.)
#include <gtest/gtest.h>

#include <set>
#include <sstream>
#include <string>

#include "engine/model/gguf_pre_tokenizers.h"
#include "engine/tokenizer/icu_regex.h"

namespace xq {
namespace {

std::vector<std::string> all_names() {
  std::vector<std::string> names;
  std::stringstream ss(gguf_pre_tokenizer_names());
  for (std::string n; std::getline(ss, n, ',');) names.push_back(n.substr(n[0] == ' ' ? 1 : 0));
  return names;
}

TEST(GgufPreTokenizers, EveryNameHasRegexesIcuCompiles) {
  const std::vector<std::string> names = all_names();
  EXPECT_GT(names.size(), 60u);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size());
  for (const std::string& n : names) {
    auto p = gguf_pre_tokenizer(n);
    ASSERT_TRUE(p) << n;
    EXPECT_FALSE(p->regexes.empty()) << n;
    for (const std::string& r : p->regexes) EXPECT_NO_THROW(IcuRegex{r}) << n << ": " << r;
  }
}

TEST(GgufPreTokenizers, SmollmSplitsDigitsThenGpt2) {
  auto p = gguf_pre_tokenizer("smollm");
  ASSERT_TRUE(p);
  ASSERT_EQ(p->regexes.size(), 2u);
  EXPECT_EQ(IcuRegex(p->regexes[0]).find_all("ab 123").size(), 3u);
  EXPECT_FALSE(p->ignore_merges);
  EXPECT_FALSE(p->add_bos);
}

TEST(GgufPreTokenizers, FlagsFollowLlamaCpp) {
  EXPECT_TRUE(gguf_pre_tokenizer("llama-bpe")->ignore_merges);
  EXPECT_TRUE(gguf_pre_tokenizer("llama-bpe")->add_bos);
  EXPECT_TRUE(gguf_pre_tokenizer("tekken")->add_bos);
  EXPECT_FALSE(gguf_pre_tokenizer("chatglm-bpe")->has_bos);
  EXPECT_TRUE(gguf_pre_tokenizer("qwen2")->nfc);
  EXPECT_FALSE(gguf_pre_tokenizer("stablelm2")->nfc);
}

TEST(GgufPreTokenizers, UnknownNamesAreRefused) {
  EXPECT_FALSE(gguf_pre_tokenizer("no-such-pre"));
  EXPECT_FALSE(gguf_pre_tokenizer(""));
  EXPECT_FALSE(gguf_pre_tokenizer("Qwen2"));
}

}  // namespace
}  // namespace xq
