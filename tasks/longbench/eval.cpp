#include "tasks/longbench/eval.h"

#include "tasks/longbench/metrics.h"

#include <dirent.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <stdexcept>

namespace lcb::longbench {
std::vector<std::string> string_list(const nlohmann::json& v, const std::string& where, const char* field) {
  if (v.is_null()) return {};
  if (!v.is_array()) throw std::invalid_argument(where + ": field '" + field + "' must be a list of strings");
  std::vector<std::string> out;
  for (const auto& x : v) {
    if (!x.is_string()) throw std::invalid_argument(where + ": field '" + field + "' must be a list of strings");
    out.push_back(x.get<std::string>());
  }
  return out;
}

std::vector<PredictionRecord> load_predictions(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("cannot read " + path);
  std::vector<PredictionRecord> out;
  std::string line;
  for (int64_t no = 1; std::getline(in, line); ++no) {
    const std::string where = path + ":" + std::to_string(no);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw std::invalid_argument(where + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object()) throw std::invalid_argument(where + ": a record must be a JSON object");
    for (const char* field : {"pred", "answers", "all_classes"}) {
      if (!j.contains(field)) {
        throw std::invalid_argument(where + ": field '" + field + "' is missing (required: pred, answers, all_classes)");
      }
    }
    PredictionRecord r;
    if (!j["pred"].is_string()) throw std::invalid_argument(where + ": field 'pred' must be a string");
    r.pred = j["pred"].get<std::string>();
    r.answers = string_list(j["answers"], where, "answers");
    if (r.answers.empty()) throw std::invalid_argument(where + ": field 'answers' must hold at least one answer");
    r.all_classes = string_list(j["all_classes"], where, "all_classes");
    if (j.contains("length")) {
      if (!j["length"].is_number_integer()) throw std::invalid_argument(where + ": field 'length' must be an integer");
      r.length = j["length"].get<int64_t>();
    }
    out.push_back(std::move(r));
  }
  return out;
}

nlohmann::json score_dataset(const std::string& dataset, const std::vector<PredictionRecord>& records, bool e) {
  if (records.empty()) throw std::invalid_argument("dataset " + dataset + ": no predictions");
  const std::vector<std::string>& all_classes = records.back().all_classes;
  if (!e) {
    double total = 0.;
    for (const auto& r : records) total += score_prediction(dataset, r.pred, r.answers, all_classes);
    return python_round2(100 * total / static_cast<double>(records.size()));
  }
  std::vector<double> b0, b4, b8;
  for (const auto& r : records) {
    if (!r.length) throw std::invalid_argument("dataset " + dataset + ": LongBench-E needs the 'length' field in every record");
    const double s = score_prediction(dataset, r.pred, r.answers, all_classes);
    (*r.length < 4000 ? b0 : *r.length < 8000 ? b4 : b8).push_back(s);
  }
  auto bucket = [](const std::vector<double>& v) -> nlohmann::json {
    if (v.empty()) return nullptr;
    return numpy_round2(100 * (numpy_sum(v) / static_cast<double>(v.size())));
  };
  return {{"0-4k", bucket(b0)}, {"4-8k", bucket(b4)}, {"8k+", bucket(b8)}};
}

nlohmann::json evaluate_dir(const std::string& dir, bool e) {
  DIR* d = opendir(dir.c_str());
  if (!d) throw std::invalid_argument("cannot open prediction folder " + dir);
  std::vector<std::string> files;
  while (dirent* ent = readdir(d)) {
    const std::string name = ent->d_name;
    if (name.size() > 5 && name.compare(name.size() - 5, 5, "jsonl") == 0) files.push_back(name);
  }
  closedir(d);
  if (files.empty()) throw std::invalid_argument("no *.jsonl prediction files in " + dir);
  nlohmann::json result = nlohmann::json::object();
  for (const auto& f : files) {
    const std::string dataset = f.substr(0, f.find('.'));
    if (!metric_of(dataset)) {
      result[dataset] = "unsupported: Chinese dataset, no word segmenter in lcb";
      continue;
    }
    result[dataset] = score_dataset(dataset, load_predictions(dir + "/" + f), e);
  }
  return result;
}

}  // namespace lcb::longbench
