// The ggml type table: one row per type id. Block sizes are pinned by static_asserts in the
// block-layout header and by tests against hand-made blocks.
#include <fmt/format.h>

#include <array>

#include "blocks.hpp"
#include "rq/core/errors.hpp"
#include "rq/model/tensor_types.hpp"

namespace rq::model {
namespace {

// clang-format off
constexpr TypeTraits kTypes[] = {
  // type              name       block  bytes  compute
  {GgmlType::F32,     "f32",      1,     4,     true},
  {GgmlType::F16,     "f16",      1,     2,     true},
  {GgmlType::Q4_0,    "q4_0",     32,    18,    true},
  {GgmlType::Q4_1,    "q4_1",     32,    20,    true},
  {GgmlType::Q5_0,    "q5_0",     32,    22,    false},
  {GgmlType::Q5_1,    "q5_1",     32,    24,    false},
  {GgmlType::Q8_0,    "q8_0",     32,    34,    true},
  {GgmlType::Q8_1,    "q8_1",     32,    36,    false},
  {GgmlType::Q2_K,    "q2_k",     256,   84,    false},
  {GgmlType::Q3_K,    "q3_k",     256,   110,   false},
  {GgmlType::Q4_K,    "q4_k",     256,   144,   true},
  {GgmlType::Q5_K,    "q5_k",     256,   176,   true},
  {GgmlType::Q6_K,    "q6_k",     256,   210,   true},
  {GgmlType::Q8_K,    "q8_k",     256,   292,   false},
  {GgmlType::IQ2_XXS, "iq2_xxs",  256,   66,    false},
  {GgmlType::IQ2_XS,  "iq2_xs",   256,   74,    false},
  {GgmlType::IQ3_XXS, "iq3_xxs",  256,   98,    false},
  {GgmlType::IQ1_S,   "iq1_s",    256,   50,    false},
  {GgmlType::IQ4_NL,  "iq4_nl",   32,    18,    false},
  {GgmlType::IQ3_S,   "iq3_s",    256,   110,   false},
  {GgmlType::IQ2_S,   "iq2_s",    256,   82,    false},
  {GgmlType::IQ4_XS,  "iq4_xs",   256,   136,   false},
  {GgmlType::I8,      "i8",       1,     1,     false},
  {GgmlType::I16,     "i16",      1,     2,     false},
  {GgmlType::I32,     "i32",      1,     4,     false},
  {GgmlType::I64,     "i64",      1,     8,     false},
  {GgmlType::F64,     "f64",      1,     8,     false},
  {GgmlType::IQ1_M,   "iq1_m",    256,   56,    false},
  {GgmlType::BF16,    "bf16",     1,     2,     true},
  {GgmlType::TQ1_0,   "tq1_0",    256,   54,    false},
  {GgmlType::TQ2_0,   "tq2_0",    256,   66,    false},
};
// clang-format on

static_assert(blocks::kQ4_0Bytes == 2 + blocks::kQK / 2);
static_assert(blocks::kQ4_1Bytes == 4 + blocks::kQK / 2);
static_assert(blocks::kQ8_0Bytes == 2 + blocks::kQK);
static_assert(blocks::kQ4_KBytes == 2 + 2 + 12 + blocks::kQK_K / 2);
static_assert(blocks::kQ5_KBytes == 2 + 2 + 12 + blocks::kQK_K / 8 + blocks::kQK_K / 2);
static_assert(blocks::kQ6_KBytes == blocks::kQK_K / 2 + blocks::kQK_K / 4 + blocks::kQK_K / 16 + 2);

}  // namespace

const TypeTraits* find_type_traits(uint32_t type_id) noexcept {
  for (const TypeTraits& t : kTypes) {
    if (static_cast<uint32_t>(t.type) == type_id) return &t;
  }
  return nullptr;
}

const TypeTraits& type_traits(GgmlType type) {
  const TypeTraits* t = find_type_traits(static_cast<uint32_t>(type));
  if (t == nullptr) {
    throw FormatError(fmt::format("unsupported tensor type {}", static_cast<uint32_t>(type)));
  }
  return *t;
}

const char* type_name(GgmlType type) noexcept {
  const TypeTraits* t = find_type_traits(static_cast<uint32_t>(type));
  return t == nullptr ? "unknown" : t->name;
}

bool is_compute_supported(GgmlType type) noexcept {
  const TypeTraits* t = find_type_traits(static_cast<uint32_t>(type));
  return t != nullptr && t->compute_supported;
}

size_t row_bytes(GgmlType type, size_t n) {
  const TypeTraits& t = type_traits(type);
  if (n % t.block_size != 0) {
    throw InvalidArgument(fmt::format("row of {} elements is not a multiple of the {} block size {}",
                                      n, t.name, t.block_size));
  }
  return n / t.block_size * t.bytes_per_block;
}

}  // namespace rq::model
