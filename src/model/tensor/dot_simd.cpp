// Fast row dot products (quantized row · float32 activation) with Highway: this file is compiled
// once per SIMD target (foreach_target) and dot_row dispatches at run time to the best target
// the CPU supports. Every block type is decoded in registers (bytes widened to int32 lanes,
// converted to float, FMA with the activation); block scales are applied once per block or
// sub-block. matvec runs the row kernel over rows on the thread pool.
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

/// Q4_K: per 64-element chunk c, qs[32c + l] holds element l of sub-block 2c (low nibble) and
/// of sub-block 2c+1 (high nibble). Σ (d·sc·q − dmin·m)·x = d·sc·Σ q·x − dmin·m·Σ x.
float DotQ4_K(const uint8_t* row, const float* x, size_t nb) {
  const DF d;
  const hn::Rebind<uint8_t, DF> du8;
  const hn::Rebind<int32_t, DF> di32;
  const size_t N = hn::Lanes(d);
  const auto mask = hn::Set(di32, 0xF);
  auto acc = hn::Zero(d);
  for (size_t b = 0; b < nb; ++b, row += blocks::kQ4_KBytes, x += blocks::kQK_K) {
    const float dd = blocks::load_half(row);
    const float dmin = blocks::load_half(row + 2);
    const uint8_t* scales = row + 4;
    const uint8_t* qs = row + 16;
    for (int c = 0; c < 4; ++c) {
      const float* xc = x + 64 * c;
      auto qx_lo = hn::Zero(d), qx_hi = hn::Zero(d), xs_lo = hn::Zero(d), xs_hi = hn::Zero(d);
      for (size_t l = 0; l < 32; l += N) {
        const auto v = hn::PromoteTo(di32, hn::LoadU(du8, qs + 32 * c + l));
        const auto x_lo = hn::LoadU(d, xc + l);
        const auto x_hi = hn::LoadU(d, xc + 32 + l);
        qx_lo = hn::MulAdd(hn::ConvertTo(d, hn::And(v, mask)), x_lo, qx_lo);
        qx_hi = hn::MulAdd(hn::ConvertTo(d, hn::ShiftRight<4>(v)), x_hi, qx_hi);
        xs_lo = hn::Add(xs_lo, x_lo);
        xs_hi = hn::Add(xs_hi, x_hi);
      }
      uint8_t sc, m;
      blocks::k4_scale_min(scales, 2 * c, &sc, &m);
      acc = hn::MulAdd(hn::Set(d, dd * sc), qx_lo, acc);
      acc = hn::MulAdd(hn::Set(d, -dmin * m), xs_lo, acc);
      blocks::k4_scale_min(scales, 2 * c + 1, &sc, &m);
      acc = hn::MulAdd(hn::Set(d, dd * sc), qx_hi, acc);
      acc = hn::MulAdd(hn::Set(d, -dmin * m), xs_hi, acc);
    }
  }
  return reduce(d, acc);
}

/// Q5_K: Q4_K plus a fifth bit, bit s of qh[l] for sub-block s.
float DotQ5_K(const uint8_t* row, const float* x, size_t nb) {
  const DF d;
  const hn::Rebind<uint8_t, DF> du8;
  const hn::Rebind<int32_t, DF> di32;
  const size_t N = hn::Lanes(d);
  const auto mask = hn::Set(di32, 0xF);
  const auto one = hn::Set(di32, 1);
  auto acc = hn::Zero(d);
  for (size_t b = 0; b < nb; ++b, row += blocks::kQ5_KBytes, x += blocks::kQK_K) {
    const float dd = blocks::load_half(row);
    const float dmin = blocks::load_half(row + 2);
    const uint8_t* scales = row + 4;
    const uint8_t* qh = row + 16;
    const uint8_t* qs = row + 48;
    for (int c = 0; c < 4; ++c) {
      const float* xc = x + 64 * c;
      auto qx_lo = hn::Zero(d), qx_hi = hn::Zero(d), xs_lo = hn::Zero(d), xs_hi = hn::Zero(d);
      for (size_t l = 0; l < 32; l += N) {
        const auto v = hn::PromoteTo(di32, hn::LoadU(du8, qs + 32 * c + l));
        const auto h = hn::PromoteTo(di32, hn::LoadU(du8, qh + l));
        const auto h_lo = hn::ShiftLeft<4>(hn::And(hn::ShiftRightSame(h, 2 * c), one));
        const auto h_hi = hn::ShiftLeft<4>(hn::And(hn::ShiftRightSame(h, 2 * c + 1), one));
        const auto x_lo = hn::LoadU(d, xc + l);
        const auto x_hi = hn::LoadU(d, xc + 32 + l);
        qx_lo = hn::MulAdd(hn::ConvertTo(d, hn::Or(hn::And(v, mask), h_lo)), x_lo, qx_lo);
        qx_hi = hn::MulAdd(hn::ConvertTo(d, hn::Or(hn::ShiftRight<4>(v), h_hi)), x_hi, qx_hi);
        xs_lo = hn::Add(xs_lo, x_lo);
        xs_hi = hn::Add(xs_hi, x_hi);
      }
      uint8_t sc, m;
      blocks::k4_scale_min(scales, 2 * c, &sc, &m);
      acc = hn::MulAdd(hn::Set(d, dd * sc), qx_lo, acc);
      acc = hn::MulAdd(hn::Set(d, -dmin * m), xs_lo, acc);
      blocks::k4_scale_min(scales, 2 * c + 1, &sc, &m);
      acc = hn::MulAdd(hn::Set(d, dd * sc), qx_hi, acc);
      acc = hn::MulAdd(hn::Set(d, -dmin * m), xs_hi, acc);
    }
  }
  return reduce(d, acc);
}

