#include "service/image_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "crypto/hash.hpp"
#include "protocol/ids.hpp"

namespace otter::service {

image_store::image_store(std::filesystem::path data_dir) : dir_(std::move(data_dir) / "images") {}

void image_store::open() {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec)
    throw std::runtime_error("cannot create image folder " + dir_.string() + ": " + ec.message() +
                             "; set OTTER_DATA_DIR to a writable folder");
}

std::filesystem::path image_store::path_of(const std::string& sha256) const {
  if (!protocol::valid_sha256_hex(sha256)) throw std::invalid_argument("not a sha256");
  return dir_ / sha256;
}

bool image_store::contains(const std::string& sha256) const {
  std::error_code ec;
  return protocol::valid_sha256_hex(sha256) && std::filesystem::is_regular_file(dir_ / sha256, ec);
}

result<void> image_store::remove(const std::string& sha256) {
  if (!protocol::valid_sha256_hex(sha256))
    return make_error(errc::bad_request, "not a sha256: " + sha256);
  const auto path = dir_ / sha256;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    const int e = errno;
    return make_error(errc::internal,
                      "cannot remove image " + path.string() + ": " + std::strerror(e));
  }
  return {};
}

result<image_store::stored> image_store::put(std::string_view bytes) {
  stored s;
  s.sha256 = crypto::sha256_hex(bytes);
  s.size = bytes.size();
  const auto final_path = dir_ / s.sha256;
  // Stored once; a file of the wrong length (damaged on disk) is replaced by this one.
  std::error_code ec;
  if (contains(s.sha256) && std::filesystem::file_size(final_path, ec) == s.size && !ec) {
    s.existed = true;
    return s;
  }
  std::string tmpl = (dir_ / ".upload-XXXXXX").string();
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0)
    return make_error(errc::internal, std::string("cannot create a temporary file in the image "
                                                  "folder: ") +
                                          std::strerror(errno));
  auto fail = [&](const char* step) {
    const int e = errno;
    ::close(fd);
    ::unlink(tmpl.c_str());
    return make_error(errc::internal,
                      std::string("cannot store the image (") + step + "): " + std::strerror(e));
  };
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fchmod(fd, 0644) != 0) return fail("chmod");
  if (::fsync(fd) != 0) return fail("fsync");
  ::close(fd);
  if (::rename(tmpl.c_str(), final_path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmpl.c_str());
    return make_error(errc::internal,
                      std::string("cannot store the image (rename): ") + std::strerror(e));
  }
  return s;
}

}  // namespace otter::service
