// LongBench prediction files (`<dataset>.jsonl`, one {"pred", "answers", "all_classes", "length"}
// record per line) scored the way LongBench's eval.py scores them, into its result.json shape:
// a score per dataset, or per LongBench-E length bucket (0-4k, 4-8k, 8k+ by the `length` field).
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace lcb::longbench {

struct PredictionRecord {
  std::string pred;
  std::vector<std::string> answers;
  std::vector<std::string> all_classes;  // null in the file: empty
  std::optional<int64_t> length;         // words; needed for LongBench-E
};

// A JSON list of strings (null: empty); throws std::invalid_argument "WHERE: field 'F' must be a
// list of strings" otherwise.
std::vector<std::string> string_list(const nlohmann::json& v, const std::string& where, const char* field);

// Reads a JSONL file; throws std::invalid_argument "FILE:LINE: ..." for a malformed line or a
// missing / mistyped field (naming it).
std::vector<PredictionRecord> load_predictions(const std::string& path);

// eval.py's scorer (Python rounding, scores summed in file order; all_classes from the last
// record, as eval.py leaves it) or scorer_e (numpy mean and rounding per bucket; an empty bucket
// is NaN there and null here).
nlohmann::json score_dataset(const std::string& dataset, const std::vector<PredictionRecord>& records, bool e);

// Every *.jsonl in dir: {dataset: score}; Chinese datasets get "unsupported: ..." instead.
// Reads everything before returning, so a bad file leaves no partial result.
nlohmann::json evaluate_dir(const std::string& dir, bool e);

}  // namespace lcb::longbench
