// xquant-server's flags: defaults, values, environment fallbacks, and the refusals (exit 2).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>
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

TEST(ServerConfig, ConnectionAndQueueLimitsFromFlagsOrEnvironment) {
  const ServerConfig d = *parse({"--model", "m"}).config;
  EXPECT_EQ(d.max_connections, 0);  // from the descriptor limit
  EXPECT_EQ(d.max_queued_requests, 0);
  setenv("XQ_MAX_CONNECTIONS", "500", 1);
  setenv("XQ_MAX_QUEUED_REQUESTS", "64", 1);
  const ServerConfig e = *parse({"--model", "m"}).config;
  EXPECT_EQ(e.max_connections, 500);
  EXPECT_EQ(e.max_queued_requests, 64);
  const ServerConfig f =
      *parse({"--model", "m", "--max-connections", "9", "--max-queued-requests", "3"}).config;
  EXPECT_EQ(f.max_connections, 9);
  EXPECT_EQ(f.max_queued_requests, 3);
  unsetenv("XQ_MAX_CONNECTIONS");
  unsetenv("XQ_MAX_QUEUED_REQUESTS");
}

TEST(ServerConfig, EngineStallTimeoutFromFlagEnvironmentOrFile) {
  EXPECT_DOUBLE_EQ(parse({"--model", "m"}).config->engine_stall_timeout_s, 120.0);
  EXPECT_DOUBLE_EQ(
      parse({"--model", "m", "--engine-stall-timeout", "0.5"}).config->engine_stall_timeout_s, 0.5);
  setenv("XQ_ENGINE_STALL_TIMEOUT", "30", 1);
  EXPECT_DOUBLE_EQ(parse({"--model", "m"}).config->engine_stall_timeout_s, 30.0);
  unsetenv("XQ_ENGINE_STALL_TIMEOUT");
  const std::string path = ::testing::TempDir() + "/xq_stall.yaml";
  FILE* f = std::fopen(path.c_str(), "wb");
  std::fputs("model: m\nengine-stall-timeout: 7.5\n", f);
  std::fclose(f);
  EXPECT_DOUBLE_EQ(parse({"--config", path}).config->engine_stall_timeout_s, 7.5);
  for (const char* bad : {"0", "-1", "soon"}) {
    ServerArgs a = parse({"--model", "m", "--engine-stall-timeout", bad});
    EXPECT_EQ(a.exit_code, 2) << bad;
    EXPECT_NE(a.message.find("--engine-stall-timeout"), std::string::npos) << a.message;
  }
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
        Refused{{"--model", "m", "--max-connections", "-1"}, "--max-connections"},
        Refused{{"--model", "m", "--max-queued-requests", "many"}, "--max-queued-requests"},
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

// --config FILE (YAML or JSON), XQ_* variables and flags: flags > environment > file > defaults.
class ConfigFile : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = ::testing::TempDir() + "/" + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    std::fputs(text.c_str(), f);
    std::fclose(f);
    return path;
  }
  void TearDown() override {
    for (const char* v :
         {"XQ_PORT", "XQ_MAX_NUM_SEQS", "XQ_CONFIG", "XQ_SERVED_MODEL_NAME", "XQ_CACHE_BIT"})
      unsetenv(v);
  }
};

TEST_F(ConfigFile, FlagsBeatEnvironmentBeatsFileBeatsDefaults) {
  const std::string yaml = write("xq_config.yaml",
                                 "model: /from/file\nport: 9100\nmax_num_seqs: 8\n"
                                 "max-num-batched-tokens: 512\nallowed-origins:\n"
                                 "  - https://a.example\n  - https://b.example\n");
  setenv("XQ_PORT", "9200", 1);
  setenv("XQ_MAX_NUM_SEQS", "16", 1);
  ServerArgs a = parse({"--config", yaml, "--max-num-seqs", "32"});
  ASSERT_TRUE(a.config) << a.message;
  EXPECT_EQ(a.config->model, "/from/file");          // file only
  EXPECT_EQ(a.config->port, 9200);                   // environment over file
  EXPECT_EQ(a.config->max_num_seqs, 32);             // flag over both
  EXPECT_EQ(a.config->max_num_batched_tokens, 512);  // file over default
  EXPECT_EQ(a.config->host, "127.0.0.1");            // default
  EXPECT_EQ(a.config->allowed_origins,
            (std::vector<std::string>{"https://a.example", "https://b.example"}));
}

