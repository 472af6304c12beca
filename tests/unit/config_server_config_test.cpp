// xquant-server's flags: defaults, values, environment fallbacks, and the refusals (exit 2).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "config/server_config.h"

namespace xq {
namespace {

ServerArgs parse(std::vector<std::string> args) {
  args.insert(args.begin(), "xquant-server");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  return parse_server_args(static_cast<int>(argv.size()), argv.data());
}

TEST(ServerConfig, DefaultsWithOnlyTheModel) {
  ServerArgs a = parse({"--model", "/m"});
  ASSERT_TRUE(a.config) << a.message;
  const ServerConfig& c = *a.config;
  EXPECT_EQ(c.model, "/m");
  EXPECT_EQ(c.host, "127.0.0.1");
  EXPECT_EQ(c.port, 8000);
  EXPECT_EQ(c.cache, "fp16");
  EXPECT_EQ(c.cache_bits, 16);
  EXPECT_EQ(c.xquant_latent_k, "auto");
  EXPECT_EQ(c.max_num_seqs, 64);
  EXPECT_EQ(c.max_num_batched_tokens, 2048);
  EXPECT_FALSE(c.max_model_len.has_value());
  EXPECT_EQ(c.max_body_bytes, size_t{8} << 20);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.stream_interval, 1);
}

TEST(ServerConfig, EveryFlagIsRead) {
  ServerArgs a = parse({"--model",
                        "/m",
                        "--host",
                        "0.0.0.0",
                        "--port",
                        "9001",
                        "--device",
                        "cpu",
                        "--served-model-name",
                        "llama",
                        "--cache",
                        "xquant",
                        "--cache-bits",
                        "3",
                        "--cache-group-size",
                        "64",
                        "--xquant-latent",
                        "off",
                        "--xquant-latent-k",
                        "token",
                        "--max-num-seqs",
                        "8",
                        "--max-num-batched-tokens",
                        "512",
                        "--max-model-len",
                        "1024",
                        "--api-key",
                        "k",
                        "--seed",
                        "7",
                        "--threads",
                        "2",
                        "--log-level",
                        "debug",
                        "--max-body-bytes",
                        "1MiB",
                        "--cache-memory",
                        "512M",
                        "--stream-interval",
                        "4",
                        "--gpu-memory-utilization",
                        "0.75",
                        "--gpu-cache-memory",
                        "2GiB"});
  ASSERT_TRUE(a.config) << a.message;
  const ServerConfig& c = *a.config;
  EXPECT_EQ(c.host, "0.0.0.0");
  EXPECT_EQ(c.port, 9001);
  EXPECT_EQ(c.device, "cpu");
  EXPECT_EQ(c.served_model_name, "llama");
  EXPECT_EQ(c.cache, "xquant");
  EXPECT_EQ(c.cache_bits, 3);
  EXPECT_EQ(c.cache_group_size, 64);
  EXPECT_EQ(c.xquant_latent, "off");
  EXPECT_EQ(c.xquant_latent_k, "token");
  EXPECT_EQ(c.max_num_seqs, 8);
  EXPECT_EQ(c.max_num_batched_tokens, 512);
  EXPECT_EQ(c.max_model_len, 1024);
  EXPECT_EQ(c.api_key, "k");
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.threads, 2);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.max_body_bytes, size_t{1} << 20);
  EXPECT_EQ(c.cache_memory_bytes, size_t{512} << 20);
  EXPECT_EQ(c.stream_interval, 4);
  EXPECT_DOUBLE_EQ(c.gpu_memory_utilization, 0.75);
  EXPECT_EQ(c.gpu_cache_memory_bytes, size_t{2} << 30);
}

TEST(ServerConfig, QuantizedCachesGetADefaultBitWidth) {
  EXPECT_EQ(parse({"--model", "m", "--cache", "kivi"}).config->cache_bits, 4);
  EXPECT_EQ(parse({"--model", "m", "--cache", "xquant-cl"}).config->cache_bits, 2);
  EXPECT_EQ(parse({"--model", "m", "--cache", "xquant-cl-ch"}).config->cache_bits, 2);
  EXPECT_EQ(parse({"--model", "m", "--cache", "xquant-ch"}).config->cache_bits, 4);
}

