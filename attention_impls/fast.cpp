#include "attention_impls/fast.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <stdexcept>

#ifdef LCB_WITH_CUDA
#include "attention_impls/cuda/kernels.h"

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#endif

namespace lcb::attn::fast {

#ifndef LCB_WITH_CUDA

bool built() { return false; }

struct StageTimer::Impl {};
StageTimer::StageTimer() { throw std::logic_error("fast::StageTimer: this build has no CUDA kernels"); }
StageTimer::~StageTimer() = default;
std::vector<StageTimer::Stage> StageTimer::stages() { return {}; }

struct DeferredSum::Event {};
DeferredSum::DeferredSum(const at::Tensor& x) : host_(x.sum().to(at::kCPU)) {}
DeferredSum::~DeferredSum() = default;
int64_t DeferredSum::get() { return host_.item<int64_t>(); }

std::string reason_not(const at::Tensor&, const at::Tensor&, const at::Tensor&, const Options&) {
  return "this build has no CUDA kernels";
}

std::string reason_not_decode(const at::Tensor&, const at::Tensor&, const at::Tensor&, const Options&) {
  return "this build has no CUDA kernels";
}

at::Tensor interval_attention(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                              const at::Tensor&, int64_t, double, const at::Tensor&, int64_t, const at::Tensor&,
                              const at::Tensor&) {
  throw std::logic_error("fast::interval_attention: this build has no CUDA kernels");
}

at::Tensor decode_attention(const at::Tensor&, const std::vector<std::pair<at::Tensor, at::Tensor>>&, double,
                            at::Tensor*, const DecodeStore*) {
  throw std::logic_error("fast::decode_attention: this build has no CUDA kernels");
}

at::Tensor decode_attention_rows(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double) {
  throw std::logic_error("fast::decode_attention_rows: this build has no CUDA kernels");
}

at::Tensor topk_block_select(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, at::Tensor*) {
  throw std::logic_error("fast::topk_block_select: this build has no CUDA kernels");
}

std::string reason_not_select(const at::Tensor&, int64_t) { return "this build has no CUDA kernels"; }

std::string reason_not_topk(const at::Tensor&, const at::Tensor&, const at::Tensor&, const Options&) {
  return "this build has no CUDA kernels";
}

at::Tensor topk_attention(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, double) {
  throw std::logic_error("fast::topk_attention: this build has no CUDA kernels");
}

at::Tensor topk_select(const at::Tensor&, const at::Tensor&, int64_t, int64_t, int64_t) {
  throw std::logic_error("fast::topk_select: this build has no CUDA kernels");
}

std::pair<at::Tensor, at::Tensor> dga_order(const at::Tensor&, const at::Tensor&, const at::Tensor&, double, int64_t) {
  throw std::logic_error("fast::dga_order: this build has no CUDA kernels");
}

std::pair<at::Tensor, at::Tensor> dga_aggregate(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                double) {
  throw std::logic_error("fast::dga_aggregate: this build has no CUDA kernels");
}

DgaLayout dga_layout(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t, double) {
  throw std::logic_error("fast::dga_layout: this build has no CUDA kernels");
}

at::Tensor topk_block_decode_rows(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t,
                                  int64_t, int64_t) {
  throw std::logic_error("fast::topk_block_decode_rows: this build has no CUDA kernels");
}

#else

namespace {

cuda::Dtype kernel_dtype(const at::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 ? cuda::Dtype::kBFloat16 : cuda::Dtype::kFloat16;
}

// The kernels read 16-byte pieces of rows: the last dimension contiguous, rows and the base
// 16-byte aligned. Anything else is copied once.
// Whether the kernels can address t [B, H, L, D] as it is: unit last stride, every row 16-byte aligned.
bool kernel_addressable(const at::Tensor& t) {
  return t.stride(3) == 1 && t.stride(0) % 8 == 0 && t.stride(1) % 8 == 0 && t.stride(2) % 8 == 0 &&
         reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
}

at::Tensor kernel_layout(const at::Tensor& t) { return kernel_addressable(t) ? t : t.contiguous(); }

cuda::Strides strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2)}; }

// Integer interval ends as int32 [B, Hkv, N] (stride 0 where broadcast), "never" clamped.
at::Tensor interval_ends(const at::Tensor& x, int64_t B, int64_t H, int64_t N) {
  at::Tensor t = x.scalar_type() == at::kInt ? x : x.clamp_max(std::numeric_limits<int32_t>::max()).to(at::kInt);
  while (t.dim() < 3) t = t.unsqueeze(0);
  t = t.expand({B, H, N});
  if (t.stride(2) != 1) t = t.contiguous();
  return t;
}

