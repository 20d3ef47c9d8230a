// Rotations: orthogonality, round trips, matrix consistency, determinism, parameter round trips,
// error cases; for every kind and a range of dimensions.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "rq/clifford/cl3.hpp"
#include "rq/core/errors.hpp"
#include "rq/core/rng.hpp"
#include "rq/rotation/block_rotations.hpp"
#include "rq/rotation/rotation.hpp"

namespace {

using rq::RotationKind;

const RotationKind kAllKinds[] = {RotationKind::None,    RotationKind::Rotor, RotationKind::Planar,
                                  RotationKind::IsoFast, RotationKind::IsoFull, RotationKind::Turbo,
                                  RotationKind::TurboDense, RotationKind::Hadamard};
const size_t kDims[] = {2, 3, 5, 64, 96, 128, 256};

std::vector<float> random_vector(rq::Rng& rng, size_t n) {
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.normal());
  return v;
}

double norm(const float* v, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; ++i) s += double(v[i]) * v[i];
  return std::sqrt(s);
}

std::string label(RotationKind kind, size_t d) { return std::string(rq::rotation_name(kind)) + " d=" + std::to_string(d); }

// Every (kind, dim) case to check: all dims for all kinds, plus d = 1 for none.
std::vector<std::pair<RotationKind, size_t>> cases() {
  std::vector<std::pair<RotationKind, size_t>> out;
  for (RotationKind k : kAllKinds)
    for (size_t d : kDims) out.emplace_back(k, d);
  out.emplace_back(RotationKind::None, 1);
  return out;
}

TEST(Rotation, RotatedDimensions) {
  EXPECT_EQ(rq::rotated_dim_for(RotationKind::Rotor, 128), 128u);  // pad-free last group
  EXPECT_EQ(rq::rotated_dim_for(RotationKind::Rotor, 64), 64u);
  EXPECT_EQ(rq::rotated_dim_for(RotationKind::Planar, 5), 6u);
  EXPECT_EQ(rq::rotated_dim_for(RotationKind::IsoFast, 5), 8u);
  EXPECT_EQ(rq::rotated_dim_for(RotationKind::IsoFull, 96), 96u);
  EXPECT_EQ(rq::rotated_dim_for(RotationKind::Turbo, 96), 128u);
  EXPECT_EQ(rq::rotated_dim_for(RotationKind::Hadamard, 128), 128u);
  EXPECT_EQ(rq::rotated_dim_for(RotationKind::TurboDense, 96), 96u);
  EXPECT_EQ(rq::rotated_dim_for(RotationKind::None, 1), 1u);
  const rq::RotationSeed seed;
  for (auto [kind, d] : cases()) {
    const auto rot = rq::make_rotation(kind, d, seed);
    EXPECT_EQ(rot->kind(), kind);
    EXPECT_EQ(rot->dim(), d);
    EXPECT_EQ(rot->rotated_dim(), rq::rotated_dim_for(kind, d)) << label(kind, d);
  }
}

TEST(Rotation, MatrixIsOrthogonal) {
  rq::RotationSeed seed;
  seed.seed = 2024;
  for (auto [kind, d] : cases()) {
    const auto rot = rq::make_rotation(kind, d, seed);
    const size_t n = rot->rotated_dim();
    const std::vector<double> m = rot->matrix();  // n x n
    ASSERT_EQ(m.size(), n * n);
    double worst = 0.0;
    for (size_t i = 0; i < n; ++i)
      for (size_t k = 0; k < n; ++k) {
        double dot = 0.0;
        for (size_t j = 0; j < n; ++j) dot += m[i * n + j] * m[k * n + j];
        worst = std::fmax(worst, std::fabs(dot - (i == k ? 1.0 : 0.0)));
      }
    EXPECT_LT(worst, 1e-5) << label(kind, d);
  }
}

