// Uniform asymmetric quantization of groups of values to 2/3/4/8 bits, codes bit-packed densely
// into uint32 words, with an fp16 scale and an fp16 zero point (the group's minimum) per group.
//
// Choices (shared by KIVI and XQuant, which both use plain round-to-nearest asymmetric groups):
// - zero point = the group minimum rounded DOWN to fp16 and scale = (max - zero) / (2^B - 1)
//   rounded UP to fp16, so the stored grid covers [min, max] and every finite value within the
//   fp16 range is reconstructed within scale / 2 (the bound the tests check).
// - Codes are packed LSB-first across word boundaries: code i occupies bits [i*B, i*B + B) of
//   the little-endian bit string of the words, so a 3-bit code can straddle two words and n codes
//   take exactly ceil(n*B/32) words.
// - Non-finite inputs never reach the cache: the group's range comes from its finite values
//   only, +Inf saturates to the top code, -Inf to code 0 and NaN to the code nearest 0. The
//   other values of the group and every other group are quantized exactly as without them.
//   Finite values beyond the fp16 range (|v| > 65504) saturate to it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xq {

// Throws std::invalid_argument unless bits is 2, 3, 4 or 8 and group >= 1.
void check_quant_params(int bits, int group);

// uint32 words that n codes of `bits` bits occupy packed densely.
inline size_t packed_words(size_t n, int bits) { return (n * static_cast<size_t>(bits) + 31) / 32; }

// Groups that n values form in groups of `group` (the last may be shorter).
inline size_t num_groups(size_t n, int group) { return (n + group - 1) / group; }

// Exact bytes n values take quantized: packed codes + fp16 scale and zero point per group.
inline size_t quantized_bytes(size_t n, int bits, int group) {
  return 4 * packed_words(n, bits) + 4 * num_groups(n, group);
}

// Packs codes[0..n) (each < 2^bits) into words[0..packed_words(n, bits)), which it overwrites.
void pack_codes(const uint8_t* codes, size_t n, int bits, uint32_t* words);
void unpack_codes(const uint32_t* words, size_t n, int bits, uint8_t* codes);

// Quantizes x[0..n) in consecutive groups of `group` values: packed codes into `words`
// (packed_words(n, bits) of them), one fp16 scale and zero point per group.
void quantize(const float* x, size_t n, int bits, int group, uint32_t* words, uint16_t* scales,
              uint16_t* zeros);
void dequantize(const uint32_t* words, const uint16_t* scales, const uint16_t* zeros, size_t n,
                int bits, int group, float* out);

}  // namespace xq
