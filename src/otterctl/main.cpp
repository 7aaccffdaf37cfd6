// otterctl: the operators' tool. Every command is a request on R/admin/O/req (see PROTOCOL.md,
// "Operator topics"); keygen and sign-image work locally.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "crypto/ec_key.hpp"
#include "crypto/hash.hpp"
#include "mqtt/client.hpp"
#include "otterctl/args.hpp"
#include "otterctl/table.hpp"
#include "protocol/ids.hpp"
#include "protocol/semver.hpp"
#include "protocol/topics.hpp"

namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using otter::ctl::option;
using otter::ctl::parsed_args;
using otter::ctl::table;

constexpr int kOk = 0;
constexpr int kRefused = 1;
constexpr int kUsage = 2;

// Thrown to end a command with an exit status after the message has been printed.
struct exit_now {
  int status;
};

[[noreturn]] void fail(int status, const std::string& what, const std::string& next) {
  std::cerr << "otterctl: " << what << "\n";
  if (!next.empty()) std::cerr << "  " << next << "\n";
  throw exit_now{status};
}

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) {
  g_stop.store(true);
}

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

const std::vector<option>& global_options() {
  static const std::vector<option> opts = {
      {"mqtt", "URL", "broker URL (env OTTER_MQTT_URL; default tcp://127.0.0.1:1883)"},
      {"user", "NAME", "MQTT user name (env OTTER_MQTT_USER)"},
      {"password", "SECRET", "MQTT password (env OTTER_MQTT_PASSWORD; prefer the variable)"},
      {"root", "ROOT", "topic root (env OTTER_TOPIC_ROOT; default ota/v1)"},
      {"operator", "NAME", "operator name (env OTTER_OPERATOR; default: the MQTT user)"},
      {"timeout", "S", "seconds to wait for each answer (default 10)"},
      {"json", "", "print JSON for scripts instead of tables"},
      {"verbose", "", "log the MQTT client's doings to stderr"},
      {"help", "", "show help"},
  };
  return opts;
}

struct command_spec {
  std::vector<std::string> words;  // {"rollout", "create"}
  std::string usage;               // after "otterctl rollout create "
  std::string summary;
  std::vector<option> options;  // besides the global ones
};

const std::vector<command_spec>& commands() {
  static const option limit{"limit", "N", "stop after N items (default: fetch every page)"};
  static const std::vector<command_spec> cmds = {
      {{"upload"},
       "IMAGE --model M --version V [--min-version X] [--notes T] [--sign KEYFILE]",
       "upload an image file and add it as a release",
       {{"model", "M", "device model"},
        {"version", "V", "release version (semver)"},
        {"min-version", "X", "lowest version that may update to it"},
        {"notes", "T", "release notes"},
        {"sign", "KEYFILE", "sign the image with this P-256 release key (PEM)"}}},
      {{"releases"},
       "[--model M] [--limit N]",
       "list releases",
       {{"model", "M", "only this model"}, limit}},
      {{"release"}, "MODEL VERSION", "show one release", {}},
      {{"rollout", "create"},
       "NAME --model M --version V (--all | --percent P | --devices a,b | --group k=v[,k=v]) "
       "[--allow-downgrade]",
       "start a rollout of a release",
       {{"model", "M", "device model"},
        {"version", "V", "release version"},
        {"all", "", "target every device of the model"},
        {"percent", "P", "target P percent of the devices (0-100, two decimals)"},
        {"devices", "IDS", "target these device ids (comma-separated)"},
        {"group", "K=V,...", "target devices whose attributes match every pair"},
        {"allow-downgrade", "", "also offer it to devices on a higher version"}}},
      {{"rollout", "widen"},
       "ID PERCENT",
       "change the percent of a percent rollout (lower: narrow)",
       {}},
      {{"rollout", "pause"}, "ID [--reason T]", "pause a rollout", {{"reason", "T", "why"}}},
      {{"rollout", "resume"},
       "ID [--reason T]",
       "resume a paused rollout",
       {{"reason", "T", "why"}}},
      {{"rollout", "cancel"},
       "ID [--reason T]",
       "cancel a rollout for good",
       {{"reason", "T", "why"}}},
      {{"rollout", "show"},
       "ID",
       "a rollout's target, state, devices per state and failure rate",
       {}},
      {{"rollouts"},
       "[--state S] [--model M] [--limit N]",
       "list rollouts",
       {{"state", "S", "active, paused or cancelled"}, {"model", "M", "only this model"}, limit}},
      {{"devices"},
       "[--model M] [--version V] [--limit N]",
       "list devices",
       {{"model", "M", "only this model"}, {"version", "V", "only this version"}, limit}},
      {{"device"}, "ID", "show one device", {}},
      {{"status"},
       "[--device D] [--rollout R] [--state S] [--limit N]",
       "list status reports, newest first",
       {{"device", "D", "only this device"},
        {"rollout", "R", "only this rollout"},
        {"state", "S", "only this state"},
        limit}},
      {{"events"},
       "[--device D] [--kind K] [--since T] [--follow [--for S]] [--limit N]",
       "list events, newest first, or follow the live ones",
       {{"device", "D", "only this device"},
        {"kind", "K", "only this kind (check, offer, status, chunk, error, command, upload)"},
        {"since", "T",
         "only events from T on: unix seconds, UTC time (2026-11-29T10:00:00Z) or an age (30m, "
         "2h, 7d)"},
        {"follow", "", "print live events as they happen (one JSON per line with --json)"},
        {"for", "S", "with --follow: stop after S seconds (default: until Ctrl-C)"},
        limit}},
      {{"metrics"}, "", "the service's counters", {}},
      {{"keygen"},
       "--out FILE",
       "write a new P-256 release key (mode 0600)",
       {{"out", "FILE", "the new key file (must not exist)"}}},
      {{"sign-image"},
       "--key KEY IMAGE",
       "print the image_sig of an image file",
       {{"key", "KEY", "P-256 private key (PEM)"}}},
  };
  return cmds;
}