TEST(Rotation, ApplyMatchesMatrixRoundTripsAndPreservesNorm) {
  rq::Rng rng(7);
  rq::RotationSeed seed;
  seed.seed = 99;
  for (auto [kind, d] : cases()) {
    const auto rot = rq::make_rotation(kind, d, seed);
    const size_t n = rot->rotated_dim();
    const std::vector<double> m = rot->matrix();
    for (int t = 0; t < 3; ++t) {
      const std::vector<float> x = random_vector(rng, d);  // d
      std::vector<float> y(n, std::nanf("")), back(d, std::nanf(""));
      rot->apply(x.data(), y.data());
      rot->apply_inverse(y.data(), back.data());
      const double scale = 1.0 + norm(x.data(), d);
      for (size_t i = 0; i < n; ++i) {
        double expected = 0.0;
        for (size_t j = 0; j < d; ++j) expected += m[i * n + j] * x[j];  // matrix * pad(x)
        ASSERT_NEAR(y[i], expected, 1e-5 * scale) << label(kind, d) << " row " << i;
      }
      for (size_t i = 0; i < d; ++i) ASSERT_NEAR(back[i], x[i], 1e-5 * scale) << label(kind, d) << " coord " << i;
      EXPECT_NEAR(norm(y.data(), n), norm(x.data(), d), 1e-5 * scale) << label(kind, d);
    }
  }
}

TEST(Rotation, ApplyPaddedUsesThePaddingCoordinates) {
  rq::Rng rng(8);
  const rq::RotationSeed seed;
  for (auto [kind, d] : cases()) {
    const auto rot = rq::make_rotation(kind, d, seed);
    const size_t n = rot->rotated_dim();
    const std::vector<double> m = rot->matrix();
    const std::vector<float> x = random_vector(rng, n);  // n, padding not zero
    std::vector<float> y(n);
    rot->apply_padded(x.data(), y.data());
    for (size_t i = 0; i < n; ++i) {
      double expected = 0.0;
      for (size_t j = 0; j < n; ++j) expected += m[i * n + j] * x[j];
      ASSERT_NEAR(y[i], expected, 1e-5 * (1 + norm(x.data(), n))) << label(kind, d);
    }
  }
}

TEST(Rotation, DeterministicBySeedAndDistinctPerLayerHeadRole) {
  rq::RotationSeed base;
  base.seed = 12345;
  base.layer = 3;
  base.head = 5;
  for (RotationKind kind : kAllKinds) {
    if (kind == RotationKind::None) continue;
    const auto a = rq::make_rotation(kind, 64, base)->parameters();
    const auto b = rq::make_rotation(kind, 64, base)->parameters();
    EXPECT_EQ(a, b) << rq::rotation_name(kind);
    ASSERT_FALSE(a.empty());
    rq::RotationSeed other = base;
    other.layer = 4;
    EXPECT_NE(a, rq::make_rotation(kind, 64, other)->parameters()) << rq::rotation_name(kind) << " layer";
    other = base;
    other.head = 6;
    EXPECT_NE(a, rq::make_rotation(kind, 64, other)->parameters()) << rq::rotation_name(kind) << " head";
    other = base;
    other.role = rq::KvRole::V;
    EXPECT_NE(a, rq::make_rotation(kind, 64, other)->parameters()) << rq::rotation_name(kind) << " role";
    other = base;
    other.seed = 12346;
    EXPECT_NE(a, rq::make_rotation(kind, 64, other)->parameters()) << rq::rotation_name(kind) << " seed";
  }
  // Kinds do not share streams: the iso fast and full left quaternions differ.
  const auto fast = rq::make_rotation(RotationKind::IsoFast, 8, base)->parameters();
  const auto full = rq::make_rotation(RotationKind::IsoFull, 8, base)->parameters();
  EXPECT_NE(fast[0], full[0]);
}

TEST(Rotation, ParametersRoundTrip) {
  rq::Rng rng(9);
  rq::RotationSeed seed;
  seed.seed = 777;
  for (auto [kind, d] : cases()) {
    const auto rot = rq::make_rotation(kind, d, seed);
    const std::vector<float> p = rot->parameters();
    const auto loaded = rq::rotation_from_parameters(kind, d, p);
    EXPECT_EQ(loaded->kind(), kind);
    EXPECT_EQ(loaded->parameters(), p) << label(kind, d);
    const std::vector<float> x = random_vector(rng, d);
    std::vector<float> y1(rot->rotated_dim()), y2(rot->rotated_dim());
    rot->apply(x.data(), y1.data());
    loaded->apply(x.data(), y2.data());
    EXPECT_EQ(y1, y2) << label(kind, d);
  }
}

