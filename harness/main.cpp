// lcb — the command-line entry point.
//   lcb run --config FILE.json [--db results.sqlite] [--device auto|cpu|cuda] [flags overriding the file]
//   lcb run --impl dense --impl dga --lengths 1k,4k [--task needle_qkv] [--depths 0.1,0.5] [--seeds 0,1]
//   lcb list impls|tasks
//   lcb show --db results.sqlite [--run ID]
//   lcb report --db results.sqlite --out DIR [--baseline dense] [--filter key=value ...]
//   lcb leaderboard --db results.sqlite [--task T] [--length L] [--baseline dense] [--format text|md|html]
//   lcb check --db results.sqlite (--baseline FILE.json | --baseline-run ID) [--run ID] [tolerances]
//   lcb check --db results.sqlite --write-baseline FILE.json [--run ID]
//   lcb export --db results.sqlite [--format csv|json] [--out FILE]
//   lcb train-tokenizer --out DIR [--vocab 1024] [--lines 20000] [--seed 0]
//   lcb train --config FILE.json --out DIR [--steps N] [--device auto|cpu|cuda]
//   lcb eval-longbench PRED_DIR [--e]
//   lcb generate --task SPEC --lengths 1k,4k [--depths ..] [--seeds ..] [--model DIR] --out FILE.jsonl
#include "attention_impls/registry.h"
#include "datasets/synthetic_text.h"
#include "datasets/tokenizer.h"
#include "harness/config.h"
#include "harness/provenance.h"
#include "harness/runner.h"
#include "harness/samples.h"
#include "harness/store.h"
#include "harness/train.h"
#include "reports/export.h"
#include "reports/gate.h"
#include "reports/leaderboard.h"
#include "reports/report.h"
#include "reports/summary.h"
#include "tasks/longbench/eval.h"
#include "tasks/task.h"

#include <CLI/CLI.hpp>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>

