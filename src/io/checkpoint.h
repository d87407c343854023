// A model directory's weights: one model.safetensors, or shards listed by
// model.safetensors.index.json. Gives every tensor by name, whichever shard holds it.
#pragma once
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace moeq::io {

class Checkpoint {
 public:
  // Opens and validates every shard; checks the index against the shards' contents.
  static Checkpoint open(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  bool has(const std::string& name) const { return where_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  HostArray get(const std::string& name) const;
  // The shard file holding `name` (for error messages).
  const std::filesystem::path& file_of(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::vector<SafetensorsFile>& shards() const { return shards_; }
  size_t total_bytes() const;

  // get() that also checks dtype and shape, with an error naming the file and the tensor.
  HostArray require(const std::string& name, DType dtype, const std::vector<int64_t>& shape) const;
  HostArray require(const std::string& name, const std::vector<int64_t>& shape) const;  // any dtype

 private:
  std::filesystem::path dir_;
  std::vector<SafetensorsFile> shards_;
  std::map<std::string, size_t> where_;  // tensor -> shard index
};

}  // namespace moeq::io
