// Tests of the SQLite result store: schema versioning, WAL, round trips, replacement, resumption
// keys, parameter binding and persistence. Each test gets its own database in a fresh temp dir.
#include "harness/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string>

namespace lcb::store {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "lcb_store_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "results.sqlite").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  std::string path_;
};

// Runs one statement on the database file directly, bypassing Store, and returns the first column
// of its first row as text (empty when there is none).
std::string raw_query(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  std::string result;
  if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0)) {
    result = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return result;
}

RunInfo make_run() {
  RunInfo r;
  r.started_at = "2024-05-01T12:00:00Z";
  r.config_json = R"({"impls":["dense"]})";
  r.commit = "abc123";
  r.lcb_version = "0.1.0";
  r.torch_version = "2.3.0";
  r.device_name = "NVIDIA H200";
  r.build_type = "Release";
  r.host = "node-7";
  r.command = "lcb run --config c.json";
  return r;
}

// A cell with every field set to a distinct, non-default value and every optional present.
CellRecord full_cell(int64_t run_id, const std::string& key) {
  CellRecord c;
  c.cell_key = key;
  c.run_id = run_id;
  c.impl = "dga:m=16,gamma=0.1";
  c.impl_family = "dga";
  c.task = "niah:needles=2";
  c.task_version = 3;
  c.metric_version = 4;
  c.length = int64_t{1} << 40;
  c.depth = 0.1 + 0.2;  // not exactly 0.3, so a lossy round trip would show
  c.seed = -7;
  c.batch = 2;
  c.dtype = "bf16";
  c.device = "cuda:0";
  c.device_name = "NVIDIA H200";
  c.status = "ok";
  c.message = "";
  c.accuracy = 0.875;
  c.n_scored = 64;
  c.rel_l2_error = 1e-300;
  c.mass_recall = 0.999999999999;
  c.attention_flops = 1.5e15;
  c.selection_flops = 0.0;
  c.kept_pairs = std::numeric_limits<int64_t>::max();
  c.causal_pairs = std::numeric_limits<int64_t>::min();
  c.requested_density = 0.05;
  c.achieved_density = 0.0499;
  c.latency_ms_median = 12.25;
  c.latency_ms_min = std::numeric_limits<double>::infinity();
  c.latency_ms_max = 7.25;
  c.decode_ms_median = 0.125;
  c.decode_steps = 4;
  c.kv_cache_bytes = int64_t{3} << 33;
  c.latency_repeats = 10;
  c.peak_mem_bytes = int64_t{80} << 30;
  c.mem_kind = "cuda_allocator_peak";
  c.backend = "sdpa-cudnn";
  c.commit = "abc123";
  c.torch_version = "2.3.0";
  c.lcb_version = "0.1.0";
  c.repro = "lcb run --impl dga --task niah --length 1099511627776";
  c.finished_at = "2024-05-01T12:01:00Z";
  c.extra_json = R"({"needle_positions":[1,2]})";
  return c;
}

CellRecord cell_without_optionals(int64_t run_id, const std::string& key) {
  CellRecord c = full_cell(run_id, key);
  c.status = "unsupported";
  c.message = "needs CUDA";
  c.accuracy.reset();
  c.rel_l2_error.reset();
  c.mass_recall.reset();
  c.attention_flops.reset();
  c.selection_flops.reset();
  c.kept_pairs.reset();
  c.causal_pairs.reset();
  c.requested_density.reset();
  c.achieved_density.reset();
  c.latency_ms_median.reset();
  c.latency_ms_min.reset();
  c.latency_ms_max.reset();
  c.decode_ms_median.reset();
  c.kv_cache_bytes.reset();
  c.peak_mem_bytes.reset();
  return c;
}

CellRecord cell_with_status(int64_t run_id, const std::string& key, const std::string& status) {
  CellRecord c = full_cell(run_id, key);
  c.status = status;
  return c;
}

