// Micro-benchmarks of the reference codec, one thread: encode, decode, score and accumulate
// throughput per format at head_dim 64 and 128 (items/s = vectors/s).
//   build/bench/rq_bench_codec --benchmark_filter='encode/(rotor3|turbo3)/128'
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "rq/codec/codec.hpp"
#include "rq/core/random_vectors.hpp"

namespace {

constexpr size_t kVectors = 4096;

struct Fixture {
  rq::Codec codec;
  std::vector<float> x, out;
  std::vector<uint8_t> codes, side;
  Fixture(const rq::FormatSpec& f, size_t d)
      : codec(f, d), x(rq::random_unit_vectors(kVectors, d, 1)), out(kVectors * d),
        codes(kVectors * codec.layout().code_bytes), side(kVectors * codec.layout().side_bytes) {
    codec.encode(kVectors, x.data(), codes.data(), side.data());
  }
};

void bench_encode(benchmark::State& state, const rq::FormatSpec* f, size_t d) {
  Fixture fx(*f, d);
  for (auto _ : state) {
    fx.codec.encode(kVectors, fx.x.data(), fx.codes.data(), fx.side.data());
    benchmark::DoNotOptimize(fx.codes.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kVectors));
}

void bench_decode(benchmark::State& state, const rq::FormatSpec* f, size_t d) {
  Fixture fx(*f, d);
  for (auto _ : state) {
    fx.codec.decode(kVectors, fx.codes.data(), fx.side.data(), fx.out.data());
    benchmark::DoNotOptimize(fx.out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kVectors));
}

void bench_score(benchmark::State& state, const rq::FormatSpec* f, size_t d) {
  Fixture fx(*f, d);
  const rq::PreparedQuery q = fx.codec.prepare_query(fx.x.data());
  for (auto _ : state) {
    fx.codec.score(q, kVectors, fx.codes.data(), fx.side.data(), fx.out.data());
    benchmark::DoNotOptimize(fx.out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kVectors));
}

void bench_accumulate(benchmark::State& state, const rq::FormatSpec* f, size_t d) {
  Fixture fx(*f, d);
  std::vector<float> w(kVectors, 1.0f / kVectors);
  for (auto _ : state) {
    fx.codec.accumulate(kVectors, w.data(), fx.codes.data(), fx.side.data(), fx.out.data());
    benchmark::DoNotOptimize(fx.out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kVectors));
}

// The format table drives the benchmark matrix.
const int registered = [] {
  for (const auto& f : rq::format_table()) {
    for (size_t d : {64u, 128u}) {
      std::string suffix = "/";
      suffix.append(f.name).append("/").append(std::to_string(d));
      benchmark::RegisterBenchmark(std::string("encode").append(suffix).c_str(), bench_encode, &f, d);
      benchmark::RegisterBenchmark(std::string("decode").append(suffix).c_str(), bench_decode, &f, d);
      benchmark::RegisterBenchmark(std::string("score").append(suffix).c_str(), bench_score, &f, d);
      benchmark::RegisterBenchmark(std::string("accumulate").append(suffix).c_str(), bench_accumulate, &f, d);
    }
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
