// The integer arithmetic of the fast attention (FastArithmetic::Integer, the default for Lloyd-Max
// K and V with 2..4-bit codes and for int4 / int8 (q4, q8)): on every SIMD target it computes the
// same integer sums as the portable loops (the path's scalar reference: the last target, SCALAR or
// EMU128; int4 scores add each block's sum times its scale in float, in another order per target),
// and it stays close to attend_reference compared with the format's own quantization error. The
// float steps between the sums are not bit-identical across targets (exp uses FMA on AVX2, multiply
// + add elsewhere), so an exp one ulp apart can move a 15-bit softmax weight by one unit (3e-5 of the
// chunk's largest weight): outputs agree to kSameIntegers, not to 1e-6.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "attention_test_util.hpp"
#include "rq/attention/attention_fast.hpp"
#include "rq/core/errors.hpp"

namespace rq {
namespace {

using namespace rq::test;

constexpr double kSameIntegers = 1e-4;  // max relative error vs the portable loops (see above)

// The integer tables whatever the cache length (attend_fast uses them from 256 tokens on).
void attend_integer(const AttentionProblem& p) { attend_fast_batch(&p, 1, 0, FastArithmetic::IntegerAlways); }

std::vector<float> run_integer(const HeadCache& c, size_t gqa, float scale, const std::string& target) {
  std::vector<float> out(gqa * c.k_codec->dim(), -1.0f);
  force_attention_simd_target(target);
  attend_integer(make_problem(c, gqa, scale, out.data()));
  force_attention_simd_target("");
  for (float v : out) EXPECT_TRUE(std::isfinite(v));
  return out;
}

std::vector<std::string> integer_formats() {
  std::vector<std::string> names;
  for (const auto& f : format_table()) {
    const std::string n(f.name);
    const bool lloyd = f.scheme == Scheme::LloydMax && !f.qjl && f.bits >= 2 && f.bits <= 4;
    if (lloyd || f.scheme == Scheme::Int4 || f.scheme == Scheme::Int8) names.push_back(n);
  }
  return names;
}

class IntegerPerTarget : public ::testing::TestWithParam<std::string> {};

TEST_P(IntegerPerTarget, SameIntegersAsThePortableLoops) {
  const std::string portable = attention_simd_targets().back();
  uint64_t seed = 300;
  for (const auto& name : integer_formats()) {
    // Coordinates per row (rotor: d; planar pads to even, iso to a multiple of 4, turbo to a power
    // of 2) cover every tail after the 32-lane blocks: 5: half a block only; 64, 128: none; 97: a
    // 1-coordinate portable tail (rotor; planar 98: half block); 120: a partial block of 24; 130:
    // half a block (rotor, planar; iso 132).
    for (size_t d : {5u, 64u, 97u, 120u, 128u, 130u}) {
      for (size_t n : {1u, 2u, 37u, 300u}) {
        for (size_t gqa : {1u, 3u, 4u, 6u}) {
          const HeadCache c = make_cache(name, name, d, n, gqa, ++seed);
          const auto ours = run_integer(c, gqa, 1.0f / std::sqrt(float(d)), GetParam());
          const auto ref = run_integer(c, gqa, 1.0f / std::sqrt(float(d)), portable);
          EXPECT_LT(rel_error(ours, ref), kSameIntegers) << name << " d=" << d << " n=" << n << " gqa=" << gqa;
        }
      }
    }
  }
}

TEST_P(IntegerPerTarget, LongPeakyAndMixedLengths) {
  const std::string portable = attention_simd_targets().back();
  uint64_t seed = 900;
  for (const char* pair : {"rotor3/rotor3", "turbo3/turbo4", "turbo2/rotor3", "planar4/iso3", "q4/q4", "q4/rotor3",
                           "turbo3/q4", "q8/q8", "q8/turbo3", "rotor3/q8"}) {
    const std::string kf = std::string(pair).substr(0, std::string(pair).find('/'));
    const std::string vf = std::string(pair).substr(std::string(pair).find('/') + 1);
    for (size_t n : {4097u, 5000u}) {
      for (float scale : {1.0f / std::sqrt(128.0f), 1.0f}) {  // 1.0: very peaky softmax
        const HeadCache c = make_cache(kf, vf, 128, n, 4, ++seed);
        EXPECT_LT(rel_error(run_integer(c, 4, scale, GetParam()), run_integer(c, 4, scale, portable)), kSameIntegers)
            << pair << " n=" << n << " scale=" << scale;
      }
    }
  }
}

// The AVX-512 VBMI + VNNI kernels (AVX3_DL) compute the AVX2 kernels' integers, and the float steps
// around them are the same Highway code on both: outputs identical to the bit, which catches a
// single wrong code or weight that the relative tolerance above could let through.
TEST(AttendInteger, Avx512KernelsMatchAvx2BitForBit) {
  const auto targets = attention_simd_targets();
  const auto has = [&](const char* t) { return std::find(targets.begin(), targets.end(), t) != targets.end(); };
  if (!has("AVX3_DL") || !has("AVX2")) GTEST_SKIP() << "this CPU lacks AVX3_DL (AVX-512 VBMI + VNNI) or AVX2";
  uint64_t seed = 1700;
  for (const char* pair : {"rotor3/rotor3", "turbo3/turbo3", "turbo2/rotor4", "rotor4/turbo2", "planar3/iso4",
                           "q8/rotor3", "turbo3/q8", "q8/q8", "rotor3/q4"}) {
    const std::string kf = std::string(pair).substr(0, std::string(pair).find('/'));
    const std::string vf = std::string(pair).substr(std::string(pair).find('/') + 1);
    for (size_t d : {64u, 128u}) {
      for (size_t n : {1u, 2u, 37u, 129u, 300u, 1000u}) {
        for (size_t gqa : {1u, 3u, 4u, 6u}) {
          const HeadCache c = make_cache(kf, vf, d, n, gqa, ++seed);
          const float scale = 1.0f / std::sqrt(float(d));
          EXPECT_EQ(run_integer(c, gqa, scale, "AVX3_DL"), run_integer(c, gqa, scale, "AVX2"))
              << pair << " d=" << d << " n=" << n << " gqa=" << gqa;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, IntegerPerTarget, ::testing::ValuesIn(attention_simd_targets()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// Attention over the unquantized vectors, in double: what both paths approximate.
std::vector<float> exact_attention(const std::vector<float>& k, const std::vector<float>& v, const std::vector<float>& q,
                                   size_t n, size_t d, size_t gqa, float scale) {
  std::vector<float> out(gqa * d);
  for (size_t h = 0; h < gqa; ++h) {
    std::vector<double> s(n);
    double m = -1e300, l = 0.0;
    for (size_t i = 0; i < n; ++i) {
      double t = 0.0;
      for (size_t j = 0; j < d; ++j) t += double(q[h * d + j]) * k[i * d + j];
      s[i] = t * scale;
      m = std::max(m, s[i]);
    }
    for (auto& x : s) l += (x = std::exp(x - m));
    for (size_t j = 0; j < d; ++j) {
      double o = 0.0;
      for (size_t i = 0; i < n; ++i) o += s[i] * v[i * d + j];
      out[h * d + j] = static_cast<float>(o / l);
    }
  }
  return out;
}

// A cache of given vectors (k, v: n x d; q: gqa x d) in format `name` for K and V.
HeadCache encode_cache(const std::string& name, const std::vector<float>& k, const std::vector<float>& v,
                       const std::vector<float>& q, size_t n, size_t d) {
  HeadCache c;
  c.k_codec = std::make_unique<Codec>(find_format(name), d, RotationSeed{5, 0, 0, KvRole::K});
  c.v_codec = std::make_unique<Codec>(find_format(name), d, RotationSeed{5, 0, 0, KvRole::V});
  c.n_tokens = n;
  c.queries = q;
  const auto& l = c.k_codec->layout();
  c.k_codes.resize(n * l.code_bytes);
  c.v_codes.resize(n * l.code_bytes);
  c.k_side.resize(n * l.side_bytes + 1);
  c.v_side.resize(n * l.side_bytes + 1);
  c.k_codec->encode(n, k.data(), c.k_codes.data(), c.k_side.data());
  c.v_codec->encode(n, v.data(), c.v_codes.data(), c.v_side.data());
  return c;
}

TEST(AttendInteger, AddsLittleToTheQuantizationError) {
  const size_t d = 128, gqa = 4, n = 3000;
  for (const char* name : {"rotor3", "turbo3", "rotor4", "turbo4", "turbo2", "planar3", "iso3", "q4", "q8"}) {
    Rng rng(77);
    const auto k = random_vectors(rng, n, d, 1.0f), v = random_vectors(rng, n, d, 1.0f);
    const auto q = random_vectors(rng, gqa, d, 1.0f);
    const HeadCache c = encode_cache(name, k, v, q, n, d);
    const float scale = 1.0f / std::sqrt(float(d));
    std::vector<float> ref(gqa * d), integer(gqa * d);
    attend_reference(make_problem(c, gqa, scale, ref.data()));
    attend_integer(make_problem(c, gqa, scale, integer.data()));
    const auto exact = exact_attention(k, v, q, n, d, gqa, scale);
    const double quant = rel_error(ref, exact), ours = rel_error(integer, exact), gap = rel_error(integer, ref);
    EXPECT_LT(gap, 0.03) << name;
    EXPECT_LT(ours, 1.05 * quant + 0.005) << name << " reference error " << quant << ", integer " << ours;
  }
}

TEST(AttendInteger, EdgeCases) {
  const float scale = 1.0f / std::sqrt(64.0f);
  {  // zero queries: every score is 0, the output is the plain mean of the values
    HeadCache c = make_cache("turbo3", "rotor3", 64, 200, 2, 11);
    std::fill(c.queries.begin(), c.queries.end(), 0.0f);
    std::vector<float> ref(2 * 64), integer(2 * 64);
    attend_reference(make_problem(c, 2, scale, ref.data()));
    attend_integer(make_problem(c, 2, scale, integer.data()));
    EXPECT_LT(rel_error(integer, ref), 0.02);
  }
  for (size_t n : {1u, 2u, 65u}) {  // huge vectors (norms near the fp16 limit), short caches
    Rng rng(12);
    auto k = random_vectors(rng, n, 64, 1.0f), v = random_vectors(rng, n, 64, 1.0f);
    for (auto& x : k) x *= 5000.0f;
    for (auto& x : v) x *= 5000.0f;
    const HeadCache c = encode_cache("rotor4", k, v, random_vectors(rng, 3, 64, 1.0f), n, 64);
    std::vector<float> ref(3 * 64), integer(3 * 64);
    attend_reference(make_problem(c, 3, 1e-5f, ref.data()));
    attend_integer(make_problem(c, 3, 1e-5f, integer.data()));
    EXPECT_LT(rel_error(integer, ref), 0.03) << n;
  }
  for (float tiny : {1e-6f, 1e-9f}) {
    // Tiny V vectors: fp16 norms in the subnormal range (1e-6 * ~8 < 6.1e-5) or rounded to 0 (1e-9),
    // so the weights' scale 32767 / max|v| is ~4e9, or max|v| is 0; the output is the reference's.
    Rng rng(15);
    const size_t n = 700;
    auto k = random_vectors(rng, n, 64, 1.0f), v = random_vectors(rng, n, 64, 1.0f);
    for (auto& x : v) x *= tiny;
    const HeadCache c = encode_cache("turbo3", k, v, random_vectors(rng, 3, 64, 1.0f), n, 64);
    std::vector<float> ref(3 * 64), integer(3 * 64);
    attend_reference(make_problem(c, 3, scale, ref.data()));
    attend_integer(make_problem(c, 3, scale, integer.data()));
    for (float x : integer) ASSERT_TRUE(std::isfinite(x)) << tiny;
    const float ref_max = *std::max_element(ref.begin(), ref.end(), [](float a, float b) { return std::fabs(a) < std::fabs(b); });
    if (ref_max == 0.0f) {
      EXPECT_EQ(integer, ref) << tiny;
    } else {
      EXPECT_LT(rel_error(integer, ref), 0.03) << tiny;
    }
  }
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    // A non-finite query value or scale is rejected by every path (typed error, output untouched).
    HeadCache c = make_cache("turbo3", "turbo3", 64, 300, 2, 14);
    std::vector<float> out(2 * 64, -1.0f);
    EXPECT_THROW(attend_integer(make_problem(c, 2, bad, out.data())), InvalidArgument);
    c.queries[5] = bad;
    EXPECT_THROW(attend_reference(make_problem(c, 2, scale, out.data())), InvalidArgument);
    EXPECT_THROW(attend_integer(make_problem(c, 2, scale, out.data())), InvalidArgument);
    EXPECT_THROW(attend_fast_float(make_problem(c, 2, scale, out.data())), InvalidArgument);
    EXPECT_EQ(out, std::vector<float>(2 * 64, -1.0f));
  }
  {  // int4: one row's blocks with very different scales (a huge block next to tiny ones, an all-zero
     // block), odd lengths: the per-block weights keep each block's own scale
    Rng rng(16);
    for (size_t d : {40u, 128u}) {
      const size_t n = 333;
      auto k = random_vectors(rng, n, d, 1.0f), v = random_vectors(rng, n, d, 1.0f);
      for (size_t i = 0; i < n; ++i) {
        for (size_t j = 0; j < d; ++j) {
          const float f = j < 32 ? 3000.0f : (j < 64 ? 1e-3f : 1.0f);
          v[i * d + j] *= f;
          k[i * d + j] *= j >= 32 && j < 64 ? 0.0f : f;
        }
      }
      const HeadCache c = encode_cache("q4", k, v, random_vectors(rng, 4, d, 1.0f), n, d);
      std::vector<float> ref(4 * d), integer(4 * d);
      const float sc = 1.0f / (3000.0f * std::sqrt(static_cast<float>(d)));  // scores of order 1
      attend_reference(make_problem(c, 4, sc, ref.data()));
      attend_integer(make_problem(c, 4, sc, integer.data()));
      for (float x : integer) ASSERT_TRUE(std::isfinite(x)) << d;
      EXPECT_LT(rel_error(integer, ref), 0.03) << d;
      for (size_t h = 0; h < 4; ++h) {  // the tiny block keeps its own precision
        const auto at = [&](const std::vector<float>& o) { return std::vector<float>(o.begin() + h * d + 32, o.begin() + h * d + 40); };
        const auto rt = at(ref), it = at(integer);
        EXPECT_LT(rel_error(it, rt), 0.03) << d << " head " << h;
      }
    }
  }
  {  // formats the integer path does not take run the float kernels, bit for bit
    const HeadCache c = make_cache("rotor3", "f16", 64, 300, 4, 13);
    std::vector<float> a(4 * 64), b(4 * 64);
    attend_fast(make_problem(c, 4, scale, a.data()));
    attend_fast_float(make_problem(c, 4, scale, b.data()));
    EXPECT_EQ(a, b);
  }
}

}  // namespace
}  // namespace rq
