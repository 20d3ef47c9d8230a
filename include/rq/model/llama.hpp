// Llama-family decoder (llama, mistral, qwen2, smollm...) on the CPU: float32 activations,
// quantized weights read in place from the GGUF mapping, and a compressed paged KV cache that
// attention reads exclusively (every token's K and V are quantized before it attends).
//
// Per layer, for n tokens at positions p0..p0+n-1 (E = n_embd, Dq = n_heads*head_dim,
// Dkv = n_kv_heads*head_dim, F = n_ff):
//   xn  = rmsnorm(x) * attn_norm                       x, xn: n x E
//   q,k,v = xn Wq^T (+bq), xn Wk^T (+bk), xn Wv^T (+bv)  q: n x Dq, k, v: n x Dkv
//   rope(q, k)  (interleaved pairs (2i, 2i+1) or NeoX half split (i, i + n_rot/2))
//   cache.append(k, v)                                  quantized here
//   att[i] = attention(q[i], cache tokens 0..p0+i)      att: n x Dq
//   x  += att Wo^T
//   xn  = rmsnorm(x) * ffn_norm
//   x  += (silu(xn Wg^T) * (xn Wu^T)) Wd^T              hidden: n x F
// logits = rmsnorm(x) * output_norm . Wout^T (Wout = token_embd when output.weight is absent).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "rq/kvcache/kv_cache.hpp"
#include "rq/model/gguf.hpp"
#include "rq/model/tensor_types.hpp"

namespace rq::model {

/// How RoPE pairs the coordinates of a head.
enum class RopeStyle : uint8_t {
  Interleaved,  // pairs (2i, 2i+1): llama.cpp "normal" (llama/mistral GGUFs have permuted Wq, Wk)
  NeoX,         // pairs (i, i + n_rot/2): GPT-NeoX / qwen2 / HF layout
};

const char* rope_style_name(RopeStyle s) noexcept;

/// Hyper-parameters, all read from the GGUF metadata (`<arch>.*`) and tensor shapes.
struct LlamaHParams {
  std::string arch;          // general.architecture
  size_t n_layers = 0;       // <arch>.block_count
  size_t n_embd = 0;         // <arch>.embedding_length
  size_t n_ff = 0;           // <arch>.feed_forward_length
  size_t n_heads = 0;        // <arch>.attention.head_count
  size_t n_kv_heads = 0;     // <arch>.attention.head_count_kv (default n_heads)
  size_t head_dim = 0;       // <arch>.attention.key_length (default n_embd / n_heads)
  size_t n_vocab = 0;        // rows of token_embd
  size_t n_ctx_train = 0;    // <arch>.context_length
  size_t n_rot = 0;          // <arch>.rope.dimension_count (default head_dim)
  float rms_eps = 1e-5f;     // <arch>.attention.layer_norm_rms_epsilon
  float rope_base = 10000;   // <arch>.rope.freq_base
  float rope_freq_scale = 1; // 1 / <arch>.rope.scaling.factor for "linear" scaling
  RopeStyle rope_style = RopeStyle::Interleaved;
  bool tied_embeddings = false;  // output.weight absent
  bool qkv_bias = false;         // attn_{q,k,v}.bias present (qwen2)

  std::string describe() const;
};

/// One weight matrix (rows x cols, ggml layout: each row of `cols` elements contiguous).
struct Weight {
  GgmlType type = GgmlType::F32;
  const void* data = nullptr;
  size_t rows = 0;
  size_t cols = 0;
};

struct LlamaLayer {
  std::vector<float> attn_norm, ffn_norm;  // E
  std::vector<float> bq, bk, bv;           // Dq, Dkv, Dkv (empty without bias)
  Weight wq, wk, wv, wo, w_gate, w_up, w_down;
};

/// The model: hyper-parameters and views into a GgufFile's mapping (which must outlive it).
class LlamaModel {
 public:
  /// Reads hparams and weights; throws rq::FormatError on missing/inconsistent tensors or
  /// metadata (names the tensor/key), unsupported tensor types, or an unsupported rope scaling.
  static LlamaModel load(const GgufFile& file);

