// Synthetic long-context text tasks, generated offline from lcb's own word list and sentence
// templates and sized in tokens of the model's tokenizer:
//   passkey            a 5-digit pass key hidden in filler text;
//   niah_single        one "special magic number" for a key word (a 7-digit value);
//   kv_retrieval       the value of one key among many key/value records;
//   variable_tracking  the names in a chain of assignments VAR X = value, VAR Y = VAR X, ...
// The same construction serves training (`lcb train`) and evaluation (`lcb run`).
#pragma once

#include "datasets/tokenizer.h"

#include <cstdint>
#include <string>
#include <vector>

namespace lcb::datasets {

struct TextSample {
  std::vector<int64_t> prompt;       // BOS, instruction, haystack with the needle, question
  std::string answer;                // the exact expected answer text
  std::vector<std::string> expected; // items that must all appear (one for single answers)
  std::vector<int64_t> answer_ids;   // " " + answer tokens then EOS: the training target
  int64_t needle_token = 0;          // token index where the (first) needle starts
  // Samples drawn from files (LongBench): which record, and how the prompt was fitted.
  int64_t record = -1;
  int64_t original_tokens = 0;  // prompt tokens before truncation
  bool truncated = false;
  bool skipped = false;         // did not fit and the policy is skip: not generated, not scored
  std::vector<std::string> classes;  // label set of classification tasks
};

const std::vector<std::string>& text_task_names();

// Exactly `length` prompt tokens (throws std::invalid_argument when the task cannot fit or the
// name is unknown); needle at `depth` of the haystack; deterministic in `seed`.
TextSample make_text_sample(const std::string& task, int64_t length, double depth, uint64_t seed, const Tokenizer& tok);

// RULER-style tasks (NVIDIA's RULER definitions on lcb's own text):
//   niah  needles "One of the special magic {values} for {key} is: {value}." with word, 7-digit
//         number or UUID keys and values; `needles` distinct keys (the others are distractors),
//         `values_per_key` values each (multi-value), `queries` keys asked at once (multi-query);
//   kv    key-value retrieval from a JSON object of UUID pairs;
//   cwe   common words extraction: the `top` words repeated most often in a numbered word list;
//   fwe   frequent words extraction: the `top` most frequent coded words of a Zipf-distributed text.
struct RulerParams {
  std::string kind = "niah";  // niah, kv, cwe, fwe
  std::string keys = "word", values = "number";  // word, number, uuid
  int64_t needles = 1, values_per_key = 1, queries = 1, top = 10;
};
TextSample make_ruler_sample(const RulerParams& p, int64_t length, double depth, uint64_t seed, const Tokenizer& tok);

// Synthetic tasks for LongBench's categories, scored with LongBench's metrics:
//   single_doc_qa     one fact in a document (qa_f1);
//   multi_doc_qa      two facts in different passages joined by a question (qa_f1);
//   passage_count     how many distinct passages, some repeated (count);
//   passage_retrieval which numbered paragraph a sentence comes from (retrieval);
//   few_shot          texts labelled by topic with made-up labels, label a new text (classification);
//   code              complete a function defined earlier in a generated code file (code_sim).
const std::vector<std::string>& longbench_synthetic_kinds();
TextSample make_longbench_synthetic(const std::string& kind, int64_t length, double depth, uint64_t seed, const Tokenizer& tok);

// Lines of text covering every template and task, for training a tokenizer.
std::string tokenizer_corpus(int64_t lines, uint64_t seed);

}  // namespace lcb::datasets
