// The text side of lcb: the sentencepiece tokenizer, the synthetic long-context text tasks, the
// model tasks' scoring, `lcb train` (config errors and a CPU smoke run) and `lcb run` over a
// model task. One tokenizer and one tiny random Llama are built per process, on first use.
#include "datasets/synthetic_text.h"
#include "datasets/tokenizer.h"
#include "harness/config.h"
#include "harness/llama.h"
#include "harness/runner.h"
#include "harness/samples.h"
#include "harness/store.h"
#include "harness/train.h"
#include "tasks/task.h"
#include "tests/temp_dir.h"
#include "tests/test_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <dirent.h>

#include <fstream>
#include <functional>
#include <map>
#include <sstream>

namespace lcb {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

datasets::Tokenizer trained_tokenizer(const test::TempDir& dir, const std::string& out_dir) {
  const std::string corpus = dir.file("corpus.txt");
  std::ofstream(corpus) << datasets::tokenizer_corpus(3000, 0);
  datasets::train_tokenizer(corpus, 512, out_dir);
  return datasets::Tokenizer::load(out_dir);
}

struct Fixture {
  test::TempDir dir;
  std::string tokenizer_dir = dir.file("tokenizer");
  std::string model_dir = dir.file("model");
  datasets::Tokenizer tok = trained_tokenizer(dir, tokenizer_dir);

  Fixture() {
    model::LlamaConfig c;
    c.vocab_size = tok.vocab_size();
    c.hidden_size = 32;
    c.intermediate_size = 64;
    c.num_layers = 2;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 8;
    c.tie_word_embeddings = true;
    c.bos_token_id = tok.bos_id();
    c.eos_token_ids = {tok.eos_id()};
    model::Llama m(c);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(17);
    {
      at::NoGradGuard no_grad;
      for (auto& p : m->parameters()) p.copy_(at::normal(0.0, 0.3, p.sizes(), gen, at::TensorOptions().dtype(at::kFloat)));
    }
    model::save_llama(m, model_dir, at::kFloat);
    std::ifstream src(tokenizer_dir + "/tokenizer.model", std::ios::binary);
    std::ofstream(model_dir + "/tokenizer.model", std::ios::binary) << src.rdbuf();
  }
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a std::invalid_argument: " << e.what();
    return "";
  }
  return "no error";
}

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

TEST(Tokenizer, RoundTripsIdsAndHash) {
  const auto& tok = fixture().tok;
  EXPECT_EQ(tok.vocab_size(), 512);
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  for (const std::string s : {"The quiet river watched the garden.", "What is the pass key? The pass key is 40721.",
                              "VAR QWERT = VAR ZXCVB.", "key lantern-0042 has value 913370."}) {
    const auto ids = tok.encode(s);
    ASSERT_FALSE(ids.empty()) << s;
    for (int64_t id : ids) {
      EXPECT_GE(id, 0) << s;
      EXPECT_LT(id, tok.vocab_size()) << s;
      EXPECT_NE(id, 3) << "unknown piece in '" << s << "'";
    }
    EXPECT_EQ(tok.decode(ids), s);
  }
  const std::string& h = tok.hash();
  EXPECT_EQ(h.size(), 16u);
  EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos) << h;
  EXPECT_EQ(datasets::Tokenizer::load(fixture().tokenizer_dir).hash(), h);
  EXPECT_EQ(datasets::Tokenizer::load(fixture().model_dir).hash(), h);
}

TEST(Tokenizer, MissingModelFileIsAClearError) {
  test::TempDir dir;
  const std::string empty = dir.file("empty");
  ASSERT_EQ(mkdir(empty.c_str(), 0755), 0);
  const std::string err = error_of([&] { datasets::Tokenizer::load(empty); });
  EXPECT_TRUE(contains(err, empty + " has no tokenizer.model")) << err;
}

