// LongBench's metrics (THUDM/LongBench, metrics.py and eval.py), reproduced to give the same numbers
// on the same predictions: qa_f1 with its answer normalisation; ROUGE-L F as the `rouge` 1.0.1
// package computes it (sentences split on ".", words on " ", union of unique LCS words over
// sentence pairs, F = 2PR/(P+R+1e-8), 0 when the hypothesis has no sentence); classification with
// its list-mutation quirk; retrieval and count (correct numbers / all numbers); code_sim
// (the first line without `, # or //, then fuzzywuzzy's ratio as difflib.SequenceMatcher computes
// it, autojunk included, rounded like Python's round()). Text is compared as Unicode code points.
// Known limits: lower-casing and \w/\d classes follow ASCII rules (LongBench's English data is
// ASCII text in practice); Chinese datasets have no word segmenter here and are unsupported.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lcb::longbench {

double qa_f1(const std::string& prediction, const std::string& truth);
double rouge_l(const std::string& prediction, const std::string& truth);
double classification(const std::string& prediction, const std::string& truth, const std::vector<std::string>& all_classes);
double retrieval(const std::string& prediction, const std::string& truth);  // truth holds "Paragraph N"
double count(const std::string& prediction, const std::string& truth);
double code_sim(const std::string& prediction, const std::string& truth);

// difflib.SequenceMatcher(None, a, b).ratio() on code points, and fuzzywuzzy's fuzz.ratio.
double sequence_matcher_ratio(const std::u32string& a, const std::u32string& b);
int64_t fuzz_ratio(const std::string& a, const std::string& b);

// The metric LongBench uses for a dataset ("qa_f1", "rouge", "classification", "retrieval",
// "count", "code_sim"), or nullopt for the Chinese datasets; throws std::invalid_argument for a
// dataset LongBench does not define, listing the known ones.
std::optional<std::string> metric_of(const std::string& dataset);

// eval.py's first-line rule: for trec, triviaqa, samsum and lsht the prediction with leading
// newlines dropped, up to its first newline; other datasets' predictions unchanged.
std::string apply_first_line_rule(const std::string& dataset, const std::string& prediction);

// The score of one prediction: the first-line rule, then the maximum over the gold answers.
double score_prediction(const std::string& dataset, const std::string& prediction, const std::vector<std::string>& answers,
                        const std::vector<std::string>& all_classes);

// Python's round(x, 2) (correctly rounded, ties to even on the exact binary value) and numpy's
// round (x·100, rint, /100), as LongBench's eval.py applies them.
double python_round2(double x);
double numpy_round2(double x);
// numpy's pairwise summation (np.mean's), for LongBench-E buckets.
double numpy_sum(const std::vector<double>& v);

std::u32string utf8_to_u32(const std::string& s);
std::string u32_to_utf8(const std::u32string& s);

}  // namespace lcb::longbench
