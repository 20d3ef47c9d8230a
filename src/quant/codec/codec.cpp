// The scalar reference codec (docs/formats.md). Written for clarity first, with no per-vector
// allocation so that it is also a usable encoder; SIMD/CUDA fast paths are tested against it.
#include "rq/codec/codec.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "rq/core/errors.hpp"
#include "rq/core/half.hpp"
#include "rq/core/rng.hpp"
#include "rq/pack/bitpack.hpp"

namespace rq {
namespace {

constexpr uint64_t kQjlSalt = 0x514a4c5f534b4554ull;  // "QJL_SKET"
constexpr size_t kInt4Block = 32;
constexpr double kSqrtHalfPi = 1.2533141373155002512;  // sqrt(pi / 2)

void store_half(uint8_t* side, size_t i, float v) {
  const uint16_t h = float_to_half(v);
  side[2 * i] = static_cast<uint8_t>(h & 0xff);
  side[2 * i + 1] = static_cast<uint8_t>(h >> 8);
}

float load_half(const uint8_t* side, size_t i) {
  return half_to_float(static_cast<uint16_t>(side[2 * i] | (side[2 * i + 1] << 8)));
}

// Sum of squares in double with four independent accumulators (no serial add chain).
double sum_of_squares(const float* x, size_t n) {
  double a[4] = {0, 0, 0, 0};
  size_t j = 0;
  for (; j + 4 <= n; j += 4) {
    for (size_t l = 0; l < 4; ++l) a[l] += static_cast<double>(x[j + l]) * x[j + l];
  }
  for (; j < n; ++j) a[0] += static_cast<double>(x[j]) * x[j];
  return (a[0] + a[1]) + (a[2] + a[3]);
}

// sum_j table[idx_j]^2 with four independent accumulators.
double sum_of_squares_lookup(const uint8_t* idx, size_t n, const float* table) {
  double a[4] = {0, 0, 0, 0};
  size_t j = 0;
  for (; j + 4 <= n; j += 4) {
    for (size_t l = 0; l < 4; ++l) a[l] += static_cast<double>(table[idx[j + l]]) * table[idx[j + l]];
  }
  for (; j < n; ++j) a[0] += static_cast<double>(table[idx[j]]) * table[idx[j]];
  return (a[0] + a[1]) + (a[2] + a[3]);
}

// Compiled for AVX2 and for the baseline, picked at load time (GCC/Clang function multiversioning):
// the comparisons are exact, so every clone gives identical codes.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define RQ_TARGET_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RQ_TARGET_CLONES
#endif

// idx[j] = number of thresholds <= y[j] (thresholds sorted: the nearest centroid, ties upward).
RQ_TARGET_CLONES void quantize_levels(const float* y, size_t n, const float* thresholds, size_t n_thresholds, uint8_t* idx) {
  size_t j0 = 0;
#if defined(__GNUC__)
  // Portable GCC/Clang vector extensions, 16-byte vectors (native on SSE2 and NEON): 8 coordinates
  // against one threshold per step, counts kept in registers (a true comparison lane is -1).
  typedef float f32x4 __attribute__((vector_size(16)));
  typedef int32_t i32x4 __attribute__((vector_size(16)));
  for (; j0 + 8 <= n; j0 += 8) {
    f32x4 v0, v1;
    std::memcpy(&v0, y + j0, sizeof v0);
    std::memcpy(&v1, y + j0 + 4, sizeof v1);
    i32x4 c0 = {0, 0, 0, 0}, c1 = {0, 0, 0, 0};
    for (size_t t = 0; t < n_thresholds; ++t) {
      const float th = thresholds[t];
      const f32x4 tv = {th, th, th, th};
      c0 -= (v0 >= tv);
      c1 -= (v1 >= tv);
    }
    for (int l = 0; l < 4; ++l) {
      idx[j0 + l] = static_cast<uint8_t>(c0[l]);
      idx[j0 + 4 + l] = static_cast<uint8_t>(c1[l]);
    }
  }
#endif
  for (; j0 < n; ++j0) {
    uint32_t c = 0;
    for (size_t t = 0; t < n_thresholds; ++t) c += y[j0] >= thresholds[t] ? 1u : 0u;
    idx[j0] = static_cast<uint8_t>(c);
  }
}

std::string where(const FormatSpec& f, size_t dim) {
  return "format " + std::string(f.name) + " (d=" + std::to_string(dim) + ")";
}

// The codebook dimension: Hadamard mixes spread a vector over all n padded coordinates.
size_t codebook_dim(const FormatSpec& f, const FormatLayout& l) {
  const bool spreads = f.rotation == RotationKind::Turbo || f.rotation == RotationKind::Hadamard;
  return std::max<size_t>(2, spreads ? l.rotated_dim : l.dim);
}

}  // namespace

Codec::Codec(const FormatSpec& format, size_t dim, const RotationSeed& seed)
    : Codec(format, make_rotation(format.rotation, dim, seed), seed) {}

Codec::Codec(const FormatSpec& format, std::unique_ptr<Rotation> rotation, const RotationSeed& seed)
    : format_(&format), rotation_(std::move(rotation)) {
  if (!rotation_) throw InvalidArgument("codec for " + std::string(format.name) + ": null rotation");
  if (rotation_->kind() != format.rotation) {
    throw InvalidArgument("codec for " + std::string(format.name) + ": rotation kind " +
                          rotation_name(rotation_->kind()) + " does not match the format's " +
                          rotation_name(format.rotation));
  }
  layout_ = format_layout(format, rotation_->dim());
  if (layout_.rotated_dim != rotation_->rotated_dim()) {
    throw InvalidArgument(where(format, dim()) + ": rotation has " + std::to_string(rotation_->rotated_dim()) +
                          " coordinates, layout expects " + std::to_string(layout_.rotated_dim));
  }
  if (format.scheme == Scheme::LloydMax) {
    codebook_ = &lloyd_max_codebook(layout_.code_bits, codebook_dim(format, layout_), format.density);
    centroids_.assign(codebook_->centroids.begin(), codebook_->centroids.end());
    thresholds_.assign(codebook_->thresholds.begin(), codebook_->thresholds.end());
  }
  if (format.qjl) {
    const size_t m = layout_.dim, n = layout_.rotated_dim;
    Rng rng(mix_seed(seed.seed ^ kQjlSalt, seed.layer, seed.head, static_cast<uint64_t>(seed.role)));
    qjl_matrix_.resize(m * n);
    for (auto& s : qjl_matrix_) s = static_cast<float>(rng.normal());
  }
}

Codec::~Codec() = default;
Codec::Codec(Codec&&) noexcept = default;
Codec& Codec::operator=(Codec&&) noexcept = default;

size_t Codec::accumulator_dim() const noexcept { return layout_.rotated_dim + (format_->qjl ? layout_.dim : 0); }

void Codec::check_finite(size_t n, const float* x) const {
  const size_t d = dim();
  uint32_t any_bad = 0;  // exponent all ones <=> NaN or Inf; checked without branches first
  for (size_t i = 0; i < n * d; ++i) any_bad |= ((float_bits(x[i]) & 0x7f800000u) == 0x7f800000u) ? 1u : 0u;
  if (!any_bad) return;
  for (size_t i = 0; i < n * d; ++i) {
    if (!std::isfinite(x[i])) {
      throw InvalidInput(where(*format_, d) + ": vector " + std::to_string(i / d) + " component " +
                         std::to_string(i % d) + " is " + (std::isnan(x[i]) ? "NaN" : "Inf") +
                         "; NaN/Inf inputs are rejected");
    }
  }
}

void Codec::encode(size_t n, const float* x, uint8_t* codes, uint8_t* side) const {
  if (n == 0) return;
  if (!x || !codes || (layout_.side_bytes && !side)) throw InvalidArgument(where(*format_, dim()) + ": encode got a null buffer");
  check_finite(n, x);
  // Encode into scratch planes first: an error on vector i must leave the caller's planes untouched.
  std::vector<uint8_t> code_tmp(n * layout_.code_bytes), side_tmp(n * layout_.side_bytes);
  std::vector<float> scratch(3 * layout_.rotated_dim + 8);  // see encode_one
  for (size_t i = 0; i < n; ++i) {
    try {
      encode_one(x + i * dim(), code_tmp.data() + i * layout_.code_bytes, side_tmp.data() + i * layout_.side_bytes,
                 scratch.data());
    } catch (const InvalidInput& e) {
      throw InvalidInput(std::string(e.what()) + " (vector " + std::to_string(i) + ")");
    }
  }
  std::memcpy(codes, code_tmp.data(), code_tmp.size());
  if (!side_tmp.empty()) std::memcpy(side, side_tmp.data(), side_tmp.size());
}

void Codec::encode_one(const float* x, uint8_t* code, uint8_t* side, float* scratch) const {
  const size_t d = dim(), n = layout_.rotated_dim;
  float* y = scratch;           // n: rotated coordinates
  float* u = scratch + n;       // d (room for n): normalized input, then n code counters
  uint8_t* idx = reinterpret_cast<uint8_t*>(scratch + 2 * n);  // n one-byte codes
  const auto half_overflow = [&](float v, const char* what) {
    if (!(std::fabs(v) <= kHalfMax)) {
      throw InvalidInput(where(*format_, d) + ": " + what + " " + std::to_string(v) +
                         " exceeds the fp16 range (65504)");
    }
  };
  switch (format_->scheme) {
    case Scheme::F32:
      rotation_->apply(x, y);
      std::memcpy(code, y, 4 * n);
      return;
    case Scheme::F16:
      rotation_->apply(x, y);
      for (size_t j = 0; j < n; ++j) {
        half_overflow(y[j], "component");
        store_half(code, j, y[j]);
      }
      return;
    case Scheme::Int8: {
      rotation_->apply(x, y);
      float amax = 0.0f;
      for (size_t j = 0; j < n; ++j) amax = std::max(amax, std::fabs(y[j]));
      const float scale = amax / 127.0f;
      half_overflow(scale, "scale");
      const float s = round_to_half(scale);
      store_half(side, 0, s);
      for (size_t j = 0; j < n; ++j) {
        const float q = s > 0.0f ? std::clamp(std::round(y[j] / s), -127.0f, 127.0f) : 0.0f;
        code[j] = static_cast<uint8_t>(static_cast<int8_t>(q));
      }
      return;
    }
    case Scheme::Int4: {
      rotation_->apply(x, y);
      for (size_t b0 = 0, blk = 0; b0 < n; b0 += kInt4Block, ++blk) {
        const size_t b1 = std::min(n, b0 + kInt4Block);
        float amax = 0.0f;
        for (size_t j = b0; j < b1; ++j) amax = std::max(amax, std::fabs(y[j]));
        const float scale = amax / 7.0f;
        half_overflow(scale, "scale");
        const float s = round_to_half(scale);
        store_half(side, blk, s);
        for (size_t j = b0; j < b1; ++j) {
          const float q = s > 0.0f ? std::clamp(std::round(y[j] / s), -7.0f, 7.0f) : 0.0f;
          idx[j] = static_cast<uint8_t>(static_cast<int>(q) + 8);
        }
      }
      pack_codes(idx, n, 4, code);
      return;
    }
    case Scheme::LloydMax:
      break;
  }
  // Lloyd-Max: norm, normalize, rotate, quantize, pack.
  const float norm = static_cast<float>(std::sqrt(sum_of_squares(x, d)));
  const int bits = layout_.code_bits;
  const size_t levels_minus_1 = thresholds_.size();  // 2^bits - 1
  if (norm == 0.0f) {
    // Zero vector: codes of 0, stored norm 0 (and gamma 0, signs +1).
    const uint8_t zero_code = static_cast<uint8_t>(quantize_scalar(*codebook_, 0.0));
    for (size_t j = 0; j < n; ++j) idx[j] = zero_code;
    pack_codes(idx, n, bits, code);
    store_half(side, 0, 0.0f);
    if (format_->qjl) {
      std::memset(code + layout_.payload_bytes, 0xff, layout_.qjl_bytes);
      if (d % 8) code[layout_.code_bytes - 1] = static_cast<uint8_t>((1u << (d % 8)) - 1u);
      store_half(side, 1, 0.0f);
    }
    return;
  }
  const float inv = 1.0f / norm;
  for (size_t j = 0; j < d; ++j) u[j] = x[j] * inv;
  rotation_->apply(u, y);
  // Nearest centroid = number of thresholds <= y_j (thresholds sorted, ties go up). Counted one
  // threshold at a time over all coordinates, a loop the compiler vectorizes.
  quantize_levels(y, n, thresholds_.data(), levels_minus_1, idx);
  const double cnorm_sq = format_->norm_correction ? sum_of_squares_lookup(idx, n, centroids_.data()) : 0.0;
  pack_codes(idx, n, bits, code);
  if (!format_->qjl) {
    float stored = norm;
    if (format_->norm_correction && cnorm_sq > 0.0) stored = static_cast<float>(norm / std::sqrt(cnorm_sq));
    half_overflow(stored, "norm");
    store_half(side, 0, stored);
    return;
  }
  // QJL residual in the rotated domain: r = norm * y - norm_h * C[idx].
  half_overflow(norm, "norm");
  const float norm_h = round_to_half(norm);
  float* r = y;  // reuse: r_j overwrites y_j
  double gamma_sq = 0.0;
  for (size_t j = 0; j < n; ++j) {
    r[j] = norm * y[j] - norm_h * centroids_[idx[j]];
    gamma_sq += static_cast<double>(r[j]) * r[j];
  }
  uint8_t* signs = code + layout_.payload_bytes;
  std::memset(signs, 0, layout_.qjl_bytes);
  for (size_t i = 0; i < d; ++i) {
    const float* s_row = qjl_matrix_.data() + i * n;
    float dot = 0.0f;
    for (size_t j = 0; j < n; ++j) dot += s_row[j] * r[j];
    if (dot >= 0.0f) signs[i >> 3] = static_cast<uint8_t>(signs[i >> 3] | (1u << (i & 7)));
  }
  const float gamma = static_cast<float>(std::sqrt(gamma_sq));
  half_overflow(gamma, "residual norm");
  store_half(side, 0, norm_h);
  store_half(side, 1, gamma);
}

void Codec::decode_rotated(const uint8_t* code, const uint8_t* side, float* out) const {
  const size_t n = layout_.rotated_dim;
  switch (format_->scheme) {
    case Scheme::F32:
      std::memcpy(out, code, 4 * n);
      return;
    case Scheme::F16:
      for (size_t j = 0; j < n; ++j) out[j] = load_half(code, j);
      return;
    case Scheme::Int8: {
      const float s = load_half(side, 0);
      for (size_t j = 0; j < n; ++j) out[j] = static_cast<float>(static_cast<int8_t>(code[j])) * s;
      return;
    }
    case Scheme::Int4:
      for (size_t j = 0; j < n; ++j) {
        const float s = load_half(side, j / kInt4Block);
        out[j] = static_cast<float>(static_cast<int>(unpack_code(code, j, 4)) - 8) * s;
      }
      return;
    case Scheme::LloydMax: {
      const float norm = load_half(side, 0);
      const int bits = layout_.code_bits;
      for (size_t j = 0; j < n; ++j) out[j] = norm * centroids_[unpack_code(code, j, bits)];
      if (format_->qjl) {
        const size_t m = layout_.dim;
        const float coef = load_half(side, 1) * static_cast<float>(kSqrtHalfPi / static_cast<double>(m));
        const uint8_t* signs = code + layout_.payload_bytes;
        for (size_t i = 0; i < m; ++i) out[n + i] = coef * unpack_sign(signs, i);
      }
      return;
    }
  }
}

void Codec::finish_accumulate(const float* acc, float* out) const {
  const size_t n = layout_.rotated_dim;
  if (!format_->qjl) {
    rotation_->apply_inverse(acc, out);
    return;
  }
  // y = acc[0:n] + S^T acc[n:n+m]
  std::vector<float> y(acc, acc + n);
  const size_t m = layout_.dim;
  for (size_t i = 0; i < m; ++i) {
    const float a = acc[n + i];
    const float* s_row = qjl_matrix_.data() + i * n;
    for (size_t j = 0; j < n; ++j) y[j] += a * s_row[j];
  }
  rotation_->apply_inverse(y.data(), out);
}

void Codec::decode(size_t n, const uint8_t* codes, const uint8_t* side, float* x) const {
  if (n == 0) return;
  if (!codes || !x || (layout_.side_bytes && !side)) throw InvalidArgument(where(*format_, dim()) + ": decode got a null buffer");
  std::vector<float> rot(accumulator_dim());
  for (size_t i = 0; i < n; ++i) {
    decode_rotated(codes + i * layout_.code_bytes, side + i * layout_.side_bytes, rot.data());
    finish_accumulate(rot.data(), x + i * dim());
  }
}

PreparedQuery Codec::prepare_query(const float* q) const {
  if (!q) throw InvalidArgument(where(*format_, dim()) + ": prepare_query got a null query");
  PreparedQuery p;
  p.rotated.resize(layout_.rotated_dim);
  rotation_->apply(q, p.rotated.data());
  if (format_->qjl) {
    const size_t m = layout_.dim, n = layout_.rotated_dim;
    p.projected.assign(m, 0.0f);
    for (size_t i = 0; i < m; ++i) {
      const float* s_row = qjl_matrix_.data() + i * n;
      float dot = 0.0f;
      for (size_t j = 0; j < n; ++j) dot += s_row[j] * p.rotated[j];
      p.projected[i] = dot;
    }
  }
  return p;
}

void Codec::score(const PreparedQuery& query, size_t n, const uint8_t* codes, const uint8_t* side, float* scores) const {
  if (n == 0) return;
  if (!codes || !scores || (layout_.side_bytes && !side)) throw InvalidArgument(where(*format_, dim()) + ": score got a null buffer");
  if (query.rotated.size() != layout_.rotated_dim || query.projected.size() != (format_->qjl ? layout_.dim : 0)) {
    throw InvalidArgument(where(*format_, dim()) + ": query was prepared by a different codec");
  }
  const size_t nd = layout_.rotated_dim;
  const float* qr = query.rotated.data();
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* code = codes + i * layout_.code_bytes;
    const uint8_t* sd = side + i * layout_.side_bytes;
    float s = 0.0f;
    if (format_->scheme == Scheme::LloydMax) {
      // Scale once: nu * sum_j q'_j C[idx_j].
      const int bits = layout_.code_bits;
      for (size_t j = 0; j < nd; ++j) s += qr[j] * centroids_[unpack_code(code, j, bits)];
      s *= load_half(sd, 0);
      if (format_->qjl) {
        const size_t m = layout_.dim;
        const uint8_t* signs = code + layout_.payload_bytes;
        float t = 0.0f;
        for (size_t k = 0; k < m; ++k) t += query.projected[k] * unpack_sign(signs, k);
        s += load_half(sd, 1) * static_cast<float>(kSqrtHalfPi / static_cast<double>(m)) * t;
      }
    } else {
      thread_local std::vector<float> rot;
      rot.resize(nd);
      decode_rotated(code, sd, rot.data());
      for (size_t j = 0; j < nd; ++j) s += qr[j] * rot[j];
    }
    scores[i] = s;
  }
}

