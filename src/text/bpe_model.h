// BPE merging by rank over token ids, as Hugging Face's BPE model does it: repeatedly merge the
// adjacent pair of lowest rank, the leftmost one among equals, until no pair has a merge.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace moeq::text {

class BpeMerges {
 public:
  struct Merge {
    uint32_t rank;
    int32_t merged;
  };

  void reserve(size_t n);
  // A later merge of the same pair replaces the earlier one (HF builds a map from the list).
  void add(int32_t left, int32_t right, uint32_t rank, int32_t merged);
  const Merge* find(int32_t left, int32_t right) const;
  size_t size() const { return count_; }

  // Merges `ids` in place. Cost O(n^2) comparisons for short words, O(n log n) for long ones.
  void apply(std::vector<int32_t>& ids) const;

 private:
  struct Slot {
    uint64_t key;
    Merge m;
  };
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t key(int32_t l, int32_t r) { return (uint64_t(uint32_t(l)) << 32) | uint32_t(r); }
  size_t slot_of(uint64_t k) const;
  void grow();
  void apply_short(std::vector<int32_t>& ids) const;
  void apply_long(std::vector<int32_t>& ids) const;

  std::vector<Slot> slots_;
  size_t count_ = 0;
};

}  // namespace moeq::text
