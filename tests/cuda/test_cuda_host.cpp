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

// The tensor-core plan's block size (decode.cu, decode_tc.cu): 24-warp blocks where the last blocks
// merge (>= 64 (sequence, KV head) pairs) and every pair's splits are whole 24-warp blocks in one
// wave (pairs <= SMs), else 12; either way the grid is at most one wave of 24 warps an SM.
TEST(DecodePlan, BlockWarpsAndOneWave) {
  struct Case {
    int batch, len, sms, block_warps, splits;
  };
  for (const Case& c : {Case{16, 65536, 132, 24, 24}, Case{8, 32768, 132, 24, 48}, Case{32, 8192, 132, 12, 12},
                        Case{1, 131072, 132, 12, 396}, Case{1, 4096, 132, 12, 64},
                        Case{16, 65536, 114, 12, 12}}) {
    const DecodePlan p = plan_decode(c.batch, c.len, 8, c.sms, false);
    EXPECT_EQ(p.block_warps, c.block_warps) << c.batch << " x " << c.len << " on " << c.sms;
    EXPECT_EQ(p.max_splits, c.splits) << c.batch << " x " << c.len << " on " << c.sms;
    const long long blocks = static_cast<long long>(c.batch) * 8 * ((p.max_splits + p.block_warps - 1) / p.block_warps);
    EXPECT_LE(blocks * p.block_warps, 24LL * c.sms) << c.batch << " x " << c.len;
  }
  EXPECT_EQ(plan_decode(16, 65536, 8, 132, true).block_warps, 0);  // exact kernel: no warps a block
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
// more: the row index is 32-bit; a token stride of 2^31 elements or more) before touching the
// device, so this runs without a GPU.
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
  // A token stride of 2^31 elements or more: the kernels' parameter block holds it in 32 bits.
  AppendParams wide = params(make_paged_geometry(1, 16, 4, tables.info.payload_bytes));
  wide.jobs[0].token_stride = int64_t{1} << 31;
  EXPECT_EQ(launch_quantize_append(wide, nullptr), cudaErrorInvalidValue);
  // A 3-bit codec without its code polynomial: the fast kernels cannot quantize with it.
  tables.info.code_polynomial = nullptr;
  EXPECT_EQ(launch_quantize_append(params(make_paged_geometry(1, 16, 4, tables.info.payload_bytes)), nullptr),
            cudaErrorInvalidValue);
}

// Decode parameters the kernels cannot run are refused before any launch (no GPU needed): a plan's
// block size other than 0, 12 or 24, more than 1024 splits, a GQA group that does not divide, pages
// of 2^31 rows or more (KV heads x page size).
TEST(DecodeLaunch, RefusesPlansTheKernelsCannotRun) {
  const Codec codec(find_format("rotor3"), 128);
  HostCodecTables tables = make_codec_tables({&codec});
  alignas(16) static float fake_floats[4096];  // never read: the launch returns first
  tables.info.rotation = tables.info.centroids = tables.info.thresholds = tables.info.code_polynomial = fake_floats;
  static int32_t fake_lens[2], fake_pages[2];
  static uint8_t fake_codes[64];
  static uint16_t fake_norms[1];
  DecodeParams p;
  p.batch = 2;
  p.n_q_heads = 32;
  p.n_kv_heads = 8;
  p.queries = p.out = fake_floats;
  p.seq_lens = fake_lens;
  p.page_table = fake_pages;
  p.max_pages_per_seq = 1;
  p.k_codec = p.v_codec = tables.info;
  p.k_geometry = p.v_geometry = make_paged_geometry(8, 64, 1, tables.info.payload_bytes);
  p.k_planes = p.v_planes = PagedPlanes{fake_codes, nullptr, fake_norms};
  p.workspace = fake_floats;
  p.plan = plan_decode(2, 64, 8, 132);
  for (int bad : {7, 16, -12, 48}) {
    DecodeParams q = p;
    q.plan.block_warps = bad;
    EXPECT_EQ(launch_decode_attention(q, nullptr), cudaErrorInvalidValue) << bad;
  }
  DecodeParams many = p;
  many.plan.max_splits = 1025;
  EXPECT_EQ(launch_decode_attention(many, nullptr), cudaErrorInvalidValue);
  DecodeParams gqa = p;
  gqa.n_q_heads = 30;
  EXPECT_EQ(launch_decode_attention(gqa, nullptr), cudaErrorInvalidValue);
  DecodeParams huge_pages = p;  // 8 heads x 2^28 tokens: a page's 2^31 rows overflow the kernels' 32-bit row offsets
  huge_pages.k_geometry = huge_pages.v_geometry = make_paged_geometry(8, 1 << 28, 1, tables.info.payload_bytes);
  EXPECT_EQ(launch_decode_attention(huge_pages, nullptr), cudaErrorInvalidValue);
}

// Which pages the tensor-core decode takes (no GPU needed): powers of two from 8 tokens (a page's
// norms are one bulk copy of >= 16 bytes; pages of 8-32 tokens run the small-page instantiation),
// else the exact kernel; the exact flag always picks the exact kernel.
TEST(DecodeKernelChoice, TensorCoresFromPagesOfEightTokens) {
  const Codec codec(find_format("turbo3"), 128);
  HostCodecTables tables = make_codec_tables({&codec});
  DecodeParams p;
  p.batch = 1;
  p.n_q_heads = 32;
  p.n_kv_heads = 8;
  p.k_codec = p.v_codec = tables.info;
  p.plan = plan_decode(1, 4096, 8, 132);
  for (int page : {1, 2, 4, 8, 16, 32, 64, 128, 256}) {
    p.k_geometry = p.v_geometry = make_paged_geometry(8, page, 1, tables.info.payload_bytes);
    p.exact = 0;
    EXPECT_EQ(tensor_core_decode(p), page >= 8) << page;
    p.exact = 1;
    EXPECT_FALSE(tensor_core_decode(p)) << page;
  }
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
