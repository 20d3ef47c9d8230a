// GPU tests of the CUDA kernels against the CPU reference. Each skips without a CUDA device (CI).
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "rq/cuda/harness.hpp"

namespace rq::cuda {
namespace {

using namespace harness;

#define RQ_REQUIRE_GPU()                                            \
  do {                                                              \
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device";      \
  } while (0)

int sm_count() {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "properties");
  return prop.multiProcessorCount;
}

class AppendMatchesCodec : public ::testing::TestWithParam<std::string> {};

TEST_P(AppendMatchesCodec, Fp16InputsBitExact) {
  RQ_REQUIRE_GPU();
  Rng rng(1234);
  for (int lanes : {4, 1}) {
    const AppendCheck c = check_append(GetParam(), InputType::F16, rng, lanes, /*exact=*/true);
    EXPECT_TRUE(c.ok()) << c.text;
    EXPECT_EQ(c.row_mismatch, 0u) << c.text;
    EXPECT_GT(c.rows, 0u);
  }
}

// The fast (default) kernels, 1, 4, 8 and 16 lanes per vector: differing codes only within
// kThresholdEps of their threshold, differing norms within one fp16 ulp.
TEST_P(AppendMatchesCodec, Fp16InputsFastWithinRounding) {
  RQ_REQUIRE_GPU();
  Rng rng(4321);
  for (int lanes : {1, 4, 8, 16}) {
    const AppendCheck c = check_append(GetParam(), InputType::F16, rng, lanes, /*exact=*/false);
    EXPECT_TRUE(c.ok()) << c.text;
    EXPECT_EQ(c.code_unexplained, 0u) << c.text;
    EXPECT_EQ(c.norm_unexplained, 0u) << c.text;
    EXPECT_GT(c.rows, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, AppendMatchesCodec,
                         ::testing::Values("rotor3", "turbo3", "rotor2", "rotor4", "turbo2", "turbo4", "planar3",
                                           "iso3", "isofull3"));

TEST(AppendMatchesCodecBf16, RotorAndTurbo) {
  RQ_REQUIRE_GPU();
  Rng rng(99);
  for (const char* f : {"rotor3", "turbo3"}) {
    for (int lanes : {1, 4, 8, 16}) {  // exact: 1 and 4 lanes; fast: 1, 4, 8 and 16
      for (bool exact : {false, true}) {
        if (lanes > 4 && exact) continue;
        const AppendCheck c = check_append(f, InputType::BF16, rng, lanes, exact);
        EXPECT_TRUE(c.ok()) << c.text;
      }
    }
  }
}

// fp32 inputs (32 bytes a coordinate pair, four 128-byte lines a row for the per-warp staging): every
// kernel, one tile per block and three.
TEST(AppendMatchesCodecFp32, RotorAndTurbo) {
  RQ_REQUIRE_GPU();
  Rng rng(3232);
  for (const char* f : {"rotor3", "turbo3", "turbo4"}) {
    for (int lanes : {1, 2, 4, 8, 16}) {
      for (int rounds : {0, 3}) {
        const AppendCheck c = check_append(f, InputType::F32, rng, lanes, /*exact=*/false, rounds);
        EXPECT_TRUE(c.ok()) << f << " lanes " << lanes << " rounds " << rounds << ": " << c.text;
        EXPECT_GT(c.rows, 0u);
      }
    }
    for (int lanes : {1, 4}) {
      const AppendCheck c = check_append(f, InputType::F32, rng, lanes, /*exact=*/true);
      EXPECT_TRUE(c.ok()) << f << " exact, lanes " << lanes << ": " << c.text;
      EXPECT_EQ(c.row_mismatch, 0u) << c.text;
    }
  }
}

// The fast kernel with several lanes and three rounds of vectors per block, and with one lane and
// three tiles per block (the next tile copied in while one is encoded); the last block stops early.
TEST(AppendMatchesCodecRounds, RotorAndTurbo) {
  RQ_REQUIRE_GPU();
  Rng rng(31);
  for (const char* f : {"rotor3", "turbo3"}) {
    for (int lanes : {1, 4, 8, 16}) {
      const AppendCheck c = check_append(f, InputType::F16, rng, lanes, /*exact=*/false, /*rounds_per_block=*/3);
      EXPECT_TRUE(c.ok()) << c.text;
    }
  }
}

// The fast two-lane kernels (turbo's Hadamard formats; rotor at 2 and 3 bits, session 17): fp16 and
// bf16, one wave and three tiles per block; other block rotations asked for two lanes are refused
// with an error status.
TEST(AppendMatchesCodecTwoLanes, TurboAndRotorFormats) {
  RQ_REQUIRE_GPU();
  Rng rng(2026);
  for (const char* f : {"turbo2", "turbo3", "turbo4", "turbo3_nocorr", "rotor2", "rotor3", "rotor3_nocorr"}) {
    for (InputType t : {InputType::F16, InputType::BF16}) {
      const AppendCheck c = check_append(f, t, rng, 2, /*exact=*/false);
      EXPECT_TRUE(c.ok()) << c.text;
      EXPECT_GT(c.rows, 0u);
    }
    const AppendCheck c = check_append(f, InputType::F16, rng, 2, /*exact=*/false, /*rounds_per_block=*/3);
    EXPECT_TRUE(c.ok()) << c.text;
  }
  for (const char* f : {"rotor4", "planar3", "iso3"}) EXPECT_THROW(check_append(f, InputType::F16, rng, 2, /*exact=*/false), CudaError);
}

TEST(AppendPolicy, NanInfStoredAsZerosAndFlagged) {
  RQ_REQUIRE_GPU();
  Rng rng(5);
  const std::pair<int, bool> kernels[] = {{1, false}, {2, false}, {4, false}, {8, false}, {16, false}, {4, true}, {1, true}};  // lanes, exact
  for (const char* format : {"turbo3", "rotor3"}) {  // rotor3: its own one- and two-lane kernels (session 17)
    for (const auto& [lanes, exact] : kernels) {
      const PolicyCheck c = check_append_policy(rng, lanes, exact, format);
      EXPECT_TRUE(c.flag_raised) << format << " lanes " << lanes;
      EXPECT_TRUE(c.bad_rows_zero) << format << " lanes " << lanes;
      EXPECT_TRUE(c.good_rows_kept) << format << " lanes " << lanes;
      EXPECT_TRUE(c.rejects_bad_dim) << format << " lanes " << lanes;
    }
  }
}

class DecodeMatchesReference : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(DecodeMatchesReference, OddLengthsAndGqaExact) {
  RQ_REQUIRE_GPU();
  Rng rng(77);
  const DecodeCheck c = check_decode(std::get<0>(GetParam()), std::get<1>(GetParam()), sm_count(), rng, true);
  EXPECT_TRUE(c.ok()) << c.text;
}

TEST_P(DecodeMatchesReference, OddLengthsAndGqaTensorCores) {
  RQ_REQUIRE_GPU();
  Rng rng(78);
  const DecodeCheck c = check_decode(std::get<0>(GetParam()), std::get<1>(GetParam()), sm_count(), rng, false);
  EXPECT_TRUE(c.ok()) << c.text;
}

// One long sequence at batch 1: hundreds of splits over the (pass, split block, sequence) grid, the
// 512-thread merge launch; two calls give the same bits.
TEST(DecodeLongSequence, TensorCoresPairMajorGrid) {
  RQ_REQUIRE_GPU();
  Rng rng(80);
  for (const char* f : {"rotor3", "turbo3"}) {
    const DecodeCheck c = check_decode(f, 32, sm_count(), rng, false, {70001});
    EXPECT_TRUE(c.ok()) << c.text;
    EXPECT_TRUE(c.repeat_identical) << c.text;
  }
}

// Fewer than 64 (sequence, 4-query pass) pairs: every split block rotates its own queries (no query
// launch), here with two passes per KV head (GQA 8) and a last pass of 2 query heads (GQA 6).
TEST(DecodeOwnQueries, TwoPassesAndAShortLastPass) {
  RQ_REQUIRE_GPU();
  Rng rng(81);
  for (const char* f : {"rotor3", "turbo3"}) {
    for (int n_q_heads : {64, 48}) {
      const DecodeCheck c = check_decode(f, n_q_heads, sm_count(), rng, false, {1000, 129, 7, 0});
      EXPECT_TRUE(c.ok()) << c.text;
    }
  }
}

// Batches of 64 or more (sequence, KV head) pairs (the last blocks merge; on an H200 all of these
// run 24-warp blocks, plan_decode): empty sequences (zeros), empty splits, 64 pairs on one KV head
// (one long sequence among 63 short or empty ones), two query passes a KV head (GQA 8, and GQA 6
// with a short last pass); two calls give the same bits.
TEST(DecodeBatched, SkewedBatchesMatchReference) {
  RQ_REQUIRE_GPU();
  Rng rng(82);
  std::vector<int32_t> one_long(64, 0);
  one_long[5] = 150000;
  for (int i = 10; i < 64; i += 3) one_long[i] = i;
  const std::vector<int32_t>& mix = kMixedBatchLens;
  for (const char* f : {"rotor3", "turbo3"}) {
    const DecodeCheck mixed = check_decode(f, 32, sm_count(), rng, false, mix);
    EXPECT_TRUE(mixed.ok()) << mixed.text;
    EXPECT_EQ(mixed.block_warps, sm_count() >= 128 ? 24 : 12) << mixed.text;
    EXPECT_TRUE(mixed.repeat_identical) << mixed.text;
    const DecodeCheck skewed = check_decode(f, 4, sm_count(), rng, false, one_long, 1);
    EXPECT_TRUE(skewed.ok()) << skewed.text;
    EXPECT_TRUE(skewed.repeat_identical) << skewed.text;
    // 32 sequences x 8 KV heads: 12-warp blocks, one a pair (the single-block path of (32, 8K))
    std::vector<int32_t> many(32);
    for (int i = 0; i < 32; ++i) many[i] = (i * 977 + 13) % 3001 + (i % 5 == 0 ? 0 : 1);
    many[7] = 0;
    const DecodeCheck single12 = check_decode(f, 32, sm_count(), rng, false, many);
    EXPECT_TRUE(single12.ok()) << single12.text;
    EXPECT_TRUE(single12.repeat_identical) << single12.text;
    for (int n_q_heads : {64, 48}) {  // two passes a KV head; GQA 6: a last pass of 2 query heads
      const DecodeCheck passes = check_decode(f, n_q_heads, sm_count(), rng, false,
                                              {300, 0, 4096, 65, 1000, 7, 2000, 129, 64, 1, 777, 3000, 0, 128, 191, 513});
      EXPECT_TRUE(passes.ok()) << passes.text;
      EXPECT_TRUE(passes.repeat_identical) << passes.text;
    }
  }
}

// Pages of 8-32 tokens (a 64-token chunk spans 2-8 pages; the small-page instantiation) and of 128
// and 256 tokens (chunks start inside a page, offsets 64, 128, 192), in 12-warp blocks (6 sequences)
// and 24-warp blocks (16 sequences); the exact kernel on the same pages.
TEST(DecodePageSizes, ChunksAcrossAndInsidePagesMatchReference) {
  RQ_REQUIRE_GPU();
  Rng rng(83);
  const std::vector<int32_t>& mix = kMixedBatchLens;
  for (int page : {8, 16, 32, 128, 256}) {
    for (const char* f : {"rotor3", "turbo3"}) {
      const DecodeCheck few = check_decode(f, 32, sm_count(), rng, false, {1, 7, 129, 1000, 2500, 0}, 8, page);
      EXPECT_TRUE(few.ok()) << few.text;
      EXPECT_TRUE(few.tensor_cores) << few.text;
      const DecodeCheck many = check_decode(f, 32, sm_count(), rng, false, mix, 8, page);
      EXPECT_TRUE(many.ok()) << many.text;
      EXPECT_TRUE(many.repeat_identical) << many.text;
    }
    const DecodeCheck exact = check_decode("rotor3", 32, sm_count(), rng, true, {1, 7, 129, 1000, 2500, 0}, 8, page);
    EXPECT_TRUE(exact.ok()) << exact.text;
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, DecodeMatchesReference,
                         ::testing::Values(std::make_tuple("rotor3", 32), std::make_tuple("turbo3", 32),
                                           std::make_tuple("planar3", 32), std::make_tuple("iso3", 32),
                                           std::make_tuple("rotor3", 8), std::make_tuple("rotor3", 16),
                                           std::make_tuple("turbo4", 64), std::make_tuple("rotor2", 32)));

TEST(DecodePlan, CoversTheLongestSequence) {
  for (int len : {1, 100, 4096, 131072}) {
    for (int batch : {1, 16}) {
      for (bool exact : {false, true}) {
        const DecodePlan p = plan_decode(batch, len, 8, 132, exact);
        EXPECT_GT(p.tokens_per_split, 0);
        if (exact) EXPECT_EQ(p.tokens_per_split % 256, 0);
        else EXPECT_GE(p.tokens_per_split, 64);  // >= 64: no empty split (chunks spread evenly)
        EXPECT_GE(static_cast<long long>(p.tokens_per_split) * p.max_splits, len);
        EXPECT_LE(p.max_splits, 1024);
      }
    }
  }
}

// Tensor cores: one 64-token chunk per split where every chunk of the longest sequence gets its own
// split within the wave (batch 1 x 4K: 64 splits, session 14), else at least two chunks per split.
TEST(DecodePlan, OneChunkPerSplitOnlyWhereTheWaveHoldsThemAll) {
  const DecodePlan short_ctx = plan_decode(1, 4096, 8, 132, false);
  EXPECT_EQ(short_ctx.tokens_per_split, 64);
  EXPECT_EQ(short_ctx.max_splits, 64);
  const DecodePlan mid = plan_decode(1, 32768, 8, 132, false);  // 512 chunks > 396 splits
  EXPECT_EQ(mid.tokens_per_split, 128);
  const DecodePlan batched = plan_decode(8, 4096, 8, 132, false);  // 64 chunks > 48 splits a head
  EXPECT_EQ(batched.tokens_per_split, 128);
}

// The tensor-core plan fills at most one wave of blocks (12 splits a block, 2 blocks per SM on 132
// SMs): the splits per head are rounded down, e.g. batch 2 (16 KV heads) gets 192 splits a head
// (256 blocks), not 204 (272 blocks on 264 slots).
TEST(DecodePlan, TensorCoreGridIsAtMostOneWave) {
  for (int batch : {1, 2, 3, 5, 8, 16, 32}) {
    const long long heads = 8LL * batch;
    const DecodePlan p = plan_decode(batch, 1 << 20, 8, 132, false);
    const long long blocks = heads * ((p.max_splits + 11) / 12);
    EXPECT_LE(blocks, 264) << "batch " << batch;
    EXPECT_GE(blocks, 264 - 12 * heads) << "batch " << batch;  // and within one block a head of full
  }
}

}  // namespace
}  // namespace rq::cuda
