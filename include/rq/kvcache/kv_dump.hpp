// A dump of real post-RoPE Q, K and V vectors of chosen layers (written by `rotorquant kv-dump`,
// read by `rotorquant eval-kv`). Little-endian binary:
//
//   offset  size  field
//   0       8     magic "RQKVDMP1"
//   8       4     u32 version = 1
//   12      4     u32 n_layers (dumped layers, >= 1)
//   16      4     u32 n_tokens (>= 1)
//   20      4     u32 n_heads (query heads)
//   24      4     u32 n_kv_heads (divides n_heads)
//   28      4     u32 head_dim
//   32      4*L   u32 layer index of each dumped layer
//   then per dumped layer, in order: q: n_tokens x n_heads x head_dim float32,
//                                    k: n_tokens x n_kv_heads x head_dim float32,
//                                    v: n_tokens x n_kv_heads x head_dim float32.
// The file size must be exactly the header plus these arrays; read_kv_dump checks every field
// (sizes capped so a hostile header cannot trigger a huge allocation) and that every value is finite.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rq {

struct KvDumpLayer {
  uint32_t layer = 0;
  std::vector<float> q;  // n_tokens x n_heads x head_dim
  std::vector<float> k;  // n_tokens x n_kv_heads x head_dim
  std::vector<float> v;  // n_tokens x n_kv_heads x head_dim
};

struct KvDump {
  uint32_t n_tokens = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  std::vector<KvDumpLayer> layers;
};

/// Throws rq::InvalidArgument for inconsistent sizes, rq::IoError if the file cannot be written.
void write_kv_dump(const std::string& path, const KvDump& dump);
/// Throws rq::IoError (cannot open/read) or rq::FormatError (bad magic/version/sizes/values).
KvDump read_kv_dump(const std::string& path);
/// Same checks on an in-memory image.
KvDump parse_kv_dump(const void* data, size_t size);

}  // namespace rq
