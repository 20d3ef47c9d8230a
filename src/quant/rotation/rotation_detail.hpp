// Private helpers shared by the rotation implementations: seeded streams and parameter checks.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "rq/core/errors.hpp"
#include "rq/core/rng.hpp"
#include "rq/rotation/rotation.hpp"

namespace rq::rotation_detail {

/// One salt per rotation kind, so that two kinds built from the same RotationSeed never draw
/// from the same random stream.
enum class Salt : uint64_t {
  Rotor = 0x526f746f72ull,      // "Rotor"
  Planar = 0x506c616e6172ull,   // "Planar"
  IsoFast = 0x49736f46ull,      // "IsoF"
  IsoFull = 0x49736f55ull,      // "IsoU"
  Turbo = 0x547572626full,      // "Turbo"
  Hadamard = 0x48616461ull,     // "Hada"
  Dense = 0x44656e7365ull,      // "Dense"
};

/// The random stream of one block (or of the whole rotation: block 0) of one rotation kind:
/// Rng(mix_seed(mix_seed(seed, salt), layer, head, role, block)).
inline Rng stream(const RotationSeed& seed, Salt salt, uint64_t block) {
  const uint64_t kind_seed = mix_seed(seed.seed, static_cast<uint64_t>(salt));
  return Rng(mix_seed(kind_seed, seed.layer, seed.head, static_cast<uint64_t>(seed.role), block));
}

/// Throws InvalidArgument unless params.size() == expected.
inline void check_count(const char* kind, size_t dim, const std::vector<float>& params, size_t expected,
                        const char* layout) {
  if (params.size() != expected) {
    throw InvalidArgument(std::string("rotation '") + kind + "' with dim " + std::to_string(dim) + " needs " +
                          std::to_string(expected) + " parameters (" + layout + "), got " +
                          std::to_string(params.size()));
  }
}

/// Throws InvalidArgument if any parameter is NaN or infinite.
inline void check_finite(const char* kind, const std::vector<float>& params) {
  for (float v : params) {
    if (!std::isfinite(v)) throw InvalidArgument(std::string("rotation '") + kind + "': non-finite parameter");
  }
}

/// Normalizes v[k] to unit length in place. A vector already unit to float precision is kept
/// bit-exact, so parameters() -> rotation_from_parameters round-trips exactly. Throws
/// InvalidArgument for a zero vector.
inline void normalize_unit(float* v, size_t k, const char* kind) {
  double sq = 0.0;
  for (size_t i = 0; i < k; ++i) sq += static_cast<double>(v[i]) * v[i];
  const double n = std::sqrt(sq);
  if (!(n > 1e-30) || !std::isfinite(n)) {
    throw InvalidArgument(std::string("rotation '") + kind + "': a block parameter vector has zero norm");
  }
  if (std::fabs(n - 1.0) <= 1e-6) return;
  for (size_t i = 0; i < k; ++i) v[i] = static_cast<float>(v[i] / n);
}

/// Copies the i-th block of `width` coordinates from x (of which only `in_len` exist; the rest
/// reads as zero) into out[width].
inline void load_block(const float* x, size_t in_len, size_t block, size_t width, float* out) {
  const size_t base = block * width;
  for (size_t j = 0; j < width; ++j) out[j] = (base + j < in_len) ? x[base + j] : 0.0f;
}

/// Stores out[width] into the i-th block of y, keeping only coordinates below out_len.
inline void store_block(const float* v, size_t out_len, size_t block, size_t width, float* y) {
  const size_t base = block * width;
  for (size_t j = 0; j < width; ++j) {
    if (base + j < out_len) y[base + j] = v[j];
  }
}

}  // namespace rq::rotation_detail