// The paper's Table 4 settings, and the refusals of each where it has nothing to change.
TEST(ServerConfig, PaperSettingsFlags) {
  ServerArgs a = parse({"--model", "m", "--cache", "xquant-cl", "--cache-group-size", "128",
                        "--cache-high-precision-layers", "3", "--cache-high-precision-bits", "4",
                        "--xquant-cl-base-bits", "8", "--cache-fp16-window", "0",
                        "--xquant-cl-base", "latent"});
  ASSERT_TRUE(a.config) << a.message;
  EXPECT_EQ(a.config->cache_group_size, 128);
  EXPECT_EQ(a.config->cache_high_precision_layers, 3);
  EXPECT_EQ(a.config->cache_high_precision_bits, 4);
  EXPECT_EQ(a.config->xquant_cl_base_bits, 8);
  EXPECT_FALSE(a.config->cache_fp16_window);
  EXPECT_EQ(a.config->xquant_cl_base, "latent");
  ServerArgs d = parse({"--model", "m"});
  EXPECT_EQ(d.config->cache_high_precision_layers, 0);
  EXPECT_EQ(d.config->xquant_cl_base_bits, 0);
  EXPECT_EQ(d.config->xquant_latent_k_fp16_channels, 0);
  EXPECT_TRUE(d.config->cache_fp16_window);
  ServerArgs k =
      parse({"--model", "m", "--cache", "xquant", "--xquant-latent-k-fp16-channels", "1"});
  ASSERT_TRUE(k.config) << k.message;
  EXPECT_EQ(k.config->xquant_latent_k_fp16_channels, 1);
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"--cache", "kivi", "--cache-high-precision-layers", "-1"}, "--cache-high-precision-layers"},
      {{"--cache-high-precision-layers", "3"}, "fp16"},
      {{"--cache", "kivi", "--cache-high-precision-bits", "5"}, "--cache-high-precision-bits"},
      {{"--cache", "kivi", "--xquant-latent-k-fp16-channels", "1"}, "--xquant-latent-k-fp16"},
      {{"--cache", "xquant", "--xquant-latent", "off", "--xquant-latent-k-fp16-channels", "1"},
       "GQA latent"},
      {{"--cache", "xquant", "--xquant-cl-base-bits", "4"}, "xquant-cl formats only"},
      {{"--cache", "xquant-cl", "--xquant-cl-base-bits", "5"}, "--xquant-cl-base-bits"},
      {{"--cache", "kivi", "--xquant-cl-base", "latent"}, "--xquant-cl-base latent"},
      {{"--cache", "xquant-cl", "--xquant-cl-base", "y"}, "--xquant-cl-base"},
      {{"--cache", "kivi", "--cache-fp16-window", "maybe"}, "--cache-fp16-window"}};
  for (auto [args, text] : bad) {
    args.insert(args.begin(), {"--model", "m"});
    ServerArgs r = parse(args);
    EXPECT_FALSE(r.config) << text;
    EXPECT_EQ(r.exit_code, 2) << text;
    EXPECT_NE(r.message.find(text), std::string::npos) << r.message;
  }
}

TEST(ServerConfig, EnvironmentFillsInAndFlagsWin) {
  setenv("XQ_API_KEY", "from-env", 1);
  setenv("XQ_MODEL", "/env/model", 1);
  ServerArgs a = parse({});
  ASSERT_TRUE(a.config) << a.message;
  EXPECT_EQ(a.config->api_key, "from-env");
  EXPECT_EQ(a.config->model, "/env/model");
  EXPECT_EQ(parse({"--api-key", "flag"}).config->api_key, "flag");
  unsetenv("XQ_API_KEY");
  unsetenv("XQ_MODEL");
}

