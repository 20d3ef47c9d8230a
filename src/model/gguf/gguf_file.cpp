// GgufFile: owns the mapped (or copied) file image and the parsed header; typed metadata getters.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "gguf_parse.hpp"
#include "rq/core/errors.hpp"
#include "rq/model/gguf.hpp"

namespace rq::model {

const char* gguf_value_type_name(GgufValueType t) noexcept {
  switch (t) {
    case GgufValueType::U8: return "u8";
    case GgufValueType::I8: return "i8";
    case GgufValueType::U16: return "u16";
    case GgufValueType::I16: return "i16";
    case GgufValueType::U32: return "u32";
    case GgufValueType::I32: return "i32";
    case GgufValueType::F32: return "f32";
    case GgufValueType::BOOL: return "bool";
    case GgufValueType::STRING: return "string";
    case GgufValueType::ARRAY: return "array";
    case GgufValueType::U64: return "u64";
    case GgufValueType::I64: return "i64";
    case GgufValueType::F64: return "f64";
  }
  return "unknown";
}

namespace {

bool is_unsigned(GgufValueType t) {
  return t == GgufValueType::U8 || t == GgufValueType::U16 || t == GgufValueType::U32 ||
         t == GgufValueType::U64;
}
bool is_signed(GgufValueType t) {
  return t == GgufValueType::I8 || t == GgufValueType::I16 || t == GgufValueType::I32 ||
         t == GgufValueType::I64;
}

}  // namespace

bool GgufValue::is_integer() const noexcept { return is_unsigned(type) || is_signed(type); }
bool GgufValue::is_float() const noexcept {
  return type == GgufValueType::F32 || type == GgufValueType::F64;
}

struct GgufFile::Impl {
  std::string path;
  // Exactly one of the two backings holds the image.
  void* map = nullptr;
  size_t map_size = 0;
  std::vector<uint8_t> copy;
  const uint8_t* base = nullptr;
  uint64_t size = 0;
  detail::GgufHeader header;

  ~Impl() {
    if (map != nullptr) munmap(map, map_size);
  }

  [[noreturn]] void fail(std::string_view key, const std::string& what) const {
    throw FormatError(fmt::format("gguf '{}': metadata '{}': {}", path, key, what));
  }

  const GgufValue& require(std::string_view key) const {
    auto it = header.key_index.find(std::string(key));
    if (it == header.key_index.end()) fail(key, "missing");
    return header.metadata[it->second].second;
  }
  const GgufValue* lookup(std::string_view key) const {
    auto it = header.key_index.find(std::string(key));
    return it == header.key_index.end() ? nullptr : &header.metadata[it->second].second;
  }

