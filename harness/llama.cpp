#include "harness/llama.h"

#include "attention_impls/registry.h"
#include "harness/safetensors.h"

#include <ATen/core/grad_mode.h>
#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace lcb::model {

// --- config ------------------------------------------------------------------------------------

LlamaConfig LlamaConfig::from_json(const nlohmann::json& j, const std::string& source) {
  auto fail = [&](const std::string& what) -> std::invalid_argument { return std::invalid_argument(source + ": " + what); };
  if (!j.is_object()) throw fail("not a JSON object");
  LlamaConfig c;
  if (!j.contains("architectures") || !j["architectures"].is_array() || j["architectures"].size() != 1 ||
      !j["architectures"][0].is_string()) {
    throw fail("key 'architectures' must list one architecture (LlamaForCausalLM or MistralForCausalLM)");
  }
  c.architecture = j["architectures"][0].get<std::string>();
  if (c.architecture != "LlamaForCausalLM" && c.architecture != "MistralForCausalLM") {
    throw fail("key 'architectures': " + c.architecture + " is not supported (LlamaForCausalLM, MistralForCausalLM)");
  }
  auto integer = [&](const char* key, bool required, int64_t def) -> int64_t {
    if (!j.contains(key) || j[key].is_null()) {
      if (required) throw fail(std::string("key '") + key + "' is missing");
      return def;
    }
    if (!j[key].is_number_integer() || j[key].get<int64_t>() <= 0) throw fail(std::string("key '") + key + "' must be a positive integer");
    return j[key].get<int64_t>();
  };
  c.vocab_size = integer("vocab_size", true, 0);
  c.hidden_size = integer("hidden_size", true, 0);
  c.intermediate_size = integer("intermediate_size", true, 0);
  c.num_layers = integer("num_hidden_layers", true, 0);
  c.num_heads = integer("num_attention_heads", true, 0);
  c.num_kv_heads = integer("num_key_value_heads", false, c.num_heads);
  c.head_dim = integer("head_dim", false, c.hidden_size / c.num_heads);
  c.max_position_embeddings = integer("max_position_embeddings", false, 4096);
  if (c.num_heads % c.num_kv_heads != 0) {
    throw fail("key 'num_attention_heads' (" + std::to_string(c.num_heads) + ") must be a multiple of 'num_key_value_heads' (" +
               std::to_string(c.num_kv_heads) + ")");
  }
  if (c.head_dim % 2 != 0) throw fail("head dimension " + std::to_string(c.head_dim) + " must be even for RoPE");
  if (j.contains("rms_norm_eps")) c.rms_norm_eps = j["rms_norm_eps"].get<double>();
  if (j.contains("rope_theta")) c.rope_theta = j["rope_theta"].get<double>();
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const auto& rs = j["rope_scaling"];
    const std::string type = rs.value("rope_type", rs.value("type", std::string()));
    if (type != "linear") throw fail("key 'rope_scaling': type '" + type + "' is not supported (linear)");
    c.rope_linear_factor = rs.at("factor").get<double>();
  }
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (j.contains(key) && j[key].is_boolean() && j[key].get<bool>()) throw fail(std::string("key '") + key + "' = true is not supported");
  }
  if (j.contains("hidden_act") && j["hidden_act"] != "silu") throw fail("key 'hidden_act' must be silu (SwiGLU)");
  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer()) c.bos_token_id = j["bos_token_id"].get<int64_t>();
  if (j.contains("eos_token_id")) {
    const auto& e = j["eos_token_id"];
    if (e.is_number_integer()) c.eos_token_ids = {e.get<int64_t>()};
    if (e.is_array()) c.eos_token_ids = e.get<std::vector<int64_t>>();
  }
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string()) c.torch_dtype = j["torch_dtype"].get<std::string>();
  return c;
}

LlamaConfig LlamaConfig::load(const std::string& dir) {
  const std::string path = dir + "/config.json";
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("model directory " + dir + " has no config.json");
  try {
    return from_json(nlohmann::json::parse(in), path);
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }
}