void expect_same(const CellRecord& a, const CellRecord& b) {
  EXPECT_EQ(a.cell_key, b.cell_key);
  EXPECT_EQ(a.run_id, b.run_id);
  EXPECT_EQ(a.impl, b.impl);
  EXPECT_EQ(a.impl_family, b.impl_family);
  EXPECT_EQ(a.task, b.task);
  EXPECT_EQ(a.task_version, b.task_version);
  EXPECT_EQ(a.metric_version, b.metric_version);
  EXPECT_EQ(a.length, b.length);
  EXPECT_EQ(a.depth, b.depth);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.batch, b.batch);
  EXPECT_EQ(a.dtype, b.dtype);
  EXPECT_EQ(a.device, b.device);
  EXPECT_EQ(a.device_name, b.device_name);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.message, b.message);
  EXPECT_EQ(a.accuracy, b.accuracy);
  EXPECT_EQ(a.n_scored, b.n_scored);
  EXPECT_EQ(a.rel_l2_error, b.rel_l2_error);
  EXPECT_EQ(a.mass_recall, b.mass_recall);
  EXPECT_EQ(a.attention_flops, b.attention_flops);
  EXPECT_EQ(a.selection_flops, b.selection_flops);
  EXPECT_EQ(a.kept_pairs, b.kept_pairs);
  EXPECT_EQ(a.causal_pairs, b.causal_pairs);
  EXPECT_EQ(a.requested_density, b.requested_density);
  EXPECT_EQ(a.achieved_density, b.achieved_density);
  EXPECT_EQ(a.latency_ms_median, b.latency_ms_median);
  EXPECT_EQ(a.latency_ms_min, b.latency_ms_min);
  EXPECT_EQ(a.latency_ms_max, b.latency_ms_max);
  EXPECT_EQ(a.decode_ms_median, b.decode_ms_median);
  EXPECT_EQ(a.decode_steps, b.decode_steps);
  EXPECT_EQ(a.kv_cache_bytes, b.kv_cache_bytes);
  EXPECT_EQ(a.latency_repeats, b.latency_repeats);
  EXPECT_EQ(a.peak_mem_bytes, b.peak_mem_bytes);
  EXPECT_EQ(a.mem_kind, b.mem_kind);
  EXPECT_EQ(a.backend, b.backend);
  EXPECT_EQ(a.commit, b.commit);
  EXPECT_EQ(a.torch_version, b.torch_version);
  EXPECT_EQ(a.lcb_version, b.lcb_version);
  EXPECT_EQ(a.repro, b.repro);
  EXPECT_EQ(a.finished_at, b.finished_at);
  EXPECT_EQ(a.extra_json, b.extra_json);
}

void expect_same(const RunInfo& a, const RunInfo& b) {
  EXPECT_EQ(a.run_id, b.run_id);
  EXPECT_EQ(a.started_at, b.started_at);
  EXPECT_EQ(a.finished_at, b.finished_at);
  EXPECT_EQ(a.config_json, b.config_json);
  EXPECT_EQ(a.commit, b.commit);
  EXPECT_EQ(a.lcb_version, b.lcb_version);
  EXPECT_EQ(a.torch_version, b.torch_version);
  EXPECT_EQ(a.device_name, b.device_name);
  EXPECT_EQ(a.build_type, b.build_type);
  EXPECT_EQ(a.host, b.host);
  EXPECT_EQ(a.command, b.command);
}

TEST_F(StoreTest, SchemaVersionIsCurrentAfterCreateAndReopen) {
  { EXPECT_EQ(Store(path_).schema_version(), kSchemaVersion); }
  EXPECT_EQ(raw_query(path_, "PRAGMA user_version"), std::to_string(kSchemaVersion));
  EXPECT_EQ(Store(path_).schema_version(), kSchemaVersion);
}

TEST_F(StoreTest, JournalModeIsWal) {
  { Store store(path_); }
  EXPECT_EQ(raw_query(path_, "PRAGMA journal_mode"), "wal");
}

TEST_F(StoreTest, FullyPopulatedCellRoundTrips) {
  Store store(path_);
  RunInfo run = make_run();
  const int64_t run_id = store.begin_run(run);
  const CellRecord full = full_cell(run_id, "a");
  const CellRecord sparse = cell_without_optionals(run_id, "b");
  store.put_cell(full);
  store.put_cell(sparse);

  const auto cells = store.cells();
  ASSERT_EQ(cells.size(), 2u);
  const CellRecord& got_full = cells[0].cell_key == "a" ? cells[0] : cells[1];
  const CellRecord& got_sparse = cells[0].cell_key == "a" ? cells[1] : cells[0];
  expect_same(got_full, full);
  expect_same(got_sparse, sparse);
  EXPECT_FALSE(got_sparse.accuracy.has_value());
  EXPECT_FALSE(got_sparse.peak_mem_bytes.has_value());
}

TEST_F(StoreTest, RunsRoundTripInIdOrder) {
  Store store(path_);
  RunInfo first = make_run();
  RunInfo second = make_run();
  second.host = "node-8";
  const int64_t first_id = store.begin_run(first);
  const int64_t second_id = store.begin_run(second);
  EXPECT_EQ(first.run_id, first_id);
  EXPECT_GT(second_id, first_id);
  store.finish_run(first_id, "2024-05-01T13:00:00Z");
  first.finished_at = "2024-05-01T13:00:00Z";

  const auto runs = store.runs();
  ASSERT_EQ(runs.size(), 2u);
  expect_same(runs[0], first);
  expect_same(runs[1], second);
}

TEST_F(StoreTest, FinishingUnknownRunThrows) {
  Store store(path_);
  EXPECT_THROW(store.finish_run(42, "2024-05-01T13:00:00Z"), std::runtime_error);
}

TEST_F(StoreTest, PutCellTwiceKeepsOneRowWithSecondValues) {
  Store store(path_);
  RunInfo run = make_run();
  const int64_t run_id = store.begin_run(run);
  store.put_cell(cell_with_status(run_id, "k", "error"));
  const CellRecord second = cell_without_optionals(run_id, "k");
  store.put_cell(second);

  const auto cells = store.cells();
  ASSERT_EQ(cells.size(), 1u);
  expect_same(cells[0], second);
}

