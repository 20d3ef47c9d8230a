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
    std::fprintf(stderr, "usage: %s FORMAT GQA TOKENS REPEATS [HEAD_DIM=128] [integer|float] [HEADS=1] [THREADS=1]\n",
                 argv[0]);
    return 2;
  }
  try {
    const std::string format = argv[1];
    const size_t gqa = std::strtoul(argv[2], nullptr, 10), n = std::strtoul(argv[3], nullptr, 10);
    const long repeats = std::strtol(argv[4], nullptr, 10);
    const size_t d = argc > 5 ? std::strtoul(argv[5], nullptr, 10) : 128;
    const bool use_float = argc > 6 && std::string(argv[6]) == "float";
    const size_t heads = argc > 7 ? std::max<size_t>(1, std::strtoul(argv[7], nullptr, 10)) : 1;
    const int threads = argc > 8 ? static_cast<int>(std::strtol(argv[8], nullptr, 10)) : 1;
    const rq::Codec kc(rq::find_format(format), d, rq::RotationSeed{1, 0, 0, rq::KvRole::K});
    const rq::Codec vc(rq::find_format(format), d, rq::RotationSeed{1, 0, 0, rq::KvRole::V});
    rq::Rng rng(1);
    std::vector<float> x(n * d), q(heads * gqa * d), out(heads * gqa * d);
    for (auto& e : x) e = static_cast<float>(rng.normal());
    for (auto& e : q) e = static_cast<float>(rng.normal());
    const auto& l = kc.layout();
    // heads x n rows per plane; every head gets the same codes (speed does not depend on them).
    const size_t hn = heads * n;
    std::vector<uint8_t> kcodes(hn * l.code_bytes), kside(hn * l.side_bytes + 1), vcodes(hn * l.code_bytes),
        vside(hn * l.side_bytes + 1);
    kc.encode(n, x.data(), kcodes.data(), kside.data());
    vc.encode(n, x.data(), vcodes.data(), vside.data());
    for (size_t h = 1; h < heads; ++h) {
      std::copy_n(kcodes.data(), n * l.code_bytes, kcodes.data() + h * n * l.code_bytes);
      std::copy_n(vcodes.data(), n * l.code_bytes, vcodes.data() + h * n * l.code_bytes);
      std::copy_n(kside.data(), n * l.side_bytes, kside.data() + h * n * l.side_bytes);
      std::copy_n(vside.data(), n * l.side_bytes, vside.data() + h * n * l.side_bytes);
    }
    std::vector<rq::AttentionProblem> problems(heads);
    for (size_t h = 0; h < heads; ++h) {
      rq::AttentionProblem& p = problems[h];
      p.k_codec = &kc;
      p.v_codec = &vc;
      p.gqa_group = gqa;
      p.queries = q.data() + h * gqa * d;
      p.scale = 1.0f / 11.3f;
      p.out = out.data() + h * gqa * d;
      constexpr size_t kPage = 256;
      for (size_t t = 0; t < n; t += kPage) {
        const size_t m = std::min(kPage, n - t), row = h * n + t;
        const size_t after = (hn - row - m) * l.code_bytes;  // the following pages of the same buffer
        p.k_pages.push_back({kcodes.data() + row * l.code_bytes, kside.data() + row * l.side_bytes, m, after});
        p.v_pages.push_back({vcodes.data() + row * l.code_bytes, vside.data() + row * l.side_bytes, m, after});
      }
    }
    const auto arithmetic = use_float ? rq::FastArithmetic::Float : rq::FastArithmetic::Integer;
    double best = 1e30;
    std::vector<double> times;
    for (long r = 0; r < repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      rq::attend_fast_batch(problems.data(), heads, threads, arithmetic);
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      best = std::min(best, times.back());
    }
    std::sort(times.begin(), times.end());
    const double median = times.empty() ? 0.0 : times[times.size() / 2];
    std::printf("%s d=%zu gqa=%zu tokens=%zu heads=%zu threads=%d: best %.1f us, %.2f ns per token and head "
                "(median %.2f)\n",
                format.c_str(), d, gqa, n, heads, threads, repeats > 0 ? best * 1e6 : 0.0,
                repeats > 0 ? best * 1e9 / static_cast<double>(hn) : 0.0,
                repeats > 0 ? median * 1e9 / static_cast<double>(hn) : 0.0);
    if (repeats >= 10) {  // the spread of the calls (two threads on a shared VM are bimodal)
      std::printf("  ns per token and head, deciles 1 / 3 / 5 / 7 / 9:");
      for (int q : {1, 3, 5, 7, 9}) std::printf(" %.2f", times[times.size() * q / 10] * 1e9 / static_cast<double>(hn));
      std::printf("\n");
    }
    return 0;
  } catch (const rq::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
