// Host-side harness shared by the GPU check/benchmark program (bench/cuda) and the GoogleTest
// suite (tests/cuda): device buffers, codec tables on the device, paged caches, and the checks of
// the CUDA kernels against the CPU reference (rq::Codec::encode, rq::attend_reference).
// Host code only (CUDA runtime API); needs a device at run time.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <cmath>
#include <cstdio>
#include <cstring>

#include "rq/attention/attention.hpp"
#include "rq/codec/codec.hpp"
#include "rq/core/half.hpp"
#include "rq/cuda/append.hpp"
#include "rq/cuda/decode.hpp"
#include "rq/pack/bitpack.hpp"
#include "rq/core/rng.hpp"
#include "rq/cuda/cuda_check.hpp"
#include "rq/cuda/device_codec.hpp"
#include "rq/cuda/paged_layout.hpp"
#include "rq/format/format.hpp"

namespace rq::cuda::harness {

/// Owning device allocation of n elements of T.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { resize(n); }
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void resize(size_t n) {
    reset();
    n_ = n;
    if (n) check(cudaMalloc(&p_, n * sizeof(T)), "cudaMalloc");
  }
  void reset() {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  void upload(const std::vector<T>& h) {
    resize(h.size());
    if (n_) check(cudaMemcpy(p_, h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    if (n_) check(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return h;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

/// One role's codecs (one per KV head) and their tables on the device.
struct RoleCodecs {
  std::vector<std::unique_ptr<Codec>> per_head;
  HostCodecTables host;
  DeviceBuffer<float> rotation, centroids, thresholds, code_polynomial;
  DeviceCodec device;

  RoleCodecs(const std::string& format, int n_heads, int dim, KvRole role, uint64_t seed = 0x5eedull) {
    std::vector<const Codec*> ptrs;
    for (int h = 0; h < n_heads; ++h) {
      RotationSeed s;
      s.seed = seed;
      s.head = static_cast<uint32_t>(h);
      s.role = role;
      per_head.push_back(std::make_unique<Codec>(find_format(format), static_cast<size_t>(dim), s));
      ptrs.push_back(per_head.back().get());
    }
    host = make_codec_tables(ptrs);
    rotation.upload(host.rotation);
    centroids.upload(host.centroids);
    thresholds.upload(host.thresholds);
    code_polynomial.upload(host.code_polynomial);  // (empty at 4 bits)
    device = host.info;
    device.rotation = rotation.get();
    device.centroids = centroids.get();
    device.thresholds = thresholds.get();
    device.code_polynomial = code_polynomial.get();
  }
};

/// One cache (K or V) in the paged layout.
struct DeviceCache {
  PagedGeometry geometry;
  DeviceBuffer<uint8_t> codes, tail;
  DeviceBuffer<uint16_t> norms;
  DeviceCache(int n_heads, int page_size, int num_pages, int payload_bytes) {
    geometry = make_paged_geometry(n_heads, page_size, num_pages, payload_bytes);
    codes.resize(geometry.codes_bytes());
    tail.resize(geometry.tail_bytes());
    norms.resize(geometry.rows());
  }
  PagedPlanes planes() const { return PagedPlanes{codes.get(), tail.get(), norms.get()}; }
};

/// Host copy of a cache, readable as CPU codec rows.
struct HostCache {
  PagedGeometry g;
  std::vector<uint8_t> codes, tail;
  std::vector<uint16_t> norms;
  explicit HostCache(const DeviceCache& c) : g(c.geometry), codes(c.codes.download()), tail(c.tail.download()), norms(c.norms.download()) {}
  /// The CPU codec's codes row (main ++ tail) of a cache row.
  std::vector<uint8_t> cpu_row(size_t row) const {
    std::vector<uint8_t> r(codes.begin() + row * g.row_main_bytes, codes.begin() + (row + 1) * g.row_main_bytes);
    r.insert(r.end(), tail.begin() + row * g.row_tail_bytes, tail.begin() + (row + 1) * g.row_tail_bytes);
    return r;
  }
};

/// Page tables: sequence b owns ceil(len_b / page_size) pages, drawn from a shuffled pool.
struct PageTables {
  std::vector<int32_t> table;  // [batch][max_pages]
  int max_pages = 0;
  int total_pages = 0;
  PageTables(const std::vector<int32_t>& lens, int page_size, Rng& rng) {
    for (int32_t l : lens) max_pages = std::max(max_pages, (l + page_size - 1) / page_size);
    max_pages = std::max(max_pages, 1);
    for (int32_t l : lens) total_pages += (l + page_size - 1) / page_size;
    std::vector<int32_t> pool(static_cast<size_t>(std::max(total_pages, 1)));
    std::iota(pool.begin(), pool.end(), 0);
    for (size_t i = pool.size(); i > 1; --i) std::swap(pool[i - 1], pool[rng.next_u64() % i]);
    table.assign(lens.size() * static_cast<size_t>(max_pages), -1);
    size_t next = 0;
    for (size_t b = 0; b < lens.size(); ++b) {
      for (int p = 0; p < (lens[b] + page_size - 1) / page_size; ++p) table[b * max_pages + p] = pool[next++];
    }
    total_pages = std::max(total_pages, 1);
  }
  /// Physical slot of token t of sequence b.
  int64_t slot(size_t b, int t, int page_size) const {
    return static_cast<int64_t>(table[b * max_pages + t / page_size]) * page_size + t % page_size;
  }
};

inline uint16_t bf16_bits(float f) {  // round to nearest even
  const uint32_t u = float_bits(f);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Random inputs with a few edge rows: zero vectors, tiny and large norms, one hot vectors, negative
// zeros (rotations give exact zeros of both signs), and a vector whose norm is so small (1e-40) that
// 1 / norm overflows: the CPU codec then quantizes NaNs (codes 0), which the GPU must match
// (fp16 flushes it to a zero vector; bf16 and fp32 keep it).
inline std::vector<float> random_vectors(size_t n, int d, Rng& rng) {
  std::vector<float> x(n * d);
  for (size_t i = 0; i < n; ++i) {
    const int kind = static_cast<int>(i % 19);
    const double scale = kind == 3 ? 1e-3 : kind == 5 ? 60.0 : 1.0 + 3.0 * rng.uniform();
    for (int j = 0; j < d; ++j) {
      double v = rng.normal() * scale;
      if (kind == 7) v = (j == static_cast<int>(i % d)) ? 2.5 : 0.0;  // one-hot
      if (kind == 11 && j % 16 == 0) v *= 20.0;                        // outlier channels
      x[i * d + j] = static_cast<float>(v);
    }
    if (kind == 13) std::fill(x.begin() + i * d, x.begin() + (i + 1) * d, 0.0f);  // zero vector
    if (kind == 15) {  // -0.0 everywhere but two opposite entries
      std::fill(x.begin() + i * d, x.begin() + (i + 1) * d, -0.0f);
      x[i * d + i % d] = 1.5f;
      x[i * d + (i + 5) % d] = -1.5f;
    }
    if (kind == 17) {  // 1 / norm overflows
      std::fill(x.begin() + i * d, x.begin() + (i + 1) * d, 0.0f);
      x[i * d + i % d] = 1e-40f;
    }
  }
  return x;
}

/// Outcome of one append check: GPU planes vs rq::Codec::encode.
struct AppendCheck {
  size_t rows = 0, row_mismatch = 0, codes = 0, code_mismatch = 0, norm_mismatch = 0;
  size_t code_unexplained = 0;  // differing codes not within kThresholdEps of their threshold
  size_t norm_unexplained = 0;  // differing norms more than one fp16 ulp from the expected one
  double max_threshold_distance = 0.0;  // of the differing codes
  bool exact = false;
  int error_flag = 0;
  std::string text;
  /// Exact kernel: every row byte-identical to rq::Codec::encode, codes and stored norms. Fast
  /// kernel: every differing code and norm explained by float rounding (see check_append).
  bool ok() const {
    if (error_flag != 0) return false;
    if (exact) return row_mismatch == 0 && code_mismatch == 0 && norm_mismatch == 0;
    return code_unexplained == 0 && norm_unexplained == 0;
  }
};

/// Fast append kernel: how close (in units of the unit vector's coordinates, i.e. of the vector's
/// scale) the reference's rotated coordinate must be to the threshold between two differing codes.
/// The fast kernel's fp32 pipeline is off the reference by < 1e-6 there (FWHT: sum over the 7 stages
/// of 2^-24 sqrt(2^s) ||x|| / (sqrt(128) ||x||) ~ 2e-7; the norm-scaled threshold: ~17 2^-24 relative
/// of t < 0.25; the reference's own float rounding: ~2e-7); a random code error would land this
/// close to a threshold with probability ~1e-4 (thresholds ~0.05 apart), so it would not be excused.
inline constexpr double kThresholdEps = 1e-5;

/// Appends random and edge-case K and V rows of `format` (4 sequences of 1, 37, 130, 255 new tokens,
/// 8 heads) and compares each row with rq::Codec::encode. Exact kernel (exact = true, lanes_per_vector
/// 1 or 4 lanes): byte for byte. Fast kernel (exact = false; lanes_per_vector 2 (turbo), 4, 8 or 16, else one lane):
/// a code may differ only by one level, where the reference's rotated, normalized coordinate
/// (rotation().apply of x * (1 / norm), the float the reference quantizes) is within kThresholdEps of
/// the threshold between the two levels (rounds_per_block: AppendParams::rounds_per_block of the
/// fast kernel with several lanes); a stored norm may differ only by one fp16 ulp from the
/// reference's formula float(norm / sqrt(sum C[code]^2)) evaluated with the GPU's codes.
inline AppendCheck check_append(const std::string& format, InputType type, Rng& rng, int lanes_per_vector = 4,
                                bool exact = false, int rounds_per_block = 0) {
  const int H = 8, d = 128, page = 16;
  const std::vector<int32_t> lens = {1, 37, 130, 255};  // new tokens per sequence (odd sizes)
  PageTables pt(lens, page, rng);
  RoleCodecs kc(format, H, d, KvRole::K), vc(format, H, d, KvRole::V);
  const int payload = kc.device.payload_bytes;
  DeviceCache kcache(H, page, pt.total_pages, payload), vcache(H, page, pt.total_pages, payload);
  std::vector<int64_t> slots;
  for (size_t b = 0; b < lens.size(); ++b)
    for (int t = 0; t < lens[b]; ++t) slots.push_back(pt.slot(b, t, page));
  const int T = static_cast<int>(slots.size());
  // K and V inputs: [T][H][d], rounded to the input type so the CPU sees the same floats.
  std::vector<float> xk = random_vectors(static_cast<size_t>(T) * H, d, rng), xv = random_vectors(static_cast<size_t>(T) * H, d, rng);
  std::vector<uint16_t> hk(xk.size()), hv(xv.size());
  for (size_t i = 0; i < xk.size() && type != InputType::F32; ++i) {
    if (type == InputType::F16) {
      hk[i] = float_to_half(xk[i]), hv[i] = float_to_half(xv[i]);
      xk[i] = half_to_float(hk[i]), xv[i] = half_to_float(hv[i]);
    } else {
      hk[i] = bf16_bits(xk[i]), hv[i] = bf16_bits(xv[i]);
      xk[i] = bits_float(static_cast<uint32_t>(hk[i]) << 16), xv[i] = bits_float(static_cast<uint32_t>(hv[i]) << 16);
    }
  }
  DeviceBuffer<uint16_t> dk, dv;  // 16-bit inputs
  DeviceBuffer<float> fk, fv;     // fp32 inputs: the floats themselves
  if (type == InputType::F32) {
    fk.upload(xk);
    fv.upload(xv);
  } else {
    dk.upload(hk);
    dv.upload(hv);
  }
  const void* xk_dev = type == InputType::F32 ? static_cast<const void*>(fk.get()) : dk.get();
  const void* xv_dev = type == InputType::F32 ? static_cast<const void*>(fv.get()) : dv.get();
  DeviceBuffer<int64_t> dslots;
  dslots.upload(slots);
  DeviceBuffer<int32_t> flag;
  flag.upload({0});
  AppendParams p;
  p.n_tokens = T;
  p.n_kv_heads = H;
  p.slot_mapping = dslots.get();
  p.jobs[0] = AppendJob{xk_dev, static_cast<int64_t>(H) * d, type, kc.device, kcache.geometry, kcache.planes()};
  p.jobs[1] = AppendJob{xv_dev, static_cast<int64_t>(H) * d, type, vc.device, vcache.geometry, vcache.planes()};
  p.n_jobs = 2;
  p.error_flag = flag.get();
  const int lanes = exact || lanes_per_vector == 2 || lanes_per_vector == 4 || lanes_per_vector == 8 || lanes_per_vector == 16 ? lanes_per_vector : 1;
  p.lanes_per_vector = lanes;
  p.rounds_per_block = rounds_per_block;  // fast kernel with several lanes: rounds of 256 / lanes vectors
  p.exact = exact ? 1 : 0;
  check(launch_quantize_append(p, nullptr), "append launch");
  check(cudaDeviceSynchronize(), "append sync");
  const HostCache hkc(kcache), hvc(vcache);
  AppendCheck res;
  res.exact = exact;
  const FormatLayout& L = kc.per_head[0]->layout();
  const int bits = L.code_bits;
  std::vector<uint8_t> ref_code(L.code_bytes), ref_side(L.side_bytes);
  std::vector<float> u(L.rotated_dim), y(L.rotated_dim);
  for (int role = 0; role < 2; ++role) {
    const HostCache& hc = role ? hvc : hkc;
    const std::vector<float>& x = role ? xv : xk;
    const RoleCodecs& rc = role ? vc : kc;
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < H; ++h) {
        const Codec& codec = *rc.per_head[h];
        const float* xr = x.data() + (static_cast<size_t>(t) * H + h) * d;
        codec.encode(1, xr, ref_code.data(), ref_side.data());
        const size_t row = hc.g.row(static_cast<int>(slots[t] / page), h, static_cast<int>(slots[t] % page));
        const std::vector<uint8_t> got = hc.cpu_row(row);
        ++res.rows;
        res.row_mismatch += std::memcmp(got.data(), ref_code.data(), L.payload_bytes) != 0;
        // The reference's norm and rotated coordinates (codec.cpp: encode_one).
        double sq[4] = {0, 0, 0, 0};
        for (int j = 0; j < d; ++j) sq[j % 4] += static_cast<double>(xr[j]) * xr[j];
        const float norm = static_cast<float>(std::sqrt((sq[0] + sq[1]) + (sq[2] + sq[3])));
        bool y_known = false;
        size_t row_code_diff = 0;
        double c2 = 0.0;  // sum of C[gpu code]^2, as the reference would sum it
        for (size_t j = 0; j < L.rotated_dim; ++j) {
          ++res.codes;
          const uint32_t a = unpack_code(got.data(), j, bits), b = unpack_code(ref_code.data(), j, bits);
          c2 += static_cast<double>(codec.centroids()[a]) * codec.centroids()[a];
          if (a == b) continue;
          ++res.code_mismatch, ++row_code_diff;
          if (exact) continue;
          if (!y_known && norm != 0.0f) {
            const float inv = 1.0f / norm;
            for (int k = 0; k < d; ++k) u[k] = xr[k] * inv;
            codec.rotation().apply(u.data(), y.data());
            y_known = true;
          }
          const uint32_t lo = std::min(a, b);
          const bool adjacent = std::max(a, b) == lo + 1;
          const double dist = y_known && adjacent ? std::fabs(static_cast<double>(y[j]) -
                                                              static_cast<float>(codec.codebook()->thresholds[lo]))
                                                  : INFINITY;
          if (!(dist <= kThresholdEps)) ++res.code_unexplained;
          if (std::isfinite(dist)) res.max_threshold_distance = std::max(res.max_threshold_distance, dist);
        }
        const uint16_t ref_norm = static_cast<uint16_t>(ref_side[0] | (ref_side[1] << 8));
        const uint16_t got_norm = hc.norms[row];
        if (got_norm == ref_norm) continue;
        ++res.norm_mismatch;
        if (exact) continue;
        uint16_t expected = ref_norm;  // with the GPU's codes, when they differ
        if (row_code_diff && codec.format().norm_correction && norm != 0.0f && c2 > 0.0) {
          expected = float_to_half(static_cast<float>(norm / std::sqrt(c2)));
        }
        if (std::abs(static_cast<int>(got_norm) - static_cast<int>(expected)) > 1 || (got_norm ^ expected) & 0x8000u) {
          ++res.norm_unexplained;
        }
      }
    }
  }
  res.error_flag = flag.download()[0];
  const char* in = type == InputType::F16 ? "fp16" : "bf16";
  char buf[400];
  if (exact) {
    std::snprintf(buf, sizeof buf, "append %-8s %s exact %s: %zu rows, byte-identical rows %zu/%zu, mismatching codes %zu, norms %zu",
                  format.c_str(), in, lanes_per_vector == 4 ? "4 lanes" : "1 lane ", res.rows, res.rows - res.row_mismatch,
                  res.rows, res.code_mismatch, res.norm_mismatch);
  } else {
    std::snprintf(buf, sizeof buf,
                  "append %-8s %s fast %2d lane%s%s: %zu rows, %zu codes: differing codes %zu (%zu not within %.0e of their "
                  "threshold; max distance %.1e), differing norms %zu (%zu over 1 fp16 ulp)",
                  format.c_str(), in, lanes, lanes == 1 ? " " : "s",
                  rounds_per_block > 1 ? (" x" + std::to_string(rounds_per_block) + " rounds").c_str() : "", res.rows, res.codes, res.code_mismatch, res.code_unexplained, kThresholdEps,
                  res.max_threshold_distance, res.norm_mismatch, res.norm_unexplained);
  }
  res.text = buf;
  return res;
}

/// Outcome of the input-policy check.
struct PolicyCheck {
  bool flag_raised = false, bad_rows_zero = false, good_rows_kept = false, rejects_bad_dim = false;
  bool ok() const { return flag_raised && bad_rows_zero && good_rows_kept && rejects_bad_dim; }
};

/// NaN/Inf inputs: stored as zero vectors, error flag raised, other rows untouched.
inline PolicyCheck check_append_policy(Rng& rng, int lanes_per_vector = 4, bool exact = false,
                                       const std::string& format = "turbo3") {
  const int H = 2, d = 128, page = 16, T = 3;
  RoleCodecs kc(format, H, d, KvRole::K);
  DeviceCache cache(H, page, 1, kc.device.payload_bytes);
  std::vector<float> x = random_vectors(static_cast<size_t>(T) * H, d, rng);
  x[5] = NAN;
  x[d * 3 + 1] = INFINITY;
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) h[i] = float_to_half(x[i]);
  DeviceBuffer<uint16_t> dx;
  dx.upload(h);
  DeviceBuffer<int64_t> slots;
  slots.upload({0, 1, 2});
  DeviceBuffer<int32_t> flag;
  flag.upload({0});
  AppendParams p;
  p.n_tokens = T;
  p.n_kv_heads = H;
  p.slot_mapping = slots.get();
  p.jobs[0] = AppendJob{dx.get(), static_cast<int64_t>(H) * d, InputType::F16, kc.device, cache.geometry, cache.planes()};
  p.n_jobs = 1;
  p.error_flag = flag.get();
  p.lanes_per_vector = lanes_per_vector;
  p.exact = exact ? 1 : 0;
  check(launch_quantize_append(p, nullptr), "append launch");
  check(cudaDeviceSynchronize(), "append sync");
  const HostCache hc(cache);
  PolicyCheck res;
  res.bad_rows_zero = hc.norms[hc.g.row(0, 0, 0)] == 0 && hc.norms[hc.g.row(0, 1, 1)] == 0;
  res.good_rows_kept = hc.norms[hc.g.row(0, 1, 0)] != 0 && hc.norms[hc.g.row(0, 0, 2)] != 0;
  res.flag_raised = flag.download()[0] == 1;
  // Invalid parameters come back as an error status, not a crash.
  AppendParams bad = p;
  bad.jobs[0].codec.dim = 96;
  res.rejects_bad_dim = launch_quantize_append(bad, nullptr) == cudaErrorInvalidValue;
  return res;
}

/// Outcome of one decode check: GPU split-KV attention vs rq::attend_reference.
/// The decode parameters of one batch over a K and a V cache (everything but the plan and `exact`):
/// shared by the checks below and the benchmark.
inline DecodeParams decode_params(int batch, int n_q_heads, int n_kv_heads, int d, const float* queries, float* out,
                                  const int32_t* seq_lens, const int32_t* page_table, int max_pages_per_seq,
                                  const RoleCodecs& kc, const RoleCodecs& vc, const DeviceCache& kcache,
                                  const DeviceCache& vcache) {
  DecodeParams p;
  p.batch = batch;
  p.n_q_heads = n_q_heads;
  p.n_kv_heads = n_kv_heads;
  p.scale = 1.0f / std::sqrt(static_cast<float>(d));
  p.queries = queries;
  p.out = out;
  p.seq_lens = seq_lens;
  p.page_table = page_table;
  p.max_pages_per_seq = max_pages_per_seq;
  p.k_codec = kc.device;
  p.v_codec = vc.device;
  p.k_geometry = kcache.geometry;
  p.v_geometry = vcache.geometry;
  p.k_planes = kcache.planes();
  p.v_planes = vcache.planes();
  return p;
}

/// Decode checks' mixed batch: 16 sequence lengths (empty, one token, chunk edges, several pages);
/// with 8 KV heads, 128 (sequence, KV head) pairs: 24-warp blocks on an H200.
inline const std::vector<int32_t> kMixedBatchLens = {1, 7, 129, 1000, 2500, 0, 64, 65, 300, 777, 4096, 3, 128, 191, 2000, 513};

struct DecodeCheck {
  double rel_err = 0.0;  // max |gpu - cpu| / max |cpu|
  bool finite = true;    // every output written (outputs are poisoned with NaN first)
  bool tensor_cores = false;
  bool repeat_identical = true;  // the second call (same workspace) gave the same bits
  int block_warps = 0;           // the tensor-core kernel's splits per block (plan.block_warps)
  std::string text;
  /// Exact kernel: float rounding, 1e-4. Tensor cores: K and V centroids as fp16(a C) (~2^-15.5
  /// relative, systematic per level, so it enters every score), fp16 softmax weights: 2e-3
  /// (docs/decisions.md, "GPU decode: fp16 centroids and weights"; measured up to 1.1e-3).
  /// rel_err is the larger of two calls on one workspace (the second finds its counters reset).
  bool ok() const { return finite && repeat_identical && rel_err < (tensor_cores ? 2e-3 : 1e-4); }
};

/// Decode over the same (GPU-written) pages on both sides; sequence lengths 1, 7, 129, 1000, 2500, 0.
/// lens: sequence lengths (default {1, 7, 129, 1000, 2500, 0}); a long sequence at small batch
/// gives >= 64 splits, which the decode merges with its wide merge kernel. The decode runs twice on
/// one workspace, and both kernels must give bit-identical outputs (fixed splits and sum order).
/// n_kv_heads: 8 unless given (1: one KV head, one long sequence's pair merging many partials).
/// page_size: tokens per page (a power of two; the tensor-core kernel takes >= 8); 0 gives 16 for the
/// exact kernel and 64 for the tensor-core kernel (one chunk a page).
inline DecodeCheck check_decode(const std::string& format, int n_q_heads, int sms, Rng& rng, bool exact,
                                std::vector<int32_t> lens = {1, 7, 129, 1000, 2500, 0}, int n_kv_heads = 8,
                                int page_size = 0) {
  const int H = n_kv_heads, d = 128;
  const int page = page_size > 0 ? page_size : exact ? 16 : 64;
  const int G = n_q_heads / H;
  const int B = static_cast<int>(lens.size());
  PageTables pt(lens, page, rng);
  RoleCodecs kc(format, H, d, KvRole::K), vc(format, H, d, KvRole::V);
  const int payload = kc.device.payload_bytes;
  DeviceCache kcache(H, page, pt.total_pages, payload), vcache(H, page, pt.total_pages, payload);
  std::vector<int64_t> slots;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < lens[b]; ++t) slots.push_back(pt.slot(b, t, page));
  const int T = static_cast<int>(slots.size());
  std::vector<float> xk = random_vectors(static_cast<size_t>(T) * H, d, rng), xv = random_vectors(static_cast<size_t>(T) * H, d, rng);
  DeviceBuffer<float> dk, dv;
  dk.upload(xk);
  dv.upload(xv);
  DeviceBuffer<int64_t> dslots;
  dslots.upload(slots);
  AppendParams ap;
  ap.n_tokens = T;
  ap.n_kv_heads = H;
  ap.slot_mapping = dslots.get();
  ap.jobs[0] = AppendJob{dk.get(), static_cast<int64_t>(H) * d, InputType::F32, kc.device, kcache.geometry, kcache.planes()};
  ap.jobs[1] = AppendJob{dv.get(), static_cast<int64_t>(H) * d, InputType::F32, vc.device, vcache.geometry, vcache.planes()};
  check(launch_quantize_append(ap, nullptr), "append launch");

  std::vector<float> q(static_cast<size_t>(B) * n_q_heads * d);
  for (auto& v : q) v = static_cast<float>(rng.normal());
  DeviceBuffer<float> dq, dout;
  dq.upload(q);
  dout.resize(q.size());
  DeviceBuffer<int32_t> dlens, dtable;
  dlens.upload(lens);
  dtable.upload(pt.table);
  DecodeParams p = decode_params(B, n_q_heads, H, d, dq.get(), dout.get(), dlens.get(), dtable.get(), pt.max_pages, kc,
                                 vc, kcache, vcache);
  p.plan = plan_decode(B, *std::max_element(lens.begin(), lens.end()), H, sms, exact);
  p.exact = exact ? 1 : 0;
  DeviceBuffer<uint8_t> ws(decode_workspace_bytes(B, n_q_heads, kc.device.rotated_dim, p.plan));
  p.workspace = ws.get();
  std::vector<float> outs[2];
  for (auto& o : outs) {
    check(cudaMemset(dout.get(), 0xff, q.size() * sizeof(float)), "poison");  // NaN: unwritten outputs fail
    check(launch_decode_attention(p, nullptr), "decode launch");
    check(cudaDeviceSynchronize(), "decode sync");
    o = dout.download();
  }
  const bool identical = std::memcmp(outs[0].data(), outs[1].data(), outs[0].size() * sizeof(float)) == 0;

  const HostCache hkc(kcache), hvc(vcache);
  double max_err = 0.0, max_ref = 0.0;
  bool finite = true;
  std::vector<float> ref(static_cast<size_t>(G) * d);
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < H; ++h) {
      const size_t at = (static_cast<size_t>(b) * n_q_heads + h * G) * d;
      if (lens[b] == 0) {
        for (const auto& out : outs)
          for (int i = 0; i < G * d; ++i) finite = finite && out[at + i] == 0.0f;
        continue;
      }
      // CPU views of this head's pages: rows re-joined (main ++ tail), norms as the side plane.
      std::vector<std::vector<uint8_t>> kcodes, vcodes;
      std::vector<std::vector<uint16_t>> kside, vside;
      AttentionProblem prob;
      prob.k_codec = kc.per_head[h].get();
      prob.v_codec = vc.per_head[h].get();
      prob.gqa_group = static_cast<size_t>(G);
      prob.queries = q.data() + (static_cast<size_t>(b) * n_q_heads + h * G) * d;
      prob.scale = p.scale;
      prob.out = ref.data();
      for (int pg = 0; pg * page < lens[b]; ++pg) {
        const int n = std::min(page, lens[b] - pg * page);
        const int phys = pt.table[static_cast<size_t>(b) * pt.max_pages + pg];
        for (int role = 0; role < 2; ++role) {
          const HostCache& hc = role ? hvc : hkc;
          std::vector<uint8_t> c;
          std::vector<uint16_t> s;
          for (int o = 0; o < n; ++o) {
            const size_t row = hc.g.row(phys, h, o);
            const auto r = hc.cpu_row(row);
            c.insert(c.end(), r.begin(), r.end());
            s.push_back(hc.norms[row]);
          }
          (role ? vcodes : kcodes).push_back(std::move(c));
          (role ? vside : kside).push_back(std::move(s));
        }
      }
      for (size_t i = 0; i < kcodes.size(); ++i) {
        const size_t n = kside[i].size();
        prob.k_pages.push_back(PageSpan{kcodes[i].data(), reinterpret_cast<const uint8_t*>(kside[i].data()), n});
        prob.v_pages.push_back(PageSpan{vcodes[i].data(), reinterpret_cast<const uint8_t*>(vside[i].data()), n});
      }
      attend_reference(prob);
      for (const auto& out : outs) {
        const float* got = out.data() + at;
        for (int i = 0; i < G * d; ++i) {
          finite = finite && std::isfinite(got[i]);
          max_err = std::max(max_err, static_cast<double>(std::fabs(got[i] - ref[i])));
          max_ref = std::max(max_ref, static_cast<double>(std::fabs(ref[i])));
        }
      }
    }
  }
  const double rel = max_err / std::max(max_ref, 1e-30);
  char buf[512];
  const bool tc = tensor_core_decode(p);
  std::string lens_text;
  for (size_t i = 0; i < lens.size(); ++i) lens_text += (i ? "," : "") + std::to_string(lens[i]);
  const int block_warps = tc ? (p.plan.block_warps ? p.plan.block_warps : 12) : 0;  // as launched (0 means 12)
  const std::string grid = std::to_string(p.plan.max_splits) + " splits" +
                           (tc ? ", blocks of " + std::to_string(block_warps) : "");
  std::snprintf(buf, sizeof buf, "decode %-8s %s Hq=%d Hkv=%d %slens {%s} (%s): max |gpu-cpu| / max |ref| = %.2e, 2 calls %s%s",
                format.c_str(), tc ? "tensor-core" : "exact fp32 ", n_q_heads, H,
                page_size > 0 ? ("page " + std::to_string(page) + " ").c_str() : "", lens_text.c_str(), grid.c_str(), rel,
                identical ? "bit-identical" : "differ",
                tc ? (" (V table fp16(a C): max rel. error " + std::to_string(vc.host.mma_scale_error) + ")").c_str() : "");
  DecodeCheck res;
  res.tensor_cores = tc;
  res.repeat_identical = identical;
  res.block_warps = block_warps;
  res.rel_err = rel;
  res.finite = finite;
  res.text = buf;
  return res;
}


}  // namespace rq::cuda::harness
