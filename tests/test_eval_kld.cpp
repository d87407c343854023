// `moeq eval kld` and `moeq eval compare` through the CLI on tiny-m2 and on a perturbed copy of it
// (every expert's down projection of one layer scaled by 1.5 through its fp8 weight_scale_inv),
// checked against an independent KLD computed here from both models' logits.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <numeric>

#include "backend/cpu/cpu_backend.h"
#include "io/json_file.h"
#include "model/minimax_m2.h"
#include "support/model_copy.h"
#include "support/test_support.h"
#include "text/tokenizer.h"

using namespace moeq;

namespace {

constexpr int kCtx = 128, kChunks = 3;

std::string docs_file() { return (test::data_dir() / "eval" / "dev_docs.txt").string(); }

// The last JSON object printed on stdout.
nlohmann::json last_json(const std::string& out) {
  const auto end = out.find_last_of('}');
  if (end == std::string::npos) return {};
  const auto begin = out.rfind("\n{", end);
  return nlohmann::json::parse(out.substr(begin == std::string::npos ? 0 : begin + 1, end - begin));
}

// dst = tiny-m2 with every F32 tensor of `shard` whose name matches `pred` multiplied by `factor`
// in place (the header, and so the layout, unchanged).
void perturb_model(const std::filesystem::path& dst, const std::string& shard,
                   const std::function<bool(const std::string&)>& pred, float factor) {
  test::link_model(test::tiny_model_dir(), dst);
  const auto file = test::materialise(dst, shard);
  std::fstream f(file, std::ios::binary | std::ios::in | std::ios::out);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string hs(static_cast<size_t>(n), '\0');
  f.read(hs.data(), std::streamsize(n));
  int edited = 0;
  const nlohmann::json header = nlohmann::json::parse(hs);  // kept alive: items() only refers to it
  for (const auto& [name, t] : header.items()) {
    if (name == "__metadata__" || !pred(name)) continue;
    ASSERT_EQ(t["dtype"], "F32") << name;
    const size_t b = t["data_offsets"][0].get<size_t>(), e = t["data_offsets"][1].get<size_t>();
    std::vector<float> v((e - b) / 4);
    f.seekg(std::streamoff(8 + n + b));
    f.read(reinterpret_cast<char*>(v.data()), std::streamsize(e - b));
    for (float& x : v) x *= factor;
    f.seekp(std::streamoff(8 + n + b));
    f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(e - b));
    ++edited;
  }
  ASSERT_TRUE(f.good());
  ASSERT_GT(edited, 0);
}

// Layer 3 lives wholly in shard 3: scale all 32 experts' w2 (down) projections.
void make_perturbed(const std::filesystem::path& dst, float factor) {
  perturb_model(dst, "model-00003-of-00004.safetensors", [](const std::string& name) {
    return name.starts_with("model.layers.3.block_sparse_moe.experts.") && name.ends_with(".w2.weight_scale_inv");
  }, factor);
}

test::CliResult kld_cli(const std::string& model, const std::string& ref) {
  return test::run_cli({"eval", "kld", "-m", model, "--ref", ref, "-f", docs_file(), "--ctx", std::to_string(kCtx),
                        "--chunks", std::to_string(kChunks), "--json"});
}

// Independent reference: logits from moeq::Model on the CPU backend, KLD by the textbook formula.
struct Independent {
  double kld_mean = 0, top1 = 0, ppl_ref = 0, ppl_q = 0;
  int64_t positions = 0;
};

