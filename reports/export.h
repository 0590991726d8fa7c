// `lcb export`: the cell table as CSV (RFC 4180 quoting) or JSON (one object per cell).
#pragma once

#include "harness/store.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace lcb::reports {

nlohmann::json cells_json(const std::vector<store::CellRecord>& cells);
std::string cells_csv(const std::vector<store::CellRecord>& cells);

}  // namespace lcb::reports
