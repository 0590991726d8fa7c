#include "harness/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <stdexcept>

namespace lcb::model {
namespace {

at::ScalarType scalar_type(const std::string& dtype) {
  if (dtype == "F32") return at::kFloat;
  if (dtype == "BF16") return at::kBFloat16;
  if (dtype == "F16") return at::kHalf;
  throw std::logic_error("unchecked dtype " + dtype);
}

std::string dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "F32";
    case at::kBFloat16: return "BF16";
    case at::kHalf: return "F16";
    default: throw std::invalid_argument(std::string("cannot save dtype ") + c10::toString(t) + " (F32, BF16, F16)");
  }
}

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw std::runtime_error("safetensors file " + path + ": " + what);
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) bad(path, "cannot open (" + std::string(std::strerror(errno)) + ")");
  struct stat st {};
  fstat(fd, &st);
  map_size_ = static_cast<size_t>(st.st_size);
  if (map_size_ < 8) {
    close(fd);
    bad(path, "truncated: " + std::to_string(map_size_) + " bytes, less than the 8-byte header length");
  }
  map_ = mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    bad(path, "cannot map the file");
  }
  const auto* bytes = static_cast<const uint8_t*>(map_);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | bytes[i];
  if (header_len > map_size_ - 8) {
    bad(path, "header length " + std::to_string(header_len) + " exceeds the file (" + std::to_string(map_size_) +
                  " bytes): truncated or not a safetensors file");
  }
  data_ = bytes + 8 + header_len;
  const int64_t data_size = static_cast<int64_t>(map_size_ - 8 - header_len);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes + 8, bytes + 8 + header_len);
  } catch (const nlohmann::json::parse_error& e) {
    bad(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) bad(path, "header is not a JSON object");
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) bad(path, "__metadata__ is not an object");
      for (const auto& [k, x] : v.items()) {
        if (!x.is_string()) bad(path, "__metadata__." + k + " is not a string");
        metadata_[k] = x.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets")) {
      bad(path, where + "needs dtype, shape and data_offsets");
    }
    TensorEntry e;
    if (!v["dtype"].is_string()) bad(path, where + "dtype is not a string");
    e.dtype = v["dtype"].get<std::string>();
    if (e.dtype != "F32" && e.dtype != "BF16" && e.dtype != "F16") {
      bad(path, where + "dtype " + e.dtype + " not supported (F32, BF16, F16)");
    }
    int64_t numel = 1;
    if (!v["shape"].is_array()) bad(path, where + "shape is not a list");
    for (const auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) bad(path, where + "shape " + v["shape"].dump() + " is not a list of sizes");
      e.shape.push_back(d.get<int64_t>());
      numel *= e.shape.back();
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_integer() || !off[1].is_number_integer()) {
      bad(path, where + "data_offsets must be [begin, end]");
    }
    e.begin = off[0].get<int64_t>();
    e.end = off[1].get<int64_t>();
    const int64_t item = e.dtype == "F32" ? 4 : 2;
    if (e.begin < 0 || e.end < e.begin || e.end > data_size) {
      bad(path, where + "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                    "] outside the data section of " + std::to_string(data_size) + " bytes (truncated file?)");
    }
    if (e.end - e.begin != numel * item) {
      bad(path, where + "shape " + v["shape"].dump() + " of " + e.dtype + " needs " + std::to_string(numel * item) +
                    " bytes, data_offsets give " + std::to_string(e.end - e.begin));
    }
    ranges.emplace_back(e.begin, e.end);
    entries_[name] = e;
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) bad(path, "tensor data ranges overlap");
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) munmap(map_, map_size_);
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) bad(path_, "no tensor named '" + name + "'");
  const TensorEntry& e = it->second;
  at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(scalar_type(e.dtype)));
  std::memcpy(t.data_ptr(), data_ + e.begin, static_cast<size_t>(e.end - e.begin));
  return t;
}

std::map<std::string, at::Tensor> load_weights(const std::string& dir) {
  std::map<std::string, at::Tensor> out;
  auto load_file = [&](const std::string& path) {
    const SafetensorsFile f(path);
    for (const auto& [name, e] : f.entries()) out[name] = f.tensor(name);
  };
  const std::string index = dir + "/model.safetensors.index.json";
  std::ifstream in(index);
  if (!in) {
    load_file(dir + "/model.safetensors");
    return out;
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(index + ": not valid JSON: " + e.what());
  }
  if (!j.contains("weight_map") || !j["weight_map"].is_object()) throw std::runtime_error(index + ": no 'weight_map' object");
  std::set<std::string> shards;
  for (const auto& [name, file] : j["weight_map"].items()) {
    if (!file.is_string()) throw std::runtime_error(index + ": weight_map['" + name + "'] is not a file name");
    shards.insert(file.get<std::string>());
  }
  for (const auto& s : shards) load_file(dir + "/" + s);
  for (const auto& [name, file] : j["weight_map"].items()) {
    if (!out.count(name)) throw std::runtime_error(index + ": '" + name + "' is not in " + file.get<std::string>());
  }
  return out;
}

void save_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  int64_t offset = 0;
  std::vector<at::Tensor> ordered;
  for (const auto& [name, t0] : tensors) {
    const at::Tensor t = t0.detach().to(at::kCPU).contiguous();
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    header[name] = {{"dtype", dtype_code(t.scalar_type())}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    ordered.push_back(t);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keep the data section 8-byte aligned
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("cannot write " + path);
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(n >> (8 * i) & 0xff));
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto& t : ordered) {
    out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
  }
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace lcb::model