TEST(SyntheticText, ExactLengthAnswerInPromptDeterministic) {
  const auto& tok = fixture().tok;
  for (const auto& task : datasets::text_task_names()) {
    for (const int64_t length : {200, 512}) {
      const auto s = datasets::make_text_sample(task, length, 0.5, 3, tok);
      EXPECT_EQ(static_cast<int64_t>(s.prompt.size()), length) << task;
      ASSERT_FALSE(s.prompt.empty());
      EXPECT_EQ(s.prompt[0], tok.bos_id()) << task;
      const std::string text = tok.decode(s.prompt);
      ASSERT_FALSE(s.expected.empty()) << task;
      for (const auto& e : s.expected) EXPECT_TRUE(contains(text, e)) << task << " L=" << length << ": '" << e << "' missing";
      if (task == "variable_tracking") {
        EXPECT_EQ(s.expected.size(), 4u);
      } else {
        EXPECT_EQ(s.expected, std::vector<std::string>{s.answer}) << task;
      }
      ASSERT_FALSE(s.answer_ids.empty());
      EXPECT_EQ(s.answer_ids.back(), tok.eos_id()) << task;
      EXPECT_EQ(tok.decode(s.answer_ids), s.answer) << task;

      const auto again = datasets::make_text_sample(task, length, 0.5, 3, tok);
      EXPECT_EQ(again.prompt, s.prompt) << task;
      EXPECT_EQ(again.answer, s.answer) << task;
      const auto other = datasets::make_text_sample(task, length, 0.5, 4, tok);
      EXPECT_NE(other.answer, s.answer) << task;
    }
    const auto early = datasets::make_text_sample(task, 512, 0.1, 3, tok);
    const auto late = datasets::make_text_sample(task, 512, 0.9, 3, tok);
    EXPECT_LT(early.needle_token, late.needle_token) << task;
    EXPECT_GT(early.needle_token, 0) << task;
  }
}

TEST(SyntheticText, BadLengthOrTaskIsAnError) {
  const auto& tok = fixture().tok;
  const std::string short_err = error_of([&] { datasets::make_text_sample("passkey", 10, 0.5, 0, tok); });
  EXPECT_TRUE(contains(short_err, "too short")) << short_err;
  const std::string unknown = error_of([&] { datasets::make_text_sample("passkee", 256, 0.5, 0, tok); });
  EXPECT_TRUE(contains(unknown, "passkee")) << unknown;
  EXPECT_TRUE(contains(unknown, "passkey, niah_single, kv_retrieval, variable_tracking")) << unknown;
}

TEST(ModelTasks, KindsSpecsAndScoring) {
  EXPECT_EQ(tasks::task_kind("passkey"), tasks::TaskKind::Model);
  EXPECT_EQ(tasks::task_kind("needle_qkv"), tasks::TaskKind::Attention);
  EXPECT_EQ(tasks::canonical_task("passkey"), "passkey:extra_tokens=2");
  EXPECT_TRUE(contains(error_of([] { tasks::make_task("passkey"); }), "runs through a model"));
  EXPECT_TRUE(contains(error_of([] { tasks::make_model_task("needle_qkv"); }), "not a model task"));
  EXPECT_TRUE(contains(error_of([] { tasks::task_kind("bogus"); }), "known tasks: needle_qkv, passkey"));

  const auto& tok = fixture().tok;
  const auto passkey = tasks::make_model_task("passkey");
  EXPECT_EQ(passkey->spec(), "passkey:extra_tokens=2");
  const auto s = passkey->make({128, 0.5, 0, 1}, tok);
  EXPECT_EQ(s.prompt.size(), 128u);
  EXPECT_EQ(passkey->max_new_tokens(s), static_cast<int64_t>(s.answer_ids.size()) + 2);
  const tasks::Score right = passkey->score(s, " " + s.answer + "\nmore");
  EXPECT_EQ(right.accuracy, 1.0);
  EXPECT_EQ(right.n_scored, 1);
  EXPECT_EQ(right.details.at("extracted"), s.answer);
  std::string wrong = s.answer;
  wrong[0] = wrong[0] == '9' ? '1' : static_cast<char>(wrong[0] + 1);
  EXPECT_EQ(passkey->score(s, " " + wrong).accuracy, 0.0);
  EXPECT_EQ(passkey->score(s, " " + s.answer + "0").accuracy, 0.0);

  const auto vt = tasks::make_model_task("variable_tracking");
  const auto v = vt->make({256, 0.5, 0, 1}, tok);
  ASSERT_EQ(v.expected.size(), 4u);
  EXPECT_EQ(vt->score(v, " " + v.expected[0] + " " + v.expected[2]).accuracy, 0.5);
  EXPECT_EQ(vt->score(v, " " + v.answer).accuracy, 1.0);
  EXPECT_EQ(vt->score(v, "\n" + v.answer).accuracy, 0.0);
}

