// longbench:file=PATH,config=DIR,truncation=middle|head|skip,max_samples=N — a LongBench JSONL
// file (records with input, context, answers, length, dataset, language, all_classes, _id) run
// through the model. The prompt is LongBench's template for the dataset (config/dataset2prompt.json
// of a LongBench checkout, given as config=DIR, with dataset2maxlen.json for max_new_tokens),
// filled as Python's str.format does. Prompts longer than the cell's length minus BOS and
// max_new_tokens are cut in tokens after templating: middle keeps the first and last halves (as
// LongBench's pred.py), head keeps the end, skip leaves the record unscored. Scores are LongBench's
// metric for the dataset (tasks/longbench/metrics.h). The dataset is the file name up to its
// first '.', as in LongBench's eval.py.
#include "tasks/longbench/eval.h"
#include "tasks/longbench/metrics.h"
#include "tasks/task.h"

#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <fstream>
#include <map>
#include <memory>
#include <mutex>

namespace lcb::tasks {
namespace {

struct Record {
  std::string input, context, id, language, dataset;
  std::vector<std::string> answers, all_classes;
  int64_t length = 0;
  nlohmann::json raw;
};

std::vector<Record> load_records(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("task 'longbench': cannot read file " + path);
  std::vector<Record> out;
  std::string line;
  for (int64_t no = 1; std::getline(in, line); ++no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(no);
    Record r;
    try {
      r.raw = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw std::invalid_argument(where + ": not valid JSON (" + e.what() + ")");
    }
    for (const char* f : {"input", "context", "answers", "length", "dataset", "language", "all_classes", "_id"}) {
      if (!r.raw.is_object() || !r.raw.contains(f)) {
        throw std::invalid_argument(where + ": field '" + f +
                                    "' is missing (required: input, context, answers, length, dataset, language, all_classes, _id)");
      }
    }
    auto text = [&](const char* f) {
      if (!r.raw[f].is_string()) throw std::invalid_argument(where + ": field '" + std::string(f) + "' must be a string");
      return r.raw[f].get<std::string>();
    };
    r.input = text("input");
    r.context = text("context");
    r.id = text("_id");
    r.language = text("language");
    r.dataset = text("dataset");
    r.answers = longbench::string_list(r.raw["answers"], where, "answers");
    r.all_classes = longbench::string_list(r.raw["all_classes"], where, "all_classes");
    if (!r.raw["length"].is_number_integer()) throw std::invalid_argument(where + ": field 'length' must be an integer");
    r.length = r.raw["length"].get<int64_t>();
    if (r.answers.empty()) throw std::invalid_argument(where + ": field 'answers' must hold at least one answer");
    out.push_back(std::move(r));
  }
  if (out.empty()) throw std::invalid_argument("task 'longbench': " + path + " holds no records");
  return out;
}

int& files_parsed_counter() {
  static int n = 0;
  return n;
}

// Records of a file, parsed once per process while the file is unchanged (its size and
// modification time): a sweep validates its config and then builds its tasks, and both read it.
std::shared_ptr<const std::vector<Record>> cached_records(const std::string& path) {
  struct Entry {
    off_t size = 0;
    struct timespec mtime {};
    std::shared_ptr<const std::vector<Record>> records;
  };
  static std::mutex mu;
  static std::map<std::string, Entry> cache;
  static int& parsed = files_parsed_counter();
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return std::make_shared<const std::vector<Record>>(load_records(path));  // names the error
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(path);
  if (it != cache.end() && it->second.size == st.st_size && it->second.mtime.tv_sec == st.st_mtim.tv_sec &&
      it->second.mtime.tv_nsec == st.st_mtim.tv_nsec) {
    return it->second.records;
  }
  Entry e{st.st_size, st.st_mtim, std::make_shared<const std::vector<Record>>(load_records(path))};
  ++parsed;
  cache[path] = e;
  return e.records;
}

nlohmann::json load_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("task 'longbench': cannot read " + path + " (LongBench's config folder is needed)");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::invalid_argument(path + ": not valid JSON (" + e.what() + ")");
  }
}

// Python's str.format with named fields from the record; {{ and }} are literal braces.
std::string format_template(const std::string& tpl, const Record& r) {
  std::string out;
  for (size_t i = 0; i < tpl.size(); ++i) {
    const char c = tpl[i];
    if ((c == '{' || c == '}') && i + 1 < tpl.size() && tpl[i + 1] == c) {
      out += c;
      ++i;
    } else if (c == '{') {
      const size_t end = tpl.find('}', i);
      if (end == std::string::npos) throw std::invalid_argument("LongBench template: unmatched '{'");
      const std::string field = tpl.substr(i + 1, end - i - 1);
      if (!r.raw.contains(field) || !r.raw[field].is_string()) {
        throw std::invalid_argument("LongBench template field '{" + field + "}' is not a text field of the record");
      }
      out += r.raw[field].get<std::string>();
      i = end;
    } else {
      out += c;
    }
  }
  return out;
}

std::string basename_dataset(const std::string& path) {
  const std::string name = path.substr(path.find_last_of('/') + 1);
  return name.substr(0, name.find('.'));
}

