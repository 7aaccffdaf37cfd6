#include "http/link_signer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <system_error>

#include "crypto/hash.hpp"
#include "protocol/ids.hpp"

namespace otter::http {
namespace {

std::string sys_error(const std::string& what, const std::filesystem::path& p) {
  return what + " " + p.string() + ": " + std::strerror(errno);
}

std::vector<std::uint8_t> read_secret(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(sys_error("cannot read link secret file", file));
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
  // Editors add newlines; they are not part of the secret.
  while (!bytes.empty() && (bytes.back() == '\n' || bytes.back() == '\r' || bytes.back() == ' ' ||
                            bytes.back() == '\t'))
    bytes.pop_back();
  if (bytes.size() < link_signer::kMinSecretBytes)
    throw std::runtime_error("link secret file " + file.string() + " holds fewer than " +
                             std::to_string(link_signer::kMinSecretBytes) + " bytes");
  return bytes;
}

// Writes a temporary file and links it into place: link() fails with EEXIST instead of
// replacing, so two instances starting together agree on one secret, and nobody ever reads a
// half-written file. False: another process made the file first.
bool create_secret(const std::filesystem::path& file) {
  const auto text = crypto::to_hex(crypto::random_bytes(32)) + "\n";
  const auto tmp = file.string() + ".tmp-" + crypto::to_hex(crypto::random_bytes(6));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error(sys_error("cannot create link secret file", tmp));
  int err = 0;
  if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
      ::fsync(fd) != 0)
    err = errno ? errno : EIO;
  ::close(fd);
  bool linked = false;
  if (err == 0) {
    if (::link(tmp.c_str(), file.c_str()) == 0)
      linked = true;
    else if (errno != EEXIST)
      err = errno;
  }
  ::unlink(tmp.c_str());
  if (err != 0) {
    errno = err;
    throw std::runtime_error(sys_error("cannot create link secret file", file));
  }
  return linked;
}

// Canonical decimal only: "0" or no leading zero, no sign, fits in int64.
bool parse_exp(std::string_view s, std::int64_t& out) {
  if (s.empty() || s.size() > 18 || (s.size() > 1 && s.front() == '0')) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

}  // namespace

const char* to_string(link_verdict v) noexcept {
  switch (v) {
    case link_verdict::ok:
      return "ok";
    case link_verdict::malformed:
      return "malformed";
    case link_verdict::bad_token:
      return "bad_token";
    case link_verdict::expired:
      return "expired";
  }
  return "unknown";
}

namespace {

const std::vector<std::uint8_t>& long_enough(const std::vector<std::uint8_t>& secret) {
  if (secret.size() < link_signer::kMinSecretBytes)
    throw std::invalid_argument("link secret shorter than 32 bytes");
  return secret;
}

}  // namespace

link_signer::link_signer(std::vector<std::uint8_t> secret) : key_(long_enough(secret)) {}

link_signer link_signer::load_or_create(const std::filesystem::path& file, secret_file_info* info) {
  std::error_code ec;
  const bool created = !std::filesystem::exists(file, ec) && create_secret(file);
  link_signer signer(read_secret(file));
  if (info) {
    info->created = created;
    struct stat st {};
    info->mode = ::stat(file.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
  }
  return signer;
}

std::string link_signer::token(std::string_view device, std::string_view sha256,
                               std::int64_t exp) const {
  std::string msg = "v1|";
  msg.append(device).append("|").append(sha256).append("|").append(std::to_string(exp));
  return crypto::base64url_encode(key_.mac(msg));
}

std::string link_signer::make(std::string_view device, std::string_view sha256,
                              std::int64_t exp) const {
  // Device ids are [A-Za-z0-9_.-] and the token is base64url: nothing needs percent-encoding.
  std::string p = "/v1/images/";
  p.append(sha256).append("?d=").append(device).append("&exp=").append(std::to_string(exp));
  p.append("&t=").append(token(device, sha256, exp));
  return p;
}

link_check link_signer::verify(std::string_view sha256, std::string_view device,
                               std::string_view exp, std::string_view token_text,
                               std::int64_t now) const {
  link_check r;
  if (!protocol::valid_sha256_hex(sha256) || !protocol::valid_name(device) ||
      !parse_exp(exp, r.exp))
    return r;
  auto got = crypto::base64url_decode(token_text);
  if (!got || got->size() != 32) return r;
  std::string msg = "v1|";
  msg.append(device).append("|").append(sha256).append("|").append(exp);
  const auto want = key_.mac(msg);
  if (!crypto::equal_ct(want, *got)) {
    r.verdict = link_verdict::bad_token;
    return r;
  }
  r.verdict = now > r.exp ? link_verdict::expired : link_verdict::ok;
  return r;
}

}  // namespace otter::http
