// The --attn option shared by the model commands: which attention kernels the model runner uses.
#pragma once

#include <string>
#include <vector>

namespace rq::cli {

/// "fast" (SIMD kernels, integer tables for Lloyd-Max formats; the default), "fast-float" (SIMD
/// kernels in fp32: the reference to float rounding), "reference" (scalar rq::attend_reference).
const std::vector<std::string>& attention_choices();

/// Installs the kernels named by `choice` (one of attention_choices()); throws rq::InvalidArgument.
void use_attention(const std::string& choice);

}  // namespace rq::cli
