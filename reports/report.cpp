#include "reports/report.h"

#include "attention_impls/spec.h"
#include "reports/table.h"
#include "tasks/longbench/metrics.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

namespace lcb::reports {

// --- filter ------------------------------------------------------------------------------------

CellFilter CellFilter::parse(const std::vector<std::string>& terms) {
  static const std::set<std::string> keys = {"impl", "task", "length", "run", "device", "status"};
  CellFilter f;
  for (const auto& t : terms) {
    const auto eq = t.find('=');
    const std::string key = eq == std::string::npos ? t : t.substr(0, eq);
    if (eq == std::string::npos || !keys.count(key)) {
      throw std::invalid_argument("--filter '" + t + "': expected key=value with key one of impl, task, length, run, device, status");
    }
    f.terms_.emplace_back(key, t.substr(eq + 1));
  }
  return f;
}

bool CellFilter::matches(const store::CellRecord& c) const {
  auto spec_matches = [](const std::string& spec, const std::string& want) {
    return spec == want || split_spec(spec).first == want;
  };
  for (const auto& [key, value] : terms_) {
    if (key == "impl" && !spec_matches(c.impl, value)) return false;
    if (key == "task" && !spec_matches(c.task, value)) return false;
    if (key == "length" && std::to_string(c.length) != value) return false;
    if (key == "run" && std::to_string(c.run_id) != value) return false;
    if (key == "device" && c.device != value && c.device_name != value) return false;
    if (key == "status" && c.status != value) return false;
  }
  return true;
}

std::vector<store::CellRecord> CellFilter::apply(std::vector<store::CellRecord> cells) const {
  cells.erase(std::remove_if(cells.begin(), cells.end(), [&](const auto& c) { return !matches(c); }), cells.end());
  return cells;
}

// --- report ------------------------------------------------------------------------------------

namespace {

std::string mb(double bytes) { return format("%.1f", bytes / (1024.0 * 1024.0)); }

// One task's groups indexed by impl and length.
struct TaskView {
  std::string task;
  std::vector<std::string> impls;
  std::vector<int64_t> lengths;
  std::map<std::pair<std::string, int64_t>, const Group*> at;

