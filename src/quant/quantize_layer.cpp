#include "quant/quantize_layer.h"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <set>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/awq.h"

namespace moeq {
namespace {

std::vector<float> divided_by_square(std::vector<float> v, const std::vector<float>& s) {
  for (size_t j = 0; j < v.size(); ++j) v[j] /= s[j] * s[j];
  return v;
}

}  // namespace

nlohmann::json emit_weight(const std::string& module, const QuantizedWeight& q, io::SafetensorsWriter& out) {
  for (const auto& [part, array] : q.parts) out.add(module + "." + part, array);
  return {{"format", q.format}, {"block", {q.block_rows, q.block_cols}}};
}

QuantizedWeight quantize_module(const std::string& format, const FloatLinear& w, const std::vector<float>& imp) {
  MOEQ_CHECK(imp.empty() || int64_t(imp.size()) == w.cols, "importance of {} channels for {} inputs", imp.size(), w.cols);
  return format_ops(format).quantize({w.w.data(), w.rows, w.cols, imp.empty() ? nullptr : imp.data()});
}

nlohmann::json quantize_layer(const ModelConfig& c, int l, const HostLayer& orig, const LayerCalibration& cal,
                              const std::map<std::string, ModuleAssignment>& assign, int awq_grid,
                              io::SafetensorsWriter& out) {
  const int E = c.num_experts;
  auto at = [&](const std::string& m) -> const ModuleAssignment& {
    auto it = assign.find(m);
    MOEQ_CHECK(it != assign.end(), "no format assigned to {}", m);
    return it->second;
  };
  const std::string q = attn_module(l, "q_proj"), k = attn_module(l, "k_proj"), v = attn_module(l, "v_proj"),
                    o = attn_module(l, "o_proj"), gate = router_module(l);
  FloatLayer f = FloatLayer::from(orig);
  nlohmann::json awq = nlohmann::json::object();
  std::set<std::string> changed;  // modules whose float weights differ from the original

  // AWQ, producer by producer (a mapping applies when any linear it feeds asks for AWQ; all of
  // them then see the scaled input).
  std::vector<float> s_qkv(size_t(c.hidden_size), 1.0f), s_w13(size_t(c.hidden_size), 1.0f);
  std::vector<std::vector<float>> s_w2(size_t(E), std::vector<float>(size_t(c.intermediate_size), 1.0f));
  if (at(q).awq || at(k).awq || at(v).awq) {
    std::vector<AwqLinear> g;
    for (const auto* m : {&q, &k, &v})
      g.push_back({m == &q ? &f.q : m == &k ? &f.k : &f.v, &cal.qkv_sample, &format_ops(at(*m).format)});
    const AwqResult r = awq_search(g, cal.qkv_in.mean_abs(), cal.qkv_in.mean_sq(), awq_grid);
    awq["qkv"] = {{"alpha", r.alpha}, {"error", r.error}, {"error_unscaled", r.error_unscaled}};
    s_qkv = r.scales;
    fold_qkv(f, s_qkv);
    changed.insert({q, k, v});
  }
  bool w13_awq = false;
  for (int e = 0; e < E && !w13_awq; ++e)
    w13_awq = at(expert_module(l, e, "w1")).awq || at(expert_module(l, e, "w3")).awq;
  if (w13_awq) {
    std::vector<AwqLinear> g;
    for (int e = 0; e < E; ++e) {
      g.push_back({&f.w1[size_t(e)], &cal.w13_sample[size_t(e)], &format_ops(at(expert_module(l, e, "w1")).format)});
      g.push_back({&f.w3[size_t(e)], &cal.w13_sample[size_t(e)], &format_ops(at(expert_module(l, e, "w3")).format)});
    }
    const AwqResult r = awq_search(g, cal.moe_in.mean_abs(), cal.moe_in.mean_sq(), awq_grid);
    awq["w13"] = {{"alpha", r.alpha}, {"error", r.error}, {"error_unscaled", r.error_unscaled}};
    s_w13 = r.scales;
    fold_w13(f, s_w13);
    changed.insert(gate);
    for (int e = 0; e < E; ++e) changed.insert({expert_module(l, e, "w1"), expert_module(l, e, "w3")});
  }
  // Down projections: one scale per expert, folded into that expert's w3 rows.
  std::vector<double> alphas(size_t(E), -2.0);
  parallel_for(E, 1, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) {
      const std::string w2 = expert_module(l, int(e), "w2");
      if (!at(w2).awq) continue;
      const ChannelStats& st = cal.w2_in[size_t(e)];
      const AwqResult r = awq_search({{&f.w2[size_t(e)], &cal.w2_sample[size_t(e)], &format_ops(at(w2).format)}},
                                     st.mean_abs(), st.mean_sq(), awq_grid);
      alphas[size_t(e)] = r.alpha;
      s_w2[size_t(e)] = r.scales;
      fold_w2(f, int(e), r.scales);
    }
  });
  if (std::any_of(alphas.begin(), alphas.end(), [](double a) { return a > -2.0; })) {
    awq["w2_alpha"] = alphas;
    for (int e = 0; e < E; ++e)
      if (alphas[size_t(e)] > -2.0) changed.insert({expert_module(l, e, "w2"), expert_module(l, e, "w3")});
  }

  // Every linear with its float weight, original, and input importance (imatrix over the scaled input).
  struct Job {
    std::string name;
    const FloatLinear* w;
    const QuantizedWeight* orig;
    std::vector<float> importance;
  };
  std::vector<Job> jobs;
  auto imp = [](const ChannelStats& st, const std::vector<float>& s) {
    return st.count ? divided_by_square(st.mean_sq(), s) : std::vector<float>{};
  };
  jobs.push_back({q, &f.q, &orig.q, imp(cal.qkv_in, s_qkv)});
  jobs.push_back({k, &f.k, &orig.k, imp(cal.qkv_in, s_qkv)});
  jobs.push_back({v, &f.v, &orig.v, imp(cal.qkv_in, s_qkv)});
  jobs.push_back({o, &f.o, &orig.o, imp(cal.o_in, std::vector<float>(size_t(c.q_dim()), 1.0f))});
  jobs.push_back({gate, &f.gate, &orig.gate, imp(cal.moe_in, s_w13)});
  for (int e = 0; e < E; ++e) {
    // An expert the router never chose has no statistics of its own: use the layer's MoE input.
    const ChannelStats& in = cal.w13_in[size_t(e)].count ? cal.w13_in[size_t(e)] : cal.moe_in;
    jobs.push_back({expert_module(l, e, "w1"), &f.w1[size_t(e)], &orig.w1[size_t(e)], imp(in, s_w13)});
    jobs.push_back({expert_module(l, e, "w2"), &f.w2[size_t(e)], &orig.w2[size_t(e)], imp(cal.w2_in[size_t(e)], s_w2[size_t(e)])});
    jobs.push_back({expert_module(l, e, "w3"), &f.w3[size_t(e)], &orig.w3[size_t(e)], imp(in, s_w13)});
  }
  std::vector<QuantizedWeight> done(jobs.size());
  parallel_for(int64_t(jobs.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const Job& j = jobs[size_t(i)];
      const std::string& fmt = at(j.name).format;
      // The original bytes pass through when nothing changed them and the format is theirs.
      if (fmt == j.orig->format && !changed.count(j.name)) done[size_t(i)] = *j.orig;
      else done[size_t(i)] = quantize_module(fmt, *j.w, at(j.name).rtn ? std::vector<float>{} : j.importance);
    }
  });
  nlohmann::json modules = nlohmann::json::object();
  for (size_t i = 0; i < jobs.size(); ++i) modules[jobs[i].name] = emit_weight(jobs[i].name, done[i], out);

  const std::string p = layer_prefix(l);
  out.add(p + "input_layernorm.weight", to_host_array(f.input_norm));
  out.add(p + "post_attention_layernorm.weight", to_host_array(f.post_norm));
  if (c.use_qk_norm) {
    out.add(p + "self_attn.q_norm.weight", to_host_array(f.q_norm));
    out.add(p + "self_attn.k_norm.weight", to_host_array(f.k_norm));
  }
  if (c.use_routing_bias) out.add(p + "block_sparse_moe.e_score_correction_bias", to_host_array(f.router_bias));
  // Tokens behind each expert's statistics (all of them with --calib-all-experts).
  int64_t stats_min = INT64_MAX;
  for (const auto& st : cal.w2_in) stats_min = std::min(stats_min, st.count);
  return {{"modules", modules}, {"awq", awq}, {"routed", cal.routed}, {"stats_tokens_min", stats_min}};
}

}  // namespace moeq
