// Naive implementations written straight from DESIGN.md §3 with scalar loops in double. They
// are slow and obviously faithful; the vectorised references are checked against them.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace lcb::test::naive {

using Mat = std::vector<std::vector<double>>;  // [rows][D]

struct Head {  // one (batch, kv head) with its query heads
  std::vector<Mat> q;  // [G][L][D]
  Mat k, v;            // [L][D]
};

inline Head head_of(const at::Tensor& q0, const at::Tensor& k0, const at::Tensor& v0, int64_t b, int64_t kvh) {
  const at::Tensor q = q0.to(at::kCPU, at::kDouble).contiguous(), k = k0.to(at::kCPU, at::kDouble).contiguous(),
                   v = v0.to(at::kCPU, at::kDouble).contiguous();
  const int64_t G = q.size(1) / k.size(1);
  auto rows = [](const at::Tensor& t) {
    Mat m(t.size(0), std::vector<double>(t.size(1)));
    auto a = t.accessor<double, 2>();
    for (int64_t i = 0; i < t.size(0); ++i)
      for (int64_t d = 0; d < t.size(1); ++d) m[i][d] = a[i][d];
    return m;
  };
  Head h;
  for (int64_t g = 0; g < G; ++g) h.q.push_back(rows(q[b][kvh * G + g]));
  h.k = rows(k[b][kvh]);
  h.v = rows(v[b][kvh]);
  return h;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// softmax-weighted sum of `vals` with logits `z`.
inline std::vector<double> attend(const std::vector<double>& z, const Mat& vals) {
  const double mx = *std::max_element(z.begin(), z.end());
  std::vector<double> out(vals.at(0).size(), 0.0);
  double den = 0;
  for (size_t j = 0; j < z.size(); ++j) den += std::exp(z[j] - mx);
  for (size_t j = 0; j < z.size(); ++j) {
    const double w = std::exp(z[j] - mx) / den;
    for (size_t d = 0; d < out.size(); ++d) out[d] += w * vals[j][d];
  }
  return out;
}

// Output of query i of head g given which original keys it sees (Lq == Lk prefill).
inline std::vector<double> attend_keys(const Head& h, int g, int64_t i, const std::vector<int64_t>& keys, double scale) {
  std::vector<double> z;
  Mat vals;
  for (int64_t j : keys) {
    z.push_back(dot(h.q[g][i], h.k[j]) * scale);
    vals.push_back(h.v[j]);
  }
  return attend(z, vals);
}

// Visible key lists, per (g, query): from a predicate over positions.
struct Visible {
  std::vector<std::vector<std::vector<int64_t>>> keys;  // [G][L] -> keys
  int64_t pairs() const {
    int64_t n = 0;
    for (const auto& g : keys)
      for (const auto& r : g) n += static_cast<int64_t>(r.size());
    return n;
  }
};

inline Visible swa(int64_t G, int64_t L, int64_t w, int64_t s) {
  Visible vis;
  vis.keys.assign(G, std::vector<std::vector<int64_t>>(L));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = 0; j <= i; ++j)
        if (i - w < j || j < s) vis.keys[g][i].push_back(j);
  return vis;
}

inline Visible topk(const Head& h, int64_t L, int64_t K, double scale) {
  Visible vis;
  vis.keys.assign(h.q.size(), std::vector<std::vector<int64_t>>(L));
  for (size_t g = 0; g < h.q.size(); ++g)
    for (int64_t i = 0; i < L; ++i) {
      std::vector<int64_t> idx(i + 1);
      std::iota(idx.begin(), idx.end(), 0);
      std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return dot(h.q[g][i], h.k[a]) > dot(h.q[g][i], h.k[b]); });
      idx.resize(std::min<int64_t>(K, i + 1));
      std::sort(idx.begin(), idx.end());
      vis.keys[g][i] = idx;
    }
  return vis;
}

