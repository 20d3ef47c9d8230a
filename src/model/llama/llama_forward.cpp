// LlamaRunner: the batched forward pass. Matmuls over the whole batch, attention per token over
// the compressed cache (tokens of the batch are appended first, token i then sees 0..p0+i).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <string>

#include "matmul.hpp"
#include "rq/core/errors.hpp"
#include "rq/kvcache/kv_attention.hpp"
#include "rq/model/llama.hpp"
#include "rq/threads/thread_pool.hpp"

namespace rq::model {

int model_threads() { return ThreadPool::global().threads(); }

void set_model_threads(int n) {
  if (n > 0) ThreadPool::set_global_threads(n);
}

namespace {

// y[E] = x[E] / sqrt(mean(x^2) + eps) * w[E]
void rmsnorm(const float* x, const float* w, size_t E, float eps, float* y) {
  double ss = 0.0;
  for (size_t j = 0; j < E; ++j) ss += static_cast<double>(x[j]) * x[j];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(E) + eps));
  for (size_t j = 0; j < E; ++j) y[j] = x[j] * inv * w[j];
}

// Rotate n_heads heads of head_dim at `pos` in place: x: n_heads x head_dim.
void rope(const LlamaHParams& hp, const std::vector<float>& factors, size_t pos, size_t n_heads, float* x) {
  const size_t half = hp.n_rot / 2;
  float cs[512], sn[512];  // half <= head_dim / 2; head_dim checked at load to be sane below
  for (size_t i = 0; i < half; ++i) {
    double theta = static_cast<double>(pos) * hp.rope_freq_scale *
                   std::pow(static_cast<double>(hp.rope_base), -2.0 * static_cast<double>(i) / static_cast<double>(hp.n_rot));
    if (!factors.empty()) theta /= factors[i];
    cs[i] = static_cast<float>(std::cos(theta));
    sn[i] = static_cast<float>(std::sin(theta));
  }
  for (size_t h = 0; h < n_heads; ++h) {
    float* v = x + h * hp.head_dim;
    for (size_t i = 0; i < half; ++i) {
      const size_t a = hp.rope_style == RopeStyle::NeoX ? i : 2 * i;
      const size_t b = hp.rope_style == RopeStyle::NeoX ? i + half : 2 * i + 1;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cs[i] - x1 * sn[i];
      v[b] = x0 * sn[i] + x1 * cs[i];
    }
  }
}

void add_bias(float* y, const std::vector<float>& b, size_t n) {
  if (b.empty()) return;
  for (size_t t = 0; t < n; ++t)
    for (size_t j = 0; j < b.size(); ++j) y[t * b.size() + j] += b[j];
}

}  // namespace

LlamaRunner::LlamaRunner(const LlamaModel& model, PagedKvCache& cache) : model_(model), cache_(cache) {
  const LlamaHParams& hp = model_.hparams();
  if (cache.n_layers() != hp.n_layers || cache.n_kv_heads() != hp.n_kv_heads || cache.head_dim() != hp.head_dim) {
    throw InvalidArgument("llama: KV cache shape (" + std::to_string(cache.n_layers()) + " layers, " +
                          std::to_string(cache.n_kv_heads()) + " kv heads, dim " + std::to_string(cache.head_dim()) +
                          ") does not match the model");
  }
  if (hp.n_rot / 2 > 512) throw InvalidArgument("llama: rope dimension too large");
}

std::vector<float> LlamaRunner::forward_last(SeqId seq, const std::vector<int32_t>& tokens) {
  if (tokens.empty()) throw InvalidArgument("llama: no tokens");
  std::vector<float> logits(model_.hparams().n_vocab);
  forward(seq, tokens.data(), tokens.size(), tokens.size() - 1, logits.data());
  return logits;
}

void LlamaRunner::forward(SeqId seq, const int32_t* tokens, size_t n, size_t logits_from, float* logits) {
  const LlamaHParams& hp = model_.hparams();
  if (n == 0) return;
  if (tokens == nullptr) throw InvalidArgument("llama: null tokens");
  if (logits_from < n && logits == nullptr) throw InvalidArgument("llama: null logits buffer");
  for (size_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || static_cast<size_t>(tokens[i]) >= hp.n_vocab) {
      throw InvalidArgument("llama: token id " + std::to_string(tokens[i]) + " outside the vocabulary (" +
                            std::to_string(hp.n_vocab) + ")");
    }
  }
  const size_t len = cache_.length(seq, 0);
  if (len + n > cache_.config().max_tokens_per_seq) {
    throw CapacityError("llama: context of " + std::to_string(len + n) + " tokens exceeds the cache limit of " +
                        std::to_string(cache_.config().max_tokens_per_seq));
  }
  for (size_t b0 = 0; b0 < n; b0 += batch_) {
    const size_t nb = std::min(batch_, n - b0);
    // logits rows of this batch: tokens max(logits_from, b0) .. b0+nb
    const size_t from = std::max(logits_from, b0);
    float* lg = from < b0 + nb ? logits + (from - logits_from) * hp.n_vocab : nullptr;
    forward_batch(seq, tokens + b0, nb, from - b0, lg);
  }
}

