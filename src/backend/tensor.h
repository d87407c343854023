// Tensor: a dense, row-major block of memory owned by a Backend (host memory for the CPU backend,
// device memory for CUDA). Copies share storage; view_rows() slices along the first dimension.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/dtype.h"

namespace moeq {

class Backend;

class Tensor {
 public:
  Tensor() = default;
  Tensor(std::shared_ptr<void> storage, void* data, DType dtype, std::vector<int64_t> shape, Backend* backend)
      : storage_(std::move(storage)), data_(data), dtype_(dtype), shape_(std::move(shape)), backend_(backend) {}

  bool defined() const { return data_ != nullptr || numel() == 0; }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(size_t(i)); }
  int rank() const { return int(shape_.size()); }
  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  int64_t rows() const { return shape_.empty() ? 1 : shape_[0]; }
  int64_t row_size() const { return rows() == 0 ? 0 : numel() / rows(); }  // elements per row
  Backend* backend() const { return backend_; }

  void* data() const { return data_; }
  template <typename T>
  T* as() const { return static_cast<T*>(data_); }

  // Rows [r0, r0 + n) along dimension 0, sharing storage.
  Tensor view_rows(int64_t r0, int64_t n) const;
  // The same storage under another shape with the same element count.
  Tensor reshape(std::vector<int64_t> shape) const;

 private:
  std::shared_ptr<void> storage_;
  void* data_ = nullptr;
  DType dtype_ = DType::F32;
  std::vector<int64_t> shape_;
  Backend* backend_ = nullptr;
};

}  // namespace moeq
