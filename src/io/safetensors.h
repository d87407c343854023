// safetensors files: a validating mmap reader, and a writer that never leaves a half-written file.
//
// Layout: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
// then the data area; offsets are relative to the data area.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/host_array.h"
#include "core/mapped_file.h"

namespace moeq::io {

struct TensorInfo {
  DType dtype;
  std::vector<int64_t> shape;
  size_t offset = 0;  // into the data area
  size_t nbytes = 0;
};

class SafetensorsFile {
 public:
  // Maps and validates the whole header: header length within the file, well-formed JSON, known
  // dtypes, offsets in range and non-overlapping, byte size = shape x dtype size. Throws
  // moeq::Error naming the file (and the tensor, where one is at fault).
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_->path(); }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // throws naming file and tensor
  HostArray get(const std::string& name) const;           // zero-copy view sharing the mapping

 private:
  std::shared_ptr<const MappedFile> file_;
  size_t data_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Collects tensors, then writes them in one go to `path` via a temporary file and rename.
class SafetensorsWriter {
 public:
  void add(const std::string& name, HostArray array);
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  size_t data_bytes() const;
  size_t size() const { return tensors_.size(); }
  // Writes and renames into place; throws moeq::Error naming the path on failure (no file left).
  void write(const std::filesystem::path& path) const;

 private:
  std::map<std::string, HostArray> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A file written under a temporary name and renamed into place by commit(); destroyed without
// commit() (an error, an exception) it removes the temporary and leaves `path` untouched.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t n);
  void commit();  // fsync, close, rename

 private:
  std::filesystem::path path_, tmp_;
  int fd_ = -1;
};

// Writes `bytes` to `path` through `path.tmp.<pid>` + fsync + rename.
void write_file_atomic(const std::filesystem::path& path, const std::string& bytes);

}  // namespace moeq::io
