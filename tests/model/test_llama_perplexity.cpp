// evaluate_perplexity: the f16 configuration equals the reference (KL 0, top-1 1), KL is >= 0,
// results are identical across runs, and windows split over two calls add up to one call.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "rq/core/errors.hpp"
#include "rq/model/llama_perplexity.hpp"
#include "rq/model/llama_session.hpp"

namespace {

using namespace rq::model;

LlamaSession* session() {
  static LlamaSession* s = [] {
    try {
      return new LlamaSession(LlamaSession::open(""));
    } catch (const rq::IoError&) {
      return static_cast<LlamaSession*>(nullptr);
    }
  }();
  return s;
}

TEST(LlamaPerplexity, LockstepConfigurations) {
  LlamaSession* S = session();
  if (S == nullptr) GTEST_SKIP() << "default model absent: run scripts/fetch_model.sh first";
  const std::string text =
      "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step. "
      "All that glitters is not gold, and not all those who wander are lost in the woods at night.";
  const auto tokens = S->tokenizer->encode(text, false, false);
  ASSERT_GE(tokens.size(), 32u);
  PerplexityConfig cfg;
  cfg.ctx = 16;
  cfg.chunks = 2;
  cfg.batch = 5;
  cfg.caches = {{"f16", "f16"}, {"q8", "q8"}, {"rotor3", "f16"}};
  const auto a = evaluate_perplexity(*S->model, tokens, cfg);
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].tokens, 2u * 7);
  EXPECT_EQ(a[0].kld(), 0.0);
  EXPECT_EQ(a[0].top1(), 1.0);
  EXPECT_GT(a[0].ppl(), 1.0);
  EXPECT_GE(a[1].kld(), 0.0);
  EXPECT_GT(a[2].kld(), 0.0);
  EXPECT_LT(a[1].kv_bytes_per_token(), a[0].kv_bytes_per_token());
  const auto b = evaluate_perplexity(*S->model, tokens, cfg);
  EXPECT_EQ(a[2].nll_sum, b[2].nll_sum);
  EXPECT_EQ(a[2].kld_sum, b[2].kld_sum);
  // Two halves add up to the whole (sums are per window).
  cfg.chunks = 1;
  const auto h0 = evaluate_perplexity(*S->model, tokens, cfg);
  cfg.first_chunk = 1;
  const auto h1 = evaluate_perplexity(*S->model, tokens, cfg);
  EXPECT_DOUBLE_EQ(h0[1].nll_sum + h1[1].nll_sum, a[1].nll_sum);
  EXPECT_EQ(h0[2].top1_agree + h1[2].top1_agree, a[2].top1_agree);
  cfg.first_chunk = 100;
  EXPECT_THROW(evaluate_perplexity(*S->model, tokens, cfg), rq::InvalidArgument);
  cfg.first_chunk = 0;
  cfg.caches = {{"f16", "nope"}};
  EXPECT_THROW(evaluate_perplexity(*S->model, tokens, cfg), rq::UnknownFormat);
  cfg.caches = {};
  EXPECT_THROW(evaluate_perplexity(*S->model, tokens, cfg), rq::InvalidArgument);
}

}  // namespace
