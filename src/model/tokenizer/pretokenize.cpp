// Pre-tokenizers as small state machines over code point classes (no regex engine). Each
// function mirrors the alternation order of its pattern; text a pattern does not match becomes
// its own piece, as in the HF "Isolated" split, so the pieces always cover the text.
#include "pretokenize.hpp"

namespace rq::model::pretok {
namespace {

using unicode::CharClass;
using Pieces = std::vector<std::pair<uint32_t, uint32_t>>;

uint32_t ascii_fold(uint32_t cp) { return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp; }

/// Length (2 or 3) of a contraction 's 't 're 've 'm 'll 'd at i, or 0.
uint32_t contraction(const unicode::CodepointText& t, uint32_t i, uint32_t end, bool fold) {
  if (t.cps[i] != '\'' || i + 1 >= end) return 0;
  auto at = [&](uint32_t k) { return fold ? ascii_fold(t.cps[k]) : t.cps[k]; };
  const uint32_t c1 = at(i + 1);
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if (i + 2 < end) {
    const uint32_t c2 = at(i + 2);
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  }
  return 0;
}

uint32_t run_of(const unicode::CodepointText& t, uint32_t i, uint32_t end, CharClass c) {
  while (i < end && t.classes[i] == c) ++i;
  return i;
}

/// Whitespace at i: \s+(?!\S) then \s+. Returns the end of the piece.
uint32_t whitespace_piece(const unicode::CodepointText& t, uint32_t i, uint32_t end) {
  const uint32_t k = run_of(t, i, end, CharClass::kWhitespace);
  if (k == end) return end;           // whitespace up to the end of the text
  if (k - i >= 2) return k - 1;       // leave the last one to prefix the next word
  return k;                           // a single whitespace before a non-space
}

void gpt2(const unicode::CodepointText& t, uint32_t begin, uint32_t end, Pieces& out) {
  uint32_t i = begin;
  while (i < end) {
    if (const uint32_t n = contraction(t, i, end, false)) {
      out.emplace_back(i, i + n);
      i += n;
      continue;
    }
    uint32_t j = i;
    if (t.cps[i] == ' ' && i + 1 < end && t.classes[i + 1] != CharClass::kWhitespace) j = i + 1;
    const CharClass c = t.classes[j];
    if (c != CharClass::kWhitespace) {  //  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+
      const uint32_t k = run_of(t, j + 1, end, c);
      out.emplace_back(i, k);
      i = k;
      continue;
    }
    const uint32_t k = whitespace_piece(t, i, end);
    out.emplace_back(i, k);
    i = k;
  }
}

void digits_then_gpt2(const unicode::CodepointText& t, uint32_t begin, uint32_t end, Pieces& out) {
  uint32_t i = begin;
  while (i < end) {
    if (t.classes[i] == CharClass::kNumber) {
      out.emplace_back(i, i + 1);
      ++i;
      continue;
    }
    uint32_t k = i;
    while (k < end && t.classes[k] != CharClass::kNumber) ++k;
    gpt2(t, i, k, out);
    i = k;
  }
}

bool is_cr_lf(uint32_t cp) { return cp == '\r' || cp == '\n'; }

void llama3(const unicode::CodepointText& t, uint32_t begin, uint32_t end, Pieces& out) {
  uint32_t i = begin;
  while (i < end) {
    if (const uint32_t n = contraction(t, i, end, true)) {
      out.emplace_back(i, i + n);
      i += n;
      continue;
    }
    const CharClass c = t.classes[i];
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c == CharClass::kLetter) {
      const uint32_t k = run_of(t, i, end, CharClass::kLetter);
      out.emplace_back(i, k);
      i = k;
      continue;
    }
    if (c != CharClass::kNumber && !is_cr_lf(t.cps[i]) && i + 1 < end &&
        t.classes[i + 1] == CharClass::kLetter) {
      const uint32_t k = run_of(t, i + 1, end, CharClass::kLetter);
      out.emplace_back(i, k);
      i = k;
      continue;
    }
    // \p{N}{1,3}
    if (c == CharClass::kNumber) {
      uint32_t k = i;
      while (k < end && k - i < 3 && t.classes[k] == CharClass::kNumber) ++k;
      out.emplace_back(i, k);
      i = k;
      continue;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    uint32_t j = i;
    if (t.cps[i] == ' ' && i + 1 < end && t.classes[i + 1] == CharClass::kOther) j = i + 1;
    if (t.classes[j] == CharClass::kOther) {
      uint32_t k = run_of(t, j, end, CharClass::kOther);
      while (k < end && is_cr_lf(t.cps[k])) ++k;
      out.emplace_back(i, k);
      i = k;
      continue;
    }
    // \s*[\r\n]+ : the longest whitespace prefix that ends in \r or \n
    const uint32_t ws_end = run_of(t, i, end, CharClass::kWhitespace);
    uint32_t last_nl = ws_end;
    for (uint32_t k = ws_end; k > i; --k) {
      if (is_cr_lf(t.cps[k - 1])) {
        last_nl = k - 1;
        break;
      }
    }
    if (last_nl != ws_end) {
      out.emplace_back(i, last_nl + 1);
      i = last_nl + 1;
      continue;
    }
    const uint32_t k = whitespace_piece(t, i, end);
    out.emplace_back(i, k);
    i = k;
  }
}

}  // namespace

Style style_from_name(const std::string& pre, bool* known) {
  *known = true;
  if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "command-r" ||
      pre == "codeshell" || pre == "exaone" || pre == "minerva") {
    return Style::kDigitsThenGpt2;
  }
  if (pre == "llama-bpe" || pre == "llama3" || pre == "smaug-bpe" || pre == "dbrx") {
    return Style::kLlama3;
  }
  if (pre == "gpt2" || pre == "gpt-2" || pre == "default" || pre == "mpt" || pre == "olmo" ||
      pre == "jais" || pre.empty()) {
    return Style::kGpt2;
  }
  *known = false;
  return Style::kGpt2;
}

const char* style_name(Style s) {
  switch (s) {
    case Style::kGpt2: return "gpt2";
    case Style::kDigitsThenGpt2: return "smollm";
    case Style::kLlama3: return "llama3";
  }
  return "gpt2";
}

void split(Style style, const unicode::CodepointText& text, Pieces& pieces) {
  const auto n = static_cast<uint32_t>(text.cps.size());
  switch (style) {
    case Style::kGpt2: gpt2(text, 0, n, pieces); break;
    case Style::kDigitsThenGpt2: digits_then_gpt2(text, 0, n, pieces); break;
    case Style::kLlama3: llama3(text, 0, n, pieces); break;
  }
}

}  // namespace rq::model::pretok
