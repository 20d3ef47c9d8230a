// Turning CUDA runtime failures into rq errors on the host (never abort in library code).
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "rq/core/errors.hpp"

namespace rq::cuda {

/// A CUDA runtime call failed (no device, out of memory, launch failure, ...).
class CudaError : public Error {
 public:
  using Error::Error;
};

/// Throws CudaError naming `what` when `status` is not cudaSuccess.
inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw CudaError(std::string(what) + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
  }
}

/// Number of usable CUDA devices; 0 when the runtime reports none or fails (no driver).
inline int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

}  // namespace rq::cuda