Independent independent_kld(const std::string& model, const std::string& ref) {
  CpuBackend be;
  auto mr = Model::load(ref, be);
  auto mq = Model::load(model, be);
  const auto tokens = text::Tokenizer::from_model_dir(ref).encode(io::read_text_file(docs_file()));
  const int64_t V = mr->config().vocab_size;
  std::vector<int32_t> pos(kCtx), slots(kCtx, 0);
  std::iota(pos.begin(), pos.end(), 0);
  KVCache kr = mr->make_cache(1, kCtx), kq = mq->make_cache(1, kCtx);
  double kl = 0, nr = 0, nq = 0;
  int64_t agree = 0, n = 0;
  auto lse = [V](const float* x) {  // log sum exp, shifted by the max
    double m = x[0];
    for (int64_t v = 1; v < V; ++v) m = std::max(m, double(x[v]));
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(double(x[v]) - m);
    return m + std::log(s);
  };
  for (int w = 0; w < kChunks; ++w) {
    std::span<const int32_t> win(tokens.data() + w * kCtx, kCtx);
    const std::vector<float> lr = be.download_f32(mr->forward(win, pos, slots, pos, kr));
    const std::vector<float> lq = be.download_f32(mq->forward(win, pos, slots, pos, kq));
    for (int i = 0; i + 1 < kCtx; ++i, ++n) {
      const float* r = lr.data() + int64_t(i) * V;
      const float* q = lq.data() + int64_t(i) * V;
      const double zr = lse(r), zq = lse(q);
      double k = 0;
      for (int64_t v = 0; v < V; ++v) k += std::exp(double(r[v]) - zr) * ((double(r[v]) - zr) - (double(q[v]) - zq));
      kl += k;
      nr -= double(r[win[size_t(i) + 1]]) - zr;
      nq -= double(q[win[size_t(i) + 1]]) - zq;
      agree += std::max_element(r, r + V) - r == std::max_element(q, q + V) - q;
    }
  }
  return {kl / double(n), double(agree) / double(n), std::exp(nr / double(n)), std::exp(nq / double(n)), n};
}

}  // namespace

TEST(EvalKld, ModelAgainstItselfIsExactlyZero) {
  const auto m = test::tiny_model_dir().string();
  const test::CliResult r = kld_cli(m, m);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = last_json(r.output);
  EXPECT_EQ(j["kld_mean"].get<double>(), 0.0);
  EXPECT_EQ(j["kld_p99"].get<double>(), 0.0);
  EXPECT_EQ(j["kld_max"].get<double>(), 0.0);
  EXPECT_EQ(j["top1"].get<double>(), 1.0);
  EXPECT_EQ(j["ppl_quant"].get<double>(), j["ppl_ref"].get<double>());
  EXPECT_EQ(j["positions"].get<int64_t>(), kChunks * (kCtx - 1));
  EXPECT_EQ(j["file"], docs_file());
  EXPECT_EQ(j["model"], m);
  EXPECT_EQ(j["ref"], m);

  // The perplexity is the one `eval ppl` reports for the same options (same positions, same sums).
  const test::CliResult p = test::run_cli({"eval", "ppl", "-m", m, "-f", docs_file(), "--ctx", std::to_string(kCtx),
                                           "--chunks", std::to_string(kChunks), "--json"});
  ASSERT_EQ(p.exit_code, 0) << p.output;
  const nlohmann::json pj = last_json(p.output);
  EXPECT_EQ(pj["ppl"].get<double>(), j["ppl_ref"].get<double>());
  EXPECT_EQ(pj["tokens"].get<int64_t>(), j["positions"].get<int64_t>());
}

TEST(EvalKld, PerturbedModelMatchesIndependentComputation) {
  test::TempDir tmp;
  const auto q = (tmp / "perturbed").string();
  make_perturbed(q, 1.5f);
  const auto ref = test::tiny_model_dir().string();
  const test::CliResult r = kld_cli(q, ref);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = last_json(r.output);
  const Independent ind = independent_kld(q, ref);
  const double kld = j["kld_mean"].get<double>();
  EXPECT_GT(kld, 0.0);
  EXPECT_LT(j["top1"].get<double>(), 1.0);
  EXPECT_GE(j["kld_p99"].get<double>(), j["kld_p90"].get<double>());
  EXPECT_GE(j["kld_p90"].get<double>(), j["kld_median"].get<double>());
  EXPECT_GE(j["kld_max"].get<double>(), j["kld_p99"].get<double>());
  EXPECT_EQ(j["positions"].get<int64_t>(), ind.positions);
  EXPECT_LT(std::fabs(kld - ind.kld_mean) / ind.kld_mean, 1e-6) << kld << " vs " << ind.kld_mean;
  EXPECT_DOUBLE_EQ(j["top1"].get<double>(), ind.top1);
  EXPECT_LT(std::fabs(j["ppl_ref"].get<double>() - ind.ppl_ref) / ind.ppl_ref, 1e-9);
  EXPECT_LT(std::fabs(j["ppl_quant"].get<double>() - ind.ppl_q) / ind.ppl_q, 1e-9);
  EXPECT_NE(j["ppl_quant"].get<double>(), j["ppl_ref"].get<double>());
  std::printf("perturbed (layer 3 w2 x1.5): KLD mean %.6f p99 %.6f top-1 %.4f PPL %.4f vs %.4f (independent KLD %.6f)\n",
              kld, j["kld_p99"].get<double>(), j["top1"].get<double>(), j["ppl_quant"].get<double>(),
              j["ppl_ref"].get<double>(), ind.kld_mean);
}

