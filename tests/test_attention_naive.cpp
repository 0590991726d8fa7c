// The vectorised references against naive loop implementations of the specification (float64),
// for parameters where they are *not* dense; cost() and the reported kept pairs against
// brute-force counts of the same masks; decode step by step.
#include "attention_impls/registry.h"
#include "tests/naive_attention.h"
#include "tests/test_util.h"

namespace lcb::attn {
namespace {

constexpr int64_t B = 2, HKV = 2, G = 3, D = 8;

// Runs `spec` on random float64 input and compares every (b, head, query) row with the naive
// output built from `visible` (which gets the head and returns visible key lists).
template <typename VisibleFn>
void check_against_naive(const std::string& spec, int64_t L, VisibleFn visible) {
  const auto in = test::random_qkv(B, HKV * G, HKV, L, L, D, 42 + L, at::kDouble);
  const auto impl = make_attention(spec);
  const Output o = impl->forward(in.q, in.k, in.v, {});
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  int64_t pairs = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t kvh = 0; kvh < HKV; ++kvh) {
      const auto h = test::naive::head_of(in.q, in.k, in.v, b, kvh);
      const test::naive::Visible vis = visible(h, L);
      pairs += vis.pairs();
      for (int g = 0; g < G; ++g)
        for (int64_t i = 0; i < L; ++i) {
          const auto want = test::naive::attend_keys(h, g, i, vis.keys[g][i], scale);
          const auto got = o.out[b][kvh * G + g][i];
          for (int64_t d = 0; d < D; ++d) {
            ASSERT_NEAR(got[d].item<double>(), want[d], 1e-10) << spec << " b=" << b << " head=" << kvh * G + g << " i=" << i;
          }
        }
    }
  EXPECT_EQ(o.cost.kept_pairs, pairs) << spec << ": reported pairs differ from the mask";
  const auto c = impl->cost(Shape::of(in.q, in.k));
  ASSERT_TRUE(c.has_value()) << spec;
  EXPECT_EQ(c->kept_pairs, pairs) << spec << ": cost() differs from the brute-force count";
  EXPECT_EQ(c->causal_pairs, B * HKV * G * L * (L + 1) / 2);
  EXPECT_DOUBLE_EQ(c->attention_flops, 4.0 * D * static_cast<double>(pairs));
}

TEST(NaiveSpec, SlidingWindow) {
  for (int64_t L : {1, 9, 37}) {
    check_against_naive("swa:window=5", L, [](const auto&, int64_t n) { return test::naive::swa(G, n, 5, 0); });
    check_against_naive("swa:window=4,sink=3", L, [](const auto&, int64_t n) { return test::naive::swa(G, n, 4, 3); });
    check_against_naive("swa:window=1,sink=1", L, [](const auto&, int64_t n) { return test::naive::swa(G, n, 1, 1); });
  }
}

TEST(NaiveSpec, TopK) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  for (int64_t L : {1, 9, 37}) {
    for (int64_t K : {1, 6}) {
      check_against_naive("topk:k=" + std::to_string(K), L,
                          [&](const auto& h, int64_t n) { return test::naive::topk(h, n, K, scale); });
    }
  }
}

TEST(NaiveSpec, TopKBlock) {
  for (int64_t L : {1, 9, 37, 64}) {
    std::vector<int64_t> all(L);
    std::iota(all.begin(), all.end(), 0);
    for (auto [b, K] : {std::pair<int64_t, int64_t>{4, 2}, {5, 1}, {3, 0}}) {
      check_against_naive("topk_block:block=" + std::to_string(b) + ",k=" + std::to_string(K), L,
                          [&](const auto& h, int64_t n) { return test::naive::topk_block(h, n, b, K, all); });
    }
  }
}

struct DgaCase {
  int64_t L, m;
  double gamma;
  int64_t samples;
  bool strided;
};

std::string dga_spec(const DgaCase& c) {
  return "dga:m=" + std::to_string(c.m) + ",gamma=" + format_number(c.gamma) + ",samples=" + std::to_string(c.samples) +
         ",sample=" + (c.strided ? "strided" : "last");
}

