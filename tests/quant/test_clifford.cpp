// Cl(3,0) algebra: product signs, associativity, reverse, rotors, sandwich and induced matrices.
#include <gtest/gtest.h>

#include <array>
#include <cmath>

#include "rq/clifford/cl3.hpp"
#include "rq/core/errors.hpp"
#include "rq/core/rng.hpp"

namespace {

using rq::cl3::Multivector;
using rq::cl3::Rotor;

Multivector random_mv(rq::Rng& rng) {
  Multivector m;
  for (double& c : m.c) c = rng.normal();
  return m;
}

Rotor random_rotor(rq::Rng& rng) {
  return Rotor::from_quaternion(rng.normal(), rng.normal(), rng.normal(), rng.normal());
}

std::array<double, 3> mat_vec(const std::array<double, 9>& m, const std::array<double, 3>& v) {
  return {m[0] * v[0] + m[1] * v[1] + m[2] * v[2], m[3] * v[0] + m[4] * v[1] + m[5] * v[2],
          m[6] * v[0] + m[7] * v[1] + m[8] * v[2]};
}

std::array<double, 9> mat_mul(const std::array<double, 9>& a, const std::array<double, 9>& b) {
  std::array<double, 9> c{};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 3; ++k) c[i * 3 + j] += a[i * 3 + k] * b[k * 3 + j];
  return c;
}

// Rotation of v by the unit quaternion q: q v q*, with Hamilton products written out.
std::array<double, 3> quat_rotate(double w, double x, double y, double z, const std::array<double, 3>& v) {
  const double n = std::sqrt(w * w + x * x + y * y + z * z);
  w /= n, x /= n, y /= n, z /= n;
  // t = q (0, v)
  const double tw = -x * v[0] - y * v[1] - z * v[2];
  const double tx = w * v[0] + y * v[2] - z * v[1];
  const double ty = w * v[1] - x * v[2] + z * v[0];
  const double tz = w * v[2] + x * v[1] - y * v[0];
  // t q*, q* = (w, -x, -y, -z)
  return {-tw * x + tx * w - ty * z + tz * y, -tw * y + tx * z + ty * w - tz * x,
          -tw * z - tx * y + ty * x + tz * w};
}

TEST(Clifford, BasisVectorsSquareToOneAndAnticommute) {
  using namespace rq::cl3;
  for (unsigned i : {kE1, kE2, kE3}) EXPECT_EQ(blade_product_sign(i, i), 1);
  EXPECT_EQ(blade_product_sign(kE1, kE2), 1);   // e1 e2 = e12
  EXPECT_EQ(blade_product_sign(kE2, kE1), -1);  // e2 e1 = -e12
  EXPECT_EQ(blade_product_sign(kE12, kE12), -1);
  EXPECT_EQ(blade_product_sign(kE13, kE13), -1);
  EXPECT_EQ(blade_product_sign(kE23, kE23), -1);
  EXPECT_EQ(blade_product_sign(kE123, kE123), -1);
  EXPECT_EQ(blade_product_sign(kE3, kE12), 1);   // e3 e1 e2 = e1 e2 e3 after two swaps
  EXPECT_EQ(blade_product_sign(kE2, kE13), -1);  // e2 e1 e3 = -e123
  for (unsigned a = 0; a < 8; ++a) EXPECT_EQ(blade_product_sign(kScalar, a), 1);
}

TEST(Clifford, ProductIsAssociativeAndDistributive) {
  rq::Rng rng(101);
  for (int t = 0; t < 200; ++t) {
    const Multivector a = random_mv(rng), b = random_mv(rng), c = random_mv(rng);
    const Multivector assoc = (a * b) * c - a * (b * c);
    EXPECT_LT(assoc.norm(), 1e-12 * (1 + a.norm() * b.norm() * c.norm()));
    const Multivector dist = a * (b + c) - (a * b + a * c);
    EXPECT_LT(dist.norm(), 1e-12 * (1 + a.norm() * (b.norm() + c.norm())));
  }
}

