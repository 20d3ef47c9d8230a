// GGUF (v2, v3) reader: header, metadata key/values, tensor infos, and read-only memory-mapped
// tensor data. Every count, length, offset and size is checked against the file size (with
// overflow-checked arithmetic) before it is used; a malformed file throws rq::FormatError naming
// what was wrong and at which byte offset. Opening/mapping failures throw rq::IoError.
//
// Layout (little endian): magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, n_kv × (string key,
// u32 value_type, value), n_tensors × (string name, u32 n_dims, n_dims × u64 ne, u32 type,
// u64 offset), padding to general.alignment (default 32), tensor data. A string is u64 length +
// bytes (no NUL). An array is u32 element type + u64 count + elements (arrays may nest).
//
// Tensor types: any id in the ggml type table (tensor_types.hpp) opens and is listed, with its
// byte size, even when this library cannot compute with it (e.g. Q5_0, IQ2_XXS); those throw
// "unsupported tensor type N (name)" only when dequantized / multiplied. An id that is not in the
// table makes open() throw rq::FormatError "tensor 'x': unsupported tensor type N", because the
// tensor's size, and so the validity of the whole data section, cannot be checked.
// Also refused: versions other than 2/3, n_dims > 4, a row length that is not a multiple of the
// block size, general.alignment that is not a power of two, tensor offsets that are not multiples
// of the alignment, duplicate keys or tensor names, arrays nested deeper than 8.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rq/model/tensor_types.hpp"

namespace rq {

/// Path of the default model (SmolLM2-135M-Instruct Q4_1 GGUF): $RQ_MODEL if set, else
/// ${RQ_MODEL_DIR:-$HOME/.cache/rotorquant/models}/SmolLM2-135M-Instruct.Q4_1.gguf.
/// Throws rq::IoError ("... run scripts/fetch_model.sh") if that file does not exist.
std::string default_model_path();

}  // namespace rq

namespace rq::model {

/// GGUF metadata value types (on-disk ids).
enum class GgufValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

const char* gguf_value_type_name(GgufValueType t) noexcept;

/// One metadata value. Scalars fill exactly one of u/i/f/b/str (by type). Arrays set elem_type,
/// count, and one compact store by element type (so a hostile file cannot blow up memory):
///   integer/BOOL elements -> ints (U64 values above INT64_MAX are stored bit-cast),
///   F32/F64 elements -> floats, STRING elements -> strings, ARRAY elements -> items (nested).
struct GgufValue {
  GgufValueType type = GgufValueType::U8;
  GgufValueType elem_type = GgufValueType::U8;  ///< arrays only
  uint64_t u = 0;     ///< U8, U16, U32, U64
  int64_t i = 0;      ///< I8, I16, I32, I64
  double f = 0.0;     ///< F32, F64
  bool b = false;     ///< BOOL
  std::string str;    ///< STRING
  uint64_t count = 0;                ///< ARRAY: number of elements
  std::vector<int64_t> ints;         ///< ARRAY of integers or bools
  std::vector<double> floats;        ///< ARRAY of F32/F64
  std::vector<std::string> strings;  ///< ARRAY of STRING
  std::vector<GgufValue> items;      ///< ARRAY of ARRAY

  bool is_integer() const noexcept;
  bool is_float() const noexcept;
};

/// One tensor info. Shape follows ggml: ne[0] is the contiguous row length, unused dims are 1.
struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  uint32_t n_dims = 0;
  std::array<uint64_t, 4> ne = {1, 1, 1, 1};
  uint64_t offset = 0;   ///< byte offset relative to the start of the data section
  uint64_t n_bytes = 0;  ///< size of the tensor data in bytes

  uint64_t n_elements() const noexcept { return ne[0] * ne[1] * ne[2] * ne[3]; }
  /// Number of rows of ne[0] elements (ne[1]*ne[2]*ne[3]).
  uint64_t n_rows() const noexcept { return ne[1] * ne[2] * ne[3]; }
};

class GgufFile {
 public:
  /// Opens and validates a GGUF file; the data section is mmap'ed read-only.
  static GgufFile open(const std::string& path);
  /// Parses an in-memory image (copied). Same validation as open(); used by tests and fuzzing.
  static GgufFile from_memory(const void* data, size_t size);

  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;
  ~GgufFile();

  uint32_t version() const noexcept;
  const std::string& path() const noexcept;  ///< "<memory>" for from_memory
  uint64_t file_size() const noexcept;
  uint64_t alignment() const noexcept;    ///< general.alignment, default 32
  uint64_t data_offset() const noexcept;  ///< absolute byte offset of the data section

  // ---- metadata ----
  bool has(std::string_view key) const;
  /// nullptr if absent.
  const GgufValue* find(std::string_view key) const;
  /// All key/value pairs in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const noexcept;

  /// Typed getters. Without a default: throw rq::FormatError if the key is absent. With or
  /// without: throw rq::FormatError if present with an incompatible type or out of range.
  /// Integer getters accept any integer type whose value fits; get_f32 accepts F32/F64/integers.
  std::string get_string(std::string_view key) const;
  std::string get_string(std::string_view key, const std::string& def) const;
  uint32_t get_u32(std::string_view key) const;
  uint32_t get_u32(std::string_view key, uint32_t def) const;
  int64_t get_i64(std::string_view key) const;
  int64_t get_i64(std::string_view key, int64_t def) const;
  float get_f32(std::string_view key) const;
  float get_f32(std::string_view key, float def) const;
  bool get_bool(std::string_view key, bool def) const;

  /// Arrays; throw rq::FormatError if absent or the element type does not match.
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;  ///< any integer/bool elems
  std::vector<float> get_float_array(std::string_view key) const;  ///< F32/F64 elems

  // ---- tensors ----
  const std::vector<GgufTensorInfo>& tensors() const noexcept;
  /// nullptr if absent.
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  /// Throws rq::FormatError "no tensor named ..." if absent.
  const GgufTensorInfo& tensor(std::string_view name) const;
  /// Pointer into the mapped data (valid while this GgufFile lives).
  /// Throws rq::FormatError if absent.
  const void* tensor_data(std::string_view name) const;
  const void* tensor_data(const GgufTensorInfo& info) const;

 private:
  struct Impl;
  explicit GgufFile(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rq::model
