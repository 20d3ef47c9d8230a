// append_fast writes the same bytes as Codec::encode, for every format, and refuses bad input
// without writing anything.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "rq/attention/attention_fast.hpp"
#include "rq/core/errors.hpp"
#include "rq/core/rng.hpp"

namespace rq {
namespace {

TEST(AppendFast, SameBytesAsCodecEncodeForEveryFormat) {
  Rng rng(77);
  for (const auto& f : format_table()) {
    for (size_t d : {64u, 128u, 7u, 129u}) {
      // One token, 8 heads, K and V: 16 codecs with their own seeds.
      std::vector<std::unique_ptr<Codec>> codecs;
      std::vector<float> x(16 * d);
      for (size_t h = 0; h < 16; ++h) {
        codecs.push_back(std::make_unique<Codec>(f, d, RotationSeed{5, 3, static_cast<uint32_t>(h / 2),
                                                                    h % 2 ? KvRole::V : KvRole::K}));
        for (size_t j = 0; j < d; ++j) x[h * d + j] = static_cast<float>(rng.normal() * (1.0 + 3.0 * (j == 1)));
      }
      std::fill(x.begin() + 5 * d, x.begin() + 6 * d, 0.0f);  // one zero vector
      const auto& l = codecs[0]->layout();
      std::vector<uint8_t> codes(16 * l.code_bytes, 0xAB), side(16 * l.side_bytes + 1, 0xAB);
      std::vector<uint8_t> ref_codes(codes.size()), ref_side(side.size(), 0xAB);
      std::vector<AppendItem> items;
      for (size_t h = 0; h < 16; ++h) {
        items.push_back({codecs[h].get(), x.data() + h * d, codes.data() + h * l.code_bytes, side.data() + h * l.side_bytes});
        codecs[h]->encode(1, x.data() + h * d, ref_codes.data() + h * l.code_bytes, ref_side.data() + h * l.side_bytes);
      }
      append_fast(items.data(), items.size());
      EXPECT_EQ(codes, ref_codes) << f.name << " d=" << d;
      EXPECT_EQ(side, ref_side) << f.name << " d=" << d;
    }
  }
}

TEST(AppendFast, RejectsNonFiniteInputAndWritesNothing) {
  const size_t d = 64;
  const Codec k(find_format("rotor3"), d), v(find_format("rotor3"), d, RotationSeed{1, 0, 0, KvRole::V});
  Rng rng(3);
  std::vector<float> x(2 * d);
  for (auto& e : x) e = static_cast<float>(rng.normal());
  x[d + 10] = std::numeric_limits<float>::quiet_NaN();
  const auto& l = k.layout();
  std::vector<uint8_t> codes(2 * l.code_bytes, 0x5A), side(2 * l.side_bytes, 0x5A);
  AppendItem items[2] = {{&k, x.data(), codes.data(), side.data()},
                         {&v, x.data() + d, codes.data() + l.code_bytes, side.data() + l.side_bytes}};
  EXPECT_THROW(append_fast(items, 2), InvalidInput);
  for (auto b : codes) EXPECT_EQ(b, 0x5A);
  for (auto b : side) EXPECT_EQ(b, 0x5A);
  x[d + 10] = 1e30f;  // norm overflows fp16
  EXPECT_THROW(append_fast(items, 2), InvalidInput);
  for (auto b : codes) EXPECT_EQ(b, 0x5A);
  items[1].codec = nullptr;
  EXPECT_THROW(append_fast(items, 2), InvalidArgument);
}

}  // namespace
}  // namespace rq
