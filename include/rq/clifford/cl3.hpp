// The Clifford algebra Cl(3,0): multivectors over the basis 1, e1, e2, e3, e12, e13, e23, e123.
// Blades are indexed by bitmask (bit 0 = e1, bit 1 = e2, bit 2 = e3), so the geometric product's
// signs are computed mechanically (count of swaps to sort the basis vectors), never typed by hand.
// Used for setup and tests; hot paths use the 3x3 matrix a rotor induces.
#pragma once

#include <array>
#include <cstddef>

namespace rq::cl3 {

/// Blade bitmasks, named. Storage order of Multivector::c is by bitmask.
enum Blade : unsigned { kScalar = 0, kE1 = 1, kE2 = 2, kE12 = 3, kE3 = 4, kE13 = 5, kE23 = 6, kE123 = 7 };

/// Grade (number of basis vectors) of a blade bitmask.
constexpr int blade_grade(unsigned mask) { return static_cast<int>((mask & 1u) + ((mask >> 1) & 1u) + ((mask >> 2) & 1u)); }

/// Sign of the product e_a * e_b of two blades (bitmasks) in Cl(3,0); the result blade is a ^ b.
int blade_product_sign(unsigned a, unsigned b);

/// A general multivector: 8 coefficients indexed by blade bitmask.
struct Multivector {
  std::array<double, 8> c{};

  static Multivector scalar(double s);
  static Multivector vector(double x, double y, double z);
  static Multivector bivector(double b12, double b13, double b23);

  double& operator[](unsigned blade) { return c[blade]; }
  double operator[](unsigned blade) const { return c[blade]; }

  Multivector operator+(const Multivector& o) const;
  Multivector operator-(const Multivector& o) const;
  Multivector operator*(double s) const;
  /// Full geometric product.
  Multivector operator*(const Multivector& o) const;

  /// Reverse: reverses the order of basis vectors in each blade (grades 2 and 3 flip sign).
  Multivector reverse() const;
  /// Part of grade g (0..3).
  Multivector grade(int g) const;
  /// Euclidean norm of the coefficient vector.
  double norm() const;
  /// Largest absolute coefficient among blades of grade g.
  double max_abs_grade(int g) const;
};

/// An even multivector s + a e12 + b e13 + c e23 with R R~ = 1: a rotation of R^3.
struct Rotor {
  Multivector mv;  // only grades 0 and 2 are non-zero

  /// exp(-angle/2 * B^) for a bivector plane (b12, b13, b23), normalized internally.
  static Rotor from_plane_angle(double b12, double b13, double b23, double angle);
  /// From an even multivector; throws rq::InvalidArgument if its even part is zero.
  static Rotor normalized(const Multivector& even);
  /// From unit quaternion components (w, x, y, z) mapped onto (1, -e23, e13, -e12): the same
  /// rotation as the quaternion's.
  static Rotor from_quaternion(double w, double x, double y, double z);

  /// R * other (composition: apply `other` first, then this).
  Rotor compose(const Rotor& other) const;
  /// R v R~ for a grade-1 vector, computed with the full geometric product.
  Multivector sandwich(const Multivector& v) const;
  /// Row-major 3x3 matrix M with M x = R x R~.
  std::array<double, 9> matrix() const;
};

}  // namespace rq::cl3
