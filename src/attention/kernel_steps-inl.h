// Per-target steps shared by the float and the integer attention kernels: fp16 side values to
// floats and the online-softmax step (Highway "-inl.h" pattern: included once per target from each
// kernel file, after foreach_target.h).
#if defined(RQ_ATTENTION_KERNEL_STEPS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef RQ_ATTENTION_KERNEL_STEPS_INL_H_
#undef RQ_ATTENTION_KERNEL_STEPS_INL_H_
#else
#define RQ_ATTENTION_KERNEL_STEPS_INL_H_
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include "rq/core/half.hpp"

HWY_BEFORE_NAMESPACE();
namespace rq::attn_detail {
namespace HWY_NAMESPACE {

/// out[i] = fp16 value i of src (little-endian binary16), i < count.
HWY_INLINE void HalvesToFloats(const uint8_t* src, size_t count, float* out) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::CappedTag<float, 8> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= count; i += N) {
    hn::StoreU(hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(src) + i)), df, out + i);
  }
  for (; i < count; ++i) out[i] = half_to_float(static_cast<uint16_t>(src[2 * i] | (src[2 * i + 1] << 8)));
}

/// 1.5 * 2^23: for |x| < 2^22, x + kRoundMagic holds round-to-nearest-even(x) in its low mantissa bits.
constexpr float kRoundMagic = 12582912.0f;

/// exp(x) for x in [-87, 0] in 13 instructions: 2^(x log2 e) as 2^n times a degree-6 Taylor polynomial
/// of 2^f, |f| <= 1/2 (truncation error 1.2e-7; x log2 e rounds to ~1e-7 |x| relative). For the integer
/// path, whose weights keep 15 bits of their chunk's largest; the float kernels use hn::Exp.
template <class D, class V>
HWY_INLINE V ExpNonPositive(D d, V x) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::RebindToSigned<D> di;
  const V t = hn::Mul(x, hn::Set(d, 1.44269504088896341f));
  const V y = hn::Add(t, hn::Set(d, kRoundMagic));  // n = round(t) in the low bits of y
  const V f = hn::Sub(t, hn::Sub(y, hn::Set(d, kRoundMagic)));
  V p = hn::Set(d, 1.5403530393381606e-4f);
  p = hn::MulAdd(p, f, hn::Set(d, 1.3333558146428443e-3f));
  p = hn::MulAdd(p, f, hn::Set(d, 9.6181291076284772e-3f));
  p = hn::MulAdd(p, f, hn::Set(d, 5.5504108664821580e-2f));
  p = hn::MulAdd(p, f, hn::Set(d, 2.4022650695910071e-1f));
  p = hn::MulAdd(p, f, hn::Set(d, 6.9314718055994531e-1f));
  p = hn::MulAdd(p, f, hn::Set(d, 1.0f));
  // (n + 127) << 23: the low 9 bits of y's bits are n mod 512, so the shift keeps exactly n << 23.
  const auto bits = hn::Add(hn::ShiftLeft<23>(hn::BitCast(di, y)), hn::Set(di, 127 << 23));
  return hn::Mul(p, hn::BitCast(d, bits));
}

