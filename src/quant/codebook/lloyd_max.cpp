// Lloyd-Max codebooks for one coordinate of a rotated unit vector (ALGORITHMS.md §2).
//
// Exact density: with z = sin(theta), f_d(z) dz ∝ cos^(d-2)(theta) dtheta on (-pi/2, pi/2), which is
// smooth for every d >= 2 (d = 2 is the arcsine law, uniform in theta). Cell masses and second moments
// are integrated with composite Gauss-Legendre in theta; first moments have a closed form.
// Gaussian density: N(0, 1/d), all integrals in closed form (erf).
#include "rq/codebook/lloyd_max.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "rq/core/errors.hpp"

namespace rq {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kMaxIterations = 200000;
constexpr double kTolerance = 1e-10;  // largest centroid move, in units of sigma

// 16-point Gauss-Legendre nodes and weights on [-1, 1], computed once by Newton's method.
struct GaussLegendre {
  static constexpr int kPoints = 16;
  std::array<double, kPoints> x{}, w{};
  GaussLegendre() {
    for (int i = 0; i < kPoints; ++i) {
      double z = std::cos(kPi * (i + 0.75) / (kPoints + 0.5));
      double dp = 0.0;
      for (int it = 0; it < 100; ++it) {
        double p0 = 1.0, p1 = z;
        for (int k = 2; k <= kPoints; ++k) {
          double p2 = ((2.0 * k - 1.0) * z * p1 - (k - 1.0) * p0) / k;
          p0 = p1;
          p1 = p2;
        }
        dp = kPoints * (z * p1 - p0) / (z * z - 1.0);
        double dz = p1 / dp;
        z -= dz;
        if (std::fabs(dz) < 1e-16) break;
      }
      x[i] = z;
      w[i] = 2.0 / ((1.0 - z * z) * dp * dp);
    }
  }
};

const GaussLegendre& gauss_legendre() {
  static const GaussLegendre gl;
  return gl;
}

// Integrals over one cell [lo, hi] (in z units) of the density: mass, first and second moment.
struct CellMoments {
  double mass = 0, first = 0, second = 0;
};

class ExactDensity {
 public:
  explicit ExactDensity(size_t dim) : power_(static_cast<double>(dim) - 2.0) {
    const double sigma = 1.0 / std::sqrt(static_cast<double>(dim));
    // Mass beyond 14 sigma is below 1e-40 for large d: integrate only where it matters.
    theta_max_ = 14.0 * sigma >= 1.0 ? kPi / 2 : std::asin(14.0 * sigma);
    step_ = 2.0 * theta_max_ / 96.0;
    total_ = raw(-theta_max_, theta_max_).mass;
  }

  CellMoments cell(double lo, double hi) const {
    const double a = std::max(-theta_max_, lo <= -1.0 ? -kPi / 2 : std::asin(std::max(-1.0, lo)));
    const double b = std::min(theta_max_, hi >= 1.0 ? kPi / 2 : std::asin(std::min(1.0, hi)));
    CellMoments m;
    if (b <= a) return m;
    m = raw(a, b);
    m.mass /= total_;
    m.first /= total_;
    m.second /= total_;
    return m;
  }

 private:
  double weight(double theta) const {
    const double c = std::cos(theta);
    if (power_ == 0.0) return 1.0;
    return c <= 0.0 ? 0.0 : std::exp(power_ * std::log(c));
  }

  // Unnormalized moments over [a, b] in theta.
  CellMoments raw(double a, double b) const {
    const auto& gl = gauss_legendre();
    const int pieces = std::max(1, static_cast<int>(std::ceil((b - a) / step_)));
    const double h = (b - a) / pieces;
    CellMoments m;
    for (int p = 0; p < pieces; ++p) {
      const double mid = a + (p + 0.5) * h;
      for (int i = 0; i < GaussLegendre::kPoints; ++i) {
        const double t = mid + 0.5 * h * gl.x[i];
        const double wt = 0.5 * h * gl.w[i] * weight(t);
        const double z = std::sin(t);
        m.mass += wt;
        m.first += wt * z;
        m.second += wt * z * z;
      }
    }
    return m;
  }

  double power_;
  double theta_max_;
  double step_;
  double total_;
};

class GaussianDensity {
 public:
  explicit GaussianDensity(size_t dim) : sigma_(1.0 / std::sqrt(static_cast<double>(dim))) {}

