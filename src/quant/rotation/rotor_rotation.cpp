// RotorQuant: one Haar-uniform Cl(3,0) rotor per group of 3 coordinates. The rotors are the
// parameters; the 3x3 matrices used on the hot path are derived from them through the Clifford
// algebra (Rotor::matrix, i.e. R e_j R~), so the algebra is what defines the rotation.
//
// Pad-free last group (format version 2): when 3 does not divide d, the last group has r = d % 3
// real coordinates and 3 - r zero pads. Its rotor is chosen so that the pads stay zero: for r = 2
// a rotation in the e12 plane (about the pad axis e3, uniform angle), for r = 1 the identity (the
// one real coordinate has nowhere to go). So exactly d coordinates are rotated and stored.
#include <cmath>

#include "rotation_detail.hpp"
#include "rq/clifford/cl3.hpp"
#include "rq/rotation/block_rotations.hpp"

namespace rq {

namespace {

constexpr size_t kGroup = 3;
constexpr size_t kRotorFloats = 4;  // (s, e12, e13, e23)

size_t group_count(size_t dim) { return (dim + kGroup - 1) / kGroup; }

// y[3] = M[3x3] x[3]: 9 FMAs.
inline void mat3_apply(const float* m, const float* x, float* y) {
  const float x0 = x[0], x1 = x[1], x2 = x[2];
  y[0] = m[0] * x0 + m[1] * x1 + m[2] * x2;
  y[1] = m[3] * x0 + m[4] * x1 + m[5] * x2;
  y[2] = m[6] * x0 + m[7] * x1 + m[8] * x2;
}

// x[3] = M^T y[3]: 9 FMAs.
inline void mat3_apply_transposed(const float* m, const float* y, float* x) {
  const float y0 = y[0], y1 = y[1], y2 = y[2];
  x[0] = m[0] * y0 + m[3] * y1 + m[6] * y2;
  x[1] = m[1] * y0 + m[4] * y1 + m[7] * y2;
  x[2] = m[2] * y0 + m[5] * y1 + m[8] * y2;
}

// Forward over all groups of a d-dimensional x into y[d]; the partial last group reads its pads
// as zero and stores only its real coordinates (its rotor keeps the pads at zero).
void rotor_forward(const std::vector<float>& mats, size_t d, const float* x, float* y) {
  const size_t full = d / kGroup;
  for (size_t g = 0; g < full; ++g) mat3_apply(&mats[g * 9], x + g * kGroup, y + g * kGroup);
  if (full * kGroup < d) {
    float in[kGroup], out[kGroup];
    rotation_detail::load_block(x, d, full, kGroup, in);
    mat3_apply(&mats[full * 9], in, out);
    rotation_detail::store_block(out, d, full, kGroup, y);
  }
}

// Haar on SO(3): a uniform unit quaternion (4 normals, normalized), mapped onto a rotor.
cl3::Rotor haar_rotor(Rng& rng) {
  const double w = rng.normal(), qx = rng.normal(), qy = rng.normal(), qz = rng.normal();
  return cl3::Rotor::from_quaternion(w, qx, qy, qz);
}

// The rotor of the partial last group (r = d % 3 real coordinates): uniform in the e12 plane for
// r = 2 (two normals, normalized: a uniform unit complex number), the identity for r = 1.
cl3::Rotor partial_group_rotor(size_t real, Rng& rng) {
  if (real == 1) return cl3::Rotor::from_quaternion(1.0, 0.0, 0.0, 0.0);
  double c = 0.0, s = 0.0;
  while (c * c + s * s < 1e-300) {
    c = rng.normal();
    s = rng.normal();
  }
  const double n = std::sqrt(c * c + s * s);
  cl3::Multivector even = cl3::Multivector::scalar(c / n) + cl3::Multivector::bivector(s / n, 0.0, 0.0);
  return cl3::Rotor::normalized(even);
}

// Throws InvalidArgument unless the rotor of a partial last group keeps its pads at zero: only
// the e12 plane for 2 real coordinates, only the e23 plane (pads among themselves) for 1.
void check_partial_group(size_t dim, const float* rotor) {
  const size_t real = dim % kGroup;
  const bool ok = real == 2 ? (rotor[2] == 0.0f && rotor[3] == 0.0f) : (rotor[1] == 0.0f && rotor[2] == 0.0f);
  if (!ok) {
    throw InvalidArgument("rotation 'rotor' with dim " + std::to_string(dim) + ": the last group has " +
                          std::to_string(real) + " real coordinate(s) and its rotor must keep the pad at zero (" +
                          (real == 2 ? "e13 = e23 = 0" : "e12 = e13 = 0") + ")");
  }
}

}  // namespace

RotorRotation::RotorRotation(size_t dim, const RotationSeed& seed) : Rotation(dim, dim) {
  const size_t g_count = groups();
  rotors_.resize(g_count * kRotorFloats);  // groups x (s, e12, e13, e23)
  for (size_t g = 0; g < g_count; ++g) {
    Rng rng = rotation_detail::stream(seed, rotation_detail::Salt::Rotor, g);
    const bool partial = (g + 1) * kGroup > dim;
    const cl3::Rotor r = partial ? partial_group_rotor(dim % kGroup, rng) : haar_rotor(rng);
    float* out = &rotors_[g * kRotorFloats];
    out[0] = static_cast<float>(r.mv[cl3::kScalar]);
    out[1] = static_cast<float>(r.mv[cl3::kE12]);
    out[2] = static_cast<float>(r.mv[cl3::kE13]);
    out[3] = static_cast<float>(r.mv[cl3::kE23]);
    rotation_detail::normalize_unit(out, kRotorFloats, "rotor");
  }
  build_matrices();
}

RotorRotation::RotorRotation(size_t dim, const std::vector<float>& rotors)
    : Rotation(dim, dim), rotors_(rotors) {
  rotation_detail::check_count("rotor", dim, rotors_, groups() * kRotorFloats, "4 per group: s, e12, e13, e23");
  rotation_detail::check_finite("rotor", rotors_);
  for (size_t g = 0; g < groups(); ++g) rotation_detail::normalize_unit(&rotors_[g * kRotorFloats], kRotorFloats, "rotor");
  if (dim % kGroup != 0) check_partial_group(dim, &rotors_[(groups() - 1) * kRotorFloats]);
  build_matrices();
}

void RotorRotation::build_matrices() {
  const size_t g_count = groups();
  matrices_.resize(g_count * 9);  // groups x 3x3 row-major
  for (size_t g = 0; g < g_count; ++g) {
    const float* p = &rotors_[g * kRotorFloats];
    cl3::Multivector even = cl3::Multivector::scalar(p[0]) + cl3::Multivector::bivector(p[1], p[2], p[3]);
    const std::array<double, 9> m = cl3::Rotor::normalized(even).matrix();
    for (size_t i = 0; i < 9; ++i) matrices_[g * 9 + i] = static_cast<float>(m[i]);
  }
}

size_t RotorRotation::groups() const noexcept { return group_count(dim()); }

void RotorRotation::apply(const float* x, float* y) const { rotor_forward(matrices_, dim(), x, y); }

void RotorRotation::apply_padded(const float* x, float* y) const { rotor_forward(matrices_, dim(), x, y); }

void RotorRotation::apply_inverse(const float* y, float* x) const {
  const size_t g_count = groups();
  const size_t d = dim();
  const size_t full = d / kGroup;
  for (size_t g = 0; g < full; ++g) mat3_apply_transposed(&matrices_[g * 9], y + g * kGroup, x + g * kGroup);
  for (size_t g = full; g < g_count; ++g) {
    float in[kGroup], out[kGroup];
    rotation_detail::load_block(y, d, g, kGroup, in);
    mat3_apply_transposed(&matrices_[g * 9], in, out);
    rotation_detail::store_block(out, d, g, kGroup, x);
  }
}

}  // namespace rq
