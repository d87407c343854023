#include "core/host_array.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace moeq {

int64_t HostArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

HostArray HostArray::owned(DType dtype, std::vector<int64_t> shape) {
  HostArray a;
  a.dtype = dtype;
  a.shape = std::move(shape);
  a.nbytes = size_t(a.numel()) * dtype_size(dtype);
  auto buf = std::make_shared<std::vector<std::byte>>(std::max<size_t>(a.nbytes, 1));
  a.data = std::shared_ptr<const std::byte>(buf, buf->data());
  return a;
}

std::string shape_str(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

}  // namespace moeq
