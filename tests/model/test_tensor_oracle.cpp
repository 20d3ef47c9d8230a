// Dequantization against an independent oracle: blocks in tests/model/data/ggml_oracle_<type>.bin
// were dequantized by the `gguf` Python package (make_block_oracle.py); ours must match bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "rq/model/tensor_types.hpp"

namespace rq::model {
namespace {

namespace fs = std::filesystem;

std::vector<char> read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}

TEST(TensorOracle, DequantizeMatchesGgufPy) {
  const fs::path dir = fs::path(RQ_SOURCE_DIR) / "tests" / "model" / "data";
  const std::pair<const char*, GgmlType> types[] = {
      {"q4_0", GgmlType::Q4_0}, {"q4_1", GgmlType::Q4_1}, {"q8_0", GgmlType::Q8_0},
      {"q4_k", GgmlType::Q4_K}, {"q5_k", GgmlType::Q5_K}, {"q6_k", GgmlType::Q6_K}};
  for (const auto& [name, type] : types) {
    SCOPED_TRACE(name);
    const std::vector<char> raw = read_all(dir / (std::string("ggml_oracle_") + name + ".bin"));
    const std::vector<char> ref_bytes = read_all(dir / (std::string("ggml_oracle_") + name + ".f32"));
    ASSERT_FALSE(raw.empty());
    const size_t n = ref_bytes.size() / sizeof(float);
    ASSERT_EQ(row_bytes(type, n), raw.size());
    std::vector<float> ref(n), out(n);  // n floats each
    std::memcpy(ref.data(), ref_bytes.data(), ref_bytes.size());
    dequantize_row(type, raw.data(), out.data(), n);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], ref[i]) << "element " << i;
  }
}

}  // namespace
}  // namespace rq::model