std::string words_of(const command_spec& c) {
  std::string s;
  for (const auto& w : c.words) s += (s.empty() ? "" : " ") + w;
  return s;
}

std::string main_help() {
  std::string out =
      "Usage: otterctl [OPTIONS] COMMAND [ARGS]\n\n"
      "The operators' tool of otter: talks to otterd over MQTT as operator O\n"
      "(topics R/admin/O/...). Commands:\n";
  std::string body;
  std::size_t width = 0;
  for (const auto& c : commands()) width = std::max(width, words_of(c).size());
  for (const auto& c : commands()) {
    const auto w = words_of(c);
    body += "  " + w + std::string(width - w.size() + 3, ' ') + c.summary + "\n";
  }
  out += body;
  out += "\nOptions (accepted by every command):\n" + otter::ctl::options_help(global_options());
  out +=
      "\nExit status: 0 ok, 1 refused by the service, 2 usage or connection error.\n"
      "Run `otterctl COMMAND --help` for a command's arguments.\n";
  return out;
}

std::string command_help(const command_spec& c) {
  std::string out = "Usage: otterctl " + words_of(c) + " " + c.usage + "\n\n" + c.summary + ".\n";
  if (!c.options.empty()) out += "\nOptions:\n" + otter::ctl::options_help(c.options);
  out += "\nGlobal options:\n" + otter::ctl::options_help(global_options());
  return out;
}

otter::crypto::ec_key load_private_key(const std::string& path) {
  auto k = otter::crypto::ec_key::from_private_file(path);
  if (!k)
    fail(kUsage, "cannot use key " + path + ": " + k.error().message,
         "give a P-256 private key in PEM (make one with: otterctl keygen --out FILE)");
  return std::move(*k);
}

std::string image_sig(const otter::crypto::ec_key& key, const otter::crypto::digest& d) {
  const auto sig = key.sign_digest(std::span<const std::uint8_t, 32>(d));
  return otter::crypto::base64url_encode(std::span<const std::uint8_t>(sig));
}

std::string human_size(std::uint64_t n) {
  char buf[32];
  if (n < 1024) return std::to_string(n) + " B";
  if (n < 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(n) / 1024.0);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(n) / (1024.0 * 1024.0));
  }
  return buf;
}

// A cell for a JSON value: strings bare, null empty, the rest compact JSON.
std::string cell(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  return v.dump();
}
std::string field(const json& o, const char* key) {
  return o.is_object() && o.contains(key) ? cell(o[key]) : "";
}
std::string time_field(const json& o, const char* key) {
  return otter::ctl::short_time(field(o, key));
}

std::string describe_target(const json& t) {
  const auto type = field(t, "type");
  if (type == "all") return "all";
  if (type == "percent") return field(t, "percent") + "%";
  if (type == "devices" && t.contains("ids") && t["ids"].is_array()) {
    std::string s;
    for (const auto& id : t["ids"]) s += (s.empty() ? "" : ",") + cell(id);
    return "devices " + s;
  }
  if (type == "group" && t.contains("attrs") && t["attrs"].is_object()) {
    std::string s;
    for (const auto& [k, v] : t["attrs"].items()) s += (s.empty() ? "" : ",") + k + "=" + cell(v);
    return "group " + s;
  }
  return t.dump();
}

// Key/value lines for one object.
void print_record(const std::vector<std::pair<std::string, std::string>>& rows) {
  std::size_t w = 0;
  for (const auto& [k, v] : rows) w = std::max(w, k.size());
  for (const auto& [k, v] : rows)
    std::cout << k << ":" << std::string(w - k.size() + 2, ' ') << otter::ctl::printable(v) << "\n";
}

// What to do next, per error code of the service.
std::string hint_for(const std::string& code, const std::string& op, const std::string& cmd) {
  if (code == "unauthorized")
    return "operator " + op +
           " lacks the right: ask whoever runs otterd to list it in OTTER_OPERATORS (as admin "
           "for changes)";
  if (code == "not_found")
    return "check the name or id (otterctl releases, rollouts, devices list what exists)";
  // The service's conflicts: a release that exists, or a change to a cancelled rollout.
  if (code == "conflict" && cmd.rfind("rollout", 0) == 0)
    return "a cancelled rollout stays cancelled: create a new rollout for the release";
  if (code == "conflict") return "it exists already: choose another version";
  if (code == "bad_request") return "check the arguments: otterctl " + cmd + " --help";
  if (code == "rate_limited" || code == "unavailable") return "wait a moment and try again";
  return "try again; if it persists, look at otterd's log";
}

struct connection_settings {
  std::string url;
  std::string user;
  std::string password;
  std::string root;
  std::string op;
  std::chrono::milliseconds timeout{10s};
};