/// Q6_K: each 128-element half has ql[64], qh[32], 8 scales; element l + 32k (k = 0..3) takes
/// its low nibble from ql[l + 32(k%2)] (low for k < 2, high for k >= 2), two high bits from
/// qh[l] >> 2k, scale scales[l/16 + 2k]. Vectors never straddle a 16-element scale group.
float DotQ6_K(const uint8_t* row, const float* x, size_t nb) {
  const DF d;
  const hn::Rebind<uint8_t, DF> du8;
  const hn::Rebind<int32_t, DF> di32;
  const size_t N = hn::Lanes(d);
  const auto mask4 = hn::Set(di32, 0xF);
  const auto mask2 = hn::Set(di32, 3);
  const auto bias = hn::Set(di32, 32);
  auto acc = hn::Zero(d);
  for (size_t b = 0; b < nb; ++b, row += blocks::kQ6_KBytes, x += blocks::kQK_K) {
    const float dd = blocks::load_half(row + 208);
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = row + 64 * half;
      const uint8_t* qh = row + 128 + 32 * half;
      const int8_t* sc = reinterpret_cast<const int8_t*>(row + 192) + 8 * half;
      const float* xh = x + 128 * half;
      for (size_t l = 0; l < 32; l += N) {
        const size_t is = l / 16;
        const auto a = hn::PromoteTo(di32, hn::LoadU(du8, ql + l));
        const auto c = hn::PromoteTo(di32, hn::LoadU(du8, ql + 32 + l));
        const auto h = hn::PromoteTo(di32, hn::LoadU(du8, qh + l));
        const auto q1 = hn::Sub(hn::Or(hn::And(a, mask4), hn::ShiftLeft<4>(hn::And(h, mask2))), bias);
        const auto q2 = hn::Sub(
            hn::Or(hn::And(c, mask4), hn::ShiftLeft<4>(hn::And(hn::ShiftRight<2>(h), mask2))), bias);
        const auto q3 = hn::Sub(
            hn::Or(hn::ShiftRight<4>(a), hn::ShiftLeft<4>(hn::And(hn::ShiftRight<4>(h), mask2))), bias);
        const auto q4 = hn::Sub(hn::Or(hn::ShiftRight<4>(c), hn::ShiftLeft<4>(hn::ShiftRight<6>(h))), bias);
        auto t = hn::Mul(hn::Set(d, static_cast<float>(sc[is])),
                         hn::Mul(hn::ConvertTo(d, q1), hn::LoadU(d, xh + l)));
        t = hn::MulAdd(hn::Set(d, static_cast<float>(sc[is + 2])),
                       hn::Mul(hn::ConvertTo(d, q2), hn::LoadU(d, xh + 32 + l)), t);
        t = hn::MulAdd(hn::Set(d, static_cast<float>(sc[is + 4])),
                       hn::Mul(hn::ConvertTo(d, q3), hn::LoadU(d, xh + 64 + l)), t);
        t = hn::MulAdd(hn::Set(d, static_cast<float>(sc[is + 6])),
                       hn::Mul(hn::ConvertTo(d, q4), hn::LoadU(d, xh + 96 + l)), t);
        acc = hn::MulAdd(hn::Set(d, dd), t, acc);
      }
    }
  }
  return reduce(d, acc);
}

const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace rq::model::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <fmt/format.h>

#include "rq/core/errors.hpp"
#include "rq/threads/thread_pool.hpp"

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
  const auto rows_of = [&](size_t begin, size_t end) {
    for (size_t r = begin; r < end; ++r) y[r] = k.fn(base + r * stride, x, count);
  };
  if (rows * cols < (size_t{1} << 18)) {
    rows_of(0, rows);
    return;
  }
  // Four chunks per thread: claimed dynamically, so a thread that loses its core delays one chunk.
  ThreadPool& pool = ThreadPool::global();
  const size_t threads = static_cast<size_t>(pool.threads());
  pool.parallel_for(rows, (rows + 4 * threads - 1) / (4 * threads), rows_of);
}

const char* dot_simd_target() {
  init_dispatch();
  return HWY_DYNAMIC_DISPATCH(TargetName)();
}

}  // namespace rq::model
#endif  // HWY_ONCE