// Fills the query side of p (its key segments already set), allocates the output and the
// split workspace, and launches; with lse, also its log-sum-exp per (batch, head).
at::Tensor launch_decode(cuda::DecodeParams& p, const at::Tensor& q, int64_t kv_heads, double scale, at::Tensor* lse) {
  at::Tensor out = at::empty({q.size(0), q.size(1), 1, q.size(3)}, q.options());
  p.q = q.data_ptr();
  p.out = out.data_ptr();
  p.q_st = strides_of(q);
  p.o_st = strides_of(out);
  p.batch = static_cast<int>(q.size(0));
  p.q_heads = static_cast<int>(q.size(1));
  p.kv_heads = static_cast<int>(kv_heads);
  p.head_dim = static_cast<int>(q.size(3));
  p.scale = static_cast<float>(scale);
  at::Tensor ws = at::empty({static_cast<int64_t>(cuda::decode_workspace_bytes(p) / sizeof(float))}, q.options().dtype(at::kFloat));
  p.workspace = ws.data_ptr<float>();
  if (lse) p.lse = lse->data_ptr<float>();
  cuda::decode_attention(p, kernel_dtype(q), at::cuda::getCurrentCUDAStream());
  return out;
}

}  // namespace

bool built() { return true; }

struct StageTimer::Impl final : cuda::StageRecorder {
  struct Mark {
    std::string stage;
    cudaEvent_t event;
    std::chrono::steady_clock::time_point host;
  };
  std::vector<Mark> marks;  // the first: the start
  void mark(const char* stage, cudaStream_t stream) override {
    cudaEvent_t e = nullptr;
    if (cudaEventCreate(&e) != cudaSuccess) throw std::runtime_error("fast::StageTimer: cudaEventCreate failed");
    marks.push_back({stage, e, std::chrono::steady_clock::now()});
    if (cudaEventRecord(e, stream) != cudaSuccess) throw std::runtime_error("fast::StageTimer: cudaEventRecord failed");
  }
  ~Impl() override {
    for (auto& m : marks) cudaEventDestroy(m.event);
  }
};

StageTimer::StageTimer() : impl_(std::make_unique<Impl>()) {
  impl_->mark("start", at::cuda::getCurrentCUDAStream());
  cuda::set_stage_recorder(impl_.get());
}

StageTimer::~StageTimer() { cuda::set_stage_recorder(nullptr); }

std::vector<StageTimer::Stage> StageTimer::stages() {
  std::vector<Stage> out;
  const auto& m = impl_->marks;
  for (size_t i = 1; i < m.size(); ++i) {
    float ms = 0;
    if (cudaEventSynchronize(m[i].event) != cudaSuccess || cudaEventElapsedTime(&ms, m[i - 1].event, m[i].event) != cudaSuccess) {
      throw std::runtime_error("fast::StageTimer: reading stage '" + m[i].stage + "' failed");
    }
    out.push_back({m[i].stage, ms, std::chrono::duration<double, std::milli>(m[i].host - m[i - 1].host).count()});
  }
  return out;
}

struct DeferredSum::Event {
  at::cuda::CUDAEvent done;
};

DeferredSum::DeferredSum(const at::Tensor& x) {
  const at::Tensor sum = x.numel() == 1 ? x.reshape({}) : x.sum();  // one element: no reduction launched
  if (!sum.is_cuda()) {
    host_ = sum;
    return;
  }
  host_ = at::empty({}, sum.options().device(at::kCPU).pinned_memory(true));
  host_.copy_(sum, /*non_blocking=*/true);
  event_ = std::make_unique<Event>();
  event_->done.record(at::cuda::getCurrentCUDAStream(sum.device().index()));
}

DeferredSum::~DeferredSum() = default;

int64_t DeferredSum::get() {
  if (event_) event_->done.synchronize();
  return host_.item<int64_t>();
}

