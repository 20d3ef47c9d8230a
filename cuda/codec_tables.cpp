// Host side of device_codec.hpp: reads a reference codec's rotation, centroids and thresholds.
#include <algorithm>
#include <cmath>
#include <string>

#include "rq/codec/codec.hpp"
#include "rq/core/errors.hpp"
#include "rq/cuda/device_codec.hpp"
#include "rq/rotation/block_rotations.hpp"

namespace rq::cuda {
namespace {

// The append kernel's quantizer (cuda/append_quantize.cuh) needs a codebook symmetric about 0 in
// float: t[half - 1] = 0, t[i] = -t[levels - 2 - i], C[k] = -C[levels - 1 - k]. Lloyd-Max solves
// symmetrize theirs, so this holds for every format; checked rather than assumed.
bool symmetric_codebook(const Codec& codec) {
  const std::vector<float>& c = codec.centroids();
  const size_t levels = c.size();
  if (levels < 2 || codec.codebook()->thresholds.size() != levels - 1) return false;
  std::vector<float> t;
  for (double v : codec.codebook()->thresholds) t.push_back(static_cast<float>(v));
  for (size_t k = 0; k < levels; ++k) {
    if (c[k] != -c[levels - 1 - k]) return false;
  }
  for (size_t i = 0; i + 1 < levels; ++i) {
    if (t[i] != -t[levels - 2 - i]) return false;
  }
  return t[levels / 2 - 1] == 0.0f;
}

// The fast append kernels quantize 2 and 3 bits through the odd polynomial g(u) = sum_i a_i u^(2i+1)
// with g(t[half + i]) = i + 1 (cuda/append_fast_kernel.cuh, PolyQuantizer): code = floor(half + g(u)).
// Its coefficients a_0 .. a_{half-2}, solved in double (Gauss-Jordan) from the float thresholds the
// kernels see; empty above 3 bits. Solved here once, not by each block of the kernels (session 18:
// the solve on a block's path cost 0.3-0.7 us of a 16K append).
std::vector<double> code_polynomial(const Codec& codec) {
  const std::vector<double>& all = codec.codebook()->thresholds;
  const size_t half = (all.size() + 1) / 2, positive = half - 1;
  if (codec.format().bits > 3 || positive == 0) return {};
  std::vector<std::vector<double>> m(positive, std::vector<double>(positive + 1));
  for (size_t i = 0; i < positive; ++i) {
    const double t = static_cast<float>(all[half + i]);
    double p = t;
    for (size_t j = 0; j < positive; ++j) m[i][j] = p, p *= t * t;
    m[i][positive] = static_cast<double>(i + 1);
  }
  for (size_t c = 0; c < positive; ++c) {
    for (size_t i = 0; i < positive; ++i) {
      if (i == c) continue;
      const double f = m[i][c] / m[c][c];
      for (size_t j = 0; j <= positive; ++j) m[i][j] -= f * m[c][j];
    }
  }
  std::vector<double> a(positive);
  for (size_t i = 0; i < positive; ++i) a[i] = m[i][positive] / m[i][i];
  return a;
}

// code = floor(half + g(u)) is the codebook's code only if g increases on [0, 1] (a unit vector's
// coordinates); true for the Lloyd-Max codebooks (3 bits: g'(u) >= 0.3 a_0), checked rather than
// assumed.
bool increasing_code_polynomial(const Codec& codec) {
  const std::vector<double> a = code_polynomial(codec);
  constexpr int kSteps = 4096;
  for (int s = 0; !a.empty() && s <= kSteps; ++s) {
    const double u = static_cast<double>(s) / kSteps;
    double slope = 0.0, power = 1.0;  // g'(u) = sum_i (2i + 1) a_i u^(2i)
    for (size_t i = 0; i < a.size(); ++i) slope += (2.0 * i + 1.0) * a[i] * power, power *= u * u;
    if (!(slope > 0.0)) return false;
  }
  return true;
}

// Relative error of rounding x > 0 to fp16 (normal range).
double fp16_relative_error(double x) {
  int e = 0;
  const double m = std::frexp(x, &e) * 2048.0;  // x = m * 2^(e - 11), m in [1024, 2048): 11 bits
  return std::fabs(m - std::nearbyint(m)) / m;
}

// The factor a in [1, 2) (a power of two does not change fp16 rounding) for which the largest
// relative fp16 rounding error of a * C[k] over the codebook is smallest, on a 2^-18 grid.
// Symmetric codebooks need only the non-negative centroids.
float fp16_friendly_scale(const std::vector<float>& centroids, double& best_error) {
  std::vector<double> mags;
  for (float c : centroids) {
    if (c > 0.0f) mags.push_back(c);
  }
  float best = 1.0f;
  best_error = 1.0;
  constexpr int kSteps = 1 << 18;
  for (int i = 0; i < kSteps; ++i) {
    const float a = 1.0f + static_cast<float>(i) / kSteps;  // exact in float
    double worst = 0.0;
    for (double c : mags) {
      worst = std::max(worst, fp16_relative_error(static_cast<double>(static_cast<float>(a * static_cast<float>(c)))));
      if (worst >= best_error) break;
    }
    if (worst < best_error) best_error = worst, best = a;
  }
  return best;
}

// Why `codec` cannot run on the GPU kernels, or an empty string.
std::string unsupported_reason(const Codec& codec) {
  const FormatSpec& f = codec.format();
  if (f.scheme != Scheme::LloydMax) return "only Lloyd-Max formats run on the GPU";
  if (f.qjl) return "QJL formats do not run on the GPU";
  if (f.bits < 2 || f.bits > 4) return "the GPU kernels take 2, 3 or 4 bits";
  if (codec.dim() != 128) return "the GPU kernels are built for head_dim 128";
  switch (f.rotation) {
    case RotationKind::Rotor:
    case RotationKind::Planar:
    case RotationKind::IsoFast:
    case RotationKind::IsoFull:
    case RotationKind::Turbo:
      if (!symmetric_codebook(codec)) return "the GPU kernels need a codebook symmetric about 0";
      return increasing_code_polynomial(codec) ? std::string()
                                               : "the fast GPU quantizer needs an increasing odd polynomial through the thresholds";
    default:
      return std::string("rotation '") + rotation_name(f.rotation) + "' does not run on the GPU";
  }
}

// Appends one head's rotation parameters in the kernels' layout; returns its family.
RotationFamily append_rotation(const Rotation& r, std::vector<float>& out) {
  if (const auto* rotor = dynamic_cast<const RotorRotation*>(&r)) {
    out.insert(out.end(), rotor->matrices().begin(), rotor->matrices().end());
    return RotationFamily::Block3;
  }
  if (const auto* iso = dynamic_cast<const IsoRotation*>(&r)) {
    out.insert(out.end(), iso->matrices().begin(), iso->matrices().end());
    return RotationFamily::Block4;
  }
  if (const auto* planar = dynamic_cast<const PlanarRotation*>(&r)) {
    const auto& cs = planar->cos_sin();
    for (size_t p = 0; p + 1 < cs.size(); p += 2) {
      const float c = cs[p], s = cs[p + 1];
      out.insert(out.end(), {c, -s, s, c});  // y0 = c x0 - s x1, y1 = s x0 + c x1
    }
    return RotationFamily::Block2;
  }
  if (const auto* had = dynamic_cast<const HadamardRotation*>(&r)) {
    out.insert(out.end(), had->signs1().begin(), had->signs1().end());
    out.insert(out.end(), had->signs2().begin(), had->signs2().end());
    return RotationFamily::Hadamard;
  }
  throw InvalidArgument(std::string("GPU codec tables: rotation '") + rotation_name(r.kind()) + "' is not supported");
}

}  // namespace

bool gpu_supports(const Codec& codec) { return unsupported_reason(codec).empty(); }

HostCodecTables make_codec_tables(const std::vector<const Codec*>& per_head) {
  if (per_head.empty() || !per_head[0]) throw InvalidArgument("GPU codec tables: no codecs given");
  const Codec& first = *per_head[0];
  const std::string why = unsupported_reason(first);
  if (!why.empty()) throw InvalidArgument("GPU codec tables for " + std::string(first.format().name) + ": " + why);
  HostCodecTables t;
  const FormatLayout& l = first.layout();
  t.info.dim = static_cast<int32_t>(l.dim);
  t.info.rotated_dim = static_cast<int32_t>(l.rotated_dim);
  t.info.bits = l.code_bits;
  t.info.payload_bytes = static_cast<int32_t>(l.payload_bytes);
  t.info.norm_correction = first.format().norm_correction ? 1 : 0;
  t.info.zero_code = static_cast<int32_t>(quantize_scalar(*first.codebook(), 0.0));
  t.centroids = first.centroids();
  for (double v : first.codebook()->thresholds) t.thresholds.push_back(static_cast<float>(v));
  const double levels = static_cast<double>(t.centroids.size());
  for (double a : code_polynomial(first)) t.code_polynomial.push_back(static_cast<float>(a / levels));
  t.info.mma_scale = fp16_friendly_scale(t.centroids, t.mma_scale_error);
  for (size_t h = 0; h < per_head.size(); ++h) {
    const Codec* c = per_head[h];
    if (!c || c->format().name != first.format().name || c->dim() != first.dim()) {
      throw InvalidArgument("GPU codec tables: head " + std::to_string(h) + " has a different format or dim");
    }
    const size_t before = t.rotation.size();
    t.info.family = append_rotation(c->rotation(), t.rotation);
    const auto stride = static_cast<int32_t>(t.rotation.size() - before);
    if (h > 0 && stride != t.info.rotation_stride) throw InvalidArgument("GPU codec tables: rotation sizes differ");
    t.info.rotation_stride = stride;
  }
  return t;
}

}  // namespace rq::cuda
