// lcb — the command-line entry point.
//   lcb run --config FILE.json [--db results.sqlite] [--device auto|cpu|cuda] [flags overriding the file]
//   lcb run --impl dense --impl dga --lengths 1k,4k [--task needle_qkv] [--depths 0.1,0.5] [--seeds 0,1]
//   lcb list impls|tasks
//   lcb show --db results.sqlite [--run ID]
#include "attention_impls/registry.h"
#include "harness/config.h"
#include "harness/provenance.h"
#include "harness/runner.h"
#include "harness/store.h"
#include "reports/summary.h"
#include "tasks/task.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

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
    std::printf("%-11s %s\n", e.family.c_str(), e.summary.c_str());
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

  CLI11_PARSE(app, argc, argv);

  try {
    if (*list) {
      what == "impls" ? print_impls() : print_tasks();
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