// One MQTT session as operator O: requests out, answers matched by id.
class session {
 public:
  session(const connection_settings& cs, std::string cmd_words)
      : cs_(cs), topics_(cs.root), cmd_words_(std::move(cmd_words)) {
    otter::mqtt::client_options o;
    o.server_uri = cs.url;
    o.client_id = "otterctl-" + cs.op + "-" + otter::crypto::to_hex(otter::crypto::random_bytes(4));
    o.username = cs.user;
    o.password = cs.password;
    o.connect_timeout = std::chrono::duration_cast<std::chrono::seconds>(cs.timeout);
    if (o.connect_timeout < 1s) o.connect_timeout = 1s;
    try {
      client_ = std::make_unique<otter::mqtt::client>(o);
    } catch (const std::exception& e) {
      fail(kUsage, "bad broker URL " + cs.url + ": " + e.what(),
           "use tcp://HOST:PORT in --mqtt or OTTER_MQTT_URL");
    }
    client_->on_message([this](const otter::mqtt::message& m) { on_message(m); });
    prefix_ = "ctl-" + otter::crypto::to_hex(otter::crypto::random_bytes(4)) + "-";
  }

  ~session() {
    if (client_) client_->disconnect(2s);
  }

  const otter::protocol::topics& topics() const { return topics_; }
  otter::mqtt::client& client() { return *client_; }
  const connection_settings& settings() const { return cs_; }

  // Connects with the response topic subscribed; exit 2 with advice on failure.
  void connect(const std::vector<std::string>& extra_filters = {}) {
    (void)client_->subscribe(topics_.admin_response(cs_.op), 1, 0ms);
    for (const auto& f : extra_filters) (void)client_->subscribe(f, 0, 0ms);
    auto r = client_->connect(cs_.timeout);
    if (!r && r.error().code == otter::errc::forbidden)
      fail(kUsage,
           "the broker at " + cs_.url + " refused " +
               (cs_.user.empty() ? "a connection without a user name" : "user " + cs_.user) +
               ": wrong user name or password, or not allowed (" + r.error().message + ")",
           "check --user/OTTER_MQTT_USER and --password/OTTER_MQTT_PASSWORD");
    if (!r)
      fail(kUsage,
           "cannot connect to " + cs_.url + " as " + (cs_.user.empty() ? "(no user)" : cs_.user) +
               ": " + r.error().message,
           "check that the broker runs there, and --mqtt/OTTER_MQTT_URL, "
           "--user/OTTER_MQTT_USER and --password/OTTER_MQTT_PASSWORD");
  }

  std::string next_id() { return prefix_ + std::to_string(++seq_); }

  // Publishes and waits for the answer with this id; exit 2 when none comes.
  json exchange(const std::string& topic, const std::string& payload, const std::string& id,
                const std::string& extra_hint = "") {
    if (auto r = client_->publish(topic, payload, 1); !r)
      fail(kUsage, "cannot send to " + cs_.url + ": " + r.error().message,
           "check the broker connection and try again");
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, cs_.timeout, [&] { return answers_.count(id) != 0; })) {
      const auto secs = std::chrono::duration_cast<std::chrono::seconds>(cs_.timeout).count();
      fail(kUsage,
           "no answer from otterd within " + std::to_string(secs) +
               " s: is otterd running and connected to " + cs_.url + "?",
           "check otterd's log and that it uses topic root " + cs_.root +
               (cs_.op != cs_.user ? "; operator " + cs_.op + " is not the MQTT user " + cs_.user +
                                         ", and brokers usually allow only that"
                                   : "") +
               (extra_hint.empty() ? "" : "; " + extra_hint) + " (or raise --timeout)");
    }
    json answer = std::move(answers_[id]);
    answers_.erase(id);
    return answer;
  }

  // A command's whole answer ({"ok": ...}), a refusal included.
  json ask(const std::string& cmd, const json& args) {
    const auto id = next_id();
    const json req = {{"id", id}, {"cmd", cmd}, {"args", args}};
    return exchange(topics_.admin_request(cs_.op), req.dump(), id);
  }

  // A command's result; a refusal ends the program with status 1.
  json request(const std::string& cmd, const json& args) { return result_of(ask(cmd, args)); }

  json result_of(const json& answer) {
    if (answer.value("ok", false)) return answer.contains("result") ? answer["result"] : json();
    const json err = answer.contains("error") ? answer["error"] : json::object();
    const auto code = field(err, "code");
    fail(kRefused, cmd_words_ + " refused: " + code + ": " + field(err, "message"),
         hint_for(code, cs_.op, cmd_words_));
  }

  // Every page of a list command (or up to `limit` items).
  json list(const std::string& cmd, json args, std::optional<long long> limit) {
    json items = json::array();
    std::optional<std::string> after;
    for (;;) {
      long long want = 1000;  // the service's largest page
      if (limit) want = std::min<long long>(want, *limit - static_cast<long long>(items.size()));
      if (want <= 0) break;
      args["limit"] = want;
      if (after) args["after"] = *after;
      json page = request(cmd, args);
      if (page.contains("items") && page["items"].is_array())
        for (auto& it : page["items"]) items.push_back(std::move(it));
      if (!page.contains("next") || !page["next"].is_string()) break;
      after = page["next"].get<std::string>();
    }
    return items;
  }

 private:
  void on_message(const otter::mqtt::message& m) {
    if (m.topic != topics_.admin_response(cs_.op)) {
      if (on_other_) on_other_(m);
      return;
    }
    json j = json::parse(m.payload, nullptr, false);
    if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) return;
    {
      std::lock_guard lock(mu_);
      // The key first: json's operator= takes its argument by value, moved before the key.
      auto id = j["id"].get<std::string>();
      answers_[id] = std::move(j);
    }
    cv_.notify_all();
  }

 public:
  // Messages on other topics than the responses (the live events); set before connect().
  std::function<void(const otter::mqtt::message&)> on_other_;

 private:
  connection_settings cs_;
  otter::protocol::topics topics_;
  std::string cmd_words_;
  std::unique_ptr<otter::mqtt::client> client_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, json> answers_;
  std::string prefix_;
  int seq_ = 0;
};

