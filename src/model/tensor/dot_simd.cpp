// Fast row dot products (quantized row · float32 activation) with Highway: this file is compiled
// once per SIMD target (foreach_target) and dot_row dispatches at run time to the best target
// the CPU supports. Legacy 32-blocks (Q4_0, Q4_1, Q8_0) are decoded in registers; K-quant
// super-blocks are decoded to a 256-float stack buffer by the scalar reference decoder, then
// multiplied in SIMD. matvec runs dot_row over rows with OpenMP.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tensor/dot_simd.cpp"  // relative to src/model (private include dir)
#include <hwy/foreach_target.h>  // NOLINT: must come before highway.h
#include <hwy/highway.h>

#include "blocks.hpp"

HWY_BEFORE_NAMESPACE();
namespace rq::model::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// At most 16 float lanes, so one vector never spans more than one 16-byte nibble half.
using DF = hn::CappedTag<float, 16>;

inline float reduce(DF d, hn::Vec<DF> v) { return hn::GetLane(hn::SumOfLanes(d, v)); }

/// w, x: n floats.
float DotF32(const uint8_t* row, const float* x, size_t n) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const float* w = reinterpret_cast<const float*>(row);
  auto acc0 = hn::Zero(d), acc1 = hn::Zero(d);
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    acc0 = hn::MulAdd(hn::LoadU(d, w + i), hn::LoadU(d, x + i), acc0);
    acc1 = hn::MulAdd(hn::LoadU(d, w + i + N), hn::LoadU(d, x + i + N), acc1);
  }
  for (; i + N <= n; i += N) acc0 = hn::MulAdd(hn::LoadU(d, w + i), hn::LoadU(d, x + i), acc0);
  float s = reduce(d, hn::Add(acc0, acc1));
  for (; i < n; ++i) s += w[i] * x[i];
  return s;
}

/// row: n binary16 values; x: n floats.
float DotF16(const uint8_t* row, const float* x, size_t n) {
  const DF d;
  const hn::Rebind<hwy::float16_t, DF> dh;
  const size_t N = hn::Lanes(d);
  const hwy::float16_t* w = reinterpret_cast<const hwy::float16_t*>(row);
  auto acc = hn::Zero(d);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    acc = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, w + i)), hn::LoadU(d, x + i), acc);
  }
  float s = reduce(d, acc);
  for (; i < n; ++i) s += blocks::load_half(row + 2 * i) * x[i];
  return s;
}

/// row: n bfloat16 values; x: n floats.
float DotBF16(const uint8_t* row, const float* x, size_t n) {
  const DF d;
  const hn::Rebind<uint16_t, DF> du16;
  const hn::Rebind<uint32_t, DF> du32;
  const size_t N = hn::Lanes(d);
  const uint16_t* w = reinterpret_cast<const uint16_t*>(row);
  auto acc = hn::Zero(d);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto bits = hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, w + i)));
    acc = hn::MulAdd(hn::BitCast(d, bits), hn::LoadU(d, x + i), acc);
  }
  float s = reduce(d, acc);
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, row + 2 * i, 2);
    s += blocks::bf16_to_float(h) * x[i];
  }
  return s;
}

/// row: nb Q8_0 blocks; x: 32·nb floats.
float DotQ8_0(const uint8_t* row, const float* x, size_t nb) {
  const DF d;
  const hn::Rebind<int8_t, DF> di8;
  const hn::Rebind<int32_t, DF> di32;
  const size_t N = hn::Lanes(d);
  auto acc = hn::Zero(d);
  for (size_t b = 0; b < nb; ++b, row += blocks::kQ8_0Bytes, x += blocks::kQK) {
    const int8_t* qs = reinterpret_cast<const int8_t*>(row + 2);
    auto sum = hn::Zero(d);
    for (size_t j = 0; j < blocks::kQK; j += N) {
      const auto q = hn::ConvertTo(d, hn::PromoteTo(di32, hn::LoadU(di8, qs + j)));
      sum = hn::MulAdd(q, hn::LoadU(d, x + j), sum);
    }
    acc = hn::MulAdd(hn::Set(d, blocks::load_half(row)), sum, acc);
  }
  return reduce(d, acc);
}

