// A Lloyd-Max format's parameters in the form the CUDA kernels read them: rotation parameters for
// every KV head (one role, K or V, of one layer), centroids and thresholds. Built on the host from
// rq::Codec objects (one per head) so the kernels use exactly the reference codec's numbers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rq {
class Codec;
}

namespace rq::cuda {

/// How the kernels apply a rotation.
enum class RotationFamily : int32_t {
  Block2 = 2,    // planar: 2x2 blocks, matrix [[c, -s], [s, c]]
  Block3 = 3,    // rotor: 3x3 blocks (RotorRotation::matrices())
  Block4 = 4,    // iso (fast and full): 4x4 blocks (IsoRotation::matrices())
  Hadamard = 0,  // turbo: D(s2) H/sqrt(n) D(s1); parameters s1[n] then s2[n]
};

/// What a kernel needs to know about one role's format (plain data; pointers are device memory).
struct DeviceCodec {
  int32_t dim = 0;                    // d
  int32_t rotated_dim = 0;            // n
  int32_t bits = 0;                   // b (2..4)
  int32_t payload_bytes = 0;          // ceil(n b / 8)
  RotationFamily family = RotationFamily::Hadamard;
  int32_t norm_correction = 1;        // store nu / ||C[idx]||
  int32_t zero_code = 0;              // code of a zero coordinate (zero vectors)
  int32_t rotation_stride = 0;        // floats of rotation parameters per head
  const float* rotation = nullptr;    // [n_kv_heads][rotation_stride]
  const float* centroids = nullptr;   // [2^bits]
  const float* thresholds = nullptr;  // [2^bits - 1]
  const float* code_polynomial = nullptr;  // 2-3 bits: [2^(bits-1) - 1] coefficients a_i / 2^bits of the
                                           //   fast append kernels' odd polynomial g(u) = sum_i a_i u^(2i+1)
                                           //   with g(t[half + i]) = i + 1 (make_codec_tables solves it);
                                           //   the fast kernels need it, 4 bits and the exact ones do not
  float mma_scale = 1.0f;             // a in [1, 2): a * C[k] is within mma_scale_error of fp16 values;
                                      //   the tensor-core decode's V table holds fp16(a * C[k]) and its
                                      //   partial sums are divided by a (2^-15.5 vs fp16's 2^-12 for 3 bits)
};

/// Host copy of the tables; upload() them and point a DeviceCodec at the device copies.
struct HostCodecTables {
  DeviceCodec info;               // pointers left null
  std::vector<float> rotation;    // n_kv_heads x rotation_stride
  std::vector<float> centroids;   // 2^bits
  std::vector<float> thresholds;  // 2^bits - 1
  std::vector<float> code_polynomial;  // 2^(bits-1) - 1 at 2-3 bits, empty at 4 (see DeviceCodec)
  double mma_scale_error = 0.0;   // max_k |fp16(a C[k]) - a C[k]| / |a C[k]|
};

/// Tables for the codecs of heads 0..per_head.size()-1 (same format and dim; their own rotations).
/// Throws rq::InvalidArgument for formats the kernels do not support: only Lloyd-Max formats with
/// rotor, planar, iso or turbo rotations, 2..4 bits, no QJL, and d = 128.
HostCodecTables make_codec_tables(const std::vector<const Codec*>& per_head);

/// Whether the kernels support `codec`'s format (same rules as above, without throwing).
bool gpu_supports(const Codec& codec);

}  // namespace rq::cuda
