// KV dump files: round trip, validation of broken files, and eval metrics on synthetic dumps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>

#include "rq/core/errors.hpp"
#include "rq/core/rng.hpp"
#include "rq/kvcache/kv_dump.hpp"
#include "rq/kvcache/kv_eval.hpp"

namespace {

rq::KvDump random_dump(uint32_t tokens) {
  rq::Rng rng(77);
  rq::KvDump d;
  d.n_tokens = tokens;
  d.n_heads = 4;
  d.n_kv_heads = 2;
  d.head_dim = 64;
  for (uint32_t l : {0u, 3u}) {
    rq::KvDumpLayer L;
    L.layer = l;
    for (size_t i = 0; i < size_t{tokens} * 4 * 64; ++i) L.q.push_back(static_cast<float>(rng.normal()));
    for (size_t i = 0; i < size_t{tokens} * 2 * 64; ++i) L.k.push_back(static_cast<float>(rng.normal() * (i % 64 == 5 ? 8 : 1)));
    for (size_t i = 0; i < size_t{tokens} * 2 * 64; ++i) L.v.push_back(static_cast<float>(rng.normal()));
    d.layers.push_back(L);
  }
  return d;
}

std::string serialize(const rq::KvDump& d) {
  const std::string path = ::testing::TempDir() + "rq_kv_dump_test.bin";
  rq::write_kv_dump(path, d);
  std::ifstream in(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::remove(path.c_str());
  return s;
}

TEST(KvDump, RoundTrip) {
  const auto d = random_dump(9);
  const std::string bytes = serialize(d);
  const auto back = rq::parse_kv_dump(bytes.data(), bytes.size());
  EXPECT_EQ(back.n_tokens, 9u);
  ASSERT_EQ(back.layers.size(), 2u);
  EXPECT_EQ(back.layers[1].layer, 3u);
  EXPECT_EQ(back.layers[1].q, d.layers[1].q);
  EXPECT_EQ(back.layers[0].k, d.layers[0].k);
  EXPECT_EQ(back.layers[0].v, d.layers[0].v);
}

TEST(KvDump, BrokenFilesThrowFormatError) {
  const std::string good = serialize(random_dump(3));
  auto expect_bad = [](std::string s) { EXPECT_THROW(rq::parse_kv_dump(s.data(), s.size()), rq::FormatError); };
  expect_bad(good.substr(0, 10));                 // truncated header
  expect_bad(good.substr(0, good.size() - 1));    // truncated data
  expect_bad(good + "x");                         // trailing bytes
  std::string s = good;
  s[0] = 'X';
  expect_bad(s);  // magic
  s = good;
  s[8] = 2;
  expect_bad(s);  // version
  s = good;
  s[16] = s[17] = s[18] = s[19] = '\xff';
  expect_bad(s);  // absurd token count
  s = good;
  s[24] = 3;
  expect_bad(s);  // n_heads not a multiple of n_kv_heads
  s = good;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(&s[s.size() - 4], &nan, 4);
  expect_bad(s);  // non-finite value
  EXPECT_THROW(rq::read_kv_dump("/nonexistent/dir/file.bin"), rq::IoError);
}

TEST(KvEval, ErrorsFallWithBitsAndExactFormatsAreExact) {
  const auto d = random_dump(40);
  rq::KvEvalOptions opt;
  opt.formats = {"f32", "turbo2", "turbo3", "turbo4", "rotor3"};
  opt.max_queries = 16;
  const auto rows = rq::evaluate_kv_dump(d, opt);
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0].k_dmse, 0.0);
  EXPECT_LT(rows[0].attn_rel_kv, 1e-6);
  EXPECT_GT(rows[1].k_dmse, rows[2].k_dmse);
  EXPECT_GT(rows[2].k_dmse, rows[3].k_dmse);
  EXPECT_GT(rows[1].attn_rel_kv, rows[3].attn_rel_kv);
  EXPECT_GT(rows[1].ip_rmse, rows[3].ip_rmse);
  EXPECT_EQ(rows[2].bytes_per_vector, 26u);
  EXPECT_GT(rows[4].n_pairs, 0u);
  opt.formats = {"bogus"};
  EXPECT_THROW(rq::evaluate_kv_dump(d, opt), rq::UnknownFormat);
}

}  // namespace
