// A paged, multi-sequence, compressed KV cache.
//
// Layout (designed for a continuous-batching server):
// - one page pool per layer; a page holds `page_size` token slots for every KV head;
// - inside a page, for each kv head h: K codes plane, K side plane, V codes plane, V side plane,
//   each `page_size` rows (rows as in docs/formats.md), each plane starting 16-byte aligned. One
//   head's tokens of one page therefore form an rq::PageSpan (codes + side planes);
// - each sequence owns a page table per layer (page indices into that layer's pool);
// - every token is quantized when it is appended, with one rq::Codec per (layer, head, K/V) whose
//   rotation is seeded by RotationSeed{seed, layer, head, role}.
//
// Optional fp16 copies ("sinks": the first N tokens, "window": the last W tokens of each sequence)
// are kept beside the compressed pages (the compressed copy is always written too, so token
// positions never move); attention then reads those tokens from the fp16 copy. Off by default; their
// bytes are counted in bytes_allocated().
//
// Not thread-safe for concurrent mutation; const methods may run concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rq/attention/attention.hpp"
#include "rq/codec/codec.hpp"

namespace rq {

struct KvCacheConfig {
  size_t n_layers = 0;
  size_t n_kv_heads = 0;
  size_t head_dim = 0;
  std::string k_format = "f16";       // a name from the format table (rq::find_format)
  std::string v_format = "f16";
  size_t page_size = 64;              // tokens per page
  size_t max_tokens_per_seq = 1u << 20;  // CapacityError beyond this
  size_t sink_tokens = 0;             // first N tokens also kept (and attended) in fp16
  size_t window_tokens = 0;           // last W tokens also kept (and attended) in fp16
  size_t window_slack = 0;            // extra ring slots so a batch of up to this many appended
                                      // tokens still sees, per token, its own last W tokens in fp16
  uint64_t seed = RotationSeed{}.seed;
};

using SeqId = uint32_t;

/// One contiguous run of a head's tokens together with the codecs that decode it.
struct KvSegment {
  const Codec* k_codec = nullptr;
  const Codec* v_codec = nullptr;
  PageSpan k;  // n_tokens rows
  PageSpan v;  // same n_tokens
};

class PagedKvCache {
 public:
  /// Validates the config (formats exist, dims > 0, page_size > 0); throws rq::InvalidArgument /
  /// rq::UnknownFormat.
  explicit PagedKvCache(const KvCacheConfig& config);
  ~PagedKvCache();
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  const KvCacheConfig& config() const noexcept { return config_; }
  size_t n_layers() const noexcept { return config_.n_layers; }
  size_t n_kv_heads() const noexcept { return config_.n_kv_heads; }
  size_t head_dim() const noexcept { return config_.head_dim; }
  size_t page_size() const noexcept { return config_.page_size; }

  const Codec& codec(size_t layer, size_t head, KvRole role) const;

  /// A new, empty sequence.
  SeqId add_sequence();
  /// Frees the sequence's pages. Throws rq::InvalidArgument for an unknown id.
  void remove_sequence(SeqId seq);
  bool has_sequence(SeqId seq) const noexcept;
  /// Drops every sequence and page.
  void clear();

  /// Tokens stored for (seq, layer).
  size_t length(SeqId seq, size_t layer) const;

  /// Quantize and append n_tokens tokens to (seq, layer):
  /// k, v: n_tokens x n_kv_heads x head_dim floats (token-major).
  /// Everything is validated and encoded before the cache changes: on any throw (unknown seq,
  /// bad layer, NaN/Inf input -> rq::InvalidInput, capacity -> rq::CapacityError) the cache is
  /// unchanged.
  void append(SeqId seq, size_t layer, size_t n_tokens, const float* k, const float* v);

  /// Segments covering tokens [0, n_tokens) of (seq, layer, kv head) in token order. Compressed
  /// pages and (when enabled) fp16 sink/window copies; consecutive pages of one codec are separate
  /// segments. n_tokens <= length(seq, layer).
  std::vector<KvSegment> segments(SeqId seq, size_t layer, size_t head, size_t n_tokens) const;

  /// Whether segments() can return anything other than the compressed pages.
  bool has_fp16_copies() const noexcept { return config_.sink_tokens > 0 || config_.window_tokens > 0; }

  /// Decode the COMPRESSED copy of one token: out[head_dim].
  void decode(SeqId seq, size_t layer, size_t head, KvRole role, size_t token, float* out) const;

  /// Bytes of every buffer the cache holds for data: pages (with their alignment padding) and fp16
  /// sink/window copies. Page tables and codecs are not counted (metadata).
  size_t bytes_allocated() const noexcept { return bytes_pages_ + bytes_fp16_; }
  size_t bytes_pages() const noexcept { return bytes_pages_; }
  size_t bytes_fp16_copies() const noexcept { return bytes_fp16_; }
  /// Bytes one page occupies (all heads, K and V, with padding).
  size_t page_bytes() const noexcept { return page_bytes_; }
  /// Pages currently allocated in all layers.
  size_t pages_in_use() const noexcept;
  /// K + V bytes per token per layer per head as stored (codes + side), without page padding.
  size_t bytes_per_token_per_head() const noexcept;
  /// What an fp16 cache would hold for `n_tokens` tokens in every layer: 2 (K,V) x 2 bytes x d x
  /// n_kv_heads x n_layers x n_tokens.
  size_t f16_bytes(size_t n_tokens) const noexcept;

  /// One-line description: formats, page size, sinks/window when on.
  std::string describe() const;

 private:
  struct Sequence;
  struct Pool;
  Sequence& seq_ref(SeqId seq);
  const Sequence& seq_ref(SeqId seq) const;
  size_t alloc_page(size_t layer);
  void free_page(size_t layer, size_t page);
  size_t plane_offset(size_t head, KvRole role, bool side) const noexcept;
  size_t ring_capacity() const noexcept { return config_.window_tokens + config_.window_slack; }

  KvCacheConfig config_;
  std::vector<Codec> codecs_;  // [layer][head][role]
  std::unique_ptr<Codec> f16_codec_;
  size_t k_code_bytes_ = 0, k_side_bytes_ = 0, v_code_bytes_ = 0, v_side_bytes_ = 0;
  std::vector<size_t> head_offsets_;  // per head: K codes, K side, V codes, V side (4 per head)
  size_t page_bytes_ = 0;
  std::vector<Pool> pools_;  // [layer]
  std::vector<std::unique_ptr<Sequence>> seqs_;  // by SeqId; null when removed
  size_t bytes_pages_ = 0;
  size_t bytes_fp16_ = 0;
};

}  // namespace rq
