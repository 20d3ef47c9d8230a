// Internal: the few Unicode facts the byte-level BPE pre-tokenizers need.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rq::model::unicode {

/// Coarse class of a code point, as the GPT-2 style split patterns see it.
enum class CharClass : uint8_t {
  kLetter,      ///< \p{L}
  kNumber,      ///< \p{N}
  kWhitespace,  ///< \s (Unicode White_Space)
  kOther,       ///< everything else, including bytes that are not valid UTF-8
};

CharClass classify(uint32_t cp) noexcept;

/// Text split into code points. Invalid UTF-8 bytes become one "code point" each
/// (value 0xFFFFFFFF, class kOther) so that every byte is kept.
struct CodepointText {
  std::vector<uint32_t> cps;       ///< n code points
  std::vector<uint32_t> offsets;   ///< n + 1 byte offsets into the text
  std::vector<CharClass> classes;  ///< n classes
};

constexpr uint32_t kInvalidCodepoint = 0xFFFFFFFFu;

void decode_utf8(std::string_view text, CodepointText& out);

/// Appends the UTF-8 encoding of cp.
void append_utf8(uint32_t cp, std::string& out);

/// GPT-2 byte <-> unicode mapping: each byte value has a printable code point.
uint32_t byte_to_codepoint(uint8_t b) noexcept;
/// Inverse of byte_to_codepoint; -1 if cp is not the image of a byte.
int codepoint_to_byte(uint32_t cp) noexcept;

}  // namespace rq::model::unicode
