// Tests for parse_hf_config / load_hf_config against config.json files as published on the Hub.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "config/model_config.h"

namespace xq {
namespace {

using nlohmann::json;

// The published config.json of meta-llama/Llama-3.1-8B-Instruct.
const char* kLlama31_8B = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

// Qwen/Qwen2.5-0.5B-Instruct.
const char* kQwen25_05B = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 21,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

// The shape of Qwen/Qwen3-0.6B's config.json: head_dim written out (not hidden / heads), no
// biases, q/k norms (in the weights, not the config).
const char* kQwen3_06B = R"({
  "architectures": ["Qwen3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 1024,
  "intermediate_size": 3072,
  "max_position_embeddings": 40960,
  "max_window_layers": 28,
  "model_type": "qwen3",
  "num_attention_heads": 16,
  "num_hidden_layers": 28,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000,
  "sliding_window": null,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

// mistralai/Mistral-7B-Instruct-v0.3.
const char* kMistral7B_v03 = R"({
  "architectures": ["MistralForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 32768,
  "model_type": "mistral",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_theta": 1000000.0,
  "sliding_window": null,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.42.0.dev0",
  "use_cache": true,
  "vocab_size": 32768
})";

// google/gemma-3-270m.
const char* kGemma3_270m = R"({
  "_sliding_window_pattern": 6,
  "architectures": ["Gemma3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "attn_logit_softcapping": null,
  "bos_token_id": 2,
  "eos_token_id": 1,
  "final_logit_softcapping": null,
  "head_dim": 256,
  "hidden_activation": "gelu_pytorch_tanh",
  "hidden_size": 640,
  "initializer_range": 0.02,
  "intermediate_size": 2048,
  "layer_types": [
    "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
    "sliding_attention", "full_attention", "sliding_attention", "sliding_attention",
    "sliding_attention", "sliding_attention", "sliding_attention", "full_attention",
    "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
    "sliding_attention", "full_attention"
  ],
  "max_position_embeddings": 32768,
  "model_type": "gemma3_text",
  "num_attention_heads": 4,
  "num_hidden_layers": 18,
  "num_key_value_heads": 1,
  "pad_token_id": 0,
  "query_pre_attn_scalar": 256,
  "rms_norm_eps": 1e-06,
  "rope_local_base_freq": 10000.0,
  "rope_scaling": null,
  "rope_theta": 1000000.0,
  "sliding_window": 512,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.55.0.dev0",
  "use_bidirectional_attention": false,
  "use_cache": true,
  "vocab_size": 262144
})";

// google/gemma-3-4b-it: the text part nests under text_config and leans on defaults.
const char* kGemma3_4b = R"({
  "architectures": ["Gemma3ForConditionalGeneration"],
  "boi_token_index": 255999,
  "eoi_token_index": 256000,
  "eos_token_id": [1, 106],
  "image_token_index": 262144,
  "initializer_range": 0.02,
  "mm_tokens_per_image": 256,
  "model_type": "gemma3",
  "text_config": {
    "hidden_size": 2560,
    "intermediate_size": 10240,
    "model_type": "gemma3_text",
    "num_hidden_layers": 34,
    "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    "sliding_window": 1024
  },
  "torch_dtype": "bfloat16",
  "transformers_version": "4.50.0.dev0",
  "vision_config": {"hidden_size": 1152, "model_type": "siglip_vision_model"}
})";

// A minimal valid Llama config to mutate in error tests.
json small_llama() {
  return json{{"model_type", "llama"},    {"vocab_size", 100},      {"hidden_size", 64},
              {"intermediate_size", 128}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
              {"num_key_value_heads", 2}, {"eos_token_id", 2},      {"bos_token_id", 1}};
}

// Runs f and returns the ConfigError message; fails the test when nothing is thrown.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError";
  return "";
}

TEST(ParseHfConfig, Llama31_8B) {
  ModelConfig c = parse_hf_config(json::parse(kLlama31_8B));
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.q_dim(), 4096);
  EXPECT_EQ(c.kv_dim(), 1024);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 8.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope_scaling.original_max_position, 8192);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_TRUE(c.layer_is_sliding.empty());
  EXPECT_FALSE(c.is_sliding(0));
}

TEST(ParseHfConfig, Llama2Defaults) {
  // Llama 2 era configs: no rope_theta, no num_key_value_heads, no tie_word_embeddings.
  json j = small_llama();
  j.erase("num_key_value_heads");
  j["rope_scaling"] = nullptr;
  ModelConfig c = parse_hf_config(j);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_EQ(c.rope_scaling.type, "none");
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});
}

