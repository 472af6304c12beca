// Per-channel quantization blocks (KIVI's keys, xquant-ch's X, the per-channel K latent) in the
// paged store, host-side and CUDA-free like row_layout.h: the kernels (channel_ops.h) and the
// code that sizes the GPU cache share it.
//
// A block is G consecutive positions of one sequence; each channel's G values in it share an
// fp16 scale and zero point (engine/cache/quantized_rows.h, ChannelQuantRows). Pages hold 16
// positions, so the codes stay with their positions and the block's parameters are spread over
// its pages, which keeps a page's bytes those the CPU format counts per token:
// - G >= 16: a block spans m = G / 16 pages; page k of it holds the parameters of channels
//   [k P, (k + 1) P), P = ceil(width / m), and its 16 positions' codes as one unit.
// - G < 16 (G divides 16): a page holds u = 16 / G whole blocks: all their parameters, and each
//   block's codes as a unit of its own, word-aligned as the CPU packs a block.
// A page's part: fp16 scales[P'], fp16 zeros[P'] (P' = params_per_page()), then the code units;
// a unit packs its rows' codes row-major, LSB-first (code of row r, channel c at bit
// (r * width + c) * bits), in whole 32-bit words.
// The bytes per token equal the CPU's (quantized_bytes(G * width, bits, G) / G) wherever the
// block's pages divide its channels and its 16-row units fill whole words (widths a multiple of
// m, bits * width even: every real model's K and X); otherwise (the K latent after one fp16
// channel) a page rounds up by less than 6 bytes.
#pragma once

#include <cstddef>

#include "kernels/cuda/row_layout.h"

namespace xq::cuda {

struct ChannelBlockLayout {
  int width = 0, bits = 2, group = 32;

  // Whether a page holds whole blocks or a block spans whole pages (else the GPU refuses G).
  bool group_fits_pages() const {
    return group >= 1 && (group % kPageRows == 0 || kPageRows % group == 0);
  }
  int pages_per_block() const { return group >= kPageRows ? group / kPageRows : 1; }
  int blocks_per_page() const { return group >= kPageRows ? 1 : kPageRows / group; }
  int unit_rows() const { return group >= kPageRows ? kPageRows : group; }
  // Channels whose parameters page k of a block holds (G >= 16); G < 16: every channel of each
  // of the page's blocks.
  int params_per_page() const {
    if (group >= kPageRows) return (width + pages_per_block() - 1) / pages_per_block();
    return blocks_per_page() * width;
  }
  size_t unit_words() const { return (static_cast<size_t>(unit_rows()) * width * bits + 31) / 32; }
  size_t unit_bytes() const { return 4 * unit_words(); }
  size_t params_bytes() const { return 4 * static_cast<size_t>(params_per_page()); }
  // A page's bytes of this segment (a multiple of 4).
  size_t page_bytes() const { return params_bytes() + blocks_per_page() * unit_bytes(); }
};

}  // namespace xq::cuda
