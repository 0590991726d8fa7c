#include "tasks/task.h"

#include <stdexcept>

namespace lcb::tasks {

const std::vector<TaskEntry>& task_registry() {
  static const std::vector<TaskEntry> entries = [] {
    std::vector<TaskEntry> e = {needle_qkv_entry()};
    for (auto& t : text_task_entries()) e.push_back(std::move(t));
    for (auto& t : ruler_task_entries()) e.push_back(std::move(t));
    e.push_back(longbench_entry());
    e.push_back(longbench_synthetic_entry());
    return e;
  }();
  return entries;
}

static const TaskEntry& find_entry(const std::string& spec) {
  const std::string family = split_spec(spec).first;
  for (const auto& e : task_registry()) {
    if (e.family == family) return e;
  }
  std::string known;
  for (const auto& e : task_registry()) known += (known.empty() ? "" : ", ") + e.family;
  throw std::invalid_argument("unknown task '" + family + "' in spec '" + spec + "'; known tasks: " + known);
}

static ParsedSpec parse(const TaskEntry& e, const std::string& spec) {
  return parse_params(spec, "task '" + e.family + "'", e.params);
}

TaskKind task_kind(const std::string& spec) { return find_entry(spec).kind; }

std::string canonical_task(const std::string& spec) {
  const TaskEntry& e = find_entry(spec);
  return e.kind == TaskKind::Attention ? e.make(parse(e, spec))->spec() : e.make_model(parse(e, spec))->spec();
}

std::unique_ptr<AttentionTask> make_task(const std::string& spec) {
  const TaskEntry& e = find_entry(spec);
  if (e.kind != TaskKind::Attention) throw std::invalid_argument("task '" + e.family + "' runs through a model, not on raw q/k/v");
  return e.make(parse(e, spec));
}

std::unique_ptr<ModelTask> make_model_task(const std::string& spec) {
  const TaskEntry& e = find_entry(spec);
  if (e.kind != TaskKind::Model) throw std::invalid_argument("task '" + e.family + "' is an attention-level task, not a model task");
  return e.make_model(parse(e, spec));
}

}  // namespace lcb::tasks
