// Tests for the safetensors reader and the dense dtype conversions, on files the tests write.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/weights/dtype_convert.h"
#include "engine/weights/weight_source.h"

namespace xq {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Tensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;  // raw little-endian payload
};

template <typename T>
std::string raw_bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// The header JSON for `tensors` laid out back to back.
json header_for(const std::vector<Tensor>& tensors) {
  json h = {{"__metadata__", {{"format", "pt"}}}};
  size_t offset = 0;
  for (const auto& t : tensors) {
    h[t.name] = {{"dtype", t.dtype},
                 {"shape", t.shape},
                 {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  return h;
}

// A safetensors file: length, header (space-padded to `align` bytes), data.
std::string file_bytes(const std::string& header, const std::string& data, size_t align = 8) {
  std::string h = header;
  while (h.size() % align != 0) h += ' ';
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + h + data;
}

std::string file_bytes(const std::vector<Tensor>& tensors, size_t align = 8) {
  std::string data;
  for (const auto& t : tensors) data += t.bytes;
  return file_bytes(header_for(tensors).dump(), data, align);
}

float bits_f32(uint32_t b) { return std::bit_cast<float>(b); }

// Equal as bit patterns, so -0.0 differs from 0.0; any NaN matches any NaN.
::testing::AssertionResult same_float(float got, float want) {
  if (std::isnan(want) ? std::isnan(got)
                       : std::bit_cast<uint32_t>(got) == std::bit_cast<uint32_t>(want)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "got " << got << " (0x" << std::hex << std::bit_cast<uint32_t>(got) << "), want "
         << want << " (0x" << std::bit_cast<uint32_t>(want) << ")";
}

class SafetensorsDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::path(::testing::TempDir()) /
        ("xq_st_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& bytes) {
    std::ofstream(dir_ / name, std::ios::binary) << bytes;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // The WeightError that opening dir_ throws; fails the test when none is thrown.
  std::string open_error() {
    try {
      open_safetensors_dir(dir_);
    } catch (const WeightError& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected a WeightError";
    return "";
  }

  fs::path dir_;
};

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

TEST_F(SafetensorsDirTest, F32RoundTripsExactly) {
  const std::vector<float> values = {0.0f,
                                     -0.0f,
                                     1.0f,
                                     -3.25f,
                                     std::numeric_limits<float>::denorm_min(),
                                     -bits_f32(0x007fffff),  // largest negative subnormal
                                     std::numeric_limits<float>::max(),
                                     std::numeric_limits<float>::infinity(),
                                     -std::numeric_limits<float>::infinity(),
                                     std::numeric_limits<float>::quiet_NaN(),
                                     1e-30f,
                                     123456.789f};
  write("model.safetensors", file_bytes({{"w", "F32", {3, 4}, raw_bytes(values)}}));
  auto src = open_safetensors_dir(dir_);
  const TensorInfo* t = src->find("w");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::F32);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(t->numel(), 12);
  EXPECT_EQ(t->nbytes, 48u);
  EXPECT_EQ(t->file, path("model.safetensors"));
  std::vector<float> got = src->load_f32("w", {3, 4});
  ASSERT_EQ(got.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) EXPECT_TRUE(same_float(got[i], values[i])) << i;
}

TEST_F(SafetensorsDirTest, F16KnownBitPatterns) {
  const std::vector<std::pair<uint16_t, float>> cases = {
      {0x0000, 0.0f},
      {0x8000, -0.0f},
      {0x3c00, 1.0f},
      {0xc000, -2.0f},
      {0x3555, 0x555p-12f},  // 0.333251953125
      {0x7bff, 65504.0f},    // largest finite
      {0xfbff, -65504.0f},
      {0x0400, 0x1p-14f},     // smallest normal
      {0x0001, 0x1p-24f},     // smallest subnormal
      {0x03ff, 0x3ffp-24f},   // largest subnormal
      {0x8201, -0x201p-24f},  // negative subnormal
      {0x7c00, std::numeric_limits<float>::infinity()},
      {0xfc00, -std::numeric_limits<float>::infinity()},
      {0x7e00, std::numeric_limits<float>::quiet_NaN()},
  };
  std::vector<uint16_t> bits;
  for (const auto& c : cases) bits.push_back(c.first);
  write("model.safetensors",
        file_bytes({{"h", "F16", {static_cast<int64_t>(bits.size())}, raw_bytes(bits)}}));
  auto src = open_safetensors_dir(dir_);
  std::vector<float> got = src->load_f32("h", {static_cast<int64_t>(bits.size())});
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_TRUE(same_float(got[i], cases[i].second)) << "0x" << std::hex << cases[i].first;
  }
}

TEST(DtypeConvert, F16MatchesTheCompilersHalfForEveryBitPattern) {
  for (uint32_t b = 0; b <= 0xffff; ++b) {
    const auto h = static_cast<uint16_t>(b);
    const float want = static_cast<float>(std::bit_cast<_Float16>(h));
    ASSERT_TRUE(same_float(f16_bits_to_f32(h), want)) << "0x" << std::hex << b;
  }
}

TEST_F(SafetensorsDirTest, BF16KnownBitPatterns) {
  const std::vector<std::pair<uint16_t, float>> cases = {
      {0x0000, 0.0f},
      {0x8000, -0.0f},
      {0x3f80, 1.0f},
      {0xbfc0, -1.5f},
      {0x4049, 3.140625f},
      {0x7f7f, bits_f32(0x7f7f0000)},  // largest finite, ~3.39e38
      {0x0001, 0x1p-133f},             // smallest subnormal
      {0x8040, -0x1p-127f},            // negative subnormal
      {0x7f80, std::numeric_limits<float>::infinity()},
      {0xff80, -std::numeric_limits<float>::infinity()},
      {0x7fc0, std::numeric_limits<float>::quiet_NaN()},
  };
  std::vector<uint16_t> bits;
  for (const auto& c : cases) bits.push_back(c.first);
  write("model.safetensors",
        file_bytes({{"b", "BF16", {1, static_cast<int64_t>(bits.size())}, raw_bytes(bits)}}));
  auto src = open_safetensors_dir(dir_);
  std::vector<float> got = src->load_f32("b", {1, static_cast<int64_t>(bits.size())});
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_TRUE(same_float(got[i], cases[i].second)) << "0x" << std::hex << cases[i].first;
  }
}

TEST_F(SafetensorsDirTest, UnalignedDataAndMixedDtypes) {
  // An unpadded header puts the data at an odd offset; reads must not assume alignment.
  std::vector<float> a = {1.5f, -2.5f, 3.0f};
  std::vector<uint16_t> b = {0x3c00, 0xbc00};  // f16 1, -1
  std::vector<uint16_t> c = {0x4000};          // bf16 2
  write("model.safetensors", file_bytes({{"a", "F32", {3}, raw_bytes(a)},
                                         {"b", "F16", {2, 1}, raw_bytes(b)},
                                         {"c", "BF16", {}, raw_bytes(c)}},
                                        /*align=*/1));
  auto src = open_safetensors_dir(dir_);
  EXPECT_EQ(src->names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(src->load_f32("a", {3}), a);
  EXPECT_EQ(src->load_f32("b", {2, 1}), (std::vector<float>{1.0f, -1.0f}));
  EXPECT_EQ(src->find("c")->numel(), 1);
  EXPECT_EQ(src->load_f32("c", {}), std::vector<float>{2.0f});
  EXPECT_FALSE(src->has("__metadata__"));
}

TEST_F(SafetensorsDirTest, LargeTensorsConvertAcrossChunks) {
  // Big enough to take the multi-threaded path; values vary so a misplaced chunk shows.
  const size_t n = 700001;
  std::vector<uint16_t> bits(n);
  for (size_t i = 0; i < n; ++i) bits[i] = static_cast<uint16_t>((i * 2654435761u) >> 7);
  write("model.safetensors",
        file_bytes({{"h", "F16", {static_cast<int64_t>(n)}, raw_bytes(bits)},
                    {"b", "BF16", {static_cast<int64_t>(n)}, raw_bytes(bits)}}));
  auto src = open_safetensors_dir(dir_);
  std::vector<float> h = src->load_f32("h", {static_cast<int64_t>(n)});
  std::vector<float> b = src->load_f32("b", {static_cast<int64_t>(n)});
  for (size_t i = 0; i < n; ++i) {
    ASSERT_TRUE(same_float(h[i], static_cast<float>(std::bit_cast<_Float16>(bits[i])))) << i;
    ASSERT_TRUE(same_float(b[i], bits_f32(static_cast<uint32_t>(bits[i]) << 16))) << i;
  }
}

TEST_F(SafetensorsDirTest, ShardedWithIndex) {
  std::vector<float> e = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> q = {0x3f80, 0x4000};  // bf16 1, 2
  std::vector<uint16_t> o = {0x3c00};          // f16 1
  write("model-00001-of-00002.safetensors",
        file_bytes({{"model.embed_tokens.weight", "F32", {3, 2}, raw_bytes(e)},
                    {"model.layers.0.self_attn.q_proj.weight", "BF16", {2, 1}, raw_bytes(q)}}));
  write("model-00002-of-00002.safetensors",
        file_bytes({{"model.norm.weight", "F16", {1}, raw_bytes(o)}}));
  json index = {{"metadata", {{"total_size", 30}}},
                {"weight_map",
                 {{"model.embed_tokens.weight", "model-00001-of-00002.safetensors"},
                  {"model.layers.0.self_attn.q_proj.weight", "model-00001-of-00002.safetensors"},
                  {"model.norm.weight", "model-00002-of-00002.safetensors"}}}};
  write("model.safetensors.index.json", index.dump(2));
  auto src = open_safetensors_dir(dir_);
  EXPECT_EQ(src->names().size(), 3u);
  EXPECT_EQ(src->load_f32("model.embed_tokens.weight", {3, 2}), e);
  EXPECT_EQ(src->load_f32("model.layers.0.self_attn.q_proj.weight", {2, 1}),
            (std::vector<float>{1, 2}));
  EXPECT_EQ(src->load_f32("model.norm.weight", {1}), std::vector<float>{1});
  EXPECT_EQ(src->find("model.norm.weight")->file, path("model-00002-of-00002.safetensors"));

  // The missing-tensor message lists the shards that were searched.
  try {
    src->load_f32("lm_head.weight", {3, 2});
    ADD_FAILURE() << "expected a WeightError";
  } catch (const WeightError& err) {
    EXPECT_EQ(std::string(err.what()), "tensor lm_head.weight not found in " + dir_.string() +
                                           " (checked files model-00001-of-00002.safetensors, "
                                           "model-00002-of-00002.safetensors)");
  }
}

TEST_F(SafetensorsDirTest, IndexErrorsNameIndexAndTensor) {
  std::vector<float> v = {1};
  write("a.safetensors", file_bytes({{"x", "F32", {1}, raw_bytes(v)}}));
  write("b.safetensors", file_bytes({{"y", "F32", {1}, raw_bytes(v)}}));

  write("model.safetensors.index.json",
        json{{"weight_map", {{"x", "a.safetensors"}, {"y", "a.safetensors"}}}}.dump());
  std::string msg = open_error();
  EXPECT_CONTAINS(msg, "model.safetensors.index.json");
  EXPECT_CONTAINS(msg, "tensor y");

  write("model.safetensors.index.json",
        json{{"weight_map", {{"x", "a.safetensors"}, {"y", "c.safetensors"}}}}.dump());
  msg = open_error();
  EXPECT_CONTAINS(msg, path("c.safetensors"));

  write("model.safetensors.index.json", json{{"weight_map", {{"x", "../a.safetensors"}}}}.dump());
  msg = open_error();
  EXPECT_CONTAINS(msg, "tensor x");

  write("model.safetensors.index.json", R"({"weight_map": {"x": "a.safetensors",}})");
  msg = open_error();
  EXPECT_CONTAINS(msg, "model.safetensors.index.json: invalid JSON at byte");

  // The same tensor in two shards.
  write("b.safetensors", file_bytes({{"x", "F32", {1}, raw_bytes(v)}}));
  write("model.safetensors.index.json",
        json{{"weight_map", {{"x", "a.safetensors"}, {"z", "b.safetensors"}}}}.dump());
  msg = open_error();
  EXPECT_CONTAINS(msg, "tensor x appears in both");
  EXPECT_CONTAINS(msg, path("b.safetensors"));
}

TEST_F(SafetensorsDirTest, NoCheckpointNamesTheDir) {
  EXPECT_EQ(open_error(),
            "no model.safetensors or model.safetensors.index.json in " + dir_.string());
}

TEST_F(SafetensorsDirTest, WrongShapeNamesFileTensorAndShapes) {
  std::vector<float> v(6, 1.0f);
  write("model.safetensors", file_bytes({{"w", "F32", {2, 3}, raw_bytes(v)}}));
  auto src = open_safetensors_dir(dir_);
  try {
    src->load_f32("w", {3, 2});
    ADD_FAILURE() << "expected a WeightError";
  } catch (const WeightError& e) {
    EXPECT_EQ(std::string(e.what()),
              path("model.safetensors") + ": tensor w has shape [2, 3], expected [3, 2]");
  }
  EXPECT_THROW(src->get("v"), WeightError);
  EXPECT_EQ(&src->get("w"), src->find("w"));
}

TEST_F(SafetensorsDirTest, CorruptHeaderJson) {
  write("model.safetensors",
        file_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})", "abcd"));
  std::string msg = open_error();
  EXPECT_CONTAINS(msg, path("model.safetensors") + ": invalid header JSON at byte");
}

// Found by the safetensors fuzzer: a number too large for a double in the header (or the index)
// escaped as nlohmann's out_of_range, naming neither the file nor the header.
TEST_F(SafetensorsDirTest, HugeNumbersInHeaderOrIndexNameTheFile) {
  write("model.safetensors", file_bytes(R"({"w": 1e400})", ""));
  std::string msg = open_error();
  EXPECT_CONTAINS(msg, path("model.safetensors") + ": invalid header JSON");
  fs::remove(dir_ / "model.safetensors");
  write("model.safetensors.index.json", R"({"weight_map": {"w": 1e400}})");
  EXPECT_CONTAINS(open_error(), path("model.safetensors.index.json") + ": invalid JSON");
}

TEST_F(SafetensorsDirTest, HeaderLengthBeyondTheFile) {
  std::string bytes = file_bytes({{"w", "F32", {1}, std::string(4, '\0')}});
  bytes[5] = 1;  // header length now ~2^40
  write("model.safetensors", bytes);
  std::string msg = open_error();
  EXPECT_CONTAINS(msg, path("model.safetensors") + ": header length");

  write("model.safetensors", "abc");
  EXPECT_CONTAINS(open_error(), path("model.safetensors") + ": too short");
}

TEST_F(SafetensorsDirTest, TruncatedDataNamesTheTensor) {
  std::vector<float> v(16, 2.0f);
  std::string bytes = file_bytes({{"w", "F32", {4, 4}, raw_bytes(v)}});
  write("model.safetensors", bytes.substr(0, bytes.size() - 5));
  std::string msg = open_error();
  EXPECT_CONTAINS(msg, path("model.safetensors") + ": tensor w ");
  EXPECT_CONTAINS(msg, "truncated");
}

TEST_F(SafetensorsDirTest, OffsetsInconsistentWithShape) {
  std::string data(24, '\0');
  // 6 F32 elements need 24 bytes; the entry claims 20.
  write("model.safetensors",
        file_bytes(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [4, 24]}})", data));
  std::string msg = open_error();
  EXPECT_CONTAINS(msg,
                  path("model.safetensors") + ": tensor w has data_offsets [4, 24] (20 bytes)");
  EXPECT_CONTAINS(msg, "needs 24 bytes");

  write("model.safetensors",
        file_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", data));
  EXPECT_CONTAINS(open_error(), path("model.safetensors") + ": tensor w has data_offsets [8, 4]");

  write("model.safetensors",
        file_bytes(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", data));
  EXPECT_CONTAINS(open_error(), path("model.safetensors") + ": tensor w ");

  write("model.safetensors",
        file_bytes(
            R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}})",
            data));
  EXPECT_CONTAINS(open_error(), path("model.safetensors") + ": tensor w ");

  write("model.safetensors", file_bytes(R"({"w": {"dtype": "F32", "shape": [1]}})", data));
  EXPECT_CONTAINS(open_error(), path("model.safetensors") + ": tensor w ");
}

TEST_F(SafetensorsDirTest, UnsupportedDtypeNamesFileTensorAndDtype) {
  std::vector<int64_t> ids = {1, 2};
  write("model.safetensors", file_bytes({{"position_ids", "I64", {2}, raw_bytes(ids)}}));
  EXPECT_EQ(open_error(), path("model.safetensors") +
                              ": tensor position_ids has dtype I64, which is not supported "
                              "(supported: F32, F16, BF16)");
}

// Found by the safetensors fuzzer: a tensor with a zero dimension loads as an empty vector in
// every dtype (its conversion used to pass a null destination to memcpy, which UBSan reports).
TEST_F(SafetensorsDirTest, ZeroElementTensorsLoadEmpty) {
  std::vector<float> v = {1.5f};
  write("model.safetensors", file_bytes({{"a", "F32", {0, 5}, ""},
                                         {"b", "F16", {3, 0}, ""},
                                         {"c", "BF16", {0}, ""},
                                         {"w", "F32", {1}, raw_bytes(v)}}));
  auto src = open_safetensors_dir(dir_);
  EXPECT_TRUE(src->load_f32("a", {0, 5}).empty());
  EXPECT_TRUE(src->load_f32("b", {3, 0}).empty());
  EXPECT_TRUE(src->load_f32("c", {0}).empty());
  EXPECT_EQ(src->load_f32("w", {1}), v);
}

TEST(ConvertToF32, RefusesTooFewBytes) {
  std::vector<float> v = {1, 2};
  TensorInfo t;
  t.name = "w";
  t.file = "x.safetensors";
  t.dtype = DType::F32;
  t.shape = {4};
  t.data = reinterpret_cast<const uint8_t*>(v.data());
  t.nbytes = 8;
  std::vector<float> out(4);
  try {
    convert_to_f32(t, out.data());
    ADD_FAILURE() << "expected a WeightError";
  } catch (const WeightError& e) {
    EXPECT_CONTAINS(e.what(), "x.safetensors: tensor w ");
  }
}

TEST(DtypeNames, AllNamed) {
  EXPECT_STREQ(dtype_name(DType::F32), "F32");
  EXPECT_STREQ(dtype_name(DType::F16), "F16");
  EXPECT_STREQ(dtype_name(DType::BF16), "BF16");
  EXPECT_STREQ(dtype_name(DType::Q4_K), "Q4_K");
  EXPECT_STREQ(dtype_name(DType::Q5_0), "Q5_0");
  EXPECT_EQ(dense_dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dense_dtype_size(DType::Q8_0), 0u);
}

}  // namespace
}  // namespace xq
