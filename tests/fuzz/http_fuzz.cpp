// What the HTTP download path reads from a request before it touches a file: the Range header
// and the signed link's query parameters. First byte: 'r' range, 'l' link; the rest the input.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "http/link_signer.hpp"
#include "http/server.hpp"

namespace {

void fuzz_range(std::string_view in) {
  if (in.size() < 2) return;
  // Sizes around the edges: empty file, one byte, ordinary, huge.
  static constexpr std::uint64_t kSizes[] = {0, 1, 1500000, UINT64_MAX / 2, UINT64_MAX};
  const std::uint64_t size = kSizes[static_cast<std::uint8_t>(in[0]) % 5];
  const auto r = otter::http::parse_byte_range(in.substr(1), size);
  using kind = otter::http::byte_range::kind;
  if (r.k == kind::single) {
    // A range we serve lies inside the file: the server reads [first, last] with pread.
    OTTER_FUZZ_CHECK(size > 0 && r.first <= r.last && r.last < size);
  }
}

void fuzz_link(std::string_view in) {
  static const otter::http::link_signer signer(std::vector<std::uint8_t>(32, 0x5a));
  static const std::string sha(64, 'a');
  // Fields split at '&' like a query: device, exp, token.
  std::vector<std::string_view> f;
  std::size_t at = 0;
  while (f.size() < 3) {
    const auto amp = in.find('&', at);
    f.push_back(in.substr(at, amp == std::string_view::npos ? std::string_view::npos : amp - at));
    if (amp == std::string_view::npos) break;
    at = amp + 1;
  }
  while (f.size() < 3) f.emplace_back();
  const std::int64_t now = 1795000000;
  const auto c = signer.verify(sha, f[0], f[1], f[2], now);
  if (c.verdict == otter::http::link_verdict::ok) {
    // Only a token the signer made for exactly these fields, unexpired, is ever accepted.
    OTTER_FUZZ_CHECK(c.exp >= now);
    OTTER_FUZZ_CHECK(signer.token(f[0], sha, c.exp) == f[2]);
    OTTER_FUZZ_CHECK(std::to_string(c.exp) == f[1]);
  }
  // A link the signer makes for the fuzzed device verifies (when the device name is valid).
  const auto made =
      signer.verify(sha, f[0], std::to_string(now + 60), signer.token(f[0], sha, now + 60), now);
  (void)made;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] == 'l')
    fuzz_link(rest);
  else
    fuzz_range(rest);
  return 0;
}
