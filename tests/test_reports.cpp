// Reports, leaderboard, the regression gate and export, on hand-made cells (no timing noise):
// golden Markdown and JSON, the gate's decisions, and the HTML rendered in headless Chromium.
#include "reports/export.h"
#include "reports/gate.h"
#include "reports/leaderboard.h"
#include "reports/report.h"
#include "tests/temp_dir.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>

namespace lcb::reports {
namespace {

const std::string kTask = "needle_qkv:heads=8";
const std::string kDga = "dga:m=16,gamma=0.1,samples=64,sample=last";
const std::string kSwa = "swa:window=64,sink=0";

// A cell with `hits` of 8 items right, latency `ms` (spread ±5%), on run 1.
store::CellRecord cell(const std::string& impl, int64_t L, double depth, int hits, double ms, double kv_mb = 1) {
  store::CellRecord c;
  c.cell_key = impl + "|" + std::to_string(L) + "|" + std::to_string(depth);
  c.run_id = 1;
  c.impl = impl;
  c.task = kTask;
  c.length = L;
  c.depth = depth;
  c.status = "ok";
  c.accuracy = hits / 8.0;
  nlohmann::json items = nlohmann::json::array();
  for (int i = 0; i < 8; ++i) items.push_back(i < hits ? 1.0 : 0.0);
  c.extra_json = nlohmann::json{{"item_scores", items}}.dump();
  c.n_scored = 8;
  const double density = impl == "dense" ? 1.0 : 0.25;
  c.attention_flops = 1e9 * density * static_cast<double>(L) / 1024;
  c.selection_flops = impl == "dense" ? 0 : 1e7;
  c.requested_density = density;
  c.achieved_density = density;
  c.rel_l2_error = impl == "dense" ? 0.0 : 0.5;
  c.mass_recall = impl == "dense" ? 1.0 : 0.75;
  c.latency_ms_median = ms;
  c.latency_ms_min = ms * 0.95;
  c.latency_ms_max = ms * 1.05;
  c.decode_ms_median = ms / 100;
  c.peak_mem_bytes = int64_t{256} << 20;
  c.kv_cache_bytes = static_cast<int64_t>(kv_mb * (1 << 20));
  c.mem_kind = "cuda_allocator_peak";
  c.device_name = "NVIDIA H200";
  return c;
}

std::vector<store::CellRecord> fixture() {
  std::vector<store::CellRecord> cells;
  for (int64_t L : {1024, 4096})
    for (double d : {0.25, 0.75}) {
      const double scale = static_cast<double>(L) / 1024;
      cells.push_back(cell("dense", L, d, 8, 1.0 * scale * scale, 2 * scale));
      cells.push_back(cell(kDga, L, d, 8, 0.5 * scale, 0.4 * scale));
      cells.push_back(cell(kSwa, L, d, d < 0.5 ? 1 : 8, 0.3 * scale, 0.125));
    }
  store::CellRecord oom = cell("topk:k=8", 4096, 0.25, 0, 0);
  oom.status = "oom";
  oom.message = "CUDA out of memory. Tried to allocate 2.00 GiB";
  oom.accuracy.reset();
  store::CellRecord uns = cell("topk:k=8", 4096, 0.75, 0, 0);
  uns.status = "unsupported";
  uns.message = "head dim 96 not supported";
  uns.accuracy.reset();
  cells.push_back(oom);
  cells.push_back(uns);
  return cells;
}

std::vector<store::RunInfo> runs() {
  store::RunInfo r;
  r.run_id = 1;
  r.started_at = "2026-11-28T10:00:00Z";
  r.commit = "0123456789ab";
  r.device_name = "NVIDIA H200";
  r.torch_version = "2.11.0";
  r.lcb_version = "0.1.0";
  r.build_type = "Release";
  r.command = "lcb run --config c.json";
  r.config_json = R"({"impls":["dense"]})";
  return {r};
}

std::string golden_path(const std::string& name) { return std::string(LCB_TEST_DIR) + "/golden/" + name; }

void expect_golden(const std::string& name, const std::string& got) {
  if (std::getenv("LCB_UPDATE_GOLDEN")) std::ofstream(golden_path(name)) << got;
  std::ifstream in(golden_path(name));
  ASSERT_TRUE(in) << "missing golden file " << golden_path(name);
  std::stringstream want;
  want << in.rdbuf();
  EXPECT_EQ(got, want.str()) << "differs from " << golden_path(name) << " (LCB_UPDATE_GOLDEN=1 rewrites it)";
}

TEST(Report, MarkdownAndJsonMatchGoldenFiles) {
  const ReportContent r = build_report(runs(), fixture(), "dense", "/* chart.js */");
  expect_golden("report.md", r.markdown);
  expect_golden("report.json", r.data.dump(2) + "\n");
}

TEST(Report, FailedCellsShowTheirStatusNotZeros) {
  const ReportContent r = build_report(runs(), fixture(), "dense", "");
  EXPECT_NE(r.markdown.find("| topk:k=8 | not run | 1 oom, 1 unsupported |"), std::string::npos) << r.markdown;
  EXPECT_NE(r.markdown.find("CUDA out of memory"), std::string::npos);
}

TEST(Report, MarksDifferencesWithinNoise) {
  const ReportContent r = build_report(runs(), fixture(), "dense", "");
  // dga is 8/8 like dense: within noise; swa at depth 0.25 is 1/8: a real drop.
  for (const auto& g : r.data["tasks"][0]["groups"]) {
    if (g["impl"] == kDga) {
      EXPECT_TRUE(g["accuracy_within_noise"].get<bool>());
    }
    if (g["impl"] == kSwa) {
      EXPECT_FALSE(g["accuracy_within_noise"].get<bool>());
    }
  }
}

TEST(Leaderboard, RanksByDocumentedScore) {
  const auto rows = leaderboard(fixture(), "dense");
  ASSERT_EQ(rows.size(), 4u);
  // dga keeps all accuracy at 2× (1K) and 8× (4K): score = 1 × √4 = 2.
  EXPECT_EQ(rows[0].impl, kDga);
  EXPECT_NEAR(*rows[0].score, 2.0, 1e-9);
  EXPECT_NEAR(*rows[0].speedup, 4.0, 1e-9);
  EXPECT_EQ(rows[1].impl, "dense");
  EXPECT_EQ(rows[2].impl, kSwa);
  EXPECT_NEAR(*rows[2].retained, 9.0 / 16.0, 1e-9);
  EXPECT_FALSE(rows[3].score.has_value());
  expect_golden("leaderboard.md", leaderboard_table(rows).markdown());
}

GateResult gate(std::vector<store::CellRecord> candidate, Tolerances tol = {}) {
  const nlohmann::json base = make_baseline(fixture(), "dense");
  validate_baseline(base, "baseline");
  return check_against(base, candidate, tol);
}

TEST(Gate, IdenticalCellsPass) {
  const GateResult r = gate(fixture());
  EXPECT_TRUE(r.passed()) << regression_table(r).text();
  EXPECT_EQ(r.compared, 7);  // 3 impls x 2 lengths + topk at 4096
}

TEST(Gate, NoiseDoesNotFail) {
  auto cells = fixture();
  for (auto& c : cells) {
    if (c.impl == kSwa && c.length == 4096 && c.depth > 0.5) {  // 8/8 -> 7/8: inside the interval
      c.accuracy = 7.0 / 8;
      c.extra_json = R"({"item_scores":[1,1,1,1,1,1,1,0]})";
    }
    if (c.impl == kDga && c.latency_ms_median) *c.latency_ms_median *= 1.1;  // within the 25% tolerance
  }
  const GateResult r = gate(cells);
  EXPECT_TRUE(r.passed()) << regression_table(r).text();
}

TEST(Gate, PlantedRegressionsFailWithReadableRows) {
  auto cells = fixture();
  for (auto& c : cells) {
    if (c.impl == kDga && c.length == 1024) {  // accuracy collapses
      c.accuracy = 0;
      c.extra_json = R"({"item_scores":[0,0,0,0,0,0,0,0]})";
    }
    if (c.impl == kSwa && c.length == 4096) *c.latency_ms_median *= 2;  // twice as slow vs dense
    if (c.impl == kDga && c.length == 4096) *c.kv_cache_bytes *= 2;     // cache grows
    if (c.impl == "dense" && c.length == 1024 && c.depth < 0.5) {       // a passing cell now errors
      c.status = "error";
      c.message = "boom";
    }
  }
  cells.erase(std::remove_if(cells.begin(), cells.end(), [](const auto& c) { return c.impl == kSwa && c.length == 1024; }),
              cells.end());
  const GateResult r = gate(cells);
  ASSERT_FALSE(r.passed());
  const std::string table = regression_table(r).text();
  std::map<std::string, int> kinds;
  for (const auto& g : r.regressions) ++kinds[g.impl + " " + std::to_string(g.length) + " " + g.what];
  EXPECT_EQ(kinds[kDga + " 1024 accuracy"], 1) << table;
  EXPECT_EQ(kinds[kSwa + " 4096 latency / dense"], 1) << table;
  EXPECT_EQ(kinds[kDga + " 4096 KV-cache bytes"], 1) << table;
  EXPECT_EQ(kinds[kSwa + " 1024 missing"], 1) << table;
  EXPECT_EQ(kinds["dense 1024 status"], 0) << "one error among ok cells keeps the group ok";
  EXPECT_NE(table.find(kSwa), std::string::npos);
  EXPECT_NE(table.find("+100.0%"), std::string::npos) << table;
}

TEST(Gate, AGroupThatNoLongerRunsFails) {
  auto cells = fixture();
  for (auto& c : cells) {
    if (c.impl == kDga && c.length == 4096) {
      c.status = "oom";
      c.message = "out of memory";
    }
  }
  const GateResult r = gate(cells);
  ASSERT_EQ(r.regressions.size(), 1u);
  EXPECT_EQ(r.regressions[0].what, "status");
  EXPECT_EQ(r.regressions[0].candidate, "oom");
}

TEST(Gate, MalformedBaselineNamesTheField) {
  nlohmann::json b = make_baseline(fixture(), "dense");
  b["entries"][2].erase("length");
  try {
    validate_baseline(b, "baseline b.json");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("baseline b.json: entries[2]: field 'length' must be an integer"), std::string::npos)
        << e.what();
  }
}

TEST(Export, CsvQuotesAndJsonKeepsEveryField) {
  auto cells = fixture();
  const std::string csv = cells_csv(cells);
  EXPECT_EQ(csv.substr(0, csv.find('\n')).rfind("cell_key,run_id,impl,impl_family,task,", 0), 0u);
  EXPECT_NE(csv.find("\"dga:m=16,gamma=0.1,samples=64,sample=last\""), std::string::npos);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), static_cast<long>(cells.size()) + 1);
  const nlohmann::json j = cells_json(cells);
  ASSERT_EQ(j.size(), cells.size());
  EXPECT_EQ(j[0]["impl"], "dense");
  EXPECT_TRUE(j[0]["kv_cache_bytes"].is_number());
  EXPECT_TRUE(j.back()["accuracy"].is_null());
}