connection_settings connection_from(const parsed_args& a) {
  connection_settings cs;
  cs.url = a.get("mqtt").value_or(env("OTTER_MQTT_URL").value_or("tcp://127.0.0.1:1883"));
  cs.user = a.get("user").value_or(env("OTTER_MQTT_USER").value_or(""));
  cs.password = a.get("password").value_or(env("OTTER_MQTT_PASSWORD").value_or(""));
  cs.root = a.get("root").value_or(env("OTTER_TOPIC_ROOT").value_or("ota/v1"));
  cs.op = a.get("operator").value_or(env("OTTER_OPERATOR").value_or(cs.user));
  if (cs.op.empty())
    fail(kUsage, "no operator name",
         "name it with --operator NAME or OTTER_OPERATOR (or set the MQTT user: --user, "
         "OTTER_MQTT_USER)");
  if (!otter::protocol::valid_name(cs.op))
    fail(kUsage, "bad operator name \"" + cs.op + "\"",
         "an operator name is 1 to 64 characters of [A-Za-z0-9_.-]");
  if (!otter::protocol::valid_topic_root(cs.root))
    fail(kUsage, "bad topic root \"" + cs.root + "\"",
         "use otterd's OTTER_TOPIC_ROOT, e.g. ota/v1 (no wildcards, no leading or trailing /)");
  if (auto t = a.get("timeout")) {
    auto n = otter::ctl::parse_number(*t);
    if (!n || *n <= 0 || *n > 3600)
      fail(kUsage, "bad --timeout " + *t, "give seconds, e.g. --timeout 30");
    cs.timeout = std::chrono::milliseconds(static_cast<long long>(*n * 1000));
  }
  return cs;
}

// The invocation: its command, parsed options and output mode.
struct invocation {
  const command_spec* spec;
  parsed_args args;
  bool json_out = false;
};

void print_json(const json& j) {
  std::cout << j.dump(2) << "\n";
}

std::optional<long long> limit_of(const invocation& inv) {
  auto l = inv.args.get("limit");
  if (!l) return std::nullopt;
  auto n = otter::ctl::parse_int(*l);
  if (!n || *n < 1) fail(kUsage, "bad --limit " + *l, "give a whole number of at least 1");
  return n;
}

void want_positional(const invocation& inv, std::size_t n) {
  if (inv.args.positional.size() != n)
    fail(kUsage,
         words_of(*inv.spec) + ": expected " + std::to_string(n) + " argument" +
             (n == 1 ? "" : "s") + ", got " + std::to_string(inv.args.positional.size()),
         "usage: otterctl " + words_of(*inv.spec) + " " + inv.spec->usage);
}

std::string required(const invocation& inv, const std::string& name) {
  auto v = inv.args.get(name);
  if (!v || v->empty())
    fail(kUsage, words_of(*inv.spec) + ": --" + name + " is required",
         "usage: otterctl " + words_of(*inv.spec) + " " + inv.spec->usage);
  return *v;
}

json filters(const invocation& inv, const std::vector<std::string>& names) {
  json args = json::object();
  for (const auto& n : names)
    if (auto v = inv.args.get(n)) args[n] = *v;
  return args;
}

void print_release(const json& r) {
  print_record({{"model", field(r, "model")},
                {"version", field(r, "version")},
                {"sha256", field(r, "sha256")},
                {"size", field(r, "size")},
                {"min_version", field(r, "min_version")},
                {"signed", field(r, "signed")},
                {"notes", field(r, "notes")},
                {"created_at", time_field(r, "created_at")}});
}

void print_rollout(const json& r) {
  print_record({{"id", field(r, "id")},
                {"name", field(r, "name")},
                {"release", field(r, "model") + " " + field(r, "version")},
                {"target", describe_target(r.value("target", json::object()))},
                {"state", field(r, "state")},
                {"reason", field(r, "reason")},
                {"allow_downgrade", field(r, "allow_downgrade")},
                {"created_by", field(r, "created_by")},
                {"created_at", time_field(r, "created_at")}});
}

// ---- local commands ----

int cmd_keygen(const invocation& inv) {
  want_positional(inv, 0);
  const auto out = required(inv, "out");
  auto key = otter::crypto::ec_key::generate();
  if (auto w = otter::crypto::write_private_file(out, key.private_pem()); !w)
    fail(kUsage, "cannot write " + out + ": " + w.error().message,
         "choose another file name (an existing key is never overwritten)");
  if (inv.json_out) {
    print_json({{"file", out}, {"kid", key.kid()}, {"public_pem", key.public_pem()}});
  } else {
    std::cout << "wrote " << out << " (mode 0600), kid " << key.kid()
              << "\nits public key, for the devices that check release signatures:\n"
              << key.public_pem();
  }
  return kOk;
}

struct hashed_file {
  std::string bytes;
  otter::crypto::digest digest{};
};