TEST(Clifford, ReverseIsAnAntiAutomorphism) {
  rq::Rng rng(102);
  for (int t = 0; t < 100; ++t) {
    const Multivector a = random_mv(rng), b = random_mv(rng);
    EXPECT_LT(((a * b).reverse() - b.reverse() * a.reverse()).norm(), 1e-12 * (1 + a.norm() * b.norm()));
  }
  const Multivector e123 = Multivector::vector(1, 0, 0) * Multivector::vector(0, 1, 0) * Multivector::vector(0, 0, 1);
  EXPECT_EQ(e123[rq::cl3::kE123], 1.0);
  EXPECT_EQ(e123.reverse()[rq::cl3::kE123], -1.0);
}

TEST(Clifford, GradeProjectionSplitsTheMultivector) {
  rq::Rng rng(103);
  const Multivector a = random_mv(rng);
  const Multivector sum = a.grade(0) + a.grade(1) + a.grade(2) + a.grade(3);
  EXPECT_LT((sum - a).norm(), 1e-15);
  EXPECT_EQ(a.grade(2)[rq::cl3::kE1], 0.0);
  EXPECT_THROW(a.grade(4), rq::InvalidArgument);
  EXPECT_THROW(a.grade(-1), rq::InvalidArgument);
}

TEST(Clifford, RotorTimesReverseIsOne) {
  rq::Rng rng(104);
  for (int t = 0; t < 100; ++t) {
    const Rotor r = random_rotor(rng);
    const Multivector rr = r.mv * r.mv.reverse();
    EXPECT_NEAR(rr[rq::cl3::kScalar], 1.0, 1e-12);
    for (unsigned b = 1; b < 8; ++b) EXPECT_NEAR(rr[b], 0.0, 1e-12);
    EXPECT_EQ(r.mv.max_abs_grade(1), 0.0);
    EXPECT_EQ(r.mv.max_abs_grade(3), 0.0);
  }
}

TEST(Clifford, SandwichOfVectorIsPureVectorAndMatchesMatrix) {
  rq::Rng rng(105);
  for (int t = 0; t < 200; ++t) {
    const Rotor r = random_rotor(rng);
    const std::array<double, 3> v = {rng.normal(), rng.normal(), rng.normal()};
    const Multivector s = r.sandwich(Multivector::vector(v[0], v[1], v[2]));
    EXPECT_LT(s.max_abs_grade(0), 1e-12);
    EXPECT_LT(s.max_abs_grade(2), 1e-12);
    EXPECT_LT(s.max_abs_grade(3), 1e-12);
    const auto mv = mat_vec(r.matrix(), v);
    EXPECT_NEAR(s[rq::cl3::kE1], mv[0], 1e-12);
    EXPECT_NEAR(s[rq::cl3::kE2], mv[1], 1e-12);
    EXPECT_NEAR(s[rq::cl3::kE3], mv[2], 1e-12);
    EXPECT_NEAR(s.norm(), std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]), 1e-12);
  }
}

TEST(Clifford, MatrixIsARotation) {
  rq::Rng rng(106);
  for (int t = 0; t < 50; ++t) {
    const auto m = random_rotor(rng).matrix();
    std::array<double, 9> mt{};
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) mt[i * 3 + j] = m[j * 3 + i];
    const auto p = mat_mul(m, mt);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) EXPECT_NEAR(p[i * 3 + j], i == j ? 1.0 : 0.0, 1e-12);
    const double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                       m[2] * (m[3] * m[7] - m[4] * m[6]);
    EXPECT_NEAR(det, 1.0, 1e-12);
  }
}

TEST(Clifford, ComposeMultipliesMatrices) {
  rq::Rng rng(107);
  for (int t = 0; t < 100; ++t) {
    const Rotor r1 = random_rotor(rng), r2 = random_rotor(rng);
    const auto composed = r1.compose(r2).matrix();
    const auto product = mat_mul(r1.matrix(), r2.matrix());
    for (int i = 0; i < 9; ++i) EXPECT_NEAR(composed[i], product[i], 1e-12);
  }
}