nlohmann::json train_json() { return {{"tokenizer", fixture().tokenizer_dir}, {"steps", 60}, {"lr", 3e-3}}; }

std::string train_config_error(const std::string& key, const nlohmann::json& value) {
  nlohmann::json j = train_json();
  j[key] = value;
  return error_of([&] { train::parse_train_config(j, "train.json"); });
}

TEST(TrainConfig, ErrorsNameTheField) {
  const auto c = train::parse_train_config(train_json(), "train.json");
  EXPECT_EQ(c.steps, 60);
  EXPECT_DOUBLE_EQ(c.lr, 3e-3);
  const std::string unknown = train_config_error("stepz", 5);
  EXPECT_TRUE(contains(unknown, "train.json: unknown field 'stepz'")) << unknown;
  EXPECT_TRUE(contains(unknown, "steps")) << unknown;
  const std::string type = train_config_error("steps", "60");
  EXPECT_TRUE(contains(type, "field 'steps'")) << type;
  EXPECT_TRUE(contains(train_config_error("tie_word_embeddings", 1), "field 'tie_word_embeddings'"));
  const std::string task = train_config_error("tasks", {"passkey", "passkee"});
  EXPECT_TRUE(contains(task, "unknown task 'passkee'")) << task;
  const std::string attention = train_config_error("attention", "dga:m=0");
  EXPECT_TRUE(contains(attention, "field 'attention'")) << attention;
}

// Values that parse_train_config lets through although train() cannot use them.
TEST(TrainConfig, BadListElementsAndZeroEvalEveryNameTheField) {
  const std::string task = train_config_error("tasks", {1});
  EXPECT_TRUE(contains(task, "field 'tasks'")) << task;
  const std::string length = train_config_error("eval_lengths", {"long"});
  EXPECT_TRUE(contains(length, "field 'eval_lengths'")) << length;
  const std::string every = train_config_error("eval_every", 0);
  EXPECT_TRUE(contains(every, "field 'eval_every'")) << every;
}

TEST(TrainConfig, ContinuedRunTakesItsShapeFromTheCheckpoint) {
  nlohmann::json j = train_json();
  j["init"] = "some/model";
  EXPECT_EQ(train::parse_train_config(j, "train.json").init, "some/model");
  j["num_layers"] = 6;
  const std::string conflict = error_of([&] { train::parse_train_config(j, "train.json"); });
  EXPECT_TRUE(contains(conflict, "field 'num_layers' conflicts with 'init'")) << conflict;
}

