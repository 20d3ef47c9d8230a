// A loaded model ready to run: the mapped GGUF file, the Llama weights and the tokenizer, kept
// together so the views stay valid. Used by the CLI commands.
#pragma once

#include <memory>
#include <string>

#include "rq/model/gguf.hpp"
#include "rq/model/llama.hpp"
#include "rq/model/tokenizer.hpp"

namespace rq::model {

struct LlamaSession {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<Tokenizer> tokenizer;

  /// path "" means rq::default_model_path(). Throws rq::IoError / rq::FormatError.
  static LlamaSession open(const std::string& path);
};

/// Read a whole text file; throws rq::IoError naming the path.
std::string read_text_file(const std::string& path);

}  // namespace rq::model
