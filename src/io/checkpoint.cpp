#include "io/checkpoint.h"

#include <algorithm>

#include "core/error.h"
#include "io/json_file.h"

namespace moeq::io {

Checkpoint Checkpoint::open(const std::filesystem::path& dir) {
  Checkpoint c;
  c.dir_ = dir;
  if (!std::filesystem::is_directory(dir)) fail("{}: not a directory", dir.string());
  const auto index_path = dir / "model.safetensors.index.json";
  if (std::filesystem::exists(index_path)) {
    const nlohmann::json index = read_json_file(index_path);
    if (!index.contains("weight_map") || !index["weight_map"].is_object())
      fail("{}: missing 'weight_map'", index_path.string());
    std::map<std::string, size_t> shard_of_file;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it->is_string()) fail("{}: weight_map entry '{}' is not a file name", index_path.string(), it.key());
      const std::string file = it->get<std::string>();
      // Shards must sit in the model directory: no absolute paths, no climbing out.
      if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..")
        fail("{}: weight_map entry '{}' names a bad shard file '{}'", index_path.string(), it.key(), file);
      auto [pos, added] = shard_of_file.emplace(file, c.shards_.size());
      if (added) c.shards_.push_back(SafetensorsFile::open(dir / file));
      const SafetensorsFile& shard = c.shards_[pos->second];
      if (!shard.has(it.key()))
        fail("{}: tensor '{}' is listed in {} but missing from the shard", shard.path().string(), it.key(),
             index_path.filename().string());
      c.where_[it.key()] = pos->second;
    }
    // Tensors present in a shard but not in the index are still usable.
    for (size_t s = 0; s < c.shards_.size(); ++s)
      for (const auto& [name, _] : c.shards_[s].tensors()) c.where_.emplace(name, s);
  } else if (std::filesystem::exists(dir / "model.safetensors")) {
    c.shards_.push_back(SafetensorsFile::open(dir / "model.safetensors"));
    for (const auto& [name, _] : c.shards_[0].tensors()) c.where_[name] = 0;
  } else {
    fail("{}: no model.safetensors or model.safetensors.index.json", dir.string());
  }
  return c;
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail("{}: missing tensor '{}'", dir_.string(), name);
  return shards_[it->second].info(name);
}

HostArray Checkpoint::get(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail("{}: missing tensor '{}'", dir_.string(), name);
  return shards_[it->second].get(name);
}

const std::filesystem::path& Checkpoint::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail("{}: missing tensor '{}'", dir_.string(), name);
  return shards_[it->second].path();
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [n, _] : where_) out.push_back(n);
  return out;
}

size_t Checkpoint::total_bytes() const {
  size_t n = 0;
  for (const auto& [name, s] : where_) n += shards_[s].info(name).nbytes;
  return n;
}

HostArray Checkpoint::require(const std::string& name, const std::vector<int64_t>& shape) const {
  HostArray a = get(name);
  if (a.shape != shape)
    fail("{}: tensor '{}' has shape {}, expected {}", file_of(name).string(), name, shape_str(a.shape),
         shape_str(shape));
  return a;
}

HostArray Checkpoint::require(const std::string& name, DType dtype, const std::vector<int64_t>& shape) const {
  HostArray a = require(name, shape);
  if (a.dtype != dtype)
    fail("{}: tensor '{}' has dtype {}, expected {}", file_of(name).string(), name, dtype_name(a.dtype),
         dtype_name(dtype));
  return a;
}

}  // namespace moeq::io
