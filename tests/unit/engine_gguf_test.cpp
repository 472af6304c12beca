// GGUF container parsing on hand-built files: every value type, custom alignment, and every
// truncation or corruption being a WeightError naming the file (never a crash or a bad read).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/weights/dequant.h"
#include "engine/weights/gguf_file.h"
#include "engine/weights/gguf_weights.h"

namespace xq {
namespace {

// Little-endian byte builder for GGUF files.
struct Bytes {
  std::vector<uint8_t> b;
  template <typename T>
  Bytes& put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& key(const std::string& k, GgufType t) {
    str(k);
    return put<uint32_t>(static_cast<uint32_t>(t));
  }
  void pad_to(size_t align) {
    while (b.size() % align) b.push_back(0);
  }
};

uint16_t f16(float x) {  // exact for the small values the tests use
  if (x == 0.0f) return 0;
  int e;
  float m = std::frexp(std::fabs(x), &e);  // x = m * 2^e, m in [0.5, 1)
  uint16_t mant = static_cast<uint16_t>(std::lround((m * 2 - 1) * 1024));
  return static_cast<uint16_t>((x < 0 ? 0x8000 : 0) | ((e - 1 + 15) << 10) | mant);
}

// A file with 2 tensors (F32 [2 x 4] at 0, Q8_0 [32] at 64) and 64-byte alignment.
struct Built {
  std::vector<uint8_t> bytes;
  size_t data_start = 0;
};

Built build_file() {
  Bytes h;
  h.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(2).put<uint64_t>(9);
  h.key("general.alignment", GgufType::UInt32).put<uint32_t>(64);
  h.key("general.architecture", GgufType::String).str("llama");
  h.key("t.i8", GgufType::Int8).put<int8_t>(-7);
  h.key("t.u64", GgufType::UInt64).put<uint64_t>(~0ull);
  h.key("t.f64", GgufType::Float64).put<double>(0.125);
  h.key("t.bool", GgufType::Bool).put<uint8_t>(1);
  h.key("t.strs", GgufType::Array).put<uint32_t>(8).put<uint64_t>(3).str("x").str("").str("zz");
  h.key("t.f32s", GgufType::Array)
      .put<uint32_t>(6)
      .put<uint64_t>(2)
      .put<float>(1.5f)
      .put<float>(-2);
  h.key("t.nested", GgufType::Array).put<uint32_t>(9).put<uint64_t>(2);
  h.put<uint32_t>(4).put<uint64_t>(1).put<uint32_t>(7);                   // [7]
  h.put<uint32_t>(4).put<uint64_t>(2).put<uint32_t>(8).put<uint32_t>(9);  // [8, 9]
  h.str("a").put<uint32_t>(2).put<uint64_t>(4).put<uint64_t>(2).put<uint32_t>(0).put<uint64_t>(0);
  h.str("b").put<uint32_t>(1).put<uint64_t>(32).put<uint32_t>(8).put<uint64_t>(64);
  h.pad_to(64);
  Built out;
  out.data_start = h.b.size();
  for (int i = 0; i < 8; ++i) h.put<float>(static_cast<float>(i) - 3.5f);
  h.pad_to(64);
  h.put<uint16_t>(f16(0.5f));
  for (int i = 0; i < 32; ++i) h.put<int8_t>(static_cast<int8_t>(i - 16));
  out.bytes = h.b;
  return out;
}

class GgufFileTest : public ::testing::Test {
 protected:
  std::filesystem::path write(const std::vector<uint8_t>& bytes, const std::string& name) {
    // One folder per test: ctest runs the tests of this file as parallel processes.
    auto dir = std::filesystem::temp_directory_path() / "xq_gguf_test" /
               ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::create_directories(dir);
    auto p = dir / name;
    std::ofstream(p, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    return p;
  }
  // Expects GgufFile(bytes) to throw a WeightError naming the file and containing `what`.
  void expect_error(const std::vector<uint8_t>& bytes, const std::string& what) {
    auto p = write(bytes, "bad.gguf");
    try {
      GgufFile f(p);
      FAIL() << "no error; expected: " << what;
    } catch (const WeightError& e) {
      EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  }
};

TEST_F(GgufFileTest, ReadsEveryValueKindAndTensor) {
  Built b = build_file();
  GgufFile f(write(b.bytes, "ok.gguf"));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.require_string("general.architecture"), "llama");
  EXPECT_EQ(f.require_int("t.i8"), -7);
  EXPECT_EQ(f.find("t.u64")->u, ~0ull);
  EXPECT_THROW(f.get_int("t.u64"), WeightError);  // does not fit an int64
  EXPECT_EQ(f.require_float("t.f64"), 0.125);
  EXPECT_EQ(f.get_bool("t.bool"), true);
  EXPECT_EQ(f.find("t.strs")->strings, (std::vector<std::string>{"x", "", "zz"}));
  EXPECT_EQ(f.find("t.f32s")->floats, (std::vector<double>{1.5, -2}));
  const GgufValue* nested = f.find("t.nested");
  ASSERT_EQ(nested->items.size(), 2u);
  EXPECT_EQ(nested->items[1].ints, (std::vector<int64_t>{8, 9}));
  EXPECT_THROW(f.get_string("t.i8"), WeightError);
  EXPECT_FALSE(f.get_int("absent").has_value());

  ASSERT_EQ(f.tensors().size(), 2u);
  const GgufTensor* a = f.find_tensor("a");
  EXPECT_EQ(a->hf_shape(), (std::vector<int64_t>{2, 4}));
  float first;
  std::memcpy(&first, a->data, 4);
  EXPECT_EQ(first, -3.5f);
  const GgufTensor* q = f.find_tensor("b");
  EXPECT_EQ(q->nbytes, 34u);
  EXPECT_EQ(q->data - a->data, 64);

  TensorInfo t{"b", DType::Q8_0, q->hf_shape(), q->data, q->nbytes, "ok.gguf"};
  std::vector<float> out(32);
  ASSERT_TRUE(dequantize_quantized(t, out.data()));
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], 0.5f * (i - 16));
}

TEST_F(GgufFileTest, EveryTruncationIsAnError) {
  Built b = build_file();
  const size_t data_end = b.bytes.size();
  for (size_t n = 0; n < data_end; ++n) {
    std::vector<uint8_t> cut(b.bytes.begin(), b.bytes.begin() + static_cast<long>(n));
    auto p = write(cut, "cut.gguf");
    try {
      GgufFile f(p);
      ADD_FAILURE() << "prefix of " << n << " bytes parsed";
    } catch (const WeightError& e) {
      EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
    }
  }
}

TEST_F(GgufFileTest, CorruptionsAreNamed) {
  Built b = build_file();
  auto patch = [&](size_t at, auto v) {
    std::vector<uint8_t> c = b.bytes;
    std::memcpy(c.data() + at, &v, sizeof(v));
    return c;
  };
  expect_error(patch(0, uint32_t{0x58554747}), "bad magic");
  expect_error(patch(4, uint32_t{1}), "unsupported GGUF version 1");
  expect_error(patch(8, uint64_t{1} << 40), "tensor count");
  // general.alignment's value sits after magic, version, counts, key (8 + 17) and type (4).
  const size_t align_at = 4 + 4 + 8 + 8 + 8 + 17 + 4;
  expect_error(patch(align_at, uint32_t{48}), "power of two");
  // The type of the first key.
  expect_error(patch(align_at - 4, uint32_t{13}), "unknown value type 13");
  // The last tensor info: name "b" (9 bytes), n_dims, ne[0], type, offset.
  std::vector<uint8_t> bytes = b.bytes;
  const std::string name_b = std::string("\x01\0\0\0\0\0\0\0b", 9);
  auto pos = std::search(bytes.begin(), bytes.end(), name_b.begin(), name_b.end()) - bytes.begin();
  expect_error(patch(pos + 9, uint32_t{5}), "5 dimensions");
  expect_error(patch(pos + 13, uint64_t{33}), "not a multiple of the Q8_0 block size");
  expect_error(patch(pos + 21, uint32_t{99}), "unknown ggml type 99");
  expect_error(patch(pos + 25, uint64_t{32}), "not a multiple of the alignment");
  expect_error(patch(pos + 25, uint64_t{64 * 1000}), "runs past the end");
  // A bool that is neither 0 nor 1.
  const std::string bool_key = "t.bool";
  auto kpos =
      std::search(bytes.begin(), bytes.end(), bool_key.begin(), bool_key.end()) - bytes.begin();
  expect_error(patch(kpos + bool_key.size() + 4, uint8_t{2}), "neither 0 nor 1");
  // An array count far beyond the file.
  const std::string strs_key = "t.strs";
  auto spos =
      std::search(bytes.begin(), bytes.end(), strs_key.begin(), strs_key.end()) - bytes.begin();
  expect_error(patch(spos + strs_key.size() + 8, uint64_t{1} << 50), "runs past the end");
}

TEST_F(GgufFileTest, HugeDimensionsDoNotOverflowTheSizeCheck) {
  // Four dimensions of 2^36 F32 elements: 2^146 bytes, which wraps any 64- or 128-bit product.
  Bytes h;
  h.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(1).put<uint64_t>(0);
  h.str("huge").put<uint32_t>(4);
  for (int d = 0; d < 4; ++d) h.put<uint64_t>(uint64_t{1} << 36);
  h.put<uint32_t>(0).put<uint64_t>(0);
  h.pad_to(32);
  for (int i = 0; i < 64; ++i) h.put<uint8_t>(0);
  expect_error(h.b, "runs past the end");
}

TEST(GgufDequant, HandBuiltBlocks) {
  // Q4_0: d = 2, every byte 0x1F: low nibble 15 -> (15 - 8) * 2, high nibble 1 -> (1 - 8) * 2.
  std::vector<uint8_t> q4(18, 0x1F);
  uint16_t d = f16(2.0f);
  std::memcpy(q4.data(), &d, 2);
  std::vector<float> out(32);
  ASSERT_TRUE(dequantize_quantized({"q4", DType::Q4_0, {32}, q4.data(), 18, "mem"}, out.data()));
  EXPECT_EQ(out[0], 14.0f);
  EXPECT_EQ(out[16], -14.0f);
  // Q5_0: as above plus the fifth bit set for value 0 only: (15 + 16 - 16) * 2.
  std::vector<uint8_t> q5(22, 0x1F);
  std::memcpy(q5.data(), &d, 2);
  uint32_t qh = 1;
  std::memcpy(q5.data() + 2, &qh, 4);
  ASSERT_TRUE(dequantize_quantized({"q5", DType::Q5_0, {32}, q5.data(), 22, "mem"}, out.data()));
  EXPECT_EQ(out[0], 30.0f);
  EXPECT_EQ(out[1], -2.0f);    // 15 - 16
  EXPECT_EQ(out[16], -30.0f);  // 1 - 16
  // Q6_K: d = 1, all quants 0 -> q6 = -32; sub-block scales 1..16.
  std::vector<uint8_t> q6(210, 0);
  for (int i = 0; i < 16; ++i) q6[192 + i] = static_cast<uint8_t>(i + 1);
  d = f16(1.0f);
  std::memcpy(q6.data() + 208, &d, 2);
  out.resize(256);
  ASSERT_TRUE(dequantize_quantized({"q6", DType::Q6_K, {256}, q6.data(), 210, "mem"}, out.data()));
  for (int i = 0; i < 256; ++i) EXPECT_EQ(out[i], -32.0f * (i / 16 + 1)) << i;
  // Too few bytes for the shape.
  EXPECT_THROW(dequantize_quantized({"q6", DType::Q6_K, {512}, q6.data(), 210, "mem"}, out.data()),
               WeightError);
  EXPECT_FALSE(dequantize_quantized({"f", DType::F32, {1}, q6.data(), 4, "mem"}, out.data()));
}

TEST(GgufNames, HuggingFaceNames) {
  EXPECT_EQ(gguf_to_hf_name("gemma3", "token_embd.weight"), "model.embed_tokens.weight");
  EXPECT_EQ(gguf_to_hf_name("gemma3", "output_norm.weight"), "model.norm.weight");
  EXPECT_EQ(gguf_to_hf_name("gemma3", "blk.12.ffn_norm.weight"),
            "model.layers.12.pre_feedforward_layernorm.weight");
  EXPECT_EQ(gguf_to_hf_name("gemma3", "blk.0.post_ffw_norm.weight"),
            "model.layers.0.post_feedforward_layernorm.weight");
  EXPECT_EQ(gguf_to_hf_name("gemma3", "blk.1.attn_k_norm.weight"),
            "model.layers.1.self_attn.k_norm.weight");
  EXPECT_EQ(gguf_to_hf_name("llama", "blk.7.ffn_norm.weight"),
            "model.layers.7.post_attention_layernorm.weight");
  EXPECT_EQ(gguf_to_hf_name("qwen2", "blk.2.attn_q.bias"), "model.layers.2.self_attn.q_proj.bias");
  EXPECT_EQ(gguf_to_hf_name("llama", "output.weight"), "lm_head.weight");
  EXPECT_EQ(gguf_to_hf_name("llama", "rope_freqs.weight"), "rope_freqs.weight");
  EXPECT_EQ(gguf_to_hf_name("llama", "blk.x.attn_q.weight"), "blk.x.attn_q.weight");
}

}  // namespace
}  // namespace xq
