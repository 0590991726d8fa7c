// Tasks turn a cell (length, depth, seed, ...) into attention inputs and score the output.
// This is the model-free kind: it produces raw q/k/v, so it needs no weights or tokenizer.
#pragma once

#include "attention_impls/spec.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace lcb::tasks {

struct CellParams {
  int64_t length = 1024;
  double depth = 0.5;
  int64_t seed = 0;
  int64_t batch = 1;
};

// One generated input. Tasks derive from it to keep what their scoring needs.
struct Sample {
  virtual ~Sample() = default;
  at::Tensor q, k, v;  // float64 on the CPU; the runner casts and moves them
};

struct Score {
  double accuracy = 0;  // the task's metric, in [0, 1]
  int64_t n_scored = 0; // scored items behind it
  std::vector<double> item_scores;  // one per scored item (for bootstrap intervals)
  nlohmann::json details = nlohmann::json::object();
};

class AttentionTask {
 public:
  virtual ~AttentionTask() = default;
  virtual std::string spec() const = 0;  // canonical spec
  virtual int version() const = 0;       // bump when generated inputs change
  virtual int metric_version() const = 0;  // bump when scoring changes
  virtual std::unique_ptr<Sample> make(const CellParams& cell) const = 0;
  // out: the attention output [B, Hq, L, D] (any dtype/device).
  virtual Score score(const Sample& sample, const at::Tensor& out) const = 0;
};

struct TaskEntry {
  std::string family;
  std::string summary;
  std::vector<ParamDef> params;
  std::function<std::unique_ptr<AttentionTask>(const ParsedSpec&)> make;
};

const std::vector<TaskEntry>& task_registry();

// Throws std::invalid_argument naming the bad part (an unknown task lists the known ones).
std::unique_ptr<AttentionTask> make_task(const std::string& spec);

TaskEntry needle_qkv_entry();

}  // namespace lcb::tasks
