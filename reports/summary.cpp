#include "reports/summary.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <tuple>

namespace lcb::reports {
namespace {

struct Row {
  int64_t n = 0;
  std::map<std::string, int64_t> status_count;
  std::string first_problem;
  std::vector<double> acc, recall, err, req, ach, gflop, ms, mem;
};

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

std::string cell_or_dash(const std::vector<double>& v, const char* f, double scale = 1.0, bool use_median = false) {
  if (v.empty()) return "-";
  return fmt(f, (use_median ? median(v) : mean(v)) * scale);
}

}  // namespace

std::string summary_table(const std::vector<store::CellRecord>& cells) {
  using Key = std::tuple<std::string, std::string, int64_t>;  // task, impl, length
  std::map<Key, Row> rows;
  std::vector<std::string> impl_order;
  for (const auto& c : cells) {
    if (std::find(impl_order.begin(), impl_order.end(), c.impl) == impl_order.end()) impl_order.push_back(c.impl);
    Row& r = rows[{c.task, c.impl, c.length}];
    ++r.n;
    ++r.status_count[c.status];
    if (c.status != "ok") {
      if (r.first_problem.empty()) r.first_problem = c.message;
      continue;
    }
    if (c.accuracy) r.acc.push_back(*c.accuracy);
    if (c.mass_recall) r.recall.push_back(*c.mass_recall);
    if (c.rel_l2_error) r.err.push_back(*c.rel_l2_error);
    if (c.requested_density) r.req.push_back(*c.requested_density);
    if (c.achieved_density) r.ach.push_back(*c.achieved_density);
    if (c.attention_flops) r.gflop.push_back(*c.attention_flops + c.selection_flops.value_or(0));
    if (c.latency_ms_median) r.ms.push_back(*c.latency_ms_median);
    if (c.peak_mem_bytes) r.mem.push_back(static_cast<double>(*c.peak_mem_bytes));
  }
  std::string out;
  const char* head = "%-44s %7s %3s %6s %6s %8s %6s %6s %9s %9s %8s  %s\n";
  std::string current_task;
  // Sections per task; within a task, impls in first-seen order, then by length.
  std::vector<Key> keys;
  for (const auto& [k, r] : rows) keys.push_back(k);
  std::stable_sort(keys.begin(), keys.end(), [&](const Key& a, const Key& b) {
    auto pos = [&](const std::string& i) { return std::find(impl_order.begin(), impl_order.end(), i) - impl_order.begin(); };
    return std::make_tuple(std::get<0>(a), pos(std::get<1>(a)), std::get<2>(a)) <
           std::make_tuple(std::get<0>(b), pos(std::get<1>(b)), std::get<2>(b));
  });
  char line[512];
  for (const auto& k : keys) {
    const Row& r = rows.at(k);
    if (std::get<0>(k) != current_task) {
      current_task = std::get<0>(k);
      out += (out.empty() ? "" : "\n") + std::string("task ") + current_task + "\n";
      std::snprintf(line, sizeof line, head, "impl", "L", "n", "acc", "recall", "rel_err", "req", "dens", "GFLOP",
                    "ms", "peak_MB", "status");
      out += line;
    }
    std::string status;
    for (const auto& [s, n] : r.status_count) {
      if (s != "ok" || r.status_count.size() > 1) status += (status.empty() ? "" : ", ") + std::to_string(n) + " " + s;
    }
    if (status.empty()) status = "ok";
    if (!r.first_problem.empty()) {
      std::string why = r.first_problem.substr(0, 70);
      status += " (" + why + (r.first_problem.size() > 70 ? "..." : "") + ")";
    }
    std::snprintf(line, sizeof line, head, std::get<1>(k).c_str(), std::to_string(std::get<2>(k)).c_str(),
                  std::to_string(r.n).c_str(), cell_or_dash(r.acc, "%.3f").c_str(),
                  cell_or_dash(r.recall, "%.3f").c_str(), cell_or_dash(r.err, "%.2e").c_str(),
                  cell_or_dash(r.req, "%.3f").c_str(), cell_or_dash(r.ach, "%.3f").c_str(),
                  cell_or_dash(r.gflop, "%.3f", 1e-9).c_str(), cell_or_dash(r.ms, "%.3f", 1.0, true).c_str(),
                  cell_or_dash(r.mem, "%.1f", 1.0 / (1024.0 * 1024.0)).c_str(), status.c_str());
    out += line;
  }
  if (out.empty()) out = "no cells stored\n";
  return out;
}

}  // namespace lcb::reports
