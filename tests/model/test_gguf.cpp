// GGUF reader: the crafted regression corpus (tests/model/data), every metadata type, tensor
// data access, hostile mutations of a valid file, and the real model when it is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "rq/core/errors.hpp"
#include "rq/core/rng.hpp"
#include "rq/model/gguf.hpp"
#include "rq/model/tensor_types.hpp"

namespace rq::model {
namespace {

namespace fs = std::filesystem;

const fs::path kDataDir = fs::path(RQ_SOURCE_DIR) / "tests" / "model" / "data";

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

std::vector<fs::path> corpus(const std::string& prefix) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(kDataDir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && e.path().extension() == ".bin") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// Opens a file and touches everything a model loader would.
void load_everything(const GgufFile& g) {
  for (const auto& [key, value] : g.metadata()) (void)g.find(key);
  for (const GgufTensorInfo& t : g.tensors()) {
    const auto* p = static_cast<const uint8_t*>(g.tensor_data(t));
    volatile uint8_t sink = 0;
    if (t.n_bytes > 0) sink = static_cast<uint8_t>(p[0] ^ p[t.n_bytes - 1]);
    (void)sink;
  }
}

TEST(Gguf, BadCorpusThrowsFormatError) {
  const auto files = corpus("gguf_bad_");
  ASSERT_GE(files.size(), 10u) << "regression corpus missing in " << kDataDir;
  for (const auto& p : files) {
    SCOPED_TRACE(p.filename().string());
    EXPECT_THROW(load_everything(GgufFile::open(p.string())), FormatError);
    const auto bytes = read_bytes(p);
    EXPECT_THROW(load_everything(GgufFile::from_memory(bytes.data(), bytes.size())), FormatError);
  }
}

TEST(Gguf, OkCorpusOpens) {
  const auto files = corpus("gguf_ok_");
  ASSERT_GE(files.size(), 3u);
  for (const auto& p : files) {
    SCOPED_TRACE(p.filename().string());
    EXPECT_NO_THROW(load_everything(GgufFile::open(p.string())));
  }
}

TEST(Gguf, ErrorsSayWhatAndWhere) {
  try {
    GgufFile::open((kDataDir / "gguf_bad_unknown_tensor_type.bin").string());
    FAIL() << "no throw";
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("unsupported tensor type 77"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("offset"), std::string::npos) << msg;
  }
  try {
    GgufFile::open((kDataDir / "gguf_bad_alignment_not_pow2.bin").string());
    FAIL() << "no throw";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("general.alignment 48"), std::string::npos) << e.what();
  }
  EXPECT_THROW(GgufFile::open((kDataDir / "does_not_exist.bin").string()), IoError);
  EXPECT_THROW(GgufFile::open(kDataDir.string()), IoError);  // a directory
}

TEST(Gguf, ReadsEveryMetadataType) {
  for (const char* name : {"gguf_ok_small_v3.bin", "gguf_ok_small_v2.bin"}) {
    SCOPED_TRACE(name);
    const GgufFile g = GgufFile::open((kDataDir / name).string());
    EXPECT_EQ(g.version(), std::string(name).find("v2") != std::string::npos ? 2u : 3u);
    EXPECT_EQ(g.alignment(), 32u);
    EXPECT_EQ(g.data_offset() % 32, 0u);
    EXPECT_EQ(g.get_string("general.architecture"), "llama");
    EXPECT_EQ(g.get_u32("t.u8"), 200u);
    EXPECT_EQ(g.get_i64("t.i8"), -5);
    EXPECT_EQ(g.get_u32("t.u16"), 60000u);
    EXPECT_EQ(g.get_i64("t.i16"), -30000);
    EXPECT_EQ(g.get_u32("t.u32"), 4000000000u);
    EXPECT_EQ(g.get_i64("t.i32"), -2000000000);
    EXPECT_EQ(g.get_f32("t.f32"), 1.5f);
    EXPECT_TRUE(g.get_bool("t.bool", false));
    EXPECT_EQ(g.get_i64("t.u64"), int64_t{1} << 40);
    EXPECT_EQ(g.get_i64("t.i64"), -(int64_t{1} << 40));
    EXPECT_EQ(g.get_f32("t.f64"), 2.25f);
    EXPECT_EQ(g.get_string_array("t.strings"), (std::vector<std::string>{"a", "", "héllo"}));
    EXPECT_EQ(g.get_int_array("t.ints"), (std::vector<int64_t>{1, -2, 3}));
    EXPECT_EQ(g.get_float_array("t.floats"), (std::vector<float>{0.5f, -1.0f}));
    const GgufValue* nested = g.find("t.nested");
    ASSERT_NE(nested, nullptr);
    EXPECT_EQ(nested->type, GgufValueType::ARRAY);
    EXPECT_EQ(nested->elem_type, GgufValueType::ARRAY);
    ASSERT_EQ(nested->items.size(), 2u);
    EXPECT_EQ(nested->items[1].strings, (std::vector<std::string>{"y", "z"}));

    // Defaults, missing keys and type mismatches.
    EXPECT_EQ(g.get_u32("missing", 7u), 7u);
    EXPECT_EQ(g.get_string("missing", "d"), "d");
    EXPECT_FALSE(g.has("missing"));
    EXPECT_THROW(g.get_u32("missing"), FormatError);
    EXPECT_THROW(g.get_u32("t.i32"), FormatError);       // negative does not fit
    EXPECT_THROW(g.get_u32("t.u64"), FormatError);       // too large for u32
    EXPECT_THROW(g.get_string("t.u8"), FormatError);     // wrong type
    EXPECT_THROW(g.get_int_array("t.strings"), FormatError);
    EXPECT_THROW(g.get_string_array("t.u8"), FormatError);
    EXPECT_THROW(g.get_f32("general.architecture"), FormatError);
    EXPECT_EQ(g.metadata().size(), 16u);
    EXPECT_EQ(g.metadata()[0].first, "general.architecture");

    // Tensors.
    ASSERT_EQ(g.tensors().size(), 2u);
    const GgufTensorInfo& w = g.tensor("w.f32");
    EXPECT_EQ(w.type, GgmlType::F32);
    EXPECT_EQ(w.n_dims, 2u);
    EXPECT_EQ(w.ne[0], 4u);
    EXPECT_EQ(w.ne[1], 2u);
    EXPECT_EQ(w.n_rows(), 2u);
    EXPECT_EQ(w.n_bytes, 32u);
    const auto* wf = static_cast<const float*>(g.tensor_data("w.f32"));
    for (int i = 0; i < 8; ++i) EXPECT_EQ(wf[i], 0.25f * (i + 1));
    const GgufTensorInfo& q = g.tensor("w.q8");
    EXPECT_EQ(q.type, GgmlType::Q8_0);
    EXPECT_EQ(q.n_bytes, 34u);
    float deq[32];
    dequantize_row(q.type, g.tensor_data(q), deq, 32);
    for (int j = 0; j < 32; ++j) {
      EXPECT_EQ(deq[j], 0.5f * static_cast<float>(static_cast<int8_t>((j * 7 - 100) & 0xFF)));
    }
    EXPECT_EQ(g.find_tensor("nope"), nullptr);
    EXPECT_THROW(g.tensor("nope"), FormatError);
    EXPECT_THROW(g.tensor_data("nope"), FormatError);
  }
}

TEST(Gguf, CustomAlignment) {
  const GgufFile g = GgufFile::open((kDataDir / "gguf_ok_alignment_64.bin").string());
  EXPECT_EQ(g.alignment(), 64u);
  EXPECT_EQ(g.data_offset() % 64, 0u);
  const auto* w = static_cast<const float*>(g.tensor_data("w"));
  EXPECT_EQ(w[3], 1.0f);
}

TEST(Gguf, EveryTruncationThrows) {
  const auto bytes = read_bytes(kDataDir / "gguf_ok_small_v3.bin");
  ASSERT_FALSE(bytes.empty());
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_THROW(GgufFile::from_memory(bytes.data(), n), FormatError) << "prefix " << n;
  }
  EXPECT_NO_THROW(GgufFile::from_memory(bytes.data(), bytes.size()));
}