/// Σ nib·x over one 32-block with nibbles in qs[16] (low -> x[0..16), high -> x[16..32)),
/// and (if want_xsum) Σ x.
template <bool kWantXSum>
inline void NibbleBlock(DF d, const uint8_t* qs, const float* x, hn::Vec<DF>& qx,
                        hn::Vec<DF>& xs) {
  const hn::Rebind<uint8_t, DF> du8;
  const hn::Rebind<int32_t, DF> di32;
  const size_t N = hn::Lanes(d);
  const auto mask = hn::Set(di32, 0xF);
  for (size_t j = 0; j < blocks::kQK / 2; j += N) {
    const auto v = hn::PromoteTo(di32, hn::LoadU(du8, qs + j));
    const auto lo = hn::ConvertTo(d, hn::And(v, mask));
    const auto hi = hn::ConvertTo(d, hn::ShiftRight<4>(v));
    const auto x_lo = hn::LoadU(d, x + j);
    const auto x_hi = hn::LoadU(d, x + blocks::kQK / 2 + j);
    qx = hn::MulAdd(lo, x_lo, qx);
    qx = hn::MulAdd(hi, x_hi, qx);
    if constexpr (kWantXSum) xs = hn::Add(xs, hn::Add(x_lo, x_hi));
  }
}

/// row: nb Q4_0 blocks; x: 32·nb floats. Σ d(nib - 8)x = d(Σ nib·x - 8 Σ x).
float DotQ4_0(const uint8_t* row, const float* x, size_t nb) {
  const DF d;
  auto acc = hn::Zero(d);
  for (size_t b = 0; b < nb; ++b, row += blocks::kQ4_0Bytes, x += blocks::kQK) {
    auto qx = hn::Zero(d), xs = hn::Zero(d);
    NibbleBlock<true>(d, row + 2, x, qx, xs);
    const auto v = hn::MulAdd(hn::Set(d, -8.0f), xs, qx);
    acc = hn::MulAdd(hn::Set(d, blocks::load_half(row)), v, acc);
  }
  return reduce(d, acc);
}

/// row: nb Q4_1 blocks; x: 32·nb floats. Σ (d·nib + m)x = d Σ nib·x + m Σ x.
float DotQ4_1(const uint8_t* row, const float* x, size_t nb) {
  const DF d;
  auto acc = hn::Zero(d);
  for (size_t b = 0; b < nb; ++b, row += blocks::kQ4_1Bytes, x += blocks::kQK) {
    auto qx = hn::Zero(d), xs = hn::Zero(d);
    NibbleBlock<true>(d, row + 4, x, qx, xs);
    acc = hn::MulAdd(hn::Set(d, blocks::load_half(row)), qx, acc);
    acc = hn::MulAdd(hn::Set(d, blocks::load_half(row + 2)), xs, acc);
  }
  return reduce(d, acc);
}

/// K-quants: scalar decode of each 256-block, SIMD multiply.
template <void (*Decode)(const uint8_t*, float*), size_t kBytes>
float DotDecoded(const uint8_t* row, const float* x, size_t nb) {
  const DF d;
  const size_t N = hn::Lanes(d);
  HWY_ALIGN float w[blocks::kQK_K];  // one decoded super-block
  auto acc = hn::Zero(d);
  for (size_t b = 0; b < nb; ++b, row += kBytes, x += blocks::kQK_K) {
    Decode(row, w);
    for (size_t j = 0; j < blocks::kQK_K; j += N) {
      acc = hn::MulAdd(hn::Load(d, w + j), hn::LoadU(d, x + j), acc);
    }
  }
  return reduce(d, acc);
}

