// Byte-level BPE tokenizer: pre-tokenizer splits, special tokens, the ChatML template, and
// decode(encode(text)) == text on every file of the shared data set (needs the real model).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "../src/model/tokenizer/pretokenize.hpp"
#include "rq/core/errors.hpp"
#include "rq/core/rng.hpp"
#include "rq/model/gguf.hpp"
#include "rq/model/tokenizer.hpp"

namespace rq::model {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> split(pretok::Style style, const std::string& text) {
  unicode::CodepointText cps;
  unicode::decode_utf8(text, cps);
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
  pretok::split(style, cps, ranges);
  std::vector<std::string> out;
  for (auto [a, b] : ranges) out.push_back(text.substr(cps.offsets[a], cps.offsets[b] - cps.offsets[a]));
  return out;
}

using V = std::vector<std::string>;

TEST(PreTokenizer, Gpt2) {
  EXPECT_EQ(split(pretok::Style::kGpt2, "Hello world's 123  foo\n\nbar"),
            (V{"Hello", " world", "'s", " 123", " ", " foo", "\n", "\n", "bar"}));
  EXPECT_EQ(split(pretok::Style::kGpt2, "I'll  don't!! x  "),
            (V{"I", "'ll", " ", " don", "'t", "!!", " x", "  "}));
  EXPECT_EQ(split(pretok::Style::kGpt2, "héllo Привет 日本語"), (V{"héllo", " Привет", " 日本語"}));
  EXPECT_EQ(split(pretok::Style::kGpt2, ""), V{});
  EXPECT_EQ(split(pretok::Style::kGpt2, " "), V{" "});
}

TEST(PreTokenizer, SmolLmIsolatesDigits) {
  EXPECT_EQ(split(pretok::Style::kDigitsThenGpt2, "Hello world's 123  foo\n\nbar"),
            (V{"Hello", " world", "'s", " ", "1", "2", "3", " ", " foo", "\n", "\n", "bar"}));
  EXPECT_EQ(split(pretok::Style::kDigitsThenGpt2, "x=3.14"), (V{"x", "=", "3", ".", "1", "4"}));
}

TEST(PreTokenizer, Llama3) {
  EXPECT_EQ(split(pretok::Style::kLlama3, "Hello world's 12345 (foo)\n\n  bar"),
            (V{"Hello", " world", "'s", " ", "123", "45", " (", "foo", ")\n\n", " ", " bar"}));
  EXPECT_EQ(split(pretok::Style::kLlama3, "I'LL go  \n x"), (V{"I", "'LL", " go", "  \n", " x"}));
}

TEST(PreTokenizer, CoversInvalidUtf8) {
  const std::string bad = std::string("a\xff\xc3 b\xe2\x82", 7);
  std::string joined;
  for (const auto& p : split(pretok::Style::kDigitsThenGpt2, bad)) joined += p;
  EXPECT_EQ(joined, bad);
}

TEST(ChatTemplate, ChatMl) {
  EXPECT_EQ(format_chatml({{"user", "Hi there"}}),
            "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(format_chatml({{"system", "S"}, {"user", "U"}}, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n");
}

// ---- with the tiny crafted vocabulary (tests/model/data/gguf_ok_tiny_tokenizer.bin) ----

const fs::path kDataDir = fs::path(RQ_SOURCE_DIR) / "tests" / "model" / "data";

TEST(TinyTokenizer, MergesByRankAndSpecials) {
  const GgufFile g = GgufFile::open((kDataDir / "gguf_ok_tiny_tokenizer.bin").string());
  const Tokenizer tok = Tokenizer::from_gguf(g);
  EXPECT_EQ(tok.vocab_size(), 262u);
  const int32_t he = 256, ll = 257, hell = 258, im_start = 259, im_end = 260, gw = 261;
  EXPECT_EQ(tok.bos_id(), im_start);
  EXPECT_EQ(tok.eos_id(), im_end);
  EXPECT_EQ(tok.unk_id(), -1);
  EXPECT_EQ(tok.encode("hello"), (std::vector<int32_t>{hell, 'o'}));
  EXPECT_EQ(tok.encode("he"), (std::vector<int32_t>{he}));
  EXPECT_EQ(tok.encode("ll"), (std::vector<int32_t>{ll}));
  EXPECT_EQ(tok.encode(" w"), (std::vector<int32_t>{gw}));
  EXPECT_EQ(tok.encode("<|im_start|>hello<|im_end|>"),
            (std::vector<int32_t>{im_start, hell, 'o', im_end}));
  EXPECT_EQ(tok.encode("x", true, true), (std::vector<int32_t>{im_start, 'x'}));
  Rng rng(0x70c0002);
  for (int rep = 0; rep < 500; ++rep) {  // every byte value is spellable here
    std::string s;
    const size_t n = rng.next_u64() % 48;
    for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>(rng.next_u64()));
    if (rep % 3 == 0) s += "<|im_end|>";
    EXPECT_EQ(tok.decode(tok.encode(s)), s);
  }
}

