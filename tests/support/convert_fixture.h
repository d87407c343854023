// Quantized tiny-m2 models for the conversion and quality tests, made once per test program with
// small calibration settings (quality figures for docs use the full settings).
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace moeq::test {

// Converts models/tiny-m2 with `args` (preset/recipe and extra flags) into a cached directory
// under the build tree, reusing it when the same arguments were converted before by this build.
// Fails the test (returns empty) if the conversion fails.
std::filesystem::path converted_model(const std::vector<std::string>& args);

// Fast calibration settings for tests.
std::vector<std::string> quick_calib();

}  // namespace moeq::test
