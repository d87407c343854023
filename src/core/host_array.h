// HostArray: a typed, shaped view of bytes in host memory whose lifetime is shared with its owner
// (an mmapped file, or a vector it owns). The common currency between io/, quant/ and backends.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace moeq {

struct HostArray {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::shared_ptr<const std::byte> data;  // points at the first element; keeps the owner alive
  size_t nbytes = 0;

  int64_t numel() const;
  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(data.get()); }

  // A new array owning zero-initialised storage.
  static HostArray owned(DType dtype, std::vector<int64_t> shape);
  // Mutable access to storage created by owned() (callers fill it before sharing it).
  std::byte* mutable_data() const { return const_cast<std::byte*>(data.get()); }
};

std::string shape_str(const std::vector<int64_t>& shape);  // "[768, 384]"

}  // namespace moeq