// Reads and hashes a file in pieces, with a progress bar on a terminal.
hashed_file read_and_hash(const std::string& path, bool progress) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    fail(kUsage, "image " + path + " is not a readable file",
         "give the path of the firmware image file");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in)
    fail(kUsage, "cannot read image " + path + ": " + std::strerror(errno),
         "check the path and its permissions");
  const auto total = static_cast<std::uint64_t>(in.tellg());
  in.seekg(0);
  hashed_file out;
  out.bytes.reserve(total);
  otter::crypto::sha256_stream h;
  std::vector<char> buf(64 * 1024);
  std::uint64_t done = 0;
  int last_pct = -1;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<std::size_t>(in.gcount());
    if (n == 0) break;
    const std::string_view piece(buf.data(), n);
    h.update(piece);
    out.bytes.append(piece);
    done += n;
    const int pct = total ? static_cast<int>(done * 100 / total) : 100;
    if (progress && pct != last_pct) {
      last_pct = pct;
      const int bars = pct * 30 / 100;
      std::cerr << "\rreading  [" << std::string(static_cast<std::size_t>(bars), '#')
                << std::string(static_cast<std::size_t>(30 - bars), '.') << "] " << pct << "% "
                << human_size(done) << std::flush;
    }
  }
  if (in.bad()) fail(kUsage, "cannot read image " + path, "check the file");
  if (progress) std::cerr << "\n";
  out.digest = h.finish();
  return out;
}

int cmd_sign_image(const invocation& inv) {
  want_positional(inv, 1);
  auto key = load_private_key(required(inv, "key"));
  auto file = read_and_hash(inv.args.positional[0], false);
  const auto sig = image_sig(key, file.digest);
  if (inv.json_out) {
    print_json(
        {{"image_sig", sig}, {"sha256", otter::crypto::to_hex(file.digest)}, {"kid", key.kid()}});
  } else {
    std::cout << sig << "\n";
  }
  return kOk;
}

// ---- service commands ----

int cmd_upload(const invocation& inv, session& s) {
  want_positional(inv, 1);
  const auto model = required(inv, "model");
  const auto version = required(inv, "version");
  // What the service would refuse after the whole image went over: refused before.
  if (!otter::protocol::valid_name(model))
    fail(kUsage, "--model " + otter::ctl::printable(model) + ": not a model name",
         "use 1 to 64 characters of A-Z a-z 0-9 _ . -");
  for (const char* flag : {"version", "min-version"})
    if (auto v = inv.args.get(flag); v && !otter::protocol::parse_semver(*v))
      fail(kUsage,
           std::string("--") + flag + " " + otter::ctl::printable(*v) + ": not a semantic version",
           "write it as MAJOR.MINOR.PATCH, e.g. 1.2.0 or 1.2.0-rc.1");
  std::optional<otter::crypto::ec_key> key;
  if (auto k = inv.args.get("sign")) key = load_private_key(*k);  // fail before any upload
  const bool progress = ::isatty(STDERR_FILENO) != 0;
  auto file = read_and_hash(inv.args.positional[0], progress);
  const auto sha = otter::crypto::to_hex(file.digest);
  s.connect();
  if (const json found = s.ask("release.get", {{"model", model}, {"version", version}});
      found.value("ok", false))
    fail(kRefused,
         "upload refused before sending the image: conflict: release " + model + " " +
             field(found["result"], "version") + " exists already",
         "choose another version (otterctl releases --model " + model + " lists them)");
  const auto id = "up-" + otter::crypto::to_hex(otter::crypto::random_bytes(8));
  // MQTT carries the image as one message: there is no byte progress to show while sending.
  if (progress) std::cerr << "sending  " << human_size(file.bytes.size()) << "..." << std::flush;
  json answer =
      s.exchange(s.topics().admin_upload(s.settings().op, id), file.bytes, id,
                 file.bytes.size() > 16u * 1024 * 1024
                     ? "the image is above 16 MiB, the broker's and otterd's default limit"
                     : "");
  const json stored = s.result_of(answer);
  if (progress) std::cerr << " stored\n";
  if (field(stored, "sha256") != sha)
    fail(kRefused, "otterd stored sha256 " + field(stored, "sha256") + " but the file has " + sha,
         "the image was damaged on the way: upload it again");
  json args = {{"model", model}, {"version", version}, {"sha256", sha}};
  if (auto v = inv.args.get("min-version")) args["min_version"] = *v;
  if (auto v = inv.args.get("notes")) args["notes"] = *v;
  if (key) args["image_sig"] = image_sig(*key, file.digest);
  const json release = s.request("release.add", args);
  if (inv.json_out) {
    print_json(release);
  } else {
    std::cout << "added release " << model << " " << version << "\n";
    print_release(release);
  }
  return kOk;
}

int cmd_releases(const invocation& inv, session& s) {
  want_positional(inv, 0);
  const auto limit = limit_of(inv);
  s.connect();
  const auto items = s.list("release.list", filters(inv, {"model"}), limit);
  if (inv.json_out) return print_json(items), kOk;
  table t({"MODEL", "VERSION", "SIZE", "SHA256", "SIGNED", "MIN_VERSION", "CREATED", "NOTES"});
  for (const auto& r : items)
    t.add({field(r, "model"), field(r, "version"), field(r, "size"),
           field(r, "sha256").substr(0, 12), field(r, "signed"), field(r, "min_version"),
           time_field(r, "created_at"), field(r, "notes")});
  std::cout << t.str();
  return kOk;
}