nlohmann::json LlamaConfig::to_json() const {
  nlohmann::json j = {{"architectures", {architecture}},
                      {"model_type", architecture == "MistralForCausalLM" ? "mistral" : "llama"},
                      {"vocab_size", vocab_size},
                      {"hidden_size", hidden_size},
                      {"intermediate_size", intermediate_size},
                      {"num_hidden_layers", num_layers},
                      {"num_attention_heads", num_heads},
                      {"num_key_value_heads", num_kv_heads},
                      {"head_dim", head_dim},
                      {"max_position_embeddings", max_position_embeddings},
                      {"rms_norm_eps", rms_norm_eps},
                      {"rope_theta", rope_theta},
                      {"hidden_act", "silu"},
                      {"tie_word_embeddings", tie_word_embeddings},
                      {"bos_token_id", bos_token_id},
                      {"eos_token_id", eos_token_ids.size() == 1 ? nlohmann::json(eos_token_ids[0]) : nlohmann::json(eos_token_ids)},
                      {"torch_dtype", torch_dtype}};
  if (rope_linear_factor != 1.0) j["rope_scaling"] = {{"type", "linear"}, {"factor", rope_linear_factor}};
  return j;
}

// --- modules -----------------------------------------------------------------------------------

RMSNormImpl::RMSNormImpl(int64_t dim, double e) : eps(e) {
  weight = register_parameter("weight", at::ones({dim}));
}

// Norms and rotations run in at least float32 (as Hugging Face does), float64 stays float64.
static at::ScalarType wide(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  const at::Tensor xf = x.to(wide(x.scalar_type()));
  const at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps);
  return weight * normed.to(x.scalar_type());
}

static torch::nn::Linear linear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}

SelfAttentionImpl::SelfAttentionImpl(const LlamaConfig& c) {
  q_proj = register_module("q_proj", linear(c.hidden_size, c.num_heads * c.head_dim));
  k_proj = register_module("k_proj", linear(c.hidden_size, c.num_kv_heads * c.head_dim));
  v_proj = register_module("v_proj", linear(c.hidden_size, c.num_kv_heads * c.head_dim));
  o_proj = register_module("o_proj", linear(c.num_heads * c.head_dim, c.hidden_size));
}

MlpImpl::MlpImpl(const LlamaConfig& c) {
  gate_proj = register_module("gate_proj", linear(c.hidden_size, c.intermediate_size));
  up_proj = register_module("up_proj", linear(c.hidden_size, c.intermediate_size));
  down_proj = register_module("down_proj", linear(c.intermediate_size, c.hidden_size));
}

at::Tensor MlpImpl::forward(const at::Tensor& x) {
  return down_proj(at::silu(gate_proj(x)) * up_proj(x));
}

