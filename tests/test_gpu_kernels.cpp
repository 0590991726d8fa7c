// The CUDA kernels against their references: the visibility-interval kernel (causal dense, random
// intervals, sliding window and DGA through the registry), exact top-k (its select and the
// bounded attention), the selection kernels of topk_block and DGA, and the split-KV decode kernel
// (dense cache, DGA's segmented cache, decode sequences with regrouping). Random inputs, odd lengths,
// GQA ratios, bf16 and fp16, head dims 64 and 128. Tolerances: the kernel's error against
// float64 may be at most a small factor above the error the plain-LibTorch reference makes in the
// same dtype (test::derived_tolerance), never above DESIGN.md's 1e-2. Skips without a GPU.
#include "attention_impls/dga.h"
#include "attention_impls/fast.h"
#include "attention_impls/reference.h"
#include "attention_impls/registry.h"
#include "tests/test_util.h"

#include <ATen/cuda/CUDAEvent.h>
#include <torch/cuda.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace lcb {
namespace {

#define REQUIRE_GPU()                                                                                              \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: this test runs on the GPU machine (tools/gpu/run.sh)"; \
  if (!attn::fast::built()) GTEST_SKIP() << "this build has no CUDA kernels"

const at::Device kCuda(at::kCUDA, 0);

// Attention under per-key intervals in float64, from the formula.
// With block_sel [B, Hq, query blocks, key blocks] (64 each), also that selection.
at::Tensor interval_f64(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& lo,
                        const at::Tensor& hi, int64_t q_pos0, const at::Tensor& block_sel = at::Tensor()) {
  const at::Tensor pos = at::arange(q_pos0, q_pos0 + q.size(2), lo.options());
  const int64_t groups = q.size(1) / k.size(1);
  at::Tensor mask = attn::ref::interval_mask(lo, hi, pos, groups);  // [B, Hq, Lq, N]
  if (block_sel.defined()) {
    const at::Tensor per_query = block_sel.to(at::kBool).index_select(2, pos.div(64, "floor"));
    mask = mask.logical_and(per_query.repeat_interleave(64, -1).narrow(-1, 0, k.size(2)));
  }
  const at::Tensor qd = q.to(at::kDouble), kd = attn::ref::repeat_kv(k.to(at::kDouble), groups),
                   vd = attn::ref::repeat_kv(v.to(at::kDouble), groups);
  const at::Tensor logits = at::matmul(qd, kd.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(3)));
  at::Tensor p = at::softmax(logits.masked_fill(mask.logical_not(), -INFINITY), -1);
  p = at::nan_to_num(p, 0.0);  // rows with no visible key give zeros
  return at::matmul(p, vd);
}

struct Case {
  int64_t L, hq, hkv, d;
};

// An environment variable set for one scope: the kernels' variants are picked by one.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~ScopedEnv() { unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

// Head dim 128 has three kernels (wgmma with 128-key tiles, the default; wgmma with 64-key tiles;
// mma.sync); LCB_INTERVAL_KERNEL picks one.
class IntervalVariant : public ScopedEnv {
 public:
  explicit IntervalVariant(const char* name) : ScopedEnv("LCB_INTERVAL_KERNEL", name) {}
};

TEST(IntervalKernel, CausalDenseMatchesFloat64) {
  REQUIRE_GPU();
  for (const char* variant : {"wgmma", "wgmma64", "mma"})
  for (const auto dtype : {at::kBFloat16, at::kHalf}) {
    const IntervalVariant use(variant);
    for (const Case c : {Case{1, 4, 1, 64}, Case{17, 8, 2, 128}, Case{129, 8, 8, 64}, Case{1013, 32, 4, 128},
                         Case{4099, 8, 1, 128}}) {
      const auto in = test::random_qkv(1, c.hq, c.hkv, c.L, c.L, c.d, 100 + c.L, dtype, kCuda);
      const at::Tensor want = test::dense_f64(in.q, in.k, in.v);
      const at::Tensor lo = at::arange(c.L, at::TensorOptions().dtype(at::kLong).device(kCuda));
      const at::Tensor hi = at::full({c.L}, attn::ref::kNever, lo.options());
      const at::Tensor got = attn::fast::interval_attention(in.q, in.k, in.v, lo, hi, 0, 1.0 / std::sqrt(double(c.d)));
      attn::Options ref;
      ref.reference = true;
      const double ref_err = test::rel_l2(attn::make_attention("dense")->forward(in.q, in.k, in.v, ref).out, want);
      const double err = test::rel_l2(got, want);
      EXPECT_LE(err, test::derived_tolerance(dtype, ref_err)) << variant << " " << test::dtype_name(dtype) << " L=" << c.L
                                                             << " Hq=" << c.hq << " Hkv=" << c.hkv << " D=" << c.d;
      if (c.d == 128) std::printf("interval %s %s L=%lld rel_err=%.2e (reference %.2e)\n", variant, test::dtype_name(dtype),
                                  static_cast<long long>(c.L), err, ref_err);
    }
  }
}

// Random intervals per (batch, kv head, key), keys in arbitrary order, some never visible, some
// query rows seeing nothing, queries offset from position 0 (q_pos0), batch 2.
TEST(IntervalKernel, RandomIntervalsMatchFloat64) {
  REQUIRE_GPU();
  for (const char* variant : {"wgmma", "wgmma64", "mma"})
  for (const auto dtype : {at::kBFloat16, at::kHalf}) {
    const IntervalVariant use(variant);
    for (const Case c : {Case{77, 4, 2, 64}, Case{333, 8, 1, 128}, Case{1500, 12, 4, 128}}) {
      const int64_t N = c.L + 37, q_pos0 = 50;
      const auto in = test::random_qkv(2, c.hq, c.hkv, c.L, N, c.d, 7 + c.L, dtype, kCuda);
      auto gen = at::make_generator<at::CPUGeneratorImpl>(c.L);
      const auto lopt = at::TensorOptions().dtype(at::kLong);
      const at::Tensor lo = at::randint(0, q_pos0 + c.L, {2, c.hkv, N}, gen, lopt);
      const at::Tensor span = at::randint(1, c.L, {2, c.hkv, N}, gen, lopt);
      const at::Tensor forever = at::rand({2, c.hkv, N}, gen, at::TensorOptions().dtype(at::kDouble)).lt(0.3);
      const at::Tensor hi = at::where(forever, at::full({}, attn::ref::kNever, lopt), lo + span);
      const at::Tensor lo_d = lo.to(kCuda), hi_d = hi.to(kCuda);
      // Without and with a random block selection (the block-sparse path: 64-row CTAs for D=128).
      const int64_t nqb = (q_pos0 + c.L + 63) / 64, nkb = (N + 63) / 64;
      const at::Tensor sel = at::rand({2, c.hq, nqb, nkb}, gen, at::TensorOptions().dtype(at::kDouble)).lt(0.4).to(kCuda);
      for (const at::Tensor& block_sel : {at::Tensor(), sel}) {
        const at::Tensor want = interval_f64(in.q, in.k, in.v, lo_d, hi_d, q_pos0, block_sel);
        const at::Tensor got =
            attn::fast::interval_attention(in.q, in.k, in.v, lo_d, hi_d, q_pos0, 1.0 / std::sqrt(double(c.d)), block_sel);
        // The same inputs through float32 math give the reference's own error in this dtype.
        const at::Tensor ref32 =
            interval_f64(in.q.to(at::kFloat), in.k.to(at::kFloat), in.v.to(at::kFloat), lo_d, hi_d, q_pos0, block_sel).to(dtype);
        const double err = test::rel_l2(got, want), ref_err = test::rel_l2(ref32, want);
        EXPECT_LE(err, test::derived_tolerance(dtype, ref_err)) << variant << " " << test::dtype_name(dtype) << " L=" << c.L
                                                               << " D=" << c.d << (block_sel.defined() ? " with block_sel" : "");
        EXPECT_TRUE(test::all_finite(got));
      }
    }
  }
}

