// GGUF header parser. Every count, length and offset read from the file is checked against the
// bytes that remain BEFORE anything is allocated or indexed, with overflow-checked arithmetic.
#include "gguf_parse.hpp"

#include <fmt/format.h>

#include <cstring>
#include <limits>

#include "rq/core/errors.hpp"
#include "rq/model/tensor_types.hpp"

namespace rq::model::detail {
namespace {

constexpr uint32_t kMaxDims = 4;           // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;          // nested arrays deeper than this are refused
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint64_t kMaxAlignment = uint64_t{1} << 30;

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}
bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_add_overflow(a, b, out);
}

/// Bounds-checked little-endian reader over the file image.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& where)
      : data_(data), size_(size), where_(where) {}

  size_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError(fmt::format("gguf '{}': {} (at byte offset {}, file size {})", where_, what,
                                  pos_, size_));
  }

  void need(uint64_t n, const char* what) const {
    if (n > remaining()) {
      fail(fmt::format("truncated file: {} needs {} bytes, only {} remain", what, n, remaining()));
    }
  }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));  // GGUF is little endian, as is every host we support
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    const uint64_t len = read<uint64_t>(what);
    if (len > remaining()) {
      fail(fmt::format("{}: string length {} exceeds the {} bytes that remain", what, len,
                       remaining()));
    }
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& where_;
};

/// Smallest number of bytes one value of this type occupies on disk (0: invalid type).
uint64_t min_value_bytes(uint32_t type) {
  switch (static_cast<GgufValueType>(type)) {
    case GgufValueType::U8:
    case GgufValueType::I8:
    case GgufValueType::BOOL:
      return 1;
    case GgufValueType::U16:
    case GgufValueType::I16:
      return 2;
    case GgufValueType::U32:
    case GgufValueType::I32:
    case GgufValueType::F32:
      return 4;
    case GgufValueType::U64:
    case GgufValueType::I64:
    case GgufValueType::F64:
    case GgufValueType::STRING:  // u64 length
      return 8;
    case GgufValueType::ARRAY:  // u32 type + u64 count
      return 12;
  }
  return 0;
}

/// Reads one scalar integer/bool element as int64 (U64 bit-cast).
int64_t read_int_element(Cursor& c, GgufValueType t) {
  switch (t) {
    case GgufValueType::U8: return c.read<uint8_t>("u8 value");
    case GgufValueType::I8: return c.read<int8_t>("i8 value");
    case GgufValueType::U16: return c.read<uint16_t>("u16 value");
    case GgufValueType::I16: return c.read<int16_t>("i16 value");
    case GgufValueType::U32: return c.read<uint32_t>("u32 value");
    case GgufValueType::I32: return c.read<int32_t>("i32 value");
    case GgufValueType::U64: return static_cast<int64_t>(c.read<uint64_t>("u64 value"));
    case GgufValueType::I64: return c.read<int64_t>("i64 value");
    case GgufValueType::BOOL: {
      return c.read<uint8_t>("bool value") != 0 ? 1 : 0;  // any nonzero byte is true
    }
    default: break;
  }
  c.fail("internal: not an integer type");
}

GgufValue read_value(Cursor& c, uint32_t type_id, int depth);

void read_array(Cursor& c, GgufValue& v, int depth) {
  if (depth >= kMaxArrayDepth) c.fail(fmt::format("arrays nested deeper than {}", kMaxArrayDepth));
  const uint32_t elem = c.read<uint32_t>("array element type");
  const uint64_t elem_min = min_value_bytes(elem);
  if (elem_min == 0) c.fail(fmt::format("unknown array element type {}", elem));
  const uint64_t count = c.read<uint64_t>("array count");
  uint64_t min_total = 0;
  if (mul_overflows(count, elem_min, &min_total) || min_total > c.remaining()) {
    c.fail(fmt::format("array of {} elements of type {} cannot fit in the {} bytes that remain",
                       count, gguf_value_type_name(static_cast<GgufValueType>(elem)),
                       c.remaining()));
  }
  v.elem_type = static_cast<GgufValueType>(elem);
  v.count = count;
  const size_t n = static_cast<size_t>(count);
  switch (v.elem_type) {
    case GgufValueType::F32:
      v.floats.reserve(n);
      for (size_t k = 0; k < n; ++k) v.floats.push_back(c.read<float>("f32 array element"));
      break;
    case GgufValueType::F64:
      v.floats.reserve(n);
      for (size_t k = 0; k < n; ++k) v.floats.push_back(c.read<double>("f64 array element"));
      break;
    case GgufValueType::STRING:
      v.strings.reserve(n);
      for (size_t k = 0; k < n; ++k) v.strings.push_back(c.read_string("string array element"));
      break;
    case GgufValueType::ARRAY:
      v.items.reserve(n);
      for (size_t k = 0; k < n; ++k) v.items.push_back(read_value(c, elem, depth + 1));
      break;
    default:
      v.ints.reserve(n);
      for (size_t k = 0; k < n; ++k) v.ints.push_back(read_int_element(c, v.elem_type));
      break;
  }
}

