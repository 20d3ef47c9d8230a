// LlamaModel::load: hyper-parameters from `<arch>.*` metadata, weights as views into the mapping.
#include <cmath>
#include <string>

#include "rq/core/errors.hpp"
#include "rq/model/llama.hpp"

namespace rq::model {

const char* rope_style_name(RopeStyle s) noexcept { return s == RopeStyle::NeoX ? "neox" : "interleaved"; }

std::string LlamaHParams::describe() const {
  return arch + ": " + std::to_string(n_layers) + " layers, n_embd " + std::to_string(n_embd) + ", heads " +
         std::to_string(n_heads) + "/" + std::to_string(n_kv_heads) + " kv, head_dim " + std::to_string(head_dim) +
         ", n_ff " + std::to_string(n_ff) + ", vocab " + std::to_string(n_vocab) + ", rope " +
         rope_style_name(rope_style) + " base " + std::to_string(rope_base) +
         (rope_freq_scale != 1.0f ? " scale " + std::to_string(rope_freq_scale) : std::string()) +
         (tied_embeddings ? ", tied embeddings" : "") + (qkv_bias ? ", qkv bias" : "");
}

namespace {

Weight weight(const GgufFile& f, const std::string& name, size_t rows, size_t cols, size_t& bytes) {
  const GgufTensorInfo& t = f.tensor(name);
  if (t.n_dims > 2 || t.ne[0] != cols || t.n_rows() != rows) {
    throw FormatError("tensor " + name + ": shape [" + std::to_string(t.ne[0]) + ", " + std::to_string(t.n_rows()) +
                      "], expected [" + std::to_string(cols) + ", " + std::to_string(rows) + "]");
  }
  if (!is_compute_supported(t.type)) {
    throw FormatError("tensor " + name + ": unsupported tensor type " + type_name(t.type));
  }
  bytes += t.n_bytes;
  return Weight{t.type, f.tensor_data(t), rows, cols};
}

std::vector<float> vector_f32(const GgufFile& f, const std::string& name, size_t n, size_t& bytes) {
  Weight w = weight(f, name, 1, n, bytes);
  std::vector<float> out(n);
  dequantize_row(w.type, w.data, out.data(), n);
  return out;
}

}  // namespace

LlamaModel LlamaModel::load(const GgufFile& f) {
  LlamaModel m;
  LlamaHParams& hp = m.hp_;
  hp.arch = f.get_string("general.architecture");
  const std::string a = hp.arch + ".";
  static const char* kSupported[] = {"llama", "mistral", "qwen2", "smollm", "granite"};
  bool ok = false;
  for (const char* s : kSupported) ok = ok || hp.arch == s;
  if (!ok) throw FormatError("unsupported model architecture '" + hp.arch + "' (llama-family only)");
  hp.n_layers = f.get_u32(a + "block_count");
  hp.n_embd = f.get_u32(a + "embedding_length");
  hp.n_ff = f.get_u32(a + "feed_forward_length");
  hp.n_heads = f.get_u32(a + "attention.head_count");
  hp.n_kv_heads = f.get_u32(a + "attention.head_count_kv", static_cast<uint32_t>(hp.n_heads));
  if (hp.n_layers == 0 || hp.n_embd == 0 || hp.n_ff == 0 || hp.n_heads == 0 || hp.n_kv_heads == 0) {
    throw FormatError("model metadata: zero layers, width or heads");
  }
  if (hp.n_layers > 4096 || hp.n_heads > 4096 || hp.n_embd > (1u << 20) || hp.n_ff > (1u << 22)) {
    throw FormatError("model metadata: absurd dimensions");
  }
  if (hp.n_heads % hp.n_kv_heads != 0) {
    throw FormatError("model metadata: head_count " + std::to_string(hp.n_heads) + " not a multiple of head_count_kv " +
                      std::to_string(hp.n_kv_heads));
  }
  hp.head_dim = f.get_u32(a + "attention.key_length", static_cast<uint32_t>(hp.n_embd / hp.n_heads));
  if (hp.head_dim == 0 || hp.head_dim % 2 != 0) throw FormatError("model metadata: head_dim must be even and > 0");
  if (f.get_u32(a + "attention.value_length", static_cast<uint32_t>(hp.head_dim)) != hp.head_dim) {
    throw FormatError("model metadata: value_length != key_length is not supported");
  }
  hp.n_ctx_train = f.get_u32(a + "context_length", 2048);
  hp.n_rot = f.get_u32(a + "rope.dimension_count", static_cast<uint32_t>(hp.head_dim));
  if (hp.n_rot == 0 || hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0) throw FormatError("model metadata: bad rope.dimension_count");
  hp.rms_eps = f.get_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  hp.rope_base = f.get_f32(a + "rope.freq_base", 10000.0f);
  if (!(hp.rope_base > 1.0f)) throw FormatError("model metadata: rope.freq_base must be > 1");
  const std::string scaling = f.get_string(a + "rope.scaling.type", "none");
  if (scaling == "linear") {
    const float factor = f.get_f32(a + "rope.scaling.factor", 1.0f);
    if (!(factor > 0.0f)) throw FormatError("model metadata: rope.scaling.factor must be > 0");
    hp.rope_freq_scale = 1.0f / factor;
  } else if (scaling != "none") {
    throw FormatError("unsupported rope scaling type '" + scaling + "'");
  } else if (f.has(a + "rope.scale_linear")) {
    hp.rope_freq_scale = 1.0f / f.get_f32(a + "rope.scale_linear");
  }
  // llama.cpp: llama/mistral/granite store Wq/Wk permuted for interleaved pairs; qwen2 is NeoX.
  hp.rope_style = hp.arch == "qwen2" ? RopeStyle::NeoX : RopeStyle::Interleaved;

  size_t& bytes = m.weight_bytes_;
  const GgufTensorInfo& emb = f.tensor("token_embd.weight");
  hp.n_vocab = emb.n_rows();
  if (hp.n_vocab == 0) throw FormatError("token_embd.weight has no rows");
  const size_t E = hp.n_embd, Dq = hp.n_heads * hp.head_dim, Dkv = hp.n_kv_heads * hp.head_dim;
  m.token_embd_ = weight(f, "token_embd.weight", hp.n_vocab, E, bytes);
  m.output_norm_ = vector_f32(f, "output_norm.weight", E, bytes);
  hp.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  m.output_ = hp.tied_embeddings ? m.token_embd_ : weight(f, "output.weight", hp.n_vocab, E, bytes);
  if (f.find_tensor("rope_freqs.weight") != nullptr) m.rope_factors_ = vector_f32(f, "rope_freqs.weight", hp.n_rot / 2, bytes);
  hp.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  m.layers_.resize(hp.n_layers);
  for (size_t l = 0; l < hp.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LlamaLayer& L = m.layers_[l];
    L.attn_norm = vector_f32(f, p + "attn_norm.weight", E, bytes);
    L.ffn_norm = vector_f32(f, p + "ffn_norm.weight", E, bytes);
    L.wq = weight(f, p + "attn_q.weight", Dq, E, bytes);
    L.wk = weight(f, p + "attn_k.weight", Dkv, E, bytes);
    L.wv = weight(f, p + "attn_v.weight", Dkv, E, bytes);
    L.wo = weight(f, p + "attn_output.weight", E, Dq, bytes);
    L.w_gate = weight(f, p + "ffn_gate.weight", hp.n_ff, E, bytes);
    L.w_up = weight(f, p + "ffn_up.weight", hp.n_ff, E, bytes);
    L.w_down = weight(f, p + "ffn_down.weight", E, hp.n_ff, bytes);
    if (hp.qkv_bias) {
      L.bq = vector_f32(f, p + "attn_q.bias", Dq, bytes);
      L.bk = vector_f32(f, p + "attn_k.bias", Dkv, bytes);
      L.bv = vector_f32(f, p + "attn_v.bias", Dkv, bytes);
    }
  }
  return m;
}

KvCacheConfig LlamaModel::cache_config(const std::string& k_format, const std::string& v_format) const {
  KvCacheConfig c;
  c.n_layers = hp_.n_layers;
  c.n_kv_heads = hp_.n_kv_heads;
  c.head_dim = hp_.head_dim;
  c.k_format = k_format;
  c.v_format = v_format;
  return c;
}

}  // namespace rq::model
