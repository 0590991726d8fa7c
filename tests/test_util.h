// Helpers shared by the attention tests: seeded random inputs, a float64 dense reference written
// from the formula, error measures.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

namespace lcb::test {

struct Qkv {
  at::Tensor q, k, v;
};

// q [B, Hq, Lq, D], k/v [B, Hkv, Lk, D] ~ N(0, 1), made in float64 on the CPU and then cast, so
// every dtype and device sees the same numbers.
inline Qkv random_qkv(int64_t B, int64_t Hq, int64_t Hkv, int64_t Lq, int64_t Lk, int64_t D, uint64_t seed,
                      at::ScalarType dtype = at::kFloat, at::Device device = at::kCPU) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto opt = at::TensorOptions().dtype(at::kDouble);
  Qkv r;
  r.q = at::normal(0.0, 1.0, {B, Hq, Lq, D}, gen, opt).to(device, dtype);
  r.k = at::normal(0.0, 1.0, {B, Hkv, Lk, D}, gen, opt).to(device, dtype);
  r.v = at::normal(0.0, 1.0, {B, Hkv, Lk, D}, gen, opt).to(device, dtype);
  return r;
}

// Causal dense attention in float64 from the formula (bottom-right aligned), on q's device.
inline at::Tensor dense_f64(const at::Tensor& q0, const at::Tensor& k0, const at::Tensor& v0) {
  const at::Tensor q = q0.to(at::kDouble), k = k0.to(at::kDouble), v = v0.to(at::kDouble);
  const int64_t g = q.size(1) / k.size(1), lq = q.size(2), lk = k.size(2);
  const at::Tensor kr = k.repeat_interleave(g, 1), vr = v.repeat_interleave(g, 1);
  const at::Tensor logits = at::matmul(q, kr.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(3)));
  const auto lopt = at::TensorOptions().dtype(at::kLong).device(q.device());
  const at::Tensor pos = at::arange(lk - lq, lk, lopt).unsqueeze(1);
  const at::Tensor future = at::arange(lk, lopt).unsqueeze(0).gt(pos);
  return at::matmul(at::softmax(logits.masked_fill(future, -INFINITY), -1), vr);
}

// ||a - b|| / ||b|| in float64 (0 when both are zero).
inline double rel_l2(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.to(at::kCPU, at::kDouble), y = b.to(at::kCPU, at::kDouble);
  const double den = y.norm().item<double>();
  const double num = (x - y).norm().item<double>();
  return den == 0 ? num : num / den;
}

inline bool all_finite(const at::Tensor& t) {
  return at::isfinite(t.to(at::kCPU, at::kDouble)).all().item<bool>();
}

// Relative L2 bound of DESIGN.md §3 for a dtype.
inline double design_tolerance(at::ScalarType dtype) {
  switch (dtype) {
    case at::kDouble: return 1e-10;
    case at::kFloat: return 1e-5;
    default: return 1e-2;
  }
}

// Tolerance for an implementation run in `dtype` against the float64 reference: a small factor of
// the error the dense reference itself makes in that dtype on the same (already rounded) inputs,
// never looser than the DESIGN bound.
inline double derived_tolerance(at::ScalarType dtype, double reference_error) {
  return std::min(design_tolerance(dtype), 4.0 * reference_error + 1e-12);
}

inline const char* dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return "f64";
    case at::kFloat: return "f32";
    case at::kBFloat16: return "bf16";
    case at::kHalf: return "f16";
    default: return "other";
  }
}

}  // namespace lcb::test
