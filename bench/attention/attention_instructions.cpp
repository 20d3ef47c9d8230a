// One KV head of fast decode attention, repeated: the program behind
// scripts/attention_instructions.sh, which runs it under valgrind (callgrind) with 1 + R repeats and
// with 1, and reports instructions per cached token and KV head: (I(1 + R) - I(1)) / (R * tokens).
// Instruction counts are deterministic, unlike timings on a shared 2-core VM; the program also
// prints the best wall time of its repeats (meaningful only outside valgrind).
//
//   rq_attention_instructions FORMAT GQA TOKENS REPEATS [HEAD_DIM=128] [float]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "rq/attention/attention_fast.hpp"
#include "rq/codec/codec.hpp"
#include "rq/core/errors.hpp"
#include "rq/core/rng.hpp"

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s FORMAT GQA TOKENS REPEATS [HEAD_DIM=128] [float]\n", argv[0]);
    return 2;
  }
  try {
    const std::string format = argv[1];
    const size_t gqa = std::strtoul(argv[2], nullptr, 10), n = std::strtoul(argv[3], nullptr, 10);
    const long repeats = std::strtol(argv[4], nullptr, 10);
    const size_t d = argc > 5 ? std::strtoul(argv[5], nullptr, 10) : 128;
    const bool use_float = argc > 6 && std::string(argv[6]) == "float";
    const rq::Codec kc(rq::find_format(format), d, rq::RotationSeed{1, 0, 0, rq::KvRole::K});
    const rq::Codec vc(rq::find_format(format), d, rq::RotationSeed{1, 0, 0, rq::KvRole::V});
    rq::Rng rng(1);
    std::vector<float> x(n * d), q(gqa * d), out(gqa * d);
    for (auto& e : x) e = static_cast<float>(rng.normal());
    for (auto& e : q) e = static_cast<float>(rng.normal());
    const auto& l = kc.layout();
    std::vector<uint8_t> kcodes(n * l.code_bytes), kside(n * l.side_bytes + 1), vcodes(n * l.code_bytes),
        vside(n * l.side_bytes + 1);
    kc.encode(n, x.data(), kcodes.data(), kside.data());
    vc.encode(n, x.data(), vcodes.data(), vside.data());
    rq::AttentionProblem p;
    p.k_codec = &kc;
    p.v_codec = &vc;
    p.gqa_group = gqa;
    p.queries = q.data();
    p.scale = 1.0f / 11.3f;
    p.out = out.data();
    constexpr size_t kPage = 256;
    for (size_t t = 0; t < n; t += kPage) {
      const size_t m = std::min(kPage, n - t);
      const size_t after = (n - t - m) * l.code_bytes;  // the following pages of the same buffer
      p.k_pages.push_back({kcodes.data() + t * l.code_bytes, kside.data() + t * l.side_bytes, m, after});
      p.v_pages.push_back({vcodes.data() + t * l.code_bytes, vside.data() + t * l.side_bytes, m, after});
    }
    const auto arithmetic = use_float ? rq::FastArithmetic::Float : rq::FastArithmetic::Integer;
    double best = 1e30;
    for (long r = 0; r < repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      rq::attend_fast_batch(&p, 1, 1, arithmetic);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("%s d=%zu gqa=%zu tokens=%zu: best %.1f us, %.2f ns per token (one thread)\n", format.c_str(), d, gqa,
                n, repeats > 0 ? best * 1e6 : 0.0, repeats > 0 ? best * 1e9 / static_cast<double>(n) : 0.0);
    return 0;
  } catch (const rq::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
