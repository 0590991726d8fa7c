// A Llama-family decoder (RMSNorm, RoPE with linear scaling, GQA, SwiGLU, tied or untied head) in
// LibTorch, whose attention in every layer is an lcb implementation chosen by spec string. Weight
// names follow Hugging Face's LlamaForCausalLM, so model directories load and save as they are.
#pragma once

#include "attention_impls/attention.h"

#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <memory>
#include <string>
#include <vector>

namespace lcb::model {

struct LlamaConfig {
  std::string architecture = "LlamaForCausalLM";
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_layers = 0;
  int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0, max_position_embeddings = 4096;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0, rope_linear_factor = 1.0;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = 1;
  std::vector<int64_t> eos_token_ids = {2};
  std::string torch_dtype = "float32";

  // From a Hugging Face config.json; throws std::invalid_argument naming `source` and the key
  // (unknown architecture, unsupported rope_scaling, missing sizes, inconsistent heads).
  static LlamaConfig from_json(const nlohmann::json& j, const std::string& source);
  static LlamaConfig load(const std::string& dir);  // dir/config.json
  nlohmann::json to_json() const;
};

struct RMSNormImpl : torch::nn::Module {
  RMSNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

struct SelfAttentionImpl : torch::nn::Module {
  explicit SelfAttentionImpl(const LlamaConfig& c);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
};
TORCH_MODULE(SelfAttention);

struct MlpImpl : torch::nn::Module {
  explicit MlpImpl(const LlamaConfig& c);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

struct DecoderLayerImpl : torch::nn::Module {
  explicit DecoderLayerImpl(const LlamaConfig& c);
  SelfAttention self_attn{nullptr};
  Mlp mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

struct LlamaBodyImpl : torch::nn::Module {
  explicit LlamaBodyImpl(const LlamaConfig& c);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaBody);

// Per-sequence inference state: each layer's own attention cache and the next position.
struct DecodeState {
  std::vector<std::unique_ptr<attn::Cache>> caches;
  int64_t position = 0;
  attn::Cost prefill_cost;  // summed over layers
  int64_t cache_bytes() const;
};

class LlamaImpl : public torch::nn::Module {
 public:
  explicit LlamaImpl(const LlamaConfig& c);

  // Attention plan: one spec for every layer ("dga:m=16"), or ranges "0-1=dense;2-5=swa:window=64".
  void set_attention(const std::string& plan);
  const std::string& attention_plan() const { return plan_; }

  // Logits for every position of tokens [B, T] (training and full recomputation), causal.
  at::Tensor forward(const at::Tensor& tokens);

  // Prefill of one sequence (tokens [1, T]): builds `state` and returns the last position's
  // logits [1, V]. The MLP runs over `chunk` tokens at a time so long prompts fit.
  at::Tensor prefill(const at::Tensor& tokens, DecodeState& state, int64_t chunk = 4096);
  // One token [1, 1] at state.position; returns its logits [1, V].
  at::Tensor step(const at::Tensor& token, DecodeState& state);

  const LlamaConfig& config() const { return cfg_; }
  std::map<std::string, at::Tensor> state_tensors() const;  // HF names (tied head omitted)
  // Copies HF-named weights in; throws naming the tensor on a missing name or shape mismatch.
  void load_tensors(const std::map<std::string, at::Tensor>& weights, const std::string& source);

  LlamaBody model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tied to the embeddings

 private:
  at::Tensor logits(const at::Tensor& h);
  // Attention of layer `i` for hidden states x [B, T, H] at positions [pos0, pos0 + T).
  at::Tensor attention(int64_t i, const at::Tensor& x, int64_t pos0, DecodeState* state, bool decode);
  std::pair<at::Tensor, at::Tensor> rope(int64_t pos0, int64_t len, const at::Tensor& like) const;

  LlamaConfig cfg_;
  std::string plan_;
  std::vector<std::shared_ptr<attn::Attention>> attn_;
};
TORCH_MODULE(Llama);

// Loads config.json and weights from a Hugging Face model directory onto `device` in `dtype`.
Llama load_llama(const std::string& dir, at::Device device, at::ScalarType dtype);
// Writes config.json and model.safetensors (weights in `dtype`).
void save_llama(Llama& model, const std::string& dir, at::ScalarType dtype);

// Rotary embedding applied the Hugging Face way (rotate_half): x [B, H, T, D], cos/sin [T, D].
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace lcb::model