TEST(TinyTokenizer, BadMetadataThrows) {
  const GgufFile g = GgufFile::open((kDataDir / "tok_bad_unk_out_of_range.bin").string());
  EXPECT_THROW(Tokenizer::from_gguf(g), FormatError);
  const GgufFile no_vocab = GgufFile::open((kDataDir / "gguf_ok_small_v3.bin").string());
  EXPECT_THROW(Tokenizer::from_gguf(no_vocab), FormatError);
}

// ---- with the real model ----

class TokenizerModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      const std::string path = rq::default_model_path();
      file_ = std::make_unique<GgufFile>(GgufFile::open(path));
      tok_ = std::make_unique<Tokenizer>(Tokenizer::from_gguf(*file_));
    } catch (const IoError& e) {
      skip_reason_ = std::string("model absent: ") + e.what();
    }
  }
  static void TearDownTestSuite() {
    tok_.reset();
    file_.reset();
  }
  void SetUp() override {
    if (!tok_) GTEST_SKIP() << skip_reason_;
  }
  static std::unique_ptr<GgufFile> file_;
  static std::unique_ptr<Tokenizer> tok_;
  static std::string skip_reason_;
};
std::unique_ptr<GgufFile> TokenizerModel::file_;
std::unique_ptr<Tokenizer> TokenizerModel::tok_;
std::string TokenizerModel::skip_reason_;

TEST_F(TokenizerModel, Vocabulary) {
  EXPECT_EQ(tok_->vocab_size(), 49152u);
  EXPECT_EQ(tok_->pre_tokenizer(), "smollm");
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_EQ(tok_->eos_id(), 2);
  EXPECT_FALSE(tok_->add_bos_default());
  EXPECT_EQ(tok_->token_id("<|im_start|>"), 1);
  EXPECT_EQ(tok_->token_id("<|im_end|>"), 2);
  EXPECT_TRUE(tok_->is_control(1));
  EXPECT_TRUE(tok_->is_end_of_generation(2));
  EXPECT_TRUE(tok_->is_end_of_generation(0));  // <|endoftext|>
  EXPECT_FALSE(tok_->is_end_of_generation(tok_->token_id("Ġthe")));
  EXPECT_EQ(tok_->token_to_piece(tok_->token_id("Ġthe")), " the");
  EXPECT_THROW(tok_->token_to_piece(-1), InvalidArgument);
  EXPECT_THROW(tok_->decode({49152}), InvalidArgument);
}

TEST_F(TokenizerModel, KnownEncodings) {
  // Common words are single tokens with the GPT-2 space marker.
  const auto ids = tok_->encode("Hello world");
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(tok_->token_text(ids[0]), "Hello");
  EXPECT_EQ(tok_->token_text(ids[1]), "Ġworld");
  // Digits are single tokens (smollm pre-tokenizer).
  const auto digits = tok_->encode("2024");
  ASSERT_EQ(digits.size(), 4u);
  EXPECT_EQ(tok_->token_text(digits[0]), "2");
  EXPECT_TRUE(tok_->encode("").empty());
  EXPECT_EQ(tok_->encode("hi", true, true).front(), tok_->bos_id());
}

