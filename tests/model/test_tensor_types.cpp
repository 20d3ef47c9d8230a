// ggml tensor types: hand-made blocks decode to known values; the SIMD dot product and matvec
// agree with the scalar reference on random blocks of every supported type.
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "rq/core/errors.hpp"
#include "rq/core/half.hpp"
#include "rq/core/rng.hpp"
#include "rq/model/tensor_types.hpp"

namespace rq::model {
namespace {

const GgmlType kComputeTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16,
                                  GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1,
                                  GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

void put_half(uint8_t* p, float v) {
  const uint16_t h = float_to_half(v);
  std::memcpy(p, &h, 2);
}

/// A random row of n elements: random payload bytes, sane random fp16 scales.
std::vector<uint8_t> random_row(GgmlType type, size_t n, Rng& rng) {
  std::vector<uint8_t> row(row_bytes(type, n));  // row_bytes(type, n) bytes
  for (auto& b : row) b = static_cast<uint8_t>(rng.next_u64());
  auto scale = [&] { return static_cast<float>(rng.normal() * 0.05); };
  const TypeTraits& t = type_traits(type);
  const size_t nb = n / t.block_size;
  for (size_t b = 0; b < nb; ++b) {
    uint8_t* blk = row.data() + b * t.bytes_per_block;
    switch (type) {
      case GgmlType::F32: {
        const float v = static_cast<float>(rng.normal());
        std::memcpy(blk, &v, 4);
        break;
      }
      case GgmlType::F16: put_half(blk, static_cast<float>(rng.normal())); break;
      case GgmlType::BF16: {
        const float v = static_cast<float>(rng.normal());
        uint32_t u;
        std::memcpy(&u, &v, 4);
        const uint16_t h = static_cast<uint16_t>(u >> 16);
        std::memcpy(blk, &h, 2);
        break;
      }
      case GgmlType::Q8_0:
      case GgmlType::Q4_0: put_half(blk, scale()); break;
      case GgmlType::Q4_1:
      case GgmlType::Q4_K:
      case GgmlType::Q5_K:
        put_half(blk, scale());
        put_half(blk + 2, scale());
        break;
      case GgmlType::Q6_K: put_half(blk + 208, scale()); break;
      default: ADD_FAILURE() << "no generator for " << type_name(type);
    }
  }
  return row;
}

std::vector<float> random_vector(size_t n, Rng& rng) {
  std::vector<float> x(n);  // n floats
  for (auto& v : x) v = static_cast<float>(rng.normal());
  return x;
}

/// Σ|w_i x_i|: the scale against which a dot product's rounding error is measured.
double abs_dot(GgmlType type, const std::vector<uint8_t>& row, const std::vector<float>& x) {
  std::vector<float> w(x.size());
  dequantize_row(type, row.data(), w.data(), x.size());
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += std::fabs(static_cast<double>(w[i]) * x[i]);
  return s;
}

TEST(TensorTypes, TablePinsBlockSizes) {
  EXPECT_EQ(row_bytes(GgmlType::F32, 7), 28u);
  EXPECT_EQ(row_bytes(GgmlType::F16, 7), 14u);
  EXPECT_EQ(row_bytes(GgmlType::BF16, 3), 6u);
  EXPECT_EQ(row_bytes(GgmlType::Q4_0, 64), 36u);
  EXPECT_EQ(row_bytes(GgmlType::Q4_1, 64), 40u);
  EXPECT_EQ(row_bytes(GgmlType::Q8_0, 64), 68u);
  EXPECT_EQ(row_bytes(GgmlType::Q4_K, 512), 288u);
  EXPECT_EQ(row_bytes(GgmlType::Q5_K, 256), 176u);
  EXPECT_EQ(row_bytes(GgmlType::Q6_K, 256), 210u);
  EXPECT_STREQ(type_name(GgmlType::Q4_K), "q4_k");
  EXPECT_TRUE(is_compute_supported(GgmlType::Q6_K));
  EXPECT_FALSE(is_compute_supported(GgmlType::Q5_0));
  EXPECT_EQ(find_type_traits(77), nullptr);
  EXPECT_NE(find_type_traits(30), nullptr);
}

TEST(TensorTypes, ErrorsAreTyped) {
  std::vector<uint8_t> row(256);
  std::vector<float> out(256), x(256, 1.0f);
  EXPECT_THROW(row_bytes(GgmlType::Q4_0, 33), InvalidArgument);
  EXPECT_THROW(dequantize_row(GgmlType::Q5_0, row.data(), out.data(), 32), FormatError);
  EXPECT_THROW(dot_row(GgmlType::Q2_K, row.data(), x.data(), 256), FormatError);
  EXPECT_THROW(type_traits(static_cast<GgmlType>(77)), FormatError);
  EXPECT_THROW(dot_row(static_cast<GgmlType>(77), row.data(), x.data(), 32), FormatError);
  EXPECT_THROW(dot_row(GgmlType::Q8_0, row.data(), x.data(), 31), InvalidArgument);
  try {
    dequantize_row(GgmlType::Q5_0, row.data(), out.data(), 32);
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported tensor type 6"), std::string::npos);
  }
}

TEST(TensorTypes, HandMadeQ4_0) {
  uint8_t b[18];
  put_half(b, 2.0f);
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  float out[32];
  dequantize_row(GgmlType::Q4_0, b, out, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], 2.0f * (j - 8));
    EXPECT_EQ(out[16 + j], 2.0f * (15 - j - 8));
  }
}

