// Append one token's K and V vectors for all heads: normalize, rotate, quantize, pack. The
// Lloyd-Max path is a lean re-implementation of Codec::encode's arithmetic, operation for
// operation (double norm, float normalize, the codec's own rotation, threshold counts, double
// corrected norm), so the bytes are identical; it avoids the reference's per-call allocations and
// packs 8 codes (b bytes) at a time. Other schemes (f16, q8, q4, QJL) call Codec::encode.
// Everything is encoded into scratch first: on an error nothing is written.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "rq/attention/attention_fast.hpp"
#include "rq/core/errors.hpp"
#include "rq/core/half.hpp"
#include "rq/pack/bitpack.hpp"

namespace rq {
namespace {

// Pack n codes of `bits` bits: whole groups of 8 codes are exactly `bits` bytes.
void pack_fast(const uint8_t* idx, size_t n, int bits, uint8_t* row) {
  const size_t groups = n / 8;
  for (size_t g = 0; g < groups; ++g) {
    uint64_t word = 0;
    for (int i = 0; i < 8; ++i) word |= static_cast<uint64_t>(idx[8 * g + i]) << (i * bits);
    for (int b = 0; b < bits; ++b) row[g * bits + b] = static_cast<uint8_t>(word >> (8 * b));
  }
  if (groups * 8 < n) {
    const size_t done = groups * static_cast<size_t>(bits);
    pack_codes(idx + 8 * groups, n - 8 * groups, bits, row + done);  // starts on a byte boundary
  }
}

// Lloyd-Max (no QJL) encode of one vector; mirrors Codec::encode_one. scratch: >= 2n + d floats.
void encode_lloyd(const Codec& codec, const float* x, uint8_t* code, uint8_t* side, std::vector<float>& scratch,
                  std::vector<uint8_t>& idx) {
  const FormatLayout& l = codec.layout();
  const size_t d = l.dim, n = l.rotated_dim;
  const std::vector<float>& centroids = codec.centroids();
  const std::vector<double>& thr = codec.codebook()->thresholds;
  scratch.resize(n + d);
  idx.resize(n);
  float* y = scratch.data();
  float* u = y + n;
  double sq = 0.0;
  for (size_t j = 0; j < d; ++j) sq += static_cast<double>(x[j]) * x[j];
  const float norm = static_cast<float>(std::sqrt(sq));
  const auto store_half = [&](float v) {
    if (!(std::fabs(v) <= kHalfMax)) {
      throw InvalidInput("format " + std::string(codec.format().name) + ": norm " + std::to_string(v) +
                         " exceeds the fp16 range (65504)");
    }
    const uint16_t h = float_to_half(v);
    side[0] = static_cast<uint8_t>(h & 0xff);
    side[1] = static_cast<uint8_t>(h >> 8);
  };
  // Thresholds as the codec uses them: float32 midpoints.
  float t[15];
  const size_t levels_minus_1 = thr.size();
  for (size_t k = 0; k < levels_minus_1; ++k) t[k] = static_cast<float>(thr[k]);
  if (norm == 0.0f) {
    const uint8_t zero = static_cast<uint8_t>(quantize_scalar(*codec.codebook(), 0.0));
    std::memset(idx.data(), zero, n);
    pack_fast(idx.data(), n, l.code_bits, code);
    store_half(0.0f);
    return;
  }
  const float inv = 1.0f / norm;
  for (size_t j = 0; j < d; ++j) u[j] = x[j] * inv;
  codec.rotation().apply(u, y);
  double cnorm_sq = 0.0;
  for (size_t j = 0; j < n; ++j) {
    uint32_t k = 0;
    for (size_t s = 0; s < levels_minus_1; ++s) k += y[j] >= t[s] ? 1u : 0u;
    idx[j] = static_cast<uint8_t>(k);
    cnorm_sq += static_cast<double>(centroids[k]) * centroids[k];
  }
  pack_fast(idx.data(), n, l.code_bits, code);
  float stored = norm;
  if (codec.format().norm_correction && cnorm_sq > 0.0) stored = static_cast<float>(norm / std::sqrt(cnorm_sq));
  store_half(stored);
}

}  // namespace

void append_fast(const AppendItem* items, size_t n_items) {
  if (n_items == 0) return;
  if (!items) throw InvalidArgument("append: null item list");
  size_t code_total = 0, side_total = 0;
  for (size_t i = 0; i < n_items; ++i) {
    const AppendItem& it = items[i];
    if (!it.codec || !it.x || !it.code || (it.codec->layout().side_bytes && !it.side)) {
      throw InvalidArgument("append: item " + std::to_string(i) + " has a null codec or buffer");
    }
    const size_t d = it.codec->dim();
    for (size_t j = 0; j < d; ++j) {
      if (!std::isfinite(it.x[j])) {
        throw InvalidInput("append: item " + std::to_string(i) + " component " + std::to_string(j) + " is " +
                           (std::isnan(it.x[j]) ? "NaN" : "Inf") + "; NaN/Inf inputs are rejected");
      }
    }
    code_total += it.codec->layout().code_bytes;
    side_total += it.codec->layout().side_bytes;
  }
  thread_local std::vector<uint8_t> codes, sides, idx;
  thread_local std::vector<float> scratch;
  codes.resize(code_total);
  sides.resize(side_total + 1);
  size_t co = 0, so = 0;
  for (size_t i = 0; i < n_items; ++i) {
    const Codec& c = *items[i].codec;
    const FormatSpec& spec = c.format();
    if (spec.scheme == Scheme::LloydMax && !spec.qjl) {
      encode_lloyd(c, items[i].x, codes.data() + co, sides.data() + so, scratch, idx);
    } else {
      c.encode(1, items[i].x, codes.data() + co, sides.data() + so);
    }
    co += c.layout().code_bytes;
    so += c.layout().side_bytes;
  }
  co = so = 0;
  for (size_t i = 0; i < n_items; ++i) {
    const FormatLayout& l = items[i].codec->layout();
    std::memcpy(items[i].code, codes.data() + co, l.code_bytes);
    if (l.side_bytes) std::memcpy(items[i].side, sides.data() + so, l.side_bytes);
    co += l.code_bytes;
    so += l.side_bytes;
  }
}

}  // namespace rq
