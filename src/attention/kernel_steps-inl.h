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

/// One chunk of one query head: s[0:rows] scores. Raises the running max (rescaling denom and the
/// acc_n accumulators when it grows), adds sum_r exp(s_r - max) to denom and writes
/// w[r] = exp(s_r - max) * v_scale[r].
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
  if (mx > max) {
    const float factor = max == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(max - mx);
    denom *= factor;
    for (size_t j = 0; j < acc_n; ++j) acc[j] *= factor;
    max = mx;
  }
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

/// Integer path: w16[r] = trunc(w[r] * (32767 / wmax) + 0.5) for w >= 0, with the Mul and the Add
/// rounded separately on every target (all targets get the same integers). w and w16 hold `rows`
/// values and room for up to 7 more (w's extra entries are zeroed here). Returns wmax (0 when all
/// weights are 0) and writes the sum of the w16 to *sum.
HWY_INLINE float QuantizeWeights(float* w, size_t rows, uint16_t* w16, int32_t* sum) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::CappedTag<float, 8> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint16_t, decltype(df)> du16;
  const size_t N = hn::Lanes(df);
  const size_t padded = (rows + N - 1) / N * N;
  for (size_t r = rows; r < padded; ++r) w[r] = 0.0f;
  auto vm = hn::Zero(df);
  for (size_t r = 0; r < padded; r += N) vm = hn::Max(vm, hn::LoadU(df, w + r));
  const float wmax = hn::GetLane(hn::MaxOfLanes(df, vm));
  *sum = 0;
  if (!(wmax > 0.0f)) {
    for (size_t r = 0; r < padded; ++r) w16[r] = 0;
    return 0.0f;
  }
  const auto vinv = hn::Set(df, 32767.0f / wmax), half = hn::Set(df, 0.5f);
  const auto top = hn::Set(di, 32767), zero = hn::Zero(di);
  auto vsum = hn::Zero(di);
  for (size_t r = 0; r < padded; r += N) {
    auto v = hn::ConvertTo(di, hn::Add(hn::Mul(hn::LoadU(df, w + r), vinv), half));
    v = hn::Max(hn::Min(v, top), zero);
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
