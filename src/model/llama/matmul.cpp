// Batched matmul over quantized weights: dequantize a block of rows into float32 once, then dot
// every token's activation row with it. The inner kernel takes 4 weight rows x 1 activation row.
#include "matmul.hpp"

#include <immintrin.h>

#include <algorithm>
#include <string>
#include <vector>

#include "rq/core/errors.hpp"
#include "rq/threads/thread_pool.hpp"

namespace rq::model::detail {

namespace {

constexpr size_t kRowBlock = 16;

// ---- scalar kernels (same summation structure as the AVX2 ones: 8 lanes, then a tree) ----
float hsum8_scalar(const float* l) {
  return ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
}

void dot4_scalar(const float* w, size_t ld, const float* x, size_t n, float* out) {
  for (size_t r = 0; r < 4; ++r) {
    float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t j = 0;
    for (; j + 8 <= n; j += 8)
      for (size_t l = 0; l < 8; ++l) lanes[l] += w[r * ld + j + l] * x[j + l];
    float s = hsum8_scalar(lanes);
    for (; j < n; ++j) s += w[r * ld + j] * x[j];
    out[r] = s;
  }
}

// ---- AVX2 + FMA kernels ----
__attribute__((target("avx2,fma"))) inline float hsum8_avx(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);                 // l0+l4, l1+l5, l2+l6, l3+l7
  __m128 sh = _mm_movehl_ps(s, s);               // l2+l6, l3+l7
  __m128 s2 = _mm_add_ps(s, sh);                 // (l0+l4)+(l2+l6), (l1+l5)+(l3+l7)
  __m128 s3 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  return _mm_cvtss_f32(s3);
}

__attribute__((target("avx2,fma"))) void dot4_avx2(const float* w, size_t ld, const float* x, size_t n, float* out) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 xv = _mm256_loadu_ps(x + j);
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), xv, a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + ld + j), xv, a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 2 * ld + j), xv, a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 3 * ld + j), xv, a3);
  }
  float s[4] = {hsum8_avx(a0), hsum8_avx(a1), hsum8_avx(a2), hsum8_avx(a3)};
  for (; j < n; ++j)
    for (size_t r = 0; r < 4; ++r) s[r] += w[r * ld + j] * x[j];
  for (size_t r = 0; r < 4; ++r) out[r] = s[r];
}

// 4 weight rows x 3 activation rows: out[t * ldo + r]. Same per-output summation as dot4_avx2.
__attribute__((target("avx2,fma"))) void dot4x3_avx2(const float* w, size_t ld, const float* x, size_t ldx, size_t n,
                                                    float* out, size_t ldo) {
  __m256 a[3][4];
  for (auto& row : a)
    for (auto& v : row) v = _mm256_setzero_ps();
  size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + ldx + j), x2 = _mm256_loadu_ps(x + 2 * ldx + j);
    for (size_t r = 0; r < 4; ++r) {
      const __m256 wv = _mm256_loadu_ps(w + r * ld + j);
      a[0][r] = _mm256_fmadd_ps(wv, x0, a[0][r]);
      a[1][r] = _mm256_fmadd_ps(wv, x1, a[1][r]);
      a[2][r] = _mm256_fmadd_ps(wv, x2, a[2][r]);
    }
  }
  for (size_t t = 0; t < 3; ++t) {
    for (size_t r = 0; r < 4; ++r) {
      float s = hsum8_avx(a[t][r]);
      for (size_t jj = j; jj < n; ++jj) s += w[r * ld + jj] * x[t * ldx + jj];
      out[t * ldo + r] = s;
    }
  }
}

__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, size_t n) {
  __m256 acc = _mm256_setzero_ps();
  size_t j = 0;
  for (; j + 8 <= n; j += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), acc);
  float s = hsum8_avx(acc);
  for (; j < n; ++j) s += a[j] * b[j];
  return s;
}

float dot_scalar(const float* a, const float* b, size_t n) {
  float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (size_t l = 0; l < 8; ++l) lanes[l] += a[j + l] * b[j + l];
  float s = hsum8_scalar(lanes);
  for (; j < n; ++j) s += a[j] * b[j];
  return s;
}

bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

}  // namespace

float dot_f32(const float* a, const float* b, size_t n) { return has_avx2() ? dot_avx2(a, b, n) : dot_scalar(a, b, n); }

void matmul(const Weight& w, size_t n, const float* x, float* y) {
  if (w.data == nullptr) throw InvalidArgument("matmul: null weight");
  if (n == 0) return;
  // Check the type up front (nothing throws inside the threaded loop).
  if (!is_compute_supported(w.type)) {
    throw FormatError(std::string("matmul: unsupported tensor type ") + type_name(w.type));
  }
  const size_t rows = w.rows, cols = w.cols;
  // One token: the tensor library's fused quantized matvec, except for q8_0 whose matvec measured
  // ~20x slower than dequantize+dot here (see docs/model.md).
  if (n == 1 && w.type != GgmlType::Q8_0) {
    matvec(w.type, w.data, rows, cols, x, y);
    return;
  }
  const size_t rb = row_bytes(w.type, cols);
  const auto* base = static_cast<const uint8_t*>(w.data);
  const bool avx = has_avx2();
  const size_t n_blocks = (rows + kRowBlock - 1) / kRowBlock;
  parallel_for(n_blocks, 1, [&](size_t block_begin, size_t block_end) {
    thread_local std::vector<float> wbuf;  // kRowBlock x cols, dequantized rows
    wbuf.resize(kRowBlock * cols);
    float out4[4];
    for (size_t b = block_begin; b < block_end; ++b) {
      const size_t r0 = static_cast<size_t>(b) * kRowBlock;
      const size_t nr = std::min(kRowBlock, rows - r0);
      for (size_t r = 0; r < nr; ++r) dequantize_row(w.type, base + (r0 + r) * rb, &wbuf[r * cols], cols);
      for (size_t r = nr; r < kRowBlock; ++r) std::fill(&wbuf[r * cols], &wbuf[(r + 1) * cols], 0.0f);
      size_t t = 0;
      if (avx) {
        float tile[3 * 4];  // 3 tokens x 4 rows
        for (; t + 3 <= n; t += 3) {
          for (size_t r = 0; r < nr; r += 4) {
            dot4x3_avx2(&wbuf[r * cols], cols, x + t * cols, cols, cols, tile, 4);
            for (size_t tt = 0; tt < 3; ++tt)
              for (size_t i = 0; i < 4 && r + i < nr; ++i) y[(t + tt) * rows + r0 + r + i] = tile[tt * 4 + i];
          }
        }
      }
      for (; t < n; ++t) {
        const float* xt = x + t * cols;
        float* yt = y + t * rows + r0;
        for (size_t r = 0; r < nr; r += 4) {
          if (avx) {
            dot4_avx2(&wbuf[r * cols], cols, xt, cols, out4);
          } else {
            dot4_scalar(&wbuf[r * cols], cols, xt, cols, out4);
          }
          for (size_t i = 0; i < 4 && r + i < nr; ++i) yt[r + i] = out4[i];
        }
      }
    }
  });
}

}  // namespace rq::model::detail
