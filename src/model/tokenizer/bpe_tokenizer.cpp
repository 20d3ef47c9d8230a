// Byte-level BPE: special-token scan -> pre-tokenizer split -> bytes mapped to GPT-2 code points
// -> greedy lowest-rank merges (rank table keyed by the pair of token ids) -> ids. Each distinct
// piece is merged once and cached.
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <array>
#include <limits>
#include <mutex>
#include <unordered_map>

#include "pretokenize.hpp"
#include "rq/core/errors.hpp"
#include "rq/model/gguf.hpp"
#include "rq/model/tokenizer.hpp"
#include "unicode.hpp"

namespace rq::model {
namespace {

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
constexpr int64_t kTokenNormal = 1;
constexpr int64_t kTokenControl = 3;
constexpr int64_t kTokenUserDefined = 4;

constexpr size_t kMaxCacheEntries = 1 << 18;

struct MergeResult {
  uint32_t rank;
  int32_t id;
};

/// Hash that lets unordered_map<std::string, ...> be searched with a string_view (no copy).
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

struct Tokenizer::Impl {
  std::vector<std::string> tokens;     // vocabulary strings (byte-level form)
  std::vector<std::string> pieces;     // decoded bytes of each token
  std::vector<int64_t> token_types;    // per token (kTokenNormal if the file has none)
  StringMap<int32_t> token_to_id;
  std::unordered_map<uint64_t, MergeResult> merges;
  std::array<int32_t, 256> byte_token{};  // id of the single-byte token, -1 if absent
  // Special tokens matched in text, longest first.
  std::vector<int32_t> specials;
  std::array<bool, 256> special_first_byte{};
  int32_t bos = -1, eos = -1, unk = -1, pad = -1;
  bool add_bos = false;
  std::vector<int32_t> end_of_generation;
  pretok::Style style = pretok::Style::kGpt2;
  std::string style_label;

  mutable std::mutex cache_mutex;
  mutable StringMap<std::vector<int32_t>> cache;

  int32_t lookup(std::string_view s) const {
    auto it = token_to_id.find(s);
    return it == token_to_id.end() ? -1 : it->second;
  }

