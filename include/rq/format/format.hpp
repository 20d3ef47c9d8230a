// The format table: every KV-cache format, by the name the CLI uses (as llama.cpp's -ctk q8_0).
// One row drives the CLI, the test matrix and the benchmark matrix. Byte layouts: docs/formats.md.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "rq/codebook/lloyd_max.hpp"
#include "rq/rotation/rotation.hpp"

namespace rq {

/// How the rotated coordinates are stored.
enum class Scheme : unsigned char {
  F32,       // 4-byte floats, no side values
  F16,       // binary16
  Int8,      // symmetric int8 per vector, one fp16 scale (absmax / 127)
  Int4,      // symmetric int4 per block of 32, one fp16 scale per block (absmax / 7)
  LloydMax,  // fp16 norm + b-bit Lloyd-Max codes of the rotated unit vector
};

struct FormatSpec {
  std::string_view name;         // CLI spelling, e.g. "rotor3"
  Scheme scheme;
  int bits;                      // bits per coordinate, QJL sign bit included ("3" of turbo3_qjl)
  RotationKind rotation;
  bool norm_correction;          // store nu / ||C[idx]|| so that ||x_hat|| = ||x||
  bool qjl;                      // (bits-1)-bit Lloyd-Max + 1-bit QJL residual signs + fp16 gamma
  CodebookDensity density;       // codebook density for LloydMax
  std::string_view description;
};

/// Sizes of one encoded vector of dimension d. Codes and side values live in separate planes.
struct FormatLayout {
  size_t dim = 0;            // d
  size_t rotated_dim = 0;    // n: coordinates after rotation and padding
  int code_bits = 0;         // bits per stored coordinate in the codes plane (LloydMax: b or b-1)
  size_t payload_bytes = 0;  // packed coordinate codes
  size_t qjl_bytes = 0;      // packed residual signs (m = d bits), after the payload, 0 if none
  size_t code_bytes = 0;     // payload_bytes + qjl_bytes: one row of the codes plane
  size_t side_bytes = 0;     // one row of the side plane: fp16 norms / scales / gamma
  size_t bytes_per_vector() const { return code_bytes + side_bytes; }
  /// fp16 bytes for the same vector (2 d) over bytes_per_vector().
  double ratio_vs_f16() const { return static_cast<double>(2 * dim) / static_cast<double>(bytes_per_vector()); }
};

/// All formats, in display order.
const std::vector<FormatSpec>& format_table();

/// The row named `name`; throws rq::UnknownFormat listing the valid names.
const FormatSpec& find_format(std::string_view name);

/// Layout of `format` at dimension d; throws rq::InvalidArgument for d = 0 (or d < 2 when rotated).
FormatLayout format_layout(const FormatSpec& format, size_t dim);

/// Comma-separated list of all format names (for help and error texts).
std::string format_names();

}  // namespace rq
