// UTF-8 decoding, code point classes (from the generated range tables) and the GPT-2 byte map.
#include "unicode.hpp"

#include <algorithm>
#include <array>

namespace rq::model::unicode {
namespace {

struct CodepointRange {
  uint32_t first, last;
};

#include "unicode_ranges.inc"

template <size_t N>
bool in_ranges(const CodepointRange (&ranges)[N], uint32_t cp) {
  const CodepointRange* end = ranges + N;
  const CodepointRange* it = std::upper_bound(
      ranges, end, cp, [](uint32_t v, const CodepointRange& r) { return v < r.first; });
  return it != ranges && cp <= (it - 1)->last;
}

bool is_white_space(uint32_t cp) {
  // The Unicode White_Space property (what \s matches in Rust/Oniguruma/PCRE2 with UCP).
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

struct ByteMap {
  std::array<uint32_t, 256> to_cp{};
  ByteMap() {
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      to_cp[b] = printable ? b : next++;
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

CharClass classify(uint32_t cp) noexcept {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::kLetter;
    if (cp >= '0' && cp <= '9') return CharClass::kNumber;
    if (is_white_space(cp)) return CharClass::kWhitespace;
    return CharClass::kOther;
  }
  if (cp == kInvalidCodepoint) return CharClass::kOther;
  if (is_white_space(cp)) return CharClass::kWhitespace;
  if (in_ranges(kLetterRanges, cp)) return CharClass::kLetter;
  if (in_ranges(kNumberRanges, cp)) return CharClass::kNumber;
  return CharClass::kOther;
}

void decode_utf8(std::string_view text, CodepointText& out) {
  out.cps.clear();
  out.offsets.clear();
  out.classes.clear();
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    out.offsets.push_back(static_cast<uint32_t>(i));
    const uint8_t c = s[i];
    uint32_t cp = kInvalidCodepoint;
    size_t len = 1;
    if (c < 0x80) {
      cp = c;
    } else if (c >= 0xC2 && c <= 0xF4) {
      const size_t need = c < 0xE0 ? 2 : (c < 0xF0 ? 3 : 4);
      if (i + need <= n) {
        uint32_t v = c & (need == 2 ? 0x1F : (need == 3 ? 0x0F : 0x07));
        bool ok = true;
        for (size_t k = 1; k < need; ++k) {
          if ((s[i + k] & 0xC0) != 0x80) {
            ok = false;
            break;
          }
          v = (v << 6) | (s[i + k] & 0x3F);
        }
        // Reject overlong forms, surrogates and values past U+10FFFF.
        const uint32_t min = need == 2 ? 0x80 : (need == 3 ? 0x800 : 0x10000);
        if (ok && v >= min && v <= 0x10FFFF && !(v >= 0xD800 && v <= 0xDFFF)) {
          cp = v;
          len = need;
        }
      }
    }
    out.cps.push_back(cp);
    out.classes.push_back(classify(cp));
    i += len;
  }
  out.offsets.push_back(static_cast<uint32_t>(n));
}

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

uint32_t byte_to_codepoint(uint8_t b) noexcept { return byte_map().to_cp[b]; }

int codepoint_to_byte(uint32_t cp) noexcept {
  if (cp < 256) {
    const bool printable = (cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174);
    return printable ? static_cast<int>(cp) : -1;
  }
  if (cp >= 256 && cp < 256 + 68) {
    // The 68 non-printable bytes map to 256.. in increasing byte order.
    const auto& m = byte_map().to_cp;
    for (int b = 0; b < 256; ++b) {
      if (m[b] == cp) return b;
    }
  }
  return -1;
}

}  // namespace rq::model::unicode
