// Cl(3,0) multivector algebra over a bitmask blade basis. The geometric product's signs come from
// counting the transpositions needed to sort the concatenated basis vectors (every e_i^2 = +1).
#include "rq/clifford/cl3.hpp"

#include <cmath>

#include "rq/core/errors.hpp"

namespace rq::cl3 {

int blade_product_sign(unsigned a, unsigned b) {
  // e_a e_b: each basis vector of a must move past every basis vector of b with a lower index
  // to reach canonical order; each such move is one swap (one sign flip). Equal vectors then
  // meet and square to +1 (Euclidean signature).
  int swaps = 0;
  for (unsigned rest = a >> 1; rest != 0; rest >>= 1) {
    const unsigned overlap = rest & b;
    swaps += static_cast<int>((overlap & 1u) + ((overlap >> 1) & 1u) + ((overlap >> 2) & 1u));
  }
  return (swaps % 2 == 0) ? 1 : -1;
}

Multivector Multivector::scalar(double s) {
  Multivector m;
  m.c[kScalar] = s;
  return m;
}

Multivector Multivector::vector(double x, double y, double z) {
  Multivector m;
  m.c[kE1] = x;
  m.c[kE2] = y;
  m.c[kE3] = z;
  return m;
}

Multivector Multivector::bivector(double b12, double b13, double b23) {
  Multivector m;
  m.c[kE12] = b12;
  m.c[kE13] = b13;
  m.c[kE23] = b23;
  return m;
}

Multivector Multivector::operator+(const Multivector& o) const {
  Multivector r;
  for (unsigned i = 0; i < 8; ++i) r.c[i] = c[i] + o.c[i];
  return r;
}

Multivector Multivector::operator-(const Multivector& o) const {
  Multivector r;
  for (unsigned i = 0; i < 8; ++i) r.c[i] = c[i] - o.c[i];
  return r;
}

Multivector Multivector::operator*(double s) const {
  Multivector r;
  for (unsigned i = 0; i < 8; ++i) r.c[i] = c[i] * s;
  return r;
}

Multivector Multivector::operator*(const Multivector& o) const {
  Multivector r;
  for (unsigned a = 0; a < 8; ++a) {
    if (c[a] == 0.0) continue;
    for (unsigned b = 0; b < 8; ++b) {
      r.c[a ^ b] += blade_product_sign(a, b) * c[a] * o.c[b];
    }
  }
  return r;
}

Multivector Multivector::reverse() const {
  // Reversing k basis vectors takes k(k-1)/2 swaps: grades 2 and 3 flip sign.
  Multivector r;
  for (unsigned i = 0; i < 8; ++i) {
    const int k = blade_grade(i);
    r.c[i] = ((k * (k - 1) / 2) % 2 == 0) ? c[i] : -c[i];
  }
  return r;
}

Multivector Multivector::grade(int g) const {
  if (g < 0 || g > 3) throw InvalidArgument("cl3::Multivector::grade: grade must be 0..3");
  Multivector r;
  for (unsigned i = 0; i < 8; ++i) {
    if (blade_grade(i) == g) r.c[i] = c[i];
  }
  return r;
}

double Multivector::norm() const {
  double s = 0.0;
  for (double v : c) s += v * v;
  return std::sqrt(s);
}

double Multivector::max_abs_grade(int g) const {
  if (g < 0 || g > 3) throw InvalidArgument("cl3::Multivector::max_abs_grade: grade must be 0..3");
  double m = 0.0;
  for (unsigned i = 0; i < 8; ++i) {
    if (blade_grade(i) == g) m = std::fmax(m, std::fabs(c[i]));
  }
  return m;
}

Rotor Rotor::from_plane_angle(double b12, double b13, double b23, double angle) {
  const double len = std::sqrt(b12 * b12 + b13 * b13 + b23 * b23);
  if (!(len > 0.0) || !std::isfinite(len) || !std::isfinite(angle)) {
    throw InvalidArgument("cl3::Rotor::from_plane_angle: the plane bivector must be finite and non-zero");
  }
  // exp(-angle/2 * B^) = cos(angle/2) - sin(angle/2) B^, since a unit bivector squares to -1.
  const Multivector unit_plane = Multivector::bivector(b12 / len, b13 / len, b23 / len);
  Rotor r;
  r.mv = Multivector::scalar(std::cos(angle / 2)) - unit_plane * std::sin(angle / 2);
  return r;
}

Rotor Rotor::normalized(const Multivector& even) {
  const Multivector e = even.grade(0) + even.grade(2);
  const double n = e.norm();
  if (!(n > 0.0) || !std::isfinite(n)) {
    throw InvalidArgument("cl3::Rotor::normalized: the even part must be finite and non-zero");
  }
  Rotor r;
  r.mv = e * (1.0 / n);
  return r;
}

Rotor Rotor::from_quaternion(double w, double x, double y, double z) {
  // Quaternion units i, j, k act as rotations about e1, e2, e3: i <-> -e23, j <-> e13, k <-> -e12.
  Multivector m = Multivector::scalar(w) + Multivector::bivector(-z, y, -x);
  return normalized(m);
}

Rotor Rotor::compose(const Rotor& other) const {
  Rotor r;
  r.mv = mv * other.mv;
  return r;
}

Multivector Rotor::sandwich(const Multivector& v) const { return mv * v * mv.reverse(); }

std::array<double, 9> Rotor::matrix() const {
  // Column j of M is the image of the basis vector e_j.
  std::array<double, 9> m{};
  const Multivector basis[3] = {Multivector::vector(1, 0, 0), Multivector::vector(0, 1, 0),
                                Multivector::vector(0, 0, 1)};
  for (int j = 0; j < 3; ++j) {
    const Multivector image = sandwich(basis[j]);
    m[0 * 3 + j] = image[kE1];
    m[1 * 3 + j] = image[kE2];
    m[2 * 3 + j] = image[kE3];
  }
  return m;
}

}  // namespace rq::cl3
