// Decoders for the 2- and 3-bit K-quants (Q2_K, Q3_K: the bulk of Q2_K and Q3_K_S/M/L files).
//
// Both use 256-value super-blocks of 16 sub-blocks of 16 values. Their 2-bit fields are packed
// alike: each 128-value half owns 32 bytes of qs, and its four 32-value runs take the 2-bit field
// at shifts 0, 2, 4, 6 of those bytes, so value 128*h + 32*s + l is (qs[32*h + l] >> 2*s) & 3.
//
//   Q2_K (84 B): u8 scales[16]; u8 qs[64]; f16 d; f16 dmin
//     sub-block i has scale scales[i] & 15 and min scales[i] >> 4: x = d*sc*q - dmin*m.
//   Q3_K (110 B): u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d
//     a third bit per value, bit (4*h + s) of hmask[l], is set for the non-negative half: the
//     value is q2 when it is set and q2 - 4 when clear. 16 signed 6-bit scales (stored + 32):
//     low 4 bits are the nibbles of bytes 0..7 (low nibbles for sub-blocks 0..7, high for
//     8..15), high 2 bits sit in bytes 8..11 (sub-block i at byte 8 + i%4, shift 2*(i/4)).
//     x = d * (sc - 32) * q.
#include "engine/weights/dequant_blocks.h"

namespace xq::dequant {

void block_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = f16_at(b + 80);
  const float dmin = f16_at(b + 82);
  for (int h = 0; h < 2; ++h) {
    for (int s = 0; s < 4; ++s) {
      for (int half16 = 0; half16 < 2; ++half16) {
        const uint8_t sc = scales[8 * h + 2 * s + half16];
        const float dl = d * static_cast<float>(sc & 0x0f);
        const float ml = dmin * static_cast<float>(sc >> 4);
        for (int l = 16 * half16; l < 16 * half16 + 16; ++l) {
          const int q = (qs[32 * h + l] >> (2 * s)) & 3;
          y[128 * h + 32 * s + l] = dl * static_cast<float>(q) - ml;
        }
      }
    }
  }
}

namespace {
// Signed scale of Q3_K sub-block i (0..15) from its 12 packed bytes.
inline int q3_k_scale(const uint8_t* s, int i) {
  const int low = i < 8 ? (s[i] & 0x0f) : (s[i - 8] >> 4);
  const int high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
  return (low | (high << 4)) - 32;
}
}  // namespace

void block_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* scales = b + 96;
  const float d = f16_at(b + 108);
  for (int h = 0; h < 2; ++h) {
    for (int s = 0; s < 4; ++s) {
      const int hbit = 4 * h + s;
      for (int half16 = 0; half16 < 2; ++half16) {
        const float dl = d * static_cast<float>(q3_k_scale(scales, 8 * h + 2 * s + half16));
        for (int l = 16 * half16; l < 16 * half16 + 16; ++l) {
          const int q2 = (qs[32 * h + l] >> (2 * s)) & 3;
          const int q = ((hmask[l] >> hbit) & 1) ? q2 : q2 - 4;
          y[128 * h + 32 * s + l] = dl * static_cast<float>(q);
        }
      }
    }
  }
}

}  // namespace xq::dequant
