// The split regexes of tokenizer.json come from the model's files: a pattern that backtracks
// without bound ends in a TokenizerError naming it within a CPU-time budget that grows with the
// text, and the budget and ICU's backtracking stack leave room for any text a real pattern
// meets (a run of 1M spaces included).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "engine/tokenizer/icu_regex.h"
#include "engine/tokenizer/tokenizer.h"

namespace xq {
namespace {

// Llama 3's split pattern, as its tokenizer.json writes it.
const std::string kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The message of the TokenizerError that find_all throws, and how long it took to come.
std::string refusal(const std::string& pattern, const std::string& text, double& seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    IcuRegex(pattern).find_all(text);
  } catch (const TokenizerError& e) {
    seconds = seconds_since(t0);
    return e.what();
  }
  ADD_FAILURE() << "no TokenizerError for " << pattern;
  return "";
}

TEST(TokenizerRegexBounds, CatastrophicBacktrackingStopsWithAnErrorNamingThePattern) {
  // 2^40 ways to split the a's before failing at the b: hours unbounded.
  double seconds = 0;
  const std::string msg = refusal("(a+)+$", std::string(40, 'a') + "b", seconds);
  EXPECT_NE(msg.find("s of CPU on a text of 41 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(a+)+$"), std::string::npos) << msg;
  EXPECT_LT(seconds, 5.0);
}

TEST(TokenizerRegexBounds, ManyQuickFindsThatEachScanTheRestStopToo) {
  // Each match looks ahead to the end of the text: 200k finds of up to 200k characters, each
  // too short for ICU's progress callback, about a minute unbounded.
  double seconds = 0;
  const std::string text = std::string(200000, 'a') + "x";
  const std::string msg = refusal("a(?=[^x]*x)", text, seconds);
  EXPECT_NE(msg.find("a(?=[^x]*x)"), std::string::npos) << msg;
  EXPECT_LT(seconds, 10.0);
}

TEST(TokenizerRegexBounds, LongRunsOfSpacesSplitAsHuggingFaceSplitsThem) {
  // ICU's default 8 MB backtracking stack overflowed from ~300k spaces in a row.
  const std::string text = std::string(1000000, ' ') + "x";
  const auto m = IcuRegex(kLlama3).find_all(text);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0], std::make_pair(size_t{0}, size_t{999999}));    // \s+(?!\S) leaves one space
  EXPECT_EQ(m[1], std::make_pair(size_t{999999}, text.size()));  // " x"
}

TEST(TokenizerRegexBounds, OrdinaryTextIsFarInsideTheBudget) {
  std::string text;
  while (text.size() < (4u << 20))
    text += "The quick brown fox, 1234 jumps; over the lazy dog's back!\n\t日本語 ";
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_GT(IcuRegex(kLlama3).find_all(text).size(), 1000000u);
  // The budget for 4 MiB is ~17 s of CPU; the split takes under a second here.
  EXPECT_LT(seconds_since(t0) * 5, IcuRegex::cpu_budget_seconds(text.size()));
}

TEST(TokenizerRegexBounds, AModelsPathologicalSplitPatternFailsEncodeNotTheProcess) {
  std::ifstream in(std::string(XQ_SOURCE_DIR) + "/tests/fuzz/corpus/hf_tokenizer/gpt2.json");
  std::stringstream text;
  text << in.rdbuf();
  const std::string both = text.str();
  nlohmann::json j = nlohmann::json::parse(both.substr(0, both.find("\n----\n")));
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"},
                           {"pattern", {{"Regex", "(a|aa)+$"}}},
                           {"behavior", "Isolated"},
                           {"invert", false}},
                          {{"type", "ByteLevel"},
                           {"add_prefix_space", false},
                           {"trim_offsets", true},
                           {"use_regex", false}}}}};
  const auto dir = std::filesystem::path(::testing::TempDir()) / "xq_regex_bounds";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << j.dump();
  const std::unique_ptr<Tokenizer> tok = load_hf_tokenizer(dir);
  EXPECT_FALSE(tok->encode("aab", false).empty());
  try {
    tok->encode(std::string(60, 'a') + "b", false);
    ADD_FAILURE() << "no TokenizerError";
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("(a|aa)+$"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace xq
