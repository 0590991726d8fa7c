// The Llama runtime: forward against a reference written from the formulas, cached decoding
// against full recomputation, save -> load, and the loader's errors on bad files and configs.
#include "harness/generate.h"
#include "harness/llama.h"
#include "harness/safetensors.h"
#include "tests/temp_dir.h"
#include "tests/test_util.h"

#include <fstream>

namespace lcb::model {
namespace {

LlamaConfig tiny_config(bool tied) {
  LlamaConfig c;
  c.vocab_size = 61;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.rope_theta = 500.0;
  c.rope_linear_factor = 2.0;
  c.tie_word_embeddings = tied;
  return c;
}

Llama tiny_model(bool tied, at::ScalarType dtype = at::kDouble) {
  Llama m(tiny_config(tied));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(17);
  at::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.copy_(at::normal(0.0, 0.3, p.sizes(), gen, at::TensorOptions().dtype(at::kDouble)));
  m->to(dtype);
  return m;
}

at::Tensor random_tokens(int64_t T, int64_t vocab, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randint(vocab, {1, T}, gen, at::TensorOptions().dtype(at::kLong));
}

// The decoder from its formulas, independent of the module's code paths: RMSNorm, RoPE as a
// rotation of the pairs (d, d + D/2) by angle pos/factor * theta^(-2d/D), GQA causal softmax
// attention, SwiGLU, final norm, head.
at::Tensor naive_logits(const std::map<std::string, at::Tensor>& w, const LlamaConfig& c, const at::Tensor& tokens) {
  const int64_t T = tokens.size(1), D = c.head_dim, half = D / 2;
  auto W = [&](const std::string& n) { return w.at(n).to(at::kDouble); };
  auto rms = [&](const at::Tensor& x, const at::Tensor& g) { return g * x / at::sqrt(x.pow(2).mean(-1, true) + c.rms_norm_eps); };
  at::Tensor x = W("model.embed_tokens.weight").index_select(0, tokens[0]);  // [T, H]
  auto rot = [&](const at::Tensor& m /* [T, heads*D] */, int64_t heads) {
    at::Tensor out = m.view({T, heads, D}).clone();
    for (int64_t t = 0; t < T; ++t)
      for (int64_t d = 0; d < half; ++d) {
        const double ang = (t / c.rope_linear_factor) * std::pow(c.rope_theta, -2.0 * d / D);
        const at::Tensor a = m.view({T, heads, D}).select(0, t).select(1, d);
        const at::Tensor b = m.view({T, heads, D}).select(0, t).select(1, d + half);
        out.select(0, t).select(1, d).copy_(a * std::cos(ang) - b * std::sin(ang));
        out.select(0, t).select(1, d + half).copy_(b * std::cos(ang) + a * std::sin(ang));
      }
    return out;  // [T, heads, D]
  };
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const at::Tensor h = rms(x, W(p + "input_layernorm.weight"));
    const at::Tensor q = rot(at::matmul(h, W(p + "self_attn.q_proj.weight").t()), c.num_heads);
    const at::Tensor k = rot(at::matmul(h, W(p + "self_attn.k_proj.weight").t()), c.num_kv_heads);
    const at::Tensor v = at::matmul(h, W(p + "self_attn.v_proj.weight").t()).view({T, c.num_kv_heads, D});
    at::Tensor o = at::zeros({T, c.num_heads, D}, x.options());
    const int64_t g = c.num_heads / c.num_kv_heads;
    for (int64_t hd = 0; hd < c.num_heads; ++hd)
      for (int64_t i = 0; i < T; ++i) {
        const at::Tensor s = at::matmul(k.select(1, hd / g).narrow(0, 0, i + 1), q.select(1, hd)[i]) / std::sqrt(double(D));
        o.select(1, hd)[i].copy_(at::matmul(at::softmax(s, 0), v.select(1, hd / g).narrow(0, 0, i + 1)));
      }
    x = x + at::matmul(o.reshape({T, c.num_heads * D}), W(p + "self_attn.o_proj.weight").t());
    const at::Tensor h2 = rms(x, W(p + "post_attention_layernorm.weight"));
    const at::Tensor gate = at::matmul(h2, W(p + "mlp.gate_proj.weight").t());
    const at::Tensor up = at::matmul(h2, W(p + "mlp.up_proj.weight").t());
    x = x + at::matmul(gate * at::sigmoid(gate) * up, W(p + "mlp.down_proj.weight").t());
  }
  const at::Tensor head = c.tie_word_embeddings ? W("model.embed_tokens.weight") : W("lm_head.weight");
  return at::matmul(rms(x, W("model.norm.weight")), head.t()).unsqueeze(0);
}

TEST(Llama, ForwardMatchesTheFormulas) {
  for (const bool tied : {false, true}) {
    Llama m = tiny_model(tied);
    const at::Tensor tokens = random_tokens(13, 61, 3);
    const at::Tensor got = m->forward(tokens);
    const at::Tensor want = naive_logits(m->state_tensors(), m->config(), tokens);
    EXPECT_LT(test::rel_l2(got, want), 1e-12) << "tied=" << tied;
  }
}

TEST(Llama, CachedDecodingEqualsFullRecomputation) {
  const at::Tensor tokens = random_tokens(40, 61, 5);
  for (const std::string plan : {"dense", "swa:window=6", "topk:k=5", "0-0=dense;1-1=swa:window=9,sink=2", "dga:m=4,gamma=1"}) {
    Llama m = tiny_model(false);
    m->set_attention(plan);
    const at::Tensor full = m->forward(tokens);
    DecodeState st;
    const int64_t P = 17;
    at::Tensor last = m->prefill(tokens.narrow(1, 0, P), st, /*chunk=*/5);
    EXPECT_LT(test::rel_l2(last, full.select(1, P - 1)), 1e-12) << plan;
    for (int64_t t = P; t < 40; ++t) {
      last = m->step(tokens.narrow(1, t, 1), st);
      ASSERT_LT(test::rel_l2(last, full.select(1, t)), 1e-12) << plan << " position " << t;
    }
    EXPECT_EQ(st.position, 40);
    EXPECT_GT(st.cache_bytes(), 0);
  }
}

// Greedy generation stops at a stop token and follows the argmax of full recomputation; a batch of
// prompts of different lengths gives what each prompt gives alone.
TEST(Llama, GreedyGenerationAndBatches) {
  Llama m = tiny_model(false);
  const std::vector<int64_t> prompt = {5, 9, 2, 33, 7};
  const Generation g = greedy_generate(m, prompt, 6, {}, at::kCPU);
  ASSERT_EQ(g.ids.size(), 6u);
  EXPECT_EQ(g.stop, "max_new_tokens");
  std::vector<int64_t> seq = prompt;
  for (int64_t id : g.ids) {
    const at::Tensor logits = m->forward(at::tensor(seq, at::kLong).unsqueeze(0));
    EXPECT_EQ(logits[0][-1].argmax().item<int64_t>(), id);
    seq.push_back(id);
  }
  EXPECT_EQ(g.itl_ms.size(), 5u);
  const int64_t stop = g.ids[2];
  const auto first = std::find(g.ids.begin(), g.ids.end(), stop);  // generation ends at its first occurrence
  const Generation stopped = greedy_generate(m, prompt, 6, {stop}, at::kCPU);
  EXPECT_EQ(stopped.stop, "stop_token");
  EXPECT_EQ(stopped.ids, std::vector<int64_t>(g.ids.begin(), first));
  const auto batch = greedy_generate_batch(m, {prompt, {1, 2, 3}, {40, 41, 42, 43, 44, 45, 46, 47}}, 4, {}, at::kCPU);
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch[0].ids, std::vector<int64_t>(g.ids.begin(), g.ids.begin() + 4));
  EXPECT_EQ(batch[2].ids, greedy_generate(m, {40, 41, 42, 43, 44, 45, 46, 47}, 4, {}, at::kCPU).ids);
}

