// The fuzz targets without libFuzzer (any compiler, e.g. the sanitizer build CI runs): replays
// every file of the corpus folders given, then deterministic mutations of each (bytes flipped,
// inserted, dropped, truncated, spliced with another seed), so every CI run also explores a
// little beyond the seeds. The first byte of a seed picks the target's surface and is kept.
//
//   otter_fuzz_replay_<target> [--mutations N] DIR_OR_FILE...
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::vector<std::uint8_t> read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct xorshift {
  std::uint64_t s;
  std::uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  std::size_t below(std::size_t n) { return n ? static_cast<std::size_t>(next() % n) : 0; }
};

std::vector<std::uint8_t> mutate(std::vector<std::uint8_t> in,
                                 const std::vector<std::uint8_t>& other, xorshift& rng) {
  static constexpr std::uint8_t kInteresting[] = {0,   1,    '"',  '\\', '{',  '}',  '[',
                                                  ']', ',',  ':',  '-',  '.',  '0',  '9',
                                                  'e', 0x7f, 0x80, 0xc0, 0xed, 0xf4, 0xff};
  const int steps = 1 + static_cast<int>(rng.below(4));
  for (int i = 0; i < steps && in.size() > 1; ++i) {
    const std::size_t at = 1 + rng.below(in.size() - 1);
    switch (rng.below(6)) {
      case 0:
        in[at] ^= static_cast<std::uint8_t>(1u << rng.below(8));
        break;
      case 1:
        in[at] = kInteresting[rng.below(sizeof kInteresting)];
        break;
      case 2:
        in.insert(in.begin() + static_cast<std::ptrdiff_t>(at),
                  kInteresting[rng.below(sizeof kInteresting)]);
        break;
      case 3:
        in.erase(in.begin() + static_cast<std::ptrdiff_t>(at));
        break;
      case 4:
        in.resize(at);
        break;
      default:
        if (other.size() > 1) {
          const std::size_t from = 1 + rng.below(other.size() - 1);
          in.resize(at);
          in.insert(in.end(), other.begin() + static_cast<std::ptrdiff_t>(from), other.end());
        }
    }
  }
  return in;
}

}  // namespace

int main(int argc, char** argv) {
  long mutations = 200;
  std::vector<std::vector<std::uint8_t>> seeds;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--mutations" && i + 1 < argc) {
      mutations = std::strtol(argv[++i], nullptr, 10);
      continue;
    }
    if (std::filesystem::is_directory(arg)) {
      std::vector<std::filesystem::path> files;
      for (const auto& e : std::filesystem::directory_iterator(arg))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());  // same order, same mutations, every run
      for (const auto& f : files) seeds.push_back(read_file(f));
    } else if (std::filesystem::is_regular_file(arg)) {
      seeds.push_back(read_file(arg));
    } else {
      std::fprintf(stderr, "%s: no such file or folder: %s\n", argv[0], arg.c_str());
      return 2;
    }
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "usage: %s [--mutations N] DIR_OR_FILE...  (no inputs found)\n", argv[0]);
    return 2;
  }
  xorshift rng{0x9e3779b97f4a7c15ull};
  std::size_t runs = 0;
  for (std::size_t i = 0; i < seeds.size(); ++i) {
    LLVMFuzzerTestOneInput(seeds[i].data(), seeds[i].size());
    ++runs;
    for (long m = 0; m < mutations; ++m) {
      const auto input = mutate(seeds[i], seeds[rng.below(seeds.size())], rng);
      LLVMFuzzerTestOneInput(input.data(), input.size());
      ++runs;
    }
  }
  std::printf("%zu seeds, %zu runs, no invariant broken\n", seeds.size(), runs);
  return 0;
}