void Codec::accumulate_rotated(size_t n, const float* weights, const uint8_t* codes, const uint8_t* side,
                               float* acc) const {
  if (n == 0) return;
  if (!weights || !codes || !acc || (layout_.side_bytes && !side)) {
    throw InvalidArgument(where(*format_, dim()) + ": accumulate got a null buffer");
  }
  std::vector<float> rot(accumulator_dim());
  for (size_t i = 0; i < n; ++i) {
    decode_rotated(codes + i * layout_.code_bytes, side + i * layout_.side_bytes, rot.data());
    const float w = weights[i];
    for (size_t j = 0; j < rot.size(); ++j) acc[j] += w * rot[j];
  }
}

void Codec::accumulate(size_t n, const float* weights, const uint8_t* codes, const uint8_t* side, float* out) const {
  if (!out) throw InvalidArgument(where(*format_, dim()) + ": accumulate got a null output");
  std::vector<float> acc(accumulator_dim(), 0.0f);
  accumulate_rotated(n, weights, codes, side, acc.data());
  finish_accumulate(acc.data(), out);
}

void Codec::check_planes(const EncodedPlanes& planes) const {
  if (planes.codes.size() != planes.count * layout_.code_bytes || planes.side.size() != planes.count * layout_.side_bytes) {
    throw InvalidArgument(where(*format_, dim()) + ": planes hold " + std::to_string(planes.codes.size()) + " code bytes and " +
                          std::to_string(planes.side.size()) + " side bytes, expected " +
                          std::to_string(planes.count * layout_.code_bytes) + " and " +
                          std::to_string(planes.count * layout_.side_bytes) + " for " + std::to_string(planes.count) +
                          " vectors");
  }
}