TEST(Llama, SaveLoadGivesIdenticalLogits) {
  test::TempDir dir;
  Llama m = tiny_model(true, at::kFloat);
  save_llama(m, dir.file("m"), at::kFloat);
  Llama back = load_llama(dir.file("m"), at::kCPU, at::kFloat);
  const at::Tensor tokens = random_tokens(9, 61, 7);
  EXPECT_TRUE(m->forward(tokens).equal(back->forward(tokens)));
  EXPECT_EQ(back->config().to_json(), [&] { auto c = m->config(); c.torch_dtype = "float32"; return c.to_json(); }());
  save_llama(m, dir.file("b"), at::kBFloat16);
  EXPECT_EQ(SafetensorsFile(dir.file("b") + "/model.safetensors").entries().at("model.norm.weight").dtype, "BF16");
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

TEST(Safetensors, BadFilesGiveOneClearError) {
  test::TempDir dir;
  const std::string good = dir.file("good.safetensors");
  save_safetensors(good, {{"a", at::ones({4, 3})}, {"b", at::zeros({5}, at::kBFloat16)}});
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto write = [&](const std::string& name, const std::string& content) {
    std::ofstream(dir.file(name), std::ios::binary) << content;
    return dir.file(name);
  };
  const std::string truncated = write("trunc.safetensors", bytes.substr(0, bytes.size() - 6));
  EXPECT_NE(error_of([&] { SafetensorsFile f(truncated); }).find("outside the data section"), std::string::npos);
  const std::string tiny = write("tiny.safetensors", bytes.substr(0, 5));
  EXPECT_NE(error_of([&] { SafetensorsFile f(tiny); }).find("truncated"), std::string::npos);
  std::string huge_header = bytes;
  huge_header[6] = '\x7f';
  EXPECT_NE(error_of([&] { SafetensorsFile f(write("h.safetensors", huge_header)); }).find("exceeds the file"), std::string::npos);
  std::string garbled = bytes;
  garbled[9] = '#';
  EXPECT_NE(error_of([&] { SafetensorsFile f(write("g.safetensors", garbled)); }).find("not valid JSON"), std::string::npos);
  // A header whose shape disagrees with its byte range.
  const std::string header = R"({"a":{"dtype":"F32","shape":[4,4],"data_offsets":[0,48]}})";
  std::string wrong(8, '\0');
  wrong[0] = static_cast<char>(header.size());
  const std::string msg = error_of([&] { SafetensorsFile f(write("w.safetensors", wrong + header + std::string(48, '\0'))); });
  EXPECT_NE(msg.find("tensor 'a': shape [4,4] of F32 needs 64 bytes, data_offsets give 48"), std::string::npos) << msg;
  EXPECT_NE(msg.find("w.safetensors"), std::string::npos) << msg;
  const SafetensorsFile ok(good);
  EXPECT_TRUE(ok.tensor("a").equal(at::ones({4, 3})));
}

TEST(Loader, ShapeMismatchMissingTensorAndUnknownArchitecture) {
  test::TempDir dir;
  Llama m = tiny_model(false, at::kFloat);
  save_llama(m, dir.file("m"), at::kFloat);
  auto weights = load_weights(dir.file("m"));
  weights["model.layers.1.mlp.up_proj.weight"] = at::zeros({47, 32});
  Llama fresh(tiny_config(false));
  std::string msg = error_of([&] { fresh->load_tensors(weights, "dir m"); });
  EXPECT_NE(msg.find("tensor 'model.layers.1.mlp.up_proj.weight' has shape [47, 32], the config gives [48, 32]"),
            std::string::npos) << msg;
  weights["model.layers.1.mlp.up_proj.weight"] = at::zeros({48, 32});
  weights.erase("lm_head.weight");
  msg = error_of([&] { fresh->load_tensors(weights, "dir m"); });
  EXPECT_NE(msg.find("tensor 'lm_head.weight' is missing"), std::string::npos) << msg;

  nlohmann::json cfg = tiny_config(false).to_json();
  cfg["architectures"] = {"GPT2LMHeadModel"};
  msg = error_of([&] { LlamaConfig::from_json(cfg, "config.json"); });
  EXPECT_NE(msg.find("key 'architectures': GPT2LMHeadModel is not supported"), std::string::npos) << msg;
  cfg = tiny_config(false).to_json();
  cfg["rope_scaling"] = {{"type", "yarn"}, {"factor", 4}};
  EXPECT_NE(error_of([&] { LlamaConfig::from_json(cfg, "c"); }).find("key 'rope_scaling': type 'yarn'"), std::string::npos);
  cfg = tiny_config(false).to_json();
  cfg.erase("hidden_size");
  EXPECT_NE(error_of([&] { LlamaConfig::from_json(cfg, "c"); }).find("key 'hidden_size' is missing"), std::string::npos);
  EXPECT_NE(error_of([&] { load_llama(dir.file("nowhere"), at::kCPU, at::kFloat); }).find("has no config.json"), std::string::npos);
}

TEST(Loader, ShardedCheckpoint) {
  test::TempDir dir;
  Llama m = tiny_model(true, at::kFloat);
  const auto all = m->state_tensors();
  std::map<std::string, at::Tensor> a, b;
  nlohmann::json map;
  for (const auto& [name, t] : all) {
    (name < "model.layers.1" ? a : b)[name] = t;
    map[name] = name < "model.layers.1" ? "part-1.safetensors" : "part-2.safetensors";
  }
  mkdir(dir.file("s").c_str(), 0755);
  save_safetensors(dir.file("s/part-1.safetensors"), a);
  save_safetensors(dir.file("s/part-2.safetensors"), b);
  std::ofstream(dir.file("s/model.safetensors.index.json")) << nlohmann::json{{"weight_map", map}}.dump();
  std::ofstream(dir.file("s/config.json")) << m->config().to_json().dump();
  Llama back = load_llama(dir.file("s"), at::kCPU, at::kFloat);
  const at::Tensor tokens = random_tokens(6, 61, 1);
  EXPECT_TRUE(m->forward(tokens).equal(back->forward(tokens)));
}

}  // namespace
}  // namespace lcb::model
