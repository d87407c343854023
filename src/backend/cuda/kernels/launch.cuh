// Programmatic dependent launch (Hopper): the decode step is a chain of short memory-bound
// kernels, and between two ordinary launches the GPU drains the first grid completely before the
// second one starts loading. With PDL a kernel lets its successor launch as soon as all of its own
// blocks are resident (pdl_launch_dependents); the successor issues the loads that do not depend
// on its predecessor (weights) and then waits (pdl_wait) until the predecessor has finished and
// its writes are visible. Rules for every kernel launched through `launch`:
//   * every block calls pdl_wait() before it reads anything an earlier kernel wrote and before it
//     writes any global memory (so that a grid's completion still implies its predecessors');
//   * nothing but read-only data (weights, codebooks) is touched before pdl_wait(), with three
//     exceptions: (1) a kernel whose predecessor triggers its dependents only after its own
//     pdl_wait() may read what the kernels before that predecessor wrote (the MoE w2 decode
//     kernel reads the router's choices early this way; both w1/w3 decode kernels trigger late);
//     (2) token positions, which only copies from the host write (qk_norm_rope_reg_kernel);
//     (3) the decode attention's cache rows, when the backend has seen a copy from the host
//     since the layer's cache was last written (attention_decode.cu, `early`).
// Without the attribute (MOEQ_PDL=0, or kernels launched with <<<>>>) both calls are no-ops.
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "backend/cuda/cuda_check.h"

namespace moeq::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether launches carry the PDL attribute: compute capability 9.0 or newer, and MOEQ_PDL is not 0.
bool pdl_enabled();

// Multiprocessors of the current device (read once), for sizing grids.
int sm_count();

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace moeq::cuda
