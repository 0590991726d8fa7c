// The SQLite result store. One row per cell (the unit of work, resumption and storage), keyed by
// a hash of everything that changes the cell's result; one row per run with its provenance.
// Versioned schema (PRAGMA user_version), WAL journal, bound parameters only, one transaction per
// finished cell, so a run killed at any point loses at most the cell in flight.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

struct sqlite3;

namespace lcb::store {

constexpr int kSchemaVersion = 1;

struct RunInfo {
  int64_t run_id = 0;  // assigned by begin_run
  std::string started_at, finished_at;  // ISO-8601 UTC
  std::string config_json;              // the expanded run config
  std::string commit, lcb_version, torch_version, device_name, build_type, host;
  std::string command;  // the command line that started the run
};

struct CellRecord {
  std::string cell_key;  // primary key
  int64_t run_id = 0;
  std::string impl;         // canonical attention spec
  std::string impl_family;  // e.g. "dga"
  std::string task;         // canonical task spec
  int64_t task_version = 0, metric_version = 0;
  int64_t length = 0;
  double depth = 0;
  int64_t seed = 0;
  int64_t batch = 1;
  std::string dtype, device, device_name;
  std::string status;  // "ok", "unsupported", "oom" or "error"
  std::string message;  // reason or error text; empty when ok
  std::optional<double> accuracy;
  int64_t n_scored = 0;
  std::optional<double> rel_l2_error, mass_recall;
  std::optional<double> attention_flops, selection_flops;
  std::optional<int64_t> kept_pairs, causal_pairs;
  std::optional<double> requested_density, achieved_density;
  std::optional<double> latency_ms_median, latency_ms_min, latency_ms_max;  // prefill (forward) repeats
  int64_t latency_repeats = 0;
  std::optional<double> decode_ms_median;  // one decode step against the implementation's cache
  int64_t decode_steps = 0;
  std::optional<int64_t> kv_cache_bytes;   // the implementation's cache after the prefill
  std::optional<int64_t> peak_mem_bytes;
  std::string mem_kind;  // "cuda_allocator_peak" or "rss_peak"
  std::string backend;   // what ran, e.g. "sdpa-cudnn" or "reference"
  std::string commit, torch_version, lcb_version;
  std::string repro;        // a command that reproduces this cell
  std::string finished_at;  // ISO-8601 UTC
  std::string extra_json = "{}";  // task-specific details
};

// Each field paired with its column name, so the INSERT and SELECT column lists (and exports)
// cannot drift from the order in which values are bound and read. Cell may be const or not.
template <class Cell, class F>
void for_each_cell_field(Cell& c, F&& f) {
  f("cell_key", c.cell_key);
  f("run_id", c.run_id);
  f("impl", c.impl);
  f("impl_family", c.impl_family);
  f("task", c.task);
  f("task_version", c.task_version);
  f("metric_version", c.metric_version);
  f("length", c.length);
  f("depth", c.depth);
  f("seed", c.seed);
  f("batch", c.batch);
  f("dtype", c.dtype);
  f("device", c.device);
  f("device_name", c.device_name);
  f("status", c.status);
  f("message", c.message);
  f("accuracy", c.accuracy);
  f("n_scored", c.n_scored);
  f("rel_l2_error", c.rel_l2_error);
  f("mass_recall", c.mass_recall);
  f("attention_flops", c.attention_flops);
  f("selection_flops", c.selection_flops);
  f("kept_pairs", c.kept_pairs);
  f("causal_pairs", c.causal_pairs);
  f("requested_density", c.requested_density);
  f("achieved_density", c.achieved_density);
  f("latency_ms_median", c.latency_ms_median);
  f("latency_ms_min", c.latency_ms_min);
  f("latency_ms_max", c.latency_ms_max);
  f("latency_repeats", c.latency_repeats);
  f("decode_ms_median", c.decode_ms_median);
  f("decode_steps", c.decode_steps);
  f("kv_cache_bytes", c.kv_cache_bytes);
  f("peak_mem_bytes", c.peak_mem_bytes);
  f("mem_kind", c.mem_kind);
  f("backend", c.backend);
  f("commit", c.commit);
  f("torch_version", c.torch_version);
  f("lcb_version", c.lcb_version);
  f("repro", c.repro);
  f("finished_at", c.finished_at);
  f("extra_json", c.extra_json);
}

class Store {
 public:
  // Opens or creates the database. Throws std::runtime_error naming the path on failure, and when
  // the file's schema version is newer than this build's.
  explicit Store(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  int schema_version() const;

  int64_t begin_run(RunInfo& info);  // inserts the run, sets info.run_id, returns it
  void finish_run(int64_t run_id, const std::string& finished_at);

  // Keys of stored cells whose status is final: ok and unsupported always; oom and error too when
  // include_failed (a rerun without --retry-failed skips them).
  std::set<std::string> finished_keys(bool include_failed) const;

  // Inserts or replaces one cell in its own transaction.
  void put_cell(const CellRecord& cell);

  // Cells, optionally only those of one run (run_id > 0), ordered by impl, task, length, depth, seed.
  std::vector<CellRecord> cells(int64_t run_id = 0) const;
  std::vector<RunInfo> runs() const;

 private:
  void exec(const char* sql) const;
  sqlite3* db_ = nullptr;
  std::string path_;
};

}  // namespace lcb::store
