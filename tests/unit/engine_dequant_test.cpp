// Block decoders of Q4_1, Q5_1, Q2_K, Q3_K, IQ4_NL and IQ4_XS on hand-built blocks whose values
// follow from the format by hand, plus the GGUF type mapping and size errors for each of them.
// (tests/python/test_gguf.py compares all block types with the gguf package on random blocks.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/weights/dequant.h"
#include "engine/weights/gguf_file.h"

namespace xq {
namespace {

// IEEE half bits of a small power-of-two multiple (every scale used below is one).
uint16_t f16(float x) {
  if (x == 0.0f) return 0;
  int e = 0;
  float m = std::frexp(std::fabs(x), &e);
  uint16_t mant = static_cast<uint16_t>(std::lround((m * 2 - 1) * 1024));
  return static_cast<uint16_t>((x < 0 ? 0x8000 : 0) | ((e - 1 + 15) << 10) | mant);
}

void put_f16(std::vector<uint8_t>& b, size_t at, float x) {
  const uint16_t h = f16(x);
  std::memcpy(b.data() + at, &h, 2);
}

std::vector<float> decode(DType t, const std::vector<uint8_t>& b, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n), -999.0f);
  EXPECT_TRUE(dequantize_quantized({"w", t, {n}, b.data(), b.size(), "mem"}, out.data()));
  return out;
}

// The format's 16 IQ4 levels, written out from the format description.
constexpr int kIq4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                1,    13,   25,  38,  53,  69,  89,  113};

TEST(DequantLegacy, Q4_1AndQ5_1AddTheirMin) {
  // d = 2, m = -3, every byte 0x1F: low nibble 15, high nibble 1.
  std::vector<uint8_t> q4(20, 0x1F);
  put_f16(q4, 0, 2.0f);
  put_f16(q4, 2, -3.0f);
  std::vector<float> y = decode(DType::Q4_1, q4, 32);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(y[i], 27.0f) << i;
  for (int i = 16; i < 32; ++i) EXPECT_EQ(y[i], -1.0f) << i;
  // Q5_1: the same plus fifth bits for values 0 and 17 (bit i of the u32 qh).
  std::vector<uint8_t> q5(24, 0x1F);
  put_f16(q5, 0, 2.0f);
  put_f16(q5, 2, -3.0f);
  const uint32_t qh = (1u << 0) | (1u << 17);
  std::memcpy(q5.data() + 4, &qh, 4);
  y = decode(DType::Q5_1, q5, 32);
  EXPECT_EQ(y[0], 2.0f * 31 - 3);
  EXPECT_EQ(y[1], 27.0f);
  EXPECT_EQ(y[16], -1.0f);
  EXPECT_EQ(y[17], 2.0f * 17 - 3);
}

TEST(DequantKQuants, Q2_KSubBlockScalesMinsAndShifts) {
  // Each 2-bit run s of a 128-value half is the field at shift 2s: bytes 0xE4 give q = s.
  // Sub-block i has scale i, except sub-block 0: scale 1 and min 3 (0x31).
  std::vector<uint8_t> b(84, 0xE4);
  for (int i = 0; i < 16; ++i) b[i] = static_cast<uint8_t>(i);
  b[0] = 0x31;
  put_f16(b, 80, 1.0f);
  put_f16(b, 82, 0.5f);
  const std::vector<float> y = decode(DType::Q2_K, b, 256);
  for (int v = 0; v < 256; ++v) {
    const int sub = v / 16, q = (v % 128) / 32;
    const float want = sub == 0 ? 1.0f * q - 0.5f * 3 : static_cast<float>(sub * q);
    EXPECT_EQ(y[v], want) << v;
  }
}

TEST(DequantKQuants, Q3_KSignedScalesAndHighBitMask) {
  // Sub-block i gets signed scale i - 8 (stored i + 24, so 32..39 use the packed high bits).
  std::vector<uint8_t> b(110, 0);
  for (int i = 0; i < 16; ++i) {
    const int u = i + 24;
    b[96 + (i % 8)] |= static_cast<uint8_t>((u & 0x0f) << (i < 8 ? 0 : 4));
    b[96 + 8 + i % 4] |= static_cast<uint8_t>((u >> 4) << (2 * (i / 4)));
  }
  for (int l = 0; l < 32; ++l) b[l] = 0x0F;       // hmask: bits 0..3 (first half) set, second clear
  for (int l = 0; l < 64; ++l) b[32 + l] = 0xE4;  // low 2 bits of run s are s
  put_f16(b, 108, 0.5f);
  const std::vector<float> y = decode(DType::Q3_K, b, 256);
  for (int v = 0; v < 256; ++v) {
    const int sub = v / 16, s = (v % 128) / 32;
    const int q = v < 128 ? s : s - 4;
    EXPECT_EQ(y[v], 0.5f * static_cast<float>((sub - 8) * q)) << v;
  }
}

