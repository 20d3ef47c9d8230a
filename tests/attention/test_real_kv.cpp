// The fast kernels against the reference on a real model's post-RoPE Q, K, V (a `rotorquant
// kv-dump` file named by the RQ_KV_DUMP environment variable; skipped when it is not set):
// causal attention of token t's query heads over tokens [0, t], every KV head, every SIMD target.
//   rotorquant kv-dump -f text.txt --tokens 700 -o /tmp/smollm2.kvd && RQ_KV_DUMP=/tmp/smollm2.kvd rq_attention_tests
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "rq/attention/attention_fast.hpp"

namespace rq {
namespace {

struct Dump {
  uint32_t n_layers = 0, n_tokens = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  std::vector<std::vector<float>> q, k, v;  // per layer: tokens x heads x head_dim
};

// Minimal reader of the documented layout (include/rq/kvcache/kv_dump.hpp); false if unreadable.
bool read_dump(const char* path, Dump& d) {
  std::FILE* f = std::fopen(path, "rb");
  if (!f) return false;
  char magic[8];
  uint32_t hdr[6];
  bool ok = std::fread(magic, 1, 8, f) == 8 && std::memcmp(magic, "RQKVDMP1", 8) == 0 && std::fread(hdr, 4, 6, f) == 6 &&
            hdr[0] == 1;
  if (ok) {
    d.n_layers = hdr[1];
    d.n_tokens = hdr[2];
    d.n_heads = hdr[3];
    d.n_kv_heads = hdr[4];
    d.head_dim = hdr[5];
    ok = d.n_layers >= 1 && d.n_layers <= 64 && d.n_kv_heads >= 1 && d.n_heads % d.n_kv_heads == 0 && d.head_dim >= 2 &&
         d.head_dim <= 1024 && d.n_tokens >= 1 && d.n_tokens <= 100000;
    std::vector<uint32_t> layer_ids(ok ? d.n_layers : 0);
    ok = ok && std::fread(layer_ids.data(), 4, d.n_layers, f) == d.n_layers;
    for (uint32_t l = 0; ok && l < d.n_layers; ++l) {
      const size_t nq = size_t{d.n_tokens} * d.n_heads * d.head_dim, nk = size_t{d.n_tokens} * d.n_kv_heads * d.head_dim;
      d.q.emplace_back(nq);
      d.k.emplace_back(nk);
      d.v.emplace_back(nk);
      ok = std::fread(d.q.back().data(), 4, nq, f) == nq && std::fread(d.k.back().data(), 4, nk, f) == nk &&
           std::fread(d.v.back().data(), 4, nk, f) == nk;
    }
  }
  std::fclose(f);
  return ok;
}

double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0.0, ref = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, static_cast<double>(std::fabs(a[i] - b[i])));
    ref = std::max(ref, static_cast<double>(std::fabs(b[i])));
  }
  return err / std::max(ref, 1e-30);
}

// Integer arithmetic vs the reference on real K/V (max |error| / max |reference|, measured up to
// 0.061 at peaky early positions of rotor formats, whose unspread outlier channels meet the integer
// codebook (8-bit codebook, 8-bit queries with a scale per coordinate pair, 15-bit weights;
// docs/decisions.md).
constexpr double kIntegerTolerance = 0.1;

TEST(RealKv, FastMatchesReferenceOnEveryTarget) {
  const char* path = std::getenv("RQ_KV_DUMP");
  if (!path || !*path) GTEST_SKIP() << "set RQ_KV_DUMP to a `rotorquant kv-dump` file to run this test";
  Dump dump;
  ASSERT_TRUE(read_dump(path, dump)) << "cannot read KV dump " << path;
  const size_t d = dump.head_dim, H = dump.n_kv_heads, G = dump.n_heads / dump.n_kv_heads, T = dump.n_tokens;
  const size_t positions[] = {0, 1, 16, 255, T - 1};
  int checked = 0;
  for (const char* name : {"rotor3", "turbo3", "f16", "q8", "q4", "rotor4", "turbo2", "planar3", "iso3"}) {
    const FormatSpec& f = find_format(name);
    for (uint32_t l = 0; l < dump.n_layers; ++l) {
      for (size_t h = 0; h < H; ++h) {
        const Codec kc(f, d, RotationSeed{9, l, static_cast<uint32_t>(h), KvRole::K});
        const Codec vc(f, d, RotationSeed{9, l, static_cast<uint32_t>(h), KvRole::V});
        const auto& kl = kc.layout();
        // This head's K and V: T x d, then encoded.
        std::vector<float> kx(T * d), vx(T * d);
        for (size_t t = 0; t < T; ++t) {
          std::copy_n(dump.k[l].data() + (t * H + h) * d, d, kx.data() + t * d);
          std::copy_n(dump.v[l].data() + (t * H + h) * d, d, vx.data() + t * d);
        }
        std::vector<uint8_t> kcodes(T * kl.code_bytes), kside(T * kl.side_bytes + 1), vcodes(T * kl.code_bytes),
            vside(T * kl.side_bytes + 1);
        kc.encode(T, kx.data(), kcodes.data(), kside.data());
        vc.encode(T, vx.data(), vcodes.data(), vside.data());
        for (size_t pos : positions) {
          if (pos >= T) continue;
          const size_t n = pos + 1;  // causal: tokens [0, pos]
          AttentionProblem p;
          p.k_codec = &kc;
          p.v_codec = &vc;
          p.gqa_group = G;
          p.queries = dump.q[l].data() + (pos * dump.n_heads + h * G) * d;
          p.scale = 1.0f / std::sqrt(static_cast<float>(d));
          for (size_t t = 0; t < n; t += 64) {
            const size_t len = std::min<size_t>(64, n - t);
            p.k_pages.push_back({kcodes.data() + t * kl.code_bytes, kl.side_bytes ? kside.data() + t * kl.side_bytes : nullptr, len});
            p.v_pages.push_back({vcodes.data() + t * kl.code_bytes, kl.side_bytes ? vside.data() + t * kl.side_bytes : nullptr, len});
          }
          std::vector<float> ref(G * d), fast(G * d), integer(G * d), integer_scalar(G * d);
          p.out = ref.data();
          attend_reference(p);
          force_attention_simd_target(attention_simd_targets().back());  // the portable integer loops
          p.out = integer_scalar.data();
          attend_fast_batch(&p, 1, 0, FastArithmetic::IntegerAlways);
          for (const auto& target : attention_simd_targets()) {
            force_attention_simd_target(target);
            p.out = fast.data();
            attend_fast_float(p);
            EXPECT_LT(rel_error(fast, ref), 1e-4) << name << " layer " << l << " head " << h << " pos " << pos << " " << target;
            p.out = integer.data();
            attend_fast_batch(&p, 1, 0, FastArithmetic::IntegerAlways);
            EXPECT_LT(rel_error(integer, integer_scalar), 1e-4) << name << " layer " << l << " head " << h << " pos " << pos << " " << target;
            EXPECT_LT(rel_error(integer, ref), kIntegerTolerance) << name << " layer " << l << " head " << h << " pos " << pos;
            ++checked;
          }
          force_attention_simd_target("");
        }
      }
    }
  }
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace rq
