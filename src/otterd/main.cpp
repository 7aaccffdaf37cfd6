// otterd: the otter OTA service, and its small key tools.
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "crypto/ec_key.hpp"
#include "crypto/hash.hpp"
#include "service/service.hpp"

#if defined(__SANITIZE_ADDRESS__)
// libpqxx 6.4 loses a PGresult (~2 KiB) when a connection breaks mid-query (fixed in libpqxx 7).
// PostgreSQL outages are expected here, so sanitizer builds must not fail on that one leak.
// Nothing in otter calls libpq directly: every PGresult is libpqxx's.
// Paho C 1.3.12 may likewise keep one internal buffer past exit (seen in CI, inside libpaho).
extern "C" const char* __lsan_default_suppressions() {
  return "leak:PQmakeEmptyPGresult\nleak:libpaho-mqtt3as.so\n";
}
#endif

namespace {

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_signal(int) {
  g_stop.store(true);
}

constexpr const char* kUsage = R"(otterd: the otter over-the-air update service.

Commands:
  otterd [OPTIONS]                 serve devices and operators over MQTT
  otterd keygen --out FILE         write a new P-256 signing key (mode 0600); print its public key
  otterd sign-image --key KEY IMAGE
                                   print the image_sig of IMAGE made with the release key KEY
  otterd --help | --version

Devices and operators talk to otterd through an MQTT broker (see PROTOCOL.md); every
event is recorded in PostgreSQL. Every option is also an environment variable.
)";

// Escapes the message for the JSON log format, so every line is one valid JSON object.
class json_message_flag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      switch (c) {
        case '"':
          dest.append(std::string_view("\\\""));
          break;
        case '\\':
          dest.append(std::string_view("\\\\"));
          break;
        case '\n':
          dest.append(std::string_view("\\n"));
          break;
        case '\t':
          dest.append(std::string_view("\\t"));
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            dest.append(std::string_view(buf));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<json_message_flag>();
  }
};

void setup_logging(const otter::config::settings& s) {
  auto logger = spdlog::stderr_logger_mt("otterd");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(s.log_level));
  if (s.log_format == "json") {
    auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    f->add_flag<json_message_flag>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","msg":"%*"})");
    spdlog::set_formatter(std::move(f));
  } else {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  }
}

int keygen(const std::vector<std::string>& args) {
  std::string out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      std::cout << "Usage: otterd keygen --out FILE\n\nWrites a new ECDSA P-256 private key "
                   "(PKCS#8 PEM, mode 0600) to FILE,\nwhich must not exist, and prints its "
                   "public key PEM and kid.\nPin the public key in devices; point "
                   "OTTER_SIGNING_KEY at FILE.\n";
      return 0;
    }
    if (args[i] == "--out" && i + 1 < args.size()) {
      out = args[++i];
    } else if (args[i].rfind("--out=", 0) == 0) {
      out = args[i].substr(6);
    } else {
      std::cerr << "otterd keygen: unexpected argument " << args[i]
                << "\nUsage: otterd keygen --out FILE\n";
      return 2;
    }
  }
  if (out.empty()) {
    std::cerr << "otterd keygen: --out FILE is required\nUsage: otterd keygen --out FILE\n";
    return 2;
  }
  auto key = otter::crypto::ec_key::generate();
  auto written = otter::crypto::write_private_file(out, key.private_pem());
  if (!written) {
    std::cerr << "otterd keygen: " << written.error().message
              << "\n(choose another file name, or remove the old key if you really mean to "
                 "replace it)\n";
    return 1;
  }
  std::cout << key.public_pem() << "kid: " << key.kid() << "\n";
  return 0;
}

constexpr const char* kSignImageUsage = "Usage: otterd sign-image --key KEY IMAGE\n";