TEST(Gguf, RandomMutationsNeverCrash) {
  const auto good = read_bytes(kDataDir / "gguf_ok_small_v3.bin");
  Rng rng(0x96af0001);
  int rejected = 0;
  for (int rep = 0; rep < 3000; ++rep) {
    auto bytes = good;
    const int n_flips = 1 + static_cast<int>(rng.next_u64() % 4);
    for (int k = 0; k < n_flips; ++k) {
      const size_t at = rng.next_u64() % bytes.size();
      bytes[at] = (rng.next_u64() & 1) ? static_cast<uint8_t>(rng.next_u64())
                                       : static_cast<uint8_t>(bytes[at] ^ (1u << (rng.next_u64() % 8)));
    }
    try {
      load_everything(GgufFile::from_memory(bytes.data(), bytes.size()));
    } catch (const Error&) {
      ++rejected;  // FormatError; anything else would escape and fail the test
    }
  }
  EXPECT_GT(rejected, 0);
}

TEST(Gguf, DefaultModelPathHonoursEnvironment) {
  const char* old = std::getenv("RQ_MODEL");
  const std::string saved = old ? old : "";
  setenv("RQ_MODEL", "/nonexistent/rq/model.gguf", 1);
  try {
    rq::default_model_path();
    ADD_FAILURE() << "no throw";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("run scripts/fetch_model.sh"), std::string::npos);
  }
  const std::string ok = (kDataDir / "gguf_ok_small_v3.bin").string();
  setenv("RQ_MODEL", ok.c_str(), 1);
  EXPECT_EQ(rq::default_model_path(), ok);
  if (old) {
    setenv("RQ_MODEL", saved.c_str(), 1);
  } else {
    unsetenv("RQ_MODEL");
  }
}