GgufValue read_value(Cursor& c, uint32_t type_id, int depth) {
  if (min_value_bytes(type_id) == 0) c.fail(fmt::format("unknown metadata value type {}", type_id));
  GgufValue v;
  v.type = static_cast<GgufValueType>(type_id);
  switch (v.type) {
    case GgufValueType::U8: v.u = c.read<uint8_t>("u8 value"); break;
    case GgufValueType::U16: v.u = c.read<uint16_t>("u16 value"); break;
    case GgufValueType::U32: v.u = c.read<uint32_t>("u32 value"); break;
    case GgufValueType::U64: v.u = c.read<uint64_t>("u64 value"); break;
    case GgufValueType::I8: v.i = c.read<int8_t>("i8 value"); break;
    case GgufValueType::I16: v.i = c.read<int16_t>("i16 value"); break;
    case GgufValueType::I32: v.i = c.read<int32_t>("i32 value"); break;
    case GgufValueType::I64: v.i = c.read<int64_t>("i64 value"); break;
    case GgufValueType::F32: v.f = c.read<float>("f32 value"); break;
    case GgufValueType::F64: v.f = c.read<double>("f64 value"); break;
    case GgufValueType::BOOL: v.b = read_int_element(c, GgufValueType::BOOL) != 0; break;
    case GgufValueType::STRING: v.str = c.read_string("string value"); break;
    case GgufValueType::ARRAY: read_array(c, v, depth); break;
  }
  return v;
}

uint64_t read_alignment(const GgufValue& v, Cursor& c) {
  uint64_t a = 0;
  if (v.type == GgufValueType::U32 || v.type == GgufValueType::U64 ||
      v.type == GgufValueType::U16 || v.type == GgufValueType::U8) {
    a = v.u;
  } else if (v.type == GgufValueType::I32 || v.type == GgufValueType::I64 ||
             v.type == GgufValueType::I16 || v.type == GgufValueType::I8) {
    a = v.i < 0 ? 0 : static_cast<uint64_t>(v.i);
  } else {
    c.fail(fmt::format("general.alignment has type {}, expected an integer",
                       gguf_value_type_name(v.type)));
  }
  if (a == 0 || (a & (a - 1)) != 0 || a > kMaxAlignment) {
    c.fail(fmt::format("general.alignment {} is not a power of two in [1, 2^30]", a));
  }
  return a;
}

GgufTensorInfo read_tensor_info(Cursor& c, uint64_t index) {
  GgufTensorInfo t;
  t.name = c.read_string("tensor name");
  t.n_dims = c.read<uint32_t>("tensor n_dims");
  if (t.n_dims > kMaxDims) {
    c.fail(fmt::format("tensor {} '{}': n_dims {} exceeds {}", index, t.name, t.n_dims, kMaxDims));
  }
  for (uint32_t d = 0; d < t.n_dims; ++d) {
    const uint64_t ne = c.read<uint64_t>("tensor dimension");
    if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      c.fail(fmt::format("tensor '{}': dimension {} = {} is out of range", t.name, d, ne));
    }
    t.ne[d] = ne;
  }
  const uint32_t type_id = c.read<uint32_t>("tensor type");
  const TypeTraits* traits = find_type_traits(type_id);
  if (traits == nullptr) {
    c.fail(fmt::format("tensor '{}': unsupported tensor type {}", t.name, type_id));
  }
  t.type = traits->type;
  t.offset = c.read<uint64_t>("tensor data offset");

  uint64_t n_elements = 1;
  for (uint64_t ne : t.ne) {
    if (mul_overflows(n_elements, ne, &n_elements) ||
        n_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      c.fail(fmt::format("tensor '{}': element count overflows ({} x {} x {} x {})", t.name,
                         t.ne[0], t.ne[1], t.ne[2], t.ne[3]));
    }
  }
  if (t.ne[0] % traits->block_size != 0) {
    c.fail(fmt::format("tensor '{}': row length {} is not a multiple of the {} block size {}",
                       t.name, t.ne[0], traits->name, traits->block_size));
  }
  uint64_t bytes = 0;
  if (mul_overflows(n_elements / traits->block_size, traits->bytes_per_block, &bytes)) {
    c.fail(fmt::format("tensor '{}': byte size overflows", t.name));
  }
  t.n_bytes = bytes;
  return t;
}

}  // namespace