TEST(Rotation, ParameterLayouts) {
  const rq::RotationSeed seed;
  const size_t d = 10;
  EXPECT_EQ(rq::make_rotation(RotationKind::None, d, seed)->parameters().size(), 0u);
  EXPECT_EQ(rq::make_rotation(RotationKind::Rotor, d, seed)->parameters().size(), 4u * 4);
  EXPECT_EQ(rq::make_rotation(RotationKind::Planar, d, seed)->parameters().size(), 5u * 2);
  EXPECT_EQ(rq::make_rotation(RotationKind::IsoFast, d, seed)->parameters().size(), 3u * 4);
  EXPECT_EQ(rq::make_rotation(RotationKind::IsoFull, d, seed)->parameters().size(), 3u * 8);
  EXPECT_EQ(rq::make_rotation(RotationKind::Turbo, d, seed)->parameters().size(), 2u * 16);
  EXPECT_EQ(rq::make_rotation(RotationKind::TurboDense, d, seed)->parameters().size(), d * d);
  // Unit blocks.
  for (RotationKind kind : {RotationKind::Rotor, RotationKind::IsoFast, RotationKind::IsoFull, RotationKind::Planar}) {
    const auto p = rq::make_rotation(kind, d, seed)->parameters();
    const size_t width = kind == RotationKind::Planar ? 2 : 4;
    for (size_t i = 0; i < p.size(); i += width) EXPECT_NEAR(norm(&p[i], width), 1.0, 1e-6);
  }
  // Hadamard: s2 = 1; turbo: s2 random +-1.
  const auto h = rq::make_rotation(RotationKind::Hadamard, d, seed)->parameters();
  const auto t = rq::make_rotation(RotationKind::Turbo, d, seed)->parameters();
  int minus_in_turbo_s2 = 0;
  for (size_t i = 0; i < 16; ++i) {
    EXPECT_TRUE(h[i] == 1.0f || h[i] == -1.0f);
    EXPECT_EQ(h[16 + i], 1.0f);
    minus_in_turbo_s2 += t[16 + i] < 0;
  }
  EXPECT_GT(minus_in_turbo_s2, 0);
}

TEST(Rotation, RotorMatricesComeFromTheRotors) {
  rq::RotationSeed seed;
  seed.seed = 31;
  const rq::RotorRotation rot(64, seed);
  ASSERT_EQ(rot.groups(), 22u);
  const auto& rotors = rot.parameters();
  const auto& mats = rot.matrices();
  for (size_t g = 0; g < rot.groups(); ++g) {
    const rq::cl3::Rotor r = rq::cl3::Rotor::normalized(
        rq::cl3::Multivector::scalar(rotors[4 * g]) +
        rq::cl3::Multivector::bivector(rotors[4 * g + 1], rotors[4 * g + 2], rotors[4 * g + 3]));
    const auto m = r.matrix();
    for (size_t i = 0; i < 9; ++i) EXPECT_NEAR(mats[9 * g + i], m[i], 1e-7);
  }
}

TEST(Rotation, RotorPartialLastGroupKeepsThePadsAtZero) {
  // d % 3 = 2: the last rotor turns in the e12 plane (not the identity); d % 3 = 1: the identity.
  rq::Rng rng(77);
  for (size_t d : {2u, 4u, 5u, 64u, 128u, 130u}) {
    rq::RotationSeed seed;
    seed.seed = 5 + d;
    const rq::RotorRotation rot(d, seed);
    ASSERT_EQ(rot.rotated_dim(), d);
    ASSERT_EQ(rot.groups(), (d + 2) / 3);
    const std::vector<float> params = rot.parameters();
    const float* last = &params[4 * (rot.groups() - 1)];
    const float* m = &rot.matrices()[9 * (rot.groups() - 1)];
    if (d % 3 == 2) {
      EXPECT_EQ(last[2], 0.0f);
      EXPECT_EQ(last[3], 0.0f);
      EXPECT_GT(std::fabs(last[1]), 0.0f);
      EXPECT_EQ(m[6], 0.0f);  // row 3 (the pad's output) reads no real coordinate
      EXPECT_EQ(m[7], 0.0f);
    } else {
      EXPECT_EQ(last[0], 1.0f);
      EXPECT_EQ(m[3], 0.0f);
      EXPECT_EQ(m[6], 0.0f);
    }
    // Orthogonal on R^d: norm preserved, inverse recovers the input.
    const std::vector<float> x = random_vector(rng, d);
    std::vector<float> y(d), back(d);
    rot.apply(x.data(), y.data());
    rot.apply_inverse(y.data(), back.data());
    double nx = 0, ny = 0;
    for (size_t i = 0; i < d; ++i) {
      nx += double(x[i]) * x[i];
      ny += double(y[i]) * y[i];
      EXPECT_NEAR(back[i], x[i], 1e-5);
    }
    EXPECT_NEAR(ny, nx, 1e-4 * nx);
  }
}

