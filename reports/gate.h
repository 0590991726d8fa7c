// `lcb check`: the CI regression gate. Compares candidate cells with a baseline (a file written by
// `lcb check --write-baseline`, or a stored run) per (task, impl, length) and lists regressions:
//   - a baseline cell with no candidate cell ("missing");
//   - a cell that was ok and now is not (oom, error, unsupported);
//   - accuracy falling by more than the tolerance and outside the noise (the candidate's 95%
//     interval lies entirely below the baseline's);
//   - latency growing by more than its tolerance, compared as the ratio to the dense baseline of
//     the same run so that machine speed cancels;
//   - memory growing: KV-cache bytes (exact) always, peak memory when it is a CUDA allocator peak
//     (a CPU process's peak RSS depends on everything that ran before).
#pragma once

#include "harness/store.h"
#include "reports/table.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace lcb::reports {

struct Tolerances {
  double accuracy = 0.02;  // absolute drop allowed beyond noise
  double latency = 0.25;   // relative growth of latency / dense latency
  double memory = 0.05;    // relative growth of memory
};

struct Regression {
  std::string task, impl;
  int64_t length = 0;
  std::string what, baseline, candidate;
};

struct GateResult {
  int64_t compared = 0;
  std::vector<Regression> regressions;
  bool passed() const { return regressions.empty(); }
};

// The baseline file's content from cells; `dense` names the implementation latencies are divided by.
nlohmann::json make_baseline(const std::vector<store::CellRecord>& cells, const std::string& dense);

// Validates a baseline file's JSON; throws std::invalid_argument naming `source` and the field.
void validate_baseline(const nlohmann::json& baseline, const std::string& source);

GateResult check_against(const nlohmann::json& baseline, const std::vector<store::CellRecord>& candidate,
                         const Tolerances& tol);

Table regression_table(const GateResult& r);

}  // namespace lcb::reports
