// `lcb leaderboard`: implementations ranked against a baseline over the selected tasks and lengths.
//
// For each implementation, over the (task, length) pairs where it and the baseline both have ok
// cells: accuracy retained = mean of (its accuracy / the baseline's), speed-up = geometric mean of
// the prefill speed-ups, FLOPs fraction = Σ its FLOPs / Σ the baseline's, memory = mean ratio of
// peak memory and of KV-cache bytes. Score = retained³ × √speed-up: accuracy dominates (losing 10%
// of it costs 27% of the score, which a 1.9× speed-up wins back), speed is rewarded with
// diminishing returns.
#pragma once

#include "harness/store.h"
#include "reports/aggregate.h"
#include "reports/table.h"

#include <optional>
#include <string>
#include <vector>

namespace lcb::reports {

struct LeaderboardRow {
  std::string impl;
  int64_t pairs = 0;  // (task, length) pairs compared
  std::optional<Interval> accuracy;  // pooled items, bootstrap 95%
  std::optional<double> retained, speedup, decode_speedup, flops_fraction, memory_ratio, kv_ratio, score;
  std::string note;  // why a row has no score
};

// Ranked by score (rows without one last, in first-seen order).
std::vector<LeaderboardRow> leaderboard(const std::vector<store::CellRecord>& cells, const std::string& baseline);

Table leaderboard_table(const std::vector<LeaderboardRow>& rows);
std::string leaderboard_html(const std::vector<LeaderboardRow>& rows, const std::string& title);

}  // namespace lcb::reports
