// Model tasks over lcb's synthetic long-context text (datasets/synthetic_text): passkey,
// niah_single, kv_retrieval (exact match of the first generated line, trimmed) and
// variable_tracking (string_match_all: the share of expected names present in the output).
#include "tasks/longbench/metrics.h"
#include "tasks/task.h"

#include <algorithm>
#include <cctype>

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

std::string lowercase(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// RULER's scoring: string_match_all (share of expected items in the output) or string_match_part
// (1 when any is), both case-insensitive, on the whole generated text.
class RulerTask final : public ModelTask {
 public:
  RulerTask(datasets::RulerParams p, ParsedSpec spec, std::string metric)
      : p_(std::move(p)), spec_(std::move(spec)), metric_(std::move(metric)) {}
  std::string spec() const override { return spec_.canonical; }
  int version() const override { return 1; }
  int metric_version() const override { return 1; }
  datasets::TextSample make(const CellParams& cell, const datasets::Tokenizer& tok) const override {
    return datasets::make_ruler_sample(p_, cell.length, cell.depth, static_cast<uint64_t>(cell.seed) * 7919 + 29, tok);
  }
  int64_t max_new_tokens(const datasets::TextSample& s) const override {
    return static_cast<int64_t>(s.answer_ids.size()) + spec_.params.integer("extra_tokens");
  }
  Score score(const datasets::TextSample& s, const std::string& generated) const override {
    const std::string out = lowercase(generated);
    int64_t found = 0;
    for (const auto& e : s.expected) found += out.find(lowercase(e)) != std::string::npos;
    Score sc;
    sc.n_scored = 1;
    sc.accuracy = metric_ == "part" ? (found > 0 ? 1.0 : 0.0) : static_cast<double>(found) / static_cast<double>(s.expected.size());
    sc.item_scores = {sc.accuracy};
    sc.details = {{"prediction", generated}, {"expected", s.expected}, {"found", found}, {"metric", "string_match_" + metric_}};
    return sc;
  }

 private:
  datasets::RulerParams p_;
  ParsedSpec spec_;
  std::string metric_;
};

// Synthetic LongBench-category tasks, scored with LongBench's metric for their category.
class LongBenchSyntheticTask final : public ModelTask {
 public:
  LongBenchSyntheticTask(std::string kind, ParsedSpec spec) : kind_(std::move(kind)), spec_(std::move(spec)) {}
  std::string spec() const override { return spec_.canonical; }
  int version() const override { return 1; }
  // few_shot 2: LongBench's first-line rule (leading newlines dropped first), as for trec.
  int metric_version() const override { return kind_ == "few_shot" ? 2 : 1; }
  datasets::TextSample make(const CellParams& cell, const datasets::Tokenizer& tok) const override {
    return datasets::make_longbench_synthetic(kind_, cell.length, cell.depth, static_cast<uint64_t>(cell.seed) * 7919 + 41, tok);
  }
  int64_t max_new_tokens(const datasets::TextSample& s) const override {
    return static_cast<int64_t>(s.answer_ids.size()) + spec_.params.integer("extra_tokens");
  }
  Score score(const datasets::TextSample& s, const std::string& generated) const override {
    Score sc;
    sc.n_scored = 1;
    std::string metric;
    if (kind_ == "single_doc_qa" || kind_ == "multi_doc_qa") {
      metric = "qa_f1";
      sc.accuracy = longbench::qa_f1(generated, s.answer);
    } else if (kind_ == "passage_count") {
      metric = "count";
      sc.accuracy = longbench::count(generated, s.answer);
    } else if (kind_ == "passage_retrieval") {
      metric = "retrieval";
      sc.accuracy = longbench::retrieval(generated, s.answer);
    } else if (kind_ == "few_shot") {  // LongBench's first-line rule for its few-shot datasets (trec's)
      metric = "classification";
      sc.accuracy = longbench::classification(longbench::apply_first_line_rule("trec", generated), s.answer, s.classes);
    } else {
      metric = "code_sim";
      sc.accuracy = longbench::code_sim(generated, s.answer);
    }
    sc.item_scores = {sc.accuracy};
    sc.details = {{"prediction", generated}, {"expected", s.answer}, {"metric", metric}};
    return sc;
  }

 private:
  std::string kind_;
  ParsedSpec spec_;
};

}  // namespace