std::string reason_not(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& opts) {
  if (opts.reference) return "reference forced";
  if (!q.is_cuda()) return "tensors are not on a CUDA device";
  const auto* props = at::cuda::getDeviceProperties(q.device().index());
  if (props->major != 9 || props->minor != 0) {  // the kernels are sm_90a code only
    return "the kernels are built for Hopper (sm_90a); this device is sm_" + std::to_string(props->major) +
           std::to_string(props->minor);
  }
  if (q.scalar_type() != at::kBFloat16 && q.scalar_type() != at::kHalf) return "dtype is not bfloat16 or float16";
  if (q.size(3) != 64 && q.size(3) != 128) return "head dim is not 64 or 128";
  if (at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad())) {
    return "a gradient is wanted (the kernels are forward only)";
  }
  if (opts.scale && !(*opts.scale > 0)) return "softmax scale is not positive";
  if (k.size(2) >= std::numeric_limits<int32_t>::max() / 2 || q.size(2) >= std::numeric_limits<int32_t>::max() / 2) {
    return "sequence longer than the kernels' 32-bit positions";
  }
  return {};
}

std::string reason_not_decode(const at::Tensor& q1, const at::Tensor& k, const at::Tensor& v, const Options& opts) {
  std::string why = reason_not(q1, k, v, opts);
  const int64_t groups = q1.size(1) / k.size(1);
  if (why.empty() && groups != 1 && groups != 2 && groups != 4 && groups != 8) {
    why = "query heads per kv head (" + std::to_string(groups) + ") is not 1, 2, 4 or 8";
  }
  return why;
}

namespace {

// The kernel's view of attention of q over k / v with visibility lo32 / hi32 (interval_ends()),
// writing out; ws: interval_workspace_bytes().
cuda::IntervalParams interval_params(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
                                     const at::Tensor& lo32, const at::Tensor& hi32, int64_t q_pos0, double scale,
                                     const at::Tensor& ws) {
  cuda::IntervalParams p;
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.out = out.data_ptr();
  p.q_st = strides_of(q);
  p.k_st = strides_of(k);
  p.v_st = strides_of(v);
  p.o_st = strides_of(out);
  p.lo = lo32.data_ptr<int32_t>();
  p.hi = hi32.data_ptr<int32_t>();
  p.iv_stride_b = lo32.stride(0);
  p.iv_stride_h = lo32.stride(1);
  if (hi32.stride(0) != p.iv_stride_b || hi32.stride(1) != p.iv_stride_h) {
    throw std::invalid_argument("fast::interval_attention: lo and hi must have the same broadcast shape");
  }
  p.batch = static_cast<int>(q.size(0));
  p.q_heads = static_cast<int>(q.size(1));
  p.kv_heads = static_cast<int>(k.size(1));
  p.q_len = static_cast<int>(q.size(2));
  p.kv_len = static_cast<int>(k.size(2));
  p.head_dim = static_cast<int>(q.size(3));
  p.q_pos0 = static_cast<int>(q_pos0);
  p.scale = static_cast<float>(scale);
  p.tile_summary = static_cast<int32_t*>(ws.data_ptr());
  return p;
}

at::Tensor interval_workspace(const at::Tensor& q, const at::Tensor& k, int64_t n_keys) {
  const int64_t bytes = static_cast<int64_t>(cuda::interval_workspace_bytes(
      static_cast<int>(k.size(0)), static_cast<int>(k.size(1)), static_cast<int>(n_keys)));
  return at::empty({bytes}, q.options().dtype(at::kByte));
}

}  // namespace