TEST_F(TokenizerModel, MatchesHuggingFaceTokenizers) {
  // Ids from the HF `tokenizers` library (BPE from this file's vocab/merges, pre-tokenizer
  // Sequence[Digits(individual), ByteLevel(add_prefix_space=False)]). The same cross-check
  // gave identical ids on all of wiki.test.raw and sotu/*.txt (2.43 M tokens).
  const std::string text =
      "The quick brown fox jumps over the lazy dog in 2024, isn't it?\n\n  Yes! naïve café 日本";
  const std::vector<int32_t> expected = {504,   2365,  6354,  16438, 27003, 690,   260,   23790,
                                         2767,  281,   216,   34,    32,    34,    36,    28,
                                         3247,  982,   357,   47,    8866,  9230,  17,    15486,
                                         46494, 37366, 17097, 241,   115,   40993};
  EXPECT_EQ(tok_->encode(text), expected);
}

TEST_F(TokenizerModel, SpecialTokens) {
  const std::string prompt = format_chatml({{"user", "What is 2+2?"}});
  const auto ids = tok_->encode(prompt);
  EXPECT_EQ(ids.front(), 1);  // <|im_start|> as one token
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 2);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 1);
  EXPECT_EQ(tok_->decode(ids), prompt);
  // Without special parsing the marker is spelled out in ordinary tokens.
  const auto plain = tok_->encode("<|im_start|>", false);
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
  EXPECT_EQ(tok_->decode(plain), "<|im_start|>");
}

TEST_F(TokenizerModel, RoundTripRandomBytesAndUnicode) {
  Rng rng(0x70c0001);
  const char* samples[] = {"naïve café — “quotes” ✓ 😀 日本語のテキスト Привет мир",
                           "\t\tindent\r\n  trailing   ", "''' ' 's 'S'll", "\x01\x02\x7f"};
  for (const char* s : samples) EXPECT_EQ(tok_->decode(tok_->encode(s)), s);
  // Bytes the vocabulary can spell (SmolLM2 lacks a few byte tokens, e.g. 0xF5..0xFF that never
  // occur in UTF-8; those become the unknown token, as in llama.cpp).
  std::vector<char> spellable;
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    unicode::append_utf8(unicode::byte_to_codepoint(static_cast<uint8_t>(b)), ch);
    if (tok_->token_id(ch) >= 0) {
      spellable.push_back(static_cast<char>(b));
    } else {
      EXPECT_EQ(tok_->encode(std::string(1, static_cast<char>(b))),
                std::vector<int32_t>{tok_->unk_id()});
    }
  }
  std::printf("vocabulary spells %zu of 256 byte values\n", spellable.size());
  ASSERT_GE(spellable.size(), 200u);
  for (int rep = 0; rep < 300; ++rep) {
    std::string s;
    const size_t n = 1 + rng.next_u64() % 64;
    for (size_t i = 0; i < n; ++i) s.push_back(spellable[rng.next_u64() % spellable.size()]);
    EXPECT_EQ(tok_->decode(tok_->encode(s)), s);
    EXPECT_EQ(tok_->decode(tok_->encode(s, false)), s);
  }
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST_F(TokenizerModel, RoundTripSharedData) {
  const fs::path data = fs::path(RQ_SOURCE_DIR) / ".." / "shared" / "data";
  if (!fs::is_directory(data)) GTEST_SKIP() << "shared data absent at " << data;
  std::vector<fs::path> files;
  if (fs::exists(data / "wikitext-2-raw" / "wiki.test.raw")) {
    files.push_back(data / "wikitext-2-raw" / "wiki.test.raw");
  }
  if (fs::is_directory(data / "sotu")) {
    for (const auto& e : fs::directory_iterator(data / "sotu")) {
      if (e.path().extension() == ".txt") files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  ASSERT_FALSE(files.empty());
  size_t total_bytes = 0, total_tokens = 0, failures = 0;
  double seconds = 0;
  for (const auto& p : files) {
    const std::string text = read_text(p);
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = tok_->encode(text);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    total_bytes += text.size();
    total_tokens += ids.size();
    if (tok_->decode(ids) != text) {
      ++failures;
      ADD_FAILURE() << "round trip differs for " << p;
    }
    if (p.filename() == "wiki.test.raw") {
      std::printf("wiki.test.raw: %zu bytes -> %zu tokens\n", text.size(), ids.size());
    }
  }
  std::printf("round trip: %zu files, %zu bytes, %zu tokens, %zu failures; encode %.2f s "
              "(%.2f MB/s, cache warm after the first file)\n",
              files.size(), total_bytes, total_tokens, failures, seconds,
              total_bytes / 1e6 / seconds);
}

}  // namespace
}  // namespace rq::model
