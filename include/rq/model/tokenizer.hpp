// Byte-level BPE tokenizer (GPT-2 style) built from GGUF metadata:
// tokenizer.ggml.model ("gpt2"), tokenizer.ggml.tokens / merges / token_type,
// tokenizer.ggml.{bos,eos,unknown,padding}_token_id, tokenizer.ggml.pre.
//
// Pre-tokenizers implemented by hand (no regex engine), chosen by tokenizer.ggml.pre:
//   "gpt2", "default", "mpt", "olmo", "jais" (and a missing key): the GPT-2 split
//       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva": every \p{N}
//       code point isolated first, then the GPT-2 split (SmolLM2);
//   "llama-bpe", "llama3", "smaug-bpe", "dbrx": the Llama-3 split.
// Any other name falls back to the GPT-2 split (pre_tokenizer() says so); encoding stays
// lossless, only the token boundaries may differ from the reference tokenizer.
// \p{L} / \p{N} come from Unicode 14 range tables (src/model/tokenizer/unicode_ranges.inc),
// \s is the Unicode White_Space property. On SmolLM2 the ids equal those of the HF `tokenizers`
// library on all of wikitext-2 test and the SOTU corpus.
//
// Special tokens (token_type CONTROL or USER_DEFINED, e.g. "<|im_start|>") are matched as whole
// tokens in the text when parse_special is true. decode(encode(text)) == text for any valid
// UTF-8 text (byte-level BPE is lossless).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace rq::model {

class GgufFile;

/// One chat message for the ChatML template.
struct ChatMessage {
  std::string role;     ///< "system", "user", "assistant"
  std::string content;
};

/// ChatML: "<|im_start|>{role}\n{content}<|im_end|>\n" per message, then (if
/// add_generation_prompt) "<|im_start|>assistant\n". Adds no message of its own; SmolLM2's
/// GGUF template (tokenizer.chat_template) also inserts a system message with
/// kSmolLM2DefaultSystemPrompt when the first message is not a system one: pass it explicitly
/// to reproduce that exactly.
std::string format_chatml(const std::vector<ChatMessage>& messages,
                          bool add_generation_prompt = true);

/// The system prompt SmolLM2-Instruct's chat template inserts by default.
inline constexpr const char* kSmolLM2DefaultSystemPrompt =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

class Tokenizer {
 public:
  /// Builds the tokenizer from a GGUF file's metadata. Throws rq::FormatError if the metadata
  /// is missing/inconsistent or the tokenizer model is not byte-level BPE ("gpt2").
  static Tokenizer from_gguf(const GgufFile& file);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  /// Text -> token ids. parse_special: match special tokens (e.g. <|im_start|>) in the text.
  /// add_bos: prepend bos_id() (if the vocabulary has one). Thread-safe (the per-piece merge
  /// cache is shared under a mutex). Bytes with no token in the vocabulary become unk_id();
  /// throws rq::InvalidInput if there is no unknown token either.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = true,
                              bool add_bos = false) const;
  /// Token ids -> text (special tokens are rendered as their text). Throws rq::InvalidArgument
  /// for ids outside [0, vocab_size()).
  std::string decode(const std::vector<int32_t>& ids) const;
  /// Bytes of one token.
  std::string token_to_piece(int32_t id) const;

  size_t vocab_size() const noexcept;
  /// Id of an exact vocabulary string (in byte-level form, e.g. "Ġthe"), or -1.
  int32_t token_id(std::string_view token_text) const;
  /// Raw vocabulary string of a token.
  const std::string& token_text(int32_t id) const;

  int32_t bos_id() const noexcept;  ///< -1 if none
  int32_t eos_id() const noexcept;  ///< -1 if none
  int32_t unk_id() const noexcept;  ///< -1 if none
  int32_t pad_id() const noexcept;  ///< -1 if none
  /// tokenizer.ggml.add_bos_token (default false for gpt2 vocabularies).
  bool add_bos_default() const noexcept;
  /// True for CONTROL tokens.
  bool is_control(int32_t id) const noexcept;
  /// End of generation: eos, "<|im_end|>", "<|endoftext|>" (whichever exist).
  bool is_end_of_generation(int32_t id) const noexcept;
  /// Name of the pre-tokenizer in use (after mapping tokenizer.ggml.pre).
  const std::string& pre_tokenizer() const noexcept;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rq::model
