// The scalar reference codec for every format: encode, decode, and scoring/accumulation straight
// from codes (rotate the query once; accumulate values in the rotated domain, un-rotate once).
// Every fast path (SIMD, threads, CUDA) is tested against this class.
//
// Planes: n vectors encode to a codes plane (n x layout().code_bytes bytes) and a side plane
// (n x layout().side_bytes bytes, little-endian fp16 values). See docs/formats.md.
//
// Input policy: encode() throws rq::InvalidInput (and writes nothing) if any component is NaN or
// Inf, or if a stored fp16 value (norm, scale, f16 component) would overflow 65504. Zero vectors
// encode to norm 0 and decode to zeros.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "rq/codebook/lloyd_max.hpp"
#include "rq/format/format.hpp"
#include "rq/rotation/rotation.hpp"

namespace rq {

/// Owned planes of `count` encoded vectors (the checked, allocation-owning API).
struct EncodedPlanes {
  size_t count = 0;
  std::vector<uint8_t> codes;  // count x code_bytes
  std::vector<uint8_t> side;   // count x side_bytes
};

/// A query prepared once for scoring many codes.
struct PreparedQuery {
  std::vector<float> rotated;    // n: Pi * pad(q)
  std::vector<float> projected;  // m: S * Pi * pad(q), QJL formats only
};

class Codec {
 public:
  /// Throws rq::InvalidArgument for impossible (format, dim) pairs.
  Codec(const FormatSpec& format, size_t dim, const RotationSeed& seed = {});
  /// Same, with a rotation supplied by the caller (e.g. calibrated); its dim must match.
  Codec(const FormatSpec& format, std::unique_ptr<Rotation> rotation, const RotationSeed& seed = {});
  ~Codec();
  Codec(Codec&&) noexcept;
  Codec& operator=(Codec&&) noexcept;

  const FormatSpec& format() const noexcept { return *format_; }
  const FormatLayout& layout() const noexcept { return layout_; }
  size_t dim() const noexcept { return layout_.dim; }
  const Rotation& rotation() const noexcept { return *rotation_; }
  /// The Lloyd-Max codebook (LloydMax scheme only; nullptr otherwise).
  const Codebook* codebook() const noexcept { return codebook_; }
  /// Centroids as floats (LloydMax only), in rotated-unit-vector units.
  const std::vector<float>& centroids() const noexcept { return centroids_; }
  /// QJL matrix S, m x n row-major (QJL formats only).
  const std::vector<float>& qjl_matrix() const noexcept { return qjl_matrix_; }

  /// x: n x d floats -> codes: n x code_bytes, side: n x side_bytes.
  void encode(size_t n, const float* x, uint8_t* codes, uint8_t* side) const;
  /// codes, side -> x: n x d floats.
  void decode(size_t n, const uint8_t* codes, const uint8_t* side, float* x) const;

  /// Checked variants: sizes are validated (rq::InvalidArgument on mismatch).
  /// x.size() must be a multiple of d.
  EncodedPlanes encode(const std::vector<float>& x) const;
  /// Returns count x d floats.
  std::vector<float> decode(const EncodedPlanes& planes) const;
  /// q.size() must be d; returns one score per encoded vector.
  std::vector<float> score(const std::vector<float>& q, const EncodedPlanes& planes) const;

  /// q: d floats.
  PreparedQuery prepare_query(const float* q) const;
  /// scores[i] = <q, decode(code i)> for n codes.
  void score(const PreparedQuery& query, size_t n, const uint8_t* codes, const uint8_t* side, float* scores) const;

  /// Floats in the rotated-domain accumulator: n (+ m for QJL formats).
  size_t accumulator_dim() const noexcept;
  /// acc[accumulator_dim()] += sum_i weights[i] * (code i in the rotated domain).
  void accumulate_rotated(size_t n, const float* weights, const uint8_t* codes, const uint8_t* side, float* acc) const;
  /// out[d] = un-rotate(acc): apply Pi^T (and S^T for the QJL part) once.
  void finish_accumulate(const float* acc, float* out) const;
  /// out[d] = sum_i weights[i] * decode(code i), computed in the rotated domain.
  void accumulate(size_t n, const float* weights, const uint8_t* codes, const uint8_t* side, float* out) const;

  /// Rotated-domain reconstruction of one vector: out[n] (+ m QJL coefficients), the thing
  /// accumulate_rotated sums. Exposed for fast-path tests.
  void decode_rotated(const uint8_t* code, const uint8_t* side, float* out) const;

 private:
  void check_finite(size_t n, const float* x) const;
  void check_planes(const EncodedPlanes& planes) const;
  void encode_one(const float* x, uint8_t* code, uint8_t* side, float* scratch) const;

  const FormatSpec* format_;
  FormatLayout layout_;
  std::unique_ptr<Rotation> rotation_;
  const Codebook* codebook_ = nullptr;
  std::vector<float> centroids_;
  std::vector<float> thresholds_;
  std::vector<float> qjl_matrix_;  // m x n
};

}  // namespace rq
