// Integer tables of the fast attention's integer path (Lloyd-Max formats with 2..4-bit codes; int4,
// whose table k - 8 the 8-bit codebook holds exactly: t = 128 + 8 (k - 8), alpha = 1/8; int8, whose
// codes c are their own table value c + 128, alpha = 1):
//   centroid c_k ~= alpha * (t_k - 128), t_k in [1, 255]      (8-bit codebook, one per codec)
//   query    q_j ~= beta * s_m * q8_j,  |q8_j| <= 64, 1 <= s_m <= S  (one 16-bit scale per coordinate
//                                                             pair m = j / 2, one beta per query head)
//   weight   w_r = p_r |v_r| ~= vmax / 32767 * w16_r, w16_r in [0, 32767] (15-bit; vmax = the chunk's
//            largest V norm, one scale for all heads, since p_r <= 1; SoftmaxToWeights16 in
//            kernel_steps-inl.h)
// so that score(row) = norm * alpha * beta * (sum_j s_m q8_j t[code_j] - 128 sum_j s_m q8_j) and
// sum_r w_r v_r[j] = alpha * vmax / 32767 * (sum_r w16_r t[code_rj] - 128 sum_r w16_r), all sums
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
constexpr int kQueryTop = 64;         // |q8| <= 64: a vpmaddubsw pair 255 * 64 * 2 < 2^15 never saturates
static_assert(2 * kTableMax * kQueryTop <= 32767, "vpmaddubsw pair sums must fit int16 without saturating");

/// 8-bit integer image of a Lloyd-Max codebook (bits 1..4), or of int8 codes (bits 8: the table
/// value of code c is c + 128, its byte with the top bit flipped; alpha 1; t unused).
struct IntCodebook {
  int bits = 0;
  float alpha = 0.0f;    // c_k ~= alpha * (t_k - 128)
  uint8_t t[16] = {};    // t_k, k < 2^bits (the rest 128)
};

/// t_k = 128 + l_k with integer levels |l_k| <= 127 and alpha fitted by least squares (the top
/// level searched for the smallest squared error). centroids: 2^bits values.
IntCodebook make_int_codebook(const float* centroids, int bits);

/// Quantized queries of one GQA group, natural coordinate order: 8-bit values with a 16-bit scale per
/// pair of coordinates (vpmaddubsw adds the products of a pair; vpmaddwd then multiplies each pair's
/// sum by its own scale, for free), so that every coordinate keeps ~7 bits of its pair's magnitude.
/// Rows are padded with zeros to whole blocks of 32 coordinates (16 pairs).
struct IntQueries {
  size_t n = 0;                     // coordinates (rotated_dim)
  size_t groups = 0;                // query heads
  size_t stride = 0;                // n rounded up to 32: q8 row stride; pair_scale's is stride / 2
  int32_t scale_top = 0;            // S: s_m <= S, so that 255 * 64 * S * stride < 2^31
  std::vector<int8_t> q8;           // groups x stride (0 past n)
  std::vector<int16_t> pair_scale;  // groups x stride / 2: s_m (0 past the last pair)
  std::vector<int32_t> q_sum;       // groups: sum_j s_m q8_j
  std::vector<float> factor;        // groups: alpha_K * beta (score = (isum - 128 q_sum) * factor * norm)

  /// The integer query value s_m q8_j of head h, coordinate j.
  int32_t value(size_t h, size_t j) const {
    return static_cast<int32_t>(q8[h * stride + j]) * pair_scale[h * (stride / 2) + j / 2];
  }
};

/// q: groups x stride floats (rotated, already times the softmax scale), n used per row. Returns
/// false (out unusable) when a query value is NaN or infinite: such heads take the float kernels,
/// which propagate them like attend_reference.
bool quantize_queries(const float* q, size_t stride, size_t n, size_t groups, float k_alpha, IntQueries& out);

}  // namespace rq::attn_detail
