// needle_qkv — attention-level retrieval. Random q/k/v with planted needles (datasets/needle_qkv):
// each final query row should retrieve its needle's value. A row scores 1 when its attention
// output is closer (cosine) to the needle's value than to every decoy value; chance is
// 1 / candidates. Accuracy is the mean over (batch, query head, final query row).
#include "datasets/needle_qkv.h"
#include "tasks/task.h"

namespace lcb::tasks {
namespace {

struct NeedleSample final : Sample {
  datasets::NeedleQkvParams params;
  std::vector<int64_t> needle_positions;
  at::Tensor candidates;  // [B, Hkv, needles, C, D]
};

class NeedleQkvTask final : public AttentionTask {
 public:
  explicit NeedleQkvTask(ParsedSpec spec) : spec_(std::move(spec)) {}

  std::string spec() const override { return spec_.canonical; }
  int version() const override { return 1; }
  int metric_version() const override { return 1; }

  std::unique_ptr<Sample> make(const CellParams& cell) const override {
    const Params& p = spec_.params;
    datasets::NeedleQkvParams np;
    np.batch = cell.batch;
    np.q_heads = p.integer("heads");
    np.kv_heads = p.integer("kv_heads");
    np.head_dim = p.integer("head_dim");
    np.length = cell.length;
    np.depth = cell.depth;
    np.needles = p.integer("needles");
    np.queries = p.integer("queries");
    np.candidates = p.integer("candidates");
    np.strength = p.real("strength");
    np.seed = static_cast<uint64_t>(cell.seed);
    datasets::NeedleQkv data = datasets::make_needle_qkv(np);
    auto s = std::make_unique<NeedleSample>();
    s->q = data.q;
    s->k = data.k;
    s->v = data.v;
    s->params = np;
    s->needle_positions = data.needle_positions;
    s->candidates = data.candidates;
    return s;
  }

  Score score(const Sample& base, const at::Tensor& out) const override {
    const auto& s = dynamic_cast<const NeedleSample&>(base);
    const auto& p = s.params;
    const int64_t B = p.batch, Hkv = p.kv_heads, G = p.q_heads / Hkv, Q = p.queries, D = p.head_dim;
    // Rows under test: [B, Hkv, G, Q, D].
    const at::Tensor rows = out.narrow(2, p.length - Q, Q).to(at::kCPU, at::kDouble).reshape({B, Hkv, G, Q, D});
    const at::Tensor needle_of_row = at::arange(Q, at::kLong).remainder(p.needles);
    const at::Tensor cands = s.candidates.index_select(2, needle_of_row);  // [B, Hkv, Q, C, D]
    const at::Tensor unit_rows = rows / rows.norm(2, -1, true).clamp_min(1e-30);
    const at::Tensor unit_cands = cands / cands.norm(2, -1, true);
    const at::Tensor cos = at::matmul(unit_cands.unsqueeze(2), unit_rows.unsqueeze(-1)).squeeze(-1);  // [B, Hkv, G, Q, C]
    const at::Tensor hit = cos.argmax(-1).eq(0);
    Score sc;
    sc.n_scored = hit.numel();
    const at::Tensor hits = hit.to(at::kDouble).reshape({-1}).contiguous();
    sc.accuracy = hits.mean().item<double>();
    sc.item_scores.assign(hits.data_ptr<double>(), hits.data_ptr<double>() + hits.numel());
    sc.details = {{"needle_positions", s.needle_positions}, {"chance", 1.0 / static_cast<double>(p.candidates)}};
    return sc;
  }

 private:
  ParsedSpec spec_;
};

}  // namespace

TaskEntry needle_qkv_entry() {
  TaskEntry e;
  e.family = "needle_qkv";
  e.summary = "model-free retrieval: final queries must retrieve planted needle values from random q/k/v";
  e.params = {ParamDef::integer("heads", 8, 1, 1024, "query heads"),
              ParamDef::integer("kv_heads", 2, 1, 1024, "key/value heads (GQA)"),
              ParamDef::integer("head_dim", 64, 1, 1024, "head dimension"),
              ParamDef::integer("needles", 1, 1, 1024, "planted needles"),
              ParamDef::integer("queries", 16, 1, 1 << 20, "final query rows that look for a needle"),
              ParamDef::integer("candidates", 16, 2, 1 << 16, "values to choose from (needle + decoys)"),
              ParamDef::real("strength", 12.0, 0.0, 100.0, "the needle's logit for its queries")};
  e.make = [](const ParsedSpec& p) {
    if (p.params.integer("heads") % p.params.integer("kv_heads") != 0) {
      throw std::invalid_argument("task 'needle_qkv': heads (" + p.params.text("heads") +
                                  ") must be a multiple of kv_heads (" + p.params.text("kv_heads") + ")");
    }
    return std::make_unique<NeedleQkvTask>(p);
  };
  return e;
}

}  // namespace lcb::tasks
