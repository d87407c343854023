#include "support/model_copy.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace moeq::test {

void link_model(const std::filesystem::path& src, const std::filesystem::path& dst) {
  std::filesystem::create_directories(dst);
  for (const auto& e : std::filesystem::directory_iterator(src))
    std::filesystem::create_symlink(std::filesystem::absolute(e.path()), dst / e.path().filename());
}

std::filesystem::path materialise(const std::filesystem::path& dst, const std::string& name) {
  const auto p = dst / name;
  const auto target = std::filesystem::read_symlink(p);
  std::filesystem::remove(p);
  std::filesystem::copy_file(target, p);
  std::filesystem::permissions(p, std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
  return p;
}

static std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void edit_safetensors_header(const std::filesystem::path& file, const std::function<void(nlohmann::json&)>& edit) {
  const std::string bytes = slurp(file);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  nlohmann::json h = nlohmann::json::parse(bytes.substr(8, n));
  edit(h);
  std::string hs = h.dump();
  const uint64_t m = hs.size();
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(&m), 8);
  out << hs << bytes.substr(8 + n);
  if (!out) throw std::runtime_error("cannot rewrite " + file.string());
}

void truncate_file(const std::filesystem::path& file, size_t bytes) { std::filesystem::resize_file(file, bytes); }

}  // namespace moeq::test
