// Internal: the GGUF header parser, shared by GgufFile::open and GgufFile::from_memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "rq/model/gguf.hpp"

namespace rq::model::detail {

/// Everything the header says, validated against `size`.
struct GgufHeader {
  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;  ///< absolute
  uint64_t data_size = 0;    ///< file size - data_offset
  std::vector<std::pair<std::string, GgufValue>> metadata;
  std::unordered_map<std::string, size_t> key_index;  ///< key -> index into metadata
  std::vector<GgufTensorInfo> tensors;
  std::unordered_map<std::string, size_t> tensor_index;
};

/// Parses and validates a whole GGUF image. `where` names the source in error messages.
/// Throws rq::FormatError.
GgufHeader parse_gguf(const uint8_t* data, size_t size, const std::string& where);

}  // namespace rq::model::detail
