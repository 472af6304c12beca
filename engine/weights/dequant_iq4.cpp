// Decoders for the non-linear 4-bit formats (IQ4_NL, IQ4_XS): each 4-bit code indexes a fixed
// 16-entry table of int8 levels, spaced more densely near zero than a linear grid, times a scale.
//
//   IQ4_NL (32 values, 18 B): f16 d; u8 qs[16]
//     x = d * level[code]; codes 0..15 are the low nibbles of qs, codes 16..31 the high ones.
//   IQ4_XS (256 values, 136 B): f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]
//     8 sub-blocks of 32 with a signed 6-bit scale (stored + 32): low 4 bits are nibble j%2 of
//     scales_l[j/2], high 2 bits are bits 2j, 2j+1 of scales_h. Sub-block j packs its codes in
//     qs[16j .. 16j+15] as an IQ4_NL block does. x = d * (sc - 32) * level[code].
#include "engine/weights/dequant_blocks.h"

namespace xq::dequant {
namespace {

// The format's fixed levels (the same for both types), in code order.
constexpr float kLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                               1,    13,   25,  38,  53,  69,  89,  113};

// 32 values from 16 bytes of codes: low nibbles first, then high nibbles.
inline void decode_32(const uint8_t* qs, float scale, float* y) {
  for (int l = 0; l < 16; ++l) {
    y[l] = scale * kLevels[qs[l] & 0x0f];
    y[l + 16] = scale * kLevels[qs[l] >> 4];
  }
}

}  // namespace

void block_iq4_nl(const uint8_t* b, float* y) { decode_32(b + 2, f16_at(b), y); }

void block_iq4_xs(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  uint16_t scales_h;
  std::memcpy(&scales_h, b + 2, 2);
  const uint8_t* scales_l = b + 4;
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 8; ++j) {
    const int low = (scales_l[j / 2] >> (4 * (j % 2))) & 0x0f;
    const int high = (scales_h >> (2 * j)) & 3;
    const float dl = d * static_cast<float>((low | (high << 4)) - 32);
    decode_32(qs + 16 * j, dl, y + 32 * j);
  }
}

}  // namespace xq::dequant