EncodedPlanes Codec::encode(const std::vector<float>& x) const {
  if (x.size() % dim() != 0) {
    throw InvalidArgument(where(*format_, dim()) + ": input holds " + std::to_string(x.size()) +
                          " floats, not a multiple of the dimension");
  }
  EncodedPlanes planes;
  planes.count = x.size() / dim();
  planes.codes.resize(planes.count * layout_.code_bytes);
  planes.side.resize(planes.count * layout_.side_bytes);
  encode(planes.count, x.data(), planes.codes.data(), planes.side.data());
  return planes;
}

std::vector<float> Codec::decode(const EncodedPlanes& planes) const {
  check_planes(planes);
  std::vector<float> x(planes.count * dim());
  decode(planes.count, planes.codes.data(), planes.side.data(), x.data());
  return x;
}

std::vector<float> Codec::score(const std::vector<float>& q, const EncodedPlanes& planes) const {
  check_planes(planes);
  if (q.size() != dim()) {
    throw InvalidArgument(where(*format_, dim()) + ": query holds " + std::to_string(q.size()) + " floats");
  }
  std::vector<float> scores(planes.count);
  score(prepare_query(q.data()), planes.count, planes.codes.data(), planes.side.data(), scores.data());
  return scores;
}

}  // namespace rq