TEST(Filter, SelectsAndRejectsUnknownKeys) {
  const auto cells = fixture();
  EXPECT_EQ(CellFilter::parse({"impl=dga"}).apply(cells).size(), 4u);
  EXPECT_EQ(CellFilter::parse({"impl=dga", "length=1024"}).apply(cells).size(), 2u);
  EXPECT_EQ(CellFilter::parse({"status=oom"}).apply(cells).size(), 1u);
  EXPECT_THROW(CellFilter::parse({"colour=red"}), std::invalid_argument);
}

// The HTML page in a real browser: every chart draws pixels and no script error occurs.
TEST(ReportHtml, RendersInHeadlessChromium) {
  const char* env = std::getenv("LCB_CHROMIUM");
  const std::string chromium = env ? env : "chromium";
  ASSERT_EQ(std::system(("command -v " + chromium + " >/dev/null").c_str()), 0)
      << "headless Chromium is needed (Debian package chromium; tools/setup installs it)";
  test::TempDir dir;
  const ReportContent r = build_report(runs(), fixture(), "dense", read_chartjs(kDebianChartJs));
  const std::string html = write_report(r, dir.file("report"));
  const std::string shot = std::string(LCB_BINARY_DIR) + "/report_screenshot.png";
  const std::string flags = " --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=5000 "
                            "--enable-logging=stderr --v=0 ";
  const std::string log = dir.file("chromium.log");
  const std::string dom_cmd = chromium + flags + "--dump-dom file://" + html + " 2>" + log;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(dom_cmd.c_str(), "r"), pclose);
  ASSERT_TRUE(pipe);
  std::string dom;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe.get())) dom.append(buf, n);
  pipe.reset();
  const size_t html_tag = dom.find("<html");
  ASSERT_NE(html_tag, std::string::npos) << dom.substr(0, 300);
  const std::string head = dom.substr(html_tag, dom.find('>', html_tag) - html_tag);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(head, m, std::regex(R"re(data-charts-total="(\d+)")re"))) << head;
  const int total = std::stoi(m[1]);
  ASSERT_TRUE(std::regex_search(head, m, std::regex(R"re(data-charts-rendered="(\d+)")re"))) << head;
  EXPECT_EQ(total, 8);
  EXPECT_EQ(std::stoi(m[1]), total) << "a chart drew nothing";
  EXPECT_EQ(head.find("data-errors"), std::string::npos) << "script errors in the page";
  std::ifstream logf(log);
  std::string line;
  while (std::getline(logf, line)) {
    EXPECT_TRUE(line.find("CONSOLE") == std::string::npos || line.find("Uncaught") == std::string::npos) << line;
  }
  ASSERT_EQ(std::system((chromium + flags + "--window-size=1280,1800 --screenshot=" + shot + " file://" + html +
                         " >/dev/null 2>&1").c_str()),
            0);
  std::ifstream png(shot, std::ios::binary);
  char sig[8] = {};
  png.read(sig, 8);
  EXPECT_EQ(std::string(sig + 1, 3), "PNG") << "no screenshot at " << shot;
}

}  // namespace
}  // namespace lcb::reports

