// Prefill attention on tensor cores (FlashAttention-2 style): a block takes 64 query tokens of one
// head; for each 64-key tile of the cache up to the block's last position, S = Q K^T and O += P V
// run as f16 mma.sync (f32 accumulation) with the online softmax in registers. K is staged as
// [key][dim] and V transposed as [dim][key], so every fragment load is one 32-bit shared read.
// Tokens of a tile must share one cache slot (a prefill chunk); a tile mixing sequences takes a
// per-token CUDA-core path instead.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/gemm_core.cuh"

namespace moeq::cuda {
namespace {

constexpr int kQ = 64, kKV = 64, kFlashThreads = 128;

template <int HD>
__global__ void __launch_bounds__(kFlashThreads) flash_kernel(const float* q, const float* kc, const float* vc,
                                                              const int32_t* pos, const int32_t* slots, int64_t T,
                                                              int n_heads, int n_kv, int64_t slot_stride, float* out) {
  static_assert(kQ == kKV, "Q is staged in K's shared memory");
  __shared__ __align__(16) __half Ks[kKV][HD + 8];  // also stages Q once, before the loop
  __shared__ __align__(16) __half Vt[HD][kKV + 8];
  auto& Qs = Ks;
  __shared__ int32_t s_uniform, s_maxpos, s_slot;
  const int h = blockIdx.y, g = h / (n_heads / n_kv);
  const int64_t m0 = int64_t(blockIdx.x) * kQ;
  const int rows = int(min(int64_t(kQ), T - m0));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int kv_dim = n_kv * HD;
  if (threadIdx.x == 0) {
    int32_t mx = -1, uni = 1;
    for (int i = 0; i < rows; ++i) {
      mx = max(mx, pos[m0 + i]);
      uni &= slots[m0 + i] == slots[m0];
    }
    s_uniform = uni, s_maxpos = mx, s_slot = slots[m0];
  }
  __syncthreads();
  const float scale = rsqrtf(float(HD)) * 1.4426950408889634f;  // softmax in base 2

  if (!s_uniform) {  // mixed sequences in one tile: token by token on the CUDA cores
    constexpr int D = HD / 32;
    for (int i = warp; i < rows; i += kFlashThreads / 32) {
      const int64_t t = m0 + i;
      const float* kb = kc + int64_t(slots[t]) * slot_stride + g * HD + lane * D;
      const float* vb = vc + int64_t(slots[t]) * slot_stride + g * HD + lane * D;
      float qr[D], acc[D], m = -INFINITY, l = 0;
#pragma unroll
      for (int d = 0; d < D; ++d) qr[d] = q[(t * n_heads + h) * HD + lane * D + d] * scale, acc[d] = 0;
      for (int64_t p = 0; p <= pos[t]; ++p) {
        float s = 0;
#pragma unroll
        for (int d = 0; d < D; ++d) s = fmaf(qr[d], kb[p * kv_dim + d], s);
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        const float mn = fmaxf(m, s), r = exp2f(m - mn), e = exp2f(s - mn);
        l = l * r + e;
#pragma unroll
        for (int d = 0; d < D; ++d) acc[d] = fmaf(acc[d], r, e * vb[p * kv_dim + d]);
        m = mn;
      }
#pragma unroll
      for (int d = 0; d < D; ++d) out[(t * n_heads + h) * HD + lane * D + d] = acc[d] / l;
    }
    return;
  }

  // Q tile (pre-scaled) -> f16 in shared memory, then into A fragments.
  for (int i = threadIdx.x; i < kQ * HD / 2; i += kFlashThreads) {
    const int r = i / (HD / 2), c = (i % (HD / 2)) * 2;
    float2 v = make_float2(0, 0);
    if (r < rows) v = *reinterpret_cast<const float2*>(q + ((m0 + r) * n_heads + h) * HD + c);
    *reinterpret_cast<uint32_t*>(&Qs[r][c]) = pack_f16(v.x * scale, v.y * scale);
  }
  __syncthreads();
  const int gr = lane / 4, tc = (lane % 4) * 2;  // fragment row / column pair
  const int qr0 = warp * 16;
  uint32_t qa[HD / 16][4];
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
    qa[kk][0] = *reinterpret_cast<const uint32_t*>(&Qs[qr0 + gr][kk * 16 + tc]);
    qa[kk][1] = *reinterpret_cast<const uint32_t*>(&Qs[qr0 + gr + 8][kk * 16 + tc]);
    qa[kk][2] = *reinterpret_cast<const uint32_t*>(&Qs[qr0 + gr][kk * 16 + tc + 8]);
    qa[kk][3] = *reinterpret_cast<const uint32_t*>(&Qs[qr0 + gr + 8][kk * 16 + tc + 8]);
  }
  const int p_lo = qr0 + gr < rows ? pos[m0 + qr0 + gr] : -1;
  const int p_hi = qr0 + gr + 8 < rows ? pos[m0 + qr0 + gr + 8] : -1;
  float o[HD / 8][4] = {};
  float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0, l_hi = 0;
  const float* kbase = kc + int64_t(s_slot) * slot_stride + g * HD;
  const float* vbase = vc + int64_t(s_slot) * slot_stride + g * HD;

