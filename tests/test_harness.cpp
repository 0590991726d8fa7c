// The run config, the needle task, the sweep runner and the summary table.
#include "harness/config.h"
#include "harness/provenance.h"
#include "harness/runner.h"
#include "reports/summary.h"
#include "tasks/task.h"
#include "attention_impls/registry.h"
#include "tests/temp_dir.h"
#include "tests/test_util.h"

#include <torch/cuda.h>

#include <fstream>
#include <sstream>

namespace lcb {
namespace {

std::string config_error(const nlohmann::json& j) {
  try {
    harness::parse_config(j, "config test.json");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

TEST(Config, ErrorsNameTheField) {
  const nlohmann::json ok = {{"impls", {"dense"}}, {"lengths", {64}}};
  EXPECT_EQ(config_error(ok), "no error");

  auto with = [&](const std::string& k, const nlohmann::json& v) {
    nlohmann::json j = ok;
    j[k] = v;
    return config_error(j);
  };
  const std::string unknown = with("lenghts", {3});
  EXPECT_NE(unknown.find("config test.json: unknown field 'lenghts'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("lengths"), std::string::npos) << unknown;
  EXPECT_NE(with("lengths", "64").find("field 'lengths' must be a list of integers"), std::string::npos);
  EXPECT_NE(with("lengths", {64.5}).find("field 'lengths'"), std::string::npos);
  EXPECT_NE(with("lengths", {0}).find("not a positive integer"), std::string::npos);
  EXPECT_NE(with("impls", {"dga:m=0"}).find("field 'impls': bad value '0' for parameter 'm'"), std::string::npos);
  EXPECT_NE(with("impls", {"bogus"}).find("known implementations: dense, swa"), std::string::npos);
  EXPECT_NE(with("tasks", {"nope"}).find("field 'tasks': unknown task 'nope'"), std::string::npos);
  EXPECT_NE(with("depths", {1.5}).find("outside [0, 1]"), std::string::npos);
  EXPECT_NE(with("device", "tpu").find("field 'device': 'tpu' not accepted (auto, cpu, cuda)"), std::string::npos);
  EXPECT_NE(with("dtype", "int8").find("field 'dtype'"), std::string::npos);
  EXPECT_NE(with("repeats", 0).find("field 'repeats'"), std::string::npos);
  EXPECT_NE(with("impls", nlohmann::json::array()).find("field 'impls' must list at least one"), std::string::npos);
  EXPECT_NE(config_error(nlohmann::json::array()).find("must be a JSON object"), std::string::npos);
}

TEST(Config, CanonicalisesAndRoundTrips) {
  const auto c = harness::parse_config({{"impls", {"dga:gamma=0.2", "swa:window=8"}}, {"lengths", {64, 128}}}, "t");
  EXPECT_EQ(c.impls[0], "dga:m=16,gamma=0.2,samples=64,sample=last");
  EXPECT_EQ(c.impls[1], "swa:window=8,sink=0");
  EXPECT_EQ(c.tasks[0], tasks::make_task("needle_qkv")->spec());
  const auto again = harness::parse_config(c.to_json(), "t");
  EXPECT_EQ(again.to_json(), c.to_json());
}

TEST(Config, MalformedJsonFileNamesTheFile) {
  test::TempDir dir;
  const std::string path = dir.file("bad.json");
  std::ofstream(path) << "{\"impls\": [\"dense\",]}";
  try {
    harness::load_config_file(path);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("config " + path + ": not valid JSON"), std::string::npos) << e.what();
  }
}

TEST(NeedleTask, DeterministicInTheSeed) {
  const auto task = tasks::make_task("needle_qkv:heads=4,kv_heads=2,head_dim=16");
  const auto a = task->make({256, 0.3, 7, 1}), b = task->make({256, 0.3, 7, 1}), c = task->make({256, 0.3, 8, 1});
  EXPECT_TRUE(a->q.equal(b->q) && a->k.equal(b->k) && a->v.equal(b->v));
  EXPECT_FALSE(a->k.equal(c->k));
}

TEST(NeedleTask, DenseRetrievesAndAShortWindowMissesAnEarlyNeedle) {
  const auto task = tasks::make_task("needle_qkv:heads=4,kv_heads=2,head_dim=64,needles=2");
  const auto s = task->make({1024, 0.1, 3, 2});
  const auto q = s->q.to(at::kFloat), k = s->k.to(at::kFloat), v = s->v.to(at::kFloat);
  const auto dense = task->score(*s, attn::make_attention("dense")->forward(q, k, v, {}).out);
  EXPECT_EQ(dense.accuracy, 1.0);
  EXPECT_EQ(dense.n_scored, 2 * 4 * 16);
  // Needles at depths 0.1 and 0.6 of 1008 haystack tokens; a 64-token window sees neither.
  const auto swa = task->score(*s, attn::make_attention("swa:window=64")->forward(q, k, v, {}).out);
  EXPECT_LT(swa.accuracy, 0.3);
  // Keeping the top keys keeps the needle.
  EXPECT_EQ(task->score(*s, attn::make_attention("topk:k=32")->forward(q, k, v, {}).out).accuracy, 1.0);
}

TEST(NeedleTask, TooShortForItsQueriesIsAnError) {
  const auto task = tasks::make_task("needle_qkv");
  try {
    task->make({10, 0.5, 0, 1});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("length 10 must exceed queries (16)"), std::string::npos) << e.what();
  }
}

harness::RunConfig small_config() {
  harness::RunConfig c;
  c.impls = {"dense", "swa:window=32", "dga:m=4,gamma=0.2"};
  c.tasks = {"needle_qkv:heads=4,kv_heads=2,head_dim=16"};
  c.lengths = {10, 96};  // 10 is too short for 16 query rows: those cells error, the sweep goes on
  c.depths = {0.2, 0.8};
  c.repeats = 2;
  c.device = "cpu";
  harness::validate_config(c, "test");
  return c;
}

TEST(Runner, StoresEveryCellAndSkipsThemOnRerun) {
  test::TempDir dir;
  harness::RunOptions o;
  o.db_path = dir.file("r.sqlite");
  o.quiet = true;
  const auto first = harness::run_sweep(small_config(), o);
  EXPECT_EQ(first.total, 12);
  EXPECT_EQ(first.ok, 6);
  EXPECT_EQ(first.error, 6);
  const store::Store db(o.db_path);
  const auto cells = db.cells();
  ASSERT_EQ(cells.size(), 12u);
  for (const auto& c : cells) {
    ASSERT_TRUE(first.keys.count(c.cell_key));
    if (c.length == 10) {
      EXPECT_EQ(c.status, "error");
      EXPECT_NE(c.message.find("must exceed queries"), std::string::npos) << c.message;
      continue;
    }
    EXPECT_EQ(c.status, "ok") << c.impl << " " << c.message;
    EXPECT_EQ(c.latency_repeats, 2);
    EXPECT_GT(*c.latency_ms_median, 0);
    EXPECT_GT(*c.peak_mem_bytes, 0);
    EXPECT_EQ(c.mem_kind, "rss_peak");
    EXPECT_EQ(c.dtype, "float32");
    EXPECT_FALSE(c.commit.empty());
    EXPECT_NE(c.repro.find("--impl " + harness::shell_quote(c.impl)), std::string::npos) << c.repro;
    EXPECT_LE(*c.kept_pairs, *c.causal_pairs);
    EXPECT_EQ(*c.causal_pairs, 4 * 96 * 97 / 2);
    if (c.impl == "dense") {
      EXPECT_EQ(*c.rel_l2_error, 0.0);
      EXPECT_EQ(*c.mass_recall, 1.0);
      EXPECT_EQ(*c.accuracy, 1.0);
    }
  }
  // Rerun: the ok cells are skipped; failed ones too unless retried.
  const auto again = harness::run_sweep(small_config(), o);
  EXPECT_EQ(again.skipped, 12);
  o.retry_failed = true;
  const auto retried = harness::run_sweep(small_config(), o);
  EXPECT_EQ(retried.skipped, 6);
  EXPECT_EQ(retried.error, 6);
  EXPECT_EQ(db.cells().size(), 12u);
  EXPECT_EQ(db.runs().size(), 3u);
}

TEST(Runner, CudaWithoutADeviceIsAClearError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a CUDA device is present";
  try {
    harness::resolve_device("cuda");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA device is available"), std::string::npos);
  }
}

// Golden output of the summary table for hand-made cells (no timing noise).
TEST(SummaryTable, MatchesGoldenFile) {
  std::vector<store::CellRecord> cells;
  auto cell = [&](const std::string& impl, int64_t L, double depth, const std::string& status) {
    store::CellRecord c;
    c.impl = impl;
    c.task = "needle_qkv:heads=8";
    c.length = L;
    c.depth = depth;
    c.status = status;
    if (status == "ok") {
      c.accuracy = depth < 0.5 ? 0.5 : 1.0;
      c.mass_recall = 0.75;
      c.rel_l2_error = impl == "dense" ? 0.0 : 0.125;
      c.requested_density = impl == "dense" ? 1.0 : 0.25;
      c.achieved_density = impl == "dense" ? 1.0 : 0.4375;
      c.attention_flops = 2.5e9 * static_cast<double>(L) / 1024;
      c.selection_flops = 0.5e9;
      c.latency_ms_median = depth < 0.5 ? 1.0 : 3.0;
      c.peak_mem_bytes = 64 << 20;
    } else {
      c.message = "dga forward is a prefill: q length (1) must equal kv length (10)";
    }
    cells.push_back(c);
  };
  for (const std::string impl : {"dense", "dga:m=16,gamma=0.1,samples=64,sample=last"})
    for (int64_t L : {1024, 4096})
      for (double d : {0.25, 0.75}) cell(impl, L, d, "ok");
  cell("topk:k=8", 1024, 0.25, "oom");
  cell("topk:k=8", 1024, 0.75, "unsupported");
  const std::string got = reports::summary_table(cells);
  std::ifstream golden(std::string(LCB_TEST_DIR) + "/golden/summary_table.txt");
  std::stringstream want;
  want << golden.rdbuf();
  if (std::getenv("LCB_UPDATE_GOLDEN")) std::ofstream(std::string(LCB_TEST_DIR) + "/golden/summary_table.txt") << got;
  EXPECT_EQ(got, want.str());
}

}  // namespace
}  // namespace lcb