TEST(Rotation, RotorParametersThatMoveThePadAreRefused) {
  rq::RotationSeed seed;
  const rq::RotorRotation ok(128, seed);
  std::vector<float> bad = ok.parameters();
  bad[4 * 42 + 2] = 0.25f;  // e13 in the last group of d = 128 mixes the pad in
  EXPECT_THROW(rq::RotorRotation(128, bad), rq::InvalidArgument);
  const rq::RotorRotation ok64(64, seed);
  std::vector<float> bad64 = ok64.parameters();
  bad64[4 * 21 + 1] = 0.5f;  // e12 in the last group of d = 64 moves the single real coordinate
  EXPECT_THROW(rq::RotorRotation(64, bad64), rq::InvalidArgument);
  EXPECT_NO_THROW(rq::RotorRotation(128, ok.parameters()));
}

TEST(Rotation, LoadedRotorsAreNormalized) {
  // A rotor scaled by 3 is the same rotation.
  rq::RotationSeed seed;
  const rq::RotorRotation a(6, seed);
  std::vector<float> scaled = a.parameters();
  for (float& v : scaled) v *= 3.0f;
  const rq::RotorRotation b(6, scaled);
  for (size_t i = 0; i < a.matrices().size(); ++i) EXPECT_NEAR(a.matrices()[i], b.matrices()[i], 1e-6);
}

TEST(Rotation, FwhtMatchesSylvesterMatrix) {
  rq::Rng rng(10);
  std::vector<float> v;
  for (size_t n : {1, 2, 4, 8, 16, 64}) {
    v = random_vector(rng, n);
    std::vector<float> w = v;
    rq::fwht_inplace(w.data(), n);
    for (size_t i = 0; i < n; ++i) {
      double expected = 0.0;  // Sylvester H[i][j] = (-1)^popcount(i & j)
      for (size_t j = 0; j < n; ++j) expected += ((__builtin_popcountll(i & j) % 2) ? -1.0 : 1.0) * v[j];
      EXPECT_NEAR(w[i], expected, 1e-4 * (1 + n)) << "n=" << n << " i=" << i;
    }
  }
  EXPECT_THROW(rq::fwht_inplace(v.data(), 12), rq::InvalidArgument);
  EXPECT_THROW(rq::fwht_inplace(v.data(), 0), rq::InvalidArgument);
}

TEST(Rotation, ErrorCases) {
  const rq::RotationSeed seed;
  for (RotationKind kind : kAllKinds) {
    EXPECT_THROW(rq::make_rotation(kind, 0, seed), rq::InvalidArgument) << rq::rotation_name(kind);
    EXPECT_THROW(rq::rotated_dim_for(kind, 0), rq::InvalidArgument);
    if (kind != RotationKind::None) {
      EXPECT_THROW(rq::make_rotation(kind, 1, seed), rq::InvalidArgument) << rq::rotation_name(kind);
    }
    EXPECT_THROW(rq::rotation_from_parameters(kind, 0, {}), rq::InvalidArgument);
    // One parameter too many or too few.
    auto p = rq::make_rotation(kind, 8, seed)->parameters();
    p.push_back(1.0f);
    EXPECT_THROW(rq::rotation_from_parameters(kind, 8, p), rq::InvalidArgument) << rq::rotation_name(kind);
    if (p.size() >= 2) {
      p.resize(p.size() - 2);
      EXPECT_THROW(rq::rotation_from_parameters(kind, 8, p), rq::InvalidArgument) << rq::rotation_name(kind);
    }
  }
  EXPECT_THROW(rq::make_rotation(static_cast<RotationKind>(200), 8, seed), rq::InvalidArgument);
  EXPECT_THROW(rq::make_rotation(RotationKind::TurboDense, 100000, seed), rq::InvalidArgument);
  EXPECT_THROW(rq::make_rotation(RotationKind::Rotor, size_t{1} << 30, seed), rq::InvalidArgument);
  EXPECT_THROW(rq::make_rotation(RotationKind::Planar, 20000, seed)->matrix(), rq::CapacityError);
  // Bad values.
  EXPECT_THROW(rq::rotation_from_parameters(RotationKind::Rotor, 3, {0, 0, 0, 0}), rq::InvalidArgument);
  EXPECT_THROW(rq::rotation_from_parameters(RotationKind::Rotor, 3, {std::nanf(""), 0, 0, 1}), rq::InvalidArgument);
  EXPECT_THROW(rq::rotation_from_parameters(RotationKind::Planar, 2, {0, 0}), rq::InvalidArgument);
  EXPECT_THROW(rq::rotation_from_parameters(RotationKind::IsoFast, 4, {0, 0, 0, 0}), rq::InvalidArgument);
  EXPECT_THROW(rq::rotation_from_parameters(RotationKind::Turbo, 2, {1, 0.5f, 1, 1}), rq::InvalidArgument);
  EXPECT_THROW(rq::rotation_from_parameters(RotationKind::Hadamard, 2, {1, -1, 1, -1}), rq::InvalidArgument);
  EXPECT_THROW(rq::rotation_from_parameters(RotationKind::TurboDense, 2, {1, 1, 0, 1}), rq::InvalidArgument);
  EXPECT_NO_THROW(rq::rotation_from_parameters(RotationKind::TurboDense, 2, {0, 1, -1, 0}));
  EXPECT_NO_THROW(rq::rotation_from_parameters(RotationKind::Hadamard, 2, {1, -1, 1, 1}));
}

