#include "datasets/tokenizer.h"

#include "attention_impls/fnv_hash.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace lcb::datasets {

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::load(const std::string& dir) {
  const std::string path = dir + "/tokenizer.model";
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::invalid_argument("model directory " + dir + " has no tokenizer.model (a sentencepiece model is required)");
  }
  std::stringstream bytes;
  bytes << in.rdbuf();
  Tokenizer t;
  t.sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = t.sp_->LoadFromSerializedProto(bytes.str());
  if (!status.ok()) throw std::invalid_argument(path + ": not a sentencepiece model (" + status.ToString() + ")");
  t.hash_ = fnv1a_hex(bytes.str());
  return t;
}

std::vector<int64_t> Tokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  sp_->Encode(text, &ids);
  return {ids.begin(), ids.end()};
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::vector<int> v;
  for (int64_t id : ids) {
    if (id >= 0 && id < vocab_size() && id != bos_id() && id != eos_id() && id != pad_id()) v.push_back(static_cast<int>(id));
  }
  std::string text;
  sp_->Decode(v, &text);
  return text;
}

int64_t Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int64_t Tokenizer::bos_id() const { return sp_->bos_id(); }
int64_t Tokenizer::eos_id() const { return sp_->eos_id(); }
int64_t Tokenizer::pad_id() const { return sp_->pad_id() >= 0 ? sp_->pad_id() : sp_->eos_id(); }

void train_tokenizer(const std::string& corpus_path, int64_t vocab_size, const std::string& out_dir) {
  mkdir(out_dir.c_str(), 0755);
  const std::string prefix = out_dir + "/tokenizer";
  const std::string args = "--input=" + corpus_path + " --model_prefix=" + prefix + " --vocab_size=" +
                           std::to_string(vocab_size) +
                           " --model_type=bpe --character_coverage=1.0 --split_digits=true --pad_id=0 --bos_id=1"
                           " --eos_id=2 --unk_id=3 --max_sentence_length=100000 --num_threads=4 --minloglevel=2";
  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  if (!status.ok()) throw std::runtime_error("sentencepiece training failed: " + status.ToString());
  std::remove((prefix + ".vocab").c_str());
}

}  // namespace lcb::datasets