at::Tensor interval_attention(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in, const at::Tensor& lo,
                              const at::Tensor& hi, int64_t q_pos0, double scale, const at::Tensor& block_sel,
                              int64_t rows_per_cta, const at::Tensor& k2_in, const at::Tensor& v2_in) {
  const at::Tensor q = kernel_layout(q_in), k = kernel_layout(k_in), v = kernel_layout(v_in);
  const int64_t B = q.size(0), Hq = q.size(1), Lq = q.size(2), D = q.size(3), Hkv = k.size(1), N1 = k.size(2);
  const bool two = k2_in.defined() || v2_in.defined();
  at::Tensor k2, v2;
  if (two) {
    if (!k2_in.defined() || !v2_in.defined() || k2_in.dim() != 4 || k2_in.sizes() != v2_in.sizes() ||
        k2_in.size(0) != B || k2_in.size(1) != Hkv || k2_in.size(3) != D || k2_in.scalar_type() != k.scalar_type() ||
        v2_in.scalar_type() != k.scalar_type() || k2_in.device() != k.device() || v2_in.device() != k.device()) {
      throw std::invalid_argument("fast::interval_attention: k2 and v2 must both be given, [B, Hkv, N2, D] like k in "
                                  "every other dimension, dtype and device");
    }
    if (N1 % 128 != 0) {
      throw std::invalid_argument("fast::interval_attention: with k2, k's rows (" + std::to_string(N1) +
                                  ") must be a multiple of 128");
    }
    k2 = kernel_layout(k2_in);
    v2 = kernel_layout(v2_in);
  }
  const int64_t N = N1 + (two ? k2.size(2) : 0);
  const at::Tensor lo32 = interval_ends(lo, B, Hkv, N), hi32 = interval_ends(hi, B, Hkv, N);
  at::Tensor out = at::empty({B, Hq, Lq, D}, q.options());
  const at::Tensor ws = interval_workspace(q, k, N);
  cuda::IntervalParams p = interval_params(q, k, v, out, lo32, hi32, q_pos0, scale, ws);
  p.kv_len = static_cast<int>(N);
  if (two) {
    p.k2 = k2.data_ptr();
    p.v2 = v2.data_ptr();
    p.k2_st = strides_of(k2);
    p.v2_st = strides_of(v2);
    p.split = static_cast<int>(N1);
  }
  if (rows_per_cta != 0 && rows_per_cta != 64 && rows_per_cta != 128) {
    throw std::invalid_argument("fast::interval_attention: rows_per_cta " + std::to_string(rows_per_cta) +
                                " (accepted: 0 for the default, 64, 128)");
  }
  p.rows_per_cta = static_cast<int>(rows_per_cta);
  at::Tensor sel;
  if (block_sel.defined()) {
    static_assert(kSelectBlock == cuda::kSelectBlock);
    const int64_t nqb = (q_pos0 + Lq + kSelectBlock - 1) / kSelectBlock, nkb = (N + kSelectBlock - 1) / kSelectBlock;
    if (block_sel.dim() != 4 || block_sel.size(0) != B || block_sel.size(1) != Hq || block_sel.size(2) < nqb ||
        block_sel.size(3) < nkb) {
      throw std::invalid_argument("fast::interval_attention: block_sel must be [B, Hq, >= " + std::to_string(nqb) +
                                  ", >= " + std::to_string(nkb) + "], got " + std::to_string(block_sel.dim()) + " dims");
    }
    sel = block_sel.to(at::kByte);
    if (sel.stride(3) != 1) sel = sel.contiguous();
    p.block_sel = sel.data_ptr<uint8_t>();
    p.sel_stride_b = sel.stride(0);
    p.sel_stride_h = sel.stride(1);
    p.sel_stride_q = sel.stride(2);
  }
  cuda::interval_attention(p, kernel_dtype(q), at::cuda::getCurrentCUDAStream());
  return out;
}

std::string reason_not_topk(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& opts) {
  std::string why = reason_not(q, k, v, opts);
  if (why.empty() && q.size(3) != 128) why = "the top-k kernel is for head dim 128";
  if (why.empty() && q.size(2) < 64) why = "fewer than 64 queries (one row of scores is cheaper as a reference)";
  return why;
}

namespace {

// Runs topk's select (levels > 0: its first `levels` passes) or, with levels == 0, the whole
// top-k attention into out; *state: the rows' states [B, Hq, Lq, 4]. capacity < 0: the kernels'
// default number of candidates per row. False where the kernels cannot address the tensors.
bool run_topk(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in, int64_t top_k, double scale,
              int levels, int64_t capacity, at::Tensor* out, at::Tensor* state) {
  // TMA addresses every tensor through non-zero 16-byte strides: plain contiguous copies.
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const int64_t B = q.size(0), Hq = q.size(1), Lq = q.size(2), D = q.size(3), Hkv = k.size(1), N = k.size(2);
  const auto iopt = q.options().dtype(at::kInt);
  const at::Tensor lo32 = at::arange(N, iopt).expand({B, Hkv, N});
  const at::Tensor hi32 = at::full({N}, std::numeric_limits<int32_t>::max(), iopt).expand({B, Hkv, N});
  *out = at::empty({B, Hq, Lq, D}, q.options());
  const at::Tensor ws = interval_workspace(q, k, N);
  const cuda::IntervalParams p = interval_params(q, k, v, *out, lo32, hi32, N - Lq, scale, ws);
  const int cap = capacity < 0 ? cuda::topk_capacity(B * Hq * Lq) : static_cast<int>(capacity);
  const size_t words = cuda::topk_workspace_bytes(B, Hq, Lq, cap) / sizeof(uint32_t);
  const at::Tensor work = at::empty({static_cast<int64_t>(words)}, iopt);
  *state = work.narrow(0, 0, B * Hq * Lq * 4).view({B, Hq, Lq, 4});
  const int k_keep = static_cast<int>(std::min<int64_t>(top_k, std::numeric_limits<int32_t>::max()));
  auto* rows = reinterpret_cast<uint32_t*>(work.data_ptr<int32_t>());
  const auto stream = at::cuda::getCurrentCUDAStream();
  return levels > 0 ? cuda::topk_select(p, k_keep, levels, cap, rows, kernel_dtype(q), stream)
                    : cuda::topk_attention(p, k_keep, cap, rows, kernel_dtype(q), stream);
}

}  // namespace