  int64_t as_i64(std::string_view key, const GgufValue& v) const {
    if (is_signed(v.type)) return v.i;
    if (is_unsigned(v.type)) {
      if (v.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        fail(key, fmt::format("value {} does not fit in i64", v.u));
      }
      return static_cast<int64_t>(v.u);
    }
    fail(key, fmt::format("has type {}, expected an integer", gguf_value_type_name(v.type)));
  }
  uint32_t as_u32(std::string_view key, const GgufValue& v) const {
    const int64_t x = as_i64(key, v);
    if (x < 0 || x > static_cast<int64_t>(std::numeric_limits<uint32_t>::max())) {
      fail(key, fmt::format("value {} does not fit in u32", x));
    }
    return static_cast<uint32_t>(x);
  }
  float as_f32(std::string_view key, const GgufValue& v) const {
    if (v.is_float()) return static_cast<float>(v.f);
    if (is_signed(v.type)) return static_cast<float>(v.i);
    if (is_unsigned(v.type)) return static_cast<float>(v.u);
    fail(key, fmt::format("has type {}, expected a number", gguf_value_type_name(v.type)));
  }
  const std::string& as_string(std::string_view key, const GgufValue& v) const {
    if (v.type != GgufValueType::STRING) {
      fail(key, fmt::format("has type {}, expected string", gguf_value_type_name(v.type)));
    }
    return v.str;
  }
  const GgufValue& require_array(std::string_view key, const char* what) const {
    const GgufValue& v = require(key);
    if (v.type != GgufValueType::ARRAY) {
      fail(key, fmt::format("has type {}, expected an array of {}", gguf_value_type_name(v.type),
                            what));
    }
    return v;
  }
};

GgufFile::GgufFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

GgufFile GgufFile::open(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw IoError(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw IoError(fmt::format("cannot stat '{}': {}", path, std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw IoError(fmt::format("'{}' is not a regular file", path));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    throw FormatError(fmt::format("gguf '{}': empty file (truncated header)", path));
  }
  void* map = mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);
  if (map == MAP_FAILED) {
    throw IoError(fmt::format("cannot mmap '{}': {}", path, std::strerror(map_err)));
  }
  impl->map = map;
  impl->map_size = static_cast<size_t>(size);
  impl->base = static_cast<const uint8_t*>(map);
  impl->size = size;
  impl->header = detail::parse_gguf(impl->base, static_cast<size_t>(size), path);
  return GgufFile(std::move(impl));
}

GgufFile GgufFile::from_memory(const void* data, size_t size) {
  if (data == nullptr && size != 0) throw InvalidArgument("GgufFile::from_memory: null data");
  auto impl = std::make_unique<Impl>();
  impl->path = "<memory>";
  impl->copy.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + size);
  impl->base = impl->copy.data();
  impl->size = size;
  impl->header = detail::parse_gguf(impl->base, size, impl->path);
  return GgufFile(std::move(impl));
}

uint32_t GgufFile::version() const noexcept { return impl_->header.version; }
const std::string& GgufFile::path() const noexcept { return impl_->path; }
uint64_t GgufFile::file_size() const noexcept { return impl_->size; }
uint64_t GgufFile::alignment() const noexcept { return impl_->header.alignment; }
uint64_t GgufFile::data_offset() const noexcept { return impl_->header.data_offset; }

bool GgufFile::has(std::string_view key) const { return impl_->lookup(key) != nullptr; }
const GgufValue* GgufFile::find(std::string_view key) const { return impl_->lookup(key); }
const std::vector<std::pair<std::string, GgufValue>>& GgufFile::metadata() const noexcept {
  return impl_->header.metadata;
}

std::string GgufFile::get_string(std::string_view key) const {
  return impl_->as_string(key, impl_->require(key));
}
std::string GgufFile::get_string(std::string_view key, const std::string& def) const {
  const GgufValue* v = impl_->lookup(key);
  return v == nullptr ? def : impl_->as_string(key, *v);
}
uint32_t GgufFile::get_u32(std::string_view key) const {
  return impl_->as_u32(key, impl_->require(key));
}
uint32_t GgufFile::get_u32(std::string_view key, uint32_t def) const {
  const GgufValue* v = impl_->lookup(key);
  return v == nullptr ? def : impl_->as_u32(key, *v);
}
int64_t GgufFile::get_i64(std::string_view key) const {
  return impl_->as_i64(key, impl_->require(key));
}
int64_t GgufFile::get_i64(std::string_view key, int64_t def) const {
  const GgufValue* v = impl_->lookup(key);
  return v == nullptr ? def : impl_->as_i64(key, *v);
}
float GgufFile::get_f32(std::string_view key) const {
  return impl_->as_f32(key, impl_->require(key));
}
float GgufFile::get_f32(std::string_view key, float def) const {
  const GgufValue* v = impl_->lookup(key);
  return v == nullptr ? def : impl_->as_f32(key, *v);
}
bool GgufFile::get_bool(std::string_view key, bool def) const {
  const GgufValue* v = impl_->lookup(key);
  if (v == nullptr) return def;
  if (v->type == GgufValueType::BOOL) return v->b;
  if (v->is_integer()) return impl_->as_i64(key, *v) != 0;
  impl_->fail(key, fmt::format("has type {}, expected bool", gguf_value_type_name(v->type)));
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue& v = impl_->require_array(key, "strings");
  if (v.elem_type != GgufValueType::STRING) {
    impl_->fail(key, fmt::format("is an array of {}, expected strings",
                                 gguf_value_type_name(v.elem_type)));
  }
  return v.strings;
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue& v = impl_->require_array(key, "integers");
  if (v.elem_type == GgufValueType::U64) {
    for (int64_t x : v.ints) {
      if (x < 0) impl_->fail(key, "u64 element does not fit in i64");
    }
  }
  if (!is_signed(v.elem_type) && !is_unsigned(v.elem_type) &&
      v.elem_type != GgufValueType::BOOL) {
    impl_->fail(key, fmt::format("is an array of {}, expected integers",
                                 gguf_value_type_name(v.elem_type)));
  }
  return v.ints;
}

std::vector<float> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue& v = impl_->require_array(key, "floats");
  if (v.elem_type != GgufValueType::F32 && v.elem_type != GgufValueType::F64) {
    impl_->fail(key, fmt::format("is an array of {}, expected floats",
                                 gguf_value_type_name(v.elem_type)));
  }
  return std::vector<float>(v.floats.begin(), v.floats.end());
}

const std::vector<GgufTensorInfo>& GgufFile::tensors() const noexcept {
  return impl_->header.tensors;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = impl_->header.tensor_index.find(std::string(name));
  return it == impl_->header.tensor_index.end() ? nullptr : &impl_->header.tensors[it->second];
}

const GgufTensorInfo& GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (t == nullptr) {
    throw FormatError(fmt::format("gguf '{}': no tensor named '{}'", impl_->path, name));
  }
  return *t;
}

const void* GgufFile::tensor_data(std::string_view name) const {
  return tensor_data(tensor(name));
}

const void* GgufFile::tensor_data(const GgufTensorInfo& info) const {
  // Offsets were validated at open; re-check in case the caller built its own info.
  const auto& h = impl_->header;
  if (info.offset > h.data_size || info.n_bytes > h.data_size - info.offset) {
    throw FormatError(fmt::format("gguf '{}': tensor '{}' lies outside the data section",
                                  impl_->path, info.name));
  }
  return impl_->base + h.data_offset + info.offset;
}

}  // namespace rq::model
