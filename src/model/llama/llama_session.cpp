// LlamaSession::open and small file helpers for the CLI.
#include "rq/model/llama_session.hpp"

#include <fstream>
#include <sstream>

#include "rq/core/errors.hpp"

namespace rq::model {

LlamaSession LlamaSession::open(const std::string& path) {
  LlamaSession s;
  const std::string p = path.empty() ? rq::default_model_path() : path;
  s.file = std::make_unique<GgufFile>(GgufFile::open(p));
  s.model = std::make_unique<LlamaModel>(LlamaModel::load(*s.file));
  s.tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_gguf(*s.file));
  return s;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open text file '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw IoError("cannot read text file '" + path + "'");
  return ss.str();
}

}  // namespace rq::model