TEST(Clifford, PlaneAngleRotatesWithinThePlane) {
  rq::Rng rng(108);
  for (int t = 0; t < 50; ++t) {
    const double angle = (rng.uniform() * 2 - 1) * 3.0;
    // e12 plane: e1 -> cos e1 + sin e2, e3 fixed.
    const Rotor r = Rotor::from_plane_angle(2.5, 0, 0, angle);  // non-unit bivector: normalized
    const Multivector e1 = r.sandwich(Multivector::vector(1, 0, 0));
    EXPECT_NEAR(e1[rq::cl3::kE1], std::cos(angle), 1e-12);
    EXPECT_NEAR(e1[rq::cl3::kE2], std::sin(angle), 1e-12);
    EXPECT_NEAR(e1[rq::cl3::kE3], 0.0, 1e-12);
    const Multivector e3 = r.sandwich(Multivector::vector(0, 0, 1));
    EXPECT_NEAR(e3[rq::cl3::kE3], 1.0, 1e-12);
    // e23 plane: e2 -> cos e2 + sin e3.
    const Multivector e2 = Rotor::from_plane_angle(0, 0, 1, angle).sandwich(Multivector::vector(0, 1, 0));
    EXPECT_NEAR(e2[rq::cl3::kE2], std::cos(angle), 1e-12);
    EXPECT_NEAR(e2[rq::cl3::kE3], std::sin(angle), 1e-12);
    // A random plane: a vector in the plane turns by exactly `angle`; the normal is fixed.
    const double b12 = rng.normal(), b13 = rng.normal(), b23 = rng.normal();
    const Rotor rp = Rotor::from_plane_angle(b12, b13, b23, angle);
    // Normal of the plane e12*b12 + e13*b13 + e23*b23 is the dual vector (b23, -b13, b12).
    const Multivector normal = Multivector::vector(b23, -b13, b12);
    EXPECT_LT((rp.sandwich(normal) - normal).norm(), 1e-12 * (1 + normal.norm()));
    // u = a vector in the plane (orthogonal to the normal).
    const Multivector u = Multivector::vector(b13, b23, 0);  // dot with (b23, -b13, b12) = 0
    const Multivector ru = rp.sandwich(u);
    const double cos_turn = (ru[1] * u[1] + ru[2] * u[2] + ru[4] * u[4]) / (u.norm() * u.norm());
    EXPECT_NEAR(cos_turn, std::cos(angle), 1e-12);
  }
  EXPECT_THROW(Rotor::from_plane_angle(0, 0, 0, 1.0), rq::InvalidArgument);
}

TEST(Clifford, FromQuaternionMatchesQuaternionRotation) {
  rq::Rng rng(109);
  for (int t = 0; t < 200; ++t) {
    const double w = rng.normal(), x = rng.normal(), y = rng.normal(), z = rng.normal();
    const std::array<double, 3> v = {rng.normal(), rng.normal(), rng.normal()};
    const auto expected = quat_rotate(w, x, y, z, v);
    const auto got = mat_vec(Rotor::from_quaternion(w, x, y, z).matrix(), v);
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(got[i], expected[i], 1e-12);
  }
}

TEST(Clifford, NormalizedRejectsZeroAndDropsOddParts) {
  EXPECT_THROW(Rotor::normalized(Multivector::vector(1, 2, 3)), rq::InvalidArgument);
  EXPECT_THROW(Rotor::normalized(Multivector{}), rq::InvalidArgument);
  Multivector m = Multivector::scalar(3) + Multivector::bivector(0, 4, 0) + Multivector::vector(7, 7, 7);
  const Rotor r = Rotor::normalized(m);
  EXPECT_NEAR(r.mv[rq::cl3::kScalar], 0.6, 1e-15);
  EXPECT_NEAR(r.mv[rq::cl3::kE13], 0.8, 1e-15);
  EXPECT_EQ(r.mv.max_abs_grade(1), 0.0);
}

}  // namespace
