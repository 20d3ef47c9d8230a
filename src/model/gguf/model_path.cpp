// rq::default_model_path(): where scripts/fetch_model.sh puts the default model.
#include <cstdlib>
#include <filesystem>
#include <string>

#include "rq/core/errors.hpp"
#include "rq/model/gguf.hpp"

namespace rq {

namespace {
constexpr const char* kDefaultModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::string default_model_path() {
  namespace fs = std::filesystem;
  std::string path;
  if (const char* env = std::getenv("RQ_MODEL"); env != nullptr && env[0] != '\0') {
    path = env;
  } else {
    std::string dir;
    if (const char* d = std::getenv("RQ_MODEL_DIR"); d != nullptr && d[0] != '\0') {
      dir = d;
    } else if (const char* home = std::getenv("HOME"); home != nullptr && home[0] != '\0') {
      dir = std::string(home) + "/.cache/rotorquant/models";
    } else {
      throw IoError("default model: neither RQ_MODEL, RQ_MODEL_DIR nor HOME is set; "
                    "run scripts/fetch_model.sh and set RQ_MODEL");
    }
    path = dir + "/" + kDefaultModelFile;
  }
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    throw IoError("default model not found at '" + path + "': run scripts/fetch_model.sh");
  }
  return path;
}

}  // namespace rq
