// The format table and honest byte accounting (ALGORITHMS.md §6).
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "rq/core/errors.hpp"
#include "rq/format/format.hpp"

namespace rq {
namespace {

size_t bytes(std::string_view name, size_t d) { return format_layout(find_format(name), d).bytes_per_vector(); }

TEST(FormatTable, BytesMatchTheSpec) {
  EXPECT_EQ(bytes("turbo2", 128), 34u);
  EXPECT_EQ(bytes("turbo3", 128), 50u);
  EXPECT_EQ(bytes("turbo4", 128), 66u);
  EXPECT_EQ(bytes("turbo2", 64), 18u);
  EXPECT_EQ(bytes("turbo3", 64), 26u);
  EXPECT_EQ(bytes("turbo4", 64), 34u);
  EXPECT_EQ(bytes("rotor3", 128), 50u);  // 128 coordinates (pad-free last group): 48 B + 2 B norm
  EXPECT_EQ(bytes("rotor3", 64), 26u);   // 64 coordinates: 24 B + 2 B
  EXPECT_EQ(bytes("f16", 128), 256u);
  EXPECT_EQ(bytes("f32", 128), 512u);
  EXPECT_EQ(bytes("q8", 128), 130u);
  EXPECT_EQ(bytes("q4", 128), 72u);
  EXPECT_EQ(bytes("turbo3_qjl", 128), 52u);  // 2-bit codes 32 B + 16 B signs + norm + gamma
  EXPECT_EQ(bytes("turbo3", 96), 50u);       // padded to 128 coordinates, counted
  EXPECT_NEAR(format_layout(find_format("turbo3"), 128).ratio_vs_f16(), 5.12, 1e-9);
}

TEST(FormatTable, NamesAreUniqueAndRequiredOnesExist) {
  std::set<std::string> names;
  for (const auto& f : format_table()) EXPECT_TRUE(names.insert(std::string(f.name)).second) << f.name;
  for (const char* required : {"f32", "f16", "q8", "q4", "q4h", "turbo2", "turbo3", "turbo4", "turbodense3", "turbodense4",
                               "rotor2", "rotor3", "rotor4", "planar2", "planar3", "planar4", "iso2", "iso3", "iso4",
                               "turbo3_qjl", "turbo4_qjl", "rotor3_qjl", "rotor4_qjl"}) {
    EXPECT_TRUE(names.count(required)) << required;
  }
}

TEST(FormatTable, EveryLayoutIsConsistent) {
  for (const auto& f : format_table()) {
    for (size_t d : {2u, 3u, 5u, 64u, 67u, 128u, 256u}) {
      const FormatLayout l = format_layout(f, d);
      EXPECT_GE(l.rotated_dim, d);
      EXPECT_EQ(l.code_bytes, l.payload_bytes + l.qjl_bytes);
      EXPECT_GE(l.payload_bytes * 8, l.rotated_dim * static_cast<size_t>(l.code_bits)) << f.name << " d=" << d;
      EXPECT_LT((l.payload_bytes - 1) * 8, l.rotated_dim * static_cast<size_t>(l.code_bits)) << f.name << " d=" << d;
    }
  }
}

TEST(FormatTable, BadInputsThrowTypedErrors) {
  EXPECT_THROW(find_format("rotor5"), UnknownFormat);
  EXPECT_THROW(find_format(""), UnknownFormat);
  try {
    find_format("q4_0");
    FAIL();
  } catch (const UnknownFormat& e) {
    EXPECT_NE(std::string(e.what()).find("rotor3"), std::string::npos) << "error should list valid names";
  }
  EXPECT_THROW(format_layout(find_format("rotor3"), 0), InvalidArgument);
  EXPECT_THROW(format_layout(find_format("rotor3"), 1), InvalidArgument);
  EXPECT_NO_THROW(format_layout(find_format("f16"), 1));
}

}  // namespace
}  // namespace rq
