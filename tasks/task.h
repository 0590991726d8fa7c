// Tasks turn a cell (length, depth, seed, ...) into attention inputs and score the output.
// This is the model-free kind: it produces raw q/k/v, so it needs no weights or tokenizer.
#pragma once

#include "attention_impls/spec.h"
#include "datasets/synthetic_text.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
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

// A task run through a language model: a tokenized prompt, greedy generation, a text metric.
class ModelTask {
 public:
  virtual ~ModelTask() = default;
  virtual std::string spec() const = 0;
  virtual int version() const = 0;
  virtual int metric_version() const = 0;
  virtual datasets::TextSample make(const CellParams& cell, const datasets::Tokenizer& tok) const = 0;
  // Tasks read from files score several prompts per cell (one per record).
  virtual int64_t samples() const { return 1; }
  virtual datasets::TextSample make_at(const CellParams& cell, const datasets::Tokenizer& tok, int64_t index) const {
    return make(cell, tok);
  }
  // Generated prompts may be cached on disk; prompts read from files are not.
  virtual bool cacheable() const { return true; }
  // A reason when the task cannot run at all (a Chinese LongBench dataset); cells become unsupported.
  virtual std::optional<std::string> unsupported() const { return std::nullopt; }
  virtual int64_t max_new_tokens(const datasets::TextSample& s) const = 0;
  // generated: the decoded continuation. details carry the extracted answer.
  virtual Score score(const datasets::TextSample& s, const std::string& generated) const = 0;
};

enum class TaskKind { Attention, Model };

struct TaskEntry {
  std::string family;
  std::string summary;
  std::vector<ParamDef> params;
  TaskKind kind = TaskKind::Attention;
  std::function<std::unique_ptr<AttentionTask>(const ParsedSpec&)> make;
  std::function<std::unique_ptr<ModelTask>(const ParsedSpec&)> make_model;
};

const std::vector<TaskEntry>& task_registry();

// Throw std::invalid_argument naming the bad part (an unknown task lists the known ones).
TaskKind task_kind(const std::string& spec);
std::string canonical_task(const std::string& spec);
std::unique_ptr<AttentionTask> make_task(const std::string& spec);
std::unique_ptr<ModelTask> make_model_task(const std::string& spec);

TaskEntry needle_qkv_entry();
std::vector<TaskEntry> text_task_entries();
std::vector<TaskEntry> ruler_task_entries();
TaskEntry longbench_entry();
// How many LongBench JSONL files the longbench task has parsed in this process: a file is parsed
// once while its size and modification time stay the same (tests check this).
int longbench_files_parsed();
TaskEntry longbench_synthetic_entry();

}  // namespace lcb::tasks
