// Rotation factory, names, padded dimensions, the dense-matrix view and the identity rotation.
#include "rq/rotation/rotation.hpp"

#include <string>

#include "rotation_detail.hpp"
#include "rq/rotation/block_rotations.hpp"

namespace rq {

namespace {

// Largest input dimension any rotation accepts (keeps padded sizes far from overflow).
constexpr size_t kMaxDim = size_t{1} << 24;
// Largest rotated dimension matrix() materializes (n^2 doubles: 512 MiB).
constexpr size_t kMaxMatrixDim = 8192;

bool known_kind(RotationKind kind) {
  switch (kind) {
    case RotationKind::None:
    case RotationKind::Rotor:
    case RotationKind::Planar:
    case RotationKind::IsoFast:
    case RotationKind::IsoFull:
    case RotationKind::Turbo:
    case RotationKind::TurboDense:
    case RotationKind::Hadamard:
      return true;
  }
  return false;
}

void check_kind_and_dim(RotationKind kind, size_t dim) {
  if (!known_kind(kind)) {
    throw InvalidArgument("unknown rotation kind " + std::to_string(static_cast<unsigned>(kind)));
  }
  if (dim == 0) throw InvalidArgument(std::string("rotation '") + rotation_name(kind) + "': dim must be >= 1");
  if (dim == 1 && kind != RotationKind::None) {
    throw InvalidArgument(std::string("rotation '") + rotation_name(kind) + "': dim must be >= 2 (only 'none' takes 1)");
  }
  if (dim > kMaxDim) {
    throw InvalidArgument(std::string("rotation '") + rotation_name(kind) + "': dim " + std::to_string(dim) +
                          " exceeds the limit " + std::to_string(kMaxDim));
  }
}

size_t round_up(size_t d, size_t m) { return m * ((d + m - 1) / m); }

}  // namespace

const char* rotation_name(RotationKind kind) {
  switch (kind) {
    case RotationKind::None: return "none";
    case RotationKind::Rotor: return "rotor";
    case RotationKind::Planar: return "planar";
    case RotationKind::IsoFast: return "iso";
    case RotationKind::IsoFull: return "isofull";
    case RotationKind::Turbo: return "turbo";
    case RotationKind::TurboDense: return "turbodense";
    case RotationKind::Hadamard: return "hadamard";
  }
  return "unknown";
}

size_t rotated_dim_for(RotationKind kind, size_t dim) {
  check_kind_and_dim(kind, dim);
  switch (kind) {
    case RotationKind::None:
    case RotationKind::TurboDense:
    case RotationKind::Rotor:  // the partial last group's rotor keeps its pads at zero
      return dim;
    case RotationKind::Planar: return round_up(dim, 2);
    case RotationKind::IsoFast:
    case RotationKind::IsoFull:
      return round_up(dim, 4);
    case RotationKind::Turbo:
    case RotationKind::Hadamard: {
      size_t n = 1;
      while (n < dim) n <<= 1;
      return n;
    }
  }
  return dim;  // unreachable: check_kind_and_dim rejected unknown kinds
}

std::unique_ptr<Rotation> make_rotation(RotationKind kind, size_t dim, const RotationSeed& seed) {
  check_kind_and_dim(kind, dim);
  switch (kind) {
    case RotationKind::None: return std::make_unique<IdentityRotation>(dim);
    case RotationKind::Rotor: return std::make_unique<RotorRotation>(dim, seed);
    case RotationKind::Planar: return std::make_unique<PlanarRotation>(dim, seed);
    case RotationKind::IsoFast: return std::make_unique<IsoRotation>(dim, false, seed);
    case RotationKind::IsoFull: return std::make_unique<IsoRotation>(dim, true, seed);
    case RotationKind::Turbo: return std::make_unique<HadamardRotation>(dim, true, seed);
    case RotationKind::Hadamard: return std::make_unique<HadamardRotation>(dim, false, seed);
    case RotationKind::TurboDense: return std::make_unique<DenseRotation>(dim, seed);
  }
  throw InvalidArgument("unknown rotation kind");
}

std::unique_ptr<Rotation> rotation_from_parameters(RotationKind kind, size_t dim, const std::vector<float>& params) {
  check_kind_and_dim(kind, dim);
  switch (kind) {
    case RotationKind::None:
      rotation_detail::check_count("none", dim, params, 0, "none");
      return std::make_unique<IdentityRotation>(dim);
    case RotationKind::Rotor: return std::make_unique<RotorRotation>(dim, params);
    case RotationKind::Planar: return std::make_unique<PlanarRotation>(dim, params);
    case RotationKind::IsoFast: return std::make_unique<IsoRotation>(dim, false, params);
    case RotationKind::IsoFull: return std::make_unique<IsoRotation>(dim, true, params);
    case RotationKind::Turbo: return std::make_unique<HadamardRotation>(dim, true, params);
    case RotationKind::Hadamard: return std::make_unique<HadamardRotation>(dim, false, params);
    case RotationKind::TurboDense: return std::make_unique<DenseRotation>(dim, params);
  }
  throw InvalidArgument("unknown rotation kind");
}

std::vector<double> Rotation::matrix() const {
  const size_t n = rotated_dim();
  if (n > kMaxMatrixDim) {
    throw CapacityError("Rotation::matrix: n = " + std::to_string(n) + " exceeds " + std::to_string(kMaxMatrixDim));
  }
  std::vector<double> m(n * n);  // n x n, row-major
  std::vector<float> basis(n, 0.0f), image(n);
  for (size_t j = 0; j < n; ++j) {
    basis[j] = 1.0f;
    apply_padded(basis.data(), image.data());
    basis[j] = 0.0f;
    for (size_t i = 0; i < n; ++i) m[i * n + j] = image[i];
  }
  return m;
}

IdentityRotation::IdentityRotation(size_t dim) : Rotation(dim, dim) {}

void IdentityRotation::apply(const float* x, float* y) const {
  for (size_t i = 0; i < dim(); ++i) y[i] = x[i];
}

void IdentityRotation::apply_inverse(const float* y, float* x) const {
  for (size_t i = 0; i < dim(); ++i) x[i] = y[i];
}

void IdentityRotation::apply_padded(const float* x, float* y) const { apply(x, y); }

}  // namespace rq