at::Tensor topk_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t top_k, double scale) {
  at::Tensor out, state;
  return run_topk(q, k, v, top_k, scale, 0, -1, &out, &state) ? out : at::Tensor();
}

at::Tensor topk_select(const at::Tensor& q, const at::Tensor& k, int64_t top_k, int64_t levels, int64_t capacity) {
  if (levels < 1 || levels > 5) throw std::invalid_argument("fast::topk_select: levels must be 1 to 5");
  if (capacity > cuda::kTopkMaxCapacity || (capacity >= 0 && capacity % 32 != 0)) {
    throw std::invalid_argument("fast::topk_select: capacity must be -1 (the default) or a multiple of 32 up to " +
                                std::to_string(cuda::kTopkMaxCapacity) + ", not " + std::to_string(capacity));
  }
  at::Tensor out, state;
  if (!run_topk(q, k, k, top_k, 1.0, static_cast<int>(levels), capacity, &out, &state)) {
    throw std::invalid_argument("fast::topk_select: the kernel cannot run these tensors (" + reason_not_topk(q, k, k, {}) + ")");
  }
  return state;
}

at::Tensor decode_attention(const at::Tensor& q_in, const std::vector<std::pair<at::Tensor, at::Tensor>>& segments,
                            double scale, at::Tensor* lse, const DecodeStore* store) {
  const at::Tensor q = kernel_layout(q_in);
  const int64_t B = q.size(0), Hq = q.size(1), D = q.size(3);
  cuda::DecodeParams p;
  std::vector<at::Tensor> keep;  // copies made for the kernel layout live until the launch
  int64_t Hkv = 0;
  auto add_segment = [&](const at::Tensor& k_in, const at::Tensor& v_in) {
    if (k_in.size(2) == 0) return;
    if (p.segments == 4) {
      throw std::invalid_argument("fast::decode_attention: at most 4 non-empty key segments, the stored token included");
    }
    const at::Tensor k = kernel_layout(k_in), v = kernel_layout(v_in);
    keep.push_back(k);
    keep.push_back(v);
    Hkv = k.size(1);
    cuda::DecodeSegment& s = p.seg[p.segments++];
    s.k = k.data_ptr();
    s.v = v.data_ptr();
    s.k_st = strides_of(k);
    s.v_st = strides_of(v);
    s.len = static_cast<int>(k.size(2));
  };
  for (const auto& [k_in, v_in] : segments) add_segment(k_in, v_in);
  if (store) {
    const DecodeStore& st = *store;
    for (const at::Tensor* t : {&st.k1, &st.v1, &st.k_dst, &st.v_dst}) {
      if (t->dim() != 4 || t->size(0) != B || t->size(1) != st.k1.size(1) || (Hkv != 0 && t->size(1) != Hkv) ||
          t->size(2) != 1 || t->size(3) != D || t->scalar_type() != q.scalar_type() || t->device() != q.device()) {
        throw std::invalid_argument("fast::decode_attention: the stored token's k1, v1 and their destinations must be [" +
                                    std::to_string(B) + ", Hkv, 1, " + std::to_string(D) + "] in q's dtype and device");
      }
    }
    if (!kernel_addressable(st.k_dst) || !kernel_addressable(st.v_dst)) {
      throw std::invalid_argument("fast::decode_attention: the stored token's destinations need a unit last stride and "
                                  "16-byte aligned rows");
    }
    add_segment(st.k1, st.v1);
    const cuda::DecodeSegment& src = p.seg[p.segments - 1];
    p.store.k = src.k;
    p.store.v = src.v;
    p.store.k_st = src.k_st;
    p.store.v_st = src.v_st;
    p.store.k_dst = st.k_dst.data_ptr();
    p.store.v_dst = st.v_dst.data_ptr();
    p.store.k_dst_st = strides_of(st.k_dst);
    p.store.v_dst_st = strides_of(st.v_dst);
  }
  if (lse) *lse = at::full({B, Hq}, -INFINITY, q.options().dtype(at::kFloat));
  if (p.segments == 0) return at::zeros({B, Hq, 1, D}, q.options());
  return launch_decode(p, q, Hkv, scale, lse);
}

