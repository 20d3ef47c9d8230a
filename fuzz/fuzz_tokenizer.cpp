// libFuzzer target for the tokenizer: on any byte string, every pre-tokenizer's pieces are
// non-empty and cover the text in order, and with the tiny crafted vocabulary (every byte
// spellable) decode(encode(text)) == text, with and without special-token parsing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rq/model/gguf.hpp"
#include "rq/model/tokenizer.hpp"
#include "tokenizer/pretokenize.hpp"

#ifndef RQ_SOURCE_DIR
#error "RQ_SOURCE_DIR must point at the repository root"
#endif

namespace {

using namespace rq::model;

const Tokenizer& tiny_tokenizer() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    const GgufFile g =
        GgufFile::open(std::string(RQ_SOURCE_DIR) + "/tests/model/data/gguf_ok_tiny_tokenizer.bin");
    return std::make_unique<Tokenizer>(Tokenizer::from_gguf(g));
  }();
  return *tok;
}

void check_split(pretok::Style style, const unicode::CodepointText& cps) {
  std::vector<std::pair<uint32_t, uint32_t>> pieces;
  pretok::split(style, cps, pieces);
  uint32_t expect = 0;
  for (const auto& [first, last] : pieces) {
    if (first != expect || last <= first) std::abort();
    expect = last;
  }
  if (expect != cps.cps.size()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  unicode::CodepointText cps;
  unicode::decode_utf8(text, cps);
  if (cps.offsets.size() != cps.cps.size() + 1 || cps.offsets.back() != size) std::abort();
  for (auto style : {pretok::Style::kGpt2, pretok::Style::kDigitsThenGpt2, pretok::Style::kLlama3}) {
    check_split(style, cps);
  }
  const Tokenizer& tok = tiny_tokenizer();
  if (tok.decode(tok.encode(text, true)) != text) std::abort();
  if (tok.decode(tok.encode(text, false)) != text) std::abort();
  return 0;
}