  const LlamaHParams& hparams() const noexcept { return hp_; }
  const LlamaLayer& layer(size_t l) const { return layers_.at(l); }
  const Weight& token_embd() const noexcept { return token_embd_; }
  const Weight& output() const noexcept { return output_; }
  const std::vector<float>& output_norm() const noexcept { return output_norm_; }
  /// Per-pair frequency divisors from rope_freqs.weight (llama3), empty if absent: n_rot / 2.
  const std::vector<float>& rope_freq_factors() const noexcept { return rope_factors_; }
  /// Bytes of all weights referenced.
  size_t weight_bytes() const noexcept { return weight_bytes_; }

  /// KV cache config for this model's shape with the given formats (other fields default).
  KvCacheConfig cache_config(const std::string& k_format, const std::string& v_format) const;

 private:
  LlamaHParams hp_;
  std::vector<LlamaLayer> layers_;
  Weight token_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<float> rope_factors_;
  size_t weight_bytes_ = 0;
};

/// Per-token hook on the post-RoPE q (n_heads x head_dim), k, v (n_kv_heads x head_dim) of one
/// layer: used by kv-dump. Called in token order.
struct QkvObserver {
  virtual ~QkvObserver() = default;
  virtual void observe(size_t layer, size_t position, const float* q, const float* k, const float* v) = 0;
};

/// Runs the forward pass for one sequence of a PagedKvCache. Holds scratch buffers; one
/// LlamaRunner per thread of control.
class LlamaRunner {
 public:
  LlamaRunner(const LlamaModel& model, PagedKvCache& cache);

  /// Evaluate tokens[0..n) at the next positions of `seq` (appending their K/V to the cache in
  /// every layer), in batches of at most `batch` tokens. Logits of tokens i >= logits_from are
  /// written to logits: (n - logits_from) x n_vocab floats (logits may be null if logits_from >= n).
  /// Throws rq::InvalidArgument for token ids outside the vocabulary, rq::CapacityError when the
  /// cache is full (both checked before anything is appended). If a cache append fails later
  /// (e.g. rq::InvalidInput for a non-finite activation), earlier layers already hold the batch:
  /// the sequence is then out of step (the next forward throws) and should be removed.
  void forward(SeqId seq, const int32_t* tokens, size_t n, size_t logits_from, float* logits);

  /// Convenience: logits of the last token only (n_vocab floats).
  std::vector<float> forward_last(SeqId seq, const std::vector<int32_t>& tokens);

  void set_batch(size_t batch) { batch_ = batch == 0 ? 1 : batch; }
  void set_observer(QkvObserver* obs) { observer_ = obs; }
  /// Wall seconds spent in the KV cache (quantize-and-append plus attention over the compressed
  /// pages, all layers) since construction or the last reset: the share of a step that the cache
  /// format decides.
  double kv_cache_seconds() const noexcept { return kv_seconds_; }
  void reset_kv_cache_seconds() noexcept { kv_seconds_ = 0.0; }
  const LlamaModel& model() const noexcept { return model_; }
  PagedKvCache& cache() noexcept { return cache_; }

 private:
  void forward_batch(SeqId seq, const int32_t* tokens, size_t n, size_t logits_from, float* logits);

  const LlamaModel& model_;
  PagedKvCache& cache_;
  size_t batch_ = 256;
  QkvObserver* observer_ = nullptr;
  double kv_seconds_ = 0.0;
  // scratch, sized for batch_ tokens
  std::vector<float> x_, xn_, q_, k_, v_, att_, gate_, up_;
};

/// Number of threads used by the model (rq::ThreadPool::global(): the machine's hardware threads by default).
int model_threads();
/// Set the thread count of rq::ThreadPool::global() (<= 0: leave as is).
void set_model_threads(int n);

}  // namespace rq::model