  const Group* get(const std::string& impl, int64_t L) const {
    auto it = at.find({impl, L});
    return it == at.end() ? nullptr : it->second;
  }
};

std::vector<TaskView> by_task(const std::vector<Group>& groups) {
  std::vector<TaskView> views;
  for (const auto& g : groups) {
    if (views.empty() || views.back().task != g.task) views.push_back(TaskView{g.task, {}, {}, {}});
    TaskView& v = views.back();
    if (std::find(v.impls.begin(), v.impls.end(), g.impl) == v.impls.end()) v.impls.push_back(g.impl);
    if (std::find(v.lengths.begin(), v.lengths.end(), g.length) == v.lengths.end()) v.lengths.push_back(g.length);
    v.at[{g.impl, g.length}] = &g;
  }
  for (auto& v : views) std::sort(v.lengths.begin(), v.lengths.end());
  return views;
}

// A metric of a group as text: the value, or the group's status when it has no ok cell.
template <typename F>
std::string value_or_status(const Group* g, F&& f) {
  if (g == nullptr) return "not run";
  if (!g->any_ok()) return g->status_text();
  return f(*g);
}

// Speed-up of `g` over the baseline from two latencies; "~" marks overlapping timing spreads.
struct Ratio {
  std::optional<double> value;
  bool within_noise = false;
};

Ratio prefill_speedup(const Group* g, const Group* base) {
  Ratio r;
  if (!g || !base || !g->prefill_ms || !base->prefill_ms || *g->prefill_ms <= 0) return r;
  r.value = *base->prefill_ms / *g->prefill_ms;
  if (g->prefill_ms_lo && g->prefill_ms_hi && base->prefill_ms_lo && base->prefill_ms_hi) {
    r.within_noise = *g->prefill_ms_lo <= *base->prefill_ms_hi && *base->prefill_ms_lo <= *g->prefill_ms_hi;
  }
  return r;
}

std::optional<double> decode_speedup(const Group* g, const Group* base) {
  if (!g || !base || !g->decode_ms || !base->decode_ms || *g->decode_ms <= 0) return std::nullopt;
  return *base->decode_ms / *g->decode_ms;
}

// Points on the accuracy-vs-FLOPs Pareto front of each context length (no other point of that
// length has fewer or equal FLOPs and higher or equal accuracy, one of them strictly).
std::set<const Group*> pareto_front(const TaskView& v) {
  std::set<const Group*> front;
  for (int64_t L : v.lengths) {
    std::vector<const Group*> pts;
    for (const auto& impl : v.impls) {
      const Group* g = v.get(impl, L);
      if (g && g->accuracy && g->flops) pts.push_back(g);
    }
    for (const auto* p : pts) {
      bool dominated = false;
      for (const auto* o : pts) {
        const bool no_worse = *o->flops <= *p->flops && o->accuracy->mean >= p->accuracy->mean;
        const bool better = *o->flops < *p->flops || o->accuracy->mean > p->accuracy->mean;
        dominated |= o != p && no_worse && better;
      }
      if (!dominated) front.insert(p);
    }
  }
  return front;
}

// Mean accuracy per (impl, length, depth) of one task, over seeds.
using DepthGrid = std::map<std::string, std::map<double, std::map<int64_t, std::pair<double, int64_t>>>>;

DepthGrid depth_grid(const std::vector<store::CellRecord>& cells, const std::string& task) {
  DepthGrid grid;
  for (const auto& c : cells) {
    if (c.task != task || c.status != "ok" || !c.accuracy) continue;
    auto& cell = grid[c.impl][c.depth][c.length];
    cell.first += *c.accuracy;
    cell.second += 1;
  }
  return grid;
}

template <typename F>
Table per_length_table(const TaskView& v, const std::string& first, F&& cell) {
  Table t;
  t.header.push_back(first);
  for (int64_t L : v.lengths) t.header.push_back("L=" + std::to_string(L));
  for (const auto& impl : v.impls) {
    std::vector<std::string> row = {impl};
    for (int64_t L : v.lengths) row.push_back(cell(impl, L));
    t.rows.push_back(row);
  }
  return t;
}

struct Section {
  std::string title;
  std::string intro;
  std::vector<Table> tables;
  std::vector<std::string> table_titles;
  std::vector<std::string> charts;  // chart ids drawn in the HTML for this section
};

nlohmann::json interval_json(const std::optional<Interval>& iv) {
  if (!iv) return nullptr;
  return {{"mean", iv->mean}, {"lo", iv->lo}, {"hi", iv->hi}, {"n", iv->n}};
}

nlohmann::json opt(const std::optional<double>& x) {
  return x ? nlohmann::json(*x) : nlohmann::json(nullptr);
}

// LongBench-style tables from the per-sample outcomes of `longbench` cells: scores per dataset
// (eval.py's scorer), per category and overall (means of dataset scores), and LongBench-E buckets.
struct LongBenchSample {
  double score = 0;
  int64_t words = 0;
};

const std::vector<std::pair<std::string, std::vector<std::string>>>& longbench_categories() {
  static const std::vector<std::pair<std::string, std::vector<std::string>>> c = {
      {"Single-Doc QA", {"narrativeqa", "qasper", "multifieldqa_en"}},
      {"Multi-Doc QA", {"hotpotqa", "2wikimqa", "musique"}},
      {"Summarization", {"gov_report", "qmsum", "multi_news"}},
      {"Few-shot", {"trec", "triviaqa", "samsum"}},
      {"Synthetic", {"passage_count", "passage_retrieval_en"}},
      {"Code", {"lcc", "repobench-p"}}};
  return c;
}

std::string longbench_section(const std::vector<store::CellRecord>& cells, nlohmann::json& data, std::string& html) {
  // (impl @ length) -> dataset -> samples in file order
  std::map<std::string, std::map<std::string, std::vector<LongBenchSample>>> by_row;
  std::map<std::string, std::string> problems;
  std::set<std::string> datasets;
  for (const auto& c : cells) {
    if (split_spec(c.task).first != "longbench") continue;
    const std::string row = c.impl + " @ " + std::to_string(c.length);
    if (c.status != "ok") {
      problems[row] = c.status;
      continue;
    }
    const auto extra = nlohmann::json::parse(c.extra_json, nullptr, false);
    const nlohmann::json samples = extra.contains("samples") ? extra["samples"] : nlohmann::json::array({extra});
    for (const auto& s : samples) {
      if (!s.contains("score") || !s.contains("dataset")) continue;  // skipped records
      by_row[row][s["dataset"]].push_back({s["score"].get<double>(), s.value("length", int64_t{0})});
      datasets.insert(s["dataset"].get<std::string>());
    }
  }
  if (by_row.empty() && problems.empty()) return "";
  Table per_dataset, per_category, buckets;
  per_dataset.header = {"impl @ L"};
  for (const auto& d : datasets) per_dataset.header.push_back(d);
  per_category.header = {"impl @ L"};
  for (const auto& [cat, members] : longbench_categories()) per_category.header.push_back(cat);
  per_category.header.push_back("overall");
  buckets.header = {"impl @ L", "dataset", "0-4k", "4-8k", "8k+"};
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [row, by_dataset] : by_row) {
    std::vector<std::string> r = {row};
    std::map<std::string, double> score_of;
    for (const auto& d : datasets) {
      const auto it = by_dataset.find(d);
      if (it == by_dataset.end()) {
        r.push_back("-");
        continue;
      }
      double total = 0;
      for (const auto& s : it->second) total += s.score;
      score_of[d] = longbench::python_round2(100 * total / static_cast<double>(it->second.size()));
      r.push_back(format("%.2f", score_of[d]));
      std::vector<double> b[3];
      for (const auto& s : it->second) b[s.words < 4000 ? 0 : s.words < 8000 ? 1 : 2].push_back(s.score);
      std::vector<std::string> br = {row, d};
      for (const auto& v : b) {
        br.push_back(v.empty() ? "-" : format("%.2f", longbench::numpy_round2(100 * (longbench::numpy_sum(v) / static_cast<double>(v.size())))));
      }
      buckets.rows.push_back(br);
      j[row]["datasets"][d] = score_of[d];
    }
    per_dataset.rows.push_back(r);
    std::vector<std::string> cr = {row};
    double all = 0;
    for (const auto& [cat, members] : longbench_categories()) {
      double sum = 0;
      int n = 0;
      for (const auto& m : members) {
        if (score_of.count(m)) {
          sum += score_of[m];
          ++n;
        }
      }
      cr.push_back(n ? format("%.2f", sum / n) : "-");
      if (n) j[row]["categories"][cat] = sum / n;
    }
    for (const auto& [d, v] : score_of) all += v;
    cr.push_back(score_of.empty() ? "-" : format("%.2f", all / static_cast<double>(score_of.size())));
    per_category.rows.push_back(cr);
  }
  for (const auto& [row, status] : problems) {
    if (!by_row.count(row)) per_dataset.rows.push_back({row, status});
  }
  data["longbench"] = j;
  const std::string intro = "LongBench scores ×100 as LongBench's eval.py computes them; category and overall columns "
                            "average the dataset scores present; LongBench-E buckets by the records' length field (words).";
  html += "<h2>LongBench</h2>\n<p>" + html_escape(intro) + "</p>\n<h4>Per dataset</h4>\n" + per_dataset.html() +
          "<h4>Per category</h4>\n" + per_category.html() + "<h4>LongBench-E</h4>\n" + buckets.html();
  return "## LongBench\n\n" + intro + "\n\n**Per dataset**\n\n" + per_dataset.markdown() + "\n**Per category**\n\n" +
         per_category.markdown() + "\n**LongBench-E**\n\n" + buckets.markdown() + "\n";
}

}  // namespace