GgufHeader parse_gguf(const uint8_t* data, size_t size, const std::string& where) {
  Cursor c(data, size, where);
  GgufHeader h;

  c.need(4, "magic");
  if (std::memcmp(data, "GGUF", 4) != 0) c.fail("bad magic: not a GGUF file");
  c.read<uint32_t>("magic");
  h.version = c.read<uint32_t>("version");
  if (h.version != 2 && h.version != 3) {
    const bool swapped = h.version != 0 && (h.version & 0xffffu) == 0;
    c.fail(fmt::format("unsupported GGUF version {}{}", h.version,
                       swapped ? " (big-endian file?)" : " (supported: 2, 3)"));
  }
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // A key/value needs >= 8 (key length) + 4 (type) + 1 bytes; a tensor info >= 8 + 4 + 4 + 8.
  if (n_kv > c.remaining() / 13) {
    c.fail(fmt::format("metadata count {} cannot fit in the {} bytes that remain", n_kv,
                       c.remaining()));
  }
  if (n_tensors > c.remaining() / 24) {
    c.fail(fmt::format("tensor count {} cannot fit in the {} bytes that remain", n_tensors,
                       c.remaining()));
  }

  h.metadata.reserve(static_cast<size_t>(n_kv));
  h.alignment = kDefaultAlignment;
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.read_string("metadata key");
    const uint32_t type = c.read<uint32_t>("metadata value type");
    GgufValue v = read_value(c, type, 0);
    if (key == "general.alignment") h.alignment = read_alignment(v, c);
    if (!h.key_index.emplace(key, h.metadata.size()).second) {
      c.fail(fmt::format("duplicate metadata key '{}'", key));
    }
    h.metadata.emplace_back(std::move(key), std::move(v));
  }

  h.tensors.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t = read_tensor_info(c, k);
    if (!h.tensor_index.emplace(t.name, h.tensors.size()).second) {
      c.fail(fmt::format("duplicate tensor name '{}'", t.name));
    }
    h.tensors.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment.
  uint64_t data_offset = 0;
  if (add_overflows(c.pos(), h.alignment - 1, &data_offset)) c.fail("data offset overflows");
  data_offset -= data_offset % h.alignment;
  if (data_offset > size) {
    if (!h.tensors.empty()) {
      c.fail(fmt::format("data section offset {} lies beyond the end of the file", data_offset));
    }
    data_offset = size;  // no tensors: an unpadded end is harmless
  }
  h.data_offset = data_offset;
  h.data_size = size - data_offset;

  for (const GgufTensorInfo& t : h.tensors) {
    if (t.offset % h.alignment != 0) {
      throw FormatError(fmt::format(
          "gguf '{}': tensor '{}': data offset {} is not a multiple of the alignment {}", where,
          t.name, t.offset, h.alignment));
    }
    uint64_t end = 0;
    if (add_overflows(t.offset, t.n_bytes, &end) || end > h.data_size) {
      throw FormatError(fmt::format(
          "gguf '{}': tensor '{}': data [{}, {} + {}) lies beyond the data section ({} bytes at "
          "offset {})",
          where, t.name, t.offset, t.offset, t.n_bytes, h.data_size, h.data_offset));
    }
  }
  return h;
}

}  // namespace rq::model::detail
