// Model tasks over lcb's synthetic long-context text (datasets/synthetic_text): passkey,
// niah_single, kv_retrieval (exact match of the first generated line, trimmed) and
// variable_tracking (string_match_all: the share of expected names present in the output).
#include "tasks/task.h"

#include <algorithm>

namespace lcb::tasks {
namespace {

std::string first_line_trimmed(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  const auto b = line.find_first_not_of(" \t"), e = line.find_last_not_of(" \t.");
  return b == std::string::npos ? std::string() : line.substr(b, e - b + 1);
}

class TextTask final : public ModelTask {
 public:
  TextTask(std::string family, ParsedSpec spec) : family_(std::move(family)), spec_(std::move(spec)) {}
  std::string spec() const override { return spec_.canonical; }
  int version() const override { return 1; }
  int metric_version() const override { return 1; }

  datasets::TextSample make(const CellParams& cell, const datasets::Tokenizer& tok) const override {
    return datasets::make_text_sample(family_, cell.length, cell.depth, static_cast<uint64_t>(cell.seed) * 7919 + 17, tok);
  }

  int64_t max_new_tokens(const datasets::TextSample& s) const override {
    return static_cast<int64_t>(s.answer_ids.size()) + spec_.params.integer("extra_tokens");
  }

  Score score(const datasets::TextSample& s, const std::string& generated) const override {
    Score sc;
    const std::string answer = first_line_trimmed(generated);
    sc.n_scored = 1;
    if (family_ == "variable_tracking") {  // string_match_all
      int64_t found = 0;
      for (const auto& e : s.expected) found += answer.find(e) != std::string::npos;
      sc.accuracy = static_cast<double>(found) / static_cast<double>(s.expected.size());
    } else {
      sc.accuracy = answer == s.answer ? 1.0 : 0.0;
    }
    sc.item_scores = {sc.accuracy};
    sc.details = {{"prediction", generated}, {"extracted", answer}, {"expected", s.answer}};
    return sc;
  }

 private:
  std::string family_;
  ParsedSpec spec_;
};

}  // namespace

std::vector<TaskEntry> text_task_entries() {
  const std::vector<std::pair<std::string, std::string>> tasks = {
      {"passkey", "model: retrieve a 5-digit pass key hidden in filler text (exact match)"},
      {"niah_single", "model: retrieve the 7-digit magic number of one key word (exact match)"},
      {"kv_retrieval", "model: the value of one key among key/value records (exact match)"},
      {"variable_tracking", "model: every variable in a chain of assignments (string_match_all)"}};
  std::vector<TaskEntry> out;
  for (const auto& [family, summary] : tasks) {
    TaskEntry e;
    e.family = family;
    e.summary = summary;
    e.kind = TaskKind::Model;
    e.params = {ParamDef::integer("extra_tokens", 2, 0, 1024, "tokens generated beyond the answer's length")};
    const std::string f = family;
    e.make_model = [f](const ParsedSpec& p) { return std::make_unique<TextTask>(f, p); };
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace lcb::tasks
