// Scalar reference decoders (the normative definition of every block layout in blocks.hpp),
// dequantize_row and the reference dot product.
#include <fmt/format.h>

#include <vector>

#include "blocks.hpp"
#include "rq/core/errors.hpp"
#include "rq/model/tensor_types.hpp"

namespace rq::model {
namespace blocks {

void decode_q4_0(const uint8_t* b, float* out) {
  const float d = load_half(b);
  const uint8_t* qs = b + 2;
  for (size_t j = 0; j < kQK / 2; ++j) {
    out[j] = d * static_cast<float>(static_cast<int>(qs[j] & 0xF) - 8);
    out[j + kQK / 2] = d * static_cast<float>(static_cast<int>(qs[j] >> 4) - 8);
  }
}

void decode_q4_1(const uint8_t* b, float* out) {
  const float d = load_half(b);
  const float m = load_half(b + 2);
  const uint8_t* qs = b + 4;
  for (size_t j = 0; j < kQK / 2; ++j) {
    out[j] = d * static_cast<float>(qs[j] & 0xF) + m;
    out[j + kQK / 2] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

void decode_q8_0(const uint8_t* b, float* out) {
  const float d = load_half(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (size_t j = 0; j < kQK; ++j) out[j] = d * static_cast<float>(qs[j]);
}

void decode_q4_k(const uint8_t* b, float* out) {
  const float d = load_half(b);
  const float dmin = load_half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int chunk = 0; chunk < 4; ++chunk) {  // 64 elements: two sub-blocks of 32
    uint8_t sc, m;
    k4_scale_min(scales, 2 * chunk, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    k4_scale_min(scales, 2 * chunk + 1, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    const uint8_t* q = qs + 32 * chunk;
    float* y = out + 64 * chunk;
    for (int l = 0; l < 32; ++l) y[l] = d1 * static_cast<float>(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) y[32 + l] = d2 * static_cast<float>(q[l] >> 4) - m2;
  }
}

void decode_q5_k(const uint8_t* b, float* out) {
  const float d = load_half(b);
  const float dmin = load_half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int chunk = 0; chunk < 4; ++chunk) {
    uint8_t sc, m;
    k4_scale_min(scales, 2 * chunk, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    k4_scale_min(scales, 2 * chunk + 1, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    const uint8_t* q = qs + 32 * chunk;
    const uint8_t bit_lo = static_cast<uint8_t>(1u << (2 * chunk));
    const uint8_t bit_hi = static_cast<uint8_t>(2u << (2 * chunk));
    float* y = out + 64 * chunk;
    for (int l = 0; l < 32; ++l) {
      y[l] = d1 * static_cast<float>((q[l] & 0xF) + ((qh[l] & bit_lo) ? 16 : 0)) - m1;
    }
    for (int l = 0; l < 32; ++l) {
      y[32 + l] = d2 * static_cast<float>((q[l] >> 4) + ((qh[l] & bit_hi) ? 16 : 0)) - m2;
    }
  }
}

void decode_q6_k(const uint8_t* b, float* out) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_half(b + 208);
  for (int half = 0; half < 2; ++half) {  // 128 elements each
    for (int l = 0; l < 32; ++l) {
      const int s = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      out[l] = d * static_cast<float>(sc[s] * q1);
      out[l + 32] = d * static_cast<float>(sc[s + 2] * q2);
      out[l + 64] = d * static_cast<float>(sc[s + 4] * q3);
      out[l + 96] = d * static_cast<float>(sc[s + 6] * q4);
    }
    out += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

const TypeTraits& check_compute(GgmlType type, size_t n) {
  const TypeTraits& t = type_traits(type);
  if (!t.compute_supported) {
    throw FormatError(fmt::format("unsupported tensor type {} ({}): no dequantize/dot kernel",
                                  static_cast<uint32_t>(type), t.name));
  }
  if (n % t.block_size != 0) {
    throw InvalidArgument(fmt::format("row of {} elements is not a multiple of the {} block size {}",
                                      n, t.name, t.block_size));
  }
  return t;
}

}  // namespace blocks

void dequantize_row(GgmlType type, const void* row, float* out, size_t n) {
  const TypeTraits& t = blocks::check_compute(type, n);
  const uint8_t* p = static_cast<const uint8_t*>(row);
  const size_t nb = n / t.block_size;
  switch (type) {
    case GgmlType::F32:
      std::memcpy(out, p, n * sizeof(float));
      return;
    case GgmlType::F16:
      for (size_t i = 0; i < n; ++i) out[i] = blocks::load_half(p + 2 * i);
      return;
    case GgmlType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = blocks::bf16_to_float(h);
      }
      return;
    case GgmlType::Q4_0:
      for (size_t b = 0; b < nb; ++b) blocks::decode_q4_0(p + b * t.bytes_per_block, out + b * 32);
      return;
    case GgmlType::Q4_1:
      for (size_t b = 0; b < nb; ++b) blocks::decode_q4_1(p + b * t.bytes_per_block, out + b * 32);
      return;
    case GgmlType::Q8_0:
      for (size_t b = 0; b < nb; ++b) blocks::decode_q8_0(p + b * t.bytes_per_block, out + b * 32);
      return;
    case GgmlType::Q4_K:
      for (size_t b = 0; b < nb; ++b) blocks::decode_q4_k(p + b * t.bytes_per_block, out + b * 256);
      return;
    case GgmlType::Q5_K:
      for (size_t b = 0; b < nb; ++b) blocks::decode_q5_k(p + b * t.bytes_per_block, out + b * 256);
      return;
    case GgmlType::Q6_K:
      for (size_t b = 0; b < nb; ++b) blocks::decode_q6_k(p + b * t.bytes_per_block, out + b * 256);
      return;
    default:
      break;
  }
  throw FormatError(fmt::format("unsupported tensor type {}", static_cast<uint32_t>(type)));
}

float dot_row_reference(GgmlType type, const void* row, const float* x, size_t n) {
  std::vector<float> w(n);  // n floats
  dequantize_row(type, row, w.data(), n);
  double acc = 0.0;
  for (size_t i = 0; i < n; ++i) acc += static_cast<double>(w[i]) * static_cast<double>(x[i]);
  return static_cast<float>(acc);
}

}  // namespace rq::model
