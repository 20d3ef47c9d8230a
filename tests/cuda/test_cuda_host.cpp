// Host-only tests of the CUDA module: paged geometry, codec tables, the default append kernel. They need no GPU.
#include <gtest/gtest.h>

#include "rq/codec/codec.hpp"
#include <cmath>
#include <vector>

#include "rq/core/errors.hpp"
#include "rq/core/half.hpp"
#include "rq/cuda/append.hpp"
#include "rq/cuda/decode.hpp"
#include "rq/cuda/device_codec.hpp"
#include "rq/cuda/paged_layout.hpp"
#include "rq/cuda/split_balance.hpp"
#include "rq/format/format.hpp"
#include "rq/rotation/block_rotations.hpp"

namespace rq::cuda {
namespace {

TEST(PagedGeometry, SplitsRowsIntoAlignedMainAndTail) {
  for (int payload : {16, 48, 49, 33, 65, 15, 1}) {
    const PagedGeometry g = make_paged_geometry(8, 16, 3, payload);
    EXPECT_EQ(g.row_main_bytes % 16, 0);
    EXPECT_LT(g.row_tail_bytes, 16);
    EXPECT_EQ(g.row_main_bytes + g.row_tail_bytes, payload);
    EXPECT_EQ(g.rows(), 3u * 8u * 16u);
    EXPECT_EQ(g.codes_bytes() + g.tail_bytes(), g.rows() * static_cast<size_t>(payload));
    EXPECT_EQ(g.norms_bytes(), g.rows() * 2);
  }
  const PagedGeometry g = make_paged_geometry(8, 16, 3, 49);
  EXPECT_EQ(g.row(0, 0, 0), 0u);
  EXPECT_EQ(g.row(0, 0, 15), 15u);
  EXPECT_EQ(g.row(0, 1, 0), 16u);
  EXPECT_EQ(g.row(2, 7, 15), g.rows() - 1);
}

// Balanced decode splits (split_balance.hpp): every warp belongs to exactly one pair, every pair gets
// at least one warp and its chunks exactly once, in order, no warp has more than ceil(T / E) chunks,
// and a pair's partial slots are distinct and within the table.
void check_balance(const std::vector<int>& lens, int pairs_per_seq, int warps, int block_warps) {
  std::vector<int64_t> prefix(lens.size() + 1, 0);
  for (size_t b = 0; b < lens.size(); ++b) prefix[b + 1] = prefix[b] + (lens[b] > 0 ? (lens[b] + 63) / 64 : 0);
  SplitBalance sb;
  sb.chunk_prefix = prefix.data();
  sb.batch = static_cast<int32_t>(lens.size());
  sb.pairs_per_seq = pairs_per_seq;
  sb.warps = warps;
  const int64_t pairs = sb.pairs(), blocks = (warps + block_warps - 1) / block_warps;
  ASSERT_LE(pairs, warps);
  EXPECT_EQ(sb.first_split(0), 0);
  EXPECT_EQ(sb.first_split(pairs), warps);
  std::vector<int64_t> covered(pairs, 0), next_chunk(pairs, 0), splits(pairs, 0);
  std::vector<int> slot_used(blocks + pairs, -1);
  // A pair of C chunks has at least E C / T warps (E = warps beyond one a pair): <= ceil(T / E) chunks a warp.
  const int64_t extra = warps - pairs;
  const double most = extra > 0 ? std::ceil(static_cast<double>(sb.total_chunks()) / extra) : 1e18;
  for (int64_t s = 0; s < warps; ++s) {
    const SplitPlace pl = place_split(sb, s, block_warps);
    ASSERT_GE(pl.pair, 0);
    ASSERT_LT(pl.pair, pairs);
    EXPECT_LE(sb.first_split(pl.pair), s);
    EXPECT_GT(sb.first_split(pl.pair + 1), s);
    EXPECT_EQ(pl.chunk_begin, next_chunk[pl.pair]) << "split " << s;  // consecutive, in order
    next_chunk[pl.pair] = pl.chunk_end;
    covered[pl.pair] += pl.chunk_end - pl.chunk_begin;
    ++splits[pl.pair];
    EXPECT_LE(pl.chunk_end - pl.chunk_begin, most) << "split " << s;
    const int64_t block = s / block_warps, slot = block + pl.pair;
    EXPECT_GE(slot, pl.slot0);
    EXPECT_LT(slot, pl.slot0 + pl.parts);
    ASSERT_LT(slot, blocks + pairs);
    EXPECT_TRUE(slot_used[slot] == -1 || slot_used[slot] == pl.pair) << "slot " << slot;
    slot_used[slot] = static_cast<int>(pl.pair);
  }
  for (int64_t p = 0; p < pairs; ++p) {
    EXPECT_GE(splits[p], 1) << "pair " << p;
    EXPECT_EQ(covered[p], sb.chunks_of(p)) << "pair " << p;
  }
}

TEST(SplitBalance, EveryChunkOnceEveryPairAWarpEvenLoads) {
  check_balance(std::vector<int>(16, 65536), 8, 3168, 12);         // (16, 64K): 24-25 warps a pair
  check_balance(std::vector<int>(32, 8192), 8, 3168, 12);          // 12-13 warps a pair
  check_balance(std::vector<int>(8, 32768), 8, 3168, 12);
  check_balance({1, 7, 129, 1000, 2500, 0, 64, 65, 300, 777, 4096, 3, 128, 191, 2000, 513}, 8, 3168, 12);
  check_balance({0, 0, 0, 0, 0, 0, 0, 0}, 8, 96, 12);              // nothing to do: one empty warp a pair
  check_balance({100000, 0, 0, 0, 0, 0, 0, 5}, 16, 3168, 12);       // one long sequence takes ~all warps
  check_balance(std::vector<int>(2047, 3000), 1, 3168, 12);
  check_balance({5, 1 << 30}, 3, 1000, 12);                         // 64-bit products
}

TEST(SplitBalance, FloorDivisionAcrossThe32BitBoundary) {
  const int64_t two32 = int64_t(1) << 32;
  for (int64_t a : {int64_t(0), int64_t(7), two32 - 1, two32, two32 + 5, int64_t(1) << 40, (int64_t(1) << 62) + 3}) {
    for (int64_t b : {int64_t(1), int64_t(3), int64_t(12), two32 - 1, two32, two32 + 1}) EXPECT_EQ(floor_div(a, b), a / b) << a << " / " << b;
  }
}

TEST(SplitBalance, FillsTheWaveWhereWholeBlocksPerPairCannot) {
  const DecodePlan p = plan_decode(16, 65536, 8, 132, false, true);
  EXPECT_EQ(p.balanced_blocks, 264);  // one pair per block: 256 blocks, 8 SMs with one
  EXPECT_EQ(plan_decode(16, 65536, 8, 132, false).balanced_blocks, 0);       // not asked for
  EXPECT_EQ(plan_decode(1, 131072, 8, 132, false, true).balanced_blocks, 0);  // < 64 pairs: merge launch
  EXPECT_EQ(plan_decode(16, 65536, 8, 132, true, true).balanced_blocks, 0);   // exact kernel
  const DecodePlan small = plan_decode(64, 64, 8, 132, false, true);           // 512 pairs of one chunk
  EXPECT_GE(static_cast<long long>(small.balanced_blocks) * 12, 512);
  EXPECT_LE(small.balanced_blocks, 264);
}

TEST(CodecTables, RotorThreeBitsAtD128) {
  std::vector<Codec> codecs;
  for (uint32_t h = 0; h < 3; ++h) {
    RotationSeed s;
    s.head = h;
    codecs.emplace_back(find_format("rotor3"), 128, s);
  }
  const HostCodecTables t = make_codec_tables({&codecs[0], &codecs[1], &codecs[2]});
  EXPECT_EQ(t.info.family, RotationFamily::Block3);
  EXPECT_EQ(t.info.rotated_dim, 128);  // pad-free last group (format v2): 42 groups of 3 and one of 2
  EXPECT_EQ(t.info.bits, 3);
  EXPECT_EQ(t.info.payload_bytes, 48);
  EXPECT_EQ(t.info.rotation_stride, 43 * 9);  // still 43 matrices; the last one's pad row is unused
  ASSERT_EQ(t.rotation.size(), 3u * 43u * 9u);
  const auto& m1 = dynamic_cast<const RotorRotation&>(codecs[1].rotation()).matrices();
  for (size_t i = 0; i < m1.size(); ++i) EXPECT_EQ(t.rotation[43 * 9 + i], m1[i]);
  EXPECT_EQ(t.centroids, codecs[0].centroids());
  ASSERT_EQ(t.thresholds.size(), 7u);
  for (size_t i = 0; i + 1 < t.thresholds.size(); ++i) EXPECT_LT(t.thresholds[i], t.thresholds[i + 1]);
}

// The kernels store and read rows of 128 coordinates in whole 16-byte units (no tail plane):
// every format they accept has rotated_dim = 128 and a payload that is a multiple of 16.
TEST(CodecTables, EveryGpuFormatHasRowsWithoutTail) {
  int supported = 0;
  for (const auto& f : format_table()) {
    if (f.scheme != Scheme::LloydMax || f.qjl) continue;
    const Codec c(f, 128);
    if (!gpu_supports(c)) continue;
    ++supported;
    const HostCodecTables t = make_codec_tables({&c});
    EXPECT_EQ(t.info.rotated_dim, 128) << f.name;
    EXPECT_EQ(t.info.payload_bytes, 16 * t.info.bits) << f.name;
    EXPECT_EQ(make_paged_geometry(8, 64, 1, t.info.payload_bytes).row_tail_bytes, 0) << f.name;
  }
  EXPECT_GE(supported, 15);
}

// The fast kernels' quantizer: code = floor(half + g(u)) with g(u) = levels sum_i k_i u^(2i+1)
// (k = code_polynomial = a_i / levels) through g(t[half + i]) = i + 1; none at 4 bits.
TEST(CodecTables, CodePolynomialMapsEachPositiveThresholdToItsIndex) {
  for (const char* name : {"turbo2", "turbo3", "rotor2", "rotor3", "planar3", "iso2", "turbo4", "rotor4"}) {
    const Codec c(find_format(name), 128);
    const HostCodecTables t = make_codec_tables({&c});
    const size_t levels = t.centroids.size(), half = levels / 2;
    if (levels > 8) {
      EXPECT_TRUE(t.code_polynomial.empty()) << name;
      continue;
    }
    ASSERT_EQ(t.code_polynomial.size(), half - 1) << name;
    for (size_t i = 0; i + 1 < half; ++i) {
      const double u = t.thresholds[half + i];
      double g = 0.0, power = u;
      for (float k : t.code_polynomial) g += static_cast<double>(levels) * k * power, power *= u * u;
      EXPECT_NEAR(g, static_cast<double>(i + 1), 1e-5) << name << " threshold " << i;
    }
  }
}

TEST(CodecTables, TurboPlanarIsoFamilies) {
  const Codec turbo(find_format("turbo4"), 128), planar(find_format("planar2"), 128), iso(find_format("iso3"), 128);
  const HostCodecTables tt = make_codec_tables({&turbo});
  EXPECT_EQ(tt.info.family, RotationFamily::Hadamard);
  EXPECT_EQ(tt.info.rotation_stride, 256);
  const HostCodecTables tp = make_codec_tables({&planar});
  EXPECT_EQ(tp.info.family, RotationFamily::Block2);
  const auto& cs = dynamic_cast<const PlanarRotation&>(planar.rotation()).cos_sin();
  EXPECT_EQ(tp.rotation[0], cs[0]);
  EXPECT_EQ(tp.rotation[1], -cs[1]);
  EXPECT_EQ(tp.rotation[2], cs[1]);
  EXPECT_EQ(make_codec_tables({&iso}).info.family, RotationFamily::Block4);
}

TEST(CodecTables, CodebooksAreSymmetricAndNearlyFp16AfterScaling) {
  for (const char* name : {"turbo2", "turbo3", "rotor3", "turbo4", "iso3"}) {
    const Codec c(find_format(name), 128);
    const HostCodecTables t = make_codec_tables({&c});
    const size_t levels = t.centroids.size();
    for (size_t k = 0; k < levels; ++k) EXPECT_EQ(t.centroids[k], -t.centroids[levels - 1 - k]) << name;
    EXPECT_EQ(t.thresholds[levels / 2 - 1], 0.0f) << name;
    EXPECT_GE(t.info.mma_scale, 1.0f);
    EXPECT_LT(t.info.mma_scale, 2.0f);
    EXPECT_LT(t.mma_scale_error, levels <= 8 ? 4e-5 : 1e-3) << name;  // vs 2^-11 = 4.9e-4 unscaled
    for (float v : t.centroids) {
      const float x = t.info.mma_scale * v;
      EXPECT_LE(std::fabs(round_to_half(x) - x), t.mma_scale_error * std::fabs(x) * 1.0001) << name;
    }
  }
}

TEST(CodecTables, RefusesWhatTheKernelsCannotRun) {
  const Codec f16(find_format("f16"), 128), qjl(find_format("turbo3_qjl"), 128), d64(find_format("rotor3"), 64),
      dense(find_format("turbodense3"), 128);
  for (const Codec* c : {&f16, &qjl, &d64, &dense}) {
    EXPECT_FALSE(gpu_supports(*c)) << c->format().name;
    EXPECT_THROW(make_codec_tables({c}), InvalidArgument) << c->format().name;
  }
  EXPECT_THROW(make_codec_tables({}), InvalidArgument);
  const Codec a(find_format("rotor3"), 128), b(find_format("turbo3"), 128);
  EXPECT_THROW(make_codec_tables({&a, &b}), InvalidArgument);
}

// The append launch refuses a geometry its kernels cannot address (page size below 1, 2^32 rows or
// more: the row index is 32-bit) before touching the device, so this runs without a GPU.
TEST(AppendLaunch, RefusesGeometryTheKernelsCannotAddress) {
  const Codec codec(find_format("turbo3"), 128);
  HostCodecTables tables = make_codec_tables({&codec});
  alignas(16) static float fake_tables[512];  // never read: the launch returns first
  tables.info.rotation = tables.info.centroids = tables.info.thresholds = tables.info.code_polynomial = fake_tables;
  alignas(16) static uint16_t fake_x[128];
  static int64_t fake_slots[1];
  static uint8_t fake_codes[64];
  static uint16_t fake_norms[1];
  auto params = [&](PagedGeometry g) {
    AppendParams p;
    p.n_tokens = 1;
    p.n_kv_heads = 1;
    p.slot_mapping = fake_slots;
    p.n_jobs = 1;
    p.jobs[0] = AppendJob{fake_x, 128, InputType::F16, tables.info, g, PagedPlanes{fake_codes, nullptr, fake_norms}};
    return p;
  };
  PagedGeometry zero_page = make_paged_geometry(1, 16, 4, tables.info.payload_bytes);
  zero_page.page_size = 0;
  EXPECT_EQ(launch_quantize_append(params(zero_page), nullptr), cudaErrorInvalidValue);
  const PagedGeometry huge = make_paged_geometry(1, 1 << 16, 1 << 16, tables.info.payload_bytes);  // 2^32 rows
  EXPECT_EQ(huge.rows(), size_t{1} << 32);
  EXPECT_EQ(launch_quantize_append(params(huge), nullptr), cudaErrorInvalidValue);
  // A 3-bit codec without its code polynomial: the fast kernels cannot quantize with it.
  tables.info.code_polynomial = nullptr;
  EXPECT_EQ(launch_quantize_append(params(make_paged_geometry(1, 16, 4, tables.info.payload_bytes)), nullptr),
            cudaErrorInvalidValue);
}

}  // namespace
}  // namespace rq::cuda

