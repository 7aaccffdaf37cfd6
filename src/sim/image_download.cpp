#include "sim/image_download.hpp"

#include <algorithm>
#include <stdexcept>

namespace otter::sim {

image_download::image_download(std::uint64_t size, std::uint32_t chunk_len)
    : size_(size), chunk_len_(chunk_len) {
  if (size == 0 || chunk_len == 0)
    throw std::invalid_argument("image_download: size and chunk length must be positive");
}

std::uint64_t image_download::chunks_left() const noexcept {
  return (size_ - contiguous_ + chunk_len_ - 1) / chunk_len_;
}

std::uint64_t image_download::gap_chunks() const noexcept {
  const std::uint64_t next_held = ahead_.empty() ? size_ : ahead_.begin()->first;
  return (next_held - contiguous_ + chunk_len_ - 1) / chunk_len_;
}

image_download::outcome image_download::add(std::uint64_t offset, std::string_view bytes) {
  if (offset >= size_ || offset % chunk_len_ != 0) return outcome::bad_offset;
  const std::uint64_t expected = std::min<std::uint64_t>(chunk_len_, size_ - offset);
  if (bytes.size() < expected) return outcome::bad_length;
  if (bytes.size() > expected) {
    // Only the image's last chunk may run past size (we stop reading there); a middle chunk
    // of the wrong length means a request and an answer disagree: not ours to guess.
    if (offset + chunk_len_ < size_) return outcome::bad_length;
    bytes = bytes.substr(0, expected);
  }
  if (offset < contiguous_ || ahead_.contains(offset)) return outcome::duplicate;

  if (offset != contiguous_) {
    ahead_.emplace(offset, std::string(bytes));
    return outcome::stored;
  }
  hash_.update(bytes);
  contiguous_ += bytes.size();
  // The gap just closed may release chunks that came early.
  for (auto it = ahead_.begin(); it != ahead_.end() && it->first == contiguous_;
       it = ahead_.erase(it)) {
    hash_.update(it->second);
    contiguous_ += it->second.size();
  }
  return outcome::stored;
}

crypto::digest image_download::finish() {
  if (!complete()) throw std::logic_error("image_download::finish before the image is complete");
  return hash_.finish();
}

}  // namespace otter::sim