at::Tensor decode_attention_rows(const at::Tensor& q_in, const at::Tensor& k_store, const at::Tensor& v_store,
                                 const at::Tensor& rows, double scale) {
  if (!k_store.is_contiguous() || !v_store.is_contiguous()) {
    throw std::invalid_argument("fast::decode_attention_rows: k_store and v_store must be contiguous");
  }
  const at::Tensor q = kernel_layout(q_in);
  const int64_t B = q.size(0), Hq = q.size(1), D = q.size(3), N = rows.size(2);
  const at::Tensor r32 = rows.to(at::kInt).contiguous();
  if (N == 0) return at::zeros({B, Hq, 1, D}, q.options());
  cuda::DecodeParams p;
  p.segments = 1;
  cuda::DecodeSegment& s = p.seg[0];
  s.k = k_store.data_ptr();
  s.v = v_store.data_ptr();
  s.k_st = {k_store.stride(0), 0, k_store.stride(2)};
  s.v_st = {v_store.stride(0), 0, v_store.stride(2)};
  s.len = static_cast<int>(N);
  s.rows = r32.data_ptr<int32_t>();
  return launch_decode(p, q, /*kv_heads=*/Hq, scale, nullptr);  // every query head has its own rows
}

std::string reason_not_select(const at::Tensor& q, int64_t n_blocks) {
  const auto* props = at::cuda::getDeviceProperties(q.device().index());
  const size_t need = cuda::block_select_smem_bytes(static_cast<int>(q.size(3)), static_cast<int>(n_blocks));
  if (need > props->sharedMemPerBlockOptin) {
    return "the block selection's " + std::to_string(need) + " bytes of shared memory exceed the device's " +
           std::to_string(props->sharedMemPerBlockOptin);
  }
  return {};
}

at::Tensor topk_block_select(const at::Tensor& q_in, const at::Tensor& kmin_in, const at::Tensor& kmax_in,
                             int64_t top_k, at::Tensor* scores) {
  const at::Tensor q = kernel_layout(q_in), kmin = kernel_layout(kmin_in), kmax = kernel_layout(kmax_in);
  const int64_t B = q.size(0), Hq = q.size(1), L = q.size(2), nb = (L + kSelectBlock - 1) / kSelectBlock;
  if (kmin.size(2) < nb || kmax.size(2) < nb || kmin.strides() != kmax.strides() || kmin.scalar_type() != q.scalar_type()) {
    throw std::invalid_argument("fast::topk_block_select: kmin / kmax must be [B, Hkv, >= " + std::to_string(nb) +
                                ", D] in q's dtype with the same layout");
  }
  if (const std::string why = reason_not_select(q, nb); !why.empty()) throw std::invalid_argument("fast::topk_block_select: " + why);
  at::Tensor sel = at::empty({B, Hq, nb, nb}, q.options().dtype(at::kByte));
  cuda::BlockSelectParams p;
  p.q = q.data_ptr();
  p.q_st = strides_of(q);
  p.kmin = kmin.data_ptr();
  p.kmax = kmax.data_ptr();
  p.s_st = strides_of(kmin);
  p.sel = sel.data_ptr<uint8_t>();
  p.sel_stride_b = sel.stride(0);
  p.sel_stride_h = sel.stride(1);
  p.sel_stride_q = sel.stride(2);
  if (scores) {
    *scores = at::full({B, Hq, nb, nb}, -INFINITY, q.options().dtype(at::kFloat));
    p.scores = scores->data_ptr<float>();
  }
  p.batch = static_cast<int>(B);
  p.q_heads = static_cast<int>(Hq);
  p.kv_heads = static_cast<int>(kmin.size(1));
  p.q_len = static_cast<int>(L);
  p.n_blocks = static_cast<int>(nb);
  p.head_dim = static_cast<int>(q.size(3));
  p.top_k = static_cast<int>(std::min<int64_t>(top_k, nb));
  cuda::block_select(p, kernel_dtype(q), at::cuda::getCurrentCUDAStream());
  return sel;
}

