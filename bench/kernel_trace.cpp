// Per-kernel timeline of graph-replayed decode steps, with no change to the program measured:
// a CUPTI injection library (CUDA loads it at start-up when CUDA_INJECTION64_PATH names it).
//
//   CUDA_INJECTION64_PATH=build-dev/bench/libmoeq_kernel_trace.so build-dev/moeq bench ...
//
// Why: the eager per-op profile (`moeq bench --profile`) times each op with events around it,
// so every op carries a launch gap and none overlaps its neighbour, while the real decode step is
// one CUDA graph whose kernels overlap through programmatic dependent launch. Nsight Systems
// cannot make reports on the GPU machine; CUPTI's activity records give the same start/end times.
//
// At exit it prints, for the last MOEQ_TRACE_STEPS graph launches that have the most kernels
// (the decode steps), per kernel name: launches per step, mean resident time (start to end:
// with PDL a kernel is resident while it waits for its predecessor), and its critical-path share:
// how far its end moved the step's latest end past the previous kernels' ends, summed per step.
// The shares add up to the step time (less the first kernel's start).
#include <cupti.h>
#include <cxxabi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct Rec {
  uint64_t start, end;
  uint32_t graph, corr;
  std::string name;
};

std::mutex g_mu;
std::vector<Rec>* g_recs = new std::vector<Rec>();  // never freed: used from the exit handler

// "void moeq::cuda::(anonymous namespace)::gemv_kernel<1, 1, 4, 3>(...)" -> "gemv_kernel<1, 1, 4, 3>"
std::string short_name(const char* mangled) {
  int status = 0;
  char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string s = status == 0 && d ? d : mangled;
  std::free(d);
  for (size_t at; (at = s.find("(anonymous namespace)::")) != std::string::npos;) s.erase(at, 23);
  int depth = 0;
  size_t cut = s.size();
  for (size_t i = 0; i < s.size(); ++i) {  // the first '(' outside template brackets ends the name
    if (s[i] == '<') ++depth;
    else if (s[i] == '>') --depth;
    else if (s[i] == '(' && depth == 0 && i > 0) { cut = i; break; }
  }
  s.resize(cut);
  depth = 0;
  size_t begin = 0;
  for (size_t i = 0; i < s.size(); ++i) {  // drop namespaces and the return type
    if (s[i] == '<') ++depth;
    else if (s[i] == '>') --depth;
    else if (depth == 0 && (s[i] == ' ' || (s[i] == ':' && i + 1 < s.size() && s[i + 1] == ':'))) begin = i + 1;
  }
  if (begin < s.size() && s[begin] == ':') ++begin;
  return s.substr(begin);
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *size = size_t(16) << 20;
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(64, *size));
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* r = nullptr;
  std::lock_guard<std::mutex> lock(g_mu);
  while (cuptiActivityGetNextRecord(buffer, valid, &r) == CUPTI_SUCCESS) {
    if (r->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && r->kind != CUPTI_ACTIVITY_KIND_KERNEL) continue;
    auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(r);
    if (k->graphId == 0) continue;  // eager launches (prefill, warm-up) are not what we trace
    g_recs->push_back({k->start, k->end, k->graphId, k->correlationId, short_name(k->name)});
  }
  std::free(buffer);
}

struct Row {
  double count = 0, resident = 0, share = 0;
};

void report() {
  cuptiActivityFlushAll(1);
  std::lock_guard<std::mutex> lock(g_mu);
  std::map<uint32_t, std::vector<Rec>> launches;  // by correlation id: one graph launch
  for (auto& r : *g_recs) launches[r.corr].push_back(r);
  size_t most = 0;
  for (auto& [c, v] : launches) most = std::max(most, v.size());
  if (most == 0) {
    std::fprintf(stderr, "kernel_trace: no graph-launched kernels recorded\n");
    return;
  }
  const char* env = std::getenv("MOEQ_TRACE_STEPS");
  const size_t want = env ? std::strtoul(env, nullptr, 10) : 16;
  std::vector<std::vector<Rec>*> steps;
  for (auto it = launches.rbegin(); it != launches.rend() && steps.size() < want; ++it)
    if (it->second.size() == most) steps.push_back(&it->second);
  std::map<std::string, Row> rows;
  double span = 0;
  for (auto* st : steps) {
    std::sort(st->begin(), st->end(), [](const Rec& a, const Rec& b) { return a.start < b.start; });
    uint64_t latest = st->front().start, last_end = 0;
    for (auto& r : *st) {
      auto& row = rows[r.name];
      row.count += 1;
      row.resident += double(r.end - r.start);
      if (r.end > latest) row.share += double(r.end - latest), latest = r.end;
      last_end = std::max(last_end, r.end);
    }
    span += double(last_end - st->front().start);
  }
  const double n = double(steps.size());
  std::vector<std::pair<std::string, Row>> sorted(rows.begin(), rows.end());
  std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.second.share > b.second.share; });
  std::fprintf(stderr, "kernel_trace: %zu graph launches of %zu kernels; mean span %.1f us\n", steps.size(), most,
               span / n / 1e3);
  std::fprintf(stderr, "%-48s %8s %12s %12s %12s %7s\n", "kernel", "per step", "resident us", "share us/step",
               "share us/each", "share%");
  for (auto& [name, row] : sorted)
    std::fprintf(stderr, "%-48.48s %8.0f %12.2f %12.1f %12.2f %6.1f%%\n", name.c_str(), row.count / n,
                 row.resident / row.count / 1e3, row.share / n / 1e3, row.share / row.count / 1e3,
                 100.0 * row.share / span);
  // One step's sequence, for reading the overlaps: MOEQ_TRACE_SEQUENCE=N prints the first N kernels.
  if (const char* seq = std::getenv("MOEQ_TRACE_SEQUENCE")) {
    const size_t lim = std::strtoul(seq, nullptr, 10);
    const auto& st = *steps.front();
    const uint64_t t0 = st.front().start;
    for (size_t i = 0; i < st.size() && i < lim; ++i)
      std::fprintf(stderr, "  %8.2f %8.2f  %s\n", (st[i].start - t0) / 1e3, (st[i].end - t0) / 1e3,
                   st[i].name.c_str());
  }
}

}  // namespace

extern "C" int InitializeInjection() {
  if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
    std::fprintf(stderr, "kernel_trace: CUPTI activity tracing could not be enabled\n");
    return 0;
  }
  std::atexit(report);
  return 1;
}