TEST(ParseHfConfig, LinearRopeScalingWithLegacyTypeKey) {
  json j = small_llama();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  ModelConfig c = parse_hf_config(j);
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 2.0f);
}

TEST(ParseHfConfig, ExplicitHeadDimWins) {
  json j = small_llama();
  j["head_dim"] = 32;
  EXPECT_EQ(parse_hf_config(j).head_dim, 32);
}

TEST(ParseHfConfig, Qwen25_05B) {
  ModelConfig c = parse_hf_config(json::parse(kQwen25_05B));
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_TRUE(c.attention_bias);  // implied by model_type, not written in the file
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.hidden_size, 896);
  EXPECT_EQ(c.num_heads, 14);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.num_layers, 24);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
  EXPECT_EQ(c.sliding_window, 0);  // use_sliding_window is false
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{151645});
  EXPECT_EQ(c.bos_token_id, 151643);
}

TEST(ParseHfConfig, Qwen3_06B) {
  ModelConfig c = parse_hf_config(json::parse(kQwen3_06B));
  EXPECT_EQ(c.model_type, "qwen3");
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.hidden_size, 1024);
  EXPECT_EQ(c.num_heads, 16);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);  // not 1024 / 16
  EXPECT_EQ(c.q_dim(), 2048);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.max_position_embeddings, 40960);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{151645});
}

TEST(ParseHfConfig, Mistral7B_v03) {
  ModelConfig c = parse_hf_config(json::parse(kMistral7B_v03));
  EXPECT_EQ(c.model_type, "mistral");
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.vocab_size, 32768);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.sliding_window, 0);  // null
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});

  json v01 = json::parse(kMistral7B_v03);
  v01["sliding_window"] = 4096;  // Mistral-7B-v0.1 windows every layer, as transformers does
  ModelConfig c1 = parse_hf_config(v01);
  EXPECT_EQ(c1.sliding_window, 4096);
  EXPECT_EQ(c1.layer_is_sliding, std::vector<bool>(32, true));
  EXPECT_TRUE(c.layer_is_sliding.empty());
}

TEST(ParseHfConfig, QwenWindowsOnlyWithUseSlidingWindow) {
  json q = json::parse(kQwen25_05B);
  q["use_sliding_window"] = true;
  q["max_window_layers"] = 20;
  ModelConfig c = parse_hf_config(q);
  EXPECT_EQ(c.sliding_window, 32768);
  std::vector<bool> want(24, false);
  for (int i = 20; i < 24; ++i) want[i] = true;  // the layers from max_window_layers on
  EXPECT_EQ(c.layer_is_sliding, want);
  q["layer_types"] = std::vector<std::string>(24, "sliding_attention");  // listed wins
  EXPECT_EQ(parse_hf_config(q).layer_is_sliding, std::vector<bool>(24, true));
  json llama = json::parse(kQwen25_05B);
  llama["model_type"] = "llama";  // Llama has no window, whatever the file says
  EXPECT_TRUE(parse_hf_config(llama).layer_is_sliding.empty());
}

TEST(ParseHfConfig, Gemma3_270m) {
  ModelConfig c = parse_hf_config(json::parse(kGemma3_270m));
  EXPECT_EQ(c.model_type, "gemma3_text");
  EXPECT_EQ(c.arch, Arch::Gemma3);
  EXPECT_EQ(c.vocab_size, 262144);
  EXPECT_EQ(c.hidden_size, 640);
  EXPECT_EQ(c.intermediate_size, 2048);
  EXPECT_EQ(c.num_layers, 18);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 256);  // not hidden/heads (160)
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_FLOAT_EQ(c.query_pre_attn_scalar, 256.0f);
  EXPECT_EQ(c.sliding_window, 512);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
  EXPECT_FLOAT_EQ(c.rope_local_theta, 1e4f);
  EXPECT_EQ(c.rope_scaling.type, "none");
  EXPECT_FLOAT_EQ(c.final_logit_softcap, 0.0f);
  EXPECT_FLOAT_EQ(c.attn_logit_softcap, 0.0f);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 2);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{1});
  ASSERT_EQ(c.layer_is_sliding.size(), 18u);
  for (int i = 0; i < 18; ++i) EXPECT_EQ(c.is_sliding(i), i % 6 != 5) << "layer " << i;
}

TEST(ParseHfConfig, Gemma3PatternWithoutLayerTypes) {
  json j = json::parse(kGemma3_270m);
  j.erase("layer_types");
  j.erase("_sliding_window_pattern");
  j["sliding_window_pattern"] = 3;
  j["num_hidden_layers"] = 7;
  j["final_logit_softcapping"] = 30.0;
  j["attn_logit_softcapping"] = 50.0;
  ModelConfig c = parse_hf_config(j);
  EXPECT_EQ(c.layer_is_sliding, (std::vector<bool>{true, true, false, true, true, false, true}));
  EXPECT_FLOAT_EQ(c.final_logit_softcap, 30.0f);
  EXPECT_FLOAT_EQ(c.attn_logit_softcap, 50.0f);
}

