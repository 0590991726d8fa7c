// Aggregation of stored cells per (task, impl, length): means, bootstrap intervals, latency
// medians and spreads, memory, and ratios to a baseline implementation. Shared by the report, the
// leaderboard and the regression gate.
#pragma once

#include "harness/store.h"

#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace lcb::reports {

struct Interval {
  double mean = 0, lo = 0, hi = 0;
  int64_t n = 0;  // items behind it
};

struct Group {
  std::string task, impl;
  int64_t length = 0;
  int64_t cells = 0;
  std::map<std::string, int64_t> status_count;  // cells per status
  std::string first_problem;                    // message of the first cell that is not ok
  // Over ok cells only:
  std::vector<double> items;         // item scores of the ok cells, pooled over depths and seeds
  std::optional<Interval> accuracy;  // their mean, bootstrap 95%
  std::optional<double> mass_recall, rel_l2_error, requested_density, achieved_density;
  std::optional<double> flops;                  // attention + selection, mean per cell
  std::optional<double> prefill_ms, prefill_ms_lo, prefill_ms_hi;  // median; min and max over repeats
  std::optional<double> decode_ms;
  std::optional<double> peak_mem_bytes, kv_cache_bytes;
  std::string mem_kind;

  bool any_ok() const { return status_count.count("ok") > 0; }
  // "ok", or e.g. "oom" / "2 ok, 1 error" when not every cell is ok.
  std::string status_text() const;
};

using GroupKey = std::tuple<std::string, std::string, int64_t>;  // task, impl, length

// Groups in (task, impl first-seen order, length) order.
std::vector<Group> aggregate(const std::vector<store::CellRecord>& cells);

// Percentile bootstrap (1000 resamples, fixed seed) of the mean of `items`.
Interval bootstrap_mean(const std::vector<double>& items);

// Both intervals overlap: the difference is within noise.
bool overlaps(const Interval& a, const Interval& b);

// Item scores stored with a cell (extra_json "item_scores"), else its accuracy as one item.
std::vector<double> item_scores(const store::CellRecord& cell);

const Group* find_group(const std::vector<Group>& groups, const std::string& task, const std::string& impl,
                        int64_t length);

// Canonical spec of a baseline name given on the command line ("dense" -> "dense").
std::string baseline_spec(const std::string& name);

}  // namespace lcb::reports
