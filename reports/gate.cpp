#include "reports/gate.h"

#include "reports/aggregate.h"

#include <map>
#include <stdexcept>

namespace lcb::reports {
namespace {

std::optional<double> latency_ratio(const std::vector<Group>& groups, const Group& g, const std::string& dense) {
  const Group* d = find_group(groups, g.task, dense, g.length);
  if (!g.prefill_ms || !d || !d->prefill_ms || *d->prefill_ms <= 0) return std::nullopt;
  return *g.prefill_ms / *d->prefill_ms;
}

nlohmann::json opt(const std::optional<double>& x) { return x ? nlohmann::json(*x) : nlohmann::json(nullptr); }

std::optional<double> get_opt(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return j[key].get<double>();
}

std::string pct(double from, double to) { return format("%+.1f%%", (to / from - 1.0) * 100.0); }

}  // namespace

nlohmann::json make_baseline(const std::vector<store::CellRecord>& cells, const std::string& dense_name) {
  const std::string dense = baseline_spec(dense_name);
  const std::vector<Group> groups = aggregate(cells);
  nlohmann::json entries = nlohmann::json::array();
  for (const auto& g : groups) {
    nlohmann::json e = {{"task", g.task}, {"impl", g.impl}, {"length", g.length}, {"status", g.any_ok() ? "ok" : g.status_text()}};
    if (g.accuracy) e["accuracy"] = {{"mean", g.accuracy->mean}, {"lo", g.accuracy->lo}, {"hi", g.accuracy->hi}, {"n", g.accuracy->n}};
    e["latency_ratio"] = opt(latency_ratio(groups, g, dense));
    e["prefill_ms"] = opt(g.prefill_ms);
    e["kv_cache_bytes"] = opt(g.kv_cache_bytes);
    e["peak_mem_bytes"] = opt(g.peak_mem_bytes);
    e["mem_kind"] = g.mem_kind;
    entries.push_back(e);
  }
  std::string commit, device;
  for (const auto& c : cells) {
    commit = c.commit;
    device = c.device_name;
  }
  return {{"lcb_baseline", 1}, {"dense", dense}, {"commit", commit}, {"device", device}, {"entries", entries}};
}

void validate_baseline(const nlohmann::json& b, const std::string& source) {
  auto fail = [&](const std::string& what) { throw std::invalid_argument(source + ": " + what); };
  if (!b.is_object() || !b.contains("lcb_baseline")) fail("not an lcb baseline file (no 'lcb_baseline' field)");
  if (b["lcb_baseline"] != 1) fail("baseline format " + b["lcb_baseline"].dump() + " not supported (expected 1)");
  if (!b.contains("dense") || !b["dense"].is_string()) fail("field 'dense' must be a string");
  if (!b.contains("entries") || !b["entries"].is_array()) fail("field 'entries' must be a list");
  size_t i = 0;
  for (const auto& e : b["entries"]) {
    const std::string where = "entries[" + std::to_string(i++) + "]";
    for (const char* key : {"task", "impl", "status"}) {
      if (!e.contains(key) || !e[key].is_string()) fail(where + ": field '" + key + "' must be a string");
    }
    if (!e.contains("length") || !e["length"].is_number_integer()) fail(where + ": field 'length' must be an integer");
    for (const char* key : {"latency_ratio", "kv_cache_bytes", "peak_mem_bytes"}) {
      if (e.contains(key) && !e[key].is_null() && !e[key].is_number()) fail(where + ": field '" + key + "' must be a number or null");
    }
    if (e.contains("accuracy")) {
      for (const char* key : {"mean", "lo", "hi"}) {
        if (!e["accuracy"].contains(key) || !e["accuracy"][key].is_number()) fail(where + ": field 'accuracy." + key + "' must be a number");
      }
    }
  }
}

GateResult check_against(const nlohmann::json& baseline, const std::vector<store::CellRecord>& candidate,
                         const Tolerances& tol) {
  const std::string dense = baseline["dense"].get<std::string>();
  const nlohmann::json cand = make_baseline(candidate, dense);
  std::map<std::tuple<std::string, std::string, int64_t>, const nlohmann::json*> now;
  for (const auto& e : cand["entries"]) now[{e["task"], e["impl"], e["length"].get<int64_t>()}] = &e;

  GateResult r;
  for (const auto& b : baseline["entries"]) {
    const std::string task = b["task"], impl = b["impl"];
    const int64_t L = b["length"];
    auto add = [&](const std::string& what, const std::string& was, const std::string& is) {
      r.regressions.push_back({task, impl, L, what, was, is});
    };
    const auto it = now.find({task, impl, L});
    if (it == now.end()) {
      add("missing", b["status"], "no cell");
      continue;
    }
    ++r.compared;
    const nlohmann::json& c = *it->second;
    if (b["status"] == "ok" && c["status"] != "ok") {
      add("status", "ok", c["status"]);
      continue;
    }
    if (b.contains("accuracy") && c.contains("accuracy")) {
      const double bm = b["accuracy"]["mean"], blo = b["accuracy"]["lo"], cm = c["accuracy"]["mean"], chi = c["accuracy"]["hi"];
      if (bm - cm > tol.accuracy && chi < blo) {
        add("accuracy", format("%.3f", bm) + " [" + format("%.3f", blo) + ", …]",
            format("%.3f", cm) + " […, " + format("%.3f", chi) + "]");
      }
    }
    const auto blat = get_opt(b, "latency_ratio"), clat = get_opt(c, "latency_ratio");
    if (blat && clat && *clat > *blat * (1.0 + tol.latency)) {
      add("latency / dense", format("%.3f", *blat), format("%.3f", *clat) + " (" + pct(*blat, *clat) + ")");
    }
    const auto bkv = get_opt(b, "kv_cache_bytes"), ckv = get_opt(c, "kv_cache_bytes");
    if (bkv && ckv && *ckv > *bkv * (1.0 + tol.memory)) {
      add("KV-cache bytes", format("%.0f", *bkv), format("%.0f", *ckv) + " (" + pct(*bkv, *ckv) + ")");
    }
    const auto bmem = get_opt(b, "peak_mem_bytes"), cmem = get_opt(c, "peak_mem_bytes");
    if (b["mem_kind"] == "cuda_allocator_peak" && c["mem_kind"] == "cuda_allocator_peak" && bmem && cmem &&
        *cmem > *bmem * (1.0 + tol.memory)) {
      add("peak memory", format("%.0f", *bmem), format("%.0f", *cmem) + " (" + pct(*bmem, *cmem) + ")");
    }
  }
  return r;
}

Table regression_table(const GateResult& r) {
  Table t;
  t.header = {"task", "impl", "L", "regression", "baseline", "candidate"};
  for (const auto& g : r.regressions) t.rows.push_back({g.task, g.impl, std::to_string(g.length), g.what, g.baseline, g.candidate});
  return t;
}

}  // namespace lcb::reports
