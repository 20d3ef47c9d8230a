// Does a change of the SMs' shared-memory carveout cost an isolated launch after the benchmark's L2
// flush (a 256 MB memset, whose kernel asks for no shared memory)? Session 24 (H200, CUDA 13.0): no.
// Empty kernels of 396 blocks x 128 threads with 0, 8, 33 or 66 KB of dynamic shared memory, with the
// largest-shared carveout preference or the default, and with every SM first set to the largest carveout
// by a kernel between the flush and the first event, all take 2.91-2.94 us (medians of 30; one
// 32-thread block 2.75 us): the append's 1.6 us above the pure-copy floor is not a reconfiguration.
// A probe, not a test. Built by CMake as rq_carveout_probe; run: build/cuda/rq_carveout_probe.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CK(x)                                                                      \
  do {                                                                             \
    const cudaError_t e_ = (x);                                                    \
    if (e_ != cudaSuccess) {                                                       \
      std::printf("CUDA error %s at line %d\n", cudaGetErrorString(e_), __LINE__); \
      std::exit(1);                                                                \
    }                                                                              \
  } while (0)
__global__ void empty_plain() {}
__global__ void empty_smem_max(int* sink) { extern __shared__ int s[]; if (threadIdx.x == 9999) sink[0] = s[0]; }
__global__ void empty_smem_default(int* sink) { extern __shared__ int s[]; if (threadIdx.x == 9999) sink[0] = s[0]; }
__global__ void prime(int* sink) { extern __shared__ int s[]; if (threadIdx.x == 9999) sink[0] = s[0]; }
int main() {
  void* flush; CK(cudaMalloc(&flush, 256u << 20));
  int* sink; CK(cudaMalloc(&sink, 64));
  cudaEvent_t a, b; CK(cudaEventCreate(&a)); CK(cudaEventCreate(&b));
  CK(cudaFuncSetAttribute(empty_smem_max, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024));
  CK(cudaFuncSetAttribute(empty_smem_max, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared));
  CK(cudaFuncSetAttribute(empty_smem_default, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024));
  CK(cudaFuncSetAttribute(prime, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
  CK(cudaFuncSetAttribute(prime, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared));
  auto time = [&](const char* name, auto pre, auto fn) {
    std::vector<float> t;
    for (int i = 0; i < 31; ++i) {
      CK(cudaMemsetAsync(flush, i & 0xff, 256u << 20));
      pre();
      CK(cudaEventRecord(a)); fn(); CK(cudaGetLastError()); CK(cudaEventRecord(b));
      CK(cudaEventSynchronize(b)); float ms; CK(cudaEventElapsedTime(&ms, a, b)); if (i) t.push_back(ms * 1000);
    }
    std::sort(t.begin(), t.end());
    std::printf("%-60s median %6.2f us  min %6.2f  max %6.2f\n", name, t[t.size() / 2], t.front(), t.back());
  };
  auto none = [] {};
  auto primer = [&] { prime<<<264, 32, 200 * 1024>>>(sink); };
  for (int round = 0; round < 2; ++round) {
    time("empty<<<1,32>>>", none, [] { empty_plain<<<1, 32>>>(); });
    time("empty<<<396,128>>> no smem", none, [] { empty_plain<<<396, 128>>>(); });
    for (int kb : {8, 33, 66}) {
      char n1[96], n2[96], n3[96];
      std::snprintf(n1, 96, "empty<<<396,128,%dKB>>> carveout MaxShared", kb);
      std::snprintf(n2, 96, "empty<<<396,128,%dKB>>> carveout default", kb);
      std::snprintf(n3, 96, "empty<<<396,128,%dKB>>> MaxShared, SMs primed", kb);
      time(n1, none, [&] { empty_smem_max<<<396, 128, kb * 1024>>>(sink); });
      time(n2, none, [&] { empty_smem_default<<<396, 128, kb * 1024>>>(sink); });
      time(n3, primer, [&] { empty_smem_max<<<396, 128, kb * 1024>>>(sink); });
    }
    time("empty<<<396,128>>> no smem, SMs primed", primer, [] { empty_plain<<<396, 128>>>(); });
  }
  return 0;
}