TEST_F(StoreTest, FinishedKeysExcludeFailedUnlessIncluded) {
  Store store(path_);
  RunInfo run = make_run();
  const int64_t run_id = store.begin_run(run);
  for (const std::string status : {"ok", "unsupported", "oom", "error"}) {
    store.put_cell(cell_with_status(run_id, status, status));
  }
  EXPECT_EQ(store.finished_keys(false), (std::set<std::string>{"ok", "unsupported"}));
  EXPECT_EQ(store.finished_keys(true), (std::set<std::string>{"ok", "unsupported", "oom", "error"}));
}

TEST_F(StoreTest, InvalidStatusIsRejectedAndRolledBack) {
  Store store(path_);
  RunInfo run = make_run();
  const int64_t run_id = store.begin_run(run);
  EXPECT_THROW(store.put_cell(cell_with_status(run_id, "bad", "done")), std::runtime_error);
  EXPECT_TRUE(store.cells().empty());
  store.put_cell(full_cell(run_id, "good"));  // the failed transaction did not stay open
  EXPECT_EQ(store.cells().size(), 1u);
}

TEST_F(StoreTest, CellOfUnknownRunIsRejected) {
  Store store(path_);
  EXPECT_THROW(store.put_cell(full_cell(99, "orphan")), std::runtime_error);
}

TEST_F(StoreTest, CellsFilterByRunAndSortByImplTaskLengthDepthSeed) {
  Store store(path_);
  RunInfo run_a = make_run();
  RunInfo run_b = make_run();
  const int64_t a = store.begin_run(run_a);
  const int64_t b = store.begin_run(run_b);
  auto cell = [](int64_t run_id, const std::string& key, const std::string& impl, int64_t length, double depth) {
    CellRecord c = full_cell(run_id, key);
    c.impl = impl;
    c.length = length;
    c.depth = depth;
    return c;
  };
  store.put_cell(cell(a, "4", "topk", 1024, 0.5));
  store.put_cell(cell(a, "3", "dense", 4096, 0.0));
  store.put_cell(cell(a, "2", "dense", 1024, 0.9));
  store.put_cell(cell(a, "1", "dense", 1024, 0.1));
  store.put_cell(cell(b, "5", "dense", 1024, 0.0));

  std::vector<std::string> keys;
  for (const auto& c : store.cells(a)) keys.push_back(c.cell_key);
  EXPECT_EQ(keys, (std::vector<std::string>{"1", "2", "3", "4"}));
  EXPECT_EQ(store.cells().size(), 5u);
  ASSERT_EQ(store.cells(b).size(), 1u);
  EXPECT_EQ(store.cells(b)[0].cell_key, "5");
}

TEST_F(StoreTest, NewerSchemaVersionIsRefused) {
  raw_query(path_, "PRAGMA user_version = " + std::to_string(kSchemaVersion + 1));
  try {
    Store store(path_);
    FAIL() << "opening a newer database should throw";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "results database " + path_ + " has schema version " +
                                         std::to_string(kSchemaVersion + 1) + ", newer than this build's " +
                                         std::to_string(kSchemaVersion) + "; use a newer lcb");
  }
}

TEST_F(StoreTest, DatabaseWithTablesButNoVersionIsRefused) {
  raw_query(path_, "CREATE TABLE other (x INTEGER)");
  EXPECT_THROW(Store store(path_), std::runtime_error);
}

TEST_F(StoreTest, OpenFailureNamesThePath) {
  const std::string bad = (dir_ / "missing_dir" / "results.sqlite").string();
  try {
    Store store(bad);
    FAIL() << "opening a path in a missing directory should throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
}

TEST_F(StoreTest, SqlMetacharactersAreStoredVerbatim) {
  const std::string evil = "x'); DROP TABLE cells; --";
  const std::string with_nul("a\0b\"c", 5);
  Store store(path_);
  RunInfo run = make_run();
  run.command = evil;
  const int64_t run_id = store.begin_run(run);
  CellRecord c = full_cell(run_id, evil);
  c.impl = evil;
  c.message = "it's \"quoted\"; ok";
  c.extra_json = with_nul;
  store.put_cell(c);

  const auto cells = store.cells();
  ASSERT_EQ(cells.size(), 1u);
  expect_same(cells[0], c);
  EXPECT_EQ(store.runs().at(0).command, evil);
  EXPECT_EQ(store.finished_keys(false), (std::set<std::string>{evil}));
}

TEST_F(StoreTest, DataPersistsAcrossReopen) {
  RunInfo run = make_run();
  CellRecord cell;
  {
    Store store(path_);
    const int64_t run_id = store.begin_run(run);
    store.finish_run(run_id, "2024-05-01T13:00:00Z");
    run.finished_at = "2024-05-01T13:00:00Z";
    cell = full_cell(run_id, "persisted");
    store.put_cell(cell);
  }
  Store reopened(path_);
  ASSERT_EQ(reopened.runs().size(), 1u);
  expect_same(reopened.runs()[0], run);
  ASSERT_EQ(reopened.cells().size(), 1u);
  expect_same(reopened.cells()[0], cell);
  EXPECT_EQ(reopened.finished_keys(false), (std::set<std::string>{"persisted"}));
}

}  // namespace
}  // namespace lcb::store
