#pragma once
// Reassembly of an image from chunk messages that may arrive out of order, twice, or not at
// all. Bytes are hashed as soon as they are contiguous from offset 0, so that only chunks
// ahead of a gap are held in memory; the device re-requests from first_missing().
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "crypto/hash.hpp"

namespace otter::sim {

class image_download {
 public:
  enum class outcome {
    stored,      // new bytes
    duplicate,   // already had them (a late answer to an earlier request)
    bad_offset,  // past the end, or not on a chunk boundary
    bad_length,  // not chunk_len bytes (the image's last chunk: not what is left of it)
  };

  // chunk_len: the `len` of every request of this download (> 0); size > 0.
  image_download(std::uint64_t size, std::uint32_t chunk_len);

  // A chunk message's bytes at `offset`. The last chunk may carry more than the image's
  // remaining bytes: reading stops at size.
  outcome add(std::uint64_t offset, std::string_view bytes);

  std::uint64_t size() const noexcept { return size_; }
  std::uint32_t chunk_len() const noexcept { return chunk_len_; }
  // Bytes from offset 0 without a gap (all hashed already).
  std::uint64_t first_missing() const noexcept { return contiguous_; }
  bool complete() const noexcept { return contiguous_ == size_; }
  // Chunks held beyond a gap.
  std::size_t held() const noexcept { return ahead_.size(); }
  // Chunks from first_missing() to the end of the image.
  std::uint64_t chunks_left() const noexcept;
  // Chunks from first_missing() to the first chunk held beyond it (or the end): what a
  // re-request needs, without asking again for what is already here.
  std::uint64_t gap_chunks() const noexcept;
  // SHA-256 of the image; only once complete(), and only once.
  crypto::digest finish();

 private:
  std::uint64_t size_;
  std::uint32_t chunk_len_;
  std::uint64_t contiguous_ = 0;
  std::map<std::uint64_t, std::string> ahead_;
  crypto::sha256_stream hash_;
};

}  // namespace otter::sim