at::Tensor topk_block_decode_rows(const at::Tensor& q_in, const at::Tensor& k1_in, const at::Tensor& kmin_store,
                                  const at::Tensor& kmax_store, int64_t pos, int64_t top_k, int64_t cap) {
  const at::Tensor q = kernel_layout(q_in), k1 = kernel_layout(k1_in);
  const int64_t B = q.size(0), Hq = q.size(1), qb = pos / kSelectBlock;
  if (!kmin_store.is_contiguous() || !kmax_store.is_contiguous() || kmin_store.size(2) <= qb ||
      kmax_store.sizes() != kmin_store.sizes()) {
    throw std::invalid_argument("fast::topk_block_decode_rows: the summaries must be contiguous [B, Hkv, > " +
                                std::to_string(qb) + ", D]");
  }
  cuda::BlockDecodeParams p;
  p.top_k = static_cast<int>(std::min<int64_t>(top_k, qb + 1));
  p.pos = static_cast<int>(pos);
  p.n_rows = cuda::block_decode_rows(p.pos, p.top_k);
  at::Tensor rows = at::empty({B, Hq, p.n_rows}, q.options().dtype(at::kInt));
  p.score_stride = std::max<int64_t>(qb - 1, 1);
  at::Tensor scores = at::empty({B, Hq, p.score_stride}, q.options().dtype(at::kFloat));
  p.q = q.data_ptr();
  p.q_st = strides_of(q);
  p.k1 = k1.data_ptr();
  p.k1_st = strides_of(k1);
  p.kmin = kmin_store.data_ptr();
  p.kmax = kmax_store.data_ptr();
  p.s_st = strides_of(kmin_store);
  p.scores = scores.data_ptr<float>();
  p.rows = rows.data_ptr<int32_t>();
  p.cap = cap;
  p.batch = static_cast<int>(B);
  p.q_heads = static_cast<int>(Hq);
  p.kv_heads = static_cast<int>(k1.size(1));
  p.head_dim = static_cast<int>(q.size(3));
  cuda::block_decode_select(p, kernel_dtype(q), at::cuda::getCurrentCUDAStream());
  return rows;
}

std::pair<at::Tensor, at::Tensor> dga_order(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& samples,
                                            double scale, int64_t focal) {
  const at::Tensor q = kernel_layout(q_in), k = kernel_layout(k_in);
  const int64_t B = q.size(0), Hkv = k.size(1), L = k.size(2);
  const at::Tensor s32 = samples.to(q.device(), at::kInt).contiguous();
  cuda::DgaSelectParams p;
  p.q = q.data_ptr();
  p.q_st = strides_of(q);
  p.k = k.data_ptr();
  p.k_st = strides_of(k);
  p.samples = s32.data_ptr<int32_t>();
  p.n_samples = static_cast<int>(s32.numel());
  p.batch = static_cast<int>(B);
  p.q_heads = static_cast<int>(q.size(1));
  p.kv_heads = static_cast<int>(Hkv);
  p.len = static_cast<int>(L);
  p.head_dim = static_cast<int>(q.size(3));
  p.focal = static_cast<int>(focal);
  p.scale = static_cast<float>(scale);
  at::Tensor importance = at::empty({B, Hkv, L}, q.options().dtype(at::kFloat));
  at::Tensor order = at::empty({B, Hkv, L}, q.options().dtype(at::kLong));
  at::Tensor ws = at::empty({static_cast<int64_t>(cuda::dga_select_workspace_bytes(p))}, q.options().dtype(at::kByte));
  p.importance = importance.data_ptr<float>();
  p.order = order.data_ptr<int64_t>();
  p.workspace = ws.data_ptr();
  cuda::dga_select(p, kernel_dtype(q), at::cuda::getCurrentCUDAStream());
  return {importance, order};
}

