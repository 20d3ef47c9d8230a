// PagedKvCache: page pools per layer, page tables per sequence, quantize-on-append.
#include "rq/kvcache/kv_cache.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "rq/core/errors.hpp"
#include "rq/core/half.hpp"

namespace rq {

namespace {

constexpr size_t kPlaneAlign = 16;

size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

}  // namespace

struct PagedKvCache::Pool {
  std::vector<std::unique_ptr<uint8_t[]>> pages;  // null = free slot
  std::vector<size_t> free_slots;
  size_t in_use = 0;
};

struct PagedKvCache::Sequence {
  std::vector<std::vector<size_t>> page_table;  // [layer] -> page indices in that layer's pool
  std::vector<size_t> length;                   // [layer] tokens stored
  // fp16 copies, per layer (allocated on first append): [role K,V][head][slot][head_dim] halves
  std::vector<std::vector<uint16_t>> sinks;   // slot = token, token < sink_tokens
  std::vector<std::vector<uint16_t>> window;  // ring: slot = token % (window_tokens + window_slack)
};

PagedKvCache::PagedKvCache(const KvCacheConfig& config) : config_(config) {
  if (config_.n_layers == 0 || config_.n_kv_heads == 0 || config_.head_dim == 0) {
    throw InvalidArgument("kv cache: n_layers, n_kv_heads and head_dim must be > 0");
  }
  if (config_.page_size == 0) throw InvalidArgument("kv cache: page_size must be > 0");
  if (config_.max_tokens_per_seq == 0) throw InvalidArgument("kv cache: max_tokens_per_seq must be > 0");
  const FormatSpec& kf = find_format(config_.k_format);
  const FormatSpec& vf = find_format(config_.v_format);
  codecs_.reserve(config_.n_layers * config_.n_kv_heads * 2);
  for (size_t l = 0; l < config_.n_layers; ++l) {
    for (size_t h = 0; h < config_.n_kv_heads; ++h) {
      for (KvRole role : {KvRole::K, KvRole::V}) {
        RotationSeed seed{config_.seed, static_cast<uint32_t>(l), static_cast<uint32_t>(h), role};
        codecs_.emplace_back(role == KvRole::K ? kf : vf, config_.head_dim, seed);
      }
    }
  }
  f16_codec_ = std::make_unique<Codec>(find_format("f16"), config_.head_dim);
  const FormatLayout kl = codecs_[0].layout();
  const FormatLayout vl = codecs_[1].layout();
  k_code_bytes_ = kl.code_bytes;
  k_side_bytes_ = kl.side_bytes;
  v_code_bytes_ = vl.code_bytes;
  v_side_bytes_ = vl.side_bytes;
  // Page layout: for each head, 4 planes of page_size rows, each plane 16-byte aligned.
  size_t off = 0;
  const size_t ps = config_.page_size;
  for (size_t h = 0; h < config_.n_kv_heads; ++h) {
    for (size_t row_bytes : {k_code_bytes_, k_side_bytes_, v_code_bytes_, v_side_bytes_}) {
      head_offsets_.push_back(off);
      off = align_up(off + ps * row_bytes, kPlaneAlign);
    }
  }
  page_bytes_ = std::max<size_t>(off, kPlaneAlign);
  pools_.resize(config_.n_layers);
}

PagedKvCache::~PagedKvCache() = default;

const Codec& PagedKvCache::codec(size_t layer, size_t head, KvRole role) const {
  if (layer >= config_.n_layers || head >= config_.n_kv_heads) {
    throw InvalidArgument("kv cache: layer/head out of range");
  }
  return codecs_[(layer * config_.n_kv_heads + head) * 2 + static_cast<size_t>(role)];
}

size_t PagedKvCache::plane_offset(size_t head, KvRole role, bool side) const noexcept {
  return head_offsets_[head * 4 + static_cast<size_t>(role) * 2 + (side ? 1 : 0)];
}

SeqId PagedKvCache::add_sequence() {
  auto s = std::make_unique<Sequence>();
  s->page_table.resize(config_.n_layers);
  s->length.assign(config_.n_layers, 0);
  s->sinks.resize(config_.n_layers);
  s->window.resize(config_.n_layers);
  for (size_t i = 0; i < seqs_.size(); ++i) {
    if (!seqs_[i]) {
      seqs_[i] = std::move(s);
      return static_cast<SeqId>(i);
    }
  }
  seqs_.push_back(std::move(s));
  return static_cast<SeqId>(seqs_.size() - 1);
}

bool PagedKvCache::has_sequence(SeqId seq) const noexcept { return seq < seqs_.size() && seqs_[seq] != nullptr; }

PagedKvCache::Sequence& PagedKvCache::seq_ref(SeqId seq) {
  if (!has_sequence(seq)) throw InvalidArgument("kv cache: unknown sequence id " + std::to_string(seq));
  return *seqs_[seq];
}

const PagedKvCache::Sequence& PagedKvCache::seq_ref(SeqId seq) const {
  if (!has_sequence(seq)) throw InvalidArgument("kv cache: unknown sequence id " + std::to_string(seq));
  return *seqs_[seq];
}

void PagedKvCache::remove_sequence(SeqId seq) {
  Sequence& s = seq_ref(seq);
  for (size_t l = 0; l < config_.n_layers; ++l) {
    for (size_t p : s.page_table[l]) free_page(l, p);
    bytes_fp16_ -= (s.sinks[l].size() + s.window[l].size()) * sizeof(uint16_t);
  }
  seqs_[seq].reset();
}

void PagedKvCache::clear() {
  seqs_.clear();
  for (auto& pool : pools_) pool = Pool{};
  bytes_pages_ = 0;
  bytes_fp16_ = 0;
}

size_t PagedKvCache::length(SeqId seq, size_t layer) const {
  const Sequence& s = seq_ref(seq);
  if (layer >= config_.n_layers) throw InvalidArgument("kv cache: layer out of range");
  return s.length[layer];
}

size_t PagedKvCache::alloc_page(size_t layer) {
  Pool& pool = pools_[layer];
  size_t idx;
  if (!pool.free_slots.empty()) {
    idx = pool.free_slots.back();
    pool.free_slots.pop_back();
  } else {
    idx = pool.pages.size();
    pool.pages.emplace_back();
  }
  // Zero-filled so that padding bytes are deterministic.
  pool.pages[idx] = std::make_unique<uint8_t[]>(page_bytes_);
  ++pool.in_use;
  bytes_pages_ += page_bytes_;
  return idx;
}

void PagedKvCache::free_page(size_t layer, size_t page) {
  Pool& pool = pools_[layer];
  pool.pages[page].reset();
  pool.free_slots.push_back(page);
  --pool.in_use;
  bytes_pages_ -= page_bytes_;
}

size_t PagedKvCache::pages_in_use() const noexcept {
  size_t n = 0;
  for (const auto& pool : pools_) n += pool.in_use;
  return n;
}

size_t PagedKvCache::bytes_per_token_per_head() const noexcept {
  return k_code_bytes_ + k_side_bytes_ + v_code_bytes_ + v_side_bytes_;
}

size_t PagedKvCache::f16_bytes(size_t n_tokens) const noexcept {
  return 2 * 2 * config_.head_dim * config_.n_kv_heads * config_.n_layers * n_tokens;
}

void PagedKvCache::append(SeqId seq, size_t layer, size_t n_tokens, const float* k, const float* v) {
  Sequence& s = seq_ref(seq);
  if (layer >= config_.n_layers) throw InvalidArgument("kv cache: layer out of range");
  if (n_tokens == 0) return;
  if (k == nullptr || v == nullptr) throw InvalidArgument("kv cache: null k or v");
  const size_t len = s.length[layer];
  if (len + n_tokens > config_.max_tokens_per_seq) {
    throw CapacityError("kv cache: sequence would exceed " + std::to_string(config_.max_tokens_per_seq) +
                        " tokens");
  }
  const size_t H = config_.n_kv_heads, d = config_.head_dim, ps = config_.page_size;
  const bool need_f16 = config_.sink_tokens > 0 || config_.window_tokens > 0;
  if (need_f16) {
    for (const float* x : {k, v}) {
      for (size_t i = 0; i < n_tokens * H * d; ++i) {
        if (!(std::fabs(x[i]) <= kHalfMax)) {
          throw InvalidInput("kv cache: value not representable in fp16 (sink/window copy): " + std::to_string(x[i]));
        }
      }
    }
  }

  // 1. Encode everything into scratch (the codec validates and throws before we touch the cache).
  // head-major scratch: [head][token] rows.
  std::vector<float> gather(n_tokens * d);                      // n_tokens x d, one head
  std::vector<uint8_t> kc(H * n_tokens * k_code_bytes_), ks(H * n_tokens * k_side_bytes_);
  std::vector<uint8_t> vc(H * n_tokens * v_code_bytes_), vs(H * n_tokens * v_side_bytes_);
  for (size_t h = 0; h < H; ++h) {
    for (KvRole role : {KvRole::K, KvRole::V}) {
      const float* src = role == KvRole::K ? k : v;
      for (size_t t = 0; t < n_tokens; ++t) std::memcpy(&gather[t * d], src + (t * H + h) * d, d * sizeof(float));
      const bool isk = role == KvRole::K;
      const size_t cb = isk ? k_code_bytes_ : v_code_bytes_, sb = isk ? k_side_bytes_ : v_side_bytes_;
      uint8_t* codes = (isk ? kc.data() : vc.data()) + h * n_tokens * cb;
      uint8_t* side = (isk ? ks.data() : vs.data()) + h * n_tokens * sb;
      codec(layer, h, role).encode(n_tokens, gather.data(), codes, side);
    }
  }

  // 2. Allocate pages (rolled back if allocation throws) and fp16 copies.
  auto& table = s.page_table[layer];
  const size_t pages_needed = (len + n_tokens + ps - 1) / ps;
  const size_t old_pages = table.size();
  try {
    while (table.size() < pages_needed) table.push_back(alloc_page(layer));
    if (config_.sink_tokens > 0 && s.sinks[layer].empty()) {
      s.sinks[layer].assign(2 * H * config_.sink_tokens * d, 0);
      bytes_fp16_ += s.sinks[layer].size() * sizeof(uint16_t);
    }
    if (config_.window_tokens > 0 && s.window[layer].empty()) {
      s.window[layer].assign(2 * H * ring_capacity() * d, 0);
      bytes_fp16_ += s.window[layer].size() * sizeof(uint16_t);
    }
  } catch (...) {
    while (table.size() > old_pages) {
      free_page(layer, table.back());
      table.pop_back();
    }
    throw;
  }

  // 3. Copy rows into the pages (nothing below throws).
  Pool& pool = pools_[layer];
  for (size_t t = 0; t < n_tokens; ++t) {
    const size_t pos = len + t;
    uint8_t* page = pool.pages[table[pos / ps]].get();
    const size_t slot = pos % ps;
    for (size_t h = 0; h < H; ++h) {
      const size_t row = h * n_tokens + t;
      // Side planes can be empty (f16, f32): never form a pointer into an empty vector.
      auto copy_row = [&](KvRole role, bool side, const std::vector<uint8_t>& src, size_t bytes) {
        if (bytes) std::memcpy(page + plane_offset(h, role, side) + slot * bytes, src.data() + row * bytes, bytes);
      };
      copy_row(KvRole::K, false, kc, k_code_bytes_);
      copy_row(KvRole::K, true, ks, k_side_bytes_);
      copy_row(KvRole::V, false, vc, v_code_bytes_);
      copy_row(KvRole::V, true, vs, v_side_bytes_);
    }
    // fp16 copies: layout [role][head][slot][d]
    auto put_f16 = [&](std::vector<uint16_t>& store, size_t n_slots, size_t slot16) {
      for (size_t r = 0; r < 2; ++r) {
        const float* src = r == 0 ? k : v;
        for (size_t h = 0; h < H; ++h) {
          uint16_t* dst = &store[((r * H + h) * n_slots + slot16) * d];
          const float* x = src + (t * H + h) * d;
          for (size_t j = 0; j < d; ++j) dst[j] = float_to_half(x[j]);
        }
      }
    };
    if (pos < config_.sink_tokens) put_f16(s.sinks[layer], config_.sink_tokens, pos);
    if (config_.window_tokens > 0) put_f16(s.window[layer], ring_capacity(), pos % ring_capacity());
  }
  s.length[layer] = len + n_tokens;
}

std::vector<KvSegment> PagedKvCache::segments(SeqId seq, size_t layer, size_t head, size_t n_tokens) const {
  const Sequence& s = seq_ref(seq);
  if (layer >= config_.n_layers || head >= config_.n_kv_heads) throw InvalidArgument("kv cache: layer/head out of range");
  if (n_tokens > s.length[layer]) {
    throw InvalidArgument("kv cache: asked for " + std::to_string(n_tokens) + " tokens, only " +
                          std::to_string(s.length[layer]) + " stored");
  }
  const size_t H = config_.n_kv_heads, d = config_.head_dim, ps = config_.page_size;
  const Codec* kcodec = &codec(layer, head, KvRole::K);
  const Codec* vcodec = &codec(layer, head, KvRole::V);
  std::vector<KvSegment> out;
  // Token ranges: [0, sink_end) from the sinks, [sink_end, win_begin) compressed, [win_begin,
  // n_tokens) from the window ring: the last W tokens before n_tokens, as far as the ring (capacity
  // W + window_slack) still holds them.
  const size_t len = s.length[layer];
  const size_t sink_end = std::min(config_.sink_tokens, n_tokens);
  size_t win_begin = n_tokens;
  if (config_.window_tokens > 0) {
    const size_t cap = ring_capacity();
    size_t b = n_tokens > config_.window_tokens ? n_tokens - config_.window_tokens : 0;
    if (len > cap) b = std::max(b, len - cap);
    win_begin = std::min(std::max(b, sink_end), n_tokens);
  }
  auto f16_segment = [&](const std::vector<uint16_t>& store, size_t n_slots, size_t slot, size_t count) {
    KvSegment seg;
    seg.k_codec = f16_codec_.get();
    seg.v_codec = f16_codec_.get();
    seg.k.codes = reinterpret_cast<const uint8_t*>(&store[((0 * H + head) * n_slots + slot) * d]);
    seg.v.codes = reinterpret_cast<const uint8_t*>(&store[((1 * H + head) * n_slots + slot) * d]);
    seg.k.side = seg.k.codes;  // f16 has no side plane; any non-null pointer
    seg.v.side = seg.v.codes;
    seg.k.n_tokens = seg.v.n_tokens = count;
    out.push_back(seg);
  };
  if (sink_end > 0) f16_segment(s.sinks[layer], config_.sink_tokens, 0, sink_end);
  const auto& table = s.page_table[layer];
  for (size_t pos = sink_end; pos < win_begin;) {
    const size_t slot = pos % ps;
    const size_t count = std::min(ps - slot, win_begin - pos);
    const uint8_t* page = pools_[layer].pages[table[pos / ps]].get();
    KvSegment seg;
    seg.k_codec = kcodec;
    seg.v_codec = vcodec;
    seg.k.codes = page + plane_offset(head, KvRole::K, false) + slot * k_code_bytes_;
    seg.k.side = page + plane_offset(head, KvRole::K, true) + slot * k_side_bytes_;
    seg.v.codes = page + plane_offset(head, KvRole::V, false) + slot * v_code_bytes_;
    seg.v.side = page + plane_offset(head, KvRole::V, true) + slot * v_side_bytes_;
    seg.k.n_tokens = seg.v.n_tokens = count;
    // Everything up to the end of the page allocation is readable (the fast kernels' loads).
    seg.k.readable_after = page_bytes_ - (plane_offset(head, KvRole::K, false) + (slot + count) * k_code_bytes_);
    seg.v.readable_after = page_bytes_ - (plane_offset(head, KvRole::V, false) + (slot + count) * v_code_bytes_);
    out.push_back(seg);
    pos += count;
  }
  const size_t W = ring_capacity();
  for (size_t pos = win_begin; pos < n_tokens;) {
    const size_t slot = pos % W;
    const size_t count = std::min(W - slot, n_tokens - pos);
    f16_segment(s.window[layer], W, slot, count);
    pos += count;
  }
  return out;
}

void PagedKvCache::decode(SeqId seq, size_t layer, size_t head, KvRole role, size_t token, float* out) const {
  const Sequence& s = seq_ref(seq);
  if (layer >= config_.n_layers || head >= config_.n_kv_heads) throw InvalidArgument("kv cache: layer/head out of range");
  if (token >= s.length[layer]) throw InvalidArgument("kv cache: token " + std::to_string(token) + " not stored");
  const size_t ps = config_.page_size;
  const uint8_t* page = pools_[layer].pages[s.page_table[layer][token / ps]].get();
  const size_t slot = token % ps;
  const bool isk = role == KvRole::K;
  const size_t cb = isk ? k_code_bytes_ : v_code_bytes_, sb = isk ? k_side_bytes_ : v_side_bytes_;
  codec(layer, head, role)
      .decode(1, page + plane_offset(head, role, false) + slot * cb, page + plane_offset(head, role, true) + slot * sb, out);
}

std::string PagedKvCache::describe() const {
  std::string s = "K " + config_.k_format + ", V " + config_.v_format + ", page " + std::to_string(config_.page_size);
  if (config_.sink_tokens > 0) s += ", fp16 sinks " + std::to_string(config_.sink_tokens);
  if (config_.window_tokens > 0) s += ", fp16 window " + std::to_string(config_.window_tokens);
  return s;
}

}  // namespace rq