TEST(Train, SmokeRunLearnsAndWritesAModelDirectory) {
  test::TempDir dir;
  train::TrainConfig cfg;
  cfg.tokenizer = fixture().tokenizer_dir;
  cfg.hidden_size = 32;
  cfg.intermediate_size = 64;
  cfg.num_layers = 2;
  cfg.num_heads = 4;
  cfg.num_kv_heads = 2;
  cfg.tasks = {"passkey"};
  cfg.min_length = 64;
  cfg.max_length = 128;
  cfg.batch_tokens = 1024;
  cfg.steps = 60;
  cfg.warmup = 5;
  cfg.lr = 3e-3;
  cfg.eval_every = 60;
  cfg.eval_samples = 2;
  cfg.eval_lengths = {128};
  cfg.device = "cpu";
  const std::string out = dir.file("trained");
  const auto res = train::train(cfg, out, /*quiet=*/true);
  EXPECT_EQ(res.steps, 60);
  EXPECT_GT(res.tokens, 0);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.model", "train_config.json", "train_log.jsonl"}) {
    EXPECT_TRUE(exists(out + "/" + f)) << f;
  }
  std::vector<nlohmann::json> log;
  std::istringstream lines(read_text(out + "/train_log.jsonl"));
  for (std::string line; std::getline(lines, line);) log.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(log.size(), 60u);
  const double first = log.front().at("loss").get<double>();
  EXPECT_NEAR(first, std::log(static_cast<double>(fixture().tok.vocab_size())), 0.5);
  double last10 = 0;
  for (size_t i = 50; i < 60; ++i) last10 += log[i].at("loss").get<double>() / 10;
  EXPECT_LT(last10, first - 1.0) << "first " << first << ", mean of the last 10 " << last10;
  const double acc = log.back().at("eval").at("passkey").at("128").get<double>();
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 1.0);
  EXPECT_EQ(nlohmann::json::parse(read_text(out + "/train_config.json")).at("steps_done"), 60);
  EXPECT_EQ(datasets::Tokenizer::load(out).hash(), fixture().tok.hash());

  // Continued training starts from the saved weights: its first loss is where the first run
  // ended, not the untrained log(V); the shape comes from the checkpoint.
  train::TrainConfig more = cfg;
  more.init = out;
  more.hidden_size = 999;  // ignored: the checkpoint's shape wins
  more.steps = 5;
  more.eval_every = 5;
  const std::string out2 = dir.file("continued");
  train::train(more, out2, /*quiet=*/true);
  std::istringstream lines2(read_text(out2 + "/train_log.jsonl"));
  std::string line2;
  ASSERT_TRUE(static_cast<bool>(std::getline(lines2, line2)));
  const double continued_first = nlohmann::json::parse(line2).at("loss").get<double>();
  EXPECT_LT(continued_first, first - 1.0) << "continued run starts at " << continued_first;
  const auto tc2 = nlohmann::json::parse(read_text(out2 + "/train_config.json"));
  EXPECT_EQ(tc2.at("hidden_size"), 32);
  EXPECT_EQ(tc2.at("init"), out);

  model::Llama m = model::load_llama(out, at::kCPU, at::kFloat);
  EXPECT_EQ(m->config().vocab_size, fixture().tok.vocab_size());
  const auto ids = fixture().tok.encode("The pass key is 12345.");
  const at::Tensor logits = m->forward(at::tensor(ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0));
  EXPECT_EQ(logits.sizes(), (at::IntArrayRef{1, static_cast<int64_t>(ids.size()), fixture().tok.vocab_size()}));
  EXPECT_TRUE(test::all_finite(logits));
}

harness::RunConfig model_run_config(const std::string& model_dir) {
  harness::RunConfig c;
  c.impls = {"dense", "swa:window=32", "dga:m=4,gamma=0.25"};
  c.tasks = {"passkey", "variable_tracking"};
  c.lengths = {128};
  c.depths = {0.5};
  c.seeds = {0};
  c.device = "cpu";
  c.repeats = 1;
  c.warmup = 0;
  c.model = model_dir;
  harness::validate_config(c, "test");
  return c;
}

