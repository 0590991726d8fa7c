// Safetensors files (the Hugging Face weight format): an 8-byte little-endian header length, a
// JSON header {name: {dtype, shape, data_offsets}}, then the raw data. Every offset, size and
// shape is validated against the file before any tensor is read. Also sharded checkpoints
// (model.safetensors.index.json) and saving in the same format.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lcb::model {

struct TensorEntry {
  std::string dtype;  // "F32", "BF16" or "F16"
  std::vector<int64_t> shape;
  int64_t begin = 0, end = 0;  // byte offsets into the data section
};

class SafetensorsFile {
 public:
  // Opens and validates; throws std::runtime_error naming the file and what is wrong.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, TensorEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // A CPU tensor with the stored dtype and shape (a copy; the file can be closed afterwards).
  at::Tensor tensor(const std::string& name) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::map<std::string, TensorEntry> entries_;
  std::map<std::string, std::string> metadata_;
  const uint8_t* data_ = nullptr;  // start of the data section in the mapping
  void* map_ = nullptr;
  size_t map_size_ = 0;
};

// All weights of a model directory: model.safetensors, or the shards listed by
// model.safetensors.index.json. Throws naming the file on any problem.
std::map<std::string, at::Tensor> load_weights(const std::string& dir);

// Writes tensors (any device; F32, BF16 or F16) and optional string metadata.
void save_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace lcb::model