// Block top-k; `queries` lists the query positions that form the query blocks (all of 0..L-1 for
// a prefill, one position for a decode step).
inline Visible topk_block(const Head& h, int64_t L, int64_t b, int64_t K, const std::vector<int64_t>& queries) {
  const int64_t nb = (L + b - 1) / b, D = static_cast<int64_t>(h.k[0].size());
  Mat lo(nb, std::vector<double>(D, INFINITY)), hi(nb, std::vector<double>(D, -INFINITY));
  for (int64_t j = 0; j < L; ++j)
    for (int64_t d = 0; d < D; ++d) {
      lo[j / b][d] = std::min(lo[j / b][d], h.k[j][d]);
      hi[j / b][d] = std::max(hi[j / b][d], h.k[j][d]);
    }
  Visible vis;
  vis.keys.assign(h.q.size(), std::vector<std::vector<int64_t>>(L));
  for (size_t g = 0; g < h.q.size(); ++g)
    for (int64_t qb = 0; qb < nb; ++qb) {
      std::vector<int64_t> members;
      for (int64_t i : queries)
        if (i / b == qb) members.push_back(i);
      if (members.empty()) continue;
      std::vector<std::pair<double, int64_t>> cand;
      for (int64_t kb = 1; kb < qb; ++kb) {
        double best = -INFINITY;
        for (int64_t i : members) {
          double ub = 0;
          for (int64_t d = 0; d < D; ++d) ub += std::max(h.q[g][i][d] * lo[kb][d], h.q[g][i][d] * hi[kb][d]);
          best = std::max(best, ub);
        }
        cand.push_back({best, kb});
      }
      std::sort(cand.begin(), cand.end(), [](auto& x, auto& y) { return x.first > y.first; });
      std::vector<bool> sel(nb, false);
      sel[0] = sel[qb] = true;
      for (int64_t c = 0; c < std::min<int64_t>(K, static_cast<int64_t>(cand.size())); ++c) sel[cand[c].second] = true;
      for (int64_t i : members)
        for (int64_t j = 0; j <= i; ++j)
          if (sel[j / b]) vis.keys[g][i].push_back(j);
    }
  return vis;
}

// --- DGA --------------------------------------------------------------------------------------

struct DgaState {
  std::vector<int64_t> focal;                 // positions
  std::vector<std::vector<int64_t>> groups;   // member positions, ascending
  Mat agg_k, agg_v;                           // one row per group
  std::vector<int64_t> tail;                  // raw positions of the unfinished group
};

inline std::vector<double> softmax(const std::vector<double>& z) {
  const double mx = *std::max_element(z.begin(), z.end());
  std::vector<double> p(z.size());
  double den = 0;
  for (size_t j = 0; j < z.size(); ++j) den += (p[j] = std::exp(z[j] - mx));
  for (auto& x : p) x /= den;
  return p;
}

// Aggregates the group `members` with weights from the query rows `qrows` (one per query head).
inline void aggregate(const Head& h, const std::vector<int64_t>& members, const Mat& qrows, double scale, DgaState& st) {
  std::vector<double> z;
  for (int64_t j : members) {
    double s = 0;
    for (const auto& qr : qrows) s += dot(qr, h.k[j]);
    z.push_back(s / static_cast<double>(qrows.size()) * scale);
  }
  const auto w = softmax(z);
  const size_t D = h.k[0].size();
  std::vector<double> ka(D, 0.0), va(D, 0.0);
  for (size_t t = 0; t < members.size(); ++t)
    for (size_t d = 0; d < D; ++d) {
      ka[d] += w[t] * h.k[members[t]][d];
      va[d] += w[t] * h.v[members[t]][d];
    }
  st.groups.push_back(members);
  st.agg_k.push_back(ka);
  st.agg_v.push_back(va);
}

inline int64_t ceil_clean(double x) { return static_cast<int64_t>(std::ceil(x - 1e-9)); }

