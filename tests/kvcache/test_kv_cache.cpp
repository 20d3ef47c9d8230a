// PagedKvCache: decoded tokens equal Codec::decode, page boundaries, several sequences, byte
// accounting, errors leave the cache unchanged, attention over the cache equals a dense reference.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "rq/codec/codec.hpp"
#include "rq/core/errors.hpp"
#include "rq/core/half.hpp"
#include "rq/core/rng.hpp"
#include "rq/kvcache/kv_attention.hpp"
#include "rq/kvcache/kv_cache.hpp"

namespace {

using rq::KvRole;

std::vector<float> random_vec(rq::Rng& rng, size_t n) {
  std::vector<float> x(n);
  for (auto& v : x) v = static_cast<float>(rng.normal() * 1.5);
  return x;
}

rq::KvCacheConfig small_config(const char* kf, const char* vf, size_t page = 4) {
  rq::KvCacheConfig c;
  c.n_layers = 2;
  c.n_kv_heads = 3;
  c.head_dim = 64;
  c.k_format = kf;
  c.v_format = vf;
  c.page_size = page;
  return c;
}

// Reference: encode+decode the same vector with a codec built from the same seed.
std::vector<float> roundtrip(const rq::PagedKvCache& cache, size_t layer, size_t head, KvRole role, const float* x) {
  const rq::Codec& c = cache.codec(layer, head, role);
  std::vector<uint8_t> codes(c.layout().code_bytes), side(c.layout().side_bytes + 1);
  std::vector<float> out(cache.head_dim());
  c.encode(1, x, codes.data(), side.data());
  c.decode(1, codes.data(), side.data(), out.data());
  return out;
}

class KvCacheFormats : public ::testing::TestWithParam<const char*> {};

TEST_P(KvCacheFormats, DecodeEqualsCodecAcrossPages) {
  rq::Rng rng(0x1234 + std::string(GetParam()).size());
  auto cfg = small_config(GetParam(), "q8");
  rq::PagedKvCache cache(cfg);
  const size_t H = cfg.n_kv_heads, d = cfg.head_dim;
  rq::SeqId s = cache.add_sequence();
  std::vector<std::vector<float>> ks, vs;  // per token: H x d
  // append 1, then 5 (crosses a page), then 7 tokens
  for (size_t batch : {1u, 5u, 7u}) {
    auto k = random_vec(rng, batch * H * d), v = random_vec(rng, batch * H * d);
    cache.append(s, 1, batch, k.data(), v.data());
    for (size_t t = 0; t < batch; ++t) {
      ks.emplace_back(k.begin() + t * H * d, k.begin() + (t + 1) * H * d);
      vs.emplace_back(v.begin() + t * H * d, v.begin() + (t + 1) * H * d);
    }
  }
  ASSERT_EQ(cache.length(s, 1), 13u);
  ASSERT_EQ(cache.length(s, 0), 0u);
  EXPECT_EQ(cache.pages_in_use(), 4u);  // ceil(13 / 4)
  std::vector<float> got(d);
  for (size_t t = 0; t < ks.size(); ++t) {
    for (size_t h = 0; h < H; ++h) {
      cache.decode(s, 1, h, KvRole::K, t, got.data());
      EXPECT_EQ(got, roundtrip(cache, 1, h, KvRole::K, &ks[t][h * d])) << "token " << t << " head " << h;
      cache.decode(s, 1, h, KvRole::V, t, got.data());
      EXPECT_EQ(got, roundtrip(cache, 1, h, KvRole::V, &vs[t][h * d])) << "token " << t << " head " << h;
    }
  }
  // Segments split at page boundaries and cover a prefix exactly.
  auto segs = cache.segments(s, 1, 2, 9);
  ASSERT_EQ(segs.size(), 3u);
  EXPECT_EQ(segs[0].k.n_tokens, 4u);
  EXPECT_EQ(segs[1].k.n_tokens, 4u);
  EXPECT_EQ(segs[2].k.n_tokens, 1u);
}

INSTANTIATE_TEST_SUITE_P(Formats, KvCacheFormats, ::testing::Values("f16", "f32", "q8", "q4", "rotor3", "turbo3", "planar4", "iso3"));

TEST(KvCache, RotationsSeededPerLayerHeadRole) {
  rq::PagedKvCache cache(small_config("rotor3", "rotor3"));
  std::vector<float> x(64);
  rq::Rng rng(7);
  for (auto& v : x) v = static_cast<float>(rng.normal());
  auto a = cache.codec(0, 0, KvRole::K).rotation().parameters();
  EXPECT_NE(a, cache.codec(0, 1, KvRole::K).rotation().parameters());
  EXPECT_NE(a, cache.codec(1, 0, KvRole::K).rotation().parameters());
  EXPECT_NE(a, cache.codec(0, 0, KvRole::V).rotation().parameters());
  rq::PagedKvCache again(small_config("rotor3", "rotor3"));
  EXPECT_EQ(a, again.codec(0, 0, KvRole::K).rotation().parameters());
}

TEST(KvCache, SeveralSequencesAndRemoval) {
  rq::Rng rng(99);
  auto cfg = small_config("rotor3", "turbo3", 8);
  rq::PagedKvCache cache(cfg);
  const size_t H = cfg.n_kv_heads, d = cfg.head_dim;
  rq::SeqId a = cache.add_sequence(), b = cache.add_sequence();
  EXPECT_NE(a, b);
  auto ka = random_vec(rng, 10 * H * d), va = random_vec(rng, 10 * H * d);
  auto kb = random_vec(rng, 3 * H * d), vb = random_vec(rng, 3 * H * d);
  for (size_t l = 0; l < 2; ++l) {
    cache.append(a, l, 10, ka.data(), va.data());
    cache.append(b, l, 3, kb.data(), vb.data());
  }
  EXPECT_EQ(cache.pages_in_use(), 2u * (2 + 1));
  EXPECT_EQ(cache.bytes_pages(), cache.pages_in_use() * cache.page_bytes());
  std::vector<float> got(d);
  cache.decode(b, 1, 2, KvRole::V, 2, got.data());
  EXPECT_EQ(got, roundtrip(cache, 1, 2, KvRole::V, &vb[(2 * H + 2) * d]));
  cache.remove_sequence(a);
  EXPECT_FALSE(cache.has_sequence(a));
  EXPECT_EQ(cache.pages_in_use(), 2u);
  EXPECT_EQ(cache.bytes_allocated(), 2 * cache.page_bytes());
  EXPECT_THROW(cache.length(a, 0), rq::InvalidArgument);
  // b is untouched, and a new sequence reuses freed page slots.
  cache.decode(b, 1, 2, KvRole::V, 2, got.data());
  EXPECT_EQ(got, roundtrip(cache, 1, 2, KvRole::V, &vb[(2 * H + 2) * d]));
  rq::SeqId c = cache.add_sequence();
  cache.append(c, 0, 3, kb.data(), vb.data());
  EXPECT_EQ(cache.pages_in_use(), 3u);
  cache.clear();
  EXPECT_EQ(cache.bytes_allocated(), 0u);
}

TEST(KvCache, ByteAccountingMatchesLayout) {
  auto cfg = small_config("rotor3", "rotor3", 64);
  cfg.n_layers = 3;
  rq::PagedKvCache cache(cfg);
  const auto lay = cache.codec(0, 0, KvRole::K).layout();
  EXPECT_EQ(cache.bytes_per_token_per_head(), 2 * lay.bytes_per_vector());
  // A page is at least the sum of its rows and adds at most 15 bytes of alignment per plane.
  const size_t rows = 64 * cache.bytes_per_token_per_head() * cfg.n_kv_heads;
  EXPECT_GE(cache.page_bytes(), rows);
  EXPECT_LE(cache.page_bytes(), rows + 4 * cfg.n_kv_heads * 15);
  rq::Rng rng(5);
  rq::SeqId s = cache.add_sequence();
  auto k = random_vec(rng, 65 * cfg.n_kv_heads * cfg.head_dim);
  for (size_t l = 0; l < 3; ++l) cache.append(s, l, 65, k.data(), k.data());
  EXPECT_EQ(cache.bytes_allocated(), 3 * 2 * cache.page_bytes());
  EXPECT_EQ(cache.f16_bytes(65), 2u * 2 * 64 * 3 * 3 * 65);
}

TEST(KvCache, QuarterOfF16At2048Tokens) {
  // SmolLM2-135M shape: 30 layers, 3 kv heads, head_dim 64.
  for (const char* f : {"rotor3", "f16"}) {
    rq::KvCacheConfig cfg;
    cfg.n_layers = 30;
    cfg.n_kv_heads = 3;
    cfg.head_dim = 64;
    cfg.k_format = cfg.v_format = f;
    rq::PagedKvCache cache(cfg);
    rq::Rng rng(11);
    rq::SeqId s = cache.add_sequence();
    auto k = random_vec(rng, 256 * 3 * 64);
    for (size_t l = 0; l < 30; ++l)
      for (int rep = 0; rep < 8; ++rep) cache.append(s, l, 256, k.data(), k.data());
    const double ratio = static_cast<double>(cache.bytes_allocated()) / static_cast<double>(cache.f16_bytes(2048));
    if (std::string(f) == "rotor3") {
      EXPECT_LE(ratio, 0.25) << cache.bytes_allocated();
    } else {
      EXPECT_NEAR(ratio, 1.0, 1e-9);
    }
  }
}

TEST(KvCache, ErrorsLeaveCacheUnchanged) {
  rq::Rng rng(3);
  auto cfg = small_config("rotor3", "q8", 4);
  cfg.max_tokens_per_seq = 6;
  rq::PagedKvCache cache(cfg);
  const size_t H = cfg.n_kv_heads, d = cfg.head_dim;
  rq::SeqId s = cache.add_sequence();
  auto k = random_vec(rng, 4 * H * d), v = random_vec(rng, 4 * H * d);
  cache.append(s, 0, 4, k.data(), v.data());
  const size_t bytes = cache.bytes_allocated();
  std::vector<float> before(d), after(d);
  cache.decode(s, 0, 1, KvRole::V, 3, before.data());
  // NaN in the last head's V of the second token: nothing is written, no page allocated.
  auto bad = random_vec(rng, 2 * H * d);
  bad[(1 * H + 2) * d + 5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(cache.append(s, 0, 2, k.data(), bad.data()), rq::InvalidInput);
  EXPECT_EQ(cache.length(s, 0), 4u);
  EXPECT_EQ(cache.bytes_allocated(), bytes);
  bad[(1 * H + 2) * d + 5] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(cache.append(s, 0, 2, bad.data(), v.data()), rq::InvalidInput);
  EXPECT_EQ(cache.length(s, 0), 4u);
  EXPECT_THROW(cache.append(s, 0, 3, k.data(), v.data()), rq::CapacityError);
  EXPECT_THROW(cache.append(s, 2, 1, k.data(), v.data()), rq::InvalidArgument);
  EXPECT_THROW(cache.append(s + 7, 0, 1, k.data(), v.data()), rq::InvalidArgument);
  EXPECT_THROW(cache.append(s, 0, 1, nullptr, v.data()), rq::InvalidArgument);
  EXPECT_THROW(cache.segments(s, 0, 0, 5), rq::InvalidArgument);
  EXPECT_THROW(cache.decode(s, 0, 0, KvRole::K, 4, after.data()), rq::InvalidArgument);
  EXPECT_THROW(cache.decode(s, 0, 3, KvRole::K, 0, after.data()), rq::InvalidArgument);
  cache.decode(s, 0, 1, KvRole::V, 3, after.data());
  EXPECT_EQ(before, after);
  cache.append(s, 0, 2, k.data(), v.data());  // still usable
  EXPECT_EQ(cache.length(s, 0), 6u);
}

TEST(KvCache, BadConfigThrows) {
  auto cfg = small_config("rotor3", "nonsense");
  EXPECT_THROW(rq::PagedKvCache{cfg}, rq::UnknownFormat);
  cfg = small_config("rotor3", "q8", 0);
  EXPECT_THROW(rq::PagedKvCache{cfg}, rq::InvalidArgument);
  cfg = small_config("rotor3", "q8");
  cfg.head_dim = 0;
  EXPECT_THROW(rq::PagedKvCache{cfg}, rq::InvalidArgument);
}

// Dense attention over decoded vectors, double precision.
void dense_attention(const std::vector<std::vector<float>>& keys, const std::vector<std::vector<float>>& vals,
                     const float* q, size_t d, float scale, float* out) {
  std::vector<double> s(keys.size());
  double mx = -1e300;
  for (size_t i = 0; i < keys.size(); ++i) {
    double acc = 0;
    for (size_t j = 0; j < d; ++j) acc += static_cast<double>(q[j]) * keys[i][j];
    s[i] = acc * scale;
    mx = std::max(mx, s[i]);
  }
  double sum = 0;
  for (auto& x : s) sum += (x = std::exp(x - mx));
  for (size_t j = 0; j < d; ++j) {
    double acc = 0;
    for (size_t i = 0; i < keys.size(); ++i) acc += s[i] / sum * vals[i][j];
    out[j] = static_cast<float>(acc);
  }
}

void check_attention(const rq::KvCacheConfig& cfg, bool sinks_window) {
  rq::Rng rng(21);
  rq::PagedKvCache cache(cfg);
  const size_t H = cfg.n_kv_heads, d = cfg.head_dim, n_heads = 2 * H;
  rq::SeqId s = cache.add_sequence();
  const size_t n = 23;
  auto k = random_vec(rng, n * H * d), v = random_vec(rng, n * H * d);
  cache.append(s, 0, 10, k.data(), v.data());
  cache.append(s, 0, n - 10, k.data() + 10 * H * d, v.data() + 10 * H * d);
  auto q = random_vec(rng, n_heads * d);
  for (size_t prefix : {size_t{1}, size_t{9}, size_t{17}, n}) {
    std::vector<float> out(n_heads * d);
    const float scale = 1.0f / 8.0f;
    rq::attend_cache(cache, s, 0, prefix, n_heads, q.data(), scale, out.data());
    for (size_t qh = 0; qh < n_heads; ++qh) {
      const size_t h = qh / 2;
      std::vector<std::vector<float>> keys, vals;
      for (size_t t = 0; t < prefix; ++t) {
        const bool f16 = sinks_window && (t < cfg.sink_tokens || t + cfg.window_tokens >= prefix);
        std::vector<float> kd(d), vd(d);
        if (f16) {
          for (size_t j = 0; j < d; ++j) {
            kd[j] = rq::round_to_half(k[(t * H + h) * d + j]);
            vd[j] = rq::round_to_half(v[(t * H + h) * d + j]);
          }
        } else {
          cache.decode(s, 0, h, KvRole::K, t, kd.data());
          cache.decode(s, 0, h, KvRole::V, t, vd.data());
        }
        keys.push_back(kd);
        vals.push_back(vd);
      }
      std::vector<float> ref(d);
      dense_attention(keys, vals, &q[qh * d], d, scale, ref.data());
      for (size_t j = 0; j < d; ++j) {
        EXPECT_NEAR(out[qh * d + j], ref[j], 2e-4 * (1 + std::fabs(ref[j]))) << "prefix " << prefix << " qh " << qh;
      }
    }
  }
}

TEST(KvAttention, MatchesDenseOnDecodedVectors) {
  auto cfg = small_config("rotor3", "turbo4", 8);
  cfg.n_layers = 1;
  check_attention(cfg, false);
}

TEST(KvAttention, SinksAndWindowReadFp16Copies) {
  auto cfg = small_config("rotor2", "q4", 8);
  cfg.n_layers = 1;
  cfg.sink_tokens = 2;
  cfg.window_tokens = 4;
  cfg.window_slack = 16;
  check_attention(cfg, true);
  rq::PagedKvCache cache(cfg);
  EXPECT_NE(cache.describe().find("fp16 sinks 2"), std::string::npos);
  EXPECT_NE(cache.describe().find("fp16 window 4"), std::string::npos);
  rq::SeqId s = cache.add_sequence();
  std::vector<float> k(3 * 64, 0.5f);
  cache.append(s, 0, 1, k.data(), k.data());
  EXPECT_EQ(cache.bytes_fp16_copies(), 2u * 3 * 64 * 2 * (2 + 4 + 16));
  k[3] = 1e6f;  // representable in the codecs' norms? not in the fp16 copy
  EXPECT_THROW(cache.append(s, 0, 1, k.data(), k.data()), rq::InvalidInput);
  EXPECT_EQ(cache.length(s, 0), 1u);
}

TEST(KvAttention, BadHeadsThrow) {
  rq::PagedKvCache cache(small_config("f16", "f16"));
  rq::SeqId s = cache.add_sequence();
  std::vector<float> k(3 * 64, 0.25f), q(6 * 64, 0.1f), out(6 * 64);
  cache.append(s, 0, 1, k.data(), k.data());
  EXPECT_THROW(rq::attend_cache(cache, s, 0, 1, 4, q.data(), 0.125f, out.data()), rq::InvalidArgument);
  EXPECT_THROW(rq::attend_cache(cache, s, 0, 2, 6, q.data(), 0.125f, out.data()), rq::InvalidArgument);
  EXPECT_THROW(rq::attend_cache(cache, s, 0, 0, 6, q.data(), 0.125f, out.data()), rq::InvalidArgument);
  rq::attend_cache(cache, s, 0, 1, 6, q.data(), 0.125f, out.data());
  for (size_t j = 0; j < 64; ++j) EXPECT_NEAR(out[j], rq::round_to_half(0.25f), 1e-6);
}

}  // namespace
