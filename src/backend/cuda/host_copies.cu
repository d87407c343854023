#include "backend/cuda/host_copies.h"

#include <algorithm>
#include <cstring>

#include "backend/cuda/cuda_check.h"
#include "core/error.h"

namespace moeq::cuda {

HostCopies::~HostCopies() {
  for (Slot* set : {up_, down_})
    for (int i = 0; i < kSlots; ++i) {
      if (set[i].done) {
        cudaEventSynchronize(set[i].done);
        cudaEventDestroy(set[i].done);
      }
      cudaFreeHost(set[i].host);
    }
}

char* HostCopies::ready(Slot& slot, size_t bytes) {
  if (!slot.done) CUDA_CHECK(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming));
  if (slot.recorded) CUDA_CHECK(cudaEventSynchronize(slot.done));  // its last copy has landed
  slot.recorded = false;
  const size_t need = 64 + bytes;
  if (slot.cap < need) {
    CUDA_CHECK(cudaFreeHost(slot.host));
    slot.host = nullptr;
    slot.cap = 0;
    const size_t cap = std::max<size_t>(need, 4096);
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&slot.host), cap, cudaHostAllocDefault));
    slot.cap = cap;
  }
  return slot.host;
}

void HostCopies::upload(void* dst, const void* src, size_t n, cudaStream_t s) {
  if (n == 0) return;
  if (n > kSmallUpload) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s));
    return;
  }
  Slot& slot = up_[uploads_++ % kSlots];
  char* p = ready(slot, n);
  std::memcpy(p, src, n);
  CUDA_CHECK(cudaMemcpyAsync(dst, p, n, cudaMemcpyHostToDevice, s));
  CUDA_CHECK(cudaEventRecord(slot.done, s));
  slot.recorded = true;
}

uint64_t HostCopies::start_download(const void* src, size_t n, const int32_t* flag, cudaStream_t s) {
  // Any free slot (tickets may finish in any order); a free slot has no copy in flight.
  Slot* const slot_it = std::find_if(down_, down_ + kSlots, [](const Slot& d) { return d.ticket == 0; });
  MOEQ_CHECK(slot_it != down_ + kSlots, "cuda: more than {} copies to the host left unfinished", kSlots);
  Slot& slot = *slot_it;
  const uint64_t ticket = next_ticket_++;
  char* p = ready(slot, n);
  CUDA_CHECK(cudaMemcpyAsync(p, flag, sizeof(int32_t), cudaMemcpyDeviceToHost, s));
  if (n) CUDA_CHECK(cudaMemcpyAsync(p + 64, src, n, cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaEventRecord(slot.done, s));
  slot.recorded = true;
  slot.ticket = ticket;
  slot.n = n;
  return ticket;
}

int32_t HostCopies::finish_download(uint64_t ticket, void* dst) {
  Slot* const slot_it = std::find_if(down_, down_ + kSlots, [&](const Slot& d) { return d.ticket == ticket; });
  MOEQ_CHECK(ticket != 0 && slot_it != down_ + kSlots, "cuda: no unfinished copy to the host has ticket {}", ticket);
  Slot& slot = *slot_it;
  CUDA_CHECK(cudaEventSynchronize(slot.done));
  slot.recorded = false;
  slot.ticket = 0;
  int32_t flag = 0;
  std::memcpy(&flag, slot.host, sizeof flag);
  if (slot.n) std::memcpy(dst, slot.host + 64, slot.n);
  return flag;
}

}  // namespace moeq::cuda
