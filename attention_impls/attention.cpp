#include "attention_impls/attention.h"

#include <sstream>
#include <stdexcept>

namespace lcb::attn {

Shape Shape::of(const at::Tensor& q, const at::Tensor& k) {
  return Shape{q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3), static_cast<int64_t>(q.element_size())};
}

std::string Shape::str() const {
  std::ostringstream s;
  s << "B=" << batch << " Hq=" << q_heads << " Hkv=" << kv_heads << " Lq=" << q_len << " Lk=" << kv_len
    << " D=" << head_dim;
  return s.str();
}

static void expect(bool ok, const char* who, const std::string& what) {
  if (!ok) throw std::invalid_argument(std::string(who) + ": " + what);
}

void check_qkv(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const char* who) {
  expect(q.dim() == 4, who, "q must be [B, Hq, Lq, D], got " + std::to_string(q.dim()) + " dims");
  expect(k.dim() == 4, who, "k must be [B, Hkv, Lk, D], got " + std::to_string(k.dim()) + " dims");
  expect(v.sizes() == k.sizes(), who, "v must have k's shape");
  expect(k.size(0) == q.size(0), who,
         "k dim 0 (batch) must equal q's " + std::to_string(q.size(0)) + ", got " + std::to_string(k.size(0)));
  expect(k.size(3) == q.size(3), who,
         "k dim 3 (head dim) must equal q's " + std::to_string(q.size(3)) + ", got " + std::to_string(k.size(3)));
  expect(k.size(1) > 0 && q.size(1) % k.size(1) == 0, who,
         "q heads (" + std::to_string(q.size(1)) + ") must be a multiple of kv heads (" + std::to_string(k.size(1)) +
             ")");
  expect(q.size(2) <= k.size(2), who,
         "q length (" + std::to_string(q.size(2)) + ") must not exceed kv length (" + std::to_string(k.size(2)) + ")");
  expect(q.scalar_type() == k.scalar_type() && k.scalar_type() == v.scalar_type(), who,
         "q, k and v must share a dtype");
  expect(q.device() == k.device() && k.device() == v.device(), who, "q, k and v must be on one device");
}

Support common_support(const Shape& s, at::ScalarType dtype, at::Device device) {
  if (dtype != at::kFloat && dtype != at::kBFloat16 && dtype != at::kHalf && dtype != at::kDouble) {
    return Support::no(std::string("dtype ") + c10::toString(dtype) + " not accepted (float32, bfloat16, float16, float64)");
  }
  if (s.kv_heads <= 0 || s.q_heads % s.kv_heads != 0) {
    return Support::no("q heads " + std::to_string(s.q_heads) + " not a multiple of kv heads " +
                       std::to_string(s.kv_heads));
  }
  if (s.q_len <= 0 || s.q_len > s.kv_len) {
    return Support::no("q length " + std::to_string(s.q_len) + " must be in [1, kv length " +
                       std::to_string(s.kv_len) + "]");
  }
  if (device.type() != at::kCPU && device.type() != at::kCUDA) {
    return Support::no("device " + device.str() + " not accepted (cpu, cuda)");
  }
  return Support::yes();
}

Support Attention::supports(const Shape& shape, at::ScalarType dtype, at::Device device) const {
  return common_support(shape, dtype, device);
}

}  // namespace lcb::attn