namespace lcb::reports {
namespace {

store::CellRecord longbench_cell(const std::string& impl, const std::string& dataset, const std::vector<std::pair<double, int>>& s) {
  store::CellRecord c = cell(impl, 4096, 0, 8, 1.0);
  c.task = "longbench:file=/data/" + dataset + ".jsonl,config=/lb/config,truncation=middle,max_samples=0";
  nlohmann::json samples = nlohmann::json::array();
  for (const auto& [score, words] : s) samples.push_back({{"dataset", dataset}, {"score", score}, {"length", words}});
  c.extra_json = nlohmann::json{{"samples", samples}}.dump();
  return c;
}

TEST(Report, LongBenchTablesPerDatasetCategoryAndBucket) {
  std::vector<store::CellRecord> cells = {longbench_cell("dense", "hotpotqa", {{1.0, 100}, {0.0, 5000}, {0.5, 9000}}),
                                          longbench_cell("dense", "trec", {{1.0, 3000}, {1.0, 3000}})};
  store::CellRecord oom = longbench_cell(kDga, "hotpotqa", {});
  oom.status = "oom";
  cells.push_back(oom);
  const ReportContent r = build_report(runs(), cells, "dense", "");
  const std::string& md = r.markdown;
  EXPECT_NE(md.find("| impl @ L | hotpotqa | trec |\n|---|---|---|\n| dense @ 4096 | 50.00 | 100.00 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| " + kDga + " @ 4096 | oom |"), std::string::npos) << md;
  EXPECT_NE(md.find("| dense @ 4096 | - | 50.00 | - | 100.00 | - | - | 75.00 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| dense @ 4096 | hotpotqa | 100.00 | 0.00 | 50.00 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| dense @ 4096 | trec | 100.00 | - | - |"), std::string::npos) << md;
  EXPECT_EQ(r.data["longbench"]["dense @ 4096"]["categories"]["Few-shot"], 100.0);
}

}  // namespace
}  // namespace lcb::reports