TEST(ParseHfConfig, Gemma3NestedTextConfigUsesDefaults) {
  ModelConfig c = parse_hf_config(json::parse(kGemma3_4b));
  EXPECT_EQ(c.model_type, "gemma3");
  EXPECT_EQ(c.arch, Arch::Gemma3);
  EXPECT_EQ(c.hidden_size, 2560);
  EXPECT_EQ(c.intermediate_size, 10240);
  EXPECT_EQ(c.num_layers, 34);
  EXPECT_EQ(c.vocab_size, 262208);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.sliding_window, 1024);
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 8.0f);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{1, 106}));
  EXPECT_EQ(c.bos_token_id, 2);
  ASSERT_EQ(c.layer_is_sliding.size(), 34u);
  EXPECT_TRUE(c.is_sliding(0));
  EXPECT_FALSE(c.is_sliding(5));
  EXPECT_FALSE(c.is_sliding(29));
  EXPECT_TRUE(c.is_sliding(33));
}

TEST(ParseHfConfig, UnknownModelTypeListsSupported) {
  json j = small_llama();
  j["model_type"] = "phi3";
  std::string msg = error_of([&] { parse_hf_config(j); });
  EXPECT_NE(msg.find("phi3"), std::string::npos) << msg;
  for (const char* t : {"llama", "mistral", "qwen2", "qwen3", "gemma3_text", "gemma3"}) {
    EXPECT_NE(msg.find(t), std::string::npos) << msg;
  }
}

TEST(ParseHfConfig, FieldErrorsNameTheField) {
  struct Case {
    const char* field;
    json value;  // null: erase the field
  };
  const Case cases[] = {
      {"hidden_size", nullptr},       {"hidden_size", 0},
      {"hidden_size", "big"},         {"vocab_size", -5},
      {"num_hidden_layers", 1.5},     {"num_key_value_heads", 3},
      {"num_attention_heads", 0},     {"intermediate_size", nullptr},
      {"rms_norm_eps", "tiny"},       {"rope_theta", -1.0},
      {"tie_word_embeddings", 1},     {"eos_token_id", 100},
      {"bos_token_id", -7},           {"head_dim", 15},
      {"max_position_embeddings", 0}, {"eos_token_id", json::array({1, "x"})},
  };
  for (const auto& tc : cases) {
    json j = small_llama();
    if (tc.value.is_null()) {
      j.erase(tc.field);
    } else {
      j[tc.field] = tc.value;
    }
    std::string msg = error_of([&] { parse_hf_config(j); });
    EXPECT_NE(msg.find(tc.field), std::string::npos)
        << tc.field << "=" << tc.value.dump() << " -> " << msg;
  }
}

TEST(ParseHfConfig, RopeScalingErrors) {
  json j = small_llama();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  std::string msg = error_of([&] { parse_hf_config(j); });
  EXPECT_NE(msg.find("rope_scaling.rope_type"), std::string::npos) << msg;
  EXPECT_NE(msg.find("yarn"), std::string::npos) << msg;

  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  msg = error_of([&] { parse_hf_config(j); });
  EXPECT_NE(msg.find("rope_scaling.low_freq_factor"), std::string::npos) << msg;
}

TEST(ParseHfConfig, GemmaLayerTypesErrors) {
  json j = json::parse(kGemma3_270m);
  j["layer_types"][3] = "local";
  std::string msg = error_of([&] { parse_hf_config(j); });
  EXPECT_NE(msg.find("layer_types"), std::string::npos) << msg;
  EXPECT_NE(msg.find("local"), std::string::npos) << msg;

  j = json::parse(kGemma3_270m);
  j["num_hidden_layers"] = 12;
  msg = error_of([&] { parse_hf_config(j); });
  EXPECT_NE(msg.find("layer_types"), std::string::npos) << msg;

  j = json::parse(kGemma3_4b);
  j.erase("text_config");
  msg = error_of([&] { parse_hf_config(j); });
  EXPECT_NE(msg.find("text_config"), std::string::npos) << msg;

  j = json::parse(kGemma3_4b);
  j["text_config"]["num_key_value_heads"] = 3;
  msg = error_of([&] { parse_hf_config(j); });
  EXPECT_NE(msg.find("num_key_value_heads"), std::string::npos) << msg;
}

