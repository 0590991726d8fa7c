// Tokenizers: a sentencepiece model (`tokenizer.model` in a model directory), and training one
// with sentencepiece's own trainer on lcb's synthetic text (`lcb train-tokenizer`).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace lcb::datasets {

class Tokenizer {
 public:
  // Loads dir/tokenizer.model; throws std::invalid_argument naming the directory when missing.
  static Tokenizer load(const std::string& dir);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  std::vector<int64_t> encode(const std::string& text) const;  // no BOS/EOS
  std::string decode(const std::vector<int64_t>& ids) const;
  int64_t vocab_size() const;
  int64_t bos_id() const;
  int64_t eos_id() const;
  int64_t pad_id() const;  // falls back to eos when the model has none
  const std::string& hash() const { return hash_; }  // of the model file, for cell keys

 private:
  Tokenizer() = default;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string hash_;
};

// Trains a BPE model on the lines of `corpus_path` and writes out_dir/tokenizer.model (pad 0,
// bos 1, eos 2, unk 3; digits split so numbers are copied digit by digit).
void train_tokenizer(const std::string& corpus_path, int64_t vocab_size, const std::string& out_dir);

}  // namespace lcb::datasets