// DGA prefill of one head: outputs [G][L][D], the state the decode continues from, and the number
// of visible (query, compressed key) pairs summed over the query heads.
inline std::vector<Mat> dga_prefill(const Head& h, int64_t m, double gamma, int64_t samples, bool strided,
                                    double scale, DgaState& st, int64_t& pairs) {
  const int64_t L = static_cast<int64_t>(h.k.size()), G = static_cast<int64_t>(h.q.size());
  std::vector<int64_t> S;
  const int64_t n = std::min(samples, L);
  for (int64_t t = 0; t < n; ++t) S.push_back(strided ? (t + 1) * L / n - 1 : L - n + t);
  std::vector<double> imp(L, 0.0);
  for (int64_t i : S)
    for (int64_t g = 0; g < G; ++g) {
      std::vector<double> z;
      for (int64_t j = 0; j <= i; ++j) z.push_back(dot(h.q[g][i], h.k[j]) * scale);
      const auto p = softmax(z);
      for (int64_t j = 0; j <= i; ++j) imp[j] += p[j];
    }
  const int64_t F = std::min(L, ceil_clean(gamma * static_cast<double>(L)));
  std::vector<int64_t> by_imp(L);
  std::iota(by_imp.begin(), by_imp.end(), 0);
  std::stable_sort(by_imp.begin(), by_imp.end(), [&](int64_t a, int64_t b) { return imp[a] > imp[b]; });
  std::vector<bool> is_focal(L, false);
  for (int64_t t = 0; t < F; ++t) is_focal[by_imp[t]] = true;
  std::vector<int64_t> rest;
  for (int64_t j = 0; j < L; ++j) (is_focal[j] ? st.focal : rest).push_back(j);
  std::vector<int64_t> end_of(L, std::numeric_limits<int64_t>::max());  // e_g of each grouped token
  for (size_t t = 0; t + m <= rest.size(); t += m) {
    std::vector<int64_t> members(rest.begin() + t, rest.begin() + t + m);
    Mat qrows;
    for (int64_t g = 0; g < G; ++g) qrows.push_back(h.q[g][members.back()]);
    aggregate(h, members, qrows, scale, st);
    for (int64_t j : members) end_of[j] = members.back();
  }
  for (size_t t = st.groups.size() * m; t < rest.size(); ++t) st.tail.push_back(rest[t]);

  std::vector<Mat> out(G, Mat(L));
  pairs = 0;
  for (int64_t g = 0; g < G; ++g)
    for (int64_t i = 0; i < L; ++i) {
      std::vector<double> z;
      Mat vals;
      for (int64_t j : st.focal)
        if (j <= i) z.push_back(dot(h.q[g][i], h.k[j]) * scale), vals.push_back(h.v[j]);
      for (size_t c = 0; c < st.groups.size(); ++c)
        if (st.groups[c].back() <= i) z.push_back(dot(h.q[g][i], st.agg_k[c]) * scale), vals.push_back(st.agg_v[c]);
      for (int64_t j : rest)
        if (j <= i && i < end_of[j]) z.push_back(dot(h.q[g][i], h.k[j]) * scale), vals.push_back(h.v[j]);
      pairs += static_cast<int64_t>(z.size());
      out[g][i] = attend(z, vals);
    }
  return out;
}

// One DGA decode step for the token at position p (its k/v already in h.k/h.v, its queries in
// h.q[g][p]): attend over the whole cache, then regroup a full tail.
inline Mat dga_decode(const Head& h, int64_t p, int64_t m, double gamma, double scale, DgaState& st) {
  const int64_t G = static_cast<int64_t>(h.q.size());
  st.tail.push_back(p);
  Mat out(G);
  std::vector<double> tail_attn(st.tail.size(), 0.0);
  for (int64_t g = 0; g < G; ++g) {
    std::vector<double> z;
    Mat vals;
    for (int64_t j : st.focal) z.push_back(dot(h.q[g][p], h.k[j]) * scale), vals.push_back(h.v[j]);
    for (size_t c = 0; c < st.agg_k.size(); ++c) z.push_back(dot(h.q[g][p], st.agg_k[c]) * scale), vals.push_back(st.agg_v[c]);
    for (int64_t j : st.tail) z.push_back(dot(h.q[g][p], h.k[j]) * scale), vals.push_back(h.v[j]);
    const auto w = softmax(z);
    for (size_t t = 0; t < st.tail.size(); ++t) tail_attn[t] += w[w.size() - st.tail.size() + t];
    out[g] = attend(z, vals);
  }
  if (gamma < 1.0 && static_cast<int64_t>(st.tail.size()) >= ceil_clean(m / (1.0 - gamma))) {
    const int64_t n_focal = static_cast<int64_t>(st.tail.size()) - m;
    std::vector<size_t> order(st.tail.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return tail_attn[a] > tail_attn[b]; });
    std::vector<bool> promote(st.tail.size(), false);
    for (int64_t t = 0; t < n_focal; ++t) promote[order[t]] = true;
    std::vector<int64_t> members;
    for (size_t t = 0; t < st.tail.size(); ++t) (promote[t] ? st.focal : members).push_back(st.tail[t]);
    Mat qrows;
    for (int64_t g = 0; g < G; ++g) qrows.push_back(h.q[g][p]);
    aggregate(h, members, qrows, scale, st);
    st.tail.clear();
  }
  return out;
}

}  // namespace lcb::test::naive
