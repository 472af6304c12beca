// Block dequantizers for the GGML quantized formats GGUF files carry, and the dispatch over
// all of them. Each block is decoded on its own, so a tensor is split over threads by blocks.
// This file holds the 32-value formats and Q4_K..Q6_K; Q2_K and Q3_K live in
// dequant_kquants_low.cpp, IQ4_NL and IQ4_XS in dequant_iq4.cpp.
//
// Block layouts (little-endian, f16 = IEEE half):
//   Q4_0 (32 values, 18 B): f16 d; u8 qs[16]      x = d * (nibble - 8); low nibbles are values
//                                                 0..15, high nibbles 16..31.
//   Q4_1 (32 values, 20 B): f16 d; f16 m; u8 qs[16]   nibbles as Q4_0, x = d * nibble + m.
//   Q5_0 (32 values, 22 B): f16 d; u8 qh[4]; u8 qs[16]   as Q4_0 plus a fifth bit per value
//                                                 (bit i of the u32 qh), x = d * (q5 - 16).
//   Q5_1 (32 values, 24 B): f16 d; f16 m; u8 qh[4]; u8 qs[16]   q5 as Q5_0, x = d * q5 + m.
//   Q8_0 (32 values, 34 B): f16 d; i8 qs[32]      x = d * q.
//   K-quants use 256-value super-blocks of sub-blocks:
//   Q4_K (144 B): f16 d; f16 dmin; u8 scales[12]; u8 qs[128]
//     8 sub-blocks of 32 with a 6-bit scale and 6-bit min each, packed in scales[12];
//     x = d*sc*q - dmin*m. Each 64 values share 32 bytes of qs: low nibbles first, then high.
//   Q5_K (176 B): f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
//     as Q4_K with a fifth bit from qh: bit (2*j) for the low-nibble half of 64-chunk j,
//     bit (2*j+1) for the high-nibble half.
//   Q6_K (210 B): u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
//     16 sub-blocks of 16, x = d * scale * (q6 - 32); each 128 values use 64 bytes of ql (low
//     4 bits) and 32 bytes of qh (2 high bits at shifts 0, 2, 4, 6 for the four 32-runs).
#include "engine/weights/dequant.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "engine/weights/dequant_blocks.h"
#include "kernels/cpu/parallel.h"

namespace xq {
namespace {

using dequant::f16_at;

void block_q4_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((qs[j] & 0x0f) - 8);
    y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

void block_q4_1(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const float m = f16_at(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(qs[j] & 0x0f) + m;
    y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

void block_q5_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int hi0 = static_cast<int>((qh >> j) & 1u) << 4;
    const int hi1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
    y[j] = d * static_cast<float>(((qs[j] & 0x0f) | hi0) - 16);
    y[j + 16] = d * static_cast<float>(((qs[j] >> 4) | hi1) - 16);
  }
}

void block_q5_1(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const float m = f16_at(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int hi0 = static_cast<int>((qh >> j) & 1u) << 4;
    const int hi1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
    y[j] = d * static_cast<float>((qs[j] & 0x0f) | hi0) + m;
    y[j + 16] = d * static_cast<float>((qs[j] >> 4) | hi1) + m;
  }
}

void block_q8_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(qs[j]);
}

// The 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes: sub-blocks 0..3 keep
// theirs in the low 6 bits of bytes j and j+4; sub-blocks 4..7 take 4 bits from byte j+4 and
// their top 2 bits from the spare high bits of bytes j-4 (scale) and j (min).
inline void k_scale_min(int j, const uint8_t* s, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

void block_q4_k(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const float dmin = f16_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int chunk = 0; chunk < 4; ++chunk) {
    int sc0, m0, sc1, m1;
    k_scale_min(2 * chunk, scales, &sc0, &m0);
    k_scale_min(2 * chunk + 1, scales, &sc1, &m1);
    const float d0 = d * sc0, min0 = dmin * m0, d1 = d * sc1, min1 = dmin * m1;
    for (int l = 0; l < 32; ++l) {
      y[l] = d0 * static_cast<float>(qs[l] & 0x0f) - min0;
      y[l + 32] = d1 * static_cast<float>(qs[l] >> 4) - min1;
    }
    qs += 32;
    y += 64;
  }
}

void block_q5_k(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const float dmin = f16_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int chunk = 0; chunk < 4; ++chunk) {
    int sc0, m0, sc1, m1;
    k_scale_min(2 * chunk, scales, &sc0, &m0);
    k_scale_min(2 * chunk + 1, scales, &sc1, &m1);
    const float d0 = d * sc0, min0 = dmin * m0, d1 = d * sc1, min1 = dmin * m1;
    const uint8_t bit0 = static_cast<uint8_t>(1u << (2 * chunk));
    const uint8_t bit1 = static_cast<uint8_t>(1u << (2 * chunk + 1));
    for (int l = 0; l < 32; ++l) {
      const int q0 = (qs[l] & 0x0f) + ((qh[l] & bit0) ? 16 : 0);
      const int q1 = (qs[l] >> 4) + ((qh[l] & bit1) ? 16 : 0);
      y[l] = d0 * static_cast<float>(q0) - min0;
      y[l + 32] = d1 * static_cast<float>(q1) - min1;
    }
    qs += 32;
    y += 64;
  }
}