TEST(Rotation, Names) {
  EXPECT_STREQ(rq::rotation_name(RotationKind::None), "none");
  EXPECT_STREQ(rq::rotation_name(RotationKind::Rotor), "rotor");
  EXPECT_STREQ(rq::rotation_name(RotationKind::Turbo), "turbo");
  EXPECT_STREQ(rq::rotation_name(RotationKind::TurboDense), "turbodense");
  EXPECT_STREQ(rq::rotation_name(static_cast<RotationKind>(200)), "unknown");
}

TEST(Rotation, HaarRotorsAreUnbiased) {
  // Sanity on the sampling (not a timing test): over many groups the mean of each induced
  // matrix entry is near 0 (a Haar rotation has E[M] = 0), and its mean square near 1/3.
  rq::RotationSeed seed;
  seed.seed = 4242;
  const rq::RotorRotation rot(3 * 3000, seed);
  const auto& mats = rot.matrices();
  for (size_t e = 0; e < 9; ++e) {
    double mean = 0.0, sq = 0.0;
    for (size_t g = 0; g < rot.groups(); ++g) {
      mean += mats[9 * g + e];
      sq += double(mats[9 * g + e]) * mats[9 * g + e];
    }
    mean /= rot.groups();
    sq /= rot.groups();
    EXPECT_NEAR(mean, 0.0, 0.05) << "entry " << e;
    EXPECT_NEAR(sq, 1.0 / 3.0, 0.03) << "entry " << e;
  }
}

TEST(Rotation, DenseIsUnbiasedOverSeeds) {
  // Haar check (statistical, deterministic seeds): over many seeds every entry of a 4 x 4 dense
  // rotation has mean ~0 and mean square ~1/4. A QR without the diag(R) sign fix fails the mean.
  const size_t d = 4, trials = 4000;
  std::vector<double> mean(d * d, 0.0), sq(d * d, 0.0);
  for (size_t t = 0; t < trials; ++t) {
    rq::RotationSeed seed;
    seed.seed = 1000 + t;
    const rq::DenseRotation rot(d, seed);
    for (size_t i = 0; i < d * d; ++i) {
      mean[i] += rot.dense_matrix()[i] / double(trials);
      sq[i] += double(rot.dense_matrix()[i]) * rot.dense_matrix()[i] / double(trials);
    }
  }
  for (size_t i = 0; i < d * d; ++i) {
    EXPECT_NEAR(mean[i], 0.0, 0.04) << "entry " << i;
    EXPECT_NEAR(sq[i], 0.25, 0.03) << "entry " << i;
  }
}

TEST(Rotation, PlanarAnglesCoverTheCircle) {
  // theta uniform in [0, 2 pi): the mean of cos and sin over many pairs is ~0.
  rq::RotationSeed seed;
  seed.seed = 5150;
  const rq::PlanarRotation rot(2 * 4000, seed);
  double mc = 0.0, ms = 0.0;
  const auto& cs = rot.cos_sin();
  for (size_t p = 0; p < cs.size() / 2; ++p) mc += cs[2 * p], ms += cs[2 * p + 1];
  EXPECT_NEAR(mc / 4000, 0.0, 0.05);
  EXPECT_NEAR(ms / 4000, 0.0, 0.05);
}

}  // namespace