TEST(Runner, ModelTaskCellsAreTimedScoredAndSkippedOnRerun) {
  test::TempDir dir;
  harness::RunOptions o;
  o.db_path = dir.file("results.sqlite");
  o.quiet = true;
  const auto sum = harness::run_sweep(model_run_config(fixture().model_dir), o);
  EXPECT_EQ(sum.total, 6);
  EXPECT_EQ(sum.ok, 6);

  const auto cells = store::Store(o.db_path).cells();
  ASSERT_EQ(cells.size(), 6u);
  std::map<std::string, int64_t> dense_cache;
  for (const auto& c : cells) {
    const std::string what = c.impl + " " + c.task;
    ASSERT_EQ(c.status, "ok") << what << ": " << c.message;
    ASSERT_TRUE(c.latency_ms_median && c.decode_ms_median && c.kv_cache_bytes && c.attention_flops && c.rel_l2_error) << what;
    EXPECT_GT(*c.latency_ms_median, 0) << what;
    EXPECT_GT(c.decode_steps, 0) << what;
    EXPECT_GT(*c.decode_ms_median, 0) << what;
    EXPECT_GT(*c.kv_cache_bytes, 0) << what;
    EXPECT_GT(*c.attention_flops, 0) << what;
    if (c.impl == "dense") {
      EXPECT_EQ(*c.rel_l2_error, 0.0) << what;
      dense_cache[c.task] = *c.kv_cache_bytes;
    }
    const auto extra = nlohmann::json::parse(c.extra_json);
    EXPECT_TRUE(extra.contains("prediction")) << what;
    EXPECT_TRUE(extra.contains("prompt_hash")) << what;
    EXPECT_EQ(extra.at("prompt_tokens"), 128) << what;
    EXPECT_FALSE(contains(c.extra_json, "Find it and memorize it")) << what;
    EXPECT_FALSE(contains(c.extra_json, "track the chain of variable assignments")) << what;
  }
  ASSERT_EQ(dense_cache.size(), 2u);
  for (const auto& c : cells) {
    if (c.impl_family == "swa") {
      EXPECT_LT(*c.kv_cache_bytes, dense_cache.at(c.task)) << c.task;
    }
  }

  const auto again = harness::run_sweep(model_run_config(fixture().model_dir), o);
  EXPECT_EQ(again.skipped, 6);
  EXPECT_EQ(again.ok, 0);
  EXPECT_EQ(store::Store(o.db_path).cells().size(), 6u);
}

TEST(Runner, ModelDirectoryWithoutFilesFailsBeforeAnyCell) {
  test::TempDir dir;
  const std::string empty_model = dir.file("empty_model");
  ASSERT_EQ(mkdir(empty_model.c_str(), 0755), 0);
  harness::RunOptions o;
  o.db_path = dir.file("results.sqlite");
  o.quiet = true;
  const std::string err = error_of([&] { harness::run_sweep(model_run_config(empty_model), o); });
  EXPECT_TRUE(contains(err, empty_model)) << err;
  EXPECT_TRUE(contains(err, "has no tokenizer.model")) << err;
  if (exists(o.db_path)) {
    EXPECT_TRUE(store::Store(o.db_path).cells().empty());
  }
}

}  // namespace
}  // namespace lcb

