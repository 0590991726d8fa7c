#include "reports/aggregate.h"

#include "attention_impls/registry.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <random>

namespace lcb::reports {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

std::optional<double> mean_if_any(const std::vector<double>& v) {
  return v.empty() ? std::nullopt : std::optional<double>(mean(v));
}

}  // namespace

std::string Group::status_text() const {
  if (status_count.size() == 1) return status_count.begin()->first;
  std::string s;
  for (const auto& [status, n] : status_count) s += (s.empty() ? "" : ", ") + std::to_string(n) + " " + status;
  return s;
}

Interval bootstrap_mean(const std::vector<double>& items) {
  Interval iv;
  iv.n = static_cast<int64_t>(items.size());
  if (items.empty()) return iv;
  iv.mean = mean(items);
  std::mt19937_64 rng(20250101);
  std::uniform_int_distribution<size_t> pick(0, items.size() - 1);
  std::vector<double> means(1000);
  for (auto& m : means) {
    double s = 0;
    for (size_t i = 0; i < items.size(); ++i) s += items[pick(rng)];
    m = s / static_cast<double>(items.size());
  }
  std::sort(means.begin(), means.end());
  iv.lo = means[25];   // 2.5th percentile of 1000
  iv.hi = means[974];  // 97.5th
  return iv;
}

bool overlaps(const Interval& a, const Interval& b) {
  return a.lo <= b.hi && b.lo <= a.hi;
}

std::vector<double> item_scores(const store::CellRecord& c) {
  const auto extra = nlohmann::json::parse(c.extra_json.empty() ? "{}" : c.extra_json, nullptr, false);
  if (extra.is_object() && extra.contains("item_scores") && extra["item_scores"].is_array() &&
      !extra["item_scores"].empty()) {
    return extra["item_scores"].get<std::vector<double>>();
  }
  return c.accuracy ? std::vector<double>{*c.accuracy} : std::vector<double>{};
}

std::vector<Group> aggregate(const std::vector<store::CellRecord>& cells) {
  std::vector<std::string> impl_order;
  std::map<GroupKey, std::vector<const store::CellRecord*>> by_key;
  for (const auto& c : cells) {
    if (std::find(impl_order.begin(), impl_order.end(), c.impl) == impl_order.end()) impl_order.push_back(c.impl);
    by_key[{c.task, c.impl, c.length}].push_back(&c);
  }
  std::vector<GroupKey> keys;
  for (const auto& [k, v] : by_key) keys.push_back(k);
  auto impl_pos = [&](const std::string& i) { return std::find(impl_order.begin(), impl_order.end(), i) - impl_order.begin(); };
  std::stable_sort(keys.begin(), keys.end(), [&](const GroupKey& a, const GroupKey& b) {
    return std::make_tuple(std::get<0>(a), impl_pos(std::get<1>(a)), std::get<2>(a)) <
           std::make_tuple(std::get<0>(b), impl_pos(std::get<1>(b)), std::get<2>(b));
  });

  std::vector<Group> out;
  for (const auto& key : keys) {
    Group g;
    std::tie(g.task, g.impl, g.length) = key;
    std::vector<double> recall, err, req, ach, flops, ms, ms_lo, ms_hi, dec, mem, kv;
    for (const auto* c : by_key[key]) {
      ++g.cells;
      ++g.status_count[c->status];
      if (c->status != "ok") {
        if (g.first_problem.empty()) g.first_problem = c->message;
        continue;
      }
      const auto it = item_scores(*c);
      g.items.insert(g.items.end(), it.begin(), it.end());
      if (c->mass_recall) recall.push_back(*c->mass_recall);
      if (c->rel_l2_error) err.push_back(*c->rel_l2_error);
      if (c->requested_density) req.push_back(*c->requested_density);
      if (c->achieved_density) ach.push_back(*c->achieved_density);
      if (c->attention_flops) flops.push_back(*c->attention_flops + c->selection_flops.value_or(0));
      if (c->latency_ms_median) ms.push_back(*c->latency_ms_median);
      if (c->latency_ms_min) ms_lo.push_back(*c->latency_ms_min);
      if (c->latency_ms_max) ms_hi.push_back(*c->latency_ms_max);
      if (c->decode_ms_median) dec.push_back(*c->decode_ms_median);
      if (c->peak_mem_bytes) mem.push_back(static_cast<double>(*c->peak_mem_bytes));
      if (c->kv_cache_bytes) kv.push_back(static_cast<double>(*c->kv_cache_bytes));
      g.mem_kind = c->mem_kind;
    }
    if (!g.items.empty()) g.accuracy = bootstrap_mean(g.items);
    g.mass_recall = mean_if_any(recall);
    g.rel_l2_error = mean_if_any(err);
    g.requested_density = mean_if_any(req);
    g.achieved_density = mean_if_any(ach);
    g.flops = mean_if_any(flops);
    if (!ms.empty()) g.prefill_ms = median(ms);
    if (!ms_lo.empty()) g.prefill_ms_lo = *std::min_element(ms_lo.begin(), ms_lo.end());
    if (!ms_hi.empty()) g.prefill_ms_hi = *std::max_element(ms_hi.begin(), ms_hi.end());
    if (!dec.empty()) g.decode_ms = median(dec);
    if (!mem.empty()) g.peak_mem_bytes = *std::max_element(mem.begin(), mem.end());
    g.kv_cache_bytes = mean_if_any(kv);
    out.push_back(std::move(g));
  }
  return out;
}

const Group* find_group(const std::vector<Group>& groups, const std::string& task, const std::string& impl,
                        int64_t length) {
  for (const auto& g : groups) {
    if (g.task == task && g.impl == impl && g.length == length) return &g;
  }
  return nullptr;
}

std::string baseline_spec(const std::string& name) {
  return attn::canonical_spec(name);
}

}  // namespace lcb::reports
