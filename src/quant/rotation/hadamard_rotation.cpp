// TurboQuant structured rotation: y = D(s2) H/sqrt(n) D(s1) pad(x), n = next power of two >= d,
// H the (symmetric) Sylvester Walsh-Hadamard matrix. Inverse: x = D(s1) H/sqrt(n) D(s2) y.
#include <cmath>
#include <string>

#include "rotation_detail.hpp"
#include "rq/rotation/block_rotations.hpp"

namespace rq {

namespace {

size_t next_pow2(size_t d) {
  size_t n = 1;
  while (n < d) n <<= 1;
  return n;
}

bool is_pow2(size_t n) { return n != 0 && (n & (n - 1)) == 0; }

// y[n] = D(s2) H/sqrt(n) D(s1) x, x has in_len given coordinates (the rest are zero).
void hadamard_forward(const std::vector<float>& s1, const std::vector<float>& s2, size_t in_len, const float* x,
                      float* y) {
  const size_t n = s1.size();
  const size_t given = in_len < n ? in_len : n;
  for (size_t i = 0; i < given; ++i) y[i] = x[i] * s1[i];
  for (size_t i = given; i < n; ++i) y[i] = 0.0f;
  fwht_inplace(y, n);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
  for (size_t i = 0; i < n; ++i) y[i] *= s2[i] * scale;
}

}  // namespace

// Compiled for AVX2 and for the baseline, picked at load time (function multiversioning); additions
// happen in the same order in every clone, so results are identical.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
void fwht_inplace(float* v, size_t n) {
  if (!is_pow2(n)) throw InvalidArgument("fwht_inplace: n = " + std::to_string(n) + " is not a power of two");
  if (n < 8) {
    // n = 1, 2, 4: plain butterflies.
    for (size_t half = 1; half < n; half <<= 1) {
      for (size_t block = 0; block < n; block += 2 * half) {
        for (size_t i = block; i < block + half; ++i) {
          const float a = v[i], b = v[i + half];
          v[i] = a + b;
          v[i + half] = a - b;
        }
      }
    }
    return;
  }
  // Stages half = 1, 2, 4 as one straight-line radix-8 butterfly per block of 8.
  for (size_t b = 0; b < n; b += 8) {
    float* p = v + b;
    const float a0 = p[0] + p[1], a1 = p[0] - p[1], a2 = p[2] + p[3], a3 = p[2] - p[3];
    const float a4 = p[4] + p[5], a5 = p[4] - p[5], a6 = p[6] + p[7], a7 = p[6] - p[7];
    const float c0 = a0 + a2, c1 = a1 + a3, c2 = a0 - a2, c3 = a1 - a3;
    const float c4 = a4 + a6, c5 = a5 + a7, c6 = a4 - a6, c7 = a5 - a7;
    p[0] = c0 + c4;
    p[1] = c1 + c5;
    p[2] = c2 + c6;
    p[3] = c3 + c7;
    p[4] = c0 - c4;
    p[5] = c1 - c5;
    p[6] = c2 - c6;
    p[7] = c3 - c7;
  }
  // Remaining stages (half >= 8, a multiple of 4): contiguous runs in fixed 4-wide chunks, which
  // the compiler vectorizes without runtime trip-count checks.
  for (size_t half = 8; half < n; half <<= 1) {
    for (size_t block = 0; block < n; block += 2 * half) {
      float* lo = v + block;
      float* hi = lo + half;
      for (size_t i = 0; i < half; i += 4) {
        float a[4], b[4];
        for (size_t k = 0; k < 4; ++k) a[k] = lo[i + k], b[k] = hi[i + k];
        for (size_t k = 0; k < 4; ++k) lo[i + k] = a[k] + b[k], hi[i + k] = a[k] - b[k];
      }
    }
  }
}

HadamardRotation::HadamardRotation(size_t dim, bool second_signs, const RotationSeed& seed)
    : Rotation(dim, next_pow2(dim)), second_signs_(second_signs) {
  const size_t n = rotated_dim();
  Rng rng = rotation_detail::stream(seed, second_signs_ ? rotation_detail::Salt::Turbo : rotation_detail::Salt::Hadamard, 0);
  s1_.resize(n);  // n x +-1
  s2_.assign(n, 1.0f);
  for (size_t i = 0; i < n; ++i) s1_[i] = rng.sign();
  if (second_signs_) {
    for (size_t i = 0; i < n; ++i) s2_[i] = rng.sign();
  }
}

HadamardRotation::HadamardRotation(size_t dim, bool second_signs, const std::vector<float>& signs)
    : Rotation(dim, next_pow2(dim)), second_signs_(second_signs) {
  const char* name = second_signs_ ? "turbo" : "hadamard";
  const size_t n = rotated_dim();
  rotation_detail::check_count(name, dim, signs, 2 * n, "s1 then s2, n = next power of two >= dim, each +-1");
  for (size_t i = 0; i < 2 * n; ++i) {
    if (signs[i] != 1.0f && signs[i] != -1.0f) {
      throw InvalidArgument(std::string("rotation '") + name + "': sign parameters must be +1 or -1");
    }
    if (!second_signs_ && i >= n && signs[i] != 1.0f) {
      throw InvalidArgument("rotation 'hadamard': s2 must be all +1 (use 'turbo' for random s2)");
    }
  }
  s1_.assign(signs.begin(), signs.begin() + static_cast<std::ptrdiff_t>(n));
  s2_.assign(signs.begin() + static_cast<std::ptrdiff_t>(n), signs.end());
}

std::vector<float> HadamardRotation::parameters() const {
  std::vector<float> p(s1_);
  p.insert(p.end(), s2_.begin(), s2_.end());
  return p;
}

void HadamardRotation::apply(const float* x, float* y) const { hadamard_forward(s1_, s2_, dim(), x, y); }

void HadamardRotation::apply_padded(const float* x, float* y) const {
  hadamard_forward(s1_, s2_, rotated_dim(), x, y);
}

void HadamardRotation::apply_inverse(const float* y, float* x) const {
  // Pi^T = D(s1) H/sqrt(n) D(s2) (H is symmetric); x keeps the first d coordinates.
  const size_t n = rotated_dim();
  thread_local std::vector<float> scratch;
  scratch.resize(n);  // n
  for (size_t i = 0; i < n; ++i) scratch[i] = y[i] * s2_[i];
  fwht_inplace(scratch.data(), n);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
  for (size_t i = 0; i < dim(); ++i) x[i] = scratch[i] * s1_[i] * scale;
}

}  // namespace rq
