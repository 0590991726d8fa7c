// GPU tests: every registry entry on CUDA against the CPU, dense (SDPA / cuDNN) against float64,
// decode on CUDA, and a sweep on CUDA. Without a GPU every test skips with a message; the suite
// runs on the GPU machine through tools/gpu/run.sh.
#include "harness/runner.h"
#include "tests/registry_specs.h"
#include "tests/temp_dir.h"
#include "tests/test_util.h"

#include <torch/cuda.h>

namespace lcb {
namespace {

#define REQUIRE_GPU() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: this test runs on the GPU machine (tools/gpu/run.sh)"

const at::Device kCuda(at::kCUDA, 0);

class EveryImplOnGpu : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryImplOnGpu, CudaMatchesCpu) {
  REQUIRE_GPU();
  const auto impl = attn::make_attention(GetParam());
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    for (const auto& [L, hkv] : {std::pair<int64_t, int64_t>{333, 2}, {1013, 4}}) {
      const auto cpu = test::random_qkv(2, 8, hkv, L, L, 64, 12 + L, dtype);
      const at::Tensor want = impl->forward(cpu.q, cpu.k, cpu.v, {}).out;
      const attn::Output o = impl->forward(cpu.q.to(kCuda), cpu.k.to(kCuda), cpu.v.to(kCuda), {});
      EXPECT_TRUE(o.out.is_cuda());
      EXPECT_LT(test::rel_l2(o.out, want), test::design_tolerance(dtype))
          << test::dtype_name(dtype) << " L=" << L << " " << o.backend;
    }
  }
}

TEST_P(EveryImplOnGpu, DecodeOnCudaMatchesCpu) {
  REQUIRE_GPU();
  const auto impl = attn::make_attention(GetParam());
  const auto in = test::random_qkv(1, 8, 2, 300, 300, 64, 4, at::kFloat);
  std::unique_ptr<attn::Cache> cpu_cache, gpu_cache;
  const int64_t P = 280;
  impl->forward(in.q.narrow(2, 0, P), in.k.narrow(2, 0, P), in.v.narrow(2, 0, P), {}, &cpu_cache);
  impl->forward(in.q.narrow(2, 0, P).to(kCuda), in.k.narrow(2, 0, P).to(kCuda), in.v.narrow(2, 0, P).to(kCuda), {},
                &gpu_cache);
  for (int64_t i = P; i < 300; ++i) {
    const auto q1 = in.q.narrow(2, i, 1), k1 = in.k.narrow(2, i, 1), v1 = in.v.narrow(2, i, 1);
    const at::Tensor want = impl->decode(q1, k1, v1, *cpu_cache, {});
    const at::Tensor got = impl->decode(q1.to(kCuda), k1.to(kCuda), v1.to(kCuda), *gpu_cache, {});
    ASSERT_LT(test::rel_l2(got, want), 1e-5) << "step " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Registry, EveryImplOnGpu, ::testing::ValuesIn(test::all_example_specs()), test::spec_test_name);

// Dense through SDPA (cuDNN / flash on the H200) in bf16 against float64, with the tolerance
// derived from the reference's own bf16 error.
TEST(DenseOnGpu, SdpaMatchesFloat64) {
  REQUIRE_GPU();
  const auto dense = attn::make_attention("dense");
  for (const auto& [L, hkv] : {std::pair<int64_t, int64_t>{4096, 8}, {1013, 32}, {4099, 4}}) {
    const auto in = test::random_qkv(1, 32, hkv, L, L, 128, 5 + L, at::kBFloat16, kCuda);
    const at::Tensor want = test::dense_f64(in.q, in.k, in.v);
    attn::Options ref_opts;
    ref_opts.reference = true;
    const double ref_err = test::rel_l2(dense->forward(in.q, in.k, in.v, ref_opts).out, want);
    const attn::Output o = dense->forward(in.q, in.k, in.v, {});
    EXPECT_NE(o.backend, "sdpa-math") << "expected a fused SDPA backend on the GPU";
    const double err = test::rel_l2(o.out, want);
    EXPECT_LE(err, test::derived_tolerance(at::kBFloat16, ref_err)) << "L=" << L << " " << o.backend;
    std::printf("dense bf16 L=%lld Hkv=%lld backend=%s rel_err=%.2e (reference %.2e)\n", static_cast<long long>(L),
                static_cast<long long>(hkv), o.backend.c_str(), err, ref_err);
  }
}

TEST(SweepOnGpu, FillsTheDatabase) {
  REQUIRE_GPU();
  test::TempDir dir;
  harness::RunConfig c;
  c.impls = {"dense", "swa:window=256,sink=4", "topk:k=128", "topk_block:block=64,k=4", "dga"};
  c.lengths = {1024, 2048};
  c.device = "cuda";
  c.repeats = 3;
  harness::validate_config(c, "test");
  harness::RunOptions o;
  o.db_path = dir.file("gpu.sqlite");
  o.quiet = true;
  const auto sum = harness::run_sweep(c, o);
  EXPECT_EQ(sum.ok, 10);
  for (const auto& cell : store::Store(o.db_path).cells()) {
    EXPECT_EQ(cell.status, "ok") << cell.impl << ": " << cell.message;
    EXPECT_EQ(cell.mem_kind, "cuda_allocator_peak");
    EXPECT_GT(*cell.peak_mem_bytes, 0);
    EXPECT_GT(*cell.latency_ms_median, 0);
    EXPECT_EQ(cell.dtype, "bfloat16");
    EXPECT_NE(cell.device_name.find("NVIDIA"), std::string::npos) << cell.device_name;
    if (cell.impl == "dense") {
      EXPECT_EQ(*cell.accuracy, 1.0);
    }
  }
}

}  // namespace
}  // namespace lcb
