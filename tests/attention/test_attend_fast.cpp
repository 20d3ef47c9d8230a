// The fast attention kernels (float arithmetic) against the scalar reference, on every SIMD target
// compiled in and supported by this CPU: all formats, head_dim 64/128 (and an odd one), GQA
// 1/3/4/6, caches of length 1 to several thousand split into pages of different sizes for K and V.
// The integer arithmetic (the default) is tested in test_attend_integer.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "attention_test_util.hpp"
#include "rq/attention/attention_fast.hpp"
#include "rq/core/errors.hpp"

namespace rq {
namespace {

using namespace rq::test;

// Runs the fast kernels (float arithmetic: the reference to float rounding) vs the reference on the
// current target; returns the relative error.
double compare(const std::string& kf, const std::string& vf, size_t d, size_t n_tokens, size_t gqa, float scale,
               uint64_t seed) {
  const HeadCache c = make_cache(kf, vf, d, n_tokens, gqa, seed);
  std::vector<float> ref(gqa * d), fast(gqa * d, -1.0f);
  attend_reference(make_problem(c, gqa, scale, ref.data()));
  attend_fast_float(make_problem(c, gqa, scale, fast.data()));
  for (float v : fast) EXPECT_TRUE(std::isfinite(v));
  return rel_error(fast, ref);
}

class PerTarget : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { force_attention_simd_target(GetParam()); }
  void TearDown() override { force_attention_simd_target(""); }
};

TEST_P(PerTarget, DispatchesToTheForcedTarget) { EXPECT_EQ(attention_simd_target(), GetParam()); }

TEST_P(PerTarget, EveryFormatMatchesReference) {
  uint64_t seed = 100;
  for (const auto& f : format_table()) {
    for (size_t d : {64u, 128u}) {
      for (size_t n : {1u, 2u, 37u, 300u}) {
        for (size_t gqa : {1u, 4u}) {
          const double err = compare(std::string(f.name), std::string(f.name), d, n, gqa, 1.0f / std::sqrt(float(d)), ++seed);
          EXPECT_LT(err, 1e-4) << f.name << " d=" << d << " n=" << n << " gqa=" << gqa;
        }
      }
    }
  }
}

TEST_P(PerTarget, MixedFormatsOddDimsAndGroups) {
  const char* pairs[][2] = {{"rotor3", "turbo3"}, {"f16", "rotor2"}, {"q4", "q8"}, {"turbo4", "q4h"},
                            {"planar3", "iso4"}, {"isofull2", "none3"}, {"turbodense3", "f32"}};
  uint64_t seed = 7000;
  for (const auto& pr : pairs) {
    for (size_t d : {5u, 40u, 96u, 130u}) {
      for (size_t gqa : {3u, 6u}) {
        const double err = compare(pr[0], pr[1], d, 259, gqa, 0.3f, ++seed);
        EXPECT_LT(err, 1e-4) << pr[0] << "/" << pr[1] << " d=" << d << " gqa=" << gqa;
      }
    }
  }
}

TEST_P(PerTarget, LongContextsWithThreadsAndPeakySoftmax) {
  uint64_t seed = 9000;
  for (const char* f : {"rotor3", "turbo3", "f16", "q8", "q4", "turbo2", "rotor4"}) {
    for (size_t n : {5000u, 4097u}) {
      // scale 1.0: very peaky softmax, the running max moves between chunks and splits.
      for (float scale : {1.0f / std::sqrt(128.0f), 1.0f}) {
        const double err = compare(f, f, 128, n, 4, scale, ++seed);
        EXPECT_LT(err, 2e-4) << f << " n=" << n << " scale=" << scale;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, PerTarget, ::testing::ValuesIn(attention_simd_targets()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(AttendFast, HasAtLeastOneTarget) {
  const auto targets = attention_simd_targets();
  ASSERT_FALSE(targets.empty());
  EXPECT_EQ(attention_simd_target(), targets.front());
}

TEST(AttendFast, BatchOfHeadsMatchesReferencePerHead) {
  const size_t d = 128, gqa = 4;
  std::vector<HeadCache> caches;
  const size_t lengths[] = {1, 900, 3000, 17, 2048, 5, 1024, 333};
  for (size_t h = 0; h < 8; ++h) caches.push_back(make_cache(h % 2 ? "rotor3" : "turbo3", "rotor3", d, lengths[h], gqa, 50 + h));
  std::vector<float> ref(8 * gqa * d), fast(8 * gqa * d);
  std::vector<AttentionProblem> problems;
  for (size_t h = 0; h < 8; ++h) {
    attend_reference(make_problem(caches[h], gqa, 0.1f, ref.data() + h * gqa * d));
    problems.push_back(make_problem(caches[h], gqa, 0.1f, fast.data() + h * gqa * d));
  }
  for (int threads : {0, 1, 2, 3}) {
    std::fill(fast.begin(), fast.end(), 0.0f);
    attend_fast_batch(problems.data(), problems.size(), threads, FastArithmetic::Float);
    EXPECT_LT(rel_error(fast, ref), 1e-4) << "threads=" << threads;
  }
}

// PageSpan::readable_after lets the SIMD loads of a span's last rows read on into memory the caller
// vouches for (the rest of a cache page) instead of copying those rows or scoring them with scalar
// code: the same results either way.
// (Under ASan a load past what is claimed would fail here: the claim is exactly the buffer's end.)
TEST(AttendFast, ReadableAfterChangesNothing) {
  for (const char* fmt : {"rotor3", "turbo3", "rotor2", "q4", "turbo4", "planar3"}) {
    for (const size_t d : {size_t{64}, size_t{128}, size_t{97}}) {
      const HeadCache c = make_cache(fmt, fmt, d, 1500, 3, 91);
      for (const auto arithmetic : {FastArithmetic::Float, FastArithmetic::IntegerAlways}) {
        std::vector<float> plain(3 * d), vouched(3 * d);
        AttentionProblem p = make_problem(c, 3, 0.1f, plain.data());
        attend_fast_batch(&p, 1, 1, arithmetic);
        for (auto* pages : {&p.k_pages, &p.v_pages}) {
          const auto& codes = pages == &p.k_pages ? c.k_codes : c.v_codes;
          const size_t cb = (pages == &p.k_pages ? c.k_codec : c.v_codec)->layout().code_bytes;
          for (PageSpan& s : *pages) {
            s.readable_after = static_cast<size_t>(codes.data() + codes.size() - (s.codes + s.n_tokens * cb));
          }
        }
        p.out = vouched.data();
        attend_fast_batch(&p, 1, 1, arithmetic);
        // The integer path copies unsafe rows (same integers); the float path (also q4's) scores
        // them with its scalar loop instead (another summation order).
        EXPECT_LT(rel_error(vouched, plain), 1e-6) << fmt << " d=" << d;
      }
    }
  }
}

TEST(AttendFast, QjlFallsBackToReference) {
  EXPECT_FALSE(attend_fast_supported(Codec(find_format("turbo3_qjl"), 64), Codec(find_format("rotor3"), 64)));
  EXPECT_TRUE(attend_fast_supported(Codec(find_format("rotor3"), 64), Codec(find_format("f16"), 64)));
  EXPECT_LT(compare("turbo3_qjl", "rotor3", 64, 100, 2, 0.125f, 3), 1e-6);
}

TEST(AttendFast, RejectsInconsistentProblems) {
  const HeadCache c = make_cache("rotor3", "rotor3", 64, 10, 1, 1);
  std::vector<float> out(64);
  AttentionProblem p = make_problem(c, 1, 0.125f, out.data());
  AttentionProblem bad = p;
  bad.v_pages.pop_back();
  EXPECT_THROW(attend_fast(bad), InvalidArgument);
  bad = p;
  bad.k_pages.clear();
  bad.v_pages.clear();
  EXPECT_THROW(attend_fast(bad), InvalidArgument);
  bad = p;
  bad.queries = nullptr;
  EXPECT_THROW(attend_fast(bad), InvalidArgument);
  bad = p;
  bad.gqa_group = 0;
  EXPECT_THROW(attend_fast(bad), InvalidArgument);
  bad = p;
  bad.k_pages[0].codes = nullptr;
  EXPECT_THROW(attend_fast(bad), InvalidArgument);
  const Codec other(find_format("rotor3"), 128);
  bad = p;
  bad.v_codec = &other;
  EXPECT_THROW(attend_fast(bad), InvalidArgument);
  EXPECT_THROW(force_attention_simd_target("NO_SUCH_TARGET"), InvalidArgument);
  EXPECT_THROW(attend_fast_batch(nullptr, 2), InvalidArgument);
}

}  // namespace
}  // namespace rq
