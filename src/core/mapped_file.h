// Read-only memory mapping of a whole file (the safetensors reader maps shards instead of reading
// them, so a 230 GB checkpoint costs only the pages actually touched).
#pragma once
#include <cstddef>
#include <filesystem>
#include <memory>

namespace moeq {

class MappedFile {
 public:
  // Throws moeq::Error naming the path if it cannot be opened or mapped.
  static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  MappedFile() = default;
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace moeq