TEST(Gguf, RealModel) {
  std::string path;
  try {
    path = rq::default_model_path();
  } catch (const IoError& e) {
    GTEST_SKIP() << "model absent (" << e.what() << ")";
  }
  const GgufFile g = GgufFile::open(path);
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  EXPECT_EQ(g.get_u32("llama.embedding_length"), 576u);
  EXPECT_EQ(g.get_u32("llama.block_count"), 30u);
  EXPECT_EQ(g.get_u32("llama.attention.head_count"), 9u);
  EXPECT_EQ(g.get_u32("llama.attention.head_count_kv"), 3u);
  EXPECT_NEAR(g.get_f32("llama.rope.freq_base"), 100000.0f, 1e-3f);
  EXPECT_EQ(g.tensors().size(), 272u);
  const GgufTensorInfo& emb = g.tensor("token_embd.weight");
  EXPECT_EQ(emb.type, GgmlType::Q8_0);
  EXPECT_EQ(emb.ne[0], 576u);
  EXPECT_EQ(emb.ne[1], 49152u);
  load_everything(g);

  // Every weight row decodes to finite values, and the fast dot agrees with the reference.
  Rng rng(0x96af0002);
  for (const GgufTensorInfo& t : g.tensors()) {
    ASSERT_TRUE(is_compute_supported(t.type)) << t.name;
    const size_t cols = t.ne[0];
    const size_t stride = row_bytes(t.type, cols);
    const size_t r = rng.next_u64() % t.n_rows();
    const auto* row = static_cast<const uint8_t*>(g.tensor_data(t)) + r * stride;
    std::vector<float> w(cols), x(cols);
    dequantize_row(t.type, row, w.data(), cols);
    double scale = 0;
    for (size_t i = 0; i < cols; ++i) {
      ASSERT_TRUE(std::isfinite(w[i])) << t.name;
      x[i] = static_cast<float>(rng.normal());
      scale += std::fabs(static_cast<double>(w[i]) * x[i]);
    }
    const float fast = dot_row(t.type, row, x.data(), cols);
    const float ref = dot_row_reference(t.type, row, x.data(), cols);
    EXPECT_LE(std::fabs(fast - ref), 1e-4 * scale + 1e-30) << t.name;
  }
}

}  // namespace
}  // namespace rq::model
