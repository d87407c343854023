#include "io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace moeq::io {
namespace {

constexpr uint64_t kMaxHeader = 256ull << 20;  // a header over 256 MiB is certainly not a header

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

TensorInfo parse_entry(const std::string& name, const nlohmann::json& e, size_t data_size) {
  if (!e.is_object()) fail("tensor '{}': entry is not an object", name);
  if (!e.contains("dtype") || !e["dtype"].is_string()) fail("tensor '{}': missing dtype", name);
  const auto dt = dtype_from_name(e["dtype"].get<std::string>());
  if (!dt) fail("tensor '{}': unsupported dtype '{}'", name, e["dtype"].get<std::string>());
  TensorInfo info;
  info.dtype = *dt;
  if (!e.contains("shape") || !e["shape"].is_array()) fail("tensor '{}': missing shape", name);
  uint64_t numel = 1;
  for (const auto& d : e["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) fail("tensor '{}': bad shape entry", name);
    info.shape.push_back(d.get<int64_t>());
    if (mul_overflows(numel, uint64_t(d.get<int64_t>()), &numel)) fail("tensor '{}': shape overflows", name);
  }
  const auto& off = e.contains("data_offsets") ? e["data_offsets"] : nlohmann::json();
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    fail("tensor '{}': data_offsets must be two non-negative integers", name);
  const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
  if (begin > end || end > data_size)
    fail("tensor '{}': data_offsets [{}, {}] outside the data area of {} bytes", name, begin, end, data_size);
  uint64_t expect = 0;
  if (mul_overflows(numel, dtype_size(info.dtype), &expect) || expect != end - begin)
    fail("tensor '{}': {} bytes for shape {} of {} (expected {})", name, end - begin, shape_str(info.shape),
         dtype_name(info.dtype), expect);
  info.offset = size_t(begin);
  info.nbytes = size_t(end - begin);
  return info;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile f;
  f.file_ = MappedFile::open(path);
  return with_context(path.string(), [&] {
    const size_t size = f.file_->size();
    if (size < 8) fail("file too short for a safetensors header ({} bytes)", size);
    uint64_t n = 0;
    std::memcpy(&n, f.file_->data(), 8);  // little-endian on every platform moeq targets
    if (n > size - 8 || n > kMaxHeader) fail("header length {} runs past the end of the file ({} bytes)", n, size);
    const char* hdr = reinterpret_cast<const char*>(f.file_->data()) + 8;
    nlohmann::json j = nlohmann::json::parse(hdr, hdr + n, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail("header is not well-formed JSON");
    if (!j.is_object()) fail("header is not a JSON object");
    f.data_start_ = 8 + size_t(n);
    const size_t data_size = size - f.data_start_;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "__metadata__") {
        if (!it->is_object()) fail("__metadata__ is not an object");
        for (auto m = it->begin(); m != it->end(); ++m)
          if (m->is_string()) f.metadata_[m.key()] = m->get<std::string>();
        continue;
      }
      f.tensors_[it.key()] = parse_entry(it.key(), *it, data_size);
    }
    // Non-overlapping: sort by offset and compare neighbours (empty tensors overlap nothing).
    std::vector<std::pair<const std::string*, const TensorInfo*>> order;
    for (const auto& [name, info] : f.tensors_)
      if (info.nbytes > 0) order.emplace_back(&name, &info);
    std::sort(order.begin(), order.end(), [](auto a, auto b) { return a.second->offset < b.second->offset; });
    for (size_t i = 1; i < order.size(); ++i) {
      const auto& prev = *order[i - 1].second;
      if (prev.offset + prev.nbytes > order[i].second->offset)
        fail("tensors '{}' and '{}' overlap", *order[i - 1].first, *order[i].first);
    }
    return f;
  });
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail("{}: no tensor '{}'", path().string(), name);
  return it->second;
}

HostArray SafetensorsFile::get(const std::string& name) const {
  const TensorInfo& i = info(name);
  HostArray a;
  a.dtype = i.dtype;
  a.shape = i.shape;
  a.nbytes = i.nbytes;
  a.data = std::shared_ptr<const std::byte>(file_, file_->data() + data_start_ + i.offset);
  return a;
}

void SafetensorsWriter::add(const std::string& name, HostArray array) {
  if (name.empty() || name == "__metadata__") fail("safetensors writer: bad tensor name '{}'", name);
  if (array.nbytes != size_t(array.numel()) * dtype_size(array.dtype))
    fail("safetensors writer: tensor '{}' has {} bytes for shape {}", name, array.nbytes, shape_str(array.shape));
  if (!tensors_.emplace(name, std::move(array)).second) fail("safetensors writer: duplicate tensor '{}'", name);
}

size_t SafetensorsWriter::data_bytes() const {
  size_t n = 0;
  for (const auto& [_, a] : tensors_) n += (a.nbytes + 7) / 8 * 8;
  return n;
}

void SafetensorsWriter::write(const std::filesystem::path& path) const {
  nlohmann::json hdr = nlohmann::json::object();
  if (!metadata_.empty()) hdr["__metadata__"] = metadata_;
  size_t offset = 0;
  for (const auto& [name, a] : tensors_) {
    hdr[name] = {{"dtype", std::string(dtype_name(a.dtype))}, {"shape", a.shape}, {"data_offsets", {offset, offset + a.nbytes}}};
    offset += (a.nbytes + 7) / 8 * 8;  // keep every tensor 8-byte aligned
  }
  std::string h = hdr.dump();
  h.resize((h.size() + 7) / 8 * 8, ' ');
  const uint64_t n = h.size();
  static const char zeros[8] = {};
  AtomicFile f(path);
  f.write(&n, 8);
  f.write(h.data(), h.size());
  for (const auto& [name, a] : tensors_) {
    f.write(a.data.get(), a.nbytes);
    f.write(zeros, (8 - a.nbytes % 8) % 8);
  }
  f.commit();
}

AtomicFile::AtomicFile(std::filesystem::path path)
    : path_(std::move(path)), tmp_(path_.string() + ".tmp." + std::to_string(::getpid())) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("{}: cannot create: {}", tmp_.string(), std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("{}: write failed: {}", tmp_.string(), std::strerror(errno));
    }
    p += w;
    n -= size_t(w);
  }
}

void AtomicFile::commit() {
  const int fd = fd_;
  fd_ = -1;
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp_.c_str());
    fail("{}: cannot flush to disk", tmp_.string());
  }
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    fail("{}: cannot rename into place: {}", path_.string(), std::strerror(err));
  }
}

void write_file_atomic(const std::filesystem::path& path, const std::string& bytes) {
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

}  // namespace moeq::io
