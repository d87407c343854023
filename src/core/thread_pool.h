// A fixed pool of worker threads for data-parallel loops. The calling thread takes part in the
// work; a parallel_for issued from inside a worker runs serially (no nested oversubscription).
#pragma once
#include <cstdint>
#include <functional>

namespace moeq {

// Number of threads used by parallel_for (default: MOEQ_THREADS, else the hardware count).
int num_threads();
// Resizes the global pool (n <= 0: hardware count). Not to be called while work is running.
void set_num_threads(int n);

// Calls fn(begin, end) over [0, n) in chunks of about `grain` items, spread over the pool.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace moeq