TaskEntry longbench_synthetic_entry() {
  TaskEntry e;
  e.family = "lb_synth";
  e.summary = "model: synthetic LongBench categories (document QA, passage count/retrieval, few-shot labels, code)";
  e.kind = TaskKind::Model;
  e.params = {ParamDef::choice("kind", "single_doc_qa", datasets::longbench_synthetic_kinds(), "which category"),
              ParamDef::integer("extra_tokens", 2, 0, 1024, "tokens generated beyond the answer's length")};
  e.make_model = [](const ParsedSpec& p) { return std::make_unique<LongBenchSyntheticTask>(p.params.text("kind"), p); };
  return e;
}

std::vector<TaskEntry> ruler_task_entries() {
  std::vector<TaskEntry> out;
  const ParamDef extra = ParamDef::integer("extra_tokens", 2, 0, 1024, "tokens generated beyond the answer's length");
  TaskEntry niah;
  niah.family = "niah";
  niah.summary = "model: RULER needle-in-a-haystack (single, multi-key, multi-value, multi-query) with word/number/uuid items";
  niah.kind = TaskKind::Model;
  niah.params = {ParamDef::choice("keys", "word", {"word", "number", "uuid"}, "type of the needle keys"),
                 ParamDef::choice("values", "number", {"word", "number", "uuid"}, "type of the needle values"),
                 ParamDef::integer("needles", 1, 1, 64, "distinct keys planted (the unasked ones are distractors)"),
                 ParamDef::integer("values_per_key", 1, 1, 64, "values of each key (multi-value)"),
                 ParamDef::integer("queries", 1, 1, 64, "keys asked at once (multi-query)"),
                 ParamDef::choice("metric", "all", {"all", "part"}, "string_match_all or string_match_part"), extra};
  niah.make_model = [](const ParsedSpec& p) {
    datasets::RulerParams r;
    r.kind = "niah";
    r.keys = p.params.text("keys");
    r.values = p.params.text("values");
    r.needles = p.params.integer("needles");
    r.values_per_key = p.params.integer("values_per_key");
    r.queries = p.params.integer("queries");
    if (r.queries > r.needles) {
      throw std::invalid_argument("task 'niah': queries (" + p.params.text("queries") + ") cannot exceed needles (" +
                                  p.params.text("needles") + ")");
    }
    return std::make_unique<RulerTask>(r, p, p.params.text("metric"));
  };
  out.push_back(niah);
  TaskEntry kv;
  kv.family = "kv_json";
  kv.summary = "model: RULER key-value retrieval from a JSON object of UUID pairs (string_match_all)";
  kv.kind = TaskKind::Model;
  kv.params = {extra};
  kv.make_model = [](const ParsedSpec& p) {
    datasets::RulerParams r;
    r.kind = "kv";
    return std::make_unique<RulerTask>(r, p, "all");
  };
  out.push_back(kv);
  for (const std::string kind : {"cwe", "fwe"}) {
    TaskEntry e;
    e.family = kind;
    e.summary = kind == "cwe" ? "model: RULER common words extraction (the most repeated words of a list)"
                              : "model: RULER frequent words extraction (the most frequent coded words, Zipf)";
    e.kind = TaskKind::Model;
    e.params = {ParamDef::integer("top", kind == "cwe" ? 10 : 3, 1, 100, "words asked for"), extra};
    e.make_model = [kind](const ParsedSpec& p) {
      datasets::RulerParams r;
      r.kind = kind;
      r.top = p.params.integer("top");
      return std::make_unique<RulerTask>(r, p, "all");
    };
    out.push_back(e);
  }
  return out;
}

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