namespace lcb {
namespace {

// A LongBench file through the model: templates from a config folder (our own test templates),
// truncation in tokens after templating, LongBench's metric per record, per-sample outcomes.
TEST(LongBenchRun, RecordsAreTemplatedTruncatedScoredAndStored) {
  test::TempDir dir;
  mkdir(dir.file("config").c_str(), 0755);
  std::ofstream(dir.file("config/dataset2prompt.json"))
      << R"({"hotpotqa": "Passages: {context}\n\nQuestion: {input} {{braces}}\nAnswer:", "lsht": "{context}", "qasper": "{input}"})";
  std::ofstream(dir.file("config/dataset2maxlen.json")) << R"({"hotpotqa": 4, "lsht": 4, "qasper": 4})";
  std::string long_context;
  for (int i = 0; i < 60; ++i) long_context += "The quiet river watched the garden. ";
  std::ofstream data(dir.file("hotpotqa.jsonl"));
  for (int i = 0; i < 3; ++i) {
    data << nlohmann::json{{"input", "Which river?"}, {"context", i == 2 ? long_context : "The quiet river."},
                           {"answers", {"river"}}, {"length", 100 + 5000 * i}, {"dataset", "hotpotqa"}, {"language", "en"},
                           {"all_classes", nullptr}, {"_id", "id" + std::to_string(i)}}
                .dump()
         << "\n";
  }
  data.close();
  std::ofstream(dir.file("lsht.jsonl")) << R"({"input": "", "context": "x", "answers": ["a"], "length": 1, "dataset": "lsht", "language": "zh", "all_classes": ["a"], "_id": "z"})"
                                        << "\n";
  harness::RunConfig c;
  c.impls = {"dense", "swa:window=16"};
  c.tasks = {"longbench:file=" + dir.file("hotpotqa.jsonl") + ",config=" + dir.file("config"),
             "longbench:file=" + dir.file("lsht.jsonl") + ",config=" + dir.file("config")};
  c.lengths = {128};
  c.device = "cpu";
  c.repeats = 1;
  c.warmup = 0;
  c.model = fixture().model_dir;
  const int parsed_before = tasks::longbench_files_parsed();
  harness::validate_config(c, "test");
  harness::RunOptions o;
  o.db_path = dir.file("r.sqlite");
  o.quiet = true;
  const auto sum = harness::run_sweep(c, o);
  EXPECT_EQ(sum.ok, 2);
  EXPECT_EQ(sum.unsupported, 2);  // lsht is Chinese
  EXPECT_EQ(tasks::longbench_files_parsed(), parsed_before + 1) << "validation and the sweep share one parse";
  for (const auto& cell : store::Store(o.db_path).cells()) {
    if (cell.status == "unsupported") {
      EXPECT_TRUE(contains(cell.message, "Chinese")) << cell.message;
      continue;
    }
    EXPECT_EQ(cell.n_scored, 3);
    const auto extra = nlohmann::json::parse(cell.extra_json);
    ASSERT_EQ(extra["samples"].size(), 3u);
    double sum_scores = 0;
    for (const auto& s : extra["samples"]) {
      EXPECT_EQ(s["dataset"], "hotpotqa");
      EXPECT_LE(s["prompt_tokens"].get<int64_t>(), 128 - 4);
      sum_scores += s["score"].get<double>();
    }
    EXPECT_DOUBLE_EQ(*cell.accuracy, sum_scores / 3);
    EXPECT_FALSE(extra["samples"][0]["truncated"].get<bool>());
    EXPECT_TRUE(extra["samples"][2]["truncated"].get<bool>());  // 60 sentences do not fit 128 tokens
    EXPECT_GT(extra["samples"][2]["original_tokens"].get<int64_t>(), 128);
    EXPECT_FALSE(contains(cell.extra_json, "The quiet river watched")) << "contexts are never stored";
  }
  // A changed file is read again.
  std::ofstream(dir.file("hotpotqa.jsonl"), std::ios::app)
      << nlohmann::json{{"input", "Which river?"}, {"context", "The river."}, {"answers", {"river"}}, {"length", 7},
                        {"dataset", "hotpotqa"}, {"language", "en"}, {"all_classes", nullptr}, {"_id", "id9"}}
             .dump()
      << "\n";
  EXPECT_EQ(tasks::make_model_task(c.tasks[0])->samples(), 4);
  EXPECT_EQ(tasks::longbench_files_parsed(), parsed_before + 2);
  // A record missing a field names the file, line and field before any cell runs.
  std::ofstream(dir.file("qasper.jsonl")) << R"({"input": "q", "context": "c"})" << "\n";
  c.tasks = {"longbench:file=" + dir.file("qasper.jsonl") + ",config=" + dir.file("config")};
  const std::string err = error_of([&] { harness::validate_config(c, "test"); });
  EXPECT_TRUE(contains(err, "qasper.jsonl:1: field 'answers' is missing")) << err;
}

}  // namespace
}  // namespace lcb