void block_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16_at(b + 208);
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q0 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q1 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is + 0] * static_cast<float>(q0);
      y[l + 32] = d * sc[is + 2] * static_cast<float>(q1);
      y[l + 64] = d * sc[is + 4] * static_cast<float>(q2);
      y[l + 96] = d * sc[is + 6] * static_cast<float>(q3);
    }
    ql += 64;
    qh += 32;
    sc += 8;
    y += 128;
  }
}

struct BlockFormat {
  int64_t elems;
  int64_t bytes;
  void (*decode)(const uint8_t*, float*);
};

bool block_format(DType t, BlockFormat* f) {
  switch (t) {
    case DType::Q4_0:
      *f = {32, 18, block_q4_0};
      return true;
    case DType::Q4_1:
      *f = {32, 20, block_q4_1};
      return true;
    case DType::Q5_0:
      *f = {32, 22, block_q5_0};
      return true;
    case DType::Q5_1:
      *f = {32, 24, block_q5_1};
      return true;
    case DType::IQ4_NL:
      *f = {32, 18, dequant::block_iq4_nl};
      return true;
    case DType::Q8_0:
      *f = {32, 34, block_q8_0};
      return true;
    case DType::Q2_K:
      *f = {256, 84, dequant::block_q2_k};
      return true;
    case DType::Q3_K:
      *f = {256, 110, dequant::block_q3_k};
      return true;
    case DType::Q4_K:
      *f = {256, 144, block_q4_k};
      return true;
    case DType::Q5_K:
      *f = {256, 176, block_q5_k};
      return true;
    case DType::Q6_K:
      *f = {256, 210, block_q6_k};
      return true;
    case DType::IQ4_XS:
      *f = {256, 136, dequant::block_iq4_xs};
      return true;
    default:
      return false;
  }
}

// Blocks per parallel task: large enough that a thread's start-up cost is negligible.
constexpr int kBlocksPerTask = 4096;

}  // namespace

bool dequantize_quantized(const TensorInfo& t, float* out) {
  BlockFormat f;
  if (!block_format(t.dtype, &f)) return false;
  const int64_t n = t.numel();
  if (n % f.elems != 0) {
    throw WeightError(t.file + ": tensor " + t.name + " has " + std::to_string(n) +
                      " elements, not a multiple of the " + dtype_name(t.dtype) + " block of " +
                      std::to_string(f.elems));
  }
  const int64_t blocks = n / f.elems;
  if (t.data == nullptr || t.nbytes < static_cast<size_t>(blocks * f.bytes)) {
    throw WeightError(t.file + ": tensor " + t.name + " holds " + std::to_string(t.nbytes) +
                      " bytes, fewer than its " + std::to_string(blocks) + " " +
                      dtype_name(t.dtype) + " blocks need");
  }
  const int64_t tasks = (blocks + kBlocksPerTask - 1) / kBlocksPerTask;
  parallel_for(static_cast<int>(tasks), hardware_threads(), 1, [&](int begin, int end) {
    const int64_t first = static_cast<int64_t>(begin) * kBlocksPerTask;
    const int64_t last = std::min(blocks, static_cast<int64_t>(end) * kBlocksPerTask);
    for (int64_t b = first; b < last; ++b) f.decode(t.data + b * f.bytes, out + b * f.elems);
  });
  return true;
}

}  // namespace xq