TEST(NaiveSpec, DgaPrefill) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  for (const DgaCase c : {DgaCase{37, 4, 0.25, 8, false}, DgaCase{37, 3, 0.1, 5, true}, DgaCase{50, 5, 0.3, 64, false},
                          DgaCase{1, 4, 0.1, 4, false}, DgaCase{13, 16, 0.1, 4, false}, DgaCase{30, 4, 0.0, 6, true},
                          DgaCase{30, 1, 0.5, 3, false}}) {
    const std::string spec = dga_spec(c);
    const auto in = test::random_qkv(B, HKV * G, HKV, c.L, c.L, D, 7 + c.L + c.m, at::kDouble);
    const Output o = make_attention(spec)->forward(in.q, in.k, in.v, {});
    int64_t pairs = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t kvh = 0; kvh < HKV; ++kvh) {
        const auto h = test::naive::head_of(in.q, in.k, in.v, b, kvh);
        test::naive::DgaState st;
        int64_t head_pairs = 0;
        const auto want = test::naive::dga_prefill(h, c.m, c.gamma, c.samples, c.strided, scale, st, head_pairs);
        pairs += head_pairs;
        for (int g = 0; g < G; ++g)
          for (int64_t i = 0; i < c.L; ++i)
            for (int64_t d = 0; d < D; ++d) {
              ASSERT_NEAR(o.out[b][kvh * G + g][i][d].item<double>(), want[g][i][d], 1e-10)
                  << spec << " b=" << b << " head=" << kvh * G + g << " i=" << i;
            }
      }
    EXPECT_EQ(o.cost.kept_pairs, pairs) << spec;
    EXPECT_GT(o.cost.selection_flops, 0) << spec;
  }
}

// Decode step by step equals the prefill's last rows for dense, swa and topk (float32).
TEST(Decode, MatchesPrefillRows) {
  const int64_t L = 40, P = 13;
  const auto in = test::random_qkv(2, 8, 2, L, L, 16, 5, at::kFloat);
  for (const std::string& spec : std::vector<std::string>{"dense", "swa:window=6", "swa:window=5,sink=2", "swa:window=64", "topk:k=7", "topk:k=1"}) {
    for (const bool reference : {false, true}) {
      const auto impl = make_attention(spec);
      Options opts;
      opts.reference = reference;
      const at::Tensor full = impl->forward(in.q, in.k, in.v, opts).out;
      std::unique_ptr<Cache> cache;
      const Output pre = impl->forward(in.q.narrow(2, 0, P), in.k.narrow(2, 0, P), in.v.narrow(2, 0, P), opts, &cache);
      ASSERT_TRUE(cache);
      EXPECT_LT(test::rel_l2(pre.out, full.narrow(2, 0, P)), 1e-5) << spec;
      for (int64_t i = P; i < L; ++i) {
        const at::Tensor o = impl->decode(in.q.narrow(2, i, 1), in.k.narrow(2, i, 1), in.v.narrow(2, i, 1), *cache, opts);
        ASSERT_EQ(cache->length(), i + 1);
        ASSERT_LT(test::rel_l2(o, full.narrow(2, i, 1)), 1e-5) << spec << " step " << i;
      }
    }
  }
}

// The sliding-window cache holds only what later queries can see.
TEST(Decode, WindowCacheStaysBounded) {
  const auto in = test::random_qkv(1, 4, 2, 50, 50, 8, 3, at::kFloat);
  const auto impl = make_attention("swa:window=6,sink=2");
  std::unique_ptr<Cache> cache;
  impl->forward(in.q.narrow(2, 0, 20), in.k.narrow(2, 0, 20), in.v.narrow(2, 0, 20), {}, &cache);
  for (int64_t i = 20; i < 50; ++i) impl->decode(in.q.narrow(2, i, 1), in.k.narrow(2, i, 1), in.v.narrow(2, i, 1), *cache, {});
  const int64_t per_token = 2 * 2 * 8 * 4;  // k and v, 2 kv heads, D=8, float32
  EXPECT_EQ(cache->bytes(), (5 + 2) * per_token);  // window - 1 recent tokens and the sinks
}

// topk_block decode: the new query is its own query block (naive selection from it alone).
TEST(Decode, TopKBlockSelectsFromTheNewQuery) {
  const int64_t L = 30, P = 11, b = 4, K = 2;
  const auto in = test::random_qkv(1, 6, 2, L, L, D, 9, at::kDouble);
  const auto impl = make_attention("topk_block:block=4,k=2");
  std::unique_ptr<Cache> cache;
  impl->forward(in.q.narrow(2, 0, P), in.k.narrow(2, 0, P), in.v.narrow(2, 0, P), {}, &cache);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  for (int64_t i = P; i < L; ++i) {
    const at::Tensor o = impl->decode(in.q.narrow(2, i, 1), in.k.narrow(2, i, 1), in.v.narrow(2, i, 1), *cache, {});
    for (int64_t kvh = 0; kvh < 2; ++kvh) {
      const auto h = test::naive::head_of(in.q.narrow(2, 0, i + 1), in.k.narrow(2, 0, i + 1), in.v.narrow(2, 0, i + 1), 0, kvh);
      const auto vis = test::naive::topk_block(h, i + 1, b, K, {i});
      for (int g = 0; g < 3; ++g) {
        const auto want = test::naive::attend_keys(h, g, i, vis.keys[g][i], scale);
        for (int64_t d = 0; d < D; ++d) ASSERT_NEAR(o[0][kvh * 3 + g][0][d].item<double>(), want[d], 1e-10) << "step " << i;
      }
    }
  }
}

