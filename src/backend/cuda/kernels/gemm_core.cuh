// Tensor-core primitives shared by the prefill kernels (gemm_pipe.cuh, flash_attention.cu):
// f16 packing and the mma.sync m16n8k16 instruction (f16 operands, f32 accumulation). f16 rather
// than bf16: the same speed with 3 more mantissa bits (8x smaller rounding errors); the operands
// are normalised activations, attention scores and weights, far inside its range.
#pragma once
#include <cuda_fp16.h>

#include "backend/cuda/formats.cuh"

namespace moeq::cuda {

constexpr int kPad = 8;  // f16 elements of row padding: conflict-free fragment loads

__device__ __forceinline__ uint32_t pack_f16(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ void mma_f16(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

}  // namespace moeq::cuda