  CellMoments cell(double lo, double hi) const {
    const double a = lo / sigma_, b = hi / sigma_;
    const double mass = cdf(b) - cdf(a);
    const double first = pdf(a) - pdf(b);                       // ∫ z φ
    const double second = mass - (term(b) - term(a));           // ∫ z² φ = [Φ - zφ]
    return {mass, first * sigma_, second * sigma_ * sigma_};
  }

 private:
  static double pdf(double z) { return std::isinf(z) ? 0.0 : std::exp(-0.5 * z * z) / std::sqrt(2 * kPi); }
  static double cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }
  static double term(double z) { return std::isinf(z) ? 0.0 : z * pdf(z); }
  double sigma_;
};

template <class Density>
Codebook solve(int bits, size_t dim, CodebookDensity kind, const Density& density) {
  const size_t levels = size_t{1} << bits;
  const double sigma = 1.0 / std::sqrt(static_cast<double>(dim));
  Codebook cb;
  cb.bits = bits;
  cb.dim = dim;
  cb.density = kind;
  cb.centroids.resize(levels);
  cb.thresholds.resize(levels - 1);
  // Start: levels spread evenly over ±3.5 sigma (clipped inside the support).
  const double span = std::min(3.5 * sigma, 0.95);
  for (size_t i = 0; i < levels; ++i) {
    cb.centroids[i] = levels == 1 ? 0.0 : -span + 2.0 * span * static_cast<double>(i) / static_cast<double>(levels - 1);
  }
  const double lower = kind == CodebookDensity::Exact ? -1.0 : -INFINITY;
  const double upper = kind == CodebookDensity::Exact ? 1.0 : INFINITY;
  int it = 0;
  for (; it < kMaxIterations; ++it) {
    for (size_t i = 0; i + 1 < levels; ++i) cb.thresholds[i] = 0.5 * (cb.centroids[i] + cb.centroids[i + 1]);
    double max_move = 0.0;
    for (size_t i = 0; i < levels; ++i) {
      const double lo = i == 0 ? lower : cb.thresholds[i - 1];
      const double hi = i + 1 == levels ? upper : cb.thresholds[i];
      const CellMoments m = density.cell(lo, hi);
      if (m.mass <= 0.0) continue;  // empty cell: keep the level where it is
      const double c = m.first / m.mass;
      max_move = std::max(max_move, std::fabs(c - cb.centroids[i]) / sigma);
      cb.centroids[i] = c;
    }
    if (max_move < kTolerance) break;
  }
  // Symmetrize (the density is even): removes the last rounding asymmetry.
  for (size_t i = 0; i < levels / 2; ++i) {
    const double c = 0.5 * (cb.centroids[levels - 1 - i] - cb.centroids[i]);
    cb.centroids[i] = -c;
    cb.centroids[levels - 1 - i] = c;
  }
  for (size_t i = 0; i + 1 < levels; ++i) cb.thresholds[i] = 0.5 * (cb.centroids[i] + cb.centroids[i + 1]);
  double mse = 0.0;
  for (size_t i = 0; i < levels; ++i) {
    const double lo = i == 0 ? lower : cb.thresholds[i - 1];
    const double hi = i + 1 == levels ? upper : cb.thresholds[i];
    const CellMoments m = density.cell(lo, hi);
    const double c = cb.centroids[i];
    mse += m.second - 2.0 * c * m.first + c * c * m.mass;
  }
  cb.mse = mse;
  cb.iterations = it + 1;
  return cb;
}

}  // namespace

const Codebook& lloyd_max_codebook(int bits, size_t dim, CodebookDensity density) {
  if (bits < 1 || bits > 8) {
    throw InvalidArgument("Lloyd-Max codebook: bits must be in 1..8, got " + std::to_string(bits));
  }
  if (dim < 2) throw InvalidArgument("Lloyd-Max codebook: dimension must be >= 2, got " + std::to_string(dim));
  static std::mutex mutex;
  static std::map<std::tuple<int, size_t, int>, std::unique_ptr<Codebook>> cache;
  const auto key = std::make_tuple(bits, dim, static_cast<int>(density));
  std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(key);
  if (found != cache.end()) return *found->second;
  Codebook cb = density == CodebookDensity::Exact ? solve(bits, dim, density, ExactDensity(dim))
                                                  : solve(bits, dim, density, GaussianDensity(dim));
  auto& slot = cache[key];
  slot = std::make_unique<Codebook>(std::move(cb));
  return *slot;
}

size_t quantize_scalar(const Codebook& codebook, double value) {
  return static_cast<size_t>(std::upper_bound(codebook.thresholds.begin(), codebook.thresholds.end(), value) -
                             codebook.thresholds.begin());
}

}  // namespace rq
