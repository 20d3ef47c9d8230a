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
/// path, whose weights keep 15 bits of their chunk's largest V norm; the float kernels use hn::Exp.
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

/// Raises the running max of one query head to mx (when larger), rescaling denom and the acc_n
/// accumulators.
HWY_INLINE void RaiseRunningMax(float mx, float& max, double& denom, float* acc, size_t acc_n) {
  if (!(mx > max)) return;
  const float factor = max == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(max - mx);
  denom *= factor;
  for (size_t j = 0; j < acc_n; ++j) acc[j] *= factor;
  max = mx;
}

/// One chunk of one query head (float kernels): s[0:rows] scores. Raises the running max, adds
/// sum_r exp(s_r - max) to denom and writes w[r] = exp(s_r - max) * v_scale[r].
HWY_INLINE void OnlineSoftmaxStep(const float* s, size_t rows, const float* v_scale, float& max, double& denom,
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
  RaiseRunningMax(mx, max, denom, acc, acc_n);  // (mx started at max and only grew: mx == max now)
  const auto vmax = hn::Set(df, mx), lo = hn::Set(df, -87.0f);
  auto vsum = hn::Zero(df);
  for (r = 0; r + N <= rows; r += N) {
    const auto p = hn::Exp(df, hn::Max(hn::Sub(hn::LoadU(df, s + r), vmax), lo));
    vsum = hn::Add(vsum, p);
    hn::StoreU(hn::Mul(p, hn::LoadU(df, v_scale + r)), df, w + r);
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, vsum));
  for (; r < rows; ++r) {
    const float p = std::exp(s[r] - mx);
    sum += p;
    w[r] = p * v_scale[r];
  }
  denom += sum;
}

/// The 15-bit image rne(min(w * vk, 32767)) of weights w >= 0 (vk = WeightFactor(vmax)), in int32
/// lanes; the constants are built once per loop. Mul, Add and the rounding are done separately on
/// every target.
template <class D>
struct Quantize15 {
  using V = hwy::HWY_NAMESPACE::Vec<D>;
  using VI = hwy::HWY_NAMESPACE::Vec<hwy::HWY_NAMESPACE::RebindToSigned<D>>;
  V vk, levels, magic;
  VI magic_bits;
  Quantize15(D df, float k)
      : vk(hwy::HWY_NAMESPACE::Set(df, k)),
        levels(hwy::HWY_NAMESPACE::Set(df, 32767.0f)),
        magic(hwy::HWY_NAMESPACE::Set(df, kRoundMagic)),
        magic_bits(hwy::HWY_NAMESPACE::BitCast(hwy::HWY_NAMESPACE::RebindToSigned<D>(), magic)) {}
  HWY_INLINE VI operator()(V w) const {
    namespace hn = hwy::HWY_NAMESPACE;
    return hn::Sub(hn::BitCast(hn::RebindToSigned<D>(), hn::Add(hn::Min(hn::Mul(w, vk), levels), magic)), magic_bits);
  }
};

/// The factor k of Quantize15 for a chunk whose largest weight scale (v_scale) is vmax: v_scale
/// holds fp16 values (norms, block scales), so vmax is 0 or at least 2^-24 and the factor
/// <= 32767 * 2^24 is finite (a float subnormal vmax, which would make it infinite, cannot occur).
HWY_INLINE float WeightFactor(float vmax) { return vmax > 0.0f ? 32767.0f / vmax : 0.0f; }

/// Integer path, one chunk of one query head, in one pass: raises the running max to chunk_max (the
/// largest s[r], r < rows), adds sum_r exp(s_r - max) to denom and writes the 15-bit weights
///   w16[r] = rne(exp(s_r - max) * v_scale[r] * 32767 / vmax),  r < rows (0 up to the next multiple of 8),
/// vmax = the chunk's largest v_scale (exp <= 1, so w16 <= 32767; 0: all weights 0). The scale does
/// not wait for the chunk's largest weight, so no second pass: a chunk whose weights are all small
/// keeps fewer bits, but its absolute rounding (vmax / 65534 per row) is the same as a large one's.
/// *sum = the sum of the w16. kKeepP (int4 values): also p_out[r] = exp(s_r - max), 0 past rows.
template <bool kKeepP = false>
HWY_INLINE void SoftmaxToWeights16(const float* s, size_t rows, float chunk_max, const float* v_scale, float vmax,
                                   float& max, double& denom, float* acc, size_t acc_n, uint16_t* w16, int32_t* sum,
                                   float* p_out = nullptr) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::CappedTag<float, 8> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint16_t, decltype(df)> du16;
  const size_t N = hn::Lanes(df);
  RaiseRunningMax(chunk_max, max, denom, acc, acc_n);
  const auto vrun = hn::Set(df, max), lo = hn::Set(df, -87.0f);
  const Quantize15<decltype(df)> quantize(df, WeightFactor(vmax));
  auto vsum = hn::Zero(df);
  auto wsum = hn::Zero(di);
  const auto step = [&](size_t r, size_t lanes) HWY_ATTR {
    auto p = ExpNonPositive(df, hn::Max(hn::Sub(hn::LoadU(df, s + r), vrun), lo));
    auto wi = quantize(hn::Mul(p, hn::LoadU(df, v_scale + r)));
    if (lanes < N) {  // the last rows: lanes past the chunk count nothing (their inputs are stale)
      p = hn::IfThenElseZero(hn::FirstN(df, lanes), p);
      wi = hn::IfThenElseZero(hn::FirstN(di, lanes), wi);
    }
    vsum = hn::Add(vsum, p);
    wsum = hn::Add(wsum, wi);
    hn::StoreU(hn::DemoteTo(du16, wi), du16, w16 + r);
    if constexpr (kKeepP) hn::StoreU(p, df, p_out + r);
  };
  size_t r = 0;
  for (; r + N <= rows; r += N) step(r, N);
  if (r < rows) step(r, rows - r);
  denom += hn::GetLane(hn::SumOfLanes(df, vsum));
  *sum = hn::GetLane(hn::SumOfLanes(di, wsum));
}

/// int4 values, the weights of one more 32-coordinate block from SoftmaxToWeights16's p:
/// w16[r] = rne(p[r] * v_scale[r] * 32767 / vmax) (the same operations), *sum their sum.
HWY_INLINE void BlockWeights16(const float* p, size_t rows, const float* v_scale, float vmax, uint16_t* w16,
                               int32_t* sum) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::CappedTag<float, 8> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint16_t, decltype(df)> du16;
  const size_t N = hn::Lanes(df);
  const Quantize15<decltype(df)> quantize(df, WeightFactor(vmax));
  auto wsum = hn::Zero(di);
  for (size_t r = 0; r < rows; r += N) {  // p is 0 past rows, so those weights are 0
    const auto wi = quantize(hn::Mul(hn::LoadU(df, p + r), hn::LoadU(df, v_scale + r)));
    wsum = hn::Add(wsum, wi);
    hn::StoreU(hn::DemoteTo(du16, wi), du16, w16 + r);
  }
  *sum = hn::GetLane(hn::SumOfLanes(di, wsum));
}

}  // namespace HWY_NAMESPACE
}  // namespace rq::attn_detail
HWY_AFTER_NAMESPACE();

#endif  // RQ_ATTENTION_KERNEL_STEPS_INL_H_