TEST(EvalKld, BadInputFailsCleanly) {
  test::TempDir tmp;
  const auto m = test::tiny_model_dir().string();
  // A copy whose config claims another vocabulary (rejected before any weight is read).
  const auto other = tmp / "other-vocab";
  test::link_model(test::tiny_model_dir(), other);
  {
    nlohmann::json cfg = io::read_json_file(test::tiny_model_dir() / "config.json");
    cfg["vocab_size"] = 4096;
    std::filesystem::remove(other / "config.json");
    std::ofstream(other / "config.json") << cfg.dump();
  }
  const auto short_file = tmp / "short.txt";
  std::ofstream(short_file) << "just a few tokens";
  const std::string f = docs_file();
  struct Case {
    std::vector<std::string> args;
    int exit;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"eval", "kld", "-m", "/no/such/model", "--ref", m, "-f", f}, 1, "does not exist"},
      {{"eval", "kld", "-m", m, "--ref", "/no/such/ref", "-f", f}, 1, "does not exist"},
      {{"eval", "kld", "-m", other.string(), "--ref", m, "-f", f}, 1, "vocabulary"},
      {{"eval", "kld", "-m", m, "--ref", m, "-f", short_file.string(), "--ctx", "128"}, 1, "fewer than one window"},
      {{"eval", "kld", "-m", m, "--ref", m, "-f", "/no/such/file.txt"}, 1, "cannot open"},
      {{"eval", "kld", "-m", m, "--ref", m, "-f", f, "--ctx", "1"}, 2, ""},
      {{"eval", "kld", "-m", m, "--ref", m, "-f", f, "--ctx", "100000"}, 1, "context limit"},
      {{"eval", "kld", "--ref", m, "-f", f}, 2, ""},
      {{"eval", "kld", "-m", m, "-f", f}, 2, ""},
      {{"eval", "compare", "--ref", m, "-f", f, "--svg", (tmp / "x.svg").string()}, 2, ""},
      {{"eval", "compare", "--ref", m, "-m", m, "-f", f}, 2, ""},
      {{"eval", "compare", "--ref", m, "-m", "/no/such/model", "-f", f, "--svg", (tmp / "x.svg").string()}, 1,
       "does not exist"},
      {{"eval", "compare", "--ref", m, "-m", other.string(), "-f", f, "--svg", (tmp / "x.svg").string()}, 1,
       "vocabulary"},
      {{"eval", "compare", "--ref", m, "-m", m, "-f", short_file.string(), "--ctx", "128", "--svg",
        (tmp / "x.svg").string()},
       1, "fewer than one window"},
      {{"eval", "compare", "--ref", m, "-m", m, "-f", f, "--svg", "/no/such/dir/x.svg"}, 1, "does not exist"},
      {{"eval", "compare", "--ref", m, "-m", m, "-f", f, "--svg", (tmp / "x.svg").string(), "--ctx", "1"}, 2, ""},
  };
  for (const Case& c : cases) {
    const test::CliResult r = test::run_cli(c.args);
    std::string cmd;
    for (const auto& a : c.args) cmd += a + " ";
    EXPECT_EQ(r.exit_code, c.exit) << cmd << "\n" << r.output;
    EXPECT_EQ(r.signal, 0) << cmd << "\n" << r.output;
    if (!c.says.empty()) {
      EXPECT_NE(r.output.find(c.says), std::string::npos) << cmd << "\n" << r.output;
    }
    if (c.exit == 1) {
      EXPECT_NE(r.output.find("moeq: error: "), std::string::npos) << cmd << "\n" << r.output;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(tmp / "x.svg"));
}