class LongBenchTask final : public ModelTask {
 public:
  explicit LongBenchTask(ParsedSpec spec) : spec_(std::move(spec)) {
    const std::string file = spec_.params.text("file");
    if (file.empty()) throw std::invalid_argument("task 'longbench' needs file=PATH (a LongBench <dataset>.jsonl)");
    dataset_ = basename_dataset(file);
    metric_ = longbench::metric_of(dataset_);  // throws for datasets LongBench does not define
    if (!metric_) return;                        // Chinese: cells are recorded unsupported
    const std::string config = spec_.params.text("config");
    if (config.empty()) {
      throw std::invalid_argument("task 'longbench' needs config=DIR, the config folder of a LongBench checkout "
                                  "(dataset2prompt.json, dataset2maxlen.json)");
    }
    const nlohmann::json prompts = load_json(config + "/dataset2prompt.json");
    const nlohmann::json maxlen = load_json(config + "/dataset2maxlen.json");
    if (!prompts.contains(dataset_) || !prompts[dataset_].is_string()) {
      throw std::invalid_argument(config + "/dataset2prompt.json has no template for '" + dataset_ + "'");
    }
    if (!maxlen.contains(dataset_) || !maxlen[dataset_].is_number_integer()) {
      throw std::invalid_argument(config + "/dataset2maxlen.json has no max length for '" + dataset_ + "'");
    }
    template_ = prompts[dataset_].get<std::string>();
    max_new_ = maxlen[dataset_].get<int64_t>();
    records_ = cached_records(file);
    count_ = records_->size();
    const int64_t cap = spec_.params.integer("max_samples");
    if (cap > 0 && static_cast<int64_t>(count_) > cap) count_ = static_cast<size_t>(cap);
  }

  std::string spec() const override { return spec_.canonical; }
  int version() const override { return 1; }
  int metric_version() const override { return 1; }
  int64_t samples() const override { return static_cast<int64_t>(count_); }
  bool cacheable() const override { return false; }
  std::optional<std::string> unsupported() const override {
    if (metric_) return std::nullopt;
    return "LongBench dataset '" + dataset_ + "' is Chinese: lcb has no word segmenter for its metric";
  }

  datasets::TextSample make(const CellParams& cell, const datasets::Tokenizer& tok) const override {
    return make_at(cell, tok, 0);
  }

  datasets::TextSample make_at(const CellParams& cell, const datasets::Tokenizer& tok, int64_t index) const override {
    const Record& r = record(index);
    std::vector<int64_t> ids = tok.encode(format_template(template_, r));
    datasets::TextSample s;
    s.record = index;
    s.original_tokens = static_cast<int64_t>(ids.size());
    const int64_t window = cell.length - 1 - max_new_;
    if (window < 2) {
      throw std::invalid_argument("length " + std::to_string(cell.length) + " leaves no room for a prompt after " +
                                  std::to_string(max_new_) + " new tokens of " + dataset_);
    }
    if (static_cast<int64_t>(ids.size()) > window) {
      s.truncated = true;
      const std::string policy = spec_.params.text("truncation");
      if (policy == "skip") {
        s.skipped = true;
      } else if (policy == "middle") {
        const int64_t half = window / 2;
        std::vector<int64_t> kept(ids.begin(), ids.begin() + half);
        kept.insert(kept.end(), ids.end() - half, ids.end());
        ids = std::move(kept);
      } else {
        ids.erase(ids.begin(), ids.end() - window);
      }
    }
    s.prompt.push_back(tok.bos_id());
    s.prompt.insert(s.prompt.end(), ids.begin(), ids.end());
    s.answer = r.answers.front();
    s.expected = r.answers;
    return s;
  }

  int64_t max_new_tokens(const datasets::TextSample&) const override { return max_new_; }

  Score score(const datasets::TextSample& s, const std::string& generated) const override {
    const Record& r = record(s.record);
    Score sc;
    sc.n_scored = 1;
    sc.accuracy = longbench::score_prediction(dataset_, generated, r.answers, record(static_cast<int64_t>(count_) - 1).all_classes);
    sc.item_scores = {sc.accuracy};
    const std::string extracted = longbench::apply_first_line_rule(dataset_, generated);
    sc.details = {{"dataset", dataset_},   {"_id", r.id},          {"length", r.length}, {"prediction", generated},
                  {"extracted", extracted},
                  {"score", sc.accuracy},  {"truncated", s.truncated}, {"original_tokens", s.original_tokens}};
    return sc;
  }

 private:
  ParsedSpec spec_;
  std::string dataset_, template_;
  std::optional<std::string> metric_;
  int64_t max_new_ = 0;
  const Record& record(int64_t i) const {
    if (i < 0 || static_cast<size_t>(i) >= count_) throw std::out_of_range("longbench: record " + std::to_string(i));
    return (*records_)[static_cast<size_t>(i)];
  }

  std::shared_ptr<const std::vector<Record>> records_;  // shared with other tasks on the same file
  size_t count_ = 0;                                     // records used (max_samples)
};

}  // namespace

int longbench_files_parsed() { return files_parsed_counter(); }

TaskEntry longbench_entry() {
  TaskEntry e;
  e.family = "longbench";
  e.summary = "model: a LongBench JSONL file with LongBench's templates and metrics";
  e.kind = TaskKind::Model;
  e.params = {ParamDef::text("file", "", "LongBench <dataset>.jsonl"),
              ParamDef::text("config", "", "LongBench's config folder (dataset2prompt.json, dataset2maxlen.json)"),
              ParamDef::choice("truncation", "middle", {"middle", "head", "skip"}, "how prompts longer than the cell are cut"),
              ParamDef::integer("max_samples", 0, 0, 1 << 30, "records to score (0: all)")};
  e.make_model = [](const ParsedSpec& p) { return std::make_unique<LongBenchTask>(p); };
  return e;
}

}  // namespace lcb::tasks
