// Concrete rotations, exposed so fast paths (SIMD, CUDA) can read their parameters directly.
#pragma once

#include <array>
#include <vector>

#include "rq/rotation/rotation.hpp"

namespace rq {

/// Identity.
class IdentityRotation final : public Rotation {
 public:
  explicit IdentityRotation(size_t dim);
  RotationKind kind() const noexcept override { return RotationKind::None; }
  void apply(const float* x, float* y) const override;
  void apply_inverse(const float* y, float* x) const override;
  void apply_padded(const float* x, float* y) const override;
  std::vector<float> parameters() const override { return {}; }
};

/// RotorQuant: G = ceil(d/3) groups of 3 coordinates, the last zero-padded; one Haar-uniform
/// Cl(3,0) rotor per group, applied through its 3x3 matrix. The partial last group's rotor keeps
/// the pads at zero (e12 plane for d % 3 = 2, identity for d % 3 = 1; parameters that do not are
/// refused), so rotated_dim() = d: nothing is padded or stored beyond d. parameters(): per group
/// the rotor (s, e12, e13, e23) followed by nothing else; matrices() holds the induced 3x3 matrices.
class RotorRotation final : public Rotation {
 public:
  RotorRotation(size_t dim, const RotationSeed& seed);
  /// From rotors: 4 floats (s, e12, e13, e23) per group, normalized on load.
  RotorRotation(size_t dim, const std::vector<float>& rotors);
  RotationKind kind() const noexcept override { return RotationKind::Rotor; }
  void apply(const float* x, float* y) const override;
  void apply_inverse(const float* y, float* x) const override;
  void apply_padded(const float* x, float* y) const override;
  std::vector<float> parameters() const override { return rotors_; }
  size_t groups() const noexcept;
  /// Row-major 3x3 matrices, 9 floats per group: y_g = M_g x_g.
  const std::vector<float>& matrices() const noexcept { return matrices_; }

 private:
  void build_matrices();
  std::vector<float> rotors_;    // groups x 4
  std::vector<float> matrices_;  // groups x 9
};

/// PlanarQuant: 2x2 Givens rotation per pair (d padded to even). parameters(): (cos, sin) per pair.
class PlanarRotation final : public Rotation {
 public:
  PlanarRotation(size_t dim, const RotationSeed& seed);
  PlanarRotation(size_t dim, const std::vector<float>& cos_sin);
  RotationKind kind() const noexcept override { return RotationKind::Planar; }
  void apply(const float* x, float* y) const override;
  void apply_inverse(const float* y, float* x) const override;
  void apply_padded(const float* x, float* y) const override;
  std::vector<float> parameters() const override { return cos_sin_; }
  const std::vector<float>& cos_sin() const noexcept { return cos_sin_; }

 private:
  std::vector<float> cos_sin_;  // pairs x 2
};

/// IsoQuant: per quad of coordinates (d padded to a multiple of 4), v -> q_L (x) v (fast) or
/// q_L (x) v (x) conj(q_R) (full), q unit quaternions. parameters(): per quad q_L (w,x,y,z) then,
/// for full, q_R (w,x,y,z). matrices(): the induced 4x4 matrices, 16 floats per quad, row-major.
class IsoRotation final : public Rotation {
 public:
  IsoRotation(size_t dim, bool full, const RotationSeed& seed);
  IsoRotation(size_t dim, bool full, const std::vector<float>& quaternions);
  RotationKind kind() const noexcept override { return full_ ? RotationKind::IsoFull : RotationKind::IsoFast; }
  void apply(const float* x, float* y) const override;
  void apply_inverse(const float* y, float* x) const override;
  void apply_padded(const float* x, float* y) const override;
  std::vector<float> parameters() const override { return quaternions_; }
  const std::vector<float>& matrices() const noexcept { return matrices_; }

 private:
  void build_matrices();
  bool full_;
  std::vector<float> quaternions_;
  std::vector<float> matrices_;  // quads x 4x4, row-major
  std::vector<float> columns_;   // quads x 4x4, column-major (the same matrices, for apply)
};

/// TurboQuant structured: y = D(s2) H/sqrt(n) D(s1) pad(x), n = next power of two >= d, H the
/// Sylvester Walsh-Hadamard matrix. With `second_signs` false (RotationKind::Hadamard) s2 = 1.
/// parameters(): s1 (n floats of +-1) then s2 (n floats).
class HadamardRotation final : public Rotation {
 public:
  HadamardRotation(size_t dim, bool second_signs, const RotationSeed& seed);
  HadamardRotation(size_t dim, bool second_signs, const std::vector<float>& signs);
  RotationKind kind() const noexcept override { return second_signs_ ? RotationKind::Turbo : RotationKind::Hadamard; }
  void apply(const float* x, float* y) const override;
  void apply_inverse(const float* y, float* x) const override;
  void apply_padded(const float* x, float* y) const override;
  std::vector<float> parameters() const override;
  const std::vector<float>& signs1() const noexcept { return s1_; }
  const std::vector<float>& signs2() const noexcept { return s2_; }

 private:
  bool second_signs_;
  std::vector<float> s1_, s2_;
};

/// In-place unnormalized fast Walsh-Hadamard transform of n = 2^k floats.
void fwht_inplace(float* v, size_t n);

/// TurboQuant paper: Haar-random dense d x d orthogonal matrix (QR of a Gaussian matrix with the
/// signs of diag(R) folded in). parameters(): the matrix, row-major.
class DenseRotation final : public Rotation {
 public:
  DenseRotation(size_t dim, const RotationSeed& seed);
  DenseRotation(size_t dim, const std::vector<float>& matrix);
  RotationKind kind() const noexcept override { return RotationKind::TurboDense; }
  void apply(const float* x, float* y) const override;
  void apply_inverse(const float* y, float* x) const override;
  void apply_padded(const float* x, float* y) const override;
  std::vector<float> parameters() const override { return matrix_; }
  const std::vector<float>& dense_matrix() const noexcept { return matrix_; }

 private:
  std::vector<float> matrix_;  // d x d row-major
};

}  // namespace rq
