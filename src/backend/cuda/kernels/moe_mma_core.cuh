// The arithmetic shared by the 4-bit tensor-core MoE decode kernels (moe_decode_mma.cu, which
// loads weights into registers, and moe_decode_stream.cu, which streams them through shared
// memory): code unpacking, the mma of one 32-input group, and the activations' staging in fragment
// order. The derivation of the offsets and of D_g is in moe_decode_mma.cu's header.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

namespace moeq::cuda {

constexpr float kEvenBias = 1032.0f, kOddBias = 1152.0f;

__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t mask, uint32_t bits) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(r) : "r"(a), "r"(mask), "r"(bits));  // (a & mask) | bits
  return r;
}

// The 8 codes of a word as four f16 pairs: (c0, c4) and (c2, c6) as 1024 + c, (c1, c5) and (c3, c7)
// as 1024 + 16c.
struct Codes8 {
  uint32_t c04, c15, c26, c37;
};
__device__ __forceinline__ Codes8 split_codes(uint32_t u) {
  const uint32_t v = u >> 8;
  return {and_or(u, 0x000f000fu, 0x64006400u), and_or(u, 0x00f000f0u, 0x64006400u),
          and_or(v, 0x000f000fu, 0x64006400u), and_or(v, 0x00f000f0u, 0x64006400u)};
}

__device__ __forceinline__ void mma16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// One group of rows gid (word `top`) and gid + 8 (`bot`) against the staged activations `xb`:
// the unscaled group dot products of both rows. The staged activations depend only on q, so the
// 8 columns of B are equal and so are those of C: every lane gets both rows' products.
__device__ __forceinline__ void group_mma(uint32_t top, uint32_t bot, uint4 xb, float d, float& r_top, float& r_bot) {
  const Codes8 t = split_codes(top), b = split_codes(bot);
  float c[4] = {-d, -d, -d, -d};
  mma16816(c, t.c04, b.c04, t.c15, b.c15, xb.x, xb.y);
  mma16816(c, t.c26, b.c26, t.c37, b.c37, xb.z, xb.w);
  r_top = c[0];
  r_bot = c[2];
}

__device__ __forceinline__ uint32_t pack_half2(__half lo, __half hi) {
  return uint32_t(__half_as_ushort(lo)) | (uint32_t(__half_as_ushort(hi)) << 16);
}

// Staging runs once per block between the first weight loads and the products; each step below
// issues all of its global loads before using any, so that it costs one memory latency rather
// than one per loop iteration.

// The 8 activations 8i..8i+7 (p, r) in fragment order, as f16: (x0, x4), (x1/16, x5/16), (x2, x6),
// (x3/16, x7/16); returns their share of D_g.
__device__ __forceinline__ float stage_chunk(float4 p, float4 r, uint4* dst) {
  const __half e0 = __float2half_rn(p.x), e2 = __float2half_rn(p.z), e4 = __float2half_rn(r.x),
               e6 = __float2half_rn(r.z);
  auto sixteenth = [](float v) { return __float2half_rn(__half2float(__float2half_rn(v)) * 0.0625f); };
  const __half o1 = sixteenth(p.y), o3 = sixteenth(p.w), o5 = sixteenth(r.y), o7 = sixteenth(r.w);
  *dst = make_uint4(pack_half2(e0, e4), pack_half2(o1, o5), pack_half2(e2, e6), pack_half2(o3, o7));
  return kEvenBias * (__half2float(e0) + __half2float(e2) + __half2float(e4) + __half2float(e6)) +
         kOddBias * (__half2float(o1) + __half2float(o3) + __half2float(o5) + __half2float(o7));
}

// xs[g*4 + q] = chunk q of group g (stage_chunk); dg[g] = D_g, by threads [0, nthreads) (a
// multiple of 32, so the four chunks of a group are four neighbouring lanes). Two chunks per
// thread per step; `meanwhile` runs after the first step's loads are issued (the scales' staging,
// so that both wait for memory together).
// kCoherent: read through L2 only (ld.global.cg), for activations written earlier by other blocks
// of the same kernel, which the read-only path must not be used for.
template <bool kCoherent = false, typename Meanwhile>
__device__ void stage_activations(const float* x, int64_t cols, uint4* xs, float* dg, Meanwhile&& meanwhile,
                                  int tid = threadIdx.x, int nthreads = blockDim.x) {
  const int64_t n = cols / 8;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  auto ld = [](const float4* p) { return kCoherent ? __ldcg(p) : __ldg(p); };
  for (int64_t base = 0; base < n; base += 2 * nthreads) {
    const int64_t i0 = base + tid, i1 = i0 + nthreads;
    float4 p0{}, r0{}, p1{}, r1{};
    if (i0 < n) p0 = ld(x4 + 2 * i0), r0 = ld(x4 + 2 * i0 + 1);
    if (i1 < n) p1 = ld(x4 + 2 * i1), r1 = ld(x4 + 2 * i1 + 1);
    if (base == 0) meanwhile();
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t i = h ? i1 : i0;
      float d = 0;
      if (i < n) d = stage_chunk(h ? p1 : p0, h ? r1 : r0, xs + i);
      d += __shfl_xor_sync(0xffffffffu, d, 1);
      d += __shfl_xor_sync(0xffffffffu, d, 2);
      if (i < n && (i & 3) == 0) dg[i >> 2] = d;
    }
  }
}

}  // namespace moeq::cuda