// Whole query tiles that see no key (rows 0 .. 599: every key's interval starts at 600 or later)
// among tiles that do, more tiles than CTAs: the wgmma kernel's CTAs take tiles in turn, and an
// empty tile's zeros must not disturb the pipeline for the tiles after it.
TEST(IntervalKernel, QueryTilesThatSeeNothingGiveZeros) {
  REQUIRE_GPU();
  const int64_t B = 2, Hq = 16, Hkv = 4, L = 1200, N = 900, D = 128, blind = 600;
  const auto in = test::random_qkv(B, Hq, Hkv, L, N, D, 5, at::kBFloat16, kCuda);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(17);
  const auto lopt = at::TensorOptions().dtype(at::kLong);
  const at::Tensor lo = at::randint(blind, L, {B, Hkv, N}, gen, lopt);
  const at::Tensor span = at::randint(1, 400, {B, Hkv, N}, gen, lopt);
  const at::Tensor forever = at::rand({B, Hkv, N}, gen, at::TensorOptions().dtype(at::kDouble)).lt(0.5);
  const at::Tensor lo_d = lo.to(kCuda), hi_d = at::where(forever, at::full({}, attn::ref::kNever, lopt), lo + span).to(kCuda);
  const at::Tensor want = interval_f64(in.q, in.k, in.v, lo_d, hi_d, 0);
  const at::Tensor ref32 = interval_f64(in.q.to(at::kFloat), in.k.to(at::kFloat), in.v.to(at::kFloat), lo_d, hi_d, 0)
                               .to(at::kBFloat16);
  for (const char* variant : {"wgmma", "wgmma64", "wgmma64x1", "mma"}) {
    const IntervalVariant use(variant);
    const at::Tensor got = attn::fast::interval_attention(in.q, in.k, in.v, lo_d, hi_d, 0, 1.0 / std::sqrt(double(D)));
    EXPECT_EQ(got.narrow(2, 0, blind).abs().max().item<float>(), 0.f) << variant;
    EXPECT_LE(test::rel_l2(got, want), test::derived_tolerance(at::kBFloat16, test::rel_l2(ref32, want))) << variant;
  }
}

// 128-key tiles of which a query tile sees keys in one 64-key half only: the default kernel
// computes that half alone (kHalfLo / kHalfHi), in a loop of its own between whole tiles. Tile t
// of the keys is causal throughout (t % 3 == 0), causal in its first half only (1) or in its
// second half only (2); the other half's keys are never visible ([0, 0)). Odd lengths, GQA 4:1,
// both dtypes, every head-dim-128 kernel.
TEST(IntervalKernel, HalfVisibleTilesMatchFloat64) {
  REQUIRE_GPU();
  const int64_t B = 2, Hq = 8, Hkv = 2, L = 1000, N = 1100, D = 128;
  const auto lopt = at::TensorOptions().dtype(at::kLong);
  const at::Tensor n = at::arange(N, lopt), mode = n.div(128, "floor").remainder(3), half = n.remainder(128).div(64, "floor");
  const at::Tensor seen = mode.eq(0).logical_or(mode.eq(1).logical_and(half.eq(0))).logical_or(mode.eq(2).logical_and(half.eq(1)));
  const at::Tensor lo = at::where(seen, n, at::zeros_like(n)).to(kCuda);
  const at::Tensor hi = at::where(seen, at::full_like(n, attn::ref::kNever), at::zeros_like(n)).to(kCuda);
  for (const auto dtype : {at::kBFloat16, at::kHalf}) {
    // Queries sit at positions 100 .. 1099, so that every query tile also has whole tiles before it.
    const auto in = test::random_qkv(B, Hq, Hkv, L, N, D, 57, dtype, kCuda);
    const at::Tensor lo_b = lo.expand({B, Hkv, N}), hi_b = hi.expand({B, Hkv, N});
    const at::Tensor want = interval_f64(in.q, in.k, in.v, lo_b, hi_b, N - L);
    const at::Tensor ref32 =
        interval_f64(in.q.to(at::kFloat), in.k.to(at::kFloat), in.v.to(at::kFloat), lo_b, hi_b, N - L).to(dtype);
    for (const char* variant : {"wgmma", "wgmma64", "mma"}) {
      const IntervalVariant use(variant);
      const at::Tensor got = attn::fast::interval_attention(in.q, in.k, in.v, lo, hi, N - L, 1.0 / std::sqrt(double(D)));
      EXPECT_LE(test::rel_l2(got, want), test::derived_tolerance(dtype, test::rel_l2(ref32, want)))
          << variant << " " << test::dtype_name(dtype);
    }
  }
}

// Long key sequences made of 4096-key stretches (the coarse summaries' span: the wgmma kernels
// skip a stretch that no row of a query tile can see), each stretch, per batch and kv head, one
// of: never visible; visible from a random query position on; visible over a random window of
// the query positions; always visible. The last stretch is partial, the queries (positions
// N - L .. N - 1) cross several tiles of every shape, and the 64-row kernel also runs with a
// random block selection. Every head-dim-128 kernel against float64.
TEST(IntervalKernel, StretchesNoRowSeesMatchFloat64) {
  REQUIRE_GPU();
  const int64_t B = 2, Hq = 8, Hkv = 2, L = 1300, N = 4 * 4096 + 777, D = 128, stretch = 4096;
  const int64_t q_pos0 = N - L, n_stretch = (N + stretch - 1) / stretch;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(23);
  const auto lopt = at::TensorOptions().dtype(at::kLong);
  const at::Tensor mode = at::randint(0, 4, {B, Hkv, n_stretch}, gen, lopt).repeat_interleave(stretch, -1).narrow(-1, 0, N);
  const at::Tensor from = at::randint(q_pos0, N, {B, Hkv, N}, gen, lopt);
  const at::Tensor span = at::randint(1, L / 2, {B, Hkv, N}, gen, lopt);
  const at::Tensor never = at::full({}, attn::ref::kNever, lopt), zero = at::zeros({}, lopt);
  const at::Tensor lo = at::where(mode.eq(0), zero, at::where(mode.eq(3), zero, from)).to(kCuda);
  const at::Tensor hi = at::where(mode.eq(0), zero, at::where(mode.eq(2), from + span, never)).to(kCuda);
  const auto in = test::random_qkv(B, Hq, Hkv, L, N, D, 29, at::kBFloat16, kCuda);
  const at::Tensor sel = at::rand({B, Hq, (N + 63) / 64, (N + 63) / 64}, gen, at::TensorOptions().dtype(at::kDouble))
                             .lt(0.5)
                             .to(kCuda);
  for (const at::Tensor& block_sel : {at::Tensor(), sel}) {
    const at::Tensor want = interval_f64(in.q, in.k, in.v, lo, hi, q_pos0, block_sel);
    const at::Tensor ref32 =
        interval_f64(in.q.to(at::kFloat), in.k.to(at::kFloat), in.v.to(at::kFloat), lo, hi, q_pos0, block_sel)
            .to(at::kBFloat16);
    const double tol = test::derived_tolerance(at::kBFloat16, test::rel_l2(ref32, want));
    const std::vector<const char*> variants = block_sel.defined() ? std::vector<const char*>{"wgmma"}
                                                                  : std::vector<const char*>{"wgmma", "wgmma64", "wgmma64x1", "mma"};
    for (const char* variant : variants) {
      const IntervalVariant use(variant);
      const at::Tensor got =
          attn::fast::interval_attention(in.q, in.k, in.v, lo, hi, q_pos0, 1.0 / std::sqrt(double(D)), block_sel);
      EXPECT_LE(test::rel_l2(got, want), tol) << variant << (block_sel.defined() ? " with block_sel" : "");
      EXPECT_TRUE(test::all_finite(got)) << variant;
    }
  }
}

// Strided inputs, which the TMA kernel addresses through its tensor maps: queries as a [B, L, H, D]
// tensor viewed as [B, H, L, D] (the head stride below the row stride), and keys/values shared by
// the whole batch through expand() (batch stride 0, which TMA cannot address: the mma.sync kernel
// runs instead). Causal intervals, batch 3, GQA 8/2, head dim 128, odd length.
TEST(IntervalKernel, StridedAndExpandedInputsMatchFloat64) {
  REQUIRE_GPU();
  const int64_t B = 3, Hq = 8, Hkv = 2, L = 301, D = 128;
  for (const auto dtype : {at::kBFloat16, at::kHalf}) {
    const auto in = test::random_qkv(B, Hq, Hkv, L, L, D, 41, dtype, kCuda);
    const at::Tensor q_blhd = in.q.transpose(1, 2).contiguous().transpose(1, 2);  // same values, strides (L·H·D, D, H·D)
    const at::Tensor k_shared = in.k.narrow(0, 0, 1).expand({B, Hkv, L, D});
    const at::Tensor v_shared = in.v.narrow(0, 0, 1).expand({B, Hkv, L, D});
    const at::Tensor lo = at::arange(L, at::TensorOptions().dtype(at::kLong).device(kCuda));
    const at::Tensor hi = at::full({L}, attn::ref::kNever, lo.options());
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    struct Inputs {
      const char* what;
      at::Tensor q, k, v;
    };
    for (const Inputs& x : {Inputs{"strided q", q_blhd, in.k, in.v}, Inputs{"expanded k/v", in.q, k_shared, v_shared}}) {
      const at::Tensor want = interval_f64(x.q, x.k, x.v, lo.expand({B, Hkv, L}), hi.expand({B, Hkv, L}), 0);
      const at::Tensor ref32 = interval_f64(x.q.to(at::kFloat), x.k.to(at::kFloat), x.v.to(at::kFloat),
                                            lo.expand({B, Hkv, L}), hi.expand({B, Hkv, L}), 0)
                                   .to(dtype);
      const at::Tensor got = attn::fast::interval_attention(x.q, x.k, x.v, lo, hi, 0, scale);
      EXPECT_LE(test::rel_l2(got, want), test::derived_tolerance(dtype, test::rel_l2(ref32, want)))
          << x.what << " " << test::dtype_name(dtype);
    }
  }
}

