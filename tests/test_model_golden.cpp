// The CPU reference engine against the Hugging Face float32 reference outputs of tiny-m2.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "backend/cpu/cpu_backend.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/minimax_m2.h"
#include "support/numeric.h"
#include "support/test_support.h"

using namespace moeq;

namespace {

struct Fixture {
  CpuBackend backend;
  std::unique_ptr<Model> model;
  io::SafetensorsFile golden;
  Fixture()
      : model(Model::load(test::tiny_model_dir(), backend)),
        golden(io::SafetensorsFile::open(test::tiny_model_dir() / "golden.safetensors")) {}
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

std::vector<int32_t> iota_vec(size_t n, int32_t start = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

}  // namespace

TEST(ModelGolden, LogitsMatchReference) {
  Fixture& f = fixture();
  const HostArray ids = f.golden.get("input_ids");
  const HostArray ref = f.golden.get("logits");
  const int64_t S = ids.shape[0], T = ids.shape[1], V = ref.shape[2];
  for (int64_t s = 0; s < S; ++s) {
    KVCache kv = f.model->make_cache(1, int(T));
    const std::span<const int32_t> seq(ids.as<int32_t>() + s * T, size_t(T));
    const std::vector<int32_t> pos = iota_vec(size_t(T)), slots(size_t(T), 0);
    const Tensor& logits = f.model->forward(seq, pos, slots, pos, kv);
    ASSERT_EQ(logits.numel(), T * V);
    const double err = test::rel_err(logits.as<float>(), ref.as<float>() + s * T * V, size_t(T * V));
    EXPECT_LT(err, 1e-4) << "sequence " << s;
    std::printf("sequence %lld: logits relative error %.3g\n", (long long)s, err);
  }
}

TEST(ModelGolden, HiddenStatesMatchReference) {
  Fixture& f = fixture();
  const HostArray ids = f.golden.get("input_ids");
  const HostArray ref = f.golden.get("hidden_states_seq0");
  const int64_t T = ids.shape[1], H = ref.shape[2];
  std::vector<std::vector<float>> got;
  f.model->on_hidden = [&](int, const Tensor& h) { got.emplace_back(h.as<float>(), h.as<float>() + h.numel()); };
  KVCache kv = f.model->make_cache(1, int(T));
  const std::vector<int32_t> pos = iota_vec(size_t(T)), slots(size_t(T), 0);
  f.model->forward(std::span<const int32_t>(ids.as<int32_t>(), size_t(T)), pos, slots, pos, kv);
  f.model->on_hidden = nullptr;
  ASSERT_EQ(int64_t(got.size()), ref.shape[0]);
  // The fixture's README says the last state is taken before the final norm, but its values are
  // those after it (as Hugging Face's output_hidden_states gives them): apply model.norm here.
  {
    const io::Checkpoint ck = io::Checkpoint::open(test::tiny_model_dir());
    const Tensor norm = f.backend.upload_f32(load_vector_f32(ck, "model.norm.weight", H));
    Tensor last = f.backend.alloc(DType::F32, {T, H});
    f.backend.to_device(last, got.back().data());
    f.backend.rmsnorm(last, norm, f.model->config().rms_norm_eps, last);
    f.backend.to_host(got.back().data(), last);
  }
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = test::rel_err(got[i].data(), ref.as<float>() + int64_t(i) * T * H, size_t(T * H));
    EXPECT_LT(err, 1e-4) << "hidden state " << i;
  }
}

TEST(ModelGolden, GreedyDecodeThroughKvCacheMatchesReference) {
  Fixture& f = fixture();
  const HostArray prompt = f.golden.get("greedy_prompt");
  const HostArray expect = f.golden.get("greedy_output");
  const int64_t P = prompt.numel(), N = expect.numel();
  KVCache kv = f.model->make_cache(1, int(P + N));
  std::vector<int32_t> ids(prompt.as<int32_t>(), prompt.as<int32_t>() + P);
  const std::vector<int32_t> pos = iota_vec(size_t(P)), slots(size_t(P), 0);
  const int32_t last = int32_t(P - 1);
  const Tensor* logits = &f.model->forward(ids, pos, slots, std::span<const int32_t>(&last, 1), kv);
  const int V = f.model->config().vocab_size;
  std::vector<int32_t> out;
  for (int64_t i = 0; i < N; ++i) {
    const float* l = logits->as<float>();
    const int32_t next = int32_t(std::max_element(l, l + V) - l);
    out.push_back(next);
    const int32_t p = int32_t(P + i), zero = 0, row = 0;
    logits = &f.model->forward(std::span<const int32_t>(&next, 1), std::span<const int32_t>(&p, 1),
                               std::span<const int32_t>(&zero, 1), std::span<const int32_t>(&row, 1), kv);
  }
  EXPECT_EQ(out, std::vector<int32_t>(expect.as<int32_t>(), expect.as<int32_t>() + N));
}