TEST(EvalCompare, WritesChartAndReport) {
  test::TempDir tmp;
  // A model name full of XML's special characters: the chart must escape it.
  const std::string odd = "mild&<\"x'>";
  make_perturbed(tmp / odd, 1.25f);
  const auto ref = test::tiny_model_dir().string();
  const auto svg = tmp / "chart.svg", json = tmp / "report.json";
  const std::vector<std::string> args = {"eval", "compare", "--ref", ref, "-m", ref, "-m", (tmp / odd).string(),
                                         "-f", docs_file(), "--ctx", std::to_string(kCtx), "--chunks", "2",
                                         "--svg", svg.string(), "--json", json.string()};
  const test::CliResult r = test::run_cli(args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::printf("%s", r.output.c_str());

  // The SVG parses as XML, carries one point label per model and the provenance line.
  const int st = std::system(("python3 -c \"import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])\" '" +
                              svg.string() + "'").c_str());
  EXPECT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0) << "not well-formed XML: " << svg;
  const std::string doc = io::read_text_file(svg);
  EXPECT_NE(doc.find(">tiny-m2</text>"), std::string::npos);  // PPL panel (KLD 0: not on the log axis)
  EXPECT_NE(doc.find(">mild&amp;&lt;&quot;x&apos;&gt;</text>"), std::string::npos);
  EXPECT_EQ(doc.find(odd), std::string::npos);
  EXPECT_NE(doc.find("moeq eval compare, " + docs_file() + ", 2 windows of 128"), std::string::npos);

  // The report: one entry per model, exact bpw of the original from its headers.
  const nlohmann::json j = io::read_json_file(json);
  ASSERT_EQ(j["models"].size(), 2u);
  const auto& orig = j["models"][0];
  const auto& pert = j["models"][1];
  EXPECT_EQ(orig["label"], "tiny-m2");
  EXPECT_EQ(pert["label"], odd);
  EXPECT_EQ(orig["kld_mean"].get<double>(), 0.0);
  EXPECT_EQ(orig["top1"].get<double>(), 1.0);
  EXPECT_GT(pert["kld_mean"].get<double>(), 0.0);
  EXPECT_EQ(orig["ppl"].get<double>(), j["ref_ppl"].get<double>());
  EXPECT_EQ(j["reference"]["ppl"].get<double>(), j["ref_ppl"].get<double>());
  // By hand: bytes of all linear tensors (".weight" except norms, plus ".weight_scale_inv") over
  // the parameters of the ".weight" tensors, from the raw safetensors headers.
  size_t bytes = 0, all = 0;
  int64_t params = 0;
  for (const auto& e : std::filesystem::directory_iterator(test::tiny_model_dir())) {
    if (!e.path().filename().string().starts_with("model-")) continue;
    std::ifstream in(e.path(), std::ios::binary);
    uint64_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    std::string h(static_cast<size_t>(n), '\0');
    in.read(h.data(), std::streamsize(n));
    const nlohmann::json header = nlohmann::json::parse(h);
    for (const auto& [name, t] : header.items()) {
      if (name == "__metadata__") continue;
      const size_t nb = t["data_offsets"][1].get<size_t>() - t["data_offsets"][0].get<size_t>();
      all += nb;
      if (name.ends_with(".weight_scale_inv")) bytes += nb;
      if (name.ends_with(".weight") && name.find("norm.") == std::string::npos) {
        bytes += nb;
        int64_t p = 1;
        for (const auto& d : t["shape"]) p *= d.get<int64_t>();
        params += p;
      }
    }
  }
  const double bpw = 8.0 * double(bytes) / double(params);
  EXPECT_DOUBLE_EQ(orig["bpw"].get<double>(), bpw);
  EXPECT_DOUBLE_EQ(j["reference"]["bpw"].get<double>(), bpw);
  EXPECT_EQ(orig["size_bytes"].get<size_t>(), all);
  EXPECT_DOUBLE_EQ(pert["bpw"].get<double>(), bpw);  // scaled in place: same bytes
  for (const char* key : {"bpw", "size_bytes", "kld_mean", "kld_p99", "top1", "ppl"})
    EXPECT_TRUE(pert.contains(key)) << key;

  // Same inputs, same chart bytes.
  const std::string first = doc;
  const test::CliResult again = test::run_cli(args);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(io::read_text_file(svg), first);
}
