#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "support/model_copy.h"
#include "support/test_support.h"

using namespace moeq;

namespace {

HostArray make(DType dt, std::vector<int64_t> shape, uint8_t seed) {
  HostArray a = HostArray::owned(dt, std::move(shape));
  for (size_t i = 0; i < a.nbytes; ++i) a.mutable_data()[i] = std::byte(uint8_t(seed + i * 7));
  return a;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Safetensors, WriteReadRoundTripAllDtypes) {
  test::TempDir tmp;
  io::SafetensorsWriter w;
  const std::vector<DType> types = {DType::F32, DType::F16, DType::BF16, DType::F8_E4M3,
                                    DType::I8,  DType::U8,  DType::I32,  DType::I64};
  for (size_t i = 0; i < types.size(); ++i)
    w.add("t" + std::to_string(i), make(types[i], {3, int64_t(i) + 1}, uint8_t(i)));
  w.add("empty", HostArray::owned(DType::F32, {0, 4}));
  w.set_metadata("format", "pt");
  w.write(tmp / "a.safetensors");
  const auto f = io::SafetensorsFile::open(tmp / "a.safetensors");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  for (size_t i = 0; i < types.size(); ++i) {
    const HostArray a = f.get("t" + std::to_string(i));
    const HostArray e = make(types[i], {3, int64_t(i) + 1}, uint8_t(i));
    EXPECT_EQ(a.dtype, types[i]);
    EXPECT_EQ(a.shape, e.shape);
    ASSERT_EQ(a.nbytes, e.nbytes);
    EXPECT_EQ(std::memcmp(a.data.get(), e.data.get(), a.nbytes), 0);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data.get()) % 8, 0u) << "tensors are 8-byte aligned";
  }
  EXPECT_EQ(f.get("empty").numel(), 0);
  // No temporary files left behind.
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(tmp.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(Safetensors, WriterRejectsDuplicatesAndBadSizes) {
  io::SafetensorsWriter w;
  w.add("a", make(DType::F32, {2}, 1));
  EXPECT_THROW(w.add("a", make(DType::F32, {2}, 1)), Error);
  HostArray bad = make(DType::F32, {2}, 1);
  bad.nbytes = 4;
  EXPECT_THROW(w.add("b", bad), Error);
}

TEST(Safetensors, FailedWriteLeavesNothing) {
  test::TempDir tmp;
  io::SafetensorsWriter w;
  w.add("a", make(DType::F32, {2}, 1));
  EXPECT_THROW(w.write(tmp / "no-such-dir" / "x.safetensors"), Error);
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path()));
}

TEST(Safetensors, AtomicFileWithoutCommitLeavesTargetUntouched) {
  test::TempDir tmp;
  io::write_file_atomic(tmp / "f", "old");
  {
    io::AtomicFile f(tmp / "f");
    f.write("new", 3);
  }  // no commit
  std::ifstream in(tmp / "f");
  std::string s;
  in >> s;
  EXPECT_EQ(s, "old");
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(tmp.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(Safetensors, HostileHeaders) {
  test::TempDir tmp;
  io::SafetensorsWriter w;
  w.add("a", make(DType::F32, {4}, 1));
  w.add("b", make(DType::F32, {4}, 2));
  const auto good = tmp / "good.safetensors";
  w.write(good);
  auto variant = [&](const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
    const auto p = tmp / name;
    std::filesystem::copy_file(good, p);
    test::edit_safetensors_header(p, edit);
    return error_of([&] { io::SafetensorsFile::open(p); });
  };
  EXPECT_NE(variant("dtype", [](auto& h) { h["a"]["dtype"] = "F64"; }).find("unsupported dtype 'F64'"), std::string::npos);
  EXPECT_NE(variant("neg", [](auto& h) { h["a"]["shape"] = {-4}; }).find("bad shape"), std::string::npos);
  EXPECT_NE(variant("ovf", [](auto& h) { h["a"]["shape"] = {int64_t(1) << 40, int64_t(1) << 40}; }).find("tensor 'a'"),
            std::string::npos);
  EXPECT_NE(variant("offs", [](auto& h) { h["a"]["data_offsets"] = {0}; }).find("data_offsets"), std::string::npos);
  EXPECT_NE(variant("rev", [](auto& h) { h["a"]["data_offsets"] = {16, 0}; }).find("outside"), std::string::npos);
  EXPECT_NE(variant("past", [](auto& h) { h["b"]["data_offsets"] = {16, 1000016}; }).find("outside"), std::string::npos);
  EXPECT_NE(variant("arr", [](auto& h) { h = nlohmann::json::array(); }).find("not a JSON object"), std::string::npos);
  EXPECT_NE(variant("ent", [](auto& h) { h["a"] = 5; }).find("tensor 'a'"), std::string::npos);
  const std::string overlap = variant("ovl", [](auto& h) { h["b"]["data_offsets"] = {8, 24}; });
  EXPECT_NE(overlap.find("overlap"), std::string::npos);
  EXPECT_NE(overlap.find("ovl"), std::string::npos) << "names the file";
}

TEST(Checkpoint, TinyModelOpensAndValidatesShapes) {
  const auto ck = io::Checkpoint::open(test::tiny_model_dir());
  EXPECT_EQ(ck.shards().size(), 4u);
  EXPECT_TRUE(ck.has("lm_head.weight"));
  EXPECT_EQ(ck.info("model.embed_tokens.weight").dtype, DType::BF16);
  EXPECT_NO_THROW(ck.require("model.norm.weight", DType::BF16, {384}));
  const std::string e = error_of([&] { ck.require("model.norm.weight", DType::BF16, {385}); });
  EXPECT_NE(e.find("model.norm.weight"), std::string::npos);
  EXPECT_NE(e.find(".safetensors"), std::string::npos);
  EXPECT_NE(error_of([&] { ck.get("nope"); }).find("missing tensor 'nope'"), std::string::npos);
}

TEST(Checkpoint, IndexPointingOutsideTheDirectoryIsRejected) {
  test::TempDir tmp;
  const auto dir = tmp / "m";
  test::link_model(test::tiny_model_dir(), dir);
  const auto idx = test::materialise(dir, "model.safetensors.index.json");
  nlohmann::json j = nlohmann::json::parse(std::ifstream(idx));
  j["weight_map"]["lm_head.weight"] = "../../etc/passwd";
  std::ofstream(idx) << j.dump();
  const std::string e = error_of([&] { io::Checkpoint::open(dir); });
  EXPECT_NE(e.find("bad shard file"), std::string::npos) << e;
}
