// The table of every KV-cache format. Adding a format is adding a row here (and, for a new scheme,
// teaching the codec). Byte layouts: docs/formats.md.
#include <algorithm>
#include <string>

#include "rq/core/errors.hpp"
#include "rq/format/format.hpp"
#include "rq/pack/bitpack.hpp"

namespace rq {
namespace {

constexpr auto kExact = CodebookDensity::Exact;

FormatSpec lloyd(std::string_view name, int bits, RotationKind rotation, std::string_view description,
                 bool norm_correction = true, bool qjl = false) {
  return FormatSpec{name, Scheme::LloydMax, bits, rotation, norm_correction && !qjl, qjl, kExact, description};
}

std::vector<FormatSpec> build_table() {
  using R = RotationKind;
  std::vector<FormatSpec> t = {
      {"f32", Scheme::F32, 32, R::None, false, false, kExact, "float32 reference"},
      {"f16", Scheme::F16, 16, R::None, false, false, kExact, "binary16, the usual KV cache"},
      {"q8", Scheme::Int8, 8, R::None, false, false, kExact, "int8 per vector, fp16 absmax scale"},
      {"q4", Scheme::Int4, 4, R::None, false, false, kExact, "int4 per block of 32, fp16 scale per block"},
      {"q4h", Scheme::Int4, 4, R::Hadamard, false, false, kExact, "q4 after a randomized Hadamard mix"},
  };
  const char* const turbo[] = {"turbo2", "turbo3", "turbo4"};
  const char* const dense[] = {"turbodense2", "turbodense3", "turbodense4"};
  const char* const rotor[] = {"rotor2", "rotor3", "rotor4"};
  const char* const planar[] = {"planar2", "planar3", "planar4"};
  const char* const iso[] = {"iso2", "iso3", "iso4"};
  const char* const isofull[] = {"isofull2", "isofull3", "isofull4"};
  const char* const none[] = {"none2", "none3", "none4"};
  for (int b = 2; b <= 4; ++b) t.push_back(lloyd(turbo[b - 2], b, R::Turbo, "TurboQuant: randomized Walsh-Hadamard + Lloyd-Max"));
  for (int b = 2; b <= 4; ++b) t.push_back(lloyd(dense[b - 2], b, R::TurboDense, "TurboQuant paper: Haar dense rotation + Lloyd-Max"));
  for (int b = 2; b <= 4; ++b) t.push_back(lloyd(rotor[b - 2], b, R::Rotor, "RotorQuant: Cl(3,0) rotors on groups of 3 + Lloyd-Max"));
  for (int b = 2; b <= 4; ++b) t.push_back(lloyd(planar[b - 2], b, R::Planar, "PlanarQuant: 2D Givens pairs + Lloyd-Max"));
  for (int b = 2; b <= 4; ++b) t.push_back(lloyd(iso[b - 2], b, R::IsoFast, "IsoQuant fast: left quaternion per quad + Lloyd-Max"));
  for (int b = 2; b <= 4; ++b) t.push_back(lloyd(isofull[b - 2], b, R::IsoFull, "IsoQuant full: q_L v conj(q_R) per quad + Lloyd-Max"));
  for (int b = 2; b <= 4; ++b) t.push_back(lloyd(none[b - 2], b, R::None, "no rotation: plain Lloyd-Max per coordinate"));
  t.push_back(lloyd("turbo3_qjl", 3, R::Turbo, "turbo 2-bit + 1-bit QJL residual (unbiased inner products)", false, true));
  t.push_back(lloyd("turbo4_qjl", 4, R::Turbo, "turbo 3-bit + 1-bit QJL residual (unbiased inner products)", false, true));
  t.push_back(lloyd("rotor3_qjl", 3, R::Rotor, "rotor 2-bit + 1-bit QJL residual (unbiased inner products)", false, true));
  t.push_back(lloyd("rotor4_qjl", 4, R::Rotor, "rotor 3-bit + 1-bit QJL residual (unbiased inner products)", false, true));
  t.push_back(lloyd("turbo3_nocorr", 3, R::Turbo, "turbo3 without norm correction (stores the plain norm)", false));
  t.push_back(lloyd("rotor3_nocorr", 3, R::Rotor, "rotor3 without norm correction (stores the plain norm)", false));
  return t;
}

}  // namespace

const std::vector<FormatSpec>& format_table() {
  static const std::vector<FormatSpec> table = build_table();
  return table;
}

std::string format_names() {
  std::string names;
  for (const auto& f : format_table()) {
    if (!names.empty()) names += ", ";
    names += f.name;
  }
  return names;
}

const FormatSpec& find_format(std::string_view name) {
  const auto& table = format_table();
  auto it = std::find_if(table.begin(), table.end(), [&](const FormatSpec& f) { return f.name == name; });
  if (it == table.end()) {
    throw UnknownFormat("unknown format '" + std::string(name) + "'; valid formats: " + format_names());
  }
  return *it;
}

FormatLayout format_layout(const FormatSpec& format, size_t dim) {
  if (dim == 0) throw InvalidArgument("format " + std::string(format.name) + ": dimension must be >= 1, got 0");
  if (format.rotation != RotationKind::None && dim < 2) {
    throw InvalidArgument("format " + std::string(format.name) + ": rotated formats need dimension >= 2, got " +
                          std::to_string(dim));
  }
  if (dim > (size_t{1} << 20)) {
    throw InvalidArgument("format " + std::string(format.name) + ": dimension " + std::to_string(dim) +
                          " exceeds the supported maximum 1048576");
  }
  FormatLayout l;
  l.dim = dim;
  l.rotated_dim = rotated_dim_for(format.rotation, dim);
  const size_t n = l.rotated_dim;
  switch (format.scheme) {
    case Scheme::F32:
      l.code_bits = 32;
      l.payload_bytes = 4 * n;
      break;
    case Scheme::F16:
      l.code_bits = 16;
      l.payload_bytes = 2 * n;
      break;
    case Scheme::Int8:
      l.code_bits = 8;
      l.payload_bytes = n;
      l.side_bytes = 2;
      break;
    case Scheme::Int4:
      l.code_bits = 4;
      l.payload_bytes = packed_bytes(n, 4);
      l.side_bytes = 2 * ((n + 31) / 32);
      break;
    case Scheme::LloydMax:
      l.code_bits = format.qjl ? format.bits - 1 : format.bits;
      l.payload_bytes = packed_bytes(n, l.code_bits);
      l.qjl_bytes = format.qjl ? packed_bytes(dim, 1) : 0;
      l.side_bytes = format.qjl ? 4 : 2;
      break;
  }
  l.code_bytes = l.payload_bytes + l.qjl_bytes;
  return l;
}

}  // namespace rq