TEST_F(ConfigFile, JsonFromTheEnvironmentAndEveryFlagHasAVariable) {
  const std::string json = write("xq_config.json", R"({"model": "/m", "cache": "xquant",
                                                       "cache-bits": 3, "port": 9300})");
  setenv("XQ_CONFIG", json.c_str(), 1);
  setenv("XQ_SERVED_MODEL_NAME", "named", 1);
  ServerArgs a = parse({});
  ASSERT_TRUE(a.config) << a.message;
  EXPECT_EQ(a.config->cache, "xquant");
  EXPECT_EQ(a.config->cache_bits, 3);
  EXPECT_EQ(a.config->port, 9300);
  EXPECT_EQ(a.config->served_model_name, "named");
  ServerArgs help = parse({"--help"});
  for (const char* var : {"XQ_MAX_NUM_BATCHED_TOKENS", "XQ_CACHE_BITS", "XQ_SHUTDOWN_GRACE",
                          "XQ_LOG_FORMAT", "XQ_CONFIG", "XQ_ALLOWED_ORIGINS"})
    EXPECT_NE(help.message.find(var), std::string::npos) << var;
  EXPECT_NE(help.message.find("flags > environment > config file > defaults"), std::string::npos);
}

TEST_F(ConfigFile, UnknownVariablesAreWarnedAbout) {
  setenv("XQ_CACHE_BIT", "3", 1);  // a typo of XQ_CACHE_BITS
  ServerArgs a = parse({"--model", "/m"});
  ASSERT_TRUE(a.config) << a.message;
  // Others may be set by whoever runs the tests (XQ_BUILD_DIR); none names a real setting.
  int typo = 0;
  for (const std::string& w : a.warnings) {
    typo += w.find("XQ_CACHE_BIT is set but is not a setting") != std::string::npos;
    EXPECT_EQ(w.find("XQ_CACHE_BITS"), std::string::npos) << w;
  }
  EXPECT_EQ(typo, 1);
}

TEST_F(ConfigFile, BadFilesAreRefusedNamingTheFileAndSetting) {
  for (const auto& [name, text, mention] :
       {std::tuple{"xq_unknown.yaml", "model: /m\nmax-num-sequences: 4\n", "max-num-sequences"},
        std::tuple{"xq_badvalue.yaml", "model: /m\nport: eighty\n", "--port"},
        std::tuple{"xq_nested.yaml", "model: /m\ncache: {format: x}\n", "cache"},
        std::tuple{"xq_list.yaml", "- model\n- port\n", "mapping"},
        std::tuple{"xq_syntax.json", "{\"model\": \"/m\",", "xq_syntax.json"}}) {
    ServerArgs a = parse({"--config", write(name, text)});
    EXPECT_FALSE(a.config) << name;
    EXPECT_EQ(a.exit_code, 2) << name;
    EXPECT_NE(a.message.find(mention), std::string::npos) << name << ": " << a.message;
  }
  ServerArgs missing = parse({"--config", "/nonexistent/xq.yaml"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.message.find("cannot read"), std::string::npos) << missing.message;
}

TEST_F(ConfigFile, PrintConfigIsAConfigFileOfTheResolvedValues) {
  setenv("XQ_PORT", "9400", 1);
  ServerArgs a =
      parse({"--model", "/m", "--cache", "kivi", "--api-key", "secret", "--print-config"});
  ASSERT_FALSE(a.config);
  ASSERT_EQ(a.exit_code, 0) << a.message;
  EXPECT_NE(a.message.find("\"port\": 9400"), std::string::npos) << a.message;
  EXPECT_NE(a.message.find("\"cache\": \"kivi\""), std::string::npos) << a.message;
  EXPECT_EQ(a.message.find("secret"), std::string::npos) << "the API key is masked";
  unsetenv("XQ_PORT");
  const std::string printed = write("xq_printed.json", a.message);
  ServerArgs again = parse({"--config", printed, "--api-key", "secret"});
  ASSERT_TRUE(again.config) << again.message;
  EXPECT_EQ(again.config->port, 9400);
  EXPECT_EQ(again.config->cache, "kivi");
  EXPECT_EQ(again.config->cache_bits, 4);
  EXPECT_EQ(again.config->api_key, "secret");
}

}  // namespace
}  // namespace xq