TEST(TensorTypes, HandMadeQ4_1) {
  uint8_t b[20];
  put_half(b, 0.5f);
  put_half(b + 2, -1.0f);
  for (int j = 0; j < 16; ++j) b[4 + j] = static_cast<uint8_t>(j | (3 << 4));
  float out[32];
  dequantize_row(GgmlType::Q4_1, b, out, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], 0.5f * j - 1.0f);
    EXPECT_EQ(out[16 + j], 0.5f);
  }
}

TEST(TensorTypes, HandMadeQ8_0) {
  uint8_t b[34];
  put_half(b, 0.25f);
  for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 16));
  float out[32];
  dequantize_row(GgmlType::Q8_0, b, out, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], 0.25f * (j - 16));
}

// Packed 6-bit scales/mins used by the Q4_K and Q5_K hand-made blocks, and what they mean.
void fill_k4_scales(uint8_t* scales) {
  const uint8_t s[12] = {1 | (1 << 6), 2, 3, 4 | (3 << 6), 5, 6, 7, 8 | (2 << 6),
                         0x21, 0x43, 0x65, 0x87};
  std::memcpy(scales, s, 12);
}
constexpr int kSc[8] = {1, 2, 3, 4, 1 | 16, 3, 5, 7 | 48};
constexpr int kMin[8] = {5, 6, 7, 8, 2, 4, 6, 8 | 32};

TEST(TensorTypes, HandMadeQ4_K) {
  uint8_t b[144];
  put_half(b, 1.0f);
  put_half(b + 2, 0.5f);
  fill_k4_scales(b + 4);
  for (int l = 0; l < 128; ++l) b[16 + l] = static_cast<uint8_t>((l % 16) | (((l + 3) % 16) << 4));
  float out[256];
  dequantize_row(GgmlType::Q4_K, b, out, 256);
  for (int i = 0; i < 256; ++i) {
    const int sub = i / 32, chunk = i / 64, l = i % 32;
    const uint8_t q = b[16 + 32 * chunk + l];
    const int nib = (sub % 2 == 0) ? (q & 0xF) : (q >> 4);
    EXPECT_EQ(out[i], 1.0f * kSc[sub] * nib - 0.5f * kMin[sub]) << i;
  }
}

TEST(TensorTypes, HandMadeQ5_K) {
  uint8_t b[176];
  put_half(b, 0.5f);
  put_half(b + 2, 0.25f);
  fill_k4_scales(b + 4);
  for (int l = 0; l < 32; ++l) b[16 + l] = static_cast<uint8_t>(0xA5 ^ l);  // qh
  for (int l = 0; l < 128; ++l) b[48 + l] = static_cast<uint8_t>((l * 5) & 0xFF);
  float out[256];
  dequantize_row(GgmlType::Q5_K, b, out, 256);
  for (int i = 0; i < 256; ++i) {
    const int sub = i / 32, chunk = i / 64, l = i % 32;
    const uint8_t q = b[48 + 32 * chunk + l];
    const int nib = (sub % 2 == 0) ? (q & 0xF) : (q >> 4);
    const int high = (b[16 + l] >> sub) & 1;
    EXPECT_EQ(out[i], 0.5f * kSc[sub] * (nib + 16 * high) - 0.25f * kMin[sub]) << i;
  }
}

TEST(TensorTypes, HandMadeQ6_K) {
  uint8_t b[210];
  for (int l = 0; l < 128; ++l) b[l] = static_cast<uint8_t>((l * 7) & 0xFF);      // ql
  for (int l = 0; l < 64; ++l) b[128 + l] = static_cast<uint8_t>((l * 13) & 0xFF);  // qh
  for (int s = 0; s < 16; ++s) b[192 + s] = static_cast<uint8_t>(static_cast<int8_t>(s - 7));
  put_half(b + 208, 0.125f);
  float out[256];
  dequantize_row(GgmlType::Q6_K, b, out, 256);
  // Element i: half h = i / 128, r = i % 128, quarter k = r / 32, l = r % 32.
  // low 4 bits: ql[64h + l + 32(k%2)] (low nibble for k < 2, high nibble for k >= 2);
  // high 2 bits: qh[32h + l] >> 2k; scale: scales[8h + l/16 + 2k].
  for (int i = 0; i < 256; ++i) {
    const int h = i / 128, r = i % 128, k = r / 32, l = r % 32;
    const uint8_t qlb = b[64 * h + l + 32 * (k % 2)];
    const int lo = k < 2 ? (qlb & 0xF) : (qlb >> 4);
    const int hi = (b[128 + 32 * h + l] >> (2 * k)) & 3;
    const int q = (lo | (hi << 4)) - 32;
    const int sc = static_cast<int8_t>(b[192 + 8 * h + l / 16 + 2 * k]);
    EXPECT_EQ(out[i], 0.125f * static_cast<float>(sc * q)) << i;
  }
}