int sign_image(const std::vector<std::string>& args) {
  std::string key_path;
  std::string image;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      std::cout << kSignImageUsage
                << "\nPrints the image_sig of IMAGE (PROTOCOL.md): the ECDSA P-256 / SHA-256 "
                   "signature of\nthe file, as `openssl dgst -sha256 -sign KEY` makes it, "
                   "written as base64url\nof the 64-byte r||s. KEY is the release key's PEM "
                   "private key (make one with\n`otterd keygen --out release.pem`); keep it "
                   "offline, away from the server.\nGive the output as image_sig to "
                   "release.add; give the server the public key\nin OTTER_RELEASE_KEYS.\n";
      return 0;
    }
    if (args[i] == "--key" && i + 1 < args.size()) {
      key_path = args[++i];
    } else if (args[i].rfind("--key=", 0) == 0) {
      key_path = args[i].substr(6);
    } else if (!args[i].empty() && args[i][0] == '-' && args[i] != "-") {
      std::cerr << "otterd sign-image: unexpected option " << args[i] << "\n" << kSignImageUsage;
      return 2;
    } else if (image.empty()) {
      image = args[i];
    } else {
      std::cerr << "otterd sign-image: more than one IMAGE (" << image << ", " << args[i]
                << "); sign one image at a time\n"
                << kSignImageUsage;
      return 2;
    }
  }
  if (key_path.empty() || image.empty()) {
    std::cerr << "otterd sign-image: " << (key_path.empty() ? "--key KEY" : "IMAGE")
              << " is required\n"
              << kSignImageUsage;
    return 2;
  }
  auto key = otter::crypto::ec_key::from_private_file(key_path);
  if (!key) {
    std::cerr << "otterd sign-image: --key " << key_path << ": " << key.error().message
              << "\n(give the release key's PEM private key; make one with: otterd keygen "
                 "--out release.pem)\n";
    return 1;
  }
  std::ifstream in(image, std::ios::binary);
  if (!in) {
    std::cerr << "otterd sign-image: cannot read " << image << "; check the path\n";
    return 1;
  }
  // Streamed: images can be larger than is comfortable to hold in memory.
  otter::crypto::sha256_stream hash;
  std::vector<char> buf(64 * 1024);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0)
      hash.update(std::string_view(buf.data(), static_cast<std::size_t>(in.gcount())));
  }
  if (in.bad()) {
    std::cerr << "otterd sign-image: error reading " << image << "\n";
    return 1;
  }
  const auto digest = hash.finish();
  const auto sig = key->sign_digest(digest);
  std::cout << otter::crypto::base64url_encode(sig) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "keygen") return keygen({args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "sign-image") return sign_image({args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "--version") {
    std::cout << "otterd 0.1.0 (protocol v1)\n";
    return 0;
  }
  if (otter::config::wants_help(args)) {
    std::cout << kUsage << "\n" << otter::config::help_text("otterd", "[OPTIONS]");
    return 0;
  }
  auto cfg = otter::config::load(args, otter::config::process_env());
  if (!cfg) {
    std::cerr << "otterd: " << cfg.error().message << "\n(see otterd --help)\n";
    return 2;
  }
  setup_logging(*cfg);
  for (const auto& w : otter::config::warnings(*cfg)) spdlog::warn("config: {}", w);

  auto key = cfg->signing_key.rfind("-----BEGIN", 0) == 0
                 ? otter::crypto::ec_key::from_private_pem(cfg->signing_key)
                 : otter::crypto::ec_key::from_private_file(cfg->signing_key);
  if (!key) {
    std::cerr << "otterd: OTTER_SIGNING_KEY (--signing-key): " << key.error().message
              << "\n(make a key with: otterd keygen --out otter-signing.pem)\n";
    return 2;
  }
  if (cfg->signing_key.rfind("-----BEGIN", 0) != 0) {
    struct stat st {};
    if (::stat(cfg->signing_key.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
      spdlog::warn(
          "config: the signing key {} is open to other users (mode {:o}); "
          "run: chmod 600 {}",
          cfg->signing_key, st.st_mode & 0777, cfg->signing_key);
  }
  spdlog::info("otterd starting\n{}", otter::config::describe(*cfg));

  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    otter::service::service svc(std::move(cfg).value(), std::move(key).value());
    return svc.run(g_stop);
  } catch (const std::exception& e) {
    spdlog::critical("decision=exit reason=\"{}\"", e.what());
    return 1;
  }
}
