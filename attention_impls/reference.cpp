#include "attention_impls/reference.h"

#include <cmath>
#include <vector>

namespace lcb::attn::ref {

at::ScalarType compute_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

double softmax_scale(const Options& opts, int64_t head_dim) {
  return opts.scale ? *opts.scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

at::Tensor query_positions(int64_t q_len, int64_t kv_len, int64_t row0, int64_t rows, at::Device device) {
  const int64_t first = kv_len - q_len + row0;
  return at::arange(first, first + rows, at::TensorOptions().dtype(at::kLong).device(device));
}

at::Tensor repeat_kv(const at::Tensor& x, int64_t groups) {
  if (groups == 1) return x;
  auto sizes = x.sizes().vec();
  std::vector<int64_t> expanded = sizes;
  expanded.insert(expanded.begin() + 2, groups);
  std::vector<int64_t> merged = sizes;
  merged[1] *= groups;
  return x.unsqueeze(2).expand(expanded).reshape(merged);
}

at::Tensor masked_attention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values, double scale,
                            int64_t chunk_rows, const MaskFn& mask_fn) {
  const auto cdt = compute_dtype(q.scalar_type());
  const int64_t groups = q.size(1) / keys.size(1);
  const at::Tensor kq = repeat_kv(keys.to(cdt), groups);    // [B, Hq, N, D]
  const at::Tensor vq = repeat_kv(values.to(cdt), groups);  // [B, Hq, N, D]
  const at::Tensor kt = kq.transpose(-2, -1);
  const int64_t lq = q.size(2);
  std::vector<at::Tensor> outs;
  for (int64_t r0 = 0; r0 < lq; r0 += chunk_rows) {
    const int64_t rows = std::min(chunk_rows, lq - r0);
    const at::Tensor qc = q.narrow(2, r0, rows).to(cdt);
    at::Tensor logits = at::matmul(qc, kt) * scale;  // [B, Hq, rows, N]
    at::Tensor mask;
    {
      at::NoGradGuard no_grad;
      mask = mask_fn(r0, rows, logits.detach()).expand_as(logits);
    }
    const at::Tensor any = mask.any(-1, /*keepdim=*/true);
    at::Tensor p = at::softmax(logits.masked_fill(mask.logical_not(), -INFINITY), -1);
    p = at::where(any, p, at::zeros({}, p.options()));  // fully masked rows: zeros, not NaN
    outs.push_back(at::matmul(p, vq));
  }
  return at::cat(outs, 2).to(q.scalar_type());
}

double mass_recall(const at::Tensor& q, const at::Tensor& k, double scale, int64_t chunk_rows,
                   const MaskFn& kept_fn) {
  at::NoGradGuard no_grad;
  const auto cdt = compute_dtype(q.scalar_type());
  const int64_t groups = q.size(1) / k.size(1);
  const at::Tensor kt = repeat_kv(k.to(cdt), groups).transpose(-2, -1);
  const int64_t lq = q.size(2), lk = k.size(2);
  double total = 0;
  for (int64_t r0 = 0; r0 < lq; r0 += chunk_rows) {
    const int64_t rows = std::min(chunk_rows, lq - r0);
    const at::Tensor logits = at::matmul(q.narrow(2, r0, rows).to(cdt), kt) * scale;
    const at::Tensor causal = causal_mask(lq, lk, r0, rows, q.device());
    const at::Tensor p = at::softmax(logits.masked_fill(causal.logical_not(), -INFINITY), -1);
    const at::Tensor kept = kept_fn(r0, rows, logits).expand_as(logits).logical_and(causal);
    total += p.masked_fill(kept.logical_not(), 0).sum().item<double>();
  }
  return total / static_cast<double>(q.size(0) * q.size(1) * lq);
}

Output masked_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& opts,
                      const MaskFn& mask, const Cost& cost) {
  const double scale = softmax_scale(opts, q.size(3));
  Output o;
  o.backend = "reference";
  o.out = masked_attention(q, k, v, scale, opts.chunk_rows, mask);
  o.cost = cost;
  if (opts.want_recall) o.mass_recall = mass_recall(q, k, scale, opts.chunk_rows, mask);
  return o;
}

at::Tensor causal_mask(int64_t q_len, int64_t kv_len, int64_t row0, int64_t rows, at::Device device) {
  const at::Tensor pos = query_positions(q_len, kv_len, row0, rows, device);
  const at::Tensor keys = at::arange(kv_len, at::TensorOptions().dtype(at::kLong).device(device));
  return keys.unsqueeze(0).le(pos.unsqueeze(1));
}

at::Tensor interval_mask(const at::Tensor& lo, const at::Tensor& hi, const at::Tensor& pos, int64_t groups) {
  const at::Tensor p = pos.view({1, 1, -1, 1});
  const at::Tensor m = lo.unsqueeze(2).le(p).logical_and(hi.unsqueeze(2).gt(p));  // [B, Hkv, rows, N]
  return repeat_kv(m, groups);
}

int64_t causal_pairs_per_head(int64_t q_len, int64_t kv_len) {
  return q_len * (kv_len - q_len) + q_len * (q_len + 1) / 2;
}

void finish_cost(Cost& c, const Shape& s, int64_t key_rows_read) {
  c.causal_pairs = s.batch * s.q_heads * causal_pairs_per_head(s.q_len, s.kv_len);
  c.attention_flops = 4.0 * static_cast<double>(s.head_dim) * static_cast<double>(c.kept_pairs);
  const double qo = 2.0 * s.batch * s.q_heads * s.q_len * s.head_dim;  // q read, out written
  const double kv = 2.0 * static_cast<double>(key_rows_read) * s.head_dim;
  c.bytes = (qo + kv) * static_cast<double>(s.elem_size);
}

}  // namespace lcb::attn::ref