float DotQ4_K(const uint8_t* row, const float* x, size_t nb) {
  return DotDecoded<blocks::decode_q4_k, blocks::kQ4_KBytes>(row, x, nb);
}
float DotQ5_K(const uint8_t* row, const float* x, size_t nb) {
  return DotDecoded<blocks::decode_q5_k, blocks::kQ5_KBytes>(row, x, nb);
}
float DotQ6_K(const uint8_t* row, const float* x, size_t nb) {
  return DotDecoded<blocks::decode_q6_k, blocks::kQ6_KBytes>(row, x, nb);
}

const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace rq::model::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <fmt/format.h>

#include "rq/core/errors.hpp"

namespace rq::model {

HWY_EXPORT(DotF32);
HWY_EXPORT(DotF16);
HWY_EXPORT(DotBF16);
HWY_EXPORT(DotQ8_0);
HWY_EXPORT(DotQ4_0);
HWY_EXPORT(DotQ4_1);
HWY_EXPORT(DotQ4_K);
HWY_EXPORT(DotQ5_K);
HWY_EXPORT(DotQ6_K);
HWY_EXPORT(TargetName);

namespace {

/// Kernel for a type: (row bytes, x, count) where count is elements for plain float types and
/// blocks for block types.
using DotKernel = float (*)(const uint8_t*, const float*, size_t);

struct ResolvedDot {
  DotKernel fn;
  size_t block_size;
};

/// Picks the SIMD target once. Without this, the dispatch table holds Highway's
/// choose-and-call stub until the first call returns, and a pointer fetched before that
/// would re-detect the CPU on every row.
void init_dispatch() {
  static const bool once = [] {
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    return true;
  }();
  (void)once;
}

ResolvedDot resolve(GgmlType type, size_t n) {
  init_dispatch();
  const TypeTraits& t = blocks::check_compute(type, n);
  switch (type) {
    case GgmlType::F32: return {HWY_DYNAMIC_DISPATCH(DotF32), 1};
    case GgmlType::F16: return {HWY_DYNAMIC_DISPATCH(DotF16), 1};
    case GgmlType::BF16: return {HWY_DYNAMIC_DISPATCH(DotBF16), 1};
    case GgmlType::Q8_0: return {HWY_DYNAMIC_DISPATCH(DotQ8_0), t.block_size};
    case GgmlType::Q4_0: return {HWY_DYNAMIC_DISPATCH(DotQ4_0), t.block_size};
    case GgmlType::Q4_1: return {HWY_DYNAMIC_DISPATCH(DotQ4_1), t.block_size};
    case GgmlType::Q4_K: return {HWY_DYNAMIC_DISPATCH(DotQ4_K), t.block_size};
    case GgmlType::Q5_K: return {HWY_DYNAMIC_DISPATCH(DotQ5_K), t.block_size};
    case GgmlType::Q6_K: return {HWY_DYNAMIC_DISPATCH(DotQ6_K), t.block_size};
    default: break;
  }
  throw FormatError(fmt::format("unsupported tensor type {}", static_cast<uint32_t>(type)));
}

}  // namespace

float dot_row(GgmlType type, const void* row, const float* x, size_t n) {
  const ResolvedDot k = resolve(type, n);
  return k.fn(static_cast<const uint8_t*>(row), x, n / k.block_size);
}

void matvec(GgmlType type, const void* W, size_t rows, size_t cols, const float* x, float* y) {
  const ResolvedDot k = resolve(type, cols);
  const size_t stride = row_bytes(type, cols);
  const size_t count = cols / k.block_size;
  const uint8_t* base = static_cast<const uint8_t*>(W);
  const long long n_rows = static_cast<long long>(rows);
#pragma omp parallel for schedule(static) if (rows * cols >= (size_t{1} << 18))
  for (long long r = 0; r < n_rows; ++r) {
    y[r] = k.fn(base + static_cast<size_t>(r) * stride, x, count);
  }
}

const char* dot_simd_target() {
  init_dispatch();
  return HWY_DYNAMIC_DISPATCH(TargetName)();
}

}  // namespace rq::model
#endif  // HWY_ONCE
