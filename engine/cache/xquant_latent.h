// The GQA latent of XQuant: orthonormal bases of the row spaces of Wk and Wv (from their SVDs),
// so a format can cache X on a basis as narrow as the KV width and still rebuild K and V exactly.
#pragma once

#include <vector>

#include "config/model_config.h"
#include "engine/cache/cache_format.h"

namespace xq {

// The right singular vectors of w [rows, cols] (row-major), rows <= cols: V^T [rows, cols] of
// w = U S V^T, in descending order of singular value and oriented (orient_rows). Their span
// holds every row of w, so x V V^T w^T = x w^T for any x.
std::vector<float> row_space_basis(const float* w, int rows, int cols);

// Flips each row of m [rows, cols] whose entries sum to less than zero; returns the sign each
// row was multiplied by. A singular vector's sign is the solver's choice, and the quantized
// latent depends on it (a group's range spans channels): oriented, the host's and the GPU's
// SVDs give the same basis. (The sum, not the largest entry's sign: two entries of nearly equal
// magnitude make the latter flip on rounding differences ~10x as often in 4096-wide rows.)
std::vector<float> orient_rows(float* m, int rows, int cols);

struct LatentBasis {
  int rank = 0;                       // latent width per side (= kv_dim)
  std::vector<std::vector<float>> k;  // per layer [rank, hidden]: basis of Wk's row space
  std::vector<std::vector<float>> v;  // per layer [rank, hidden]: basis of Wv's row space
};

// Throws ConfigError when the projector does not expose Wk/Wv or an SVD fails.
LatentBasis compute_latent_basis(const ModelConfig& cfg, const KvProjector& proj);

// Per layer [2 kv_dim, hidden]: an orthonormal basis of the row space of [Wk; Wv] stacked, the
// Ukv^T of the paper's SVD of [Wk | Wv] (XQuant-CL on GQA models). Throws ConfigError as above,
// and when 2 kv_dim exceeds hidden_size.
std::vector<std::vector<float>> kv_row_space_bases(const ModelConfig& cfg, const KvProjector& proj);

}  // namespace xq
