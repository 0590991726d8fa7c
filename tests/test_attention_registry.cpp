// A parametrised suite over every registry entry and example spec: registering an implementation
// puts it under these tests. Also the spec parser's errors, and fast::DeferredSum / StageTimer off the GPU.
#include "attention_impls/fast.h"
#include "attention_impls/registry.h"
#include "tests/registry_specs.h"
#include "tests/test_util.h"

#include <torch/cuda.h>

namespace lcb::attn {
namespace {

class EveryImpl : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryImpl, CanonicalSpecRoundTrips) {
  const auto impl = make_attention(GetParam());
  EXPECT_EQ(impl->spec(), canonical_spec(GetParam()));
  EXPECT_EQ(make_attention(impl->spec())->spec(), impl->spec());
  EXPECT_EQ(impl->family(), split_spec(GetParam()).first);
}

TEST_P(EveryImpl, Float32AndBFloat16AgreeWithFloat64) {
  const auto impl = make_attention(GetParam());
  const auto in64 = test::random_qkv(2, 4, 2, 77, 77, 16, 21, at::kDouble);
  const at::Tensor want = impl->forward(in64.q, in64.k, in64.v, {}).out;
  for (const auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    const at::Tensor q = in64.q.to(dtype), k = in64.k.to(dtype), v = in64.v.to(dtype);
    ASSERT_TRUE(impl->supports(Shape::of(q, k), dtype, at::kCPU).ok);
    const Output o = impl->forward(q, k, v, {});
    ASSERT_EQ(o.out.scalar_type(), dtype);
    ASSERT_EQ(o.out.sizes(), q.sizes());
    ASSERT_TRUE(test::all_finite(o.out));
    // The same implementation in float64 on the same rounded inputs is the reference.
    const at::Tensor want_rounded = impl->forward(q.to(at::kDouble), k.to(at::kDouble), v.to(at::kDouble), {}).out;
    EXPECT_LT(test::rel_l2(o.out, want_rounded), test::design_tolerance(dtype)) << test::dtype_name(dtype);
  }
}

TEST_P(EveryImpl, CostIsConsistent) {
  const auto impl = make_attention(GetParam());
  const auto in = test::random_qkv(1, 4, 1, 150, 150, 8, 3, at::kFloat);
  const Output o = impl->forward(in.q, in.k, in.v, {});
  EXPECT_GT(o.cost.kept_pairs, 0);
  EXPECT_LE(o.cost.kept_pairs, o.cost.causal_pairs);
  EXPECT_EQ(o.cost.causal_pairs, 4 * 150 * 151 / 2);
  EXPECT_DOUBLE_EQ(o.cost.attention_flops, 4.0 * 8 * static_cast<double>(o.cost.kept_pairs));
  EXPECT_GT(o.cost.bytes, 0);
  if (const auto c = impl->cost(Shape::of(in.q, in.k))) {
    EXPECT_EQ(c->kept_pairs, o.cost.kept_pairs);
    EXPECT_DOUBLE_EQ(c->selection_flops, o.cost.selection_flops);
  }
  const double rd = impl->requested_density(150);
  EXPECT_GT(rd, 0);
  EXPECT_LE(rd, 1);
}

TEST_P(EveryImpl, MassRecallIsAProbabilityShare) {
  const auto impl = make_attention(GetParam());
  const auto in = test::random_qkv(1, 4, 2, 96, 96, 8, 4, at::kFloat);
  Options opts;
  opts.want_recall = true;
  opts.chunk_rows = 40;
  const Output o = impl->forward(in.q, in.k, in.v, opts);
  ASSERT_TRUE(o.mass_recall.has_value());
  EXPECT_GT(*o.mass_recall, 0);
  EXPECT_LE(*o.mass_recall, 1 + 1e-6);
  if (o.cost.kept_pairs == o.cost.causal_pairs && impl->family() != "dga") {
    EXPECT_NEAR(*o.mass_recall, 1, 1e-6);
  }
}

TEST_P(EveryImpl, DecodeExtendsItsCache) {
  const auto impl = make_attention(GetParam());
  const auto in = test::random_qkv(2, 4, 2, 30, 30, 8, 5, at::kFloat);
  std::unique_ptr<Cache> cache;
  impl->forward(in.q.narrow(2, 0, 20), in.k.narrow(2, 0, 20), in.v.narrow(2, 0, 20), {}, &cache);
  ASSERT_TRUE(cache);
  for (int64_t i = 20; i < 30; ++i) {
    const at::Tensor o = impl->decode(in.q.narrow(2, i, 1), in.k.narrow(2, i, 1), in.v.narrow(2, i, 1), *cache, {});
    ASSERT_EQ(o.sizes(), in.q.narrow(2, i, 1).sizes());
    ASSERT_TRUE(test::all_finite(o));
    EXPECT_EQ(cache->length(), i + 1);
    EXPECT_GT(cache->bytes(), 0);
  }
}

// Autograd: the analytic gradient of a random projection of the output matches central
// differences on a few entries of q, k and v (float64).
TEST_P(EveryImpl, GradientsMatchFiniteDifferences) {
  const auto impl = make_attention(GetParam());
  auto in = test::random_qkv(1, 4, 2, 23, 23, 8, 6, at::kDouble);
  const at::Tensor proj = test::random_qkv(1, 4, 1, 23, 23, 8, 99, at::kDouble).q;
  std::vector<at::Tensor> leaves = {in.q.clone().requires_grad_(), in.k.clone().requires_grad_(),
                                    in.v.clone().requires_grad_()};
  const at::Tensor loss = (impl->forward(leaves[0], leaves[1], leaves[2], {}).out * proj).sum();
  loss.backward();
  auto eval = [&](const std::vector<at::Tensor>& x) {
    return (impl->forward(x[0], x[1], x[2], {}).out * proj).sum().item<double>();
  };
  const double eps = 1e-6;
  for (size_t t = 0; t < 3; ++t) {
    ASSERT_TRUE(leaves[t].grad().defined());
    ASSERT_TRUE(test::all_finite(leaves[t].grad()));
    for (int64_t flat : {int64_t{5}, int64_t{97}, leaves[t].numel() - 3}) {
      std::vector<at::Tensor> plus = {in.q.clone(), in.k.clone(), in.v.clone()};
      std::vector<at::Tensor> minus = {in.q.clone(), in.k.clone(), in.v.clone()};
      plus[t].view(-1)[flat] += eps;
      minus[t].view(-1)[flat] -= eps;
      const double numeric = (eval(plus) - eval(minus)) / (2 * eps);
      EXPECT_NEAR(leaves[t].grad().view(-1)[flat].item<double>(), numeric, 1e-6 * std::max(1.0, std::fabs(numeric)))
          << "tensor " << "qkv"[t] << " entry " << flat;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Registry, EveryImpl, ::testing::ValuesIn(test::all_example_specs()), test::spec_test_name);

// --- spec errors -------------------------------------------------------------------------------

std::string error_of(const std::string& spec) {
  try {
    make_attention(spec);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

TEST(SpecErrors, NameTheParameterAndWhatIsAccepted) {
  const std::string m0 = error_of("dga:m=0");
  EXPECT_NE(m0.find("'m'"), std::string::npos) << m0;
  EXPECT_NE(m0.find("an integer >= 1"), std::string::npos) << m0;

  const std::string w = error_of("swa:window=-3");
  EXPECT_NE(w.find("'window'"), std::string::npos) << w;
  EXPECT_NE(w.find("-3"), std::string::npos) << w;
  EXPECT_NE(w.find("an integer >= 1"), std::string::npos) << w;

  const std::string k = error_of("topk:k=abc");
  EXPECT_NE(k.find("'abc'"), std::string::npos) << k;
  EXPECT_NE(k.find("'k'"), std::string::npos) << k;

  const std::string bogus = error_of("bogus");
  EXPECT_NE(bogus.find("unknown attention implementation 'bogus'"), std::string::npos) << bogus;
  for (const auto& e : registry()) EXPECT_NE(bogus.find(e.family), std::string::npos) << bogus;

  const std::string unknown = error_of("dga:mm=3");
  EXPECT_NE(unknown.find("unknown parameter 'mm'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("gamma"), std::string::npos) << unknown;

  EXPECT_NE(error_of("dga:gamma=1.5").find("a number in [0, 1]"), std::string::npos);
  EXPECT_NE(error_of("dga:sample=first").find("one of last|strided"), std::string::npos);
  EXPECT_NE(error_of("swa:window=4,window=5").find("given twice"), std::string::npos);
  EXPECT_NE(error_of("swa:window").find("key=value"), std::string::npos);
  EXPECT_NE(error_of("topk:k=1e3").find("'k'"), std::string::npos);
  EXPECT_NE(error_of("").find("empty spec"), std::string::npos);
}

TEST(SpecErrors, CanonicalFormFillsDefaults) {
  EXPECT_EQ(canonical_spec("dga"), "dga:m=16,gamma=0.1,samples=64,sample=last");
  EXPECT_EQ(canonical_spec("dga:gamma=0.10,m=8"), "dga:m=8,gamma=0.1,samples=64,sample=last");
  EXPECT_EQ(canonical_spec("swa:window=4096,sink=4"), "swa:window=4096,sink=4");
  EXPECT_EQ(canonical_spec(" topk : k = 7 "), "topk:k=7");
  EXPECT_EQ(canonical_spec("dense"), "dense");
}

TEST(Support, ExplainsRejections) {
  const auto dga = make_attention("dga");
  Shape s;
  s.q_len = 1;
  s.kv_len = 10;
  const Support r = dga->supports(s, at::kFloat, at::kCPU);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.reason.find("q length (1) must equal kv length (10)"), std::string::npos) << r.reason;
  Shape g;
  g.q_heads = 6;
  g.kv_heads = 4;
  const Support r2 = make_attention("dense")->supports(g, at::kFloat, at::kCPU);
  EXPECT_FALSE(r2.ok);
  EXPECT_NE(r2.reason.find("not a multiple"), std::string::npos);
  EXPECT_FALSE(make_attention("dense")->supports(Shape{}, at::kInt, at::kCPU).ok);
}

TEST(CheckQkv, NamesTheTensorAndDimension) {
  const auto in = test::random_qkv(1, 4, 2, 8, 8, 16, 1);
  try {
    make_attention("dense")->forward(in.q, in.k.narrow(3, 0, 8), in.v.narrow(3, 0, 8), {});
    FAIL() << "mismatched head dims accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("k dim 3 (head dim) must equal q's 16, got 8"), std::string::npos) << e.what();
  }
}

// DeferredSum on the host is the plain sum, exact for int64 totals past 2^31.
TEST(Fast, DeferredSumOnTheHost) {
  const at::Tensor x = at::full({3, 1000}, int64_t{3} << 30, at::TensorOptions().dtype(at::kLong));
  fast::DeferredSum sum(x);
  EXPECT_EQ(sum.get(), int64_t{3000} * (int64_t{3} << 30));
  fast::DeferredSum ints(at::arange(-5, 100, at::TensorOptions().dtype(at::kInt)));
  EXPECT_EQ(ints.get(), (99 * 100) / 2 - 15);
}

// A StageTimer refuses to start where it could time nothing: without the CUDA kernels, or without
// a device; on a GPU it starts with no stages (the GPU suite times a DGA forward with it).
TEST(Fast, StageTimerNeedsTheKernelsAndADevice) {
  if (!fast::built()) {
    EXPECT_THROW(fast::StageTimer(), std::logic_error);
  } else if (!torch::cuda::is_available()) {
    EXPECT_ANY_THROW(fast::StageTimer());
  } else {
    fast::StageTimer timer;
    EXPECT_TRUE(timer.stages().empty());
  }
}

}  // namespace
}  // namespace lcb::attn
