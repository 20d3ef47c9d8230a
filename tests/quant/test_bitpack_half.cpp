// Bit packing (shared host/device header) and binary16 conversion.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "rq/core/half.hpp"
#include "rq/core/rng.hpp"
#include "rq/pack/bitpack.hpp"

namespace rq {
namespace {

TEST(BitPack, RoundTripsEveryWidthAndLength) {
  Rng rng(5);
  for (int bits = 1; bits <= 8; ++bits) {
    for (size_t n : {1u, 2u, 7u, 8u, 9u, 31u, 64u, 129u, 1000u}) {
      std::vector<uint8_t> codes(n), back(n);
      for (auto& c : codes) c = static_cast<uint8_t>(rng.next_u64() & ((1u << bits) - 1u));
      std::vector<uint8_t> row(packed_bytes(n, bits) + 1, 0xEE);  // one guard byte
      pack_codes(codes.data(), n, bits, row.data());
      EXPECT_EQ(row.back(), 0xEE) << "wrote past the row";
      unpack_codes(row.data(), n, bits, back.data());
      EXPECT_EQ(codes, back) << "bits=" << bits << " n=" << n;
      for (size_t j = 0; j < n; ++j) ASSERT_EQ(unpack_code(row.data(), j, bits), codes[j]);
      // Unused high bits of the last byte are zero.
      const size_t used = n * bits % 8;
      if (used) {
        EXPECT_EQ(row[packed_bytes(n, bits) - 1] >> used, 0);
      }
    }
  }
}

TEST(BitPack, LayoutIsLsbFirst) {
  const uint8_t codes[3] = {5, 3, 6};  // 101, 011, 110 -> bits 0..8: 1,0,1, 1,1,0, 0,1,1
  uint8_t row[2];
  pack_codes(codes, 3, 3, row);
  EXPECT_EQ(row[0], 0b10011101);
  EXPECT_EQ(row[1], 0b1);
}

TEST(Half, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = half_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half_to_float(float_to_half(f))));
      continue;
    }
    EXPECT_EQ(float_to_half(f), h) << std::hex << h;
  }
}

TEST(Half, MatchesTheCompilersConversion) {
  Rng rng(6);
  for (int i = 0; i < 200000; ++i) {
    // Random bit patterns across the whole float range, plus values near the half range edges.
    float f;
    const uint32_t bits = static_cast<uint32_t>(rng.next_u64());
    std::memcpy(&f, &bits, 4);
    if (i % 2) f = static_cast<float>((rng.uniform() - 0.5) * std::ldexp(1.0, static_cast<int>(rng.next_u64() % 44) - 28));
    if (std::isnan(f)) continue;
    const _Float16 ref = static_cast<_Float16>(f);
    uint16_t ref_bits;
    std::memcpy(&ref_bits, &ref, 2);
    ASSERT_EQ(float_to_half(f), ref_bits) << f;
  }
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);  // rounds to Inf
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
}

}  // namespace
}  // namespace rq
