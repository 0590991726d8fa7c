// CUDA device facts; compiled only with LCB_WITH_CUDA so the CPU build needs no CUDA headers.
#include "harness/provenance.h"

#include <ATen/cuda/CUDAContext.h>

namespace lcb::harness {

std::string cuda_device_name(int index) {
  return at::cuda::getDeviceProperties(index)->name;
}

}  // namespace lcb::harness
