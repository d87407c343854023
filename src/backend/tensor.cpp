#include "backend/tensor.h"

#include "core/error.h"
#include "core/host_array.h"

namespace moeq {

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

Tensor Tensor::view_rows(int64_t r0, int64_t n) const {
  MOEQ_CHECK(!shape_.empty() && r0 >= 0 && n >= 0 && r0 + n <= shape_[0], "view_rows({}, {}) out of range for {}", r0,
             n, shape_str(shape_));
  std::vector<int64_t> s = shape_;
  s[0] = n;
  auto* p = static_cast<char*>(data_) + size_t(r0 * row_size()) * dtype_size(dtype_);
  return Tensor(storage_, p, dtype_, std::move(s), backend_);
}

Tensor Tensor::reshape(std::vector<int64_t> shape) const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  MOEQ_CHECK(n == numel(), "reshape {} -> {}: element count differs", shape_str(shape_), shape_str(shape));
  return Tensor(storage_, data_, dtype_, std::move(shape), backend_);
}

}  // namespace moeq
