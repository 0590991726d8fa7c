// The terminal summary of stored cells (`lcb show`, and the end of `lcb run`): one row per
// (task, impl, length), aggregated over depths and seeds.
#pragma once

#include "harness/store.h"

#include <string>
#include <vector>

namespace lcb::reports {

// Cells that are not ok are counted per status in the last column, never averaged in as zeros.
std::string summary_table(const std::vector<store::CellRecord>& cells);

}  // namespace lcb::reports