void LlamaRunner::forward_batch(SeqId seq, const int32_t* tokens, size_t n, size_t logits_from, float* logits) {
  const LlamaHParams& hp = model_.hparams();
  const size_t E = hp.n_embd, d = hp.head_dim, Hq = hp.n_heads, Hkv = hp.n_kv_heads;
  const size_t Dq = Hq * d, Dkv = Hkv * d, F = hp.n_ff;
  const size_t p0 = cache_.length(seq, 0);
  for (size_t l = 1; l < hp.n_layers; ++l) {
    if (cache_.length(seq, l) != p0) throw InvalidArgument("llama: cache layers out of step for this sequence");
  }
  x_.resize(n * E);     // n x E residual stream
  xn_.resize(n * E);    // n x E normed
  q_.resize(n * Dq);    // n x (n_heads x head_dim)
  k_.resize(n * Dkv);   // n x (n_kv_heads x head_dim)
  v_.resize(n * Dkv);   // n x (n_kv_heads x head_dim)
  att_.resize(n * Dq);  // n x (n_heads x head_dim)
  gate_.resize(n * F);  // n x F
  up_.resize(n * F);    // n x F

  const Weight& emb = model_.token_embd();
  const size_t erb = row_bytes(emb.type, E);
  for (size_t t = 0; t < n; ++t) {
    dequantize_row(emb.type, static_cast<const uint8_t*>(emb.data) + static_cast<size_t>(tokens[t]) * erb, &x_[t * E], E);
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (size_t l = 0; l < hp.n_layers; ++l) {
    const LlamaLayer& L = model_.layer(l);
    for (size_t t = 0; t < n; ++t) rmsnorm(&x_[t * E], L.attn_norm.data(), E, hp.rms_eps, &xn_[t * E]);
    detail::matmul(L.wq, n, xn_.data(), q_.data());
    detail::matmul(L.wk, n, xn_.data(), k_.data());
    detail::matmul(L.wv, n, xn_.data(), v_.data());
    add_bias(q_.data(), L.bq, n);
    add_bias(k_.data(), L.bk, n);
    add_bias(v_.data(), L.bv, n);
    for (size_t t = 0; t < n; ++t) {
      rope(hp, model_.rope_freq_factors(), p0 + t, Hq, &q_[t * Dq]);
      rope(hp, model_.rope_freq_factors(), p0 + t, Hkv, &k_[t * Dkv]);
      if (observer_ != nullptr) observer_->observe(l, p0 + t, &q_[t * Dq], &k_[t * Dkv], &v_[t * Dkv]);
    }
    // Quantize every token of the batch into the cache, then attend from the cache only.
    const auto kv_start = std::chrono::steady_clock::now();
    cache_.append(seq, l, n, k_.data(), v_.data());
    attend_cache_causal(cache_, seq, l, p0, n, Hq, q_.data(), scale, att_.data());
    kv_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - kv_start).count();
    detail::matmul(L.wo, n, att_.data(), xn_.data());  // xn_ reused as n x E output
    for (size_t i = 0; i < n * E; ++i) x_[i] += xn_[i];

    for (size_t t = 0; t < n; ++t) rmsnorm(&x_[t * E], L.ffn_norm.data(), E, hp.rms_eps, &xn_[t * E]);
    detail::matmul(L.w_gate, n, xn_.data(), gate_.data());
    detail::matmul(L.w_up, n, xn_.data(), up_.data());
    for (size_t i = 0; i < n * F; ++i) {
      const float g = gate_[i];
      gate_[i] = g / (1.0f + std::exp(-g)) * up_[i];
    }
    detail::matmul(L.w_down, n, gate_.data(), xn_.data());
    for (size_t i = 0; i < n * E; ++i) x_[i] += xn_[i];
  }
  if (logits_from >= n) return;
  const size_t n_out = n - logits_from;
  for (size_t t = 0; t < n_out; ++t) {
    rmsnorm(&x_[(logits_from + t) * E], model_.output_norm().data(), E, hp.rms_eps, &xn_[t * E]);
  }
  detail::matmul(model_.output(), n_out, xn_.data(), logits);  // n_out x n_vocab
}

}  // namespace rq::model
