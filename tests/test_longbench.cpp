// LongBench's metrics and eval.py scoring. The expected values in golden/longbench_metrics.json were
// computed with the published definitions: LongBench's metrics.py formulas, the `rouge` 1.0.1
// package and fuzzywuzzy 0.18.0 without python-Levenshtein (difflib), Python 3.11 and numpy 2.4.
#include "tasks/longbench/eval.h"
#include "tasks/longbench/metrics.h"
#include "tests/temp_dir.h"

#include <gtest/gtest.h>

#include <fstream>

namespace lcb::longbench {
namespace {

nlohmann::json golden() {
  std::ifstream in(std::string(LCB_TEST_DIR) + "/golden/longbench_metrics.json");
  return nlohmann::json::parse(in);
}

TEST(LongBenchMetrics, MatchTheReferenceOnEveryGoldenCase) {
  const auto g = golden();
  ASSERT_GE(g["cases"].size(), 40u);
  for (const auto& c : g["cases"]) {
    const std::string m = c["metric"], p = c["prediction"], t = c["truth"];
    double got = -1;
    if (m == "qa_f1") got = qa_f1(p, t);
    if (m == "rouge") got = rouge_l(p, t);
    if (m == "count") got = count(p, t);
    if (m == "retrieval") got = retrieval(p, t);
    if (m == "code_sim") got = code_sim(p, t);
    if (m == "classification") got = classification(p, t, c["all_classes"].get<std::vector<std::string>>());
    // Bit-exact: the same operations in the same order.
    EXPECT_EQ(got, c["expected"].get<double>()) << m << " prediction=[" << p.substr(0, 60) << "] truth=[" << t.substr(0, 60) << "]";
  }
}

TEST(LongBenchMetrics, RoundingAndSummationAsEvalPy) {
  for (const auto& r : golden()["rounding"]) {
    const auto scores = r["scores"].get<std::vector<double>>();
    double total = 0.;
    for (double s : scores) total += s;
    EXPECT_EQ(python_round2(100 * total / static_cast<double>(scores.size())), r["scorer"].get<double>());
    EXPECT_EQ(numpy_round2(100 * (numpy_sum(scores) / static_cast<double>(scores.size()))), r["scorer_e"].get<double>());
  }
  EXPECT_EQ(python_round2(2.675), 2.67);  // 2.675 is 2.67499999... in binary
  EXPECT_EQ(python_round2(0.125), 0.12);  // exact tie: to even
  EXPECT_EQ(numpy_round2(0.125), 0.12);
}

TEST(LongBenchMetrics, SequenceMatcherAndFuzzRatio) {
  EXPECT_EQ(sequence_matcher_ratio(U"abcd", U"bcde"), 0.75);
  EXPECT_EQ(fuzz_ratio("", ""), 100);  // equivalence is checked before emptiness
  EXPECT_EQ(fuzz_ratio("", "a"), 0);
  EXPECT_EQ(fuzz_ratio("this is a test", "this is a test!"), 97);
}

TEST(LongBenchMetrics, DatasetsAndTheFirstLineRule) {
  EXPECT_EQ(*metric_of("hotpotqa"), "qa_f1");
  EXPECT_EQ(*metric_of("repobench-p"), "code_sim");
  EXPECT_FALSE(metric_of("lsht").has_value());
  EXPECT_THROW(metric_of("hotpot"), std::invalid_argument);
  // trec keeps only the first line; max over several gold answers.
  EXPECT_EQ(score_prediction("trec", "\nlocation\nentity", {"entity", "location"}, {"entity", "location"}), 1.0);
  EXPECT_EQ(score_prediction("triviaqa", "wrong\nParis", {"Paris"}, {}), 0.0);
  EXPECT_EQ(score_prediction("hotpotqa", "Paris", {"London", "paris"}, {}), 1.0);
}

TEST(LongBenchEval, ResultJsonPerDatasetAndPerBucket) {
  test::TempDir dir;
  std::ofstream(dir.file("passage_count.jsonl"))
      << R"({"pred": "There are 3", "answers": ["3"], "all_classes": null, "length": 3500})" << "\n"
      << R"({"pred": "4 or 5", "answers": ["4"], "all_classes": null, "length": 5000})" << "\n"
      << R"({"pred": "none", "answers": ["2"], "all_classes": null, "length": 9000})" << "\n";
  std::ofstream(dir.file("lsht.jsonl")) << R"({"pred": "x", "answers": ["y"], "all_classes": ["y"], "length": 10})" << "\n";
  std::ofstream(dir.file("notes.txt")) << "ignored";
  const auto plain = evaluate_dir(dir.file(""), false);
  EXPECT_EQ(plain["passage_count"].get<double>(), 50.0);  // (1 + 0.5 + 0) / 3
  EXPECT_NE(plain["lsht"].get<std::string>().find("unsupported"), std::string::npos);
  const auto e = evaluate_dir(dir.file(""), true);
  EXPECT_EQ(e["passage_count"]["0-4k"].get<double>(), 100.0);
  EXPECT_EQ(e["passage_count"]["4-8k"].get<double>(), 50.0);
  EXPECT_EQ(e["passage_count"]["8k+"].get<double>(), 0.0);
}

std::string load_error(const std::string& content) {
  test::TempDir dir;
  std::ofstream(dir.file("hotpotqa.jsonl")) << content;
  try {
    load_predictions(dir.file("hotpotqa.jsonl"));
  } catch (const std::invalid_argument& ex) {
    const std::string msg = ex.what();
    return msg.substr(msg.find("hotpotqa.jsonl"));
  }
  return "no error";
}

TEST(LongBenchEval, MalformedLinesNameFileLineAndField) {
  const std::string ok = R"({"pred": "a", "answers": ["a"], "all_classes": null})";
  EXPECT_EQ(load_error(ok + "\n" + ok + "\n{\"pred\": \"a\", \n").rfind("hotpotqa.jsonl:3: not valid JSON", 0), 0u);
  EXPECT_EQ(load_error(ok + "\n" + R"({"pred": "a", "all_classes": null})"),
            "hotpotqa.jsonl:2: field 'answers' is missing (required: pred, answers, all_classes)");
  EXPECT_EQ(load_error(R"({"pred": 3, "answers": ["a"], "all_classes": null})"), "hotpotqa.jsonl:1: field 'pred' must be a string");
  EXPECT_EQ(load_error(R"({"pred": "a", "answers": "a", "all_classes": null})"),
            "hotpotqa.jsonl:1: field 'answers' must be a list of strings");
}

}  // namespace
}  // namespace lcb::longbench
