// How an engine uses the CUDA kernels (docs/gpu_api.md walks through it): a compressed, paged K/V
// cache for one layer, filled by fused quantize-and-append launches (a prompt, then decode steps),
// and split-KV decode attention straight over the compressed pages. Only the public headers
// include/rq/cuda/{device_codec,paged_layout,append,decode}.hpp and the CPU codec are used.
//
//   build/examples/rq_example_cuda_paged_cache [format]     (default rotor3; any GPU format)
//
// It prints the cache's bytes per token against fp16 and the decode output's relative error and
// cosine against exact attention over the original (unquantized) fp16 K and V, for queries that each
// look for one earlier token; without a CUDA device it says so and exits 0.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "rq/codec/codec.hpp"
#include "rq/cuda/append.hpp"
#include "rq/cuda/decode.hpp"
#include "rq/cuda/device_codec.hpp"
#include "rq/cuda/paged_layout.hpp"
#include "rq/format/format.hpp"

namespace {

// Every CUDA status is checked; the example stops at the first failure with its name.
void check(cudaError_t st, const char* what) {
  if (st != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(st));
    std::exit(1);
  }
}

// cudaMalloc'ed bytes, freed at scope exit.
struct DeviceBytes {
  void* p = nullptr;
  explicit DeviceBytes(size_t n) { check(cudaMalloc(&p, n ? n : 1), "cudaMalloc"); }
  ~DeviceBytes() { cudaFree(p); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  template <typename T>
  T* as() const { return static_cast<T*>(p); }
};

template <typename T>
std::unique_ptr<DeviceBytes> upload(const std::vector<T>& h) {
  auto d = std::make_unique<DeviceBytes>(h.size() * sizeof(T));
  check(cudaMemcpy(d->p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
  return d;
}

// One role (K or V) of one layer: a codec per KV head (its own rotation), the kernels' tables on the
// device, and the three planes of the paged cache.
struct RoleCache {
  std::vector<std::unique_ptr<rq::Codec>> codecs;
  std::unique_ptr<DeviceBytes> rotation, centroids, thresholds, code_polynomial, codes, tail, norms;
  rq::cuda::DeviceCodec codec;
  rq::cuda::PagedGeometry geometry;

  RoleCache(const std::string& format, int n_kv_heads, int head_dim, rq::KvRole role, int page_size, int num_pages) {
    std::vector<const rq::Codec*> per_head;
    for (int h = 0; h < n_kv_heads; ++h) {
      rq::RotationSeed seed;  // layer 0; a real engine passes its layer index
      seed.head = static_cast<uint32_t>(h);
      seed.role = role;
      codecs.push_back(std::make_unique<rq::Codec>(rq::find_format(format), static_cast<size_t>(head_dim), seed));
      per_head.push_back(codecs.back().get());
    }
    const rq::cuda::HostCodecTables tables = rq::cuda::make_codec_tables(per_head);  // throws if unsupported
    rotation = upload(tables.rotation);
    centroids = upload(tables.centroids);
    thresholds = upload(tables.thresholds);
    code_polynomial = upload(tables.code_polynomial);  // the fast kernels' quantizer (2-3 bits)
    codec = tables.info;
    codec.rotation = rotation->as<float>();
    codec.centroids = centroids->as<float>();
    codec.thresholds = thresholds->as<float>();
    codec.code_polynomial = code_polynomial->as<float>();
    geometry = rq::cuda::make_paged_geometry(n_kv_heads, page_size, num_pages, codec.payload_bytes);
    codes = std::make_unique<DeviceBytes>(geometry.codes_bytes());
    tail = std::make_unique<DeviceBytes>(geometry.tail_bytes());
    norms = std::make_unique<DeviceBytes>(geometry.norms_bytes());
  }
  rq::cuda::PagedPlanes planes() const { return {codes->as<uint8_t>(), tail->as<uint8_t>(), norms->as<uint16_t>()}; }
};

}  // namespace

int main(int argc, char** argv) {
  const std::string format = argc > 1 ? argv[1] : "rotor3";
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIP no CUDA device\n");
    return 0;
  }
  // Llama-style attention shapes: 32 query heads, 8 KV heads (GQA 4), head_dim 128.
  const int n_q_heads = 32, n_kv_heads = 8, head_dim = 128, page_size = 64;
  const std::vector<int32_t> prompt_lens = {3000, 517};  // two sequences, different lengths
  const int batch = static_cast<int>(prompt_lens.size()), decode_steps = 4;
  const int max_len = *std::max_element(prompt_lens.begin(), prompt_lens.end()) + decode_steps;
  const int pages_per_seq = (max_len + page_size - 1) / page_size, num_pages = batch * pages_per_seq;

  RoleCache k(format, n_kv_heads, head_dim, rq::KvRole::K, page_size, num_pages);
  RoleCache v(format, n_kv_heads, head_dim, rq::KvRole::V, page_size, num_pages);

  // Page table: sequence b owns pages b * pages_per_seq ... (any pages of the pool would do).
  std::vector<int32_t> page_table(static_cast<size_t>(batch) * pages_per_seq);
  for (size_t i = 0; i < page_table.size(); ++i) page_table[i] = static_cast<int32_t>(i);
  auto d_page_table = upload(page_table);

  // The original K and V (fp16, [token][kv head][head_dim] per sequence), kept on the host for the
  // fp32 reference below. Random normal values, as a stand-in for a model's projections.
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<__half>> keys(batch), values(batch);

  // Appends tokens [t0, t0 + count) of sequence b: one launch quantizes and stores their K and V
  // for every KV head. slot = page * page_size + offset of each token.
  auto append = [&](int b, int t0, int count) {
    const size_t row = static_cast<size_t>(n_kv_heads) * head_dim;
    std::vector<__half> xk(count * row), xv(count * row);
    for (auto& x : xk) x = __float2half(normal(gen));
    for (auto& x : xv) x = __float2half(normal(gen));
    keys[b].insert(keys[b].end(), xk.begin(), xk.end());
    values[b].insert(values[b].end(), xv.begin(), xv.end());
    std::vector<int64_t> slots(count);
    for (int i = 0; i < count; ++i) {
      const int t = t0 + i;
      slots[i] = static_cast<int64_t>(page_table[b * pages_per_seq + t / page_size]) * page_size + t % page_size;
    }
    auto d_k = upload(xk), d_v = upload(xv), d_slots = upload(slots);
    rq::cuda::AppendParams p;  // lanes_per_vector = 0, exact = 0: the measured-fastest kernel
    p.n_tokens = count;
    p.n_kv_heads = n_kv_heads;
    p.slot_mapping = d_slots->as<int64_t>();
    p.jobs[0] = {d_k->p, static_cast<int64_t>(row), rq::cuda::InputType::F16, k.codec, k.geometry, k.planes()};
    p.jobs[1] = {d_v->p, static_cast<int64_t>(row), rq::cuda::InputType::F16, v.codec, v.geometry, v.planes()};
    p.n_jobs = 2;
    check(rq::cuda::launch_quantize_append(p, nullptr), "append");
    check(cudaDeviceSynchronize(), "append sync");  // before the inputs are freed
  };
  for (int b = 0; b < batch; ++b) append(b, 0, prompt_lens[b]);  // prefill

  std::vector<int32_t> lens = prompt_lens;
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "properties");
  double worst = 0.0;
  for (int step = 0; step < decode_steps; ++step) {
    for (int b = 0; b < batch; ++b) append(b, lens[b]++, 1);  // this step's K and V, then attend
    // Each query head looks for one earlier token (its key plus noise), as attention in a trained
    // model is peaked; with i.i.d. random queries the exact output is a near-zero average and any
    // relative error is meaningless.
    std::vector<float> q(static_cast<size_t>(batch) * n_q_heads * head_dim);
    for (int b = 0; b < batch; ++b) {
      for (int hq = 0; hq < n_q_heads; ++hq) {
        const int hk = hq / (n_q_heads / n_kv_heads), target = static_cast<int>(gen() % static_cast<uint32_t>(lens[b]));
        const __half* kt = &keys[b][(static_cast<size_t>(target) * n_kv_heads + hk) * head_dim];
        for (int i = 0; i < head_dim; ++i) q[(static_cast<size_t>(b) * n_q_heads + hq) * head_dim + i] = __half2float(kt[i]) + 0.5f * normal(gen);
      }
    }
    auto d_q = upload(q), d_lens = upload(lens);
    DeviceBytes d_out(q.size() * sizeof(float));

    rq::cuda::DecodeParams dp;
    dp.batch = batch;
    dp.n_q_heads = n_q_heads;
    dp.n_kv_heads = n_kv_heads;
    dp.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    dp.queries = d_q->as<float>();
    dp.out = d_out.as<float>();
    dp.seq_lens = d_lens->as<int32_t>();
    dp.page_table = d_page_table->as<int32_t>();
    dp.max_pages_per_seq = pages_per_seq;
    dp.k_codec = k.codec, dp.v_codec = v.codec;
    dp.k_geometry = k.geometry, dp.v_geometry = v.geometry;
    dp.k_planes = k.planes(), dp.v_planes = v.planes();
    dp.plan = rq::cuda::plan_decode(batch, *std::max_element(lens.begin(), lens.end()), n_kv_heads, prop.multiProcessorCount);
    DeviceBytes workspace(rq::cuda::decode_workspace_bytes(batch, n_q_heads, k.codec.rotated_dim, dp.plan));
    dp.workspace = workspace.p;
    check(rq::cuda::launch_decode_attention(dp, nullptr), "decode");
    std::vector<float> out(q.size());
    check(cudaMemcpy(out.data(), d_out.p, out.size() * sizeof(float), cudaMemcpyDeviceToHost), "download");

    // Exact fp32 attention over the original K and V: how much the compressed cache changes the output.
    double err2 = 0.0, ref2 = 0.0, cross = 0.0, got2 = 0.0;
    for (int b = 0; b < batch; ++b) {
      for (int hq = 0; hq < n_q_heads; ++hq) {
        const int hk = hq / (n_q_heads / n_kv_heads);
        const float* qv = &q[(static_cast<size_t>(b) * n_q_heads + hq) * head_dim];
        std::vector<double> s(lens[b]);
        double m = -INFINITY, l = 0.0;
        for (int t = 0; t < lens[b]; ++t) {
          const __half* kt = &keys[b][(static_cast<size_t>(t) * n_kv_heads + hk) * head_dim];
          double dot = 0.0;
          for (int i = 0; i < head_dim; ++i) dot += static_cast<double>(qv[i]) * __half2float(kt[i]);
          s[t] = dot * dp.scale;
          m = std::max(m, s[t]);
        }
        std::vector<double> o(head_dim, 0.0);
        for (int t = 0; t < lens[b]; ++t) {
          const double w = std::exp(s[t] - m);
          l += w;
          const __half* vt = &values[b][(static_cast<size_t>(t) * n_kv_heads + hk) * head_dim];
          for (int i = 0; i < head_dim; ++i) o[i] += w * __half2float(vt[i]);
        }
        const float* got = &out[(static_cast<size_t>(b) * n_q_heads + hq) * head_dim];
        for (int i = 0; i < head_dim; ++i) {
          const double r = o[i] / l;
          err2 += (r - got[i]) * (r - got[i]);
          ref2 += r * r;
          cross += r * got[i];
          got2 += static_cast<double>(got[i]) * got[i];
        }
      }
    }
    const double rel = std::sqrt(err2 / ref2), cosine = cross / std::sqrt(ref2 * got2);
    worst = std::max(worst, rel);
    std::printf("decode step %d (lengths %d, %d): ||out - exact|| / ||exact|| = %.3f, cosine %.4f\n", step, lens[0],
                lens[1], rel, cosine);
  }
  const double bytes_per_token = 2.0 * n_kv_heads * (k.codec.payload_bytes + 2);  // codes + fp16 norm, K and V
  const double fp16_per_token = 2.0 * n_kv_heads * head_dim * 2;
  std::printf("%s cache: %.0f bytes per token per layer (codes and norms, K and V) against %.0f for fp16: %.2fx smaller\n",
              format.c_str(), bytes_per_token, fp16_per_token, fp16_per_token / bytes_per_token);
  std::printf("worst relative error over the steps: %.3f (the %s quantization's own error: the kernels match the CPU\n"
              "reference codec to float rounding, tests/cuda)\n",
              worst, format.c_str());
  return 0;
}
