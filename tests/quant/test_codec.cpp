// The scalar reference codec: quality on isotropic data, scorer/accumulator consistency, the input
// policy. Fast paths are tested against this codec elsewhere.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "quant_test_util.hpp"
#include "rq/codec/codec.hpp"
#include "rq/core/errors.hpp"

namespace rq {
namespace {

using testing::dot;
using testing::norm;
using testing::random_anisotropic_vectors;
using testing::random_unit_vectors;

bool is_rotation_lloyd(const FormatSpec& f) { return f.scheme == Scheme::LloydMax && !f.qjl; }

double d_mse(const Codec& codec, const std::vector<float>& x) {
  const size_t d = codec.dim();
  const std::vector<float> y = codec.decode(codec.encode(x));
  double err = 0;
  for (size_t i = 0; i < x.size(); ++i) err += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
  return err / static_cast<double>(x.size() / d);  // unit vectors: total squared error = d * MSE
}

// Every rotation format reaches its Lloyd-Max distortion on isotropic unit vectors at d = 128: within
// 3 % (5 % at 2 bits, where norm correction adds ~3 %) of its own codebook's D, and never worse than
// the Gaussian-codebook constants by more than that tolerance (the exact-density codebook is a bit better).
TEST(CodecQuality, RotationFormatsReachLloydMaxMse) {
  const double gaussian[] = {0, 0, 0.1175, 0.0345, 0.0095};
  const size_t d = 128;
  const auto x = random_unit_vectors(4000, d, 11);
  for (const auto& f : format_table()) {
    if (!is_rotation_lloyd(f)) continue;
    const Codec codec(f, d, {7, 1, 2, KvRole::K});
    const double got = d_mse(codec, x);
    const double own = codec.codebook()->mse * static_cast<double>(codec.codebook()->dim);
    const double tol = f.bits == 2 ? 0.05 : 0.03;
    EXPECT_NEAR(got / own, 1.0, tol) << f.name << " d*MSE=" << got << " codebook D=" << own;
    EXPECT_LE(got / gaussian[f.bits], 1.0 + tol) << f.name << " d*MSE=" << got;
    std::printf("    %-14s d*MSE %.5f  (codebook %.5f, Gaussian constant %.4f)\n", std::string(f.name).c_str(), got, own,
                gaussian[f.bits]);
  }
}

// On isotropic data every orthogonal rotation gives the same MSE (ALGORITHMS.md §2).
TEST(CodecQuality, RotationsTieOnIsotropicData) {
  const size_t d = 64;
  const auto x = random_unit_vectors(3000, d, 12);
  for (const char* b : {"3", "4"}) {
    const double ref = d_mse(Codec(find_format(std::string("turbo") + b), d), x);
    for (const char* m : {"rotor", "planar", "iso", "turbodense", "none"}) {
      const double got = d_mse(Codec(find_format(std::string(m) + b), d), x);
      EXPECT_NEAR(got / ref, 1.0, 0.03) << m << b;
    }
  }
}

TEST(CodecQuality, ErrorFallsAsBitsRise) {
  const size_t d = 128;
  const auto x = random_anisotropic_vectors(300, d, 13);
  for (const char* m : {"turbo", "rotor", "planar", "iso", "turbodense"}) {
    double prev = INFINITY;
    for (int b = 2; b <= 4; ++b) {
      const double e = d_mse(Codec(find_format(std::string(m) + std::to_string(b)), d), x);
      EXPECT_LT(e, prev) << m << b;
      prev = e;
    }
  }
  double prev = INFINITY;
  for (const char* f : {"q4", "q8", "f16"}) {
    const double e = d_mse(Codec(find_format(f), d), x);
    EXPECT_LT(e, prev) << f;
    prev = e;
  }
}

// QJL variants are unbiased and their inner-product error matches sqrt((pi/2) D(b-1) / d).
TEST(CodecQuality, QjlIsUnbiasedWithPredictedVariance) {
  const size_t d = 128, n = 4000;
  const auto x = random_unit_vectors(n, d, 14);
  const auto q = random_unit_vectors(n, d, 15);
  for (const char* name : {"turbo3_qjl", "turbo4_qjl", "rotor3_qjl", "rotor4_qjl"}) {
    const Codec codec(find_format(name), d, {3, 0, 0, KvRole::K});
    const EncodedPlanes planes = codec.encode(x);
    double sum = 0, sum_sq = 0;
    for (size_t i = 0; i < n; ++i) {
      const PreparedQuery pq = codec.prepare_query(&q[i * d]);
      float s;
      codec.score(pq, 1, planes.codes.data() + i * codec.layout().code_bytes,
                  planes.side.data() + i * codec.layout().side_bytes, &s);
      const double err = s - dot(&q[i * d], &x[i * d], d);
      sum += err;
      sum_sq += err * err;
    }
    const double bias = sum / n, rmse = std::sqrt(sum_sq / n);
    const double se = std::sqrt(sum_sq / n - bias * bias) / std::sqrt(double(n));
    const double predicted = std::sqrt(M_PI / 2 * codec.codebook()->mse * d / d);
    EXPECT_LT(std::fabs(bias), 3 * se) << name << " bias=" << bias << " se=" << se;
    EXPECT_NEAR(rmse / predicted, 1.0, 0.10) << name << " rmse=" << rmse << " predicted=" << predicted;
  }
}

// score == <q, decode(code)> and accumulate == decode-then-sum, every format, several dims.
TEST(CodecConsistency, ScoreAndAccumulateMatchDecode) {
  for (size_t d : {64u, 128u, 67u}) {
    const size_t n = 37;
    const auto x = random_anisotropic_vectors(n, d, 100 + d, 0.7f);
    const auto q = random_anisotropic_vectors(1, d, 200 + d, 1.3f);
    const auto w = random_anisotropic_vectors(1, n, 300 + d, 0.2f);
    for (const auto& f : format_table()) {
      const Codec codec(f, d, {9, 3, 1, KvRole::V});
      const EncodedPlanes planes = codec.encode(x);
      const std::vector<float> y = codec.decode(planes);
      const std::vector<float> s = codec.score(q, planes);
      double scale = 0;
      for (size_t i = 0; i < n; ++i) scale = std::max(scale, norm(&q[0], d) * norm(&y[i * d], d));
      for (size_t i = 0; i < n; ++i) {
        EXPECT_NEAR(s[i], dot(&q[0], &y[i * d], d), 2e-5 * scale) << f.name << " d=" << d << " i=" << i;
      }
      std::vector<float> acc(d);
      codec.accumulate(n, w.data(), planes.codes.data(), planes.side.data(), acc.data());
      for (size_t j = 0; j < d; ++j) {
        double ref = 0, mag = 0;
        for (size_t i = 0; i < n; ++i) {
          ref += double(w[i]) * y[i * d + j];
          mag += std::fabs(double(w[i]) * y[i * d + j]);
        }
        EXPECT_NEAR(acc[j], ref, 2e-5 * mag + 1e-6) << f.name << " d=" << d << " j=" << j;
      }
    }
  }
}

TEST(CodecConsistency, EncodingIsDeterministicAndSeedDependent) {
  const size_t d = 96;
  const auto x = random_anisotropic_vectors(20, d, 17);
  for (const auto& f : format_table()) {
    const auto a = Codec(f, d, {1, 2, 3, KvRole::K}).encode(x);
    const auto b = Codec(f, d, {1, 2, 3, KvRole::K}).encode(x);
    EXPECT_EQ(a.codes, b.codes) << f.name;
    EXPECT_EQ(a.side, b.side) << f.name;
    if (f.rotation != RotationKind::None) {
      const auto c = Codec(f, d, {1, 2, 3, KvRole::V}).encode(x);
      EXPECT_NE(a.codes, c.codes) << f.name << ": K and V must use different rotations";
    }
  }
}

TEST(CodecConsistency, NormCorrectionPreservesNorms) {
  const size_t d = 128;
  const auto x = random_anisotropic_vectors(50, d, 18);
  for (const char* name : {"turbo3", "rotor3", "planar2", "iso4"}) {
    const Codec codec(find_format(name), d);
    const auto y = codec.decode(codec.encode(x));
    for (size_t i = 0; i < 50; ++i) {
      EXPECT_NEAR(norm(&y[i * d], d) / norm(&x[i * d], d), 1.0, 1e-3) << name;  // fp16 norm rounding
    }
  }
}

TEST(CodecEdgeCases, ZeroVectorsDecodeToZero) {
  for (const auto& f : format_table()) {
    for (size_t d : {2u, 3u, 67u, 128u}) {
      const Codec codec(f, d);
      std::vector<float> x(3 * d, 0.0f);
      for (size_t j = 0; j < d; ++j) x[2 * d + j] = 0.25f + 0.01f * j;  // not all zero: 3rd is a real vector
      const auto y = codec.decode(codec.encode(x));
      for (size_t j = 0; j < 2 * d; ++j) EXPECT_EQ(y[j], 0.0f) << f.name;
      EXPECT_GT(norm(&y[2 * d], d), 0.1) << f.name;
    }
  }
}

TEST(CodecEdgeCases, HugeAndTinyNorms) {
  const size_t d = 64;
  auto x = random_unit_vectors(4, d, 19);
  for (size_t j = 0; j < d; ++j) {
    x[j] *= 30000.0f;     // huge but representable norm
    x[d + j] *= 1e-9f;    // below fp16's smallest subnormal: decodes as zero, no NaN
    x[2 * d + j] *= 1e-3f;
  }
  for (const auto& f : format_table()) {
    const Codec codec(f, d);
    const auto y = codec.decode(codec.encode(x));
    for (float v : y) EXPECT_TRUE(std::isfinite(v)) << f.name;
    if (f.scheme == Scheme::LloydMax && f.bits >= 3) {
      EXPECT_NEAR(norm(&y[0], d) / 30000.0, 1.0, 0.15) << f.name;
    }
  }
}

TEST(CodecEdgeCases, OddAndTinyDimensions) {
  for (const auto& f : format_table()) {
    for (size_t d : {2u, 3u, 5u, 7u, 33u}) {
      const Codec codec(f, d);
      const auto x = random_unit_vectors(10, d, 20 + d);
      const auto y = codec.decode(codec.encode(x));
      ASSERT_EQ(y.size(), x.size());
      for (float v : y) EXPECT_TRUE(std::isfinite(v)) << f.name << " d=" << d;
    }
  }
}

TEST(CodecErrors, RejectsNanAndInfAndLeavesOutputUntouched) {
  const size_t d = 16;
  for (const auto& f : format_table()) {
    const Codec codec(f, d);
    auto x = random_unit_vectors(3, d, 21);
    for (float bad : {NAN, INFINITY, -INFINITY}) {
      x[d + 5] = bad;
      std::vector<uint8_t> codes(3 * codec.layout().code_bytes, 0xAB), side(3 * codec.layout().side_bytes, 0xCD);
      EXPECT_THROW(codec.encode(3, x.data(), codes.data(), side.data()), InvalidInput) << f.name;
      for (auto c : codes) EXPECT_EQ(c, 0xAB);
      for (auto c : side) EXPECT_EQ(c, 0xCD);
    }
  }
}

TEST(CodecErrors, RejectsValuesBeyondFp16AndLeavesOutputUntouched) {
  const size_t d = 8;
  for (const char* name : {"f16", "rotor3", "turbo3", "q8", "q4", "turbo3_qjl"}) {
    const Codec codec(find_format(name), d);
    auto x = random_unit_vectors(2, d, 22);
    for (size_t j = 0; j < d; ++j) x[d + j] *= 1e9f;
    std::vector<uint8_t> codes(2 * codec.layout().code_bytes, 0x11), side(2 * codec.layout().side_bytes, 0x22);
    if (std::string(name) == "q8") {
      // q8's scale is absmax/127: 1e9 would need a scale of ~8e6 > 65504.
    }
    EXPECT_THROW(codec.encode(2, x.data(), codes.data(), side.data()), InvalidInput) << name;
    for (auto c : codes) EXPECT_EQ(c, 0x11);
  }
}

TEST(CodecErrors, BadShapesAndBuffers) {
  EXPECT_THROW(Codec(find_format("rotor3"), 0), InvalidArgument);
  EXPECT_THROW(Codec(find_format("turbo3"), 1), InvalidArgument);
  EXPECT_THROW(Codec(find_format("f16"), 0), InvalidArgument);
  const Codec codec(find_format("rotor3"), 64);
  EXPECT_THROW(codec.encode(std::vector<float>(65, 1.0f)), InvalidArgument);
  EncodedPlanes planes = codec.encode(random_unit_vectors(2, 64, 23));
  planes.codes.pop_back();
  EXPECT_THROW(codec.decode(planes), InvalidArgument);
  planes = codec.encode(random_unit_vectors(2, 64, 23));
  EXPECT_THROW(codec.score(std::vector<float>(63, 1.0f), planes), InvalidArgument);
  float x[64] = {1.0f};
  EXPECT_THROW(codec.encode(1, x, nullptr, nullptr), InvalidArgument);
  const Codec other(find_format("turbo3_qjl"), 64);
  const PreparedQuery foreign = other.prepare_query(x);
  float s;
  EXPECT_THROW(codec.score(foreign, 1, planes.codes.data(), planes.side.data(), &s), InvalidArgument);
}

}  // namespace
}  // namespace rq
