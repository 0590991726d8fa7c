// Every reference against a float64 dense computation where the identities of DESIGN.md §3 make
// it dense: window >= L, k >= L, k >= number of blocks, gamma = 1, m = 1. Edge lengths, GQA
// ratios 1/4/8, float32 and bfloat16; tolerance derived from the dense reference's own error.
#include "attention_impls/registry.h"
#include "tests/test_util.h"

#include <tuple>

namespace lcb::attn {
namespace {

using Case = std::tuple<int64_t /*L*/, int64_t /*gqa ratio*/, at::ScalarType>;

class Identities : public ::testing::TestWithParam<Case> {};

TEST_P(Identities, DenseEquivalentSpecsMatchFloat64Dense) {
  const auto [L, ratio, dtype] = GetParam();
  const int64_t hkv = 2, hq = hkv * ratio, D = 16;
  const auto in = test::random_qkv(1, hq, hkv, L, L, D, 1000 + L * 7 + ratio, dtype);
  const at::Tensor want = test::dense_f64(in.q, in.k, in.v);

  Options ref_opts;
  ref_opts.reference = true;
  ref_opts.chunk_rows = 100;  // several chunks at the longer lengths
  const double ref_err = test::rel_l2(make_attention("dense")->forward(in.q, in.k, in.v, ref_opts).out, want);
  ASSERT_LT(ref_err, test::design_tolerance(dtype)) << "the dense reference itself is off";
  const double tol = test::derived_tolerance(dtype, ref_err);

  const std::string Ls = std::to_string(L);
  for (const std::string& spec : std::vector<std::string>{"dense", "swa:window=" + Ls, "swa:window=" + Ls + ",sink=3", "topk:k=" + Ls,
                                 "topk_block:block=16,k=" + std::to_string(L / 16 + 1), "topk_block:block=1,k=" + Ls,
                                 "dga:m=16,gamma=1", "dga:m=1,gamma=0.3,samples=5", "dga:m=1,gamma=0,sample=strided"}) {
    const auto impl = make_attention(spec);
    const Output o = impl->forward(in.q, in.k, in.v, ref_opts);
    ASSERT_EQ(o.out.sizes(), in.q.sizes()) << spec;
    ASSERT_EQ(o.out.scalar_type(), dtype) << spec;
    ASSERT_TRUE(test::all_finite(o.out)) << spec;
    EXPECT_LE(test::rel_l2(o.out, want), tol) << spec << " L=" << L << " ratio=" << ratio << " "
                                              << test::dtype_name(dtype) << " (dense reference error " << ref_err << ")";
    EXPECT_EQ(o.cost.kept_pairs, o.cost.causal_pairs) << spec << " must keep every causal pair";
  }
}

INSTANTIATE_TEST_SUITE_P(EdgeLengths, Identities,
                         ::testing::Combine(::testing::Values(1, 2, 17, 127, 129, 1013), ::testing::Values(1, 4, 8),
                                            ::testing::Values(at::kFloat, at::kBFloat16)),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return "L" + std::to_string(std::get<0>(info.param)) + "_gqa" +
                                  std::to_string(std::get<1>(info.param)) + "_" +
                                  test::dtype_name(std::get<2>(info.param));
                         });

// In float64 the identities hold to rounding, for every dense-equivalent spec.
TEST(IdentitiesF64, MatchToRounding) {
  const auto in = test::random_qkv(2, 8, 2, 45, 45, 8, 7, at::kDouble);
  const at::Tensor want = test::dense_f64(in.q, in.k, in.v);
  for (const std::string& spec : std::vector<std::string>{"dense", "swa:window=45", "topk:k=45", "topk_block:block=4,k=12", "dga:m=8,gamma=1",
                                 "dga:m=1,gamma=0.5"}) {
    EXPECT_LT(test::rel_l2(make_attention(spec)->forward(in.q, in.k, in.v, {}).out, want), 1e-12) << spec;
  }
}

// SDPA's fast path agrees with the reference (and with float64) on the CPU.
TEST(DenseFastPath, SdpaMatchesReference) {
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    const auto in = test::random_qkv(2, 8, 2, 300, 300, 32, 11, dtype);
    const auto dense = make_attention("dense");
    Options fast;
    const Output o = dense->forward(in.q, in.k, in.v, fast);
    EXPECT_NE(o.backend, "reference");
    Options ref_opts;
    ref_opts.reference = true;
    const at::Tensor want = test::dense_f64(in.q, in.k, in.v);
    const double ref_err = test::rel_l2(dense->forward(in.q, in.k, in.v, ref_opts).out, want);
    EXPECT_LE(test::rel_l2(o.out, want), test::derived_tolerance(dtype, ref_err)) << test::dtype_name(dtype);
  }
}

}  // namespace
}  // namespace lcb::attn