namespace {

// Launches the group aggregation of `positions` [B, Hkv, G, m] into rows row0 .. row0 + G - 1 of
// out_k / out_v [B, Hkv, rows, D]; `merged` (dga_layout()'s, positions the first G·m non-focal
// positions of its order): aggregate g goes instead to its row among the focal positions, merged
// in order of position.
void launch_dga_aggregate(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& positions,
                          double scale, at::Tensor& out_k, at::Tensor& out_v, int64_t row0, bool merged = false) {
  const int64_t B = k.size(0), Hkv = k.size(1), G = positions.size(2), D = k.size(3), m = positions.size(3);
  // Read in place when each (b, kv head)'s groups are contiguous (dga_layout()'s view of its order).
  const bool in_place = positions.scalar_type() == at::kLong && positions.stride(3) == 1 && positions.stride(2) == m &&
                        positions.stride(0) == Hkv * positions.stride(1);
  const at::Tensor pos = in_place ? positions : positions.to(at::kLong).contiguous();
  cuda::DgaAggregateParams p;
  p.q = q.data_ptr();
  p.q_st = strides_of(q);
  p.k = k.data_ptr();
  p.k_st = strides_of(k);
  p.v = v.data_ptr();
  p.v_st = strides_of(v);
  p.positions = pos.data_ptr<int64_t>();
  p.positions_stride = pos.stride(1);
  p.agg_k = out_k.data_ptr();
  p.agg_v = out_v.data_ptr();
  p.out_st = strides_of(out_k);
  p.out_row0 = static_cast<int>(row0);
  p.batch = static_cast<int>(B);
  p.q_heads = static_cast<int>(q.size(1));
  p.kv_heads = static_cast<int>(Hkv);
  p.head_dim = static_cast<int>(D);
  p.n_groups = static_cast<int>(G);
  p.m = static_cast<int>(m);
  p.scale = static_cast<float>(scale);
  p.merged = merged;
  cuda::dga_aggregate(p, kernel_dtype(q), at::cuda::getCurrentCUDAStream());
}

}  // namespace

std::pair<at::Tensor, at::Tensor> dga_aggregate(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                                                const at::Tensor& positions, double scale) {
  const at::Tensor q = kernel_layout(q_in), k = kernel_layout(k_in), v = kernel_layout(v_in);
  at::Tensor agg_k = at::empty({k.size(0), k.size(1), positions.size(2), k.size(3)}, k.options());
  at::Tensor agg_v = at::empty_like(agg_k);
  launch_dga_aggregate(q, k, v, positions, scale, agg_k, agg_v, 0);
  return {agg_k, agg_v};
}

DgaLayout dga_layout(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in, const at::Tensor& order,
                     int64_t focal, int64_t m, double scale) {
  const at::Tensor q = kernel_layout(q_in), k = kernel_layout(k_in), v = kernel_layout(v_in);
  const int64_t B = k.size(0), Hkv = k.size(1), L = k.size(2), D = k.size(3);
  const int64_t G = (L - focal) / m, S = (std::max<int64_t>(focal + G, 1) + 127) / 128 * 128;
  if (!order.is_contiguous() || order.scalar_type() != at::kLong || order.sizes() != at::IntArrayRef({B, Hkv, L})) {
    throw std::invalid_argument("fast::dga_layout: order must be contiguous int64 [B, Hkv, L]");
  }
  DgaLayout out;
  out.keys = at::empty({B, Hkv, S, D}, k.options());
  out.values = at::empty({B, Hkv, S, D}, v.options());
  out.lo = at::empty({B, Hkv, S + L}, k.options().dtype(at::kInt));
  out.hi = at::empty({B, Hkv, S + L}, k.options().dtype(at::kInt));
  out.seen_pairs = at::empty({1}, k.options().dtype(at::kLong));
  if (G > 0) {
    const at::Tensor grouped = order.narrow(-1, 0, G * m).view({B, Hkv, G, m});
    launch_dga_aggregate(q, k, v, grouped, scale, out.keys, out.values, 0, /*merged=*/true);
  }
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  cuda::mark_stage("aggregation", stream);
  if (cudaMemsetAsync(out.seen_pairs.data_ptr(), 0, sizeof(int64_t), stream) != cudaSuccess) {
    throw std::runtime_error("fast::dga_layout: clearing the pair count failed");
  }
  cuda::DgaLayoutParams p;
  p.k = k.data_ptr();
  p.k_st = strides_of(k);
  p.v = v.data_ptr();
  p.v_st = strides_of(v);
  p.order = order.data_ptr<int64_t>();
  p.keys = out.keys.data_ptr();
  p.values = out.values.data_ptr();
  p.out_st = strides_of(out.keys);
  p.split = static_cast<int>(S);
  p.lo = out.lo.data_ptr<int32_t>();
  p.hi = out.hi.data_ptr<int32_t>();
  p.seen_pairs = reinterpret_cast<unsigned long long*>(out.seen_pairs.data_ptr<int64_t>());
  p.batch = static_cast<int>(B);
  p.kv_heads = static_cast<int>(Hkv);
  p.len = static_cast<int>(L);
  p.head_dim = static_cast<int>(D);
  p.focal = static_cast<int>(focal);
  p.groups = static_cast<int>(G);
  p.m = static_cast<int>(m);
  cuda::dga_layout(p, kernel_dtype(k), stream);
  cuda::mark_stage("layout", stream);
  return out;
}

#endif

}  // namespace lcb::attn::fast
