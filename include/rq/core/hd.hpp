// Host/device portability macros shared by CPU and CUDA code.
#pragma once

#if defined(__CUDACC__)
#define RQ_HD __host__ __device__ __forceinline__
#else
#define RQ_HD inline
#endif
