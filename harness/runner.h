// `lcb run`: expands a config into cells, skips those already stored, runs the rest (one
// transaction per finished cell) and reports progress.
#pragma once

#include "harness/config.h"
#include "harness/store.h"

#include <set>
#include <string>

namespace lcb::harness {

struct RunOptions {
  std::string db_path = "results.sqlite";
  bool retry_failed = false;  // rerun cells stored as oom or error
  bool quiet = false;
  std::string command_line;   // stored with the run
};

struct RunSummary {
  int64_t run_id = 0;
  int64_t total = 0, skipped = 0, ok = 0, unsupported = 0, oom = 0, error = 0;
  double seconds = 0;
  std::set<std::string> keys;  // every cell key of the config
};

// Resolves "auto" device and dtype; throws std::invalid_argument when cuda is asked for and absent.
at::Device resolve_device(const std::string& device);
at::ScalarType resolve_dtype(const std::string& dtype, const at::Device& device);
std::string dtype_name(at::ScalarType dtype);

RunSummary run_sweep(const RunConfig& config, const RunOptions& options);

// The embedded default model: $LCB_MODEL_DIR, else datasets/model in the source tree.
std::string default_model_dir();

}  // namespace lcb::harness
