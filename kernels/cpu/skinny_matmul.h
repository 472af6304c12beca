// y = x · W^T for a few rows of x (decode steps): streams W once for up to 4 rows at a time
// instead of packing it as GEMM does, which costs more than the product itself at n <= 8.
#pragma once

namespace xq {

// Same contract as matmul_nt without the bias; meant for n <= 8.
void skinny_matmul_nt(const float* x, const float* w, float* y, int n, int in, int out);

}  // namespace xq
