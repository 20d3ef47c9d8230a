// Dense little-endian bit packing of b-bit codes (b = 1..8), shared by host and CUDA code so the
// two can never drift. Code j of a row occupies bits [j*b, j*b + b) of the row's byte string,
// least significant bit first; a row of n codes takes ceil(n*b/8) bytes, unused high bits are 0.
#pragma once

#include <cstddef>
#include <cstdint>

#include "rq/core/hd.hpp"

namespace rq {

/// Bytes taken by n codes of `bits` bits each.
RQ_HD constexpr size_t packed_bytes(size_t n, int bits) {
  return (n * static_cast<size_t>(bits) + 7) / 8;
}

/// Read code j (bits wide) from a packed row.
RQ_HD uint32_t unpack_code(const uint8_t* row, size_t j, int bits) {
  const size_t bit = j * static_cast<size_t>(bits);
  const size_t byte = bit >> 3;
  const unsigned shift = static_cast<unsigned>(bit & 7u);
  uint32_t v = row[byte];
  if (shift + static_cast<unsigned>(bits) > 8u) v |= static_cast<uint32_t>(row[byte + 1]) << 8;
  return (v >> shift) & ((1u << bits) - 1u);
}

/// Pack n codes (each < 2^bits) into row; writes exactly packed_bytes(n, bits) bytes.
RQ_HD void pack_codes(const uint8_t* codes, size_t n, int bits, uint8_t* row) {
  const size_t nbytes = packed_bytes(n, bits);
  for (size_t i = 0; i < nbytes; ++i) row[i] = 0;
  for (size_t j = 0; j < n; ++j) {
    const size_t bit = j * static_cast<size_t>(bits);
    const size_t byte = bit >> 3;
    const unsigned shift = static_cast<unsigned>(bit & 7u);
    const uint32_t v = static_cast<uint32_t>(codes[j]) << shift;
    row[byte] = static_cast<uint8_t>(row[byte] | (v & 0xffu));
    if (shift + static_cast<unsigned>(bits) > 8u) row[byte + 1] = static_cast<uint8_t>(row[byte + 1] | (v >> 8));
  }
}

/// Unpack n codes from row.
RQ_HD void unpack_codes(const uint8_t* row, size_t n, int bits, uint8_t* codes) {
  for (size_t j = 0; j < n; ++j) codes[j] = static_cast<uint8_t>(unpack_code(row, j, bits));
}

/// Sign bit j of a packed sign row (1 = +1, 0 = -1).
RQ_HD float unpack_sign(const uint8_t* row, size_t j) {
  return ((row[j >> 3] >> (j & 7u)) & 1u) ? 1.0f : -1.0f;
}

}  // namespace rq