int cmd_release(const invocation& inv, session& s) {
  want_positional(inv, 2);
  s.connect();
  const json r = s.request(
      "release.get", {{"model", inv.args.positional[0]}, {"version", inv.args.positional[1]}});
  if (inv.json_out) return print_json(r), kOk;
  print_release(r);
  return kOk;
}

int cmd_metrics(const invocation& inv, session& s) {
  want_positional(inv, 0);
  s.connect();
  const json m = s.request("metrics.get", json::object());
  if (inv.json_out) return print_json(m), kOk;
  std::vector<std::pair<std::string, std::string>> rows;
  for (const auto& [k, v] : m.items())
    rows.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
  print_record(rows);
  return kOk;
}

json target_from(const invocation& inv) {
  int given = 0;
  json target;
  if (inv.args.has("all")) ++given, target = {{"type", "all"}};
  if (auto p = inv.args.get("percent")) {
    ++given;
    auto n = otter::ctl::parse_number(*p);
    if (!n || *n < 0 || *n > 100)
      fail(kUsage, "bad --percent " + *p, "give a number from 0 to 100, e.g. --percent 12.5");
    target = {{"type", "percent"}, {"percent", *n}};
  }
  if (auto d = inv.args.get("devices")) {
    ++given;
    auto ids = otter::ctl::split(*d, ',');
    if (ids.empty()) fail(kUsage, "--devices names no device", "give ids: --devices dev-1,dev-2");
    target = {{"type", "devices"}, {"ids", ids}};
  }
  if (auto g = inv.args.get("group")) {
    ++given;
    json attrs = json::object();
    for (const auto& pair : otter::ctl::split(*g, ',')) {
      const auto eq = pair.find('=');
      if (eq == std::string::npos || eq == 0)
        fail(kUsage, "bad --group pair \"" + pair + "\"",
             "give key=value pairs: --group site=lab,ring=1");
      attrs[pair.substr(0, eq)] = pair.substr(eq + 1);
    }
    if (attrs.empty())
      fail(kUsage, "--group names no attribute", "give key=value pairs: --group site=lab");
    target = {{"type", "group"}, {"attrs", attrs}};
  }
  if (given != 1)
    fail(kUsage, "rollout create needs exactly one target",
         "give one of --all, --percent P, --devices a,b or --group k=v");
  return target;
}

int cmd_rollout_create(const invocation& inv, session& s) {
  want_positional(inv, 1);
  json args = {{"name", inv.args.positional[0]},
               {"model", required(inv, "model")},
               {"version", required(inv, "version")},
               {"target", target_from(inv)}};
  if (inv.args.has("allow-downgrade")) args["allow_downgrade"] = true;
  s.connect();
  const json r = s.request("rollout.create", args);
  if (inv.json_out) return print_json(r), kOk;
  std::cout << "created rollout " << field(r, "id") << "\n";
  print_rollout(r);
  return kOk;
}

int cmd_rollout_widen(const invocation& inv, session& s) {
  want_positional(inv, 2);
  const auto& p = inv.args.positional[1];
  auto n = otter::ctl::parse_number(p);
  if (!n || *n < 0 || *n > 100)
    fail(kUsage, "bad PERCENT " + p,
         "give a number from 0 to 100, e.g. otterctl rollout widen 7 25");
  s.connect();
  const json r = s.request("rollout.update", {{"id", inv.args.positional[0]}, {"percent", *n}});
  if (inv.json_out) return print_json(r), kOk;
  std::cout << "rollout " << field(r, "id") << " now targets "
            << describe_target(r.value("target", json::object())) << "\n";
  return kOk;
}

int cmd_rollout_state(const invocation& inv, session& s, const std::string& verb) {
  want_positional(inv, 1);
  json args = {{"id", inv.args.positional[0]}};
  if (auto r = inv.args.get("reason")) args["reason"] = *r;
  s.connect();
  const json r = s.request("rollout." + verb, args);
  if (inv.json_out) return print_json(r), kOk;
  std::cout << "rollout " << field(r, "id") << " is " << field(r, "state") << "\n";
  return kOk;
}

int cmd_rollout_show(const invocation& inv, session& s) {
  want_positional(inv, 1);
  s.connect();
  json r = s.request("rollout.get", {{"id", inv.args.positional[0]}});
  const json counts = r.value("counts", json::object());
  auto count = [&](const char* k) {
    return counts.contains(k) && counts[k].is_number() ? counts[k].get<double>() : 0.0;
  };
  const double offered = count("offered");
  json rate = nullptr;  // undefined until a device was offered the release
  if (offered > 0) rate = (count("failed") + count("rolled_back")) / offered;
  if (inv.json_out) {
    r["failure_rate"] = rate;
    return print_json(r), kOk;
  }
  print_rollout(r);
  std::cout << "\n";
  table t({"STATE", "DEVICES"});
  for (const auto& [k, v] : counts.items()) t.add({k, cell(v)});
  std::cout << t.str() << "\n";
  if (rate.is_null()) {
    std::cout << "failure rate: n/a (no device offered yet)\n";
  } else {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f%%", rate.get<double>() * 100.0);
    std::cout << "failure rate: " << buf << " ((failed + rolled_back) / offered)\n";
  }
  return kOk;
}

