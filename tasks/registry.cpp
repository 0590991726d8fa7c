#include "tasks/task.h"

#include <stdexcept>

namespace lcb::tasks {

const std::vector<TaskEntry>& task_registry() {
  static const std::vector<TaskEntry> entries = {needle_qkv_entry()};
  return entries;
}

std::unique_ptr<AttentionTask> make_task(const std::string& spec) {
  const std::string family = split_spec(spec).first;
  for (const auto& e : task_registry()) {
    if (e.family == family) return e.make(parse_params(spec, "task '" + family + "'", e.params));
  }
  std::string known;
  for (const auto& e : task_registry()) known += (known.empty() ? "" : ", ") + e.family;
  throw std::invalid_argument("unknown task '" + family + "' in spec '" + spec + "'; known tasks: " + known);
}

}  // namespace lcb::tasks
