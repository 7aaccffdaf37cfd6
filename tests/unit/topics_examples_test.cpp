// The machine-readable contract (topics/schemas) and the C++ parsers must agree: every example a
// schema declares valid is accepted by the matching parser, and every invalid example of a
// message the service parses is refused with bad_request. tests/schema/validate.js checks the
// same files against the schemas themselves.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "protocol/commands.hpp"
#include "protocol/error.hpp"
#include "protocol/messages.hpp"
#include "support/files.hpp"

#ifndef OTTER_SOURCE_DIR
#error "OTTER_SOURCE_DIR must name the repository"
#endif

namespace {

using otter::test::read_file;

namespace fs = std::filesystem;
namespace protocol = otter::protocol;
using json = nlohmann::json;

const fs::path kRepo{OTTER_SOURCE_DIR};
const fs::path kSchemas = kRepo / "topics" / "schemas";
const fs::path kInvalid = kRepo / "topics" / "examples" / "invalid";
#ifdef OTTER_SHARED_DIR
const fs::path kShared{OTTER_SHARED_DIR};
#else
const fs::path kShared = kRepo / ".." / "shared";
#endif

json read_json(const fs::path& p) {
  return json::parse(read_file(p));
}

json schema_examples(const std::string& name) {
  const json doc = read_json(kSchemas / (name + ".schema.json"));
  if (!doc.contains("examples") || !doc["examples"].is_array()) return json::array();
  return doc["examples"];
}

// nullopt when the parser accepted the value, else its error.
using check_fn = std::function<std::optional<otter::error>(const json&)>;

template <class Parser>
check_fn wrap(Parser parser) {
  return [parser](const json& j) -> std::optional<otter::error> {
    auto r = parser(j);
    if (r.ok()) return std::nullopt;
    return r.error();
  };
}

// The args parser of every command (metrics.get takes no arguments: any object).
const std::map<std::string, check_fn>& args_parsers() {
  static const std::map<std::string, check_fn> parsers = {
      {"release.add", wrap(protocol::parse_release_add)},
      {"release.get", wrap(protocol::parse_release_get)},
      {"release.list", wrap(protocol::parse_release_list)},
      {"rollout.create", wrap(protocol::parse_rollout_create)},
      {"rollout.get", wrap(protocol::parse_rollout_ref)},
      {"rollout.list", wrap(protocol::parse_rollout_list)},
      {"rollout.update", wrap(protocol::parse_rollout_update)},
      {"rollout.pause", wrap(protocol::parse_rollout_ref)},
      {"rollout.resume", wrap(protocol::parse_rollout_ref)},
      {"rollout.cancel", wrap(protocol::parse_rollout_ref)},
      {"device.list", wrap(protocol::parse_device_list)},
      {"device.get", wrap(protocol::parse_device_get)},
      {"status.list", wrap(protocol::parse_status_list)},
      {"events.list", wrap(protocol::parse_events_list)},
      {"metrics.get",
       [](const json& j) -> std::optional<otter::error> {
         if (j.is_object()) return std::nullopt;
         return otter::make_error(otter::errc::bad_request, "args must be an object");
       }},
  };
  return parsers;
}

// What the service does with an operator request before running it: the envelope, then the
// command name (unknown: bad_request), then the command's arguments.
std::optional<otter::error> admin_request_refusal(const json& j) {
  auto env = protocol::parse_admin_request(j);
  if (!env.ok()) return env.error();
  if (!protocol::is_known_command(env->cmd)) {
    return otter::make_error(otter::errc::bad_request, "unknown command: " + env->cmd);
  }
  const auto it = args_parsers().find(env->cmd);
  if (it == args_parsers().end()) {
    return otter::make_error(otter::errc::internal, "test has no args parser for " + env->cmd);
  }
  return it->second(env->args);
}

// The message parsers, keyed by schema name.
const std::map<std::string, check_fn>& message_parsers() {
  static const std::map<std::string, check_fn> parsers = {
      {"check", wrap(protocol::parse_check)},
      {"status", wrap(protocol::parse_status)},
      {"chunk-request", wrap(protocol::parse_chunk_request)},
      {"admin-request", admin_request_refusal},
  };
  return parsers;
}

std::string describe(const std::optional<otter::error>& e) {
  if (!e) return "accepted";
  return std::string(otter::to_string(e->code)) + ": " + e->message;
}

std::vector<fs::path> sorted_files(const fs::path& dir, const std::string& suffix) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(entry.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() > prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

void expect_examples_accepted(const std::string& schema, const check_fn& parse) {
  const json examples = schema_examples(schema);
  ASSERT_FALSE(examples.empty()) << schema << ".schema.json has no examples";
  for (std::size_t i = 0; i < examples.size(); ++i) {
    SCOPED_TRACE(schema + " example " + std::to_string(i) + ": " + examples[i].dump());
    EXPECT_TRUE(protocol::parse_object(examples[i].dump()).ok());
    const auto err = parse(examples[i]);
    EXPECT_FALSE(err.has_value()) << describe(err);
  }
}

TEST(topics_examples, check_examples_parse) {
  expect_examples_accepted("check", message_parsers().at("check"));
}

TEST(topics_examples, status_examples_parse) {
  expect_examples_accepted("status", message_parsers().at("status"));
}

TEST(topics_examples, chunk_request_examples_parse) {
  expect_examples_accepted("chunk-request", message_parsers().at("chunk-request"));
}

TEST(topics_examples, admin_request_examples_parse_with_their_args) {
  expect_examples_accepted("admin-request", message_parsers().at("admin-request"));
}

TEST(topics_examples, every_args_schema_has_a_parser_and_its_examples_parse) {
  const auto files = sorted_files(kSchemas, ".schema.json");
  std::size_t seen = 0;
  for (const auto& file : files) {
    std::string name = file.filename().string();
    name.resize(name.size() - std::string(".schema.json").size());
    if (!starts_with(name, "args-")) continue;
    const std::string cmd = name.substr(5);
    SCOPED_TRACE(name);
    ++seen;
    EXPECT_TRUE(protocol::is_known_command(cmd)) << cmd;
    const auto it = args_parsers().find(cmd);
    ASSERT_NE(it, args_parsers().end()) << "no args parser for " << cmd;
    expect_examples_accepted(name, it->second);
  }
  EXPECT_EQ(seen, args_parsers().size()) << "one args schema per command";
}

TEST(topics_examples, command_enum_matches_known_commands) {
  const json doc = read_json(kSchemas / "admin-request.schema.json");
  const json& cmds = doc.at("properties").at("cmd").at("enum");
  ASSERT_EQ(cmds.size(), args_parsers().size());
  for (const auto& c : cmds) {
    EXPECT_TRUE(protocol::is_known_command(c.get<std::string>())) << c;
    EXPECT_EQ(args_parsers().count(c.get<std::string>()), 1u) << c;
  }
  EXPECT_FALSE(protocol::is_known_command("rollout.delete"));
  EXPECT_FALSE(protocol::is_known_command(""));
}

TEST(topics_examples, invalid_examples_are_refused_with_bad_request) {
  std::size_t messages = 0;
  std::size_t args = 0;
  for (const auto& file : sorted_files(kInvalid, ".json")) {
    const std::string name = file.filename().string();
    SCOPED_TRACE("topics/examples/invalid/" + name);
    check_fn parse;
    for (const auto& [schema, fn] : message_parsers()) {
      if (starts_with(name, schema + ".")) parse = fn;
    }
    if (parse) {
      ++messages;
    } else if (starts_with(name, "args-")) {
      // args-<cmd>.<case>.json: the longest command name that prefixes the rest.
      std::string best;
      for (const auto& [cmd, fn] : args_parsers()) {
        if (starts_with(name, "args-" + cmd + ".") && cmd.size() > best.size()) {
          best = cmd;
          parse = fn;
        }
      }
      ASSERT_TRUE(parse) << "invalid args example of an unknown command";
      ++args;
    } else {
      continue;  // a schema the service does not parse (results, offer, manifest, ...)
    }
    const json payload = read_json(file);
    const auto err = parse(payload);
    ASSERT_TRUE(err.has_value()) << "accepted, must be refused: " << payload.dump();
    EXPECT_EQ(err->code, otter::errc::bad_request) << describe(err);
  }
  EXPECT_GE(messages, 12u);
  EXPECT_GE(args, 1u);
}

// The fenced ```json examples of PROTOCOL.md, by the "### " heading above each.
TEST(topics_examples, protocol_document_examples_parse) {
  const fs::path doc = kShared / "PROTOCOL.md";
  if (!fs::exists(doc)) GTEST_SKIP() << doc << " not found";
  const std::map<std::string, std::string> by_heading = {
      {"check", "check"}, {"chunk request", "chunk-request"}, {"status", "status"}};
  std::istringstream in(read_file(doc));
  std::string line;
  std::string heading;
  std::size_t found = 0;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("#", 0) == 0) {
      heading = line.rfind("### ", 0) == 0 ? line.substr(4) : std::string();
      continue;
    }
    if (line.rfind("```json", 0) != 0) continue;
    std::string body;
    while (std::getline(in, line) && line.rfind("```", 0) != 0) body += line + "\n";
    const auto it = by_heading.find(heading);
    if (it == by_heading.end()) continue;
    SCOPED_TRACE("PROTOCOL.md ### " + heading);
    ++found;
    const auto parsed = protocol::parse_object(body);
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    const auto err = message_parsers().at(it->second)(*parsed);
    EXPECT_FALSE(err.has_value()) << describe(err);
  }
  EXPECT_EQ(found, by_heading.size());
}

// The README's examples marked <!-- schema: NAME -->: those the service parses must parse.
TEST(topics_examples, readme_examples_parse) {
  const fs::path doc = fs::path(OTTER_SOURCE_DIR) / "README.md";
  std::istringstream in(read_file(doc));
  std::string line;
  std::string schema;
  std::size_t found = 0;
  while (std::getline(in, line)) {
    const std::string marker = "<!-- schema: ";
    if (line.rfind(marker, 0) == 0) {
      schema = line.substr(marker.size(), line.find(" -->") - marker.size());
      continue;
    }
    if (line.rfind("```json", 0) != 0) {
      if (!line.empty()) schema.clear();
      continue;
    }
    std::string body;
    while (std::getline(in, line) && line.rfind("```", 0) != 0) body += line + "\n";
    const auto it = message_parsers().find(schema);
    schema.clear();
    if (it == message_parsers().end()) continue;
    SCOPED_TRACE("README.md block for " + it->first + ": " + body);
    ++found;
    const auto parsed = protocol::parse_object(body);
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    const auto err = it->second(*parsed);
    EXPECT_FALSE(err.has_value()) << describe(err);
  }
  EXPECT_GE(found, 5u) << "the README's check, status and admin-request examples";
}

}  // namespace