// Keys from two sources (DGA's merged rows, then its input's k / v where they lie): the first
// source's rows, a multiple of 128 of which the last never visible (zeros, as DGA pads them),
// then a strided second source of odd length. Every kernel gives exactly the output of the same
// keys in one tensor, and matches float64; a first source of other than a multiple of 128 rows is
// refused with the reason.
TEST(IntervalKernel, TwoKeySourcesReadAsOne) {
  REQUIRE_GPU();
  const int64_t B = 2, q_pos0 = 40;
  for (const Case c : {Case{700, 8, 2, 128}, Case{333, 4, 4, 64}}) {
    const int64_t split = 256, used = 201, N2 = c.L + q_pos0 - 77, N = split + N2;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(c.L);
    const auto in = test::random_qkv(B, c.hq, c.hkv, c.L, N, c.d, 3 + c.L, at::kBFloat16, kCuda);
    // k / v with rows used .. split - 1 zero; the second source a view of a longer tensor.
    const at::Tensor pad = at::arange(split, at::TensorOptions().dtype(at::kLong).device(kCuda)).lt(used).view({1, 1, split, 1});
    const at::Tensor k1 = in.k.narrow(2, 0, split) * pad, v1 = in.v.narrow(2, 0, split) * pad;
    const at::Tensor k2 = at::cat({in.k.narrow(2, split, N2), in.k.narrow(2, 0, 5)}, 2).narrow(2, 0, N2);
    const at::Tensor v2 = at::cat({in.v.narrow(2, split, N2), in.v.narrow(2, 0, 5)}, 2).narrow(2, 0, N2);
    const at::Tensor k_all = at::cat({k1, k2}, 2), v_all = at::cat({v1, v2}, 2);
    const auto lopt = at::TensorOptions().dtype(at::kLong);
    const at::Tensor lo0 = at::randint(0, q_pos0 + c.L, {B, c.hkv, N}, gen, lopt);
    const at::Tensor span = at::randint(1, c.L, {B, c.hkv, N}, gen, lopt);
    const at::Tensor forever = at::rand({B, c.hkv, N}, gen, at::TensorOptions().dtype(at::kDouble)).lt(0.3);
    const at::Tensor never = at::arange(N, lopt).ge(used).logical_and(at::arange(N, lopt).lt(split)).expand({B, c.hkv, N});
    const at::Tensor lo = at::where(never, at::full({}, INT32_MAX, lopt), lo0).to(kCuda);
    const at::Tensor hi = at::where(forever, at::full({}, attn::ref::kNever, lopt), lo0 + span).to(kCuda);
    const double scale = 1.0 / std::sqrt(double(c.d));
    const at::Tensor want = interval_f64(in.q, k_all, v_all, lo, hi, q_pos0);
    const at::Tensor ref32 =
        interval_f64(in.q.to(at::kFloat), k_all.to(at::kFloat), v_all.to(at::kFloat), lo, hi, q_pos0).to(at::kBFloat16);
    const std::vector<const char*> variants =
        c.d == 128 ? std::vector<const char*>{"wgmma", "wgmma64", "wgmma64x1", "mma"} : std::vector<const char*>{"mma"};
    for (const char* variant : variants) {
      const IntervalVariant use(variant);
      const at::Tensor one = attn::fast::interval_attention(in.q, k_all, v_all, lo, hi, q_pos0, scale);
      const at::Tensor two = attn::fast::interval_attention(in.q, k1, v1, lo, hi, q_pos0, scale, {}, 0, k2, v2);
      EXPECT_TRUE(two.equal(one)) << variant << " D=" << c.d << ": max diff "
                                  << (two.to(at::kFloat) - one.to(at::kFloat)).abs().max().item<float>();
      EXPECT_LE(test::rel_l2(two, want), test::derived_tolerance(at::kBFloat16, test::rel_l2(ref32, want)))
          << variant << " D=" << c.d;
    }
    try {
      attn::fast::interval_attention(in.q, k1.narrow(2, 0, 200), v1.narrow(2, 0, 200), lo.narrow(2, 0, 200 + N2),
                                     hi.narrow(2, 0, 200 + N2), q_pos0, scale, {}, 0, k2, v2);
      ADD_FAILURE() << "a first source of 200 rows was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("multiple of 128"), std::string::npos) << e.what();
    }
  }
}

// Sliding window, DGA and block top-k on the kernel against the same implementation's reference path.
TEST(IntervalKernel, RegistryFastPathsMatchTheirReference) {
  REQUIRE_GPU();
  for (const std::string spec : {"swa:window=100,sink=4", "swa:window=1000", "dga:m=16,gamma=0.1",
                                  "dga:m=4,gamma=0.25,samples=8,sample=strided", "topk_block:block=64,k=3",
                                  "topk_block:block=64,k=0"}) {
    const auto impl = attn::make_attention(spec);
    for (const Case c : {Case{333, 8, 2, 64}, Case{2049, 32, 8, 128}, Case{1111, 8, 1, 128}}) {
      const auto in = test::random_qkv(1, c.hq, c.hkv, c.L, c.L, c.d, 31 + c.L, at::kBFloat16, kCuda);
      const attn::Output fast = impl->forward(in.q, in.k, in.v, {});
      EXPECT_EQ(fast.backend, "cuda-interval") << spec;
      attn::Options ref;
      ref.reference = true;
      const attn::Output slow = impl->forward(in.q, in.k, in.v, ref);
      const double err = test::rel_l2(fast.out, slow.out);
      EXPECT_LT(err, 1e-2) << spec << " L=" << c.L << " Hq=" << c.hq << " Hkv=" << c.hkv << " D=" << c.d;
      EXPECT_EQ(fast.cost.kept_pairs, slow.cost.kept_pairs) << spec;
    }
  }
}

// Exact top-k in float64 from the formula: the query at position N - Lq + i keeps its top_k
// largest causal logits (all of them when it has at most top_k).
at::Tensor topk_f64(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t top_k, double scale) {
  const int64_t groups = q.size(1) / k.size(1), Lq = q.size(2), N = k.size(2);
  const at::Tensor qd = q.to(at::kDouble), kd = attn::ref::repeat_kv(k.to(at::kDouble), groups),
                   vd = attn::ref::repeat_kv(v.to(at::kDouble), groups);
  const at::Tensor logits = at::matmul(qd, kd.transpose(-2, -1)) * scale;
  const auto lopt = at::TensorOptions().dtype(at::kLong).device(q.device());
  const at::Tensor causal = at::arange(N, lopt).unsqueeze(0).le(at::arange(N - Lq, N, lopt).unsqueeze(1)).expand_as(logits);
  const at::Tensor masked = logits.masked_fill(causal.logical_not(), -INFINITY);
  const at::Tensor idx = std::get<1>(masked.topk(std::min(top_k, N), -1));
  const at::Tensor keep = at::zeros_like(causal).scatter_(-1, idx, true).logical_and(causal);
  return at::matmul(at::softmax(logits.masked_fill(keep.logical_not(), -INFINITY), -1), vd);
}

// Per-row relative L2 error of got against want [B, H, L, D]: the largest over rows.
double worst_row_error(const at::Tensor& got, const at::Tensor& want) {
  const at::Tensor g = got.to(at::kDouble), w = want.to(at::kDouble);
  return ((g - w).norm(2, {-1}) / w.norm(2, {-1}).clamp_min(1e-30)).max().item<double>();
}

