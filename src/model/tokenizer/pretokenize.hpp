// Internal: hand-written pre-tokenizers (the regex splits of byte-level BPE vocabularies).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "unicode.hpp"

namespace rq::model::pretok {

enum class Style {
  /// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  /// SmolLM / StarCoder: first isolate every \p{N} code point, then GPT-2 on the rest.
  kDigitsThenGpt2,
  /// Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  ///          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
};

/// Maps tokenizer.ggml.pre to a style; unknown names fall back to GPT-2 (*known = false).
Style style_from_name(const std::string& pre, bool* known);
const char* style_name(Style s);

/// Splits text (already decoded) into pieces; appends [first, last) code point index ranges
/// that cover the text exactly, in order.
void split(Style style, const unicode::CodepointText& text,
           std::vector<std::pair<uint32_t, uint32_t>>& pieces);

}  // namespace rq::model::pretok
