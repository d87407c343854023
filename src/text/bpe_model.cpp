#include "text/bpe_model.h"

#include <algorithm>
#include <limits>
#include <queue>

namespace moeq::text {
namespace {
constexpr uint32_t kNoRank = std::numeric_limits<uint32_t>::max();
constexpr size_t kShortWord = 64;  // below this the quadratic scan beats a heap
}  // namespace

size_t BpeMerges::slot_of(uint64_t k) const {
  // Fibonacci hashing into a power-of-two table, linear probing.
  const size_t mask = slots_.size() - 1;
  size_t i = size_t((k * 0x9E3779B97F4A7C15ull) >> 20) & mask;
  while (slots_[i].key != kEmpty && slots_[i].key != k) i = (i + 1) & mask;
  return i;
}

void BpeMerges::grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(std::max<size_t>(64, old.size() * 2), Slot{kEmpty, {0, 0}});
  for (const Slot& s : old)
    if (s.key != kEmpty) slots_[slot_of(s.key)] = s;
}

void BpeMerges::reserve(size_t n) {
  size_t cap = 64;
  while (cap < n * 2) cap *= 2;
  if (cap <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot{kEmpty, {0, 0}});
  for (const Slot& s : old)
    if (s.key != kEmpty) slots_[slot_of(s.key)] = s;
}

void BpeMerges::add(int32_t left, int32_t right, uint32_t rank, int32_t merged) {
  if ((count_ + 1) * 2 > slots_.size()) grow();
  const uint64_t k = key(left, right);
  Slot& s = slots_[slot_of(k)];
  if (s.key == kEmpty) ++count_;
  s = Slot{k, {rank, merged}};
}

const BpeMerges::Merge* BpeMerges::find(int32_t left, int32_t right) const {
  if (slots_.empty()) return nullptr;
  const Slot& s = slots_[slot_of(key(left, right))];
  return s.key == kEmpty ? nullptr : &s.m;
}

void BpeMerges::apply(std::vector<int32_t>& ids) const {
  if (ids.size() < 2 || count_ == 0) return;
  if (ids.size() < kShortWord)
    apply_short(ids);
  else
    apply_long(ids);
}

void BpeMerges::apply_short(std::vector<int32_t>& ids) const {
  // rank[i]: rank of the pair (ids[i], ids[i+1]); kept in step with ids as pairs merge.
  uint32_t rank[kShortWord];
  int32_t merged[kShortWord];
  size_t n = ids.size();
  auto look = [&](size_t i) {
    const Merge* m = find(ids[i], ids[i + 1]);
    rank[i] = m ? m->rank : kNoRank;
    merged[i] = m ? m->merged : -1;
  };
  for (size_t i = 0; i + 1 < n; ++i) look(i);
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i)
      if (rank[i] < rank[best]) best = i;
    if (rank[best] == kNoRank) break;
    ids[best] = merged[best];
    // Drop element best+1 and pair best+1.
    for (size_t i = best + 1; i + 1 < n; ++i) ids[i] = ids[i + 1];
    for (size_t i = best + 1; i + 2 < n; ++i) {
      rank[i] = rank[i + 1];
      merged[i] = merged[i + 1];
    }
    --n;
    if (best > 0) look(best - 1);
    if (best + 1 < n) look(best);
  }
  ids.resize(n);
}

void BpeMerges::apply_long(std::vector<int32_t>& ids) const {
  // Symbols in a linked list; candidate merges in a heap, ordered by (rank, position) and checked
  // against the current neighbours when popped (stale entries are skipped).
  const int n = int(ids.size());
  std::vector<int> prev(n), next(n);
  std::vector<char> alive(n, 1);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Cand {
    uint32_t rank;
    int pos;
    int32_t merged;
    bool operator<(const Cand& o) const {  // priority_queue keeps the largest: invert
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::vector<Cand> store;
  store.reserve(size_t(n));
  std::priority_queue<Cand> heap(std::less<Cand>(), std::move(store));
  auto push = [&](int i) {
    if (i < 0 || next[i] < 0) return;
    if (const Merge* m = find(ids[size_t(i)], ids[size_t(next[i])])) heap.push({m->rank, i, m->merged});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    if (!alive[size_t(c.pos)] || next[c.pos] < 0) continue;
    const int r = next[c.pos];
    const Merge* m = find(ids[size_t(c.pos)], ids[size_t(r)]);
    if (!m || m->merged != c.merged || m->rank != c.rank) continue;
    ids[size_t(c.pos)] = c.merged;
    alive[size_t(r)] = 0;
    next[c.pos] = next[r];
    if (next[r] >= 0) prev[next[r]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  size_t w = 0;
  for (int i = 0; i < n; ++i)
    if (alive[size_t(i)]) ids[w++] = ids[size_t(i)];
  ids.resize(w);
}

}  // namespace moeq::text