TEST(TensorTypes, HalfAndBf16Rows) {
  uint8_t f16[4], bf16[4];
  put_half(f16, 1.5f);
  put_half(f16 + 2, -0.25f);
  const uint16_t b0 = 0x3FC0, b1 = 0xC100;  // 1.5, -8
  std::memcpy(bf16, &b0, 2);
  std::memcpy(bf16 + 2, &b1, 2);
  float out[2];
  dequantize_row(GgmlType::F16, f16, out, 2);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -0.25f);
  dequantize_row(GgmlType::BF16, bf16, out, 2);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -8.0f);
}

TEST(TensorTypes, DotMatchesReferenceOnRandomBlocks) {
  Rng rng(0x5eed0001);
  for (GgmlType type : kComputeTypes) {
    const size_t bs = type_traits(type).block_size;
    std::vector<size_t> lengths = {bs, 2 * bs, 7 * bs};
    if (bs == 1) lengths.insert(lengths.end(), {1, 13, 67, 576, 1031});
    for (size_t n : lengths) {
      for (int rep = 0; rep < 5; ++rep) {
        const auto row = random_row(type, n, rng);
        const auto x = random_vector(n, rng);
        const float fast = dot_row(type, row.data(), x.data(), n);
        const float ref = dot_row_reference(type, row.data(), x.data(), n);
        const double scale = abs_dot(type, row, x);
        ASSERT_TRUE(std::isfinite(fast)) << type_name(type);
        EXPECT_LE(std::fabs(fast - ref), 1e-4 * scale + 1e-30)
            << type_name(type) << " n=" << n << " fast=" << fast << " ref=" << ref;
      }
    }
  }
}

TEST(TensorTypes, MatvecMatchesReference) {
  Rng rng(0x5eed0002);
  for (GgmlType type : kComputeTypes) {
    const size_t cols = 512, rows = 67;
    const size_t stride = row_bytes(type, cols);
    std::vector<uint8_t> W;  // rows × stride bytes
    for (size_t r = 0; r < rows; ++r) {
      const auto row = random_row(type, cols, rng);
      W.insert(W.end(), row.begin(), row.end());
    }
    const auto x = random_vector(cols, rng);
    std::vector<float> y(rows, std::nanf(""));  // rows floats
    matvec(type, W.data(), rows, cols, x.data(), y.data());
    for (size_t r = 0; r < rows; ++r) {
      std::vector<uint8_t> row(W.begin() + r * stride, W.begin() + (r + 1) * stride);
      const float ref = dot_row_reference(type, row.data(), x.data(), cols);
      EXPECT_LE(std::fabs(y[r] - ref), 1e-4 * abs_dot(type, row, x) + 1e-30)
          << type_name(type) << " row " << r;
    }
  }
}

// Every SIMD target compiled into dot_simd.cpp that this CPU can run (e.g. AVX3, AVX2, SSE4,
// SSSE3, EMU128) agrees with the scalar reference, not just the one dispatch picks.
TEST(TensorTypes, EverySimdTargetMatchesReference) {
  Rng rng(0x5eed0003);
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_FALSE(targets.empty());
  for (int64_t target : targets) {
    hwy::SetSupportedTargetsForTest(target);
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    SCOPED_TRACE(hwy::TargetName(target));
    EXPECT_STREQ(dot_simd_target(), hwy::TargetName(target));
    for (GgmlType type : kComputeTypes) {
      const size_t bs = type_traits(type).block_size;
      for (size_t n : {bs == 1 ? size_t{77} : bs, 3 * bs}) {
        const auto row = random_row(type, n, rng);
        const auto x = random_vector(n, rng);
        const float fast = dot_row(type, row.data(), x.data(), n);
        const float ref = dot_row_reference(type, row.data(), x.data(), n);
        EXPECT_LE(std::fabs(fast - ref), 1e-4 * abs_dot(type, row, x) + 1e-30)
            << type_name(type) << " n=" << n;
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);  // back to the real CPU
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
  std::printf("checked %zu SIMD targets\n", targets.size());
}

TEST(TensorTypes, ReportsSimdTarget) {
  const char* target = dot_simd_target();
  ASSERT_NE(target, nullptr);
  EXPECT_GT(std::strlen(target), 0u);
  std::printf("dot_row dispatches to %s\n", target);
}

}  // namespace
}  // namespace rq::model