int cmd_rollouts(const invocation& inv, session& s) {
  want_positional(inv, 0);
  const auto limit = limit_of(inv);
  s.connect();
  const auto items = s.list("rollout.list", filters(inv, {"state", "model"}), limit);
  if (inv.json_out) return print_json(items), kOk;
  table t({"ID", "NAME", "MODEL", "VERSION", "TARGET", "STATE", "CREATED_BY", "CREATED"});
  for (const auto& r : items)
    t.add({field(r, "id"), field(r, "name"), field(r, "model"), field(r, "version"),
           describe_target(r.value("target", json::object())), field(r, "state"),
           field(r, "created_by"), time_field(r, "created_at")});
  std::cout << t.str();
  return kOk;
}

std::string attrs_text(const json& d) {
  std::string s;
  if (d.contains("attrs") && d["attrs"].is_object())
    for (const auto& [k, v] : d["attrs"].items()) s += (s.empty() ? "" : ",") + k + "=" + cell(v);
  return s;
}

int cmd_devices(const invocation& inv, session& s) {
  want_positional(inv, 0);
  const auto limit = limit_of(inv);
  s.connect();
  const auto items = s.list("device.list", filters(inv, {"model", "version"}), limit);
  if (inv.json_out) return print_json(items), kOk;
  table t({"ID", "MODEL", "VERSION", "ATTRS", "FIRST_SEEN", "LAST_SEEN"});
  for (const auto& d : items)
    t.add({field(d, "id"), field(d, "model"), field(d, "version"), attrs_text(d),
           time_field(d, "first_seen"), time_field(d, "last_seen")});
  std::cout << t.str();
  return kOk;
}

int cmd_device(const invocation& inv, session& s) {
  want_positional(inv, 1);
  s.connect();
  const json d = s.request("device.get", {{"id", inv.args.positional[0]}});
  if (inv.json_out) return print_json(d), kOk;
  print_record({{"id", field(d, "id")},
                {"model", field(d, "model")},
                {"version", field(d, "version")},
                {"attrs", attrs_text(d)},
                {"first_seen", time_field(d, "first_seen")},
                {"last_seen", time_field(d, "last_seen")}});
  return kOk;
}

int cmd_status(const invocation& inv, session& s) {
  want_positional(inv, 0);
  const auto limit = limit_of(inv);
  s.connect();
  const auto items = s.list("status.list", filters(inv, {"device", "rollout", "state"}), limit);
  if (inv.json_out) return print_json(items), kOk;
  table t({"AT", "DEVICE", "ROLLOUT", "VERSION", "STATE", "PROGRESS", "ERROR"});
  for (const auto& r : items)
    t.add({time_field(r, "at"), field(r, "device"), field(r, "rollout"), field(r, "version"),
           field(r, "state"), field(r, "progress"), field(r, "error")});
  std::cout << t.str();
  return kOk;
}

std::vector<std::string> event_row(const json& e) {
  return {time_field(e, "at"), field(e, "kind"),    field(e, "device"),
          field(e, "actor"),   field(e, "rollout"), e.contains("data") ? e["data"].dump() : ""};
}

int cmd_events_follow(const invocation& inv, session& s) {
  std::optional<std::chrono::steady_clock::time_point> until;
  if (auto f = inv.args.get("for")) {
    auto n = otter::ctl::parse_number(*f);
    if (!n || *n <= 0) fail(kUsage, "bad --for " + *f, "give seconds, e.g. --for 60");
    until = std::chrono::steady_clock::now() +
            std::chrono::milliseconds(static_cast<long long>(*n * 1000));
  }
  const auto device = inv.args.get("device");
  const auto kind = inv.args.get("kind");
  if (kind && !otter::protocol::valid_name(*kind))
    fail(kUsage, "bad --kind " + *kind, "give an event kind such as command, status or check");
  // Shared with the MQTT handler, which may still run while this function returns.
  struct follow_state {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<json> queue;
  };
  auto st = std::make_shared<follow_state>();
  s.on_other_ = [st, device](const otter::mqtt::message& m) {
    json e = json::parse(m.payload, nullptr, false);
    if (!e.is_object()) return;
    if (device && field(e, "device") != *device) return;
    {
      std::lock_guard lock(st->mu);
      st->queue.push_back(std::move(e));
    }
    st->cv.notify_one();
  };
  s.connect({s.topics().event(kind ? *kind : "+")});
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  if (!inv.json_out) std::cout << "following events (Ctrl-C to stop)\n" << std::flush;
  while (!g_stop.load()) {
    if (until && std::chrono::steady_clock::now() >= *until) break;
    std::vector<json> batch;
    {
      std::unique_lock lock(st->mu);
      st->cv.wait_for(lock, 200ms, [&] { return !st->queue.empty(); });
      batch.swap(st->queue);
    }
    for (const auto& e : batch) {
      if (inv.json_out) {
        std::cout << e.dump() << "\n";
      } else {
        std::string line;
        for (const auto& c : event_row(e))
          if (!c.empty()) line += (line.empty() ? "" : "  ") + otter::ctl::printable(c);
        std::cout << line << "\n";
      }
    }
    std::cout << std::flush;
  }
  return kOk;
}

