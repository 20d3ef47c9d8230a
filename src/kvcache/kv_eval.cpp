// evaluate_kv_dump: codec round trips on real vectors and exact attention with the real queries.
#include "rq/kvcache/kv_eval.hpp"

#include <algorithm>
#include <cmath>

#include "rq/codec/codec.hpp"
#include "rq/core/errors.hpp"
#include "rq/format/format.hpp"

namespace rq {

namespace {

// x: n x d -> x_hat: n x d through the codec.
std::vector<float> roundtrip(const Codec& c, size_t n, const float* x) {
  std::vector<uint8_t> codes(n * c.layout().code_bytes), side(n * c.layout().side_bytes + 1);
  std::vector<float> out(n * c.dim());
  c.encode(n, x, codes.data(), side.data());
  c.decode(n, codes.data(), side.data(), out.data());
  return out;
}

// Sum over vectors of ||u - u_hat||^2 with u = x / ||x|| (zero vectors skipped); adds to count.
double normalized_sq_error(const Codec& c, size_t n, const float* x, size_t& count) {
  const size_t d = c.dim();
  std::vector<float> u;
  u.reserve(n * d);
  for (size_t i = 0; i < n; ++i) {
    double nn = 0;
    for (size_t j = 0; j < d; ++j) nn += static_cast<double>(x[i * d + j]) * x[i * d + j];
    if (nn <= 0) continue;
    const double inv = 1.0 / std::sqrt(nn);
    for (size_t j = 0; j < d; ++j) u.push_back(static_cast<float>(x[i * d + j] * inv));
  }
  const size_t m = u.size() / d;
  if (m == 0) return 0.0;
  const auto uh = roundtrip(c, m, u.data());
  double s = 0;
  for (size_t i = 0; i < u.size(); ++i) s += (static_cast<double>(uh[i]) - u[i]) * (static_cast<double>(uh[i]) - u[i]);
  count += m;
  return s;
}

// out[d] = softmax(scores[0..n)) . V (rows of d), double.
void attend(const std::vector<double>& scores, size_t n, const float* v, size_t d, std::vector<double>& out) {
  double mx = -1e300;
  for (size_t s = 0; s < n; ++s) mx = std::max(mx, scores[s]);
  double sum = 0;
  std::fill(out.begin(), out.end(), 0.0);
  for (size_t s = 0; s < n; ++s) {
    const double w = std::exp(scores[s] - mx);
    sum += w;
    for (size_t j = 0; j < d; ++j) out[j] += w * v[s * d + j];
  }
  for (double& o : out) o /= sum;
}

double rel_err(const std::vector<double>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t j = 0; j < a.size(); ++j) {
    num += (a[j] - ref[j]) * (a[j] - ref[j]);
    den += ref[j] * ref[j];
  }
  return den > 0 ? std::sqrt(num / den) : 0.0;
}

}  // namespace

std::vector<KvEvalRow> evaluate_kv_dump(const KvDump& dump, const KvEvalOptions& options) {
  std::vector<std::string> names = options.formats;
  if (names.empty()) {
    for (const auto& f : format_table()) names.emplace_back(f.name);
  }
  const size_t n = dump.n_tokens, d = dump.head_dim, Hq = dump.n_heads, Hkv = dump.n_kv_heads;
  if (n == 0 || d == 0 || Hkv == 0 || Hq % Hkv != 0) throw InvalidArgument("eval-kv: inconsistent dump");
  const size_t group = Hq / Hkv;
  const size_t n_q = std::min(std::max<size_t>(options.max_queries, 1), n);
  std::vector<size_t> qtok(n_q);  // evenly spaced query tokens, the last one included
  for (size_t i = 0; i < n_q; ++i) qtok[i] = n_q == 1 ? n - 1 : (n - 1) * (i + 1) / n_q;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));

  std::vector<KvEvalRow> rows;
  for (const auto& name : names) {
    const FormatSpec& f = find_format(name);
    KvEvalRow r;
    r.format = name;
    r.bytes_per_vector = format_layout(f, d).bytes_per_vector();
    size_t nk = 0, nv = 0;
    double ip_s = 0, ip_s2 = 0, ip_ref2 = 0, ak = 0, av = 0, akv = 0;
    size_t n_att = 0;
    for (const auto& L : dump.layers) {
      for (size_t h = 0; h < Hkv; ++h) {
        const Codec kc(f, d, RotationSeed{options.seed, L.layer, static_cast<uint32_t>(h), KvRole::K});
        const Codec vc(f, d, RotationSeed{options.seed, L.layer, static_cast<uint32_t>(h), KvRole::V});
        std::vector<float> k(n * d), v(n * d);  // n_tokens x head_dim of this head
        for (size_t t = 0; t < n; ++t) {
          std::copy_n(&L.k[(t * Hkv + h) * d], d, &k[t * d]);
          std::copy_n(&L.v[(t * Hkv + h) * d], d, &v[t * d]);
        }
        r.k_dmse += normalized_sq_error(kc, n, k.data(), nk);
        r.v_dmse += normalized_sq_error(vc, n, v.data(), nv);
        const auto kh = roundtrip(kc, n, k.data()), vh = roundtrip(vc, n, v.data());
        std::vector<double> s_ex(n), s_q(n), o(d), o_k(d), o_v(d), o_kv(d);
        for (size_t g = 0; g < group; ++g) {
          const size_t qh = h * group + g;
          for (size_t t : qtok) {
            const float* q = &L.q[(t * Hq + qh) * d];
            for (size_t s = 0; s <= t; ++s) {
              double a = 0, b = 0;
              for (size_t j = 0; j < d; ++j) {
                a += static_cast<double>(q[j]) * k[s * d + j];
                b += static_cast<double>(q[j]) * kh[s * d + j];
              }
              s_ex[s] = a * scale;
              s_q[s] = b * scale;
              ip_s += b - a;
              ip_s2 += (b - a) * (b - a);
              ip_ref2 += a * a;
              ++r.n_pairs;
            }
            attend(s_ex, t + 1, v.data(), d, o);
            attend(s_q, t + 1, v.data(), d, o_k);
            attend(s_ex, t + 1, vh.data(), d, o_v);
            attend(s_q, t + 1, vh.data(), d, o_kv);
            ak += rel_err(o_k, o);
            av += rel_err(o_v, o);
            akv += rel_err(o_kv, o);
            ++n_att;
          }
        }
      }
    }
    r.n_vectors = nk;
    r.n_queries = n_att;
    r.k_dmse = nk ? r.k_dmse / static_cast<double>(nk) : 0;
    r.v_dmse = nv ? r.v_dmse / static_cast<double>(nv) : 0;
    const double np = static_cast<double>(std::max<size_t>(r.n_pairs, 1));
    r.ip_bias = ip_s / np;
    r.ip_rmse = std::sqrt(ip_s2 / np);
    r.ip_rel_rmse = ip_ref2 > 0 ? r.ip_rmse / std::sqrt(ip_ref2 / np) : 0;
    const double na = static_cast<double>(std::max<size_t>(n_att, 1));
    r.attn_rel_k = ak / na;
    r.attn_rel_v = av / na;
    r.attn_rel_kv = akv / na;
    rows.push_back(r);
  }
  return rows;
}

}  // namespace rq