namespace rq::cuda {
namespace {

// The default append kernel per size and rotation family (include/rq/cuda/append.hpp): what the
// benchmark rows labelled "default" ran on the H200.
TEST(DefaultAppendKernel, PerSizeAndFamily) {
  using F = RotationFamily;
  auto is = [](AppendKernel k, bool exact, int lanes, int rounds) {
    return k.exact == exact && k.lanes == lanes && k.rounds == rounds;
  };
  EXPECT_TRUE(is(default_append_kernel(4096, false, F::Hadamard, 3), false, 16, 1));
  EXPECT_TRUE(is(default_append_kernel(16384, false, F::Hadamard, 3), false, 2, 0));
  EXPECT_TRUE(is(default_append_kernel(262144, false, F::Hadamard, 3), false, 2, 0));
  EXPECT_TRUE(is(default_append_kernel(1048576, false, F::Hadamard, 3), false, 2, 0));
  EXPECT_TRUE(is(default_append_kernel(16384, false, F::Block3, 3), false, 2, 0));
  EXPECT_TRUE(is(default_append_kernel(16384, false, F::Block3, 2), false, 2, 0));
  EXPECT_TRUE(is(default_append_kernel(16384, false, F::Block3, 4), false, 4, 1));
  EXPECT_TRUE(is(default_append_kernel(32768, false, F::Block3, 3), false, 1, 0));
  EXPECT_TRUE(is(default_append_kernel(65536, false, F::Block3, 3), false, 1, 0));
  EXPECT_TRUE(is(default_append_kernel(16384, false, F::Block2, 3), true, 4, 1));
  EXPECT_TRUE(is(default_append_kernel(65536, true, F::Hadamard, 3), true, 1, 1));
}

}  // namespace
}  // namespace rq::cuda