TEST(ServerConfig, StreamIntervalFromTheEnvironment) {
  setenv("XQ_STREAM_INTERVAL", "8", 1);
  EXPECT_EQ(parse({"--model", "m"}).config->stream_interval, 8);
  EXPECT_EQ(parse({"--model", "m", "--stream-interval", "2"}).config->stream_interval, 2);
  setenv("XQ_STREAM_INTERVAL", "0", 1);
  ServerArgs bad = parse({"--model", "m"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.message.find("--stream-interval"), std::string::npos) << bad.message;
  unsetenv("XQ_STREAM_INTERVAL");
}

TEST(ServerConfig, HelpExitsZeroWithTheFlags) {
  ServerArgs a = parse({"--help"});
  EXPECT_FALSE(a.config);
  EXPECT_EQ(a.exit_code, 0);
  EXPECT_NE(a.message.find("--max-num-batched-tokens"), std::string::npos);
}

struct Refused {
  std::vector<std::string> args;
  const char* names;  // what the message must mention
};

class BadFlags : public ::testing::TestWithParam<Refused> {};

TEST_P(BadFlags, ExitTwoNamingTheFlag) {
  ServerArgs a = parse(GetParam().args);
  EXPECT_FALSE(a.config);
  EXPECT_EQ(a.exit_code, 2);
  EXPECT_NE(a.message.find(GetParam().names), std::string::npos) << a.message;
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadFlags,
    ::testing::Values(
        Refused{{}, "--model"}, Refused{{"--model", "m", "--port", "70000"}, "--port"},
        Refused{{"--model", "m", "--port", "eighty"}, "--port"},
        Refused{{"--model", "m", "--cache", "fp8"}, "--cache"},
        Refused{{"--model", "m", "--device", "tpu"}, "--device"},
        Refused{{"--model", "m", "--cache-bits", "4"}, "--cache-bits"},
        Refused{{"--model", "m", "--cache", "kivi", "--cache-bits", "1"}, "--cache-bits"},
        Refused{{"--model", "m", "--cache-group-size", "30"}, "--cache-group-size"},
        Refused{{"--model", "m", "--max-num-seqs", "0"}, "--max-num-seqs"},
        Refused{{"--model", "m", "--max-num-seqs", "64", "--max-num-batched-tokens", "32"},
                "--max-num-batched-tokens"},
        Refused{{"--model", "m", "--max-body-bytes", "lots"}, "--max-body-bytes"},
        Refused{{"--model", "m", "--log-level", "loud"}, "--log-level"},
        Refused{{"--model", "m", "--xquant-latent", "maybe"}, "--xquant-latent"},
        Refused{{"--model", "m", "--xquant-latent-k", "row"}, "--xquant-latent-k"},
        Refused{{"--model", "m", "--stream-interval", "0"}, "--stream-interval"},
        Refused{{"--model", "m", "--stream-interval", "-4"}, "--stream-interval"},
        Refused{{"--model", "m", "--stream-interval", "four"}, "--stream-interval"},
        Refused{{"--model", "m", "--gpu-memory-utilization", "0"}, "--gpu-memory-utilization"},
        Refused{{"--model", "m", "--gpu-memory-utilization", "1.5"}, "--gpu-memory-utilization"},
        Refused{{"--model", "m", "--gpu-cache-memory", "lots"}, "--gpu-cache-memory"},
        Refused{{"--model", "m", "--bogus"}, "--bogus"}));

TEST(ByteSize, UnitsAndRefusals) {
  EXPECT_EQ(parse_byte_size("1024"), 1024u);
  EXPECT_EQ(parse_byte_size("8MiB"), size_t{8} << 20);
  EXPECT_EQ(parse_byte_size("8m"), size_t{8} << 20);
  EXPECT_EQ(parse_byte_size("2KB"), 2000u);
  EXPECT_EQ(parse_byte_size("1GiB"), size_t{1} << 30);
  EXPECT_THROW(parse_byte_size(""), std::invalid_argument);
  EXPECT_THROW(parse_byte_size("MiB"), std::invalid_argument);
  EXPECT_THROW(parse_byte_size("5 parsecs"), std::invalid_argument);
  EXPECT_THROW(parse_byte_size("-5"), std::invalid_argument);
}

TEST(ServerConfig, ChatTemplateFromFileOrInline) {
  const std::string path = ::testing::TempDir() + "/xq_chat_template.jinja";
  {
    FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("{{ messages[0].content }}", f);
    std::fclose(f);
  }
  ServerArgs a = parse({"--model", "/m", "--chat-template", path});
  ASSERT_TRUE(a.config) << a.message;
  EXPECT_EQ(a.config->chat_template, "{{ messages[0].content }}");
  ServerArgs b =
      parse({"--model", "/m", "--chat-template", "{% for m in messages %}x{% endfor %}"});
  ASSERT_TRUE(b.config) << b.message;
  EXPECT_EQ(b.config->chat_template, "{% for m in messages %}x{% endfor %}");
  EXPECT_FALSE(parse({"--model", "/m"}).config->chat_template.has_value());
  ServerArgs c = parse({"--model", "/m", "--chat-template", "/no/such/template.jinja"});
  EXPECT_FALSE(c.config);
  EXPECT_EQ(c.exit_code, 2);
  EXPECT_NE(c.message.find("--chat-template"), std::string::npos) << c.message;
}

TEST(ServerConfig, AllowedOrigins) {
  EXPECT_TRUE(parse({"--model", "/m"}).config->allowed_origins.empty());
  ServerArgs a =
      parse({"--model", "/m", "--allowed-origins", "http://a.example,https://b.example"});
  ASSERT_TRUE(a.config) << a.message;
  EXPECT_EQ(a.config->allowed_origins,
            (std::vector<std::string>{"http://a.example", "https://b.example"}));
  EXPECT_EQ(parse({"--model", "/m", "--allowed-origins", "*"}).config->allowed_origins,
            std::vector<std::string>{"*"});
  for (const char* bad : {"a.example", "http://a.example/", "ftp://x"}) {
    ServerArgs b = parse({"--model", "/m", "--allowed-origins", bad});
    EXPECT_FALSE(b.config) << bad;
    EXPECT_EQ(b.exit_code, 2);
    EXPECT_NE(b.message.find("--allowed-origins"), std::string::npos) << b.message;
  }
}

}  // namespace
}  // namespace xq
