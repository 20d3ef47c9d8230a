#include "attention_choice.hpp"

#include "rq/attention/attention_fast.hpp"
#include "rq/core/errors.hpp"
#include "rq/kvcache/kv_attention.hpp"

namespace rq::cli {

const std::vector<std::string>& attention_choices() {
  static const std::vector<std::string> choices = {"fast", "fast-float", "reference"};
  return choices;
}

void use_attention(const std::string& choice) {
  if (choice == "fast") {
    set_attention_kernel(&attend_fast);
    set_attention_batch_kernel([](const AttentionProblem* p, size_t n) { attend_fast_batch(p, n, 0); });
  } else if (choice == "fast-float") {
    set_attention_kernel(&attend_fast_float);
    set_attention_batch_kernel(
        [](const AttentionProblem* p, size_t n) { attend_fast_batch(p, n, 0, FastArithmetic::Float); });
  } else if (choice == "reference") {
    set_attention_kernel(nullptr);
    set_attention_batch_kernel(nullptr);
  } else {
    throw InvalidArgument("--attn must be fast, fast-float or reference, not '" + choice + "'");
  }
}

}  // namespace rq::cli
