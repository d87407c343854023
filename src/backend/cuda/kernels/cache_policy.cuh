// Loads of data that a decode step reads exactly once (weights, the KV cache), marked evict-first
// in L2. One layer of MiniMax-M2 streams about 150 MB through the H100's 50 MB L2, so with the
// default policy every layer flushes everything else: the kernels' code, the norm weights, the
// router bias and the small activations, which the short kernels of the next layer then fetch
// from DRAM again, one dependent round trip at a time. With the streamed bytes evict-first the
// rest stays resident across layers and steps. Measured on an H100 (docs/PERF.md), one call, the
// same tree built both ways: decode 3.477 -> 3.347 / 3.385 ms per step. Only single passes use it:
// the prefill GEMM's tiles re-read weight rows, and evict-first there cost 8% of prefill speed.
//
// Build with -DMOEQ_L2_EVICT_NORMAL (CMake option of the same name) to load with the default
// priority instead, for measuring the difference.
#pragma once
#include <cstdint>

namespace moeq::cuda {

// The L2 policy for a load: evict-first for bytes read once per step (`stream`), the default
// priority otherwise (an opaque 64-bit value for the .L2::cache_hint forms).
__device__ __forceinline__ uint64_t l2_policy(bool stream) {
  uint64_t first = 0, normal = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;" : "=l"(normal));
#ifdef MOEQ_L2_EVICT_NORMAL
  first = normal;
#else
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(first));
#endif
#endif
  return stream ? first : normal;
}

__device__ __forceinline__ uint64_t l2_stream_policy() { return l2_policy(true); }

// Read-only (non-coherent path) loads with an L2 policy; `volatile` keeps them in program order
// with respect to pdl_wait(), like __ldg (the KV cache is written by the kernel before).
__device__ __forceinline__ uint4 ld_hint(const uint4* a, uint64_t pol) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint4 v;
  asm volatile("ld.global.nc.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(a), "l"(pol));
  return v;
#else
  return __ldg(a);
#endif
}

__device__ __forceinline__ uint2 ld_hint(const uint2* a, uint64_t pol) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint2 v;
  asm volatile("ld.global.nc.L2::cache_hint.v2.u32 {%0, %1}, [%2], %3;"
               : "=r"(v.x), "=r"(v.y)
               : "l"(a), "l"(pol));
  return v;
#else
  return __ldg(a);
#endif
}

__device__ __forceinline__ uint32_t ld_hint(const uint32_t* a, uint64_t pol) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint32_t v;
  asm volatile("ld.global.nc.L2::cache_hint.u32 %0, [%1], %2;" : "=r"(v) : "l"(a), "l"(pol));
  return v;
#else
  return __ldg(a);
#endif
}

__device__ __forceinline__ uint16_t ld_hint(const uint16_t* a, uint64_t pol) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint16_t v;
  asm volatile("ld.global.nc.L2::cache_hint.u16 %0, [%1], %2;" : "=h"(v) : "l"(a), "l"(pol));
  return v;
#else
  return __ldg(a);
#endif
}

__device__ __forceinline__ float4 ld_hint(const float4* a, uint64_t pol) {
  const uint4 u = ld_hint(reinterpret_cast<const uint4*>(a), pol);
  return make_float4(__uint_as_float(u.x), __uint_as_float(u.y), __uint_as_float(u.z), __uint_as_float(u.w));
}

__device__ __forceinline__ float ld_hint(const float* a, uint64_t pol) {
  return __uint_as_float(ld_hint(reinterpret_cast<const uint32_t*>(a), pol));
}

// Coherent loads through L2 (ld.global.cg), kept in program order like the loads above. Two uses:
// data the kernel itself rewrites afterwards, where the non-coherent path does not apply; and
// loads meant to be in flight before pdl_wait(): ptxas moved the wait (ACQBULK) above
// non-coherent loads that came before it in the source (qk_norm_rope_reg_kernel, rmsnorm_kernel),
// but not above these.
__device__ __forceinline__ float ld_cg_ordered(const float* a) {
  float v;
  asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(a));
  return v;
}

__device__ __forceinline__ float4 ld_cg_ordered(const float4* a) {
  float4 v;
  asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "l"(a));
  return v;
}

// The same with the streaming policy.
template <typename T>
__device__ __forceinline__ T ld_stream(const T* a) {
  return ld_hint(a, l2_stream_policy());
}

}  // namespace moeq::cuda
