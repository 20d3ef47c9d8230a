// Writing and validating KV dump files (layout in rq/kvcache/kv_dump.hpp).
#include "rq/kvcache/kv_dump.hpp"

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "rq/core/errors.hpp"

namespace rq {

namespace {

constexpr char kMagic[8] = {'R', 'Q', 'K', 'V', 'D', 'M', 'P', '1'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = 32;
constexpr uint64_t kMaxFloats = uint64_t{1} << 32;  // 16 GiB of floats: refuse anything bigger

void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t get_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}

void put_floats(std::string& s, const std::vector<float>& x) {
  for (float f : x) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    put_u32(s, u);
  }
}

}  // namespace

void write_kv_dump(const std::string& path, const KvDump& d) {
  if (d.layers.empty() || d.n_tokens == 0 || d.n_heads == 0 || d.n_kv_heads == 0 || d.head_dim == 0 ||
      d.n_heads % d.n_kv_heads != 0) {
    throw InvalidArgument("kv dump: empty or inconsistent dimensions");
  }
  const size_t nq = size_t{d.n_tokens} * d.n_heads * d.head_dim, nk = size_t{d.n_tokens} * d.n_kv_heads * d.head_dim;
  std::string s(kMagic, kMagic + 8);
  put_u32(s, kVersion);
  put_u32(s, static_cast<uint32_t>(d.layers.size()));
  put_u32(s, d.n_tokens);
  put_u32(s, d.n_heads);
  put_u32(s, d.n_kv_heads);
  put_u32(s, d.head_dim);
  for (const auto& l : d.layers) put_u32(s, l.layer);
  for (const auto& l : d.layers) {
    if (l.q.size() != nq || l.k.size() != nk || l.v.size() != nk) throw InvalidArgument("kv dump: layer arrays have wrong sizes");
    put_floats(s, l.q);
    put_floats(s, l.k);
    put_floats(s, l.v);
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw IoError("kv dump: cannot create '" + path + "'");
  out.write(s.data(), static_cast<std::streamsize>(s.size()));
  if (!out) throw IoError("kv dump: cannot write '" + path + "'");
}

KvDump parse_kv_dump(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  if (size < kHeader) throw FormatError("kv dump: file too short for the header (" + std::to_string(size) + " bytes)");
  if (std::memcmp(p, kMagic, 8) != 0) throw FormatError("kv dump: bad magic (not a rotorquant KV dump)");
  const uint32_t version = get_u32(p + 8);
  if (version != kVersion) throw FormatError("kv dump: unsupported version " + std::to_string(version));
  KvDump d;
  const uint32_t n_layers = get_u32(p + 12);
  d.n_tokens = get_u32(p + 16);
  d.n_heads = get_u32(p + 20);
  d.n_kv_heads = get_u32(p + 24);
  d.head_dim = get_u32(p + 28);
  if (n_layers == 0 || d.n_tokens == 0 || d.n_heads == 0 || d.n_kv_heads == 0 || d.head_dim == 0) {
    throw FormatError("kv dump: zero layers, tokens, heads or head_dim");
  }
  if (d.n_heads % d.n_kv_heads != 0) throw FormatError("kv dump: n_heads is not a multiple of n_kv_heads");
  if (n_layers > 65536 || d.n_heads > 65536 || d.head_dim > 65536) throw FormatError("kv dump: absurd dimensions");
  const uint64_t nq = uint64_t{d.n_tokens} * d.n_heads * d.head_dim;
  const uint64_t nk = uint64_t{d.n_tokens} * d.n_kv_heads * d.head_dim;
  const uint64_t per_layer = nq + 2 * nk;
  if (per_layer > kMaxFloats || per_layer * n_layers > kMaxFloats) throw FormatError("kv dump: absurd sizes");
  const uint64_t expect = kHeader + 4ull * n_layers + 4ull * per_layer * n_layers;
  if (expect != size) {
    throw FormatError("kv dump: file has " + std::to_string(size) + " bytes, the header describes " + std::to_string(expect));
  }
  const uint8_t* cur = p + kHeader;
  d.layers.resize(n_layers);
  for (auto& l : d.layers) {
    l.layer = get_u32(cur);
    cur += 4;
  }
  auto read = [&](std::vector<float>& x, uint64_t n) {
    x.resize(n);
    std::memcpy(x.data(), cur, n * 4);  // little-endian hosts only (x86, arm64)
    cur += n * 4;
    for (float f : x) {
      if (!std::isfinite(f)) throw FormatError("kv dump: non-finite value");
    }
  };
  for (auto& l : d.layers) {
    read(l.q, nq);
    read(l.k, nk);
    read(l.v, nk);
  }
  return d;
}

KvDump read_kv_dump(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("kv dump: cannot open '" + path + "'");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw IoError("kv dump: cannot read '" + path + "'");
  return parse_kv_dump(bytes.data(), bytes.size());
}

}  // namespace rq