namespace lcb {
namespace {

int64_t occurrences(const std::string& text, const std::string& word) {
  int64_t n = 0;
  for (size_t p = text.find(word); p != std::string::npos; p = text.find(word, p + 1)) ++n;
  return n;
}

// RULER-style needles: exact length, every value of the asked keys expected, distractor keys
// present but not expected; multi-value and multi-query counts; scoring all vs part.
TEST(Ruler, NiahVariantsPlantWhatTheyAsk) {
  const auto& tok = fixture().tok;
  const auto task = tasks::make_model_task("niah:keys=word,values=number,needles=4,values_per_key=2,queries=2");
  const auto s = task->make({900, 0.25, 3, 1}, tok);
  ASSERT_EQ(s.prompt.size(), 900u);
  ASSERT_EQ(s.expected.size(), 4u);  // 2 asked keys x 2 values
  const std::string text = tok.decode(s.prompt);
  EXPECT_EQ(occurrences(text, "One of the special magic numbers for"), 8);  // 4 keys x 2 values
  for (const auto& v : s.expected) EXPECT_EQ(occurrences(text, v), 1) << v;
  const auto all = task->score(s, s.expected[0] + " " + s.expected[1]);
  EXPECT_DOUBLE_EQ(all.accuracy, 0.5);
  const auto part = tasks::make_model_task("niah:needles=4,values_per_key=2,queries=2,metric=part")->score(s, s.expected[3]);
  EXPECT_DOUBLE_EQ(part.accuracy, 1.0);
  const auto uuid = tasks::make_model_task("niah:keys=uuid,values=uuid")->make({1024, 0.5, 1, 1}, tok);
  ASSERT_EQ(uuid.expected.size(), 1u);
  EXPECT_EQ(uuid.expected[0].size(), 36u);
  EXPECT_THROW(tasks::make_model_task("niah:needles=1,queries=2"), std::invalid_argument);
}

// cwe / fwe: the expected words are the most frequent words of the prompt as generated.
TEST(Ruler, CommonAndFrequentWordsAreTheMostFrequent) {
  const auto& tok = fixture().tok;
  for (const std::string spec : {"cwe", "fwe", "cwe:top=3"}) {
    const auto task = tasks::make_model_task(spec);
    const auto s = task->make({1500, 0.5, 2, 1}, tok);
    ASSERT_EQ(s.prompt.size(), 1500u) << spec;
    const std::string text = tok.decode(s.prompt);
    int64_t least_expected = INT64_MAX;
    for (const auto& w : s.expected) least_expected = std::min(least_expected, occurrences(text, " " + w));
    EXPECT_GE(least_expected, 2) << spec;
    EXPECT_DOUBLE_EQ(task->score(s, s.answer).accuracy, 1.0) << spec;
  }
}

TEST(Generate, ExportsOnePromptPerCell) {
  harness::RunConfig c;
  c.impls = {"dense"};
  c.tasks = {"passkey", "niah:needles=2"};
  c.lengths = {256, 512};
  c.depths = {0.1, 0.9};
  c.model = fixture().model_dir;
  harness::validate_config(c, "test");
  const auto lines = harness::export_samples(c);
  ASSERT_EQ(lines.size(), 8u);
  for (const auto& l : lines) {
    EXPECT_EQ(l["prompt_tokens"].get<int64_t>(), l["length"].get<int64_t>());
    EXPECT_NE(l["prompt"].get<std::string>().find(l["expected"][0].get<std::string>()), std::string::npos);
    EXPECT_EQ(l["tokenizer"], fixture().tok.hash());
  }
  EXPECT_LT(lines[0]["needle_token"].get<int64_t>(), lines[1]["needle_token"].get<int64_t>());  // depth 0.1 before 0.9
  c.tasks = {"needle_qkv"};
  EXPECT_THROW(harness::export_samples(c), std::invalid_argument);
}

}  // namespace
}  // namespace lcb