namespace {

using lcb::harness::RunConfig;

// "1024", "4k", "32K" -> tokens (k = 1024).
int64_t parse_length(const std::string& s) {
  size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string rest = s.substr(used);
  if (used == 0 || !(rest.empty() || rest == "k" || rest == "K")) {
    throw std::invalid_argument("--lengths: '" + s + "' is not a length (an integer, optionally with k = 1024, e.g. 4k)");
  }
  return rest.empty() ? x : x * 1024;
}

std::string joined_args(int argc, char** argv) {
  std::string s = "lcb";
  for (int i = 1; i < argc; ++i) s += " " + lcb::harness::shell_quote(argv[i]);
  return s;
}

void print_impls() {
  for (const auto& e : lcb::attn::registry()) {
    std::printf("%-11s %s\n", e.family.c_str(), e.summary.c_str());
    for (const auto& p : e.params) {
      std::printf("  %-9s default %-6s %s; %s\n", p.name.c_str(), p.default_value.c_str(), p.help.c_str(),
                  p.accepted().c_str());
    }
    std::printf("  default spec: %s\n", lcb::attn::canonical_spec(e.family).c_str());
  }
}

void print_tasks() {
  for (const auto& e : lcb::tasks::task_registry()) {
    std::printf("%-18s %s\n", e.family.c_str(), e.summary.c_str());
    for (const auto& p : e.params) {
      std::printf("  %-10s default %-6s %s; %s\n", p.name.c_str(), p.default_value.c_str(), p.help.c_str(),
                  p.accepted().c_str());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lcb — long-context attention benchmark suite"};
  app.require_subcommand(1);

  // run
  auto* run = app.add_subcommand("run", "run a sweep of cells (impl x task x length x depth x seed) into SQLite");
  std::string config_path, db_path = "results.sqlite", device, dtype;
  std::vector<std::string> impls, task_specs, lengths;
  std::vector<double> depths;
  std::vector<int64_t> seeds;
  int64_t batch = 0, repeats = 0, warmup = -1, chunk_rows = 0;
  bool retry_failed = false, quiet = false;
  run->add_option("--config", config_path, "run config (JSON); flags below override its fields")->check(CLI::ExistingFile);
  run->add_option("--db", db_path, "SQLite results database (created if missing)")->capture_default_str();
  run->add_option("--device", device, "auto, cpu or cuda (default: the config's, else auto)");
  run->add_option("--impl", impls, "attention spec, repeatable (e.g. dense, swa:window=4096,sink=4)");
  run->add_option("--task", task_specs, "task spec, repeatable (default needle_qkv)");
  run->add_option("--lengths", lengths, "context lengths, comma-separated (k = 1024)")->delimiter(',');
  run->add_option("--depths", depths, "needle depths in [0, 1], comma-separated")->delimiter(',');
  run->add_option("--seeds", seeds, "seeds, comma-separated")->delimiter(',');
  run->add_option("--batch", batch, "batch size");
  run->add_option("--dtype", dtype, "auto, float32, bfloat16, float16 or float64");
  run->add_option("--repeats", repeats, "timed repeats per cell (median reported)");
  run->add_option("--warmup", warmup, "untimed runs before timing");
  run->add_option("--chunk-rows", chunk_rows, "query rows per chunk in reference paths");
  std::string model_dir;
  run->add_option("--model", model_dir, "model directory for model tasks (default: the embedded model)");
  run->add_flag("--retry-failed", retry_failed, "rerun cells stored as oom or error");
  run->add_flag("--quiet", quiet, "no progress and no table");

  // list
  auto* list = app.add_subcommand("list", "list attention implementations or tasks");
  std::string what;
  list->add_option("what", what, "impls or tasks")->required()->check(CLI::IsMember({"impls", "tasks"}));

  // show
  auto* show = app.add_subcommand("show", "summary table of a results database");
  std::string show_db;
  int64_t show_run = 0;
  show->add_option("--db", show_db, "SQLite results database")->required()->check(CLI::ExistingFile);
  show->add_option("--run", show_run, "only cells of this run id");

  // report
  auto* report = app.add_subcommand("report", "write report.md, report.html and report.json");
  std::string report_db, report_out, baseline = "dense", chartjs = lcb::reports::kDebianChartJs;
  std::vector<std::string> filters;
  report->add_option("--db", report_db, "SQLite results database")->required()->check(CLI::ExistingFile);
  report->add_option("--out", report_out, "output folder")->required();
  report->add_option("--baseline", baseline, "implementation the others are compared to")->capture_default_str();
  report->add_option("--filter", filters, "key=value (impl, task, length, run, device, status), repeatable");
  report->add_option("--chartjs", chartjs, "Chart.js file to inline")->capture_default_str();

  // leaderboard
  auto* board = app.add_subcommand("leaderboard", "rank implementations against a baseline");
  std::string board_db, board_format = "text", board_out;
  std::vector<std::string> board_tasks;
  std::vector<int64_t> board_lengths;
  board->add_option("--db", board_db, "SQLite results database")->required()->check(CLI::ExistingFile);
  board->add_option("--task", board_tasks, "only these tasks (family or spec), repeatable");
  board->add_option("--length", board_lengths, "only these lengths, comma-separated")->delimiter(',');
  board->add_option("--baseline", baseline, "baseline implementation")->capture_default_str();
  board->add_option("--format", board_format, "text, md or html")->check(CLI::IsMember({"text", "md", "html"}))->capture_default_str();
  board->add_option("--out", board_out, "write to this file instead of stdout");

  // check
  auto* check = app.add_subcommand("check", "CI gate: compare cells with a baseline; exit 1 on regression");
  std::string check_db, baseline_file, write_baseline;
  int64_t baseline_run = 0, check_run = 0;
  lcb::reports::Tolerances tol;
  check->add_option("--db", check_db, "SQLite results database")->required()->check(CLI::ExistingFile);
  auto* bf = check->add_option("--baseline", baseline_file, "baseline file written by --write-baseline")->check(CLI::ExistingFile);
  auto* br = check->add_option("--baseline-run", baseline_run, "a stored run as the baseline");
  auto* wb = check->add_option("--write-baseline", write_baseline, "write the baseline file from the cells and exit");
  bf->excludes(br)->excludes(wb);
  br->excludes(wb);
  check->add_option("--run", check_run, "candidate cells: this run only (default: all cells not in the baseline run)");
  check->add_option("--accuracy-tolerance", tol.accuracy, "absolute accuracy drop allowed beyond noise")->capture_default_str();
  check->add_option("--latency-tolerance", tol.latency, "relative growth of latency / dense allowed")->capture_default_str();
  check->add_option("--memory-tolerance", tol.memory, "relative growth of memory allowed")->capture_default_str();

  // export
  auto* exp = app.add_subcommand("export", "the cell table as CSV or JSON");
  std::string export_db, export_format = "csv", export_out;
  exp->add_option("--db", export_db, "SQLite results database")->required()->check(CLI::ExistingFile);
  exp->add_option("--format", export_format, "csv or json")->check(CLI::IsMember({"csv", "json"}))->capture_default_str();
  exp->add_option("--out", export_out, "write to this file instead of stdout");
  exp->add_option("--filter", filters, "key=value (impl, task, length, run, device, status), repeatable");

  // train-tokenizer
  auto* tok_cmd = app.add_subcommand("train-tokenizer", "train a sentencepiece tokenizer on lcb's synthetic text");
  std::string tok_out;
  int64_t tok_vocab = 1024, tok_lines = 20000;
  uint64_t tok_seed = 0;
  tok_cmd->add_option("--out", tok_out, "directory for tokenizer.model")->required();
  tok_cmd->add_option("--vocab", tok_vocab, "vocabulary size")->capture_default_str();
  tok_cmd->add_option("--lines", tok_lines, "corpus lines to generate")->capture_default_str();
  tok_cmd->add_option("--seed", tok_seed, "corpus seed")->capture_default_str();

  // train
  auto* train_cmd = app.add_subcommand("train", "train a small decoder on lcb's synthetic long-context tasks");
  std::string train_config, train_out, train_device;
  int64_t train_steps = 0;
  train_cmd->add_option("--config", train_config, "training config (JSON)")->required()->check(CLI::ExistingFile);
  train_cmd->add_option("--out", train_out, "output model directory (Hugging Face layout)")->required();
  train_cmd->add_option("--steps", train_steps, "override the config's steps");
  train_cmd->add_option("--device", train_device, "auto, cpu or cuda (overrides the config)");
  std::string train_tokenizer_dir;
  train_cmd->add_option("--tokenizer", train_tokenizer_dir, "directory with tokenizer.model (overrides the config)");
  train_cmd->add_flag("--quiet", quiet, "no progress");

  // eval-longbench
  auto* lb = app.add_subcommand("eval-longbench", "score LongBench prediction files into result.json as LongBench does");
  std::string lb_dir;
  bool lb_e = false;
  lb->add_option("pred_dir", lb_dir, "folder of <dataset>.jsonl files with pred, answers, all_classes, length")
      ->required()
      ->check(CLI::ExistingDirectory);
  lb->add_flag("--e", lb_e, "LongBench-E: scores per length bucket (0-4k, 4-8k, 8k+ words)");

  // generate
  auto* gen = app.add_subcommand("generate", "export the prompts of model tasks as JSONL");
  std::string gen_out;
  std::vector<std::string> gen_tasks, gen_lengths;
  std::vector<double> gen_depths = {0.5};
  std::vector<int64_t> gen_seeds = {0};
  gen->add_option("--task", gen_tasks, "task spec, repeatable")->required();
  gen->add_option("--lengths", gen_lengths, "prompt lengths in tokens, comma-separated (k = 1024)")->required()->delimiter(',');
  gen->add_option("--depths", gen_depths, "needle depths, comma-separated")->delimiter(',');
  gen->add_option("--seeds", gen_seeds, "seeds, comma-separated")->delimiter(',');
  gen->add_option("--model", model_dir, "model directory whose tokenizer sizes the prompts (default: the embedded model)");
  gen->add_option("--out", gen_out, "output JSONL file")->required();

  CLI11_PARSE(app, argc, argv);

  try {
    if (*list) {
      what == "impls" ? print_impls() : print_tasks();
      return 0;
    }
    auto emit = [](const std::string& text, const std::string& path) {
      if (path.empty()) {
        std::fputs(text.c_str(), stdout);
        return;
      }
      std::ofstream out(path);
      out << text;
      if (!out) throw std::runtime_error("cannot write " + path);
      std::printf("wrote %s\n", path.c_str());
    };
    if (*gen) {
      RunConfig g;
      g.impls = {"dense"};
      g.tasks = gen_tasks;
      for (const auto& l : gen_lengths) g.lengths.push_back(parse_length(l));
      g.depths = gen_depths;
      g.seeds = gen_seeds;
      g.model = model_dir;
      lcb::harness::validate_config(g, "command line");
      const auto lines = lcb::harness::export_samples(g);
      std::ofstream out(gen_out);
      for (const auto& l : lines) out << l.dump() << "\n";
      if (!out) throw std::runtime_error("cannot write " + gen_out);
      std::printf("wrote %zu samples to %s\n", lines.size(), gen_out.c_str());
      return 0;
    }
    if (*lb) {
      const nlohmann::json result = lcb::longbench::evaluate_dir(lb_dir, lb_e);
      const std::string path = lb_dir + "/result.json";
      std::ofstream(path) << result.dump(4) << "\n";
      std::printf("%s\nwrote %s\n", result.dump(1).c_str(), path.c_str());
      return 0;
    }
    if (*tok_cmd) {
      mkdir(tok_out.c_str(), 0755);
      const std::string corpus = tok_out + "/corpus.txt";
      std::ofstream(corpus) << lcb::datasets::tokenizer_corpus(tok_lines, tok_seed);
      lcb::datasets::train_tokenizer(corpus, tok_vocab, tok_out);
      std::remove(corpus.c_str());
      const auto tok = lcb::datasets::Tokenizer::load(tok_out);
      std::printf("tokenizer: %s/tokenizer.model (%lld pieces)\n", tok_out.c_str(), static_cast<long long>(tok.vocab_size()));
      return 0;
    }
    if (*train_cmd) {
      std::ifstream in(train_config);
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(in);
      } catch (const nlohmann::json::parse_error& e) {
        throw std::invalid_argument("config " + train_config + ": not valid JSON: " + e.what());
      }
      if (train_steps > 0) j["steps"] = train_steps;
      if (!train_device.empty()) j["device"] = train_device;
      if (!train_tokenizer_dir.empty()) j["tokenizer"] = train_tokenizer_dir;
      const auto cfg = lcb::train::parse_train_config(j, "config " + train_config);
      const auto res = lcb::train::train(cfg, train_out, quiet);
      std::printf("trained %s: final loss %.4f, %lld tokens in %.1f s; eval %s\n", train_out.c_str(), res.final_loss,
                  static_cast<long long>(res.tokens), res.seconds, res.final_eval.dump().c_str());
      return 0;
    }
    if (*report) {
      const lcb::store::Store db(report_db);
      const auto cells = lcb::reports::CellFilter::parse(filters).apply(db.cells());
      const auto content = lcb::reports::build_report(db.runs(), cells, baseline, lcb::reports::read_chartjs(chartjs));
      std::printf("report: %s\n", lcb::reports::write_report(content, report_out).c_str());
      return 0;
    }
    if (*board) {
      const lcb::store::Store db(board_db);
      std::vector<lcb::store::CellRecord> cells;
      for (const auto& c : db.cells()) {
        bool task_ok = board_tasks.empty(), length_ok = board_lengths.empty();
        for (const auto& t : board_tasks) task_ok |= lcb::reports::CellFilter::parse({"task=" + t}).matches(c);
        for (int64_t L : board_lengths) length_ok |= c.length == L;
        if (task_ok && length_ok) cells.push_back(c);
      }
      const auto rows = lcb::reports::leaderboard(cells, baseline);
      const auto table = lcb::reports::leaderboard_table(rows);
      const std::string text = board_format == "md"     ? table.markdown()
                               : board_format == "html" ? lcb::reports::leaderboard_html(rows, "lcb leaderboard")
                                                        : table.text();
      emit(text, board_out);
      return 0;
    }
    if (*check) {
      const lcb::store::Store db(check_db);
      auto all = db.cells();
      std::vector<lcb::store::CellRecord> candidate;
      for (const auto& c : all) {
        if (check_run ? c.run_id == check_run : (baseline_run == 0 || c.run_id != baseline_run)) candidate.push_back(c);
      }
      if (!write_baseline.empty()) {
        if (candidate.empty()) throw std::invalid_argument("no cells to write a baseline from");
        std::ofstream(write_baseline) << lcb::reports::make_baseline(candidate, baseline).dump(2) << "\n";
        std::printf("wrote baseline %s (%zu cells)\n", write_baseline.c_str(), candidate.size());
        return 0;
      }
      nlohmann::json base;
      if (!baseline_file.empty()) {
        std::ifstream in(baseline_file);
        try {
          base = nlohmann::json::parse(in);
        } catch (const nlohmann::json::parse_error& e) {
          throw std::invalid_argument("baseline " + baseline_file + ": not valid JSON: " + e.what());
        }
        lcb::reports::validate_baseline(base, "baseline " + baseline_file);
      } else if (baseline_run) {
        std::vector<lcb::store::CellRecord> base_cells;
        for (const auto& c : all) {
          if (c.run_id == baseline_run) base_cells.push_back(c);
        }
        if (base_cells.empty()) throw std::invalid_argument("--baseline-run " + std::to_string(baseline_run) + ": no cells");
        base = lcb::reports::make_baseline(base_cells, baseline);
      } else {
        throw std::invalid_argument("lcb check needs --baseline FILE, --baseline-run ID or --write-baseline FILE");
      }
      const auto result = lcb::reports::check_against(base, candidate, tol);
      if (result.passed()) {
        std::printf("check passed: %lld (task, impl, length) groups compared, no regression\n",
                    static_cast<long long>(result.compared));
        return 0;
      }
      std::printf("check FAILED: %zu regression(s) in %lld compared groups\n\n%s", result.regressions.size(),
                  static_cast<long long>(result.compared), lcb::reports::regression_table(result).text().c_str());
      return 1;
    }
    if (*exp) {
      const lcb::store::Store db(export_db);
      const auto cells = lcb::reports::CellFilter::parse(filters).apply(db.cells());
      emit(export_format == "csv" ? lcb::reports::cells_csv(cells) : lcb::reports::cells_json(cells).dump(2) + "\n",
           export_out);
      return 0;
    }
    if (*show) {
      const lcb::store::Store db(show_db);
      std::fputs(lcb::reports::summary_table(db.cells(show_run)).c_str(), stdout);
      return 0;
    }

    RunConfig cfg;
    std::string source = "command line";
    if (!config_path.empty()) {
      cfg = lcb::harness::load_config_file(config_path);
      source = "config " + config_path + " with command-line flags";
    } else if (task_specs.empty()) {
      task_specs = cfg.tasks;
    }
    if (!impls.empty()) cfg.impls = impls;
    if (!task_specs.empty()) cfg.tasks = task_specs;
    if (!lengths.empty()) {
      cfg.lengths.clear();
      for (const auto& l : lengths) cfg.lengths.push_back(parse_length(l));
    }
    if (!depths.empty()) cfg.depths = depths;
    if (!seeds.empty()) cfg.seeds = seeds;
    if (batch) cfg.batch = batch;
    if (!dtype.empty()) cfg.dtype = dtype;
    if (!device.empty()) cfg.device = device;
    if (repeats) cfg.repeats = repeats;
    if (warmup >= 0) cfg.warmup = warmup;
    if (chunk_rows) cfg.chunk_rows = chunk_rows;
    if (!model_dir.empty()) cfg.model = model_dir;
    lcb::harness::validate_config(cfg, source);

    lcb::harness::RunOptions opts;
    opts.db_path = db_path;
    opts.retry_failed = retry_failed;
    opts.quiet = quiet;
    opts.command_line = joined_args(argc, argv);
    const auto sum = lcb::harness::run_sweep(cfg, opts);
    if (!quiet) {
      const lcb::store::Store db(db_path);
      std::vector<lcb::store::CellRecord> mine;
      for (auto& c : db.cells()) {
        if (sum.keys.count(c.cell_key)) mine.push_back(std::move(c));
      }
      std::fputs(lcb::reports::summary_table(mine).c_str(), stdout);
      std::printf("\nrun %lld: %lld cells, %lld ok, %lld unsupported, %lld oom, %lld error, %lld already stored; %.1f s; db %s\n",
                  static_cast<long long>(sum.run_id), static_cast<long long>(sum.total), static_cast<long long>(sum.ok),
                  static_cast<long long>(sum.unsupported), static_cast<long long>(sum.oom),
                  static_cast<long long>(sum.error), static_cast<long long>(sum.skipped), sum.seconds, db_path.c_str());
    }
    return 0;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "lcb: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lcb: error: %s\n", e.what());
    return 1;
  }
}
