// Does a 16-byte cp.async with an L2 cache-hint policy (cp.async.cg.shared.global.L2::cache_hint) run on
// this GPU and toolkit? Session 19 (H200, CUDA 13.0): createpolicy works (policy 0x12f0000000000000), both
// hinted cp.async kernels stop with cudaErrorIllegalInstruction, which is why the append's staging
// does not use the hint (cuda/bulk_copy.cuh). Prints one line per kernel; exits 0 either way (a probe,
// not a test). Built by CMake as rq_l2_hint_probe; run: build/cuda/rq_l2_hint_probe.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <string>

__global__ void ldgsts_hint(const uint4* src, uint4* out) {
  __shared__ uint4 buf[256];
  unsigned dst = (unsigned)__cvta_generic_to_shared(buf + threadIdx.x);
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src + threadIdx.x), "l"(policy));
  asm volatile("cp.async.commit_group;\ncp.async.wait_all;\n" ::: "memory");
  __syncthreads();
  out[threadIdx.x] = buf[threadIdx.x ^ 1];
}
__global__ void ldgsts_hint_param(const uint4* src, uint4* out, uint64_t policy) {
  __shared__ uint4 buf[256];
  unsigned dst = (unsigned)__cvta_generic_to_shared(buf + threadIdx.x);
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src + threadIdx.x), "l"(policy));
  asm volatile("cp.async.commit_group;\ncp.async.wait_all;\n" ::: "memory");
  __syncthreads();
  out[threadIdx.x] = buf[threadIdx.x ^ 1];
}
__global__ void make_policy(uint64_t* p) {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  *p = policy;
}
namespace {
bool ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) std::printf("%s: %s\n", what, cudaGetErrorString(e));
  return e == cudaSuccess;
}
}  // namespace

// Usage: rq_l2_hint_probe [param|const] (the policy from a kernel argument, default, or made in the
// kernel; one per process: an illegal instruction ends the context).
int main(int argc, char** argv) {
  const bool from_const = argc > 1 && std::string(argv[1]) == "const";
  uint4 *src = nullptr, *out = nullptr;
  uint64_t* pol = nullptr;
  if (!ok(cudaMalloc(&src, 4096), "cudaMalloc") || !ok(cudaMalloc(&out, 4096), "cudaMalloc") ||
      !ok(cudaMalloc(&pol, 8), "cudaMalloc"))
    return 1;
  uint4 h[256];
  for (int i = 0; i < 256; ++i) h[i] = make_uint4(i, 2 * i, 3 * i, 4 * i);
  if (!ok(cudaMemcpy(src, h, 4096, cudaMemcpyHostToDevice), "cudaMemcpy")) return 1;
  make_policy<<<1, 1>>>(pol);
  uint64_t hp = 0;
  if (!ok(cudaDeviceSynchronize(), "make_policy") || !ok(cudaMemcpy(&hp, pol, 8, cudaMemcpyDeviceToHost), "cudaMemcpy"))
    return 1;
  std::printf("createpolicy.fractional.L2::evict_first: policy 0x%016llx\n", static_cast<unsigned long long>(hp));
  if (from_const) {
    ldgsts_hint<<<1, 256>>>(src, out);
  } else {
    ldgsts_hint_param<<<1, 256>>>(src, out, hp);
  }
  const cudaError_t e = cudaDeviceSynchronize();
  std::printf("hinted cp.async, policy %s: %s\n", from_const ? "made in the kernel" : "a kernel argument", cudaGetErrorString(e));
  if (e == cudaSuccess) {
    uint4 o[256];
    if (!ok(cudaMemcpy(o, out, 4096, cudaMemcpyDeviceToHost), "cudaMemcpy")) return 1;
    int bad = 0;
    for (int i = 0; i < 256; ++i) bad += o[i].x != h[i ^ 1].x;
    std::printf("  copied words wrong: %d of 256\n", bad);
  }
  return 0;
}
