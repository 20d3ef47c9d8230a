// Integer tables of the fast attention's integer path (Lloyd-Max formats with 2..4-bit codes):
//   centroid c_k ~= alpha * (t_k - 128), t_k in [1, 255]      (8-bit codebook, one per codec)
//   query    q_j ~= beta * q16_j,       |q16_j| <= L          (L = 32767 up to 256 coordinates,
//                                                             less beyond; one scale per query head)
//   weight   w_r ~= wmax / 32767 * w16_r, w16_r in [0, 32767] (15-bit, one scale per head and chunk;
//            QuantizeWeights in kernel_steps-inl.h)
// so that score(row) = norm * alpha * beta * (sum_j q16_j t[code_j] - 128 sum_j q16_j) and
// sum_r w_r v_r[j] = alpha * wmax / 32767 * (sum_r w16_r t[code_rj] - 128 sum_r w16_r), all sums
// exact in int32 (bounds in docs/decisions.md). Every SIMD target computes the same integers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rq::attn_detail {

constexpr int kTableZero = 128;       // t_k - 128 is the signed centroid level
constexpr int kTableTop = 127;        // |t_k - 128| <= 127
constexpr int kTableMax = kTableZero + kTableTop;  // largest table value (255)
constexpr int kWeightLevels = 32767;  // w16 <= 32767
constexpr size_t kIntBlock = 32;      // coordinates per SIMD block (one 256-bit register of codes)

/// 8-bit integer image of a Lloyd-Max codebook.
struct IntCodebook {
  int bits = 0;
  float alpha = 0.0f;    // c_k ~= alpha * (t_k - 128)
  uint8_t t[16] = {};    // t_k, k < 2^bits (the rest 128)
};

/// t_k = 128 + l_k with integer levels |l_k| <= 127 and alpha fitted by least squares (the top
/// level searched for the smallest squared error). centroids: 2^bits values.
IntCodebook make_int_codebook(const float* centroids, int bits);

/// Quantized queries of one GQA group, natural coordinate order.
struct IntQueries {
  size_t n = 0;                 // coordinates (rotated_dim)
  size_t groups = 0;            // query heads
  int32_t levels = 0;            // L: |q16| <= L, so that 255 * L * (n rounded up to 32) < 2^31
  std::vector<int16_t> q16;      // groups x n
  std::vector<int32_t> q16_sum;  // groups: sum_j q16_j
  std::vector<float> factor;     // groups: alpha_K * beta (score = (isum - 128 q16_sum) * factor * norm)
};

/// q: groups x stride floats (rotated, already times the softmax scale), n used per row. Returns
/// false (out unusable) when a query value is NaN or infinite: such heads take the float kernels,
/// which propagate them like attend_reference.
bool quantize_queries(const float* q, size_t stride, size_t n, size_t groups, float k_alpha, IntQueries& out);

}  // namespace rq::attn_detail