DecoderLayerImpl::DecoderLayerImpl(const LlamaConfig& c) {
  self_attn = register_module("self_attn", SelfAttention(c));
  mlp = register_module("mlp", Mlp(c));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

LlamaBodyImpl::LlamaBodyImpl(const LlamaConfig& c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_layers; ++i) layers->push_back(DecoderLayer(c));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

int64_t DecodeState::cache_bytes() const {
  int64_t n = 0;
  for (const auto& c : caches) n += c ? c->bytes() : 0;
  return n;
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const at::Tensor xf = x.to(wide(x.scalar_type()));
  const at::Tensor rotated = at::cat({-xf.narrow(-1, half, half), xf.narrow(-1, 0, half)}, -1);
  return (xf * cos + rotated * sin).to(x.scalar_type());
}

// --- the model ---------------------------------------------------------------------------------

LlamaImpl::LlamaImpl(const LlamaConfig& c) : cfg_(c) {
  model = register_module("model", LlamaBody(c));
  if (!c.tie_word_embeddings) lm_head = register_module("lm_head", linear(c.hidden_size, c.vocab_size));
  set_attention("dense");
}

void LlamaImpl::set_attention(const std::string& plan) {
  std::vector<std::shared_ptr<attn::Attention>> per_layer(cfg_.num_layers);
  if (plan.find(';') == std::string::npos && !(plan.size() > 0 && std::isdigit(static_cast<unsigned char>(plan[0])))) {
    std::shared_ptr<attn::Attention> a = attn::make_attention(plan);
    for (auto& p : per_layer) p = a;
  } else {
    std::stringstream ss(plan);
    std::string part;
    while (std::getline(ss, part, ';')) {
      const auto eq = part.find('=');
      const auto dash = part.find('-');
      if (eq == std::string::npos || dash == std::string::npos || dash > eq) {
        throw std::invalid_argument("attention plan part '" + part + "': expected FIRST-LAST=SPEC, e.g. 0-3=dense");
      }
      int64_t first = 0, last = 0;
      try {
        first = std::stoll(part.substr(0, dash));
        last = std::stoll(part.substr(dash + 1, eq - dash - 1));
      } catch (const std::exception&) {
        throw std::invalid_argument("attention plan part '" + part + "': layer range is not FIRST-LAST");
      }
      if (first < 0 || last < first || last >= cfg_.num_layers) {
        throw std::invalid_argument("attention plan part '" + part + "': layers must be within 0-" +
                                    std::to_string(cfg_.num_layers - 1));
      }
      std::shared_ptr<attn::Attention> a = attn::make_attention(part.substr(eq + 1));
      for (int64_t i = first; i <= last; ++i) per_layer[i] = a;
    }
    for (int64_t i = 0; i < cfg_.num_layers; ++i) {
      if (!per_layer[i]) throw std::invalid_argument("attention plan '" + plan + "' leaves layer " + std::to_string(i) + " without a spec");
    }
  }
  attn_ = per_layer;
  plan_ = plan;
}

std::pair<at::Tensor, at::Tensor> LlamaImpl::rope(int64_t pos0, int64_t len, const at::Tensor& like) const {
  const auto f = at::TensorOptions().dtype(wide(like.scalar_type())).device(like.device());
  const int64_t D = cfg_.head_dim;
  const at::Tensor inv_freq = 1.0 / at::pow(cfg_.rope_theta, at::arange(0, D, 2, f) / static_cast<double>(D));
  const at::Tensor pos = at::arange(pos0, pos0 + len, f) / cfg_.rope_linear_factor;
  const at::Tensor freqs = pos.unsqueeze(1) * inv_freq.unsqueeze(0);  // [T, D/2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos(), emb.sin()};
}

at::Tensor LlamaImpl::attention(int64_t i, const at::Tensor& x, int64_t pos0, DecodeState* state, bool decode) {
  auto& layer = model->layers[i]->as<DecoderLayerImpl>()->self_attn;
  const int64_t B = x.size(0), T = x.size(1), D = cfg_.head_dim;
  auto heads = [&](const at::Tensor& t, int64_t h) { return t.view({B, T, h, D}).transpose(1, 2); };
  const auto [cos, sin] = rope(pos0, T, x);
  const at::Tensor q = apply_rope(heads(layer->q_proj(x), cfg_.num_heads), cos, sin);
  const at::Tensor k = apply_rope(heads(layer->k_proj(x), cfg_.num_kv_heads), cos, sin);
  const at::Tensor v = heads(layer->v_proj(x), cfg_.num_kv_heads);
  at::Tensor o;
  if (decode) {
    o = attn_[i]->decode(q, k, v, *state->caches[i], {});
  } else {
    attn::Output out = attn_[i]->forward(q, k, v, {}, state ? &state->caches[i] : nullptr);
    if (state) {
      attn::Cost& c = state->prefill_cost;
      c.kept_pairs += out.cost.kept_pairs;
      c.causal_pairs += out.cost.causal_pairs;
      c.attention_flops += out.cost.attention_flops;
      c.selection_flops += out.cost.selection_flops;
      c.bytes += out.cost.bytes;
    }
    o = out.out;
  }
  return layer->o_proj(o.transpose(1, 2).reshape({B, T, cfg_.num_heads * D}));
}

at::Tensor LlamaImpl::logits(const at::Tensor& h) {
  const at::Tensor n = model->norm(h);
  return lm_head ? lm_head(n) : at::matmul(n, model->embed_tokens->weight.t());
}

at::Tensor LlamaImpl::forward(const at::Tensor& tokens) {
  at::Tensor h = model->embed_tokens(tokens);
  for (int64_t i = 0; i < cfg_.num_layers; ++i) {
    auto layer = model->layers[i]->as<DecoderLayerImpl>();
    h = h + attention(i, layer->input_layernorm(h), 0, nullptr, false);
    h = h + layer->mlp(layer->post_attention_layernorm(h));
  }
  return logits(h);
}

at::Tensor LlamaImpl::prefill(const at::Tensor& tokens, DecodeState& state, int64_t chunk) {
  at::NoGradGuard no_grad;
  state.caches.clear();
  state.caches.resize(cfg_.num_layers);
  state.prefill_cost = attn::Cost{};
  at::Tensor h = model->embed_tokens(tokens);
  const int64_t T = tokens.size(1);
  for (int64_t i = 0; i < cfg_.num_layers; ++i) {
    auto layer = model->layers[i]->as<DecoderLayerImpl>();
    h = h + attention(i, layer->input_layernorm(h), 0, &state, false);
    std::vector<at::Tensor> parts;
    for (int64_t t0 = 0; t0 < T; t0 += chunk) {
      const at::Tensor x = h.narrow(1, t0, std::min(chunk, T - t0));
      parts.push_back(x + layer->mlp(layer->post_attention_layernorm(x)));
    }
    h = at::cat(parts, 1);
  }
  state.position = T;
  return logits(h.narrow(1, T - 1, 1)).squeeze(1);
}

at::Tensor LlamaImpl::step(const at::Tensor& token, DecodeState& state) {
  at::NoGradGuard no_grad;
  at::Tensor h = model->embed_tokens(token);
  for (int64_t i = 0; i < cfg_.num_layers; ++i) {
    auto layer = model->layers[i]->as<DecoderLayerImpl>();
    h = h + attention(i, layer->input_layernorm(h), state.position, &state, true);
    h = h + layer->mlp(layer->post_attention_layernorm(h));
  }
  state.position += 1;
  return logits(h).squeeze(1);
}

std::map<std::string, at::Tensor> LlamaImpl::state_tensors() const {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : named_parameters(true)) out[p.key()] = p.value().detach();
  return out;
}