// Scores that are distinct integers (exact in float32 whatever the summation order): the kept
// set is unique, and keeping one key too many or too few moves a row by percents (scale 5e-4
// keeps the softmax spread; values are random signs). Every row must match float64 within
// the rounding of P and the output; odd lengths, GQA, queries offset from position 0, batch 2,
// top_k from 1 to past every row's key count.
TEST(TopKKernel, DistinctScoresKeepExactlyTheTopK) {
  REQUIRE_GPU();
  struct TopKCase {
    int64_t Lq, N, hq, hkv, top_k;
  };
  for (const auto dtype : {at::kBFloat16, at::kHalf}) {
    for (const TopKCase c : {TopKCase{333, 333, 8, 2, 1}, TopKCase{1013, 1013, 8, 8, 5}, TopKCase{2049, 2049, 4, 1, 300},
                             TopKCase{700, 1500, 8, 4, 33}, TopKCase{129, 129, 4, 2, 200}, TopKCase{5000, 5000, 2, 1, 50},
                             TopKCase{1000, 4500, 4, 2, 700}}) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(c.N + c.top_k);
      const auto dopt = at::TensorOptions().dtype(at::kDouble);
      const int64_t B = 2, D = 128;
      // Key j scores c_i·(32·x_j + y_j) against query i: x in [-128, 128), y in [0, 32), the pairs a
      // random permutation of distinct values; c_i in {±1, ±2} (a negative c reverses the order).
      at::Tensor k = at::zeros({B, c.hkv, c.N, D}, dopt);
      std::vector<at::Tensor> perms;  // per (batch, kv head)
      for (int64_t i = 0; i < B * c.hkv; ++i) perms.push_back(at::randperm(8192, gen, dopt).narrow(0, 0, c.N));
      const at::Tensor zz = at::stack(perms).reshape({B, c.hkv, c.N});
      k.select(-1, 0).copy_(at::floor(zz / 32) - 128);
      k.select(-1, 1).copy_(zz - 32 * at::floor(zz / 32));
      at::Tensor q = at::zeros({B, c.hq, c.Lq, D}, dopt);
      const at::Tensor mult = at::randint(0, 4, {B, c.hq, c.Lq}, gen, dopt);
      const at::Tensor ci = at::where(mult.lt(2), mult + 1, 1 - mult);  // 1, 2, -1, -2
      q.select(-1, 0).copy_(32 * ci);
      q.select(-1, 1).copy_(ci);
      const at::Tensor v = at::randint(0, 2, {B, c.hkv, c.N, D}, gen, dopt) * 2 - 1;
      const at::Tensor qd = q.to(kCuda, dtype), kd = k.to(kCuda, dtype), vd = v.to(kCuda, dtype);
      const double scale = 5e-4;
      const at::Tensor got = attn::fast::topk_attention(qd, kd, vd, c.top_k, scale);
      ASSERT_TRUE(got.defined());
      const at::Tensor want = topk_f64(qd, kd, vd, c.top_k, scale);
      const double err = worst_row_error(got, want);
      EXPECT_LT(err, 1e-2) << test::dtype_name(dtype) << " Lq=" << c.Lq << " N=" << c.N << " Hq=" << c.hq
                           << " Hkv=" << c.hkv << " k=" << c.top_k;
      std::printf("topk distinct %s Lq=%lld N=%lld k=%lld worst row rel_err=%.2e\n", test::dtype_name(dtype),
                  static_cast<long long>(c.Lq), static_cast<long long>(c.N), static_cast<long long>(c.top_k), err);
    }
  }
}

// Normal random inputs through the registry (topk:k=K's fast path) against float64: the kernel's
// error at most a small factor above the float32 formula's own (test::derived_tolerance). Near
// ties the float32 scores may rank a key differently from float64, as any float32 top-k would.
TEST(TopKKernel, RandomInputsMatchFloat64) {
  REQUIRE_GPU();
  for (const auto dtype : {at::kBFloat16, at::kHalf}) {
    for (const Case c : {Case{77, 4, 1, 128}, Case{1013, 8, 2, 128}, Case{3001, 32, 8, 128}}) {
      for (const int64_t top_k : {int64_t{16}, int64_t{250}}) {
        const auto in = test::random_qkv(1, c.hq, c.hkv, c.L, c.L, c.d, 3 + c.L + top_k, dtype, kCuda);
        const auto impl = attn::make_attention("topk:k=" + std::to_string(top_k));
        const attn::Output fast = impl->forward(in.q, in.k, in.v, {});
        EXPECT_EQ(fast.backend, "cuda-topk");
        const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
        const at::Tensor want = topk_f64(in.q, in.k, in.v, top_k, scale);
        const at::Tensor ref32 = topk_f64(in.q.to(at::kFloat), in.k.to(at::kFloat), in.v.to(at::kFloat), top_k, scale)
                                     .to(dtype);
        const double err = test::rel_l2(fast.out, want), ref_err = test::rel_l2(ref32, want);
        EXPECT_LE(err, test::derived_tolerance(dtype, ref_err))
            << test::dtype_name(dtype) << " L=" << c.L << " Hq=" << c.hq << " Hkv=" << c.hkv << " k=" << top_k;
        EXPECT_TRUE(test::all_finite(fast.out));
        attn::Options ref;
        ref.reference = true;
        EXPECT_LT(test::rel_l2(fast.out, impl->forward(in.q, in.k, in.v, ref).out), 1e-2) << "against topk's reference path";
      }
    }
    // Rows of over 65535 keys (32-bit counts, 64-row tiles): the last 64 queries of 70001 keys.
    const auto in = test::random_qkv(1, 4, 2, 64, 70001, 128, 5, dtype, kCuda);
    const double scale = 1.0 / std::sqrt(128.0);
    const at::Tensor got = attn::fast::topk_attention(in.q, in.k, in.v, 3000, scale);
    ASSERT_TRUE(got.defined());
    const at::Tensor want = topk_f64(in.q, in.k, in.v, 3000, scale);
    const at::Tensor ref32 =
        topk_f64(in.q.to(at::kFloat), in.k.to(at::kFloat), in.v.to(at::kFloat), 3000, scale).to(dtype);
    EXPECT_LE(test::rel_l2(got, want), test::derived_tolerance(dtype, test::rel_l2(ref32, want)))
        << test::dtype_name(dtype) << " 64 queries over 70001 keys";
  }
}

// The select's two ways of refining a row's first-level range agree on every row: with
// candidates (the second pass copies the range's scores, a warp per row finishes) and by
// histogram passes alone (capacity 0), and with a capacity of 32, which sends some rows each way
// within one CTA. The rows' whole states must be equal, word for word; the first pass must have
// given some rows candidates, so that the path is tested.
TEST(TopKKernel, CandidatesSelectAsTheHistogramPasses) {
  REQUIRE_GPU();
  for (const auto dtype : {at::kBFloat16, at::kHalf}) {
    for (const Case c : {Case{1013, 8, 2, 128}, Case{3001, 4, 4, 128}}) {
      for (const int64_t top_k : {int64_t{7}, int64_t{250}, int64_t{900}}) {
        const auto in = test::random_qkv(2, c.hq, c.hkv, c.L, c.L, c.d, 11 + c.L + top_k, dtype, kCuda);
        const at::Tensor first = attn::fast::topk_select(in.q, in.k, top_k, 1).cpu();
        const int64_t with_candidates =
            first.select(-1, 2).gt(0).logical_and(first.select(-1, 3).ne(0)).sum().item<int64_t>();
        EXPECT_GT(with_candidates, 0) << "L=" << c.L << " k=" << top_k << ": no row got candidates";
        const at::Tensor by_histogram = attn::fast::topk_select(in.q, in.k, top_k, 5, 0).cpu();
        EXPECT_EQ(by_histogram.select(-1, 2).ne(0).sum().item<int64_t>(), 0) << "an open row after five passes";
        for (const int64_t capacity : {int64_t{-1}, int64_t{32}}) {
          const at::Tensor got = attn::fast::topk_select(in.q, in.k, top_k, 5, capacity).cpu();
          const int64_t differ = got.ne(by_histogram).any(-1).sum().item<int64_t>();
          EXPECT_EQ(differ, 0) << test::dtype_name(dtype) << " L=" << c.L << " Hq=" << c.hq << " k=" << top_k
                               << " capacity=" << capacity << ": rows whose state differs";
        }
      }
    }
  }
  EXPECT_THROW(attn::fast::topk_select(at::zeros({1, 1, 64, 128}, at::TensorOptions().device(kCuda).dtype(at::kBFloat16)),
                                       at::zeros({1, 1, 64, 128}, at::TensorOptions().device(kCuda).dtype(at::kBFloat16)),
                                       4, 5, 48),
               std::invalid_argument);
}

