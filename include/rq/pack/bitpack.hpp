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

/// Pack 8 codes of B bits into exactly B bytes (the unit of every packed row).
template <int B>
RQ_HD void pack_group8(const uint8_t* codes, uint8_t* out) {
  uint64_t w = 0;
  for (int l = 0; l < 8; ++l) w |= static_cast<uint64_t>(codes[l]) << (B * l);
  for (int k = 0; k < B; ++k) out[k] = static_cast<uint8_t>(w >> (8 * k));
}

template <int B>
RQ_HD size_t pack_groups(const uint8_t* codes, size_t groups, uint8_t* row) {
  for (size_t g = 0; g < groups; ++g) pack_group8<B>(codes + 8 * g, row + g * B);
  return groups * B;
}

/// Pack n codes (each < 2^bits) into row; writes exactly packed_bytes(n, bits) bytes.
RQ_HD void pack_codes(const uint8_t* codes, size_t n, int bits, uint8_t* row) {
  const size_t groups = n / 8;
  size_t out = 0;
  switch (bits) {  // whole groups with the shift amounts known at compile time
    case 1: out = pack_groups<1>(codes, groups, row); break;
    case 2: out = pack_groups<2>(codes, groups, row); break;
    case 3: out = pack_groups<3>(codes, groups, row); break;
    case 4: out = pack_groups<4>(codes, groups, row); break;
    case 5: out = pack_groups<5>(codes, groups, row); break;
    case 6: out = pack_groups<6>(codes, groups, row); break;
    case 7: out = pack_groups<7>(codes, groups, row); break;
    default: out = pack_groups<8>(codes, groups, row); break;
  }
  uint32_t acc = 0;      // the tail: pending bits, LSB first
  unsigned pending = 0;  // number of pending bits (< 8 between codes)
  for (size_t j = groups * 8; j < n; ++j) {
    acc |= static_cast<uint32_t>(codes[j]) << pending;
    pending += static_cast<unsigned>(bits);
    while (pending >= 8u) {
      row[out++] = static_cast<uint8_t>(acc & 0xffu);
      acc >>= 8;
      pending -= 8u;
    }
  }
  if (pending) row[out] = static_cast<uint8_t>(acc & 0xffu);
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
