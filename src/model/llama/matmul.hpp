// Batched y = x W^T for quantized weights (internal to the llama runner).
#pragma once

#include <cstddef>

#include "rq/model/llama.hpp"

namespace rq::model::detail {

/// y[n x w.rows] = x[n x w.cols] . W^T. Dequantizes blocks of rows once and reuses them for every token (pool threads over row blocks).
/// Each output element is one dot product in a fixed order: the result does not depend on the
/// thread count.
void matmul(const Weight& w, size_t n, const float* x, float* y);

/// Float32 dot product of length n (AVX2/FMA when the CPU has it, chosen at run time).
float dot_f32(const float* a, const float* b, size_t n);

}  // namespace rq::model::detail