// topk_block's selection kernel against bounds computed in float64: the kernel's bounds agree
// within the float32 rounding of their 2·D exact products, and the chosen blocks are a top-k of
// the float64 bounds (no unchosen candidate beats a chosen one by more than that rounding). With
// 4, 2 and 1 query blocks per CTA (LCB_BLOCK_SELECT_GROUPS; 1 is what rows of over about 8000
// blocks get).
TEST(BlockSelect, PrefillSelectionIsATopKOfFloat64Bounds) {
  REQUIRE_GPU();
  struct SelCase {
    int64_t B, L, hq, hkv, d, k;
    at::ScalarType dtype;
  };
  for (const char* groups : {"4", "2", "1"})
  for (const SelCase c : {SelCase{1, 1, 4, 1, 64, 3, at::kBFloat16}, SelCase{2, 700, 8, 2, 128, 3, at::kBFloat16},
                          SelCase{1, 4099, 8, 8, 128, 20, at::kHalf}, SelCase{1, 1999, 6, 3, 64, 1, at::kBFloat16},
                          SelCase{1, 8192, 4, 1, 128, 100, at::kBFloat16}, SelCase{1, 333, 4, 4, 128, 0, at::kHalf}}) {
    SCOPED_TRACE(std::string("query blocks per CTA: ") + groups);
    const ScopedEnv variant("LCB_BLOCK_SELECT_GROUPS", groups);
    const auto in = test::random_qkv(c.B, c.hq, c.hkv, c.L, c.L, c.d, 900 + c.L, c.dtype, kCuda);
    const int64_t nb = (c.L + 63) / 64, pad = nb * 64 - c.L, g = c.hq / c.hkv;
    const at::Tensor kmin = at::constant_pad_nd(in.k, {0, 0, 0, pad}, INFINITY).view({c.B, c.hkv, nb, 64, c.d}).amin(3);
    const at::Tensor kmax = at::constant_pad_nd(in.k, {0, 0, 0, pad}, -INFINITY).view({c.B, c.hkv, nb, 64, c.d}).amax(3);
    at::Tensor scores;
    const at::Tensor sel = attn::fast::topk_block_select(in.q, kmin, kmax, c.k, &scores).to(at::kCPU);
    scores = scores.to(at::kCPU);
    // float64 bounds per query and their maxima per query block; the rounding scale per entry.
    const at::Tensor qd = in.q.to(at::kDouble).to(at::kCPU);
    const at::Tensor mind = kmin.to(at::kDouble).to(at::kCPU).repeat_interleave(g, 1);
    const at::Tensor maxd = kmax.to(at::kDouble).to(at::kCPU).repeat_interleave(g, 1);
    const at::Tensor ub = at::matmul(qd.clamp_min(0), maxd.transpose(-2, -1)) + at::matmul(qd.clamp_max(0), mind.transpose(-2, -1));
    const at::Tensor mag = at::matmul(qd.abs(), at::maximum(mind.abs(), maxd.abs()).transpose(-2, -1));
    const at::Tensor qpad = at::constant_pad_nd(ub, {0, 0, 0, pad}, -INFINITY).view({c.B, c.hq, nb, 64, nb}).amax(3);
    const at::Tensor tol = at::constant_pad_nd(mag, {0, 0, 0, pad}, 0.0).view({c.B, c.hq, nb, 64, nb}).amax(3) *
                           (2.0 * c.d * std::ldexp(1.0, -23));
    auto s_acc = sel.accessor<uint8_t, 4>();
    auto sc = scores.accessor<float, 4>();
    auto want = qpad.accessor<double, 4>();
    auto tl = tol.accessor<double, 4>();
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t h = 0; h < c.hq; ++h)
        for (int64_t qb = 0; qb < nb; ++qb) {
          const int64_t n_cand = std::max<int64_t>(qb - 1, 0), chosen = std::min(c.k, n_cand);
          int64_t count = 0;
          double worst_chosen = INFINITY, best_left = -INFINITY, slack = 0;
          for (int64_t kb = 0; kb < nb; ++kb) {
            const bool on = s_acc[b][h][qb][kb] != 0;
            if (kb == 0 || kb == qb) {
              ASSERT_TRUE(on) << "first and diagonal block always: qb=" << qb << " kb=" << kb;
            } else if (kb > qb) {
              ASSERT_FALSE(on) << "a block after the diagonal: qb=" << qb << " kb=" << kb;
            } else {
              count += on;
              if (chosen < n_cand && chosen > 0) {
                ASSERT_NEAR(sc[b][h][qb][kb], want[b][h][qb][kb], tl[b][h][qb][kb] + 1e-30) << "qb=" << qb << " kb=" << kb;
              }
              slack = std::max(slack, tl[b][h][qb][kb]);
              if (on) worst_chosen = std::min(worst_chosen, want[b][h][qb][kb]);
              if (!on) best_left = std::max(best_left, want[b][h][qb][kb]);
            }
          }
          ASSERT_EQ(count, chosen) << "L=" << c.L << " qb=" << qb;
          ASSERT_GE(worst_chosen, best_left - 2 * slack) << "L=" << c.L << " b=" << b << " h=" << h << " qb=" << qb;
        }
  }
}

// DGA's importance, focal split and group aggregation kernels against the formulas in float64.
at::Tensor dga_samples(int64_t L, int64_t samples, bool strided) {
  const int64_t n = std::min(samples, L);
  const auto opt = at::TensorOptions().dtype(at::kLong);
  return strided ? (at::arange(1, n + 1, opt) * L).div(n, "floor") - 1 : at::arange(L - n, L, opt);
}

TEST(DgaKernels, ImportanceAndFocalSplitMatchFloat64) {
  REQUIRE_GPU();
  struct DgaCase {
    int64_t B, L, hq, hkv, d, samples;
    bool strided;
    double gamma;
    at::ScalarType dtype;
  };
  for (const DgaCase& c : {DgaCase{1, 1, 4, 1, 64, 64, false, 0.1, at::kBFloat16},
                          DgaCase{2, 333, 8, 2, 128, 64, false, 0.1, at::kBFloat16},
                          DgaCase{1, 1000, 8, 8, 64, 8, true, 0.25, at::kHalf},
                          DgaCase{1, 4099, 32, 8, 128, 64, false, 0.1, at::kBFloat16},
                          DgaCase{1, 200, 4, 4, 128, 100, true, 1.0, at::kBFloat16},
                          DgaCase{1, 150, 4, 2, 64, 16, false, 0.0, at::kHalf},
                          DgaCase{1, 777, 32, 4, 64, 80, true, 0.1, at::kHalf},  // 640 rows: three row groups
                          // More (batch, kv head) pairs than CTAs fit the GPU at once (8 per SM at
                          // the most): the focal split in five launches instead of one.
                          DgaCase{140, 64, 8, 8, 64, 16, false, 0.25, at::kBFloat16}}) {
    const auto in = test::random_qkv(c.B, c.hq, c.hkv, c.L, c.L, c.d, 300 + c.L, c.dtype, kCuda);
    const double scale = 1.0 / std::sqrt(double(c.d));
    const at::Tensor S = dga_samples(c.L, c.samples, c.strided);
    const int64_t F = std::min<int64_t>(c.L, static_cast<int64_t>(std::ceil(c.gamma * c.L - 1e-9)));
    const auto [importance, order] = attn::fast::dga_order(in.q, in.k, S.to(kCuda), scale, F);
    // float64: s_j = Σ_{i∈S, i>=j} Σ_heads softmax_i(scale q_i·K)_j
    const int64_t g = c.hq / c.hkv;
    const at::Tensor qs = in.q.to(at::kDouble).to(at::kCPU).index_select(2, S);
    const at::Tensor kd = in.k.to(at::kDouble).to(at::kCPU).repeat_interleave(g, 1);
    const at::Tensor future = at::arange(c.L, S.options()).unsqueeze(0).gt(S.unsqueeze(1));
    const at::Tensor probs = at::softmax((at::matmul(qs, kd.transpose(-2, -1)) * scale).masked_fill(future, -INFINITY), -1);
    const at::Tensor want = probs.sum(2).view({c.B, c.hkv, g, c.L}).sum(2);
    const at::Tensor got = importance.to(at::kDouble).to(at::kCPU);
    const double tol_scale = 1e-4;
    EXPECT_TRUE(((got - want).abs() <= want * tol_scale + 1e-6).all().item<bool>())
        << "importance L=" << c.L << ": max abs err " << (got - want).abs().max().item<double>();
    // order: a permutation, non-focal ascending then focal ascending, and the focal set a top-F of float64 s.
    const at::Tensor ord = order.to(at::kCPU);
    const at::Tensor sorted = std::get<0>(ord.sort(-1));
    ASSERT_TRUE(sorted.equal(at::arange(c.L, ord.options()).expand({c.B, c.hkv, c.L}))) << "not a permutation, L=" << c.L;
    const int64_t R = c.L - F;
    const at::Tensor nonfocal = ord.narrow(-1, 0, R), focal = ord.narrow(-1, R, F);
    if (R > 1) {
      EXPECT_TRUE(nonfocal.diff(1, -1).gt(0).all().item<bool>()) << "non-focal not ascending";
    }
    if (F > 1) {
      EXPECT_TRUE(focal.diff(1, -1).gt(0).all().item<bool>()) << "focal not ascending";
    }
    if (F > 0 && R > 0) {
      const double slack = 2 * (tol_scale * want.max().item<double>() + 1e-6);
      const at::Tensor worst_focal = want.gather(-1, focal).amin(-1), best_other = want.gather(-1, nonfocal).amax(-1);
      EXPECT_TRUE(worst_focal.ge(best_other - slack).all().item<bool>()) << "focal set is not a top-" << F << ", L=" << c.L;
    }
  }
}

