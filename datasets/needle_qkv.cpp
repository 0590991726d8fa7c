#include "datasets/needle_qkv.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <set>
#include <stdexcept>
#include <string>

namespace lcb::datasets {

NeedleQkv make_needle_qkv(const NeedleQkvParams& p) {
  const int64_t haystack = p.length - p.queries;
  if (p.needles < 1 || p.queries < 1 || p.candidates < 2 || haystack < p.needles) {
    throw std::invalid_argument("needle haystack too small: length " + std::to_string(p.length) + " must exceed queries (" +
                                std::to_string(p.queries) + ") by at least the needle count (" +
                                std::to_string(p.needles) + "), with candidates >= 2");
  }
  if (p.q_heads % p.kv_heads != 0) {
    throw std::invalid_argument("heads (" + std::to_string(p.q_heads) + ") must be a multiple of kv_heads (" +
                                std::to_string(p.kv_heads) + ")");
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(p.seed);
  const auto opt = at::TensorOptions().dtype(at::kDouble);
  const int64_t B = p.batch, Hq = p.q_heads, Hkv = p.kv_heads, G = Hq / Hkv, L = p.length, D = p.head_dim;
  const double root_d = std::sqrt(static_cast<double>(D));

  NeedleQkv s;
  s.q = at::normal(0.0, 1.0, {B, Hq, L, D}, gen, opt);
  s.k = at::normal(0.0, 1.0, {B, Hkv, L, D}, gen, opt);
  s.v = at::normal(0.0, 1.0, {B, Hkv, L, D}, gen, opt);
  at::Tensor dirs = at::normal(0.0, 1.0, {B, Hkv, p.needles, D}, gen, opt);
  dirs = dirs / dirs.norm(2, -1, true);
  const at::Tensor decoys = at::normal(0.0, 1.0, {B, Hkv, p.candidates - 1, D}, gen, opt);

  std::set<int64_t> used;
  for (int64_t n = 0; n < p.needles; ++n) {
    const double d = std::fmod(p.depth + static_cast<double>(n) / static_cast<double>(p.needles), 1.0 + 1e-12);
    int64_t pos = std::llround(std::min(d, 1.0) * static_cast<double>(haystack - 1));
    while (used.count(pos)) pos = (pos + 1) % haystack;  // distinct needle positions
    used.insert(pos);
    s.needle_positions.push_back(pos);
    s.k.select(2, pos).copy_(dirs.select(2, n) * root_d);
  }
  // Final query rows: the needle's direction scaled to the wanted logit, plus unit noise.
  for (int64_t r = 0; r < p.queries; ++r) {
    const at::Tensor dir = dirs.select(2, r % p.needles);  // [B, Hkv, D]
    const at::Tensor per_head = dir.unsqueeze(2).expand({B, Hkv, G, D}).reshape({B, Hq, D});
    at::Tensor row = s.q.select(2, L - p.queries + r);
    row.copy_(per_head * p.strength + row);
  }
  std::vector<at::Tensor> cands;
  for (int64_t n = 0; n < p.needles; ++n) {
    const at::Tensor needle_value = s.v.select(2, s.needle_positions[n]).unsqueeze(2);  // [B, Hkv, 1, D]
    cands.push_back(at::cat({needle_value, decoys}, 2).unsqueeze(2));
  }
  s.candidates = at::cat(cands, 2);
  return s;
}

}  // namespace lcb::datasets