ReportContent build_report(const std::vector<store::RunInfo>& runs, const std::vector<store::CellRecord>& cells,
                           const std::string& baseline_name, const std::string& chartjs) {
  const std::string baseline = baseline_spec(baseline_name);
  const std::vector<Group> groups = aggregate(cells);
  const std::vector<TaskView> views = by_task(groups);

  std::set<int64_t> used_runs;
  for (const auto& c : cells) used_runs.insert(c.run_id);

  ReportContent rep;
  nlohmann::json& data = rep.data;
  data["baseline"] = baseline;
  data["cells"] = cells.size();
  data["runs"] = nlohmann::json::array();
  data["tasks"] = nlohmann::json::array();

  // Provenance.
  Table prov;
  prov.header = {"run", "started", "commit", "device", "torch", "lcb", "build", "command"};
  std::string configs;
  for (const auto& r : runs) {
    if (!used_runs.count(r.run_id)) continue;
    prov.rows.push_back({std::to_string(r.run_id), r.started_at, r.commit, r.device_name, r.torch_version,
                         r.lcb_version, r.build_type, r.command});
    configs += "- run " + std::to_string(r.run_id) + ": `" + r.config_json + "`\n";
    data["runs"].push_back({{"run", r.run_id},
                            {"started_at", r.started_at},
                            {"commit", r.commit},
                            {"device", r.device_name},
                            {"torch", r.torch_version},
                            {"lcb", r.lcb_version},
                            {"build", r.build_type},
                            {"command", r.command},
                            {"config", nlohmann::json::parse(r.config_json, nullptr, false)}});
  }

  std::string md = "# lcb report\n\n";
  md += std::to_string(cells.size()) + " cells from " + std::to_string(used_runs.size()) + " run(s); baseline `" +
        baseline + "`.\n\n";
  md += "Marks: `≈` accuracy interval overlaps the baseline's (difference within noise); `~` latency ranges "
        "(min..max over repeats) overlap the baseline's; `★` on the accuracy-vs-FLOPs Pareto front. "
        "Cells that did not run show their status (`unsupported`, `oom`, `error`), never a number.\n\n";
  md += "## Provenance\n\n" + prov.markdown() + "\nConfigs:\n\n" + configs + "\n";
  std::string html_body = "<h2>Provenance</h2>\n" + prov.html();

  int chart_no = 0;
  nlohmann::json charts = nlohmann::json::array();
  for (const TaskView& v : views) {
    const auto front = pareto_front(v);
    nlohmann::json task_json = {{"task", v.task}, {"lengths", v.lengths}, {"groups", nlohmann::json::array()}};
    std::vector<Section> sections;

    // Accuracy.
    Section acc{"Accuracy vs context length", "Mean task accuracy with its bootstrap 95% interval.", {}, {}, {}};
    acc.tables.push_back(per_length_table(v, "impl", [&](const std::string& impl, int64_t L) {
      const Group* base = v.get(baseline, L);
      return value_or_status(v.get(impl, L), [&](const Group& g) {
        if (!g.accuracy) return std::string("-");
        std::string s = format("%.3f", g.accuracy->mean) + " [" + format("%.3f", g.accuracy->lo) + ", " +
                        format("%.3f", g.accuracy->hi) + "]";
        if (impl != baseline && base && base->accuracy && overlaps(*g.accuracy, *base->accuracy)) s += " ≈";
        return s;
      });
    }));
    acc.table_titles.push_back("");
    sections.push_back(acc);

    // Speed-up.
    Section speed{"Speed-up over " + baseline, "Baseline latency / implementation latency (medians), prefill and per-token decode.", {}, {}, {}};
    speed.tables.push_back(per_length_table(v, "impl", [&](const std::string& impl, int64_t L) {
      return value_or_status(v.get(impl, L), [&](const Group& g) {
        const Ratio r = prefill_speedup(&g, v.get(baseline, L));
        if (!r.value) return std::string("-");
        return format("%.2f×", *r.value) + (impl != baseline && r.within_noise ? " ~" : "") + " (" +
               format("%.3g", *g.prefill_ms) + " ms)";
      });
    }));
    speed.table_titles.push_back("Prefill");
    speed.tables.push_back(per_length_table(v, "impl", [&](const std::string& impl, int64_t L) {
      return value_or_status(v.get(impl, L), [&](const Group& g) {
        const auto r = decode_speedup(&g, v.get(baseline, L));
        return r ? format("%.2f×", *r) + " (" + format("%.3g", *g.decode_ms) + " ms)" : std::string("-");
      });
    }));
    speed.table_titles.push_back("Decode (one token)");
    sections.push_back(speed);

    // Accuracy vs FLOPs.
    Section pareto{"Accuracy vs FLOPs", "Attention plus selection FLOPs per cell (exact, from the visibility pattern); ★ marks the Pareto front of each length.", {}, {}, {}};
    Table pt;
    pt.header = {"impl", "L", "GFLOP", "accuracy", "requested density", "achieved density", "Pareto"};
    for (const auto& impl : v.impls)
      for (int64_t L : v.lengths) {
        const Group* g = v.get(impl, L);
        if (!g) continue;
        if (!g->any_ok()) {
          pt.rows.push_back({impl, std::to_string(L), g->status_text(), g->status_text(), "-", "-", ""});
          continue;
        }
        pt.rows.push_back({impl, std::to_string(L), g->flops ? format("%.3f", *g->flops * 1e-9) : "-",
                           g->accuracy ? format("%.3f", g->accuracy->mean) : "-",
                           g->requested_density ? format("%.3f", *g->requested_density) : "-",
                           g->achieved_density ? format("%.3f", *g->achieved_density) : "-", front.count(g) ? "★" : ""});
      }
    pareto.tables.push_back(pt);
    pareto.table_titles.push_back("");
    sections.push_back(pareto);

    // Memory.
    Section memory{"Memory", "Peak device memory of the timed prefill (CUDA allocator peak; on CPU the process's peak RSS) and the implementation's KV cache after the prefill.", {}, {}, {}};
    memory.tables.push_back(per_length_table(v, "impl", [&](const std::string& impl, int64_t L) {
      return value_or_status(v.get(impl, L), [&](const Group& g) {
        return g.peak_mem_bytes ? mb(*g.peak_mem_bytes) + " MB" : std::string("-");
      });
    }));
    memory.table_titles.push_back("Peak memory");
    memory.tables.push_back(per_length_table(v, "impl", [&](const std::string& impl, int64_t L) {
      return value_or_status(v.get(impl, L), [&](const Group& g) {
        return g.kv_cache_bytes ? mb(*g.kv_cache_bytes) + " MB" : std::string("-");
      });
    }));
    memory.table_titles.push_back("KV cache");
    sections.push_back(memory);

    // Fidelity.
    Section fid{"Fidelity against dense", "Relative L2 error of the attention output and attention mass recall (share of dense probability on keys attended individually).", {}, {}, {}};
    fid.tables.push_back(per_length_table(v, "impl", [&](const std::string& impl, int64_t L) {
      return value_or_status(v.get(impl, L), [&](const Group& g) {
        return (g.rel_l2_error ? format("%.3g", *g.rel_l2_error) : "-") + " / " +
               (g.mass_recall ? format("%.3f", *g.mass_recall) : "-");
      });
    }));
    fid.table_titles.push_back("rel. L2 error / mass recall");
    sections.push_back(fid);

    // Depth x length heatmaps.
    Section heat{"Needle depth × length", "Mean accuracy per needle depth (rows) and context length (columns).", {}, {}, {}};
    const DepthGrid grid = depth_grid(cells, v.task);
    for (const auto& impl : v.impls) {
      auto it = grid.find(impl);
      if (it == grid.end()) continue;
      Table t;
      t.heat = true;
      t.header.push_back("depth");
      for (int64_t L : v.lengths) t.header.push_back("L=" + std::to_string(L));
      for (const auto& [depth, row] : it->second) {
        std::vector<std::string> r = {format_number(depth)};
        for (int64_t L : v.lengths) {
          auto c = row.find(L);
          r.push_back(c == row.end() ? "-" : format("%.2f", c->second.first / static_cast<double>(c->second.second)));
        }
        t.rows.push_back(r);
      }
      heat.tables.push_back(t);
      heat.table_titles.push_back(impl);
    }
    sections.push_back(heat);

    // Data for the charts.
    for (const auto& impl : v.impls) {
      for (int64_t L : v.lengths) {
        const Group* g = v.get(impl, L);
        if (!g) continue;
        const Ratio r = prefill_speedup(g, v.get(baseline, L));
        task_json["groups"].push_back({{"impl", impl},
                                       {"length", L},
                                       {"cells", g->cells},
                                       {"status", g->status_text()},
                                       {"accuracy", interval_json(g->accuracy)},
                                       {"accuracy_within_noise",
                                        impl != baseline && g->accuracy && v.get(baseline, L) && v.get(baseline, L)->accuracy &&
                                            overlaps(*g->accuracy, *v.get(baseline, L)->accuracy)},
                                       {"prefill_speedup", opt(r.value)},
                                       {"prefill_within_noise", impl != baseline && r.within_noise},
                                       {"decode_speedup", opt(decode_speedup(g, v.get(baseline, L)))},
                                       {"prefill_ms", opt(g->prefill_ms)},
                                       {"decode_ms", opt(g->decode_ms)},
                                       {"flops", opt(g->flops)},
                                       {"pareto", front.count(g) > 0},
                                       {"requested_density", opt(g->requested_density)},
                                       {"achieved_density", opt(g->achieved_density)},
                                       {"rel_l2_error", opt(g->rel_l2_error)},
                                       {"mass_recall", opt(g->mass_recall)},
                                       {"peak_mem_bytes", opt(g->peak_mem_bytes)},
                                       {"kv_cache_bytes", opt(g->kv_cache_bytes)},
                                       {"mem_kind", g->mem_kind}});
      }
    }
    data["tasks"].push_back(task_json);

    const std::vector<std::pair<std::string, std::string>> chart_kinds = {
        {"accuracy", "Accuracy vs length"},         {"prefill_speedup", "Prefill speed-up vs length"},
        {"decode_speedup", "Decode speed-up vs length"}, {"pareto", "Accuracy vs GFLOP"},
        {"peak_mem_bytes", "Peak memory (MB) vs length"}, {"kv_cache_bytes", "KV cache (MB) vs length"},
        {"rel_l2_error", "Relative L2 error vs length"}, {"mass_recall", "Attention mass recall vs length"}};
    std::map<std::string, std::string> chart_for;
    for (const auto& [metric, title] : chart_kinds) {
      const std::string id = "chart" + std::to_string(chart_no++);
      chart_for[metric] = id;
      charts.push_back({{"id", id}, {"task", data["tasks"].size() - 1}, {"metric", metric}, {"title", title}});
    }
    sections[0].charts = {chart_for["accuracy"]};
    sections[1].charts = {chart_for["prefill_speedup"], chart_for["decode_speedup"]};
    sections[2].charts = {chart_for["pareto"]};
    sections[3].charts = {chart_for["peak_mem_bytes"], chart_for["kv_cache_bytes"]};
    sections[4].charts = {chart_for["rel_l2_error"], chart_for["mass_recall"]};

    md += "## Task `" + v.task + "`\n\n";
    html_body += "<h2>Task <code>" + html_escape(v.task) + "</code></h2>\n";
    for (const Section& s : sections) {
      md += "### " + s.title + "\n\n" + s.intro + "\n\n";
      html_body += "<h3>" + html_escape(s.title) + "</h3>\n<p>" + html_escape(s.intro) + "</p>\n";
      if (!s.charts.empty()) {
        html_body += "<div class=\"charts\">";
        for (const auto& id : s.charts) html_body += "<div class=\"chart\"><canvas id=\"" + id + "\"></canvas></div>";
        html_body += "</div>\n";
      }
      for (size_t i = 0; i < s.tables.size(); ++i) {
        if (!s.table_titles[i].empty()) {
          md += "**" + s.table_titles[i] + "**\n\n";
          html_body += "<h4>" + html_escape(s.table_titles[i]) + "</h4>\n";
        }
        md += s.tables[i].markdown() + "\n";
        html_body += s.tables[i].html();
      }
    }
  }
  data["charts"] = charts;

  md += longbench_section(cells, data, html_body);

  // Cells that did not run.
  Table bad;
  bad.header = {"impl", "task", "L", "depth", "seed", "status", "message"};
  for (const auto& c : cells) {
    if (c.status == "ok") continue;
    bad.rows.push_back({c.impl, c.task, std::to_string(c.length), format_number(c.depth), std::to_string(c.seed),
                        c.status, c.message});
  }
  md += "## Cells that did not run\n\n" + (bad.rows.empty() ? std::string("None.\n") : bad.markdown());
  html_body += "<h2>Cells that did not run</h2>\n" + (bad.rows.empty() ? std::string("<p>None.</p>\n") : bad.html());
  rep.markdown = md;

  std::ostringstream html;
  html << "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>lcb report</title>\n"
       << "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:0.5em 0 1.5em}"
       << "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}td:first-child,th:first-child{text-align:left}"
       << ".charts{display:flex;flex-wrap:wrap;gap:16px}.chart{width:640px;height:360px}code{background:#f4f4f4}</style>\n"
       << "<script>window.lcbErrors=[];window.addEventListener('error',function(e){window.lcbErrors.push(String(e.message));"
       << "document.documentElement.dataset.errors=window.lcbErrors.length;});</script>\n"
       << "<script>" << chartjs << "</script>\n</head><body>\n<h1>lcb report</h1>\n<p>"
       << html_escape(std::to_string(cells.size()) + " cells; baseline " + baseline +
                      ". ≈: accuracy within noise of the baseline; ~: latency within timing spread; ★: Pareto front.")
       << "</p>\n"
       << html_body << "<script id=\"lcb-data\" type=\"application/json\">" << data.dump() << "</script>\n"
       << "<script>\n" << R"JS(
(function () {
  var data = JSON.parse(document.getElementById('lcb-data').textContent);
  var palette = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#17becf', '#bcbd22'];
  // Vertical bars for the accuracy intervals.
  var errorBars = {
    id: 'errorBars',
    afterDatasetsDraw: function (chart) {
      var ctx = chart.ctx;
      chart.data.datasets.forEach(function (ds, i) {
        if (!ds.errorBars) return;
        chart.getDatasetMeta(i).data.forEach(function (pt, j) {
          var eb = ds.errorBars[j];
          if (!eb) return;
          var y0 = chart.scales.y.getPixelForValue(eb[0]), y1 = chart.scales.y.getPixelForValue(eb[1]);
          ctx.save(); ctx.strokeStyle = ds.borderColor; ctx.beginPath();
          ctx.moveTo(pt.x, y0); ctx.lineTo(pt.x, y1);
          ctx.moveTo(pt.x - 4, y0); ctx.lineTo(pt.x + 4, y0); ctx.moveTo(pt.x - 4, y1); ctx.lineTo(pt.x + 4, y1);
          ctx.stroke(); ctx.restore();
        });
      });
    }
  };
  function value(g, metric) {
    var v = g[metric];
    if (v === null || v === undefined) return null;
    if (metric === 'accuracy') return v.mean;
    if (metric === 'peak_mem_bytes' || metric === 'kv_cache_bytes') return v / 1048576;
    return v;
  }
  function impls(task) {
    var seen = [];
    task.groups.forEach(function (g) { if (seen.indexOf(g.impl) < 0) seen.push(g.impl); });
    return seen;
  }
  function painted(canvas) {
    var ctx = canvas.getContext('2d');
    var px = ctx.getImageData(0, 0, canvas.width, canvas.height).data, n = 0;
    for (var i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
    return n;
  }
  var rendered = 0;
  data.charts.forEach(function (spec) {
    var task = data.tasks[spec.task], names = impls(task);
    var datasets = names.map(function (impl, k) {
      var gs = task.groups.filter(function (g) { return g.impl === impl; });
      var pts = gs.map(function (g) {
        return spec.metric === 'pareto' ? { x: g.flops === null ? null : g.flops / 1e9, y: g.accuracy ? g.accuracy.mean : null }
                                        : { x: g.length, y: value(g, spec.metric) };
      }).filter(function (p) { return p.x !== null && p.y !== null; });
      var ds = { label: impl, data: pts, borderColor: palette[k % palette.length],
                 backgroundColor: palette[k % palette.length], showLine: spec.metric !== 'pareto', pointRadius: 3 };
      if (spec.metric === 'accuracy') {
        ds.errorBars = gs.filter(function (g) { return g.accuracy; }).map(function (g) { return [g.accuracy.lo, g.accuracy.hi]; });
      }
      return ds;
    });
    if (spec.metric === 'pareto') {
      task.lengths.forEach(function (L, k) {
        var front = task.groups.filter(function (g) { return g.pareto && g.length === L; })
                               .map(function (g) { return { x: g.flops / 1e9, y: g.accuracy.mean }; })
                               .sort(function (a, b) { return a.x - b.x; });
        datasets.push({ label: 'front L=' + L, data: front, borderColor: '#555', borderDash: [2 + 2 * k, 3],
                        showLine: true, pointRadius: 0, fill: false });
      });
    }
    var logY = spec.metric === 'prefill_speedup' || spec.metric === 'decode_speedup' || spec.metric === 'rel_l2_error' ||
               spec.metric === 'peak_mem_bytes' || spec.metric === 'kv_cache_bytes';
    var canvas = document.getElementById(spec.id);
    new Chart(canvas, {
      type: 'scatter',
      data: { datasets: datasets },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { title: { display: true, text: spec.title } },
        scales: { x: { type: 'logarithmic', title: { display: true, text: spec.metric === 'pareto' ? 'GFLOP' : 'context length' } },
                  y: { type: logY ? 'logarithmic' : 'linear', title: { display: true, text: spec.metric === 'pareto' ? 'accuracy' : spec.metric } } }
      },
      plugins: [errorBars]
    });
    if (painted(canvas) > 0) rendered++;
  });
  document.documentElement.dataset.chartsTotal = data.charts.length;
  document.documentElement.dataset.chartsRendered = rendered;
})();
)JS" << "</script>\n</body></html>\n";
  rep.html = html.str();
  return rep;
}

std::string read_chartjs(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw std::runtime_error("Chart.js not found at " + path +
                             "; install Debian's libjs-chart.js (tools/setup does) or pass --chartjs PATH");
  }
  std::stringstream s;
  s << in.rdbuf();
  std::string js = s.str();
  // Keep an inlined "</script>" inside the library from closing our script element.
  for (size_t p = js.find("</script"); p != std::string::npos; p = js.find("</script", p + 2)) js.replace(p, 2, "<\\/");
  return js;
}

std::string write_report(const ReportContent& report, const std::string& out_dir) {
  if (mkdir(out_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    throw std::runtime_error("cannot create report folder " + out_dir);
  }
  auto write = [&](const std::string& name, const std::string& text) {
    const std::string path = out_dir + "/" + name;
    std::ofstream out(path);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + path);
    return path;
  };
  write("report.md", report.markdown);
  write("report.json", report.data.dump(2) + "\n");
  return write("report.html", report.html);
}

}  // namespace lcb::reports