// Equal keys: every position the sampled rows all see has the same importance, bit for bit, and
// the later ones less; the focal split takes the tied positions lowest first.
TEST(DgaKernels, FocalTiesTakeTheLowestPositions) {
  REQUIRE_GPU();
  for (const int64_t L : {int64_t{3000}, int64_t{20000}}) {
    auto in = test::random_qkv(1, 8, 2, L, L, 128, 77 + L, at::kBFloat16, kCuda);
    const at::Tensor k = in.k.narrow(2, 0, 1).expand_as(in.k).contiguous();
    const int64_t F = L / 10;
    const auto [importance, order] = attn::fast::dga_order(in.q, k, dga_samples(L, 64, false).to(kCuda), 0.088, F);
    const at::Tensor imp = importance.to(at::kCPU);
    const at::Tensor tied = imp.narrow(-1, 0, L - 64);
    ASSERT_TRUE(tied.eq(tied.narrow(-1, 0, 1)).all().item<bool>()) << "L=" << L << ": the tied importances differ";
    ASSERT_TRUE(imp.narrow(-1, L - 63, 63).lt(tied.narrow(-1, 0, 1)).all().item<bool>()) << "L=" << L;
    const at::Tensor want = at::cat({at::arange(F, L, at::kLong), at::arange(F, at::kLong)}).expand({1, 2, L});
    EXPECT_TRUE(order.to(at::kCPU).equal(want)) << "L=" << L << ": the focal set is not positions 0 .. " << F - 1;
  }
}

TEST(DgaKernels, AggregatesMatchFloat64) {
  REQUIRE_GPU();
  for (const auto dtype : {at::kBFloat16, at::kHalf}) {
    for (const Case c : {Case{333, 8, 2, 128}, Case{1000, 4, 4, 64}, Case{97, 8, 1, 128}}) {
      for (const int64_t m : {int64_t{1}, int64_t{4}, int64_t{16}, int64_t{37}}) {
        const auto in = test::random_qkv(2, c.hq, c.hkv, c.L, c.L, c.d, 50 + c.L + m, dtype, kCuda);
        const double scale = 1.0 / std::sqrt(double(c.d));
        const int64_t G = c.L / 2 / m, g = c.hq / c.hkv;
        // Groups of m positions, ascending within a group, drawn from a random subset.
        auto gen = at::make_generator<at::CPUGeneratorImpl>(c.L + m);
        const at::Tensor perm = std::get<1>(at::rand({2, c.hkv, c.L}, gen, at::TensorOptions().dtype(at::kDouble)).sort(-1));
        const at::Tensor pick = std::get<0>(perm.narrow(-1, 0, G * m).sort(-1));
        const at::Tensor positions = pick.view({2, c.hkv, G, m});
        const auto [agg_k, agg_v] = attn::fast::dga_aggregate(in.q, in.k, in.v, positions.to(kCuda), scale);
        // float64 (and float32 rounded to the dtype: the error the formula itself makes).
        auto formula = [&](at::ScalarType t) {
          const at::Tensor q = in.q.to(t).to(at::kCPU), k = in.k.to(t).to(at::kCPU), v = in.v.to(t).to(at::kCPU);
          const at::Tensor flat = positions.reshape({2, c.hkv, G * m});
          auto rows = [&](const at::Tensor& x) {
            return x.gather(2, flat.unsqueeze(-1).expand({2, c.hkv, G * m, c.d})).view({2, c.hkv, G, m, c.d});
          };
          const at::Tensor ends = positions.select(-1, m - 1);  // [2, Hkv, G]
          const at::Tensor q_end = q.reshape({2, c.hkv, g, c.L, c.d})
                                       .gather(3, ends.unsqueeze(2).unsqueeze(-1).expand({2, c.hkv, g, G, c.d}))
                                       .transpose(2, 3);  // [2, Hkv, G, g, D]
          const at::Tensor kg = rows(k), vg = rows(v);
          const at::Tensor w = at::softmax(at::matmul(q_end, kg.transpose(-2, -1)).mean(3) * scale, -1);
          return std::make_pair((w.unsqueeze(-1) * kg).sum(3), (w.unsqueeze(-1) * vg).sum(3));
        };
        const auto want = formula(at::kDouble);
        const auto ref32 = formula(at::kFloat);
        for (int which = 0; which < 2; ++which) {
          const at::Tensor got = (which == 0 ? agg_k : agg_v).to(at::kCPU);
          const at::Tensor w64 = which == 0 ? want.first : want.second;
          const at::Tensor r32 = (which == 0 ? ref32.first : ref32.second).to(dtype);
          const double err = test::rel_l2(got, w64), ref_err = test::rel_l2(r32, w64);
          EXPECT_LE(err, test::derived_tolerance(dtype, ref_err))
              << (which == 0 ? "agg_k" : "agg_v") << " " << test::dtype_name(dtype) << " L=" << c.L << " m=" << m;
        }
      }
    }
  }
}