int cmd_events(const invocation& inv, session& s) {
  want_positional(inv, 0);
  if (inv.args.has("follow")) return cmd_events_follow(inv, s);
  if (inv.args.has("for")) fail(kUsage, "--for goes with --follow", "add --follow, or drop --for");
  const auto limit = limit_of(inv);
  json args = filters(inv, {"device", "kind"});
  if (auto since = inv.args.get("since")) {
    auto t = otter::ctl::parse_since(*since, std::time(nullptr));
    if (!t)
      fail(kUsage, "--since " + otter::ctl::printable(*since) + ": " + t.error().message,
           "give unix seconds, a UTC time like 2026-11-29T10:00:00Z, or an age like 30m, 2h, 7d");
    args["since"] = *t;
  }
  s.connect();
  const auto items = s.list("events.list", args, limit);
  if (inv.json_out) return print_json(items), kOk;
  table t({"AT", "KIND", "DEVICE", "ACTOR", "ROLLOUT", "DATA"});
  for (const auto& e : items) t.add(event_row(e));
  std::cout << t.str();
  return kOk;
}

int run(const std::vector<std::string>& argv) {
  // The command: the longest run of leading words (skipping global options) that names one.
  std::vector<std::string> words;
  std::vector<std::string> rest;
  bool skip_value = false;
  for (const auto& t : argv) {
    if (skip_value) {
      rest.push_back(t);
      skip_value = false;
      continue;
    }
    if (t.rfind("-", 0) == 0) {
      rest.push_back(t);
      for (const auto& o : global_options())
        if (t == "--" + o.name && !o.metavar.empty()) skip_value = true;
      continue;
    }
    if (words.size() < 2) {
      auto candidate = words;
      candidate.push_back(t);
      bool prefix = false;
      for (const auto& c : commands())
        if (c.words.size() >= candidate.size() &&
            std::equal(candidate.begin(), candidate.end(), c.words.begin()))
          prefix = true;
      if (prefix) {
        words = std::move(candidate);
        continue;
      }
    }
    rest.push_back(t);
  }
  const command_spec* spec = nullptr;
  for (const auto& c : commands())
    if (c.words == words) spec = &c;
  if (!spec) {
    const bool help = std::find(rest.begin(), rest.end(), "--help") != rest.end() ||
                      std::find(rest.begin(), rest.end(), "-h") != rest.end();
    if (words == std::vector<std::string>{"rollout"}) {
      std::string list;
      for (const auto& c : commands())
        if (c.words.size() == 2) list += "  otterctl rollout " + c.words[1] + " " + c.usage + "\n";
      const auto unknown = std::find_if(rest.begin(), rest.end(),
                                        [](const std::string& t) { return t.rfind("-", 0) != 0; });
      if (unknown != rest.end()) {
        std::cerr << "otterctl: unknown rollout subcommand \"" << otter::ctl::printable(*unknown)
                  << "\"; these are:\n"
                  << list;
        return kUsage;
      }
      if (help) {
        std::cout << "Usage:\n" << list;
        return kOk;
      }
      std::cerr << "otterctl: rollout needs a subcommand\n" << list;
      return kUsage;
    }
    if (help || (argv.empty())) {
      (help ? std::cout : std::cerr) << main_help();
      return help ? kOk : kUsage;
    }
    std::string what = "no command given";
    for (const auto& t : rest)
      if (t.rfind("-", 0) != 0) {
        what = "unknown command \"" + t + "\"";
        break;
      }
    fail(kUsage, what, "run otterctl --help for the list of commands");
  }
  std::vector<option> opts = global_options();
  opts.insert(opts.end(), spec->options.begin(), spec->options.end());
  auto parsed = otter::ctl::parse_args(rest, opts);
  if (!parsed)
    fail(kUsage, words_of(*spec) + ": " + parsed.error().message,
         "run otterctl " + words_of(*spec) + " --help");
  invocation inv{spec, std::move(*parsed)};
  if (inv.args.has("help")) {
    std::cout << command_help(*spec);
    return kOk;
  }
  inv.json_out = inv.args.has("json");
  spdlog::set_level(inv.args.has("verbose") ? spdlog::level::debug : spdlog::level::warn);

  const auto w = words_of(*spec);
  if (w == "keygen") return cmd_keygen(inv);
  if (w == "sign-image") return cmd_sign_image(inv);
  session s(connection_from(inv.args), w);
  if (w == "upload") return cmd_upload(inv, s);
  if (w == "releases") return cmd_releases(inv, s);
  if (w == "release") return cmd_release(inv, s);
  if (w == "metrics") return cmd_metrics(inv, s);
  if (w == "rollout create") return cmd_rollout_create(inv, s);
  if (w == "rollout widen") return cmd_rollout_widen(inv, s);
  if (w == "rollout pause") return cmd_rollout_state(inv, s, "pause");
  if (w == "rollout resume") return cmd_rollout_state(inv, s, "resume");
  if (w == "rollout cancel") return cmd_rollout_state(inv, s, "cancel");
  if (w == "rollout show") return cmd_rollout_show(inv, s);
  if (w == "rollouts") return cmd_rollouts(inv, s);
  if (w == "devices") return cmd_devices(inv, s);
  if (w == "device") return cmd_device(inv, s);
  if (w == "status") return cmd_status(inv, s);
  if (w == "events") return cmd_events(inv, s);
  fail(kUsage, "command " + w + " is not implemented", "");
}

}  // namespace

int main(int argc, char** argv) {
  // Quiet by default: the MQTT client's info logs are not for people running commands.
  spdlog::set_level(spdlog::level::warn);
  try {
    const int status = run(std::vector<std::string>(argv + 1, argv + argc));
    std::cout << std::flush;
    return status;
  } catch (const exit_now& e) {
    std::cout << std::flush;
    return e.status;
  } catch (const std::exception& e) {
    std::cerr << "otterctl: unexpected error: " << e.what()
              << "\n  please report it with the command you ran\n";
    return kUsage;
  }
}