// The model_config fuzzer's first finding: a num_hidden_layers of 2e9 built a 2e9-entry
// per-layer table (Gemma 3's pattern, Qwen2's window layers) for seconds before anything else.
TEST(ParseHfConfig, LayerCountBeyondTheLimitIsRefusedFirst) {
  json gemma = json::parse(kGemma3_270m);
  gemma.erase("layer_types");
  gemma["num_hidden_layers"] = 2000000000;
  json qwen = small_llama();
  qwen["model_type"] = "qwen2";
  qwen["use_sliding_window"] = true;
  qwen["sliding_window"] = 8;
  qwen["num_hidden_layers"] = ModelConfig::kMaxLayers + 1;
  for (const json& j : {gemma, qwen}) {
    const std::string msg = error_of([&] { parse_hf_config(j); });
    EXPECT_NE(msg.find("num_hidden_layers"), std::string::npos) << msg;
    EXPECT_NE(msg.find("out of range (1 to 4096)"), std::string::npos) << msg;
  }
  qwen["num_hidden_layers"] = ModelConfig::kMaxLayers;
  EXPECT_EQ(parse_hf_config(qwen).layer_is_sliding.size(), size_t{4096});
}

TEST(ParseHfConfig, NestedFieldErrorsCarryThePath) {
  json j = json::parse(kGemma3_4b);
  j["text_config"]["hidden_size"] = "wide";
  std::string msg = error_of([&] { parse_hf_config(j); });
  EXPECT_NE(msg.find("text_config.hidden_size"), std::string::npos) << msg;
}

TEST(ParseHfConfig, MissingModelTypeAndNonObject) {
  json j = small_llama();
  j.erase("model_type");
  EXPECT_NE(error_of([&] { parse_hf_config(j); }).find("model_type"), std::string::npos);
  EXPECT_THROW(parse_hf_config(json::array({1, 2})), ConfigError);
}

// A fresh directory under the test temp dir, removed at the end of the test.
class ConfigDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("xq_config_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  std::filesystem::path dir_;
};

TEST_F(ConfigDir, LoadsAndMergesGenerationConfigEos) {
  write("config.json", kLlama31_8B);
  write("generation_config.json",
        R"({"bos_token_id": 128000, "do_sample": true,
            "eos_token_id": [128009, 128001, 128256], "temperature": 0.6})");
  // 128256 is outside the vocabulary: the merge must still validate.
  std::string msg = error_of([&] { load_hf_config(dir_); });
  EXPECT_NE(msg.find("generation_config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("eos_token_id"), std::string::npos) << msg;

  write("generation_config.json", R"({"eos_token_id": [128009, 128001, 128000]})");
  ModelConfig c = load_hf_config(dir_);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009, 128000}));
}

TEST_F(ConfigDir, GenerationConfigIsOptional) {
  write("config.json", kQwen25_05B);
  ModelConfig c = load_hf_config(dir_);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{151645});

  write("generation_config.json", R"({"eos_token_id": [151645, 151643]})");
  EXPECT_EQ(load_hf_config(dir_).eos_token_ids, (std::vector<int>{151645, 151643}));
}

TEST_F(ConfigDir, MissingConfigNamesTheDir) {
  std::string msg = error_of([&] { load_hf_config(dir_); });
  EXPECT_NE(msg.find("config.json not found in " + dir_.string()), std::string::npos) << msg;
}

TEST_F(ConfigDir, InvalidJsonNamesTheFileAndPosition) {
  write("config.json", "{\"model_type\": \"llama\",\n \"hidden_size\": 4096,,}");
  std::string msg = error_of([&] { load_hf_config(dir_); });
  EXPECT_NE(msg.find("config.json: invalid JSON at byte"), std::string::npos) << msg;
}

// As the safetensors fuzzer found for its header: 1e400 is nlohmann's out_of_range, not a
// parse_error, and must still name the file.
TEST_F(ConfigDir, HugeNumberNamesTheFile) {
  write("config.json", R"({"model_type": "llama", "rope_theta": 1e400})");
  std::string msg = error_of([&] { load_hf_config(dir_); });
  EXPECT_NE(msg.find("config.json: invalid JSON"), std::string::npos) << msg;
}

TEST_F(ConfigDir, ParseErrorsNameTheFile) {
  json j = json::parse(kMistral7B_v03);
  j["num_attention_heads"] = 0;
  write("config.json", j.dump());
  std::string msg = error_of([&] { load_hf_config(dir_); });
  EXPECT_NE(msg.find((dir_ / "config.json").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("num_attention_heads"), std::string::npos) << msg;
}

}  // namespace
}  // namespace xq
