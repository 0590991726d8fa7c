#include "reports/leaderboard.h"

#include <algorithm>
#include <cmath>

namespace lcb::reports {

std::vector<LeaderboardRow> leaderboard(const std::vector<store::CellRecord>& cells, const std::string& baseline_name) {
  const std::string baseline = baseline_spec(baseline_name);
  const std::vector<Group> groups = aggregate(cells);
  std::vector<std::string> impls;
  for (const auto& g : groups) {
    if (std::find(impls.begin(), impls.end(), g.impl) == impls.end()) impls.push_back(g.impl);
  }
  std::vector<LeaderboardRow> rows;
  for (const auto& impl : impls) {
    LeaderboardRow row;
    row.impl = impl;
    std::vector<double> items, retained, log_speed, log_decode, mem, kv;
    double flops = 0, base_flops = 0;
    for (const auto& g : groups) {
      if (g.impl != impl || !g.any_ok()) continue;
      const Group* b = find_group(groups, g.task, baseline, g.length);
      if (!b || !b->any_ok() || !g.accuracy || !b->accuracy) continue;
      ++row.pairs;
      items.insert(items.end(), g.items.begin(), g.items.end());
      if (b->accuracy->mean > 0) retained.push_back(g.accuracy->mean / b->accuracy->mean);
      if (g.prefill_ms && b->prefill_ms && *g.prefill_ms > 0) log_speed.push_back(std::log(*b->prefill_ms / *g.prefill_ms));
      if (g.decode_ms && b->decode_ms && *g.decode_ms > 0) log_decode.push_back(std::log(*b->decode_ms / *g.decode_ms));
      if (g.flops && b->flops) {
        flops += *g.flops;
        base_flops += *b->flops;
      }
      if (g.peak_mem_bytes && b->peak_mem_bytes && *b->peak_mem_bytes > 0) mem.push_back(*g.peak_mem_bytes / *b->peak_mem_bytes);
      if (g.kv_cache_bytes && b->kv_cache_bytes && *b->kv_cache_bytes > 0) kv.push_back(*g.kv_cache_bytes / *b->kv_cache_bytes);
    }
    auto mean = [](const std::vector<double>& v) -> std::optional<double> {
      if (v.empty()) return std::nullopt;
      double s = 0;
      for (double x : v) s += x;
      return s / static_cast<double>(v.size());
    };
    auto geo = [&](const std::vector<double>& logs) -> std::optional<double> {
      const auto m = mean(logs);
      return m ? std::optional<double>(std::exp(*m)) : std::nullopt;
    };
    if (!items.empty()) row.accuracy = bootstrap_mean(items);
    row.retained = mean(retained);
    row.speedup = geo(log_speed);
    row.decode_speedup = geo(log_decode);
    if (base_flops > 0) row.flops_fraction = flops / base_flops;
    row.memory_ratio = mean(mem);
    row.kv_ratio = mean(kv);
    if (row.retained && row.speedup) {
      row.score = std::pow(*row.retained, 3) * std::sqrt(*row.speedup);
    } else {
      row.note = row.pairs == 0 ? "no (task, length) with ok cells of both it and " + baseline : "no timing";
    }
    rows.push_back(row);
  }
  std::stable_sort(rows.begin(), rows.end(), [](const LeaderboardRow& a, const LeaderboardRow& b) {
    if (a.score.has_value() != b.score.has_value()) return a.score.has_value();
    return a.score && b.score && *a.score > *b.score;
  });
  return rows;
}

Table leaderboard_table(const std::vector<LeaderboardRow>& rows) {
  Table t;
  t.header = {"rank", "impl", "score", "acc retained", "accuracy [95%]", "n", "prefill ×", "decode ×", "FLOPs frac",
              "peak mem ×", "KV ×", "pairs"};
  int rank = 0;
  auto f = [](const std::optional<double>& x, const char* fmt) { return x ? format(fmt, *x) : std::string("-"); };
  for (const auto& r : rows) {
    t.rows.push_back({r.score ? std::to_string(++rank) : "-", r.impl, r.score ? format("%.3f", *r.score) : r.note,
                      f(r.retained, "%.3f"),
                      r.accuracy ? format("%.3f", r.accuracy->mean) + " [" + format("%.3f", r.accuracy->lo) + ", " +
                                       format("%.3f", r.accuracy->hi) + "]"
                                 : "-",
                      r.accuracy ? std::to_string(r.accuracy->n) : "0", f(r.speedup, "%.2f"), f(r.decode_speedup, "%.2f"),
                      f(r.flops_fraction, "%.3f"), f(r.memory_ratio, "%.2f"), f(r.kv_ratio, "%.3f"),
                      std::to_string(r.pairs)});
  }
  return t;
}

std::string leaderboard_html(const std::vector<LeaderboardRow>& rows, const std::string& title) {
  return "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + html_escape(title) +
         "</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:nth-child(2){text-align:left}</style>\n"
         "</head><body>\n<h1>" + html_escape(title) + "</h1>\n" +
         "<p>Score = (accuracy retained vs the baseline)³ × √(prefill speed-up). Accuracy intervals: bootstrap 95% over pooled items.</p>\n" +
         leaderboard_table(rows).html() + "</body></html>\n";
}

}  // namespace lcb::reports