  for (int kv0 = 0; kv0 <= s_maxpos; kv0 += kKV) {
    __syncthreads();  // the previous tile's K/V are no longer read
    for (int i = threadIdx.x; i < kKV * HD / 2; i += kFlashThreads) {
      const int r = i / (HD / 2), c = (i % (HD / 2)) * 2;
      float2 k2 = make_float2(0, 0), v2 = make_float2(0, 0);
      if (kv0 + r <= s_maxpos) {
        k2 = *reinterpret_cast<const float2*>(kbase + int64_t(kv0 + r) * kv_dim + c);
        v2 = *reinterpret_cast<const float2*>(vbase + int64_t(kv0 + r) * kv_dim + c);
      }
      *reinterpret_cast<uint32_t*>(&Ks[r][c]) = pack_f16(k2.x, k2.y);
      Vt[c][r] = __float2half_rn(v2.x);
      Vt[c + 1][r] = __float2half_rn(v2.y);
    }
    __syncthreads();
    // S = Q K^T: 16 queries x 64 keys per warp.
    float s[kKV / 8][4] = {};
#pragma unroll
    for (int j = 0; j < kKV / 8; ++j)
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) {
        uint32_t b[2];
        b[0] = *reinterpret_cast<const uint32_t*>(&Ks[j * 8 + gr][kk * 16 + tc]);
        b[1] = *reinterpret_cast<const uint32_t*>(&Ks[j * 8 + gr][kk * 16 + tc + 8]);
        mma_f16(s[j], qa[kk], b);
      }
    // Causal mask and the online softmax (rows gr and gr + 8 of the warp's 16).
    float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
    for (int j = 0; j < kKV / 8; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int kp = kv0 + j * 8 + tc + e;
        if (kp > p_lo) s[j][e] = -INFINITY;
        if (kp > p_hi) s[j][2 + e] = -INFINITY;
        mx_lo = fmaxf(mx_lo, s[j][e]);
        mx_hi = fmaxf(mx_hi, s[j][2 + e]);
      }
#pragma unroll
    for (int d = 1; d <= 2; d <<= 1) {
      mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, d));
      mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, d));
    }
    const float mn_lo = fmaxf(m_lo, mx_lo), mn_hi = fmaxf(m_hi, mx_hi);
    const float base_lo = mn_lo == -INFINITY ? 0.0f : mn_lo, base_hi = mn_hi == -INFINITY ? 0.0f : mn_hi;
    const float r_lo = exp2f(m_lo - base_lo), r_hi = exp2f(m_hi - base_hi);
    float sum_lo = 0, sum_hi = 0;
    uint32_t pa[kKV / 16][4];
#pragma unroll
    for (int j = 0; j < kKV / 8; ++j) {
      const float e0 = exp2f(s[j][0] - base_lo), e1 = exp2f(s[j][1] - base_lo);
      const float e2 = exp2f(s[j][2] - base_hi), e3 = exp2f(s[j][3] - base_hi);
      sum_lo += e0 + e1;
      sum_hi += e2 + e3;
      // C fragments of key tiles 2kk and 2kk+1 form the A fragment of keys 16kk..16kk+15.
      pa[j / 2][(j % 2) * 2] = pack_f16(e0, e1);
      pa[j / 2][(j % 2) * 2 + 1] = pack_f16(e2, e3);
    }
#pragma unroll
    for (int d = 1; d <= 2; d <<= 1) {
      sum_lo += __shfl_xor_sync(0xffffffffu, sum_lo, d);
      sum_hi += __shfl_xor_sync(0xffffffffu, sum_hi, d);
    }
    l_lo = l_lo * r_lo + sum_lo;
    l_hi = l_hi * r_hi + sum_hi;
    m_lo = mn_lo;
    m_hi = mn_hi;
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) {
      o[n][0] *= r_lo, o[n][1] *= r_lo, o[n][2] *= r_hi, o[n][3] *= r_hi;
    }
    // O += P V.
#pragma unroll
    for (int kk = 0; kk < kKV / 16; ++kk)
#pragma unroll
      for (int n = 0; n < HD / 8; ++n) {
        uint32_t b[2];
        b[0] = *reinterpret_cast<const uint32_t*>(&Vt[n * 8 + gr][kk * 16 + tc]);
        b[1] = *reinterpret_cast<const uint32_t*>(&Vt[n * 8 + gr][kk * 16 + tc + 8]);
        mma_f16(o[n], pa[kk], b);
      }
  }
  // Normalise and write the warp's 16 rows.
#pragma unroll
  for (int n = 0; n < HD / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = qr0 + gr + (e >= 2 ? 8 : 0);
      if (r >= rows) continue;
      const float l = e >= 2 ? l_hi : l_lo;
      out[((m0 + r) * n_heads + h) * HD + n * 8 + tc + (e & 1)] = o[n][e] / l;
    }
}

}  // namespace

bool flash_attention_supported(int head_dim) { return head_dim == 64 || head_dim == 128; }

void flash_attention(const float* q, const float* kc, const float* vc, const int32_t* pos, const int32_t* slots,
                     int64_t T, int n_heads, int n_kv_heads, int head_dim, int64_t slot_stride, float* out,
                     cudaStream_t s) {
  if (T == 0) return;
  const dim3 grid(unsigned((T + kQ - 1) / kQ), unsigned(n_heads));
  if (head_dim == 64)
    flash_kernel<64><<<grid, kFlashThreads, 0, s>>>(q, kc, vc, pos, slots, T, n_heads, n_kv_heads, slot_stride, out);
  else
    flash_kernel<128><<<grid, kFlashThreads, 0, s>>>(q, kc, vc, pos, slots, T, n_heads, n_kv_heads, slot_stride, out);
  CUDA_LAUNCH_CHECK();
}

}  // namespace moeq::cuda