void LlamaImpl::load_tensors(const std::map<std::string, at::Tensor>& weights, const std::string& source) {
  at::NoGradGuard no_grad;
  for (auto& p : named_parameters(true)) {
    const auto it = weights.find(p.key());
    if (it == weights.end()) throw std::runtime_error(source + ": tensor '" + p.key() + "' is missing");
    if (it->second.sizes() != p.value().sizes()) {
      std::ostringstream s;
      s << source << ": tensor '" << p.key() << "' has shape " << it->second.sizes() << ", the config gives "
        << p.value().sizes();
      throw std::runtime_error(s.str());
    }
    p.value().copy_(it->second);
  }
}

Llama load_llama(const std::string& dir, at::Device device, at::ScalarType dtype) {
  const LlamaConfig cfg = LlamaConfig::load(dir);
  Llama m(cfg);
  m->load_tensors(load_weights(dir), dir);
  m->to(device, dtype);
  m->eval();
  return m;
}

void save_llama(Llama& model, const std::string& dir, at::ScalarType dtype) {
  mkdir(dir.c_str(), 0755);
  LlamaConfig cfg = model->config();
  cfg.torch_dtype = dtype == at::kBFloat16 ? "bfloat16" : dtype == at::kHalf ? "float16" : "float32";
  std::ofstream(dir + "/config.json") << cfg.to_json().dump(2) << "\n";
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [name, t] : model->state_tensors()) tensors[name] = t.to(at::kCPU, dtype);
  save_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
}

}  // namespace lcb::model
