// Orthogonal rotations applied before scalar quantization. A rotation maps a d-vector, zero-padded
// to rotated_dim() = n >= d coordinates, by an n x n orthogonal matrix Pi. Its parameters are data
// (parameters() / the concrete classes' accessors), generated from a RotationSeed or loaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rq {

enum class RotationKind : uint8_t {
  None,        // identity
  Rotor,       // Cl(3,0) rotors on groups of 3 (RotorQuant)
  Planar,      // 2x2 Givens on pairs (PlanarQuant)
  IsoFast,     // 4x4 left quaternion multiply q_L (x) v (IsoQuant fast)
  IsoFull,     // 4x4 q_L (x) v (x) conj(q_R) (IsoQuant full)
  Turbo,       // randomized Walsh-Hadamard D(s2) H/sqrt(n) D(s1), n = next power of 2 (TurboQuant)
  TurboDense,  // Haar-random dense d x d (TurboQuant paper)
  Hadamard,    // plain D(s1) H/sqrt(n): the mix used by the q4h baseline
};

/// Lower-case name of a rotation kind ("rotor", "turbo", ...).
const char* rotation_name(RotationKind kind);

/// Whether a vector is a key or a value: K and V get independent rotations.
enum class KvRole : uint8_t { K = 0, V = 1 };

/// Everything that selects one rotation's random parameters.
struct RotationSeed {
  uint64_t seed = 0x0ddba11c0ffee5ull;
  uint32_t layer = 0;
  uint32_t head = 0;
  KvRole role = KvRole::K;
};

class Rotation {
 public:
  virtual ~Rotation() = default;

  virtual RotationKind kind() const noexcept = 0;
  /// Input dimension d.
  size_t dim() const noexcept { return dim_; }
  /// Coordinates after rotation (d plus padding).
  size_t rotated_dim() const noexcept { return rotated_dim_; }

  /// y[n] = Pi * pad(x[d]). x and y must not overlap (likewise for apply_inverse and apply_padded).
  virtual void apply(const float* x, float* y) const = 0;
  /// x[d] = first d coordinates of Pi^T y[n].
  virtual void apply_inverse(const float* y, float* x) const = 0;
  /// y[n] = Pi * x[n]: like apply, but every one of the n input coordinates is given (the padding
  /// need not be zero). Used to build matrix() including the padding columns.
  virtual void apply_padded(const float* x, float* y) const = 0;
  /// The rotation's parameters as one flat array (layout documented per kind in docs/formats.md).
  virtual std::vector<float> parameters() const = 0;

  /// Dense n x n matrix, row-major, built by applying the rotation to basis vectors (tests, GPU).
  std::vector<double> matrix() const;

 protected:
  Rotation(size_t dim, size_t rotated_dim) : dim_(dim), rotated_dim_(rotated_dim) {}

 private:
  size_t dim_;
  size_t rotated_dim_;
};

/// Coordinates a rotation of `kind` stores for dimension d (d padded to its block structure).
size_t rotated_dim_for(RotationKind kind, size_t dim);

/// Build the rotation of `kind` for dimension d (>= 2 for all but None, which takes d >= 1) from
/// its seed. Throws rq::InvalidArgument for d = 0.
std::unique_ptr<Rotation> make_rotation(RotationKind kind, size_t dim, const RotationSeed& seed);

/// Rebuild a rotation from parameters() of one of the same kind and dimension (calibrated files).
std::unique_ptr<Rotation> rotation_from_parameters(RotationKind kind, size_t dim, const std::vector<float>& params);

}  // namespace rq
