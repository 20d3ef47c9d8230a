// libFuzzer target: any byte string given to GgufFile::from_memory must either parse or throw an
// rq::Error; a parsed file must then survive everything a loader does with it (metadata getters,
// tensor data access, row dequantize/dot, building a tokenizer and encoding with it).
// Build: cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang -DRQ_FUZZ=ON
//        cmake --build build-fuzz --target fuzz_gguf
// Run:   build-fuzz/fuzz/fuzz_gguf -dict=fuzz/gguf.dict -max_len=4096 corpus_dir tests/model/data
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "rq/core/errors.hpp"
#include "rq/model/gguf.hpp"
#include "rq/model/tensor_types.hpp"
#include "rq/model/tokenizer.hpp"

namespace {

using namespace rq::model;

void exercise_metadata(const GgufFile& g) {
  for (const auto& [key, v] : g.metadata()) {
    try {
      switch (v.type) {
        case GgufValueType::STRING: (void)g.get_string(key); break;
        case GgufValueType::F32:
        case GgufValueType::F64: (void)g.get_f32(key); break;
        case GgufValueType::BOOL: (void)g.get_bool(key, false); break;
        case GgufValueType::ARRAY:
          if (v.elem_type == GgufValueType::STRING) (void)g.get_string_array(key);
          else if (v.elem_type == GgufValueType::F32 || v.elem_type == GgufValueType::F64)
            (void)g.get_float_array(key);
          else if (v.elem_type != GgufValueType::ARRAY) (void)g.get_int_array(key);
          break;
        default:
          (void)g.get_i64(key);
          (void)g.get_u32(key, 0);
          break;
      }
    } catch (const rq::FormatError&) {
      // out-of-range conversions are reported, not crashed on
    }
  }
}

void exercise_tensors(const GgufFile& g) {
  std::vector<float> row, x;
  for (const GgufTensorInfo& t : g.tensors()) {
    const auto* p = static_cast<const uint8_t*>(g.tensor_data(t));
    if (t.n_bytes == 0 || !is_compute_supported(t.type) || t.ne[0] > 4096) continue;
    (void)p[t.n_bytes - 1];
    const size_t n = static_cast<size_t>(t.ne[0]);
    row.resize(n);
    x.assign(n, 0.5f);
    dequantize_row(t.type, p, row.data(), n);
    (void)dot_row(t.type, p, x.data(), n);
  }
}

void exercise_tokenizer(const GgufFile& g) {
  if (!g.has("tokenizer.ggml.tokens")) return;
  try {
    const Tokenizer tok = Tokenizer::from_gguf(g);
    const std::string text = "Hello <|im_start|>user\n wörld 123 don't  \t\n";
    const std::vector<int32_t> ids = tok.encode(text, true, true);
    (void)tok.decode(ids);
  } catch (const rq::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const GgufFile g = GgufFile::from_memory(data, size);
    exercise_metadata(g);
    exercise_tensors(g);
    exercise_tokenizer(g);
  } catch (const rq::Error&) {
    // rejected input: fine. Any other exception escapes and libFuzzer reports it.
  }
  return 0;
}
