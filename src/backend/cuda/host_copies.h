// Copies between the host and the device that return before the device has done them, so that
// the host can queue the next decode step while the device still runs this one:
// - upload: small host data staged through pinned slots (from pageable memory cudaMemcpyAsync may
//   wait for the stream first); the caller may reuse its buffer on return.
// - start_download / finish_download: a copy into a pinned slot, finished by its ticket, which
//   waits for that copy only, not for work queued after it.
// A slot is reused only once the event after its last copy has passed.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace moeq::cuda {

class HostCopies {
 public:
  static constexpr size_t kSmallUpload = size_t(64) << 10;  // larger uploads go straight from the source
  static constexpr int kSlots = 8;                           // per direction; also the most downloads pending

  HostCopies() = default;
  HostCopies(const HostCopies&) = delete;
  HostCopies& operator=(const HostCopies&) = delete;
  ~HostCopies();

  // dst (device) = src[0, n) (host), queued on s. Not during stream capture.
  void upload(void* dst, const void* src, size_t n, cudaStream_t s);
  // Queues src (device, n bytes) and the int32 at flag (device) to the host; returns the ticket.
  uint64_t start_download(const void* src, size_t n, const int32_t* flag, cudaStream_t s);
  // Waits for the ticket's copy, fills dst with its n bytes and returns the flag's value.
  int32_t finish_download(uint64_t ticket, void* dst);

 private:
  struct Slot {
    char* host = nullptr;  // pinned
    size_t cap = 0, n = 0;
    cudaEvent_t done = nullptr;
    bool recorded = false;   // done was recorded after a copy
    uint64_t ticket = 0;     // downloads: the unfinished copy's ticket, 0 when free
  };
  // Waits for the slot's last copy, then makes room for `bytes` (+ 64 for a flag).
  char* ready(Slot& slot, size_t bytes);
  Slot up_[kSlots], down_[kSlots];
  uint64_t uploads_ = 0, next_ticket_ = 1;
};

}  // namespace moeq::cuda
