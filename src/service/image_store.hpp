#pragma once
// Uploaded images on disk, content-addressed: <data dir>/images/<sha256>. Names never come from
// the network: only the SHA-256 the service computed itself names a file.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "protocol/error.hpp"

namespace otter::service {

class image_store {
 public:
  explicit image_store(std::filesystem::path data_dir);
  // Creates the folders; throws std::runtime_error naming the path when it cannot.
  void open();

  struct stored {
    std::string sha256;
    std::uint64_t size = 0;
    bool existed = false;
  };
  // Hashes the bytes, writes them to a temporary file, fsyncs and renames it into place.
  result<stored> put(std::string_view bytes);
  std::filesystem::path path_of(const std::string& sha256) const;
  bool contains(const std::string& sha256) const;
  // Deletes the image file (upload garbage collection). An already missing file is success.
  result<void> remove(const std::string& sha256);

 private:
  std::filesystem::path dir_;
};

}  // namespace otter::service
