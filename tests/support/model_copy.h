// Building damaged copies of a model directory for the bad-input tests.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>

namespace moeq::test {

// dst gets a symbolic link to every file of src (cheap), to be replaced one by one.
void link_model(const std::filesystem::path& src, const std::filesystem::path& dst);
// Replaces dst/name (a link) by a real copy of its target, returning the copy's path.
std::filesystem::path materialise(const std::filesystem::path& dst, const std::string& name);
// Rewrites a safetensors file's JSON header through `edit`, keeping the data area as it is.
void edit_safetensors_header(const std::filesystem::path& file, const std::function<void(nlohmann::json&)>& edit);
// Writes the first `bytes` bytes of the file only.
void truncate_file(const std::filesystem::path& file, size_t bytes);

}  // namespace moeq::test
