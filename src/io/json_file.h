// Reading JSON files with errors that name the file.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace moeq::io {

std::string read_text_file(const std::filesystem::path& path);  // throws naming the path
nlohmann::json read_json_file(const std::filesystem::path& path);  // throws naming the path and the parse error

}  // namespace moeq::io