  /// BPE of one pre-tokenized piece (raw bytes) -> ids appended to out.
  void bpe_piece(std::string_view bytes, std::vector<int32_t>& out) const {
    {
      std::lock_guard<std::mutex> lock(cache_mutex);
      auto it = cache.find(bytes);
      if (it != cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> sym;  // symbols: one per byte, then merged
    sym.reserve(bytes.size());
    for (unsigned char b : bytes) {
      int32_t id = byte_token[b];
      if (id < 0) {
        if (unk < 0) {
          throw InvalidInput(
              fmt::format("tokenizer: the vocabulary has no token for byte 0x{:02x} and no "
                          "unknown token",
                          static_cast<unsigned>(b)));
        }
        id = unk;
      }
      sym.push_back(id);
    }
    while (sym.size() > 1) {
      uint32_t best_rank = std::numeric_limits<uint32_t>::max();
      size_t best = 0;
      int32_t best_id = -1;
      for (size_t i = 0; i + 1 < sym.size(); ++i) {
        auto it = merges.find(pair_key(sym[i], sym[i + 1]));
        if (it != merges.end() && it->second.rank < best_rank) {
          best_rank = it->second.rank;
          best = i;
          best_id = it->second.id;
        }
      }
      if (best_id < 0) break;
      sym[best] = best_id;
      sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    }
    out.insert(out.end(), sym.begin(), sym.end());
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (cache.size() >= kMaxCacheEntries) cache.clear();
    cache.emplace(std::string(bytes), std::move(sym));
  }

  /// Pre-tokenize and BPE a run of ordinary text.
  void encode_text(std::string_view text, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    unicode::CodepointText cps;
    unicode::decode_utf8(text, cps);
    std::vector<std::pair<uint32_t, uint32_t>> ranges;
    pretok::split(style, cps, ranges);
    for (const auto& [first, last] : ranges) {
      const uint32_t b = cps.offsets[first];
      const uint32_t e = cps.offsets[last];
      bpe_piece(text.substr(b, e - b), out);
    }
  }

  /// Special token starting at text[pos], or -1.
  int32_t match_special(std::string_view text, size_t pos) const {
    if (!special_first_byte[static_cast<unsigned char>(text[pos])]) return -1;
    for (int32_t id : specials) {
      const std::string& s = tokens[static_cast<size_t>(id)];
      if (text.compare(pos, s.size(), s) == 0) return id;
    }
    return -1;
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_gguf(const GgufFile& file) {
  auto impl = std::make_unique<Impl>();
  Impl& t = *impl;
  const std::string model = file.get_string("tokenizer.ggml.model", "");
  if (model != "gpt2") {
    throw FormatError(fmt::format(
        "tokenizer: tokenizer.ggml.model is '{}', only byte-level BPE ('gpt2') is supported",
        model));
  }
  t.tokens = file.get_string_array("tokenizer.ggml.tokens");
  const size_t n_vocab = t.tokens.size();
  if (n_vocab == 0 || n_vocab > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw FormatError(fmt::format("tokenizer: bad vocabulary size {}", n_vocab));
  }
  if (file.has("tokenizer.ggml.token_type")) {
    t.token_types = file.get_int_array("tokenizer.ggml.token_type");
    if (t.token_types.size() != n_vocab) {
      throw FormatError(fmt::format("tokenizer: {} token types for {} tokens",
                                    t.token_types.size(), n_vocab));
    }
  } else {
    t.token_types.assign(n_vocab, kTokenNormal);
  }

  t.token_to_id.reserve(n_vocab);
  for (size_t i = 0; i < n_vocab; ++i) t.token_to_id.emplace(t.tokens[i], static_cast<int32_t>(i));

  auto special_id = [&](const char* key) -> int32_t {
    if (!file.has(key)) return -1;
    const int64_t id = file.get_i64(key);
    if (id < 0 || static_cast<size_t>(id) >= n_vocab) {
      throw FormatError(fmt::format("tokenizer: {} = {} is outside the vocabulary of {}", key, id,
                                    n_vocab));
    }
    return static_cast<int32_t>(id);
  };
  t.bos = special_id("tokenizer.ggml.bos_token_id");
  t.eos = special_id("tokenizer.ggml.eos_token_id");
  t.unk = special_id("tokenizer.ggml.unknown_token_id");
  t.pad = special_id("tokenizer.ggml.padding_token_id");
  t.add_bos = file.get_bool("tokenizer.ggml.add_bos_token", false);

  bool known = true;
  const std::string pre = file.get_string("tokenizer.ggml.pre", "default");
  t.style = pretok::style_from_name(pre, &known);
  t.style_label = known ? std::string(pretok::style_name(t.style))
                        : fmt::format("gpt2 (fallback for unknown '{}')", pre);

  // Decoded bytes of every token; special tokens render as their literal text.
  t.pieces.resize(n_vocab);
  unicode::CodepointText cps;
  for (size_t i = 0; i < n_vocab; ++i) {
    const int64_t type = t.token_types[i];
    if (type == kTokenControl || type == kTokenUserDefined) {
      t.pieces[i] = t.tokens[i];
      if (!t.tokens[i].empty()) t.specials.push_back(static_cast<int32_t>(i));
      continue;
    }
    unicode::decode_utf8(t.tokens[i], cps);
    std::string& out = t.pieces[i];
    for (size_t k = 0; k < cps.cps.size(); ++k) {
      const int b = unicode::codepoint_to_byte(cps.cps[k]);
      if (b >= 0) {
        out.push_back(static_cast<char>(b));
      } else {  // not a byte-level character: keep the original bytes
        out.append(t.tokens[i], cps.offsets[k], cps.offsets[k + 1] - cps.offsets[k]);
      }
    }
  }
  std::sort(t.specials.begin(), t.specials.end(), [&](int32_t a, int32_t b) {
    const size_t la = t.tokens[static_cast<size_t>(a)].size();
    const size_t lb = t.tokens[static_cast<size_t>(b)].size();
    return la != lb ? la > lb : a < b;
  });
  for (int32_t id : t.specials) {
    t.special_first_byte[static_cast<unsigned char>(t.tokens[static_cast<size_t>(id)][0])] = true;
  }

  std::string byte_char;
  for (int b = 0; b < 256; ++b) {
    byte_char.clear();
    unicode::append_utf8(unicode::byte_to_codepoint(static_cast<uint8_t>(b)), byte_char);
    t.byte_token[static_cast<size_t>(b)] = t.lookup(byte_char);
  }

  const std::vector<std::string> merges = file.get_string_array("tokenizer.ggml.merges");
  t.merges.reserve(merges.size());
  std::string joined;
  for (size_t r = 0; r < merges.size(); ++r) {
    const std::string& m = merges[r];
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) {
      throw FormatError(fmt::format("tokenizer: merge {} '{}' has no separating space", r, m));
    }
    const int32_t a = t.lookup(std::string_view(m).substr(0, sp));
    const int32_t b = t.lookup(std::string_view(m).substr(sp + 1));
    joined.assign(m, 0, sp);
    joined.append(m, sp + 1);
    const int32_t ab = t.lookup(joined);
    if (a < 0 || b < 0 || ab < 0) continue;  // a merge that cannot produce a token is inert
    t.merges.emplace(pair_key(a, b), MergeResult{static_cast<uint32_t>(r), ab});
  }

  for (const char* s : {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>"}) {
    const int32_t id = t.lookup(s);
    if (id >= 0) t.end_of_generation.push_back(id);
  }
  if (t.eos >= 0) t.end_of_generation.push_back(t.eos);
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special,
                                       bool add_bos) const {
  const Impl& t = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && t.bos >= 0) out.push_back(t.bos);
  if (!parse_special || t.specials.empty()) {
    t.encode_text(text, out);
    return out;
  }
  size_t start = 0;  // start of the pending ordinary text
  size_t pos = 0;
  while (pos < text.size()) {
    const int32_t id = t.match_special(text, pos);
    if (id < 0) {
      ++pos;
      continue;
    }
    t.encode_text(text.substr(start, pos - start), out);
    out.push_back(id);
    pos += t.tokens[static_cast<size_t>(id)].size();
    start = pos;
  }
  t.encode_text(text.substr(start), out);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += token_to_piece(id);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->pieces.size()) {
    throw InvalidArgument(
        fmt::format("token id {} outside the vocabulary of {}", id, impl_->pieces.size()));
  }
  return impl_->pieces[static_cast<size_t>(id)];
}

size_t Tokenizer::vocab_size() const noexcept { return impl_->tokens.size(); }
int32_t Tokenizer::token_id(std::string_view token_text) const {
  return impl_->lookup(token_text);
}
const std::string& Tokenizer::token_text(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->tokens.size()) {
    throw InvalidArgument(
        fmt::format("token id {} outside the vocabulary of {}", id, impl_->tokens.size()));
  }
  return impl_->tokens[static_cast<size_t>(id)];
}
int32_t Tokenizer::bos_id() const noexcept { return impl_->bos; }
int32_t Tokenizer::eos_id() const noexcept { return impl_->eos; }
int32_t Tokenizer::unk_id() const noexcept { return impl_->unk; }
int32_t Tokenizer::pad_id() const noexcept { return impl_->pad; }
bool Tokenizer::add_bos_default() const noexcept { return impl_->add_bos; }
bool Tokenizer::is_control(int32_t id) const noexcept {
  return id >= 0 && static_cast<size_t>(id) < impl_->token_types.size() &&
         impl_->token_types[static_cast<size_t>(id)] == kTokenControl;
}
bool Tokenizer::is_end_of_generation(int32_t id) const noexcept {
  const auto& v = impl_->end_of_generation;
  return std::find(v.begin(), v.end(), id) != v.end();
}
const std::string& Tokenizer::pre_tokenizer() const noexcept { return impl_->style_label; }

std::string format_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out;
  for (const ChatMessage& m : messages) {
    out += "<|im_start|>";
    out += m.role;
    out += '\n';
    out += m.content;
    out += "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace rq::model