// The whole DGA layout from the kernels (dga_plan on CUDA) against the reference's (on the CPU):
// the same intervals, the same focal and raw rows, aggregates within the dtype's rounding. The
// kernels merge focal rows and aggregates in order of lo and take the raw rows from k / v where
// they lie (a second source, every position with an interval, never for focal ones), so both
// layouts are compared as the rows that can be seen, in order of (lo, hi), which no two share.
TEST(DgaKernels, LayoutMatchesTheReference) {
  REQUIRE_GPU();
  // Rows of a layout [B, Hkv, N, ...] in order of (lo, hi); lo and hi int64 on the CPU, hi
  // clamped to INT32_MAX (never).
  struct Rows {
    at::Tensor keys, values, lo, hi;
  };
  auto in_order = [](const at::Tensor& keys, const at::Tensor& values, const at::Tensor& lo, const at::Tensor& hi) {
    const at::Tensor hi_c = hi.clamp_max(INT32_MAX);
    const at::Tensor idx = at::argsort(lo * (int64_t{1} << 31) + hi_c, /*stable=*/true, -1, /*descending=*/false);
    const at::Tensor rows = idx.unsqueeze(-1).expand({idx.size(0), idx.size(1), idx.size(2), keys.size(3)});
    return Rows{keys.gather(2, rows), values.gather(2, rows), lo.gather(2, idx), hi_c.gather(2, idx)};
  };
  for (const std::string spec : {"dga:m=16,gamma=0.1", "dga:m=4,gamma=0.25,samples=8,sample=strided", "dga:m=7,gamma=0.3",
                                 "dga:m=21,gamma=0.05"}) {
    const auto impl = attn::make_attention(spec);
    for (const Case c : {Case{333, 8, 2, 64}, Case{1000, 8, 8, 128}, Case{17, 4, 1, 128}}) {
      const auto in = test::random_qkv(2, c.hq, c.hkv, c.L, c.L, c.d, 70 + c.L, at::kBFloat16, kCuda);
      const double scale = 1.0 / std::sqrt(double(c.d));
      const attn::DgaPlan gpu_plan = attn::dga_plan(*impl, in.q, in.k, in.v, scale);
      const attn::DgaPlan cpu_plan = attn::dga_plan(*impl, in.q.to(at::kCPU), in.k.to(at::kCPU), in.v.to(at::kCPU), scale);
      ASSERT_TRUE(gpu_plan.k2.defined() && gpu_plan.k2.data_ptr() == in.k.data_ptr() &&
                  gpu_plan.v2.data_ptr() == in.v.data_ptr())
          << spec;
      const int64_t split = gpu_plan.keys.size(2);
      ASSERT_EQ(split % 128, 0) << spec;
      ASSERT_EQ(gpu_plan.lo.size(2), split + c.L) << spec;
      // The rows that can be seen: lo not "never"; as many per (b, kv head) as the reference has.
      const at::Tensor lo_all = gpu_plan.lo.to(at::kCPU).to(at::kLong), hi_all = gpu_plan.hi.to(at::kCPU).to(at::kLong);
      const at::Tensor seen = lo_all.ne(INT32_MAX);
      ASSERT_TRUE(seen.sum(-1).eq(cpu_plan.keys.size(2)).all().item<bool>()) << spec << " L=" << c.L;
      // Never is [INT32_MAX, 0): a tile whose focal positions ended at "never" would be listed
      // for every later query tile, and the attention would compute all of them.
      EXPECT_TRUE(hi_all.masked_select(seen.logical_not()).eq(0).all().item<bool>()) << spec;
      const at::Tensor idx = std::get<1>(seen.to(at::kInt).sort(/*stable=*/true, -1, /*descending=*/true))
                                 .narrow(-1, 0, cpu_plan.keys.size(2));
      auto pick = [&](const at::Tensor& rows) {  // [B, Hkv, split + L, D] -> the seen rows
        return rows.gather(2, idx.unsqueeze(-1).expand({idx.size(0), idx.size(1), idx.size(2), rows.size(3)}));
      };
      const Rows gpu = in_order(pick(at::cat({gpu_plan.keys, gpu_plan.k2}, 2).to(at::kCPU).to(at::kFloat)),
                                pick(at::cat({gpu_plan.values, gpu_plan.v2}, 2).to(at::kCPU).to(at::kFloat)),
                                lo_all.gather(2, idx), hi_all.gather(2, idx));
      // The merged rows lead; the padding after them is zeros (a masked key's P is 0, but 0 · NaN
      // is not 0).
      const int64_t n_merged = seen.narrow(2, 0, split).sum(-1).max().item<int64_t>();
      EXPECT_TRUE(seen.narrow(2, 0, n_merged).all().item<bool>()) << spec;
      EXPECT_EQ(gpu_plan.keys.narrow(2, n_merged, split - n_merged).abs().max().item<float>(), 0.f) << spec;
      EXPECT_EQ(gpu_plan.values.narrow(2, n_merged, split - n_merged).abs().max().item<float>(), 0.f) << spec;
      const Rows cpu = in_order(cpu_plan.keys.to(at::kBFloat16).to(at::kFloat), cpu_plan.values.to(at::kBFloat16).to(at::kFloat),
                                cpu_plan.lo, cpu_plan.hi);
      EXPECT_TRUE(gpu.lo.equal(cpu.lo)) << spec << " L=" << c.L << ": lo differs";
      EXPECT_TRUE(gpu.hi.equal(cpu.hi)) << spec << " L=" << c.L << ": hi differs";
      // Rows copied from K/V are exact; the aggregate rows differ by at most the bf16 rounding of
      // the float32 weighted sums.
      const double err_k = test::rel_l2(gpu.keys, cpu.keys), err_v = test::rel_l2(gpu.values, cpu.values);
      EXPECT_LT(err_k, 1e-3) << spec << " L=" << c.L;
      EXPECT_LT(err_v, 1e-3) << spec << " L=" << c.L;
    }
  }
  // The merged part really is in order of lo on the GPU (what saves the partially visible tiles).
  const auto impl = attn::make_attention("dga:m=16,gamma=0.1");
  const auto in = test::random_qkv(1, 8, 2, 2000, 2000, 128, 9, at::kBFloat16, kCuda);
  const attn::DgaPlan plan = attn::dga_plan(*impl, in.q, in.k, in.v, 1.0 / std::sqrt(128.0));
  const int64_t focal = (2000 + 9) / 10, merged = focal + (2000 - focal) / 16;  // ceil(0.1 L) + full groups
  const at::Tensor lo = plan.lo.to(at::kCPU).to(at::kLong).narrow(-1, 0, merged);
  EXPECT_TRUE(lo.narrow(-1, 1, merged - 1).gt(lo.narrow(-1, 0, merged - 1)).all().item<bool>());
}

// A DGA forward under a StageTimer marks its six stages in the order they run, each taking time,
// together about as long as the forward, and the marks leave the output and the cost unchanged;
// with the timer gone, marks record nothing.
TEST(DgaKernels, StageTimerMarksEachStage) {
  REQUIRE_GPU();
  const auto impl = attn::make_attention("dga:m=16,gamma=0.1");
  const auto in = test::random_qkv(1, 8, 2, 3000, 3000, 128, 41, at::kBFloat16, kCuda);
  const attn::Output plain = impl->forward(in.q, in.k, in.v, {});
  std::vector<attn::fast::StageTimer::Stage> stages;
  attn::Output timed;
  {
    at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
    start.record();
    attn::fast::StageTimer timer;
    timed = impl->forward(in.q, in.k, in.v, {});
    stop.record();
    stages = timer.stages();
    const double whole = start.elapsed_time(stop);
    double sum = 0;
    for (const auto& s : stages) sum += s.ms;
    EXPECT_LE(sum, whole * 1.001 + 1e-3);
    EXPECT_GT(sum, 0.5 * whole) << "the stages should cover most of the forward";
  }
  const std::vector<std::string> want = {"importance", "focal split", "aggregation", "layout", "tile summaries", "attention"};
  ASSERT_EQ(stages.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(stages[i].name, want[i]);
    EXPECT_GT(stages[i].ms, 0.0) << want[i];
    EXPECT_GE(stages[i].host_ms, 0.0) << want[i];
  }
  EXPECT_TRUE(timed.out.equal(plain.out));
  EXPECT_EQ(timed.cost.kept_pairs, plain.cost.kept_pairs);
  // Marks after the timer are no-ops: a new timer sees only its own.
  impl->forward(in.q, in.k, in.v, {});
  attn::fast::StageTimer again;
  EXPECT_TRUE(again.stages().empty());
}

// DeferredSum of a CUDA tensor reads the sum queued before later work, exactly.
TEST(DgaKernels, DeferredSumOfADeviceTensor) {
  REQUIRE_GPU();
  const at::Tensor x = at::randint(-1000, 1000, {4, 5, 777}, at::TensorOptions().dtype(at::kInt).device(kCuda));
  attn::fast::DeferredSum sum(x);
  at::Tensor busy = at::randn({2048, 2048}, at::TensorOptions().device(kCuda));
  for (int i = 0; i < 8; ++i) busy = at::matmul(busy, busy).tanh();  // queued after the sum
  EXPECT_EQ(sum.get(), x.sum().item<int64_t>());
}

// The tensor-core kernel (MHA and GQA), or with LCB_DECODE_KERNEL=simt the CUDA-core one.
// The splits are combined by their last CTA, or with LCB_DECODE_COMBINE=kernel by a second kernel.
TEST(DecodeKernel, SegmentsMatchFloat64) {
  REQUIRE_GPU();
  for (const auto& [kernel, combine] : {std::pair{"", ""}, std::pair{"simt", ""}, std::pair{"", "kernel"}}) {
    const ScopedEnv env("LCB_DECODE_KERNEL", kernel), env2("LCB_DECODE_COMBINE", combine);
    for (const auto dtype : {at::kBFloat16, at::kHalf}) {
      for (const Case c : {Case{1, 8, 8, 64}, Case{300, 8, 2, 128}, Case{5000, 32, 8, 128}, Case{777, 16, 2, 64},
                           Case{40001, 8, 4, 128}, Case{129, 8, 1, 64}}) {
        for (int64_t B : {1, 3, 64}) {
          if (B == 64 && c.L > 300) continue;  // the batch the decode serves at most, on the short caches
          const auto in = test::random_qkv(B, c.hq, c.hkv, 1, c.L, c.d, 5 + c.L + B, dtype, kCuda);
          // Three segments of the same keys (one possibly empty) must equal one.
          const int64_t a = c.L / 3, b = c.L / 2;
          const std::vector<std::pair<at::Tensor, at::Tensor>> segs = {
              {in.k.narrow(2, 0, a), in.v.narrow(2, 0, a)},
              {in.k.narrow(2, a, b - a), in.v.narrow(2, a, b - a)},
              {in.k.narrow(2, b, c.L - b), in.v.narrow(2, b, c.L - b)}};
          at::Tensor lse;
          const at::Tensor got = attn::fast::decode_attention(in.q, segs, 1.0 / std::sqrt(double(c.d)), &lse);
          const at::Tensor want = test::dense_f64(in.q, in.k, in.v);
          const at::Tensor ref32 = test::dense_f64(in.q.to(at::kFloat), in.k.to(at::kFloat), in.v.to(at::kFloat));
          const double err = test::rel_l2(got, want), ref_err = test::rel_l2(ref32.to(dtype), want);
          EXPECT_LE(err, test::derived_tolerance(dtype, ref_err))
              << test::dtype_name(dtype) << " L=" << c.L << " G=" << c.hq / c.hkv << " B=" << B << " kernel=" << kernel
              << " combine=" << combine;
          // log-sum-exp against float64.
          const int64_t g = c.hq / c.hkv;
          const at::Tensor kd = in.k.to(at::kDouble).repeat_interleave(g, 1);
          const at::Tensor logits = at::matmul(in.q.to(at::kDouble), kd.transpose(-2, -1)) / std::sqrt(double(c.d));
          const at::Tensor lse_want = at::logsumexp(logits, -1).view({B, c.hq});
          EXPECT_LT((lse.to(at::kDouble) - lse_want).abs().max().item<double>(), 1e-3) << "L=" << c.L;
        }
      }
    }
  }
}