/// One chunk of one query head: s[0:rows] scores. Raises the running max (rescaling denom and the
/// acc_n accumulators when it grows), adds sum_r exp(s_r - max) to denom and writes
/// w[r] = exp(s_r - max) * v_scale[r]. kCheapExp: ExpNonPositive instead of hn::Exp (integer path).
/// Returns the largest w[r] (for QuantizeWeights).
template <bool kCheapExp = false>
HWY_INLINE float OnlineSoftmaxStep(const float* s, size_t rows, const float* v_scale, float& max, double& denom,
                                   float* acc, size_t acc_n, float* w) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::CappedTag<float, 8> df;
  const size_t N = hn::Lanes(df);
  float mx = max;
  size_t r = 0;
  if (rows >= N) {
    auto vm = hn::LoadU(df, s);
    for (r = N; r + N <= rows; r += N) vm = hn::Max(vm, hn::LoadU(df, s + r));
    const float m = hn::GetLane(hn::MaxOfLanes(df, vm));
    mx = m > mx ? m : mx;
  }
  for (; r < rows; ++r) mx = s[r] > mx ? s[r] : mx;
  if (mx > max) {
    const float factor = max == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(max - mx);
    denom *= factor;
    for (size_t j = 0; j < acc_n; ++j) acc[j] *= factor;
    max = mx;
  }
  const auto vmax = hn::Set(df, mx), lo = hn::Set(df, -87.0f);
  auto vsum = hn::Zero(df), wmax = hn::Zero(df);
  for (r = 0; r + N <= rows; r += N) {
    const auto x = hn::Max(hn::Sub(hn::LoadU(df, s + r), vmax), lo);
    hn::Vec<decltype(df)> p;
    if constexpr (kCheapExp) {
      p = ExpNonPositive(df, x);
    } else {
      p = hn::Exp(df, x);
    }
    vsum = hn::Add(vsum, p);
    const auto wr = hn::Mul(p, hn::LoadU(df, v_scale + r));
    wmax = hn::Max(wmax, wr);
    hn::StoreU(wr, df, w + r);
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, vsum));
  float wm = hn::GetLane(hn::MaxOfLanes(df, wmax));
  for (; r < rows; ++r) {
    const float p = std::exp(s[r] - mx);
    sum += p;
    w[r] = p * v_scale[r];
    wm = w[r] > wm ? w[r] : wm;
  }
  denom += sum;
  return wm;
}

/// Integer path: w16[r] = round-to-nearest-even(w[r] * (32767 / wmax)) for w >= 0, wmax = the largest w
/// (OnlineSoftmaxStep's result), with the Mul and the rounding Add done separately on every target (all
/// targets get the same integers). w and w16 hold `rows` values and room for up to 7 more (w's extra
/// entries are zeroed here). Returns wmax (0 when all weights are 0) and writes the sum of the w16 to *sum.
HWY_INLINE float QuantizeWeights(float* w, size_t rows, float wmax, uint16_t* w16, int32_t* sum) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::CappedTag<float, 8> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint16_t, decltype(df)> du16;
  const size_t N = hn::Lanes(df);
  const size_t padded = (rows + N - 1) / N * N;
  for (size_t r = rows; r < padded; ++r) w[r] = 0.0f;
  *sum = 0;
  if (!(wmax > 0.0f)) {
    for (size_t r = 0; r < padded; ++r) w16[r] = 0;
    return 0.0f;
  }
  // x + kRoundMagic rounds x in [0, 32767] to an integer held in the low bits: no conversion needed.
  // A subnormal wmax makes 32767 / wmax infinite (and 0 * inf NaN): then w / wmax is divided out.
  const float inv = 32767.0f / wmax;
  const bool finite_inv = inv <= std::numeric_limits<float>::max();
  const auto vinv = hn::Set(df, finite_inv ? inv : 0.0f), vmax = hn::Set(df, wmax), top = hn::Set(df, 32767.0f);
  const auto magic = hn::Set(df, kRoundMagic);
  const auto magic_bits = hn::BitCast(di, magic);
  auto vsum = hn::Zero(di);
  for (size_t r = 0; r < padded; r += N) {
    const auto x = hn::LoadU(df, w + r);
    const auto scaled = finite_inv ? hn::Mul(x, vinv) : hn::Mul(hn::Div(x, vmax), top);
    const auto v = hn::Sub(hn::BitCast(di, hn::Add(scaled, magic)), magic_bits);
    vsum = hn::Add(vsum, v);
    hn::StoreU(hn::DemoteTo(du16, v), du16, w16 + r);
  }
  *sum = hn::GetLane(hn::SumOfLanes(di, vsum));
  return wmax;
}

}  // namespace HWY_NAMESPACE
}  // namespace rq::attn_detail
HWY_AFTER_NAMESPACE();

#endif  // RQ_ATTENTION_KERNEL_STEPS_INL_H_