// DGA decode follows its regrouping rule: outputs and cache sizes match the naive simulation.
TEST(Decode, DgaFollowsRegroupingRule) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  for (const DgaCase c : {DgaCase{21, 4, 0.25, 6, false}, DgaCase{16, 3, 0.0, 4, true}, DgaCase{10, 2, 0.6, 3, false}}) {
    const int64_t total = c.L + 25;
    const auto in = test::random_qkv(1, HKV * G, HKV, total, total, D, 77 + c.m, at::kDouble);
    const auto impl = make_attention(dga_spec(c));
    std::unique_ptr<Cache> cache;
    impl->forward(in.q.narrow(2, 0, c.L), in.k.narrow(2, 0, c.L), in.v.narrow(2, 0, c.L), {}, &cache);
    std::vector<test::naive::DgaState> states(HKV);
    for (int64_t kvh = 0; kvh < HKV; ++kvh) {
      const auto h = test::naive::head_of(in.q.narrow(2, 0, c.L), in.k.narrow(2, 0, c.L), in.v.narrow(2, 0, c.L), 0, kvh);
      int64_t unused = 0;
      test::naive::dga_prefill(h, c.m, c.gamma, c.samples, c.strided, scale, states[kvh], unused);
    }
    const auto full = [&](int64_t kvh) { return test::naive::head_of(in.q, in.k, in.v, 0, kvh); };
    const auto h0 = full(0), h1 = full(1);
    int64_t regroups = 0;
    for (int64_t p = c.L; p < total; ++p) {
      const at::Tensor o = impl->decode(in.q.narrow(2, p, 1), in.k.narrow(2, p, 1), in.v.narrow(2, p, 1), *cache, {});
      const size_t groups_before = states[0].groups.size();
      for (int64_t kvh = 0; kvh < HKV; ++kvh) {
        const auto want = test::naive::dga_decode(kvh == 0 ? h0 : h1, p, c.m, c.gamma, scale, states[kvh]);
        for (int g = 0; g < G; ++g)
          for (int64_t d = 0; d < D; ++d)
            ASSERT_NEAR(o[0][kvh * G + g][0][d].item<double>(), want[g][d], 1e-10) << dga_spec(c) << " step " << p;
      }
      regroups += states[0].groups.size() > groups_before;
      // Cache = focal + aggregates + tail, in bytes of float64 k and v rows.
      const auto& st = states[0];
      const int64_t rows = static_cast<int64_t>(st.focal.size() + st.groups.size() + st.tail.size());
      ASSERT_EQ(cache->bytes(), rows * 2 * HKV * D * 8) << "step " << p;
    }
    EXPECT_GT(regroups, 0) << dga_spec(c) << ": the test must exercise regrouping";
  }
}

// Decode identities: gamma = 1 never groups and m = 1 groups single tokens; both equal dense.
TEST(Decode, DgaIdentitiesEqualDense) {
  const int64_t L = 40, P = 17;
  const auto in = test::random_qkv(1, 8, 2, L, L, 16, 8, at::kFloat);
  const at::Tensor want = test::dense_f64(in.q, in.k, in.v);
  for (const std::string& spec : std::vector<std::string>{"dga:m=4,gamma=1", "dga:m=1,gamma=0.1", "dga:m=1,gamma=0"}) {
    const auto impl = make_attention(spec);
    std::unique_ptr<Cache> cache;
    impl->forward(in.q.narrow(2, 0, P), in.k.narrow(2, 0, P), in.v.narrow(2, 0, P), {}, &cache);
    for (int64_t i = P; i < L; ++i) {
      const at::Tensor o = impl->decode(in.q.narrow(2, i, 1), in.k.narrow(2, i, 1), in.v.narrow(2, i, 1), *cache, {});
      ASSERT_LT(test::rel_l2(o, want.narrow(2, i, 1)), 1e-5) << spec << " step " << i;
    }
  }
}

}  // namespace
}  // namespace lcb::attn