// The last CTA of each (batch, kv head) combines its splits and leaves the count at zero: calls
// in a row give the same bits as the separate combine kernel, whatever ran before them.
TEST(DecodeKernel, LastSplitCombinesLikeTheCombineKernel) {
  REQUIRE_GPU();
  for (const Case c : {Case{9000, 32, 8, 128}, Case{6001, 8, 8, 64}}) {
    for (int64_t B : {1, 5}) {
      const auto in = test::random_qkv(B, c.hq, c.hkv, 1, c.L, c.d, 31 + B, at::kBFloat16, kCuda);
      const std::vector<std::pair<at::Tensor, at::Tensor>> segs = {{in.k, in.v}};
      const double scale = 1.0 / std::sqrt(double(c.d));
      at::Tensor want, want_lse;
      {
        const ScopedEnv env("LCB_DECODE_COMBINE", "kernel");
        want = attn::fast::decode_attention(in.q, segs, scale, &want_lse);
      }
      for (int rep = 0; rep < 3; ++rep) {
        at::Tensor lse;
        const at::Tensor got = attn::fast::decode_attention(in.q, segs, scale, &lse);
        EXPECT_TRUE(got.equal(want)) << "G=" << c.hq / c.hkv << " B=" << B << " call " << rep;
        EXPECT_TRUE(lse.equal(want_lse)) << "G=" << c.hq / c.hkv << " B=" << B << " call " << rep;
      }
      const at::Tensor dense = test::dense_f64(in.q, in.k, in.v);
      EXPECT_LT(test::rel_l2(want, dense), 1e-2) << "G=" << c.hq / c.hkv << " B=" << B;
    }
  }
}

// The new token given as a DecodeStore is attended after the segments and copied into its slot
// (only there) by the same launch: tensor-core and (LCB_DECODE_KERNEL=simt) CUDA-core kernels.
TEST(DecodeKernel, StoresTheNewTokenWhileAttending) {
  REQUIRE_GPU();
  for (const char* kernel : {"", "simt"}) {
    const ScopedEnv env("LCB_DECODE_KERNEL", kernel);
    for (const Case c : {Case{2000, 8, 8, 128}, Case{2000, 8, 2, 128}, Case{301, 16, 2, 64}}) {
      const std::string what = "G=" + std::to_string(c.hq / c.hkv) + " D=" + std::to_string(c.d) + " kernel=" + kernel;
      const int64_t B = 2, L = c.L;
      const auto in = test::random_qkv(B, c.hq, c.hkv, 1, L, c.d, 90 + c.hkv, at::kBFloat16, kCuda);
      const std::vector<std::pair<at::Tensor, at::Tensor>> segs = {
          {in.k.narrow(2, 0, L / 2), in.v.narrow(2, 0, L / 2)},
          {in.k.narrow(2, L / 2, L - 1 - L / 2), in.v.narrow(2, L / 2, L - 1 - L / 2)}};
      const at::Tensor k_store = at::zeros({B, c.hkv, 5, c.d}, in.k.options()), v_store = at::zeros_like(k_store);
      const attn::fast::DecodeStore store{in.k.narrow(2, L - 1, 1), in.v.narrow(2, L - 1, 1), k_store.narrow(2, 3, 1),
                                          v_store.narrow(2, 3, 1)};
      const at::Tensor got = attn::fast::decode_attention(in.q, segs, 1.0 / std::sqrt(double(c.d)), nullptr, &store);
      const at::Tensor want = test::dense_f64(in.q, in.k, in.v);
      const at::Tensor ref32 = test::dense_f64(in.q.to(at::kFloat), in.k.to(at::kFloat), in.v.to(at::kFloat));
      EXPECT_LE(test::rel_l2(got, want),
                test::derived_tolerance(at::kBFloat16, test::rel_l2(ref32.to(at::kBFloat16), want)))
          << what;
      EXPECT_TRUE(at::equal(k_store.narrow(2, 3, 1), in.k.narrow(2, L - 1, 1))) << what;
      EXPECT_TRUE(at::equal(v_store.narrow(2, 3, 1), in.v.narrow(2, L - 1, 1))) << what;
      EXPECT_EQ(k_store.abs().sum().item<double>(), k_store.narrow(2, 3, 1).abs().sum().item<double>())
          << "other rows written, " << what;
      EXPECT_EQ(v_store.abs().sum().item<double>(), v_store.narrow(2, 3, 1).abs().sum().item<double>())
          << "other rows written, " << what;
    }
  }
}

// Prefills the first P tokens of `in` on the kernels and on the reference, then decodes the rest
// token by token with both: each step's outputs agree, and so do the caches' lengths (and sizes,
// with same_size).
void expect_decode_matches_reference(const attn::Attention& impl, const test::Qkv& in, int64_t P, bool same_size,
                                     const std::string& what) {
  const int64_t L = in.q.size(2);
  attn::Options ref;
  ref.reference = true;
  std::unique_ptr<attn::Cache> fast_cache, ref_cache;
  impl.forward(in.q.narrow(2, 0, P), in.k.narrow(2, 0, P), in.v.narrow(2, 0, P), {}, &fast_cache);
  impl.forward(in.q.narrow(2, 0, P), in.k.narrow(2, 0, P), in.v.narrow(2, 0, P), ref, &ref_cache);
  for (int64_t i = P; i < L; ++i) {
    const auto q1 = in.q.narrow(2, i, 1), k1 = in.k.narrow(2, i, 1), v1 = in.v.narrow(2, i, 1);
    const at::Tensor got = impl.decode(q1, k1, v1, *fast_cache, {});
    const at::Tensor want = impl.decode(q1, k1, v1, *ref_cache, ref);
    ASSERT_LT(test::rel_l2(got, want), 1e-2) << what << " step " << i;
    ASSERT_EQ(fast_cache->length(), ref_cache->length()) << what << " step " << i;
    if (same_size) {
      ASSERT_EQ(fast_cache->bytes(), ref_cache->bytes()) << what << " step " << i << ": the cache sizes differ";
    }
  }
}

// Decoding token by token on the kernels (the window ring with sinks and wrap-around, DGA's
// cache with regrouping on the GPU, topk_block's selection over kept block summaries) against
// the same implementation's reference decoding from the same prefill.
TEST(DecodeKernel, DecodeSequencesMatchTheReference) {
  REQUIRE_GPU();
  for (const std::string spec : {"swa:window=64,sink=4", "swa:window=1000,sink=4", "swa:window=100", "dga:m=8,gamma=0.25",
                                  "dga:m=16,gamma=0.1", "topk_block:block=64,k=3", "topk_block:block=64,k=20"}) {
    const auto impl = attn::make_attention(spec);
    const auto in = test::random_qkv(1, 8, 2, 700, 700, 128, 77, at::kBFloat16, kCuda);
    // topk_block's fast cache also keeps the block summaries.
    expect_decode_matches_reference(*impl, in, 640, impl->family() != "topk_block", spec);
  }
}

// topk_block's decode kernels with batch 2, fp16, head dim 64 and 4 query heads per kv head,
// across a block boundary and a growth of the summaries' storage.
TEST(DecodeKernel, BlockTopKDecodeBatchedMatchesTheReference) {
  REQUIRE_GPU();
  const auto impl = attn::make_attention("topk_block:block=64,k=5");
  const auto in = test::random_qkv(2, 8, 2, 1100, 1100, 64, 78, at::kHalf, kCuda);
  expect_decode_matches_reference(*impl, in, 1000, false, "topk_block batch 2");
}

}  // namespace
}  // namespace lcb