namespace lcb {
namespace {

// Synthetic LongBench categories: exact length, the answer recoverable from the prompt, and a
// perfect prediction scores 1 with the category's LongBench metric.
TEST(LongBenchSynthetic, EveryCategoryIsAnswerableAndScored) {
  const auto& tok = fixture().tok;
  for (const auto& kind : datasets::longbench_synthetic_kinds()) {
    const auto task = tasks::make_model_task("lb_synth:kind=" + kind);
    const auto s = task->make({600, 0.4, 5, 1}, tok);
    ASSERT_EQ(s.prompt.size(), 600u) << kind;
    const std::string text = tok.decode(s.prompt);
    // Decoded continuations start without the separating space (sentencepiece drops it).
    const std::string prediction = kind == "passage_retrieval" ? s.answer.substr(10) : s.answer;
    EXPECT_DOUBLE_EQ(task->score(s, prediction).accuracy, 1.0) << kind << " answer " << s.answer;
    EXPECT_LT(task->score(s, " 0 nothing").accuracy, 1.0) << kind;
    if (kind == "single_doc_qa" || kind == "code") {
      EXPECT_TRUE(contains(text, s.answer)) << kind;
    }
    if (kind == "passage_retrieval") {
      EXPECT_TRUE(contains(text, s.answer + ":")) << text.substr(0, 200);
    }
    if (kind == "few_shot") {
      EXPECT_EQ(s.classes.size(), 4u);
      EXPECT_TRUE(contains(text, "Label: " + s.answer));
      // LongBench's rule: leading newlines dropped, then only the first line counts.
      EXPECT_DOUBLE_EQ(task->score(s, "\n\n" + s.answer + "\nLabel: x").accuracy, 1.0);
      EXPECT_EQ(task->metric_version(), 2);
    }
    if (kind == "passage_count") {
      EXPECT_GE(std::stoi(s.answer), 1);
    }
  }
  EXPECT_THROW(tasks::make_model_task("lb_synth:kind=poetry"), std::invalid_argument);
}

// Generated prompts are cached by (task, version, length, depth, seed, tokenizer); an unreadable
// entry is generated again.
TEST(Generate, SamplesAreCachedAndRecoveredFromCorruptEntries) {
  test::TempDir dir;
  setenv("LCB_CACHE_DIR", dir.file("cache").c_str(), 1);
  harness::RunConfig c;
  c.impls = {"dense"};
  c.tasks = {"niah:needles=2", "lb_synth:kind=multi_doc_qa"};
  c.lengths = {400};
  c.model = fixture().model_dir;
  harness::validate_config(c, "test");
  const auto first = harness::export_samples(c);
  DIR* d = opendir(dir.file("cache").c_str());
  ASSERT_NE(d, nullptr);
  std::vector<std::string> entries;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') entries.push_back(e->d_name);
  }
  closedir(d);
  ASSERT_EQ(entries.size(), 2u);
  std::ofstream(dir.file("cache/" + entries[0])) << "{not json";
  EXPECT_EQ(harness::export_samples(c), first);
  unsetenv("LCB_CACHE_DIR");
}

}  // namespace
}  // namespace lcb

namespace lcb {
namespace {

TEST(Ruler, KeyValueJsonPlantsTheAskedPair) {
  const auto& tok = fixture().tok;
  const auto task = tasks::make_model_task("kv_json");
  const auto near = task->make({700, 0.1, 4, 1}, tok), far = task->make({700, 0.9, 4, 1}, tok);
  ASSERT_EQ(near.prompt.size(), 700u);
  ASSERT_EQ(near.expected.size(), 1u);
  EXPECT_EQ(near.expected[0].size(), 36u);
  EXPECT_EQ(occurrences(tok.decode(near.prompt), near.expected[0]), 1);
  EXPECT_LT(near.needle_token, far.needle_token);
  EXPECT_DOUBLE_EQ(task->score(near, "the value is " + near.expected[0]).accuracy, 1.0);
}

}  // namespace
}  // namespace lcb