TEST(DequantIq4, NlLevelsInNibbleOrder) {
  // Byte l holds code l (low) and 15 - l (high): values 0..15 walk the table up, 16..31 down.
  std::vector<uint8_t> b(18);
  put_f16(b, 0, 0.5f);
  for (int l = 0; l < 16; ++l) b[2 + l] = static_cast<uint8_t>(l | ((15 - l) << 4));
  const std::vector<float> y = decode(DType::IQ4_NL, b, 32);
  for (int l = 0; l < 16; ++l) {
    EXPECT_EQ(y[l], 0.5f * kIq4Levels[l]) << l;
    EXPECT_EQ(y[16 + l], 0.5f * kIq4Levels[15 - l]) << l;
  }
}

TEST(DequantIq4, XsSixBitScalesPerSubBlock) {
  // Sub-block j gets scale 3j - 10 (stored 3j + 22: 22..43, so both sides of the high-bit
  // boundary); its codes are j in the low nibbles and 15 - j in the high ones.
  std::vector<uint8_t> b(136, 0);
  put_f16(b, 0, 0.25f);
  uint16_t scales_h = 0;
  for (int j = 0; j < 8; ++j) {
    const int u = 3 * j + 22;
    b[4 + j / 2] |= static_cast<uint8_t>((u & 0x0f) << (4 * (j % 2)));
    scales_h |= static_cast<uint16_t>((u >> 4) << (2 * j));
    for (int l = 0; l < 16; ++l) b[8 + 16 * j + l] = static_cast<uint8_t>(j | ((15 - j) << 4));
  }
  std::memcpy(b.data() + 2, &scales_h, 2);
  const std::vector<float> y = decode(DType::IQ4_XS, b, 256);
  for (int v = 0; v < 256; ++v) {
    const int j = v / 32, code = v % 32 < 16 ? j : 15 - j;
    EXPECT_EQ(y[v], 0.25f * static_cast<float>((3 * j - 10) * kIq4Levels[code])) << v;
  }
}

TEST(DequantTypes, GgufIdsNamesAndSizeErrors) {
  struct Case {
    GgmlType g;
    DType d;
    const char* name;
    int64_t elems, bytes;
  };
  const Case cases[] = {
      {GgmlType::Q4_1, DType::Q4_1, "Q4_1", 32, 20},
      {GgmlType::Q5_1, DType::Q5_1, "Q5_1", 32, 24},
      {GgmlType::Q2_K, DType::Q2_K, "Q2_K", 256, 84},
      {GgmlType::Q3_K, DType::Q3_K, "Q3_K", 256, 110},
      {GgmlType::IQ4_NL, DType::IQ4_NL, "IQ4_NL", 32, 18},
      {GgmlType::IQ4_XS, DType::IQ4_XS, "IQ4_XS", 256, 136},
  };
  for (const Case& c : cases) {
    const uint32_t id = static_cast<uint32_t>(c.g);
    EXPECT_EQ(dtype_from_ggml(id), c.d) << c.name;
    EXPECT_STREQ(dtype_name(c.d), c.name);
    EXPECT_EQ(ggml_type_name(id), c.name);
    int64_t elems = 0, bytes = 0;
    ASSERT_TRUE(ggml_block_layout(id, &elems, &bytes)) << c.name;
    EXPECT_EQ(elems, c.elems) << c.name;
    EXPECT_EQ(bytes, c.bytes) << c.name;

    // Two blocks' worth of shape over one block of bytes; and a shape that is not whole blocks.
    std::vector<uint8_t> one(static_cast<size_t>(c.bytes), 0);
    std::vector<float> out(static_cast<size_t>(2 * c.elems));
    for (int64_t n : {2 * c.elems, c.elems + 1}) {
      try {
        dequantize_quantized({"blk.3.ffn_up.weight", c.d, {n}, one.data(), one.size(), "m.gguf"},
                             out.data());
        ADD_FAILURE() << c.name << " " << n << ": no error";
      } catch (const WeightError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("m.gguf"), std::string::npos) << msg;
        EXPECT_NE(msg.find("blk.3.ffn_up.weight"), std::string::npos) << msg;
        EXPECT_NE(msg.find(c.name), std::string::npos) << msg;
      }
    }
  }
}

}  // namespace
}  // namespace xq
