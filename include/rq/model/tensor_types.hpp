// ggml tensor types as data: one trait row per type id (block size, bytes per block, name), a
// scalar reference dequantizer, a fast row dot product and a threaded matrix-vector product.
//
// Supported for compute (dequantize / dot / matvec): F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K,
// Q5_K, Q6_K. Other ggml type ids that the table knows (Q5_0, Q2_K, IQ*, ...) can be listed and
// sized (a GGUF file holding them opens), but computing with them throws rq::FormatError
// "unsupported tensor type N (name)". A type id that is not in the table at all makes
// GgufFile::open throw rq::FormatError "unsupported tensor type N", since its size is unknown.
//
// Dot products take the activation as plain float32 (no q8 activation quantization): each block
// is decoded in SIMD registers (Highway, runtime dispatch between the compiled targets, e.g.
// AVX-512, AVX2/FMA, SSE4, SSSE3, EMU128) and block scales are applied once per (sub-)block.
// Results agree with dot(dequantize_row(row), x) to float rounding (tests: 1e-4 of Σ|w·x| on
// every compiled target). Dequantization is bit-exact with ggml (checked against gguf-py).
#pragma once

#include <cstddef>
#include <cstdint>

namespace rq::model {

/// ggml type ids as stored in GGUF tensor infos (values are the on-disk ids).
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
};

/// One row of the type table.
struct TypeTraits {
  GgmlType type;
  const char* name;          ///< ggml spelling, lower case: "q4_k", "f16"
  uint32_t block_size;       ///< elements per block (1 for plain float/int types)
  uint32_t bytes_per_block;  ///< bytes of one block
  bool compute_supported;    ///< dequantize_row / dot_row / matvec implemented
};

/// Trait row for a raw type id, or nullptr if the id is not in the table.
const TypeTraits* find_type_traits(uint32_t type_id) noexcept;

/// Trait row for a type; throws rq::FormatError "unsupported tensor type N" for unknown ids.
const TypeTraits& type_traits(GgmlType type);

/// "q4_k" etc.; "unknown" for ids not in the table.
const char* type_name(GgmlType type) noexcept;

/// True if dequantize_row / dot_row / matvec work for this type.
bool is_compute_supported(GgmlType type) noexcept;

/// Bytes of a row of n elements. Throws rq::InvalidArgument if n is not a multiple of the block
/// size, rq::FormatError if the type is unknown.
size_t row_bytes(GgmlType type, size_t n);

/// Scalar reference decode. row: row_bytes(type, n) bytes; out: n floats.
/// Throws rq::FormatError for types without compute support, rq::InvalidArgument for bad n.
void dequantize_row(GgmlType type, const void* row, float* out, size_t n);

/// Fast dot product sum_i dequant(row)[i] * x[i]. row: row_bytes(type, n) bytes; x: n floats.
float dot_row(GgmlType type, const void* row, const float* x, size_t n);

/// Scalar reference of dot_row (dequantize then multiply in double); used by tests.
float dot_row_reference(GgmlType type, const void* row, const float* x, size_t n);

/// y = W x. W: rows × row_bytes(type, cols) bytes (row-major, ggml layout: ne[0] = cols is the
/// contiguous dimension, ne[1] = rows); x: cols floats; y: rows floats (must not alias x).
/// Threaded over rows (rq::ThreadPool::global()).
void matvec(GgmlType type, const void* W, size_t rows, size_t cols, const float* x, float* y);

/// Name of the SIMD target dot_row dispatches to on this CPU (e.g. "AVX2"), for benchmarks.
const char* dot_simd_target();

}  // namespace rq::model
