// `lcb report`: report.md, a self-contained report.html (Chart.js inlined, no network) and
// report.json from the cells of a results database.
#pragma once

#include "harness/store.h"
#include "reports/aggregate.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace lcb::reports {

// Cell selection from "key=value" terms (all must hold): impl (family or full spec), task (family
// or full spec), length, run, device, status. Throws std::invalid_argument on unknown keys.
class CellFilter {
 public:
  static CellFilter parse(const std::vector<std::string>& terms);
  bool matches(const store::CellRecord& c) const;
  std::vector<store::CellRecord> apply(std::vector<store::CellRecord> cells) const;

 private:
  std::vector<std::pair<std::string, std::string>> terms_;
};

struct ReportContent {
  std::string markdown, html;
  nlohmann::json data;  // what report.json holds and the HTML charts draw
};

constexpr const char* kDebianChartJs = "/usr/share/javascript/chart.js/chart.min.js";

// Builds the report; `chartjs` is the Chart.js source inlined into the HTML.
ReportContent build_report(const std::vector<store::RunInfo>& runs, const std::vector<store::CellRecord>& cells,
                           const std::string& baseline, const std::string& chartjs);

// Reads Chart.js from `path`; throws std::runtime_error saying how to install it when missing.
std::string read_chartjs(const std::string& path);

// Writes report.md, report.html and report.json into out_dir (created if missing); returns the
// path of report.html.
std::string write_report(const ReportContent& report, const std::string& out_dir);

}  // namespace lcb::reports
