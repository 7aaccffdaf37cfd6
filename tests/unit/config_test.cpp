#include "config/config.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "protocol/ids.hpp"

namespace otter::config {
namespace {

using args_t = std::vector<std::string>;
using env_map = std::map<std::string, std::string>;

env_lookup fake_env(env_map vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    if (auto it = vars.find(name); it != vars.end()) return it->second;
    return std::nullopt;
  };
}

// The two settings the service cannot start without.
env_map required() {
  return {{"OTTER_DB_URL", "postgresql://otter@localhost/otter"},
          {"OTTER_SIGNING_KEY", "/etc/otter/signing.pem"}};
}

env_map with(env_map base, const std::string& name, const std::string& value) {
  base[name] = value;
  return base;
}

settings load_ok(const args_t& args, const env_map& env) {
  auto r = load(args, fake_env(env));
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? r.value() : settings{};
}

// Loads with one variable set by the environment and expects an error that names it.
std::string env_error(const std::string& name, const std::string& value) {
  auto r = load({}, fake_env(with(required(), name, value)));
  EXPECT_FALSE(r.ok()) << name << "=" << value << " was accepted";
  if (r.ok()) return {};
  EXPECT_EQ(r.error().code, errc::bad_request);
  EXPECT_NE(r.error().message.find(name), std::string::npos) << r.error().message;
  return r.error().message;
}

TEST(config, defaults) {
  const settings s = load_ok({}, required());
  EXPECT_EQ(s.mqtt_url, "tcp://127.0.0.1:1883");
  EXPECT_EQ(s.mqtt_user, "");
  EXPECT_EQ(s.mqtt_password, "");
  EXPECT_EQ(s.topic_root, "ota/v1");
  EXPECT_EQ(s.data_dir, "./otter-data");
  EXPECT_TRUE(s.operators.empty());
  EXPECT_TRUE(protocol::valid_name(s.instance)) << s.instance;
  EXPECT_EQ(s.mqtt_client_id, "otterd-" + s.instance);
  EXPECT_EQ(s.manifest_ttl, std::chrono::seconds(3600));
  EXPECT_EQ(s.retry, std::chrono::seconds(600));
  EXPECT_EQ(s.log_level, "info");
  EXPECT_EQ(s.log_format, "text");
  EXPECT_EQ(s.max_upload, 16u * 1024 * 1024);
  EXPECT_EQ(s.queue_limit, 100000u);
  EXPECT_EQ(s.share_group, "");
  EXPECT_EQ(s.http_addr, "");
  EXPECT_EQ(s.public_url, "");
  EXPECT_EQ(s.link_secret_file, "");
  EXPECT_EQ(s.release_keys, "");
  EXPECT_FALSE(s.require_signed);
  EXPECT_EQ(s.chunk_max, 4096u);
  EXPECT_EQ(s.chunk_window, 16u);
  EXPECT_EQ(s.upload_gc, std::chrono::hours(24));
  EXPECT_FALSE(s.published_events) << "every kind by default (PROTOCOL.md)";
  EXPECT_TRUE(s.publishes_event("check"));
}

TEST(config, env_only) {
  env_map env = required();
  env["OTTER_MQTT_URL"] = "ssl://broker.example.com:8883";
  env["OTTER_MQTT_USER"] = "otterd";
  env["OTTER_MQTT_PASSWORD"] = "s3cret";
  env["OTTER_TOPIC_ROOT"] = "fleet/ota";
  env["OTTER_DATA_DIR"] = "/var/lib/otter";
  env["OTTER_OPERATORS"] = "alice:admin,bob:viewer";
  env["OTTER_INSTANCE"] = "node-1";
  env["OTTER_MANIFEST_TTL"] = "2h";
  env["OTTER_RETRY_S"] = "30";
  env["OTTER_LOG_LEVEL"] = "debug";
  env["OTTER_LOG_FORMAT"] = "json";
  env["OTTER_MAX_UPLOAD"] = "64M";
  env["OTTER_QUEUE_LIMIT"] = "5000";
  env["OTTER_SHARE_GROUP"] = "otter";
  env["OTTER_HTTP_ADDR"] = "0.0.0.0:8080";
  env["OTTER_PUBLIC_URL"] = "https://ota.example.com/";
  env["OTTER_LINK_SECRET_FILE"] = "/etc/otter/link.key";
  env["OTTER_RELEASE_KEYS"] = "/etc/otter/release-keys.pem";
  env["OTTER_REQUIRE_SIGNED"] = "yes";
  env["OTTER_CHUNK_MAX"] = "8192";
  env["OTTER_CHUNK_WINDOW"] = "32";
  env["OTTER_UPLOAD_GC"] = "2d";
  env["OTTER_EVENTS"] = "Status, command";
  const settings s = load_ok({}, env);
  EXPECT_EQ(s.mqtt_url, "ssl://broker.example.com:8883");
  EXPECT_EQ(s.mqtt_user, "otterd");
  EXPECT_EQ(s.mqtt_password, "s3cret");
  EXPECT_EQ(s.db_url, "postgresql://otter@localhost/otter");
  EXPECT_EQ(s.signing_key, "/etc/otter/signing.pem");
  EXPECT_EQ(s.topic_root, "fleet/ota");
  EXPECT_EQ(s.data_dir, "/var/lib/otter");
  EXPECT_EQ(s.operators.size(), 2u);
  EXPECT_EQ(s.instance, "node-1");
  EXPECT_EQ(s.mqtt_client_id, "otterd-node-1");
  EXPECT_EQ(s.manifest_ttl, std::chrono::hours(2));
  EXPECT_EQ(s.retry, std::chrono::seconds(30));
  EXPECT_EQ(s.log_level, "debug");
  EXPECT_EQ(s.log_format, "json");
  EXPECT_EQ(s.max_upload, 64u * 1024 * 1024);
  EXPECT_EQ(s.queue_limit, 5000u);
  EXPECT_EQ(s.share_group, "otter");
  EXPECT_EQ(s.http_addr, "0.0.0.0:8080");
  EXPECT_EQ(s.public_url, "https://ota.example.com");  // trailing slash dropped
  EXPECT_EQ(s.link_secret_file, "/etc/otter/link.key");
  EXPECT_EQ(s.release_keys, "/etc/otter/release-keys.pem");
  EXPECT_TRUE(s.require_signed);
  EXPECT_EQ(s.chunk_max, 8192u);
  EXPECT_EQ(s.chunk_window, 32u);
  EXPECT_EQ(s.upload_gc, std::chrono::hours(48));
  EXPECT_EQ(s.published_events, (std::set<std::string>{"command", "status"}));
  EXPECT_TRUE(s.publishes_event("status"));
  EXPECT_FALSE(s.publishes_event("check"));
}

TEST(config, empty_env_counts_as_unset) {
  const settings s = load_ok({}, with(required(), "OTTER_MANIFEST_TTL", ""));
  EXPECT_EQ(s.manifest_ttl, std::chrono::seconds(3600));
}

TEST(config, flag_overrides_env) {
  env_map env = with(required(), "OTTER_MANIFEST_TTL", "120");
  env["OTTER_TOPIC_ROOT"] = "from/env";
  const settings s = load_ok({"--manifest-ttl", "600", "--topic-root=from/flag"}, env);
  EXPECT_EQ(s.manifest_ttl, std::chrono::seconds(600));
  EXPECT_EQ(s.topic_root, "from/flag");
}

TEST(config, flag_overrides_invalid_env) {
  // The environment value is never looked at when the flag is given.
  const settings s =
      load_ok({"--manifest-ttl=1h"}, with(required(), "OTTER_MANIFEST_TTL", "garbage"));
  EXPECT_EQ(s.manifest_ttl, std::chrono::hours(1));
}

TEST(config, both_flag_syntaxes) {
  const args_t args = {"--db-url", "host=db dbname=otter",     "--signing-key=/k.pem", "--instance",
                       "a.b_c-1",  "--mqtt-password=--dashes", "--share-group",        "grp"};
  const settings s = load_ok(args, {});
  EXPECT_EQ(s.db_url, "host=db dbname=otter");
  EXPECT_EQ(s.signing_key, "/k.pem");
  EXPECT_EQ(s.instance, "a.b_c-1");
  EXPECT_EQ(s.mqtt_password, "--dashes");
  EXPECT_EQ(s.share_group, "grp");
}

TEST(config, equals_form_keeps_further_equals) {
  const settings s = load_ok({"--db-url=host=db password=x=y"}, required());
  EXPECT_EQ(s.db_url, "host=db password=x=y");
}

TEST(config, boolean_flag_alone) {
  env_map env = with(required(), "OTTER_RELEASE_KEYS", "/keys");
  EXPECT_TRUE(load_ok({"--require-signed"}, env).require_signed);
  EXPECT_TRUE(load_ok({"--require-signed", "--log-level=info"}, env).require_signed);
  EXPECT_FALSE(load_ok({"--require-signed", "no"}, env).require_signed);
  EXPECT_FALSE(load_ok({"--require-signed=false"}, env).require_signed);
  EXPECT_TRUE(load_ok({"--require-signed=1"}, env).require_signed);
}

TEST(config, unknown_flag) {
  auto r = load({"--bogus", "1"}, fake_env(required()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::bad_request);
  EXPECT_EQ(r.error().message, "unknown option --bogus; see --help");
  r = load({"--bogus=1"}, fake_env(required()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "unknown option --bogus; see --help");
  r = load({"-x"}, fake_env(required()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "unknown option -x; see --help");
}

TEST(config, stray_argument) {
  auto r = load({"serve"}, fake_env(required()));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("unexpected argument \"serve\""), std::string::npos);
}

TEST(config, flag_without_value) {
  for (const args_t& args : {args_t{"--manifest-ttl"}, args_t{"--manifest-ttl", "--retry-s=60"}}) {
    auto r = load(args, fake_env(required()));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("OTTER_MANIFEST_TTL (--manifest-ttl)"), std::string::npos)
        << r.error().message;
    EXPECT_NE(r.error().message.find("missing value"), std::string::npos) << r.error().message;
  }
}

TEST(config, flag_twice) {
  auto r = load({"--retry-s=60", "--retry-s", "70"}, fake_env(required()));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("OTTER_RETRY_S"), std::string::npos);
}

TEST(config, help) {
  EXPECT_TRUE(wants_help({"--help"}));
  EXPECT_TRUE(wants_help({"--log-level", "debug", "-h"}));
  EXPECT_FALSE(wants_help({"--mqtt-password", "-h"}));  // a value, not a request
  EXPECT_FALSE(wants_help({"--mqtt-password=--help"}));
  EXPECT_FALSE(wants_help({}));
  auto r = load({"--help"}, fake_env(required()));
  EXPECT_FALSE(r.ok());
}

TEST(config, required_settings) {
  auto r = load({}, fake_env({{"OTTER_DB_URL", "postgres://db/otter"}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::bad_request);
  EXPECT_NE(r.error().message.find("OTTER_SIGNING_KEY (--signing-key) is required"),
            std::string::npos);
  EXPECT_NE(r.error().message.find("otterd keygen"), std::string::npos);

  r = load({}, fake_env({{"OTTER_SIGNING_KEY", "/k.pem"}}));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("OTTER_DB_URL (--db-url) is required"), std::string::npos);

  // An explicitly empty flag does not satisfy a requirement.
  r = load({"--db-url="}, fake_env(required()));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("OTTER_DB_URL"), std::string::npos);

  // Tools that need neither can load without them.
  r = load({}, fake_env({}), /*require_service_settings=*/false);
  EXPECT_TRUE(r.ok());
}

TEST(config, inline_pem_signing_key) {
  const std::string pem =
      "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"
      "-----END PRIVATE KEY-----\n";
  const settings s = load_ok({}, with(required(), "OTTER_SIGNING_KEY", pem));
  EXPECT_EQ(s.signing_key, pem);
  const std::string d = describe(s);
  EXPECT_EQ(d.find("MIGHAgEA"), std::string::npos) << d;
}

TEST(config, validation_failures_name_the_variable) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"OTTER_MQTT_URL", "mqtt://localhost:1883"},
      {"OTTER_MQTT_URL", "tcp://localhost"},
      {"OTTER_MQTT_URL", "tcp://localhost:0"},
      {"OTTER_MQTT_URL", "tcp://localhost:65536"},
      {"OTTER_MQTT_URL", "tcp://:1883"},
      {"OTTER_MQTT_URL", "tcp://user:pw@localhost:1883"},
      {"OTTER_MQTT_URL", "ssl://localhost:8883/path"},
      {"OTTER_DB_URL", "localhost"},
      {"OTTER_DB_URL", "host='unterminated"},
      {"OTTER_DB_URL", "postgresql://db/otter name"},
      {"OTTER_TOPIC_ROOT", "/ota/v1"},
      {"OTTER_TOPIC_ROOT", "ota/v1/"},
      {"OTTER_TOPIC_ROOT", "ota/+"},
      {"OTTER_TOPIC_ROOT", "ota/#"},
      {"OTTER_OPERATORS", "alice"},
      {"OTTER_OPERATORS", "alice:root"},
      {"OTTER_INSTANCE", "bad name"},
      {"OTTER_INSTANCE", std::string(65, 'a')},
      {"OTTER_MANIFEST_TTL", "abc"},
      {"OTTER_MANIFEST_TTL", "59"},
      {"OTTER_MANIFEST_TTL", "8d"},
      {"OTTER_MANIFEST_TTL", "-60"},
      {"OTTER_MANIFEST_TTL", "1h30m"},
      {"OTTER_MANIFEST_TTL", "99999999999999999999999"},
      {"OTTER_MANIFEST_TTL", "99999999999999999d"},
      {"OTTER_RETRY_S", "9"},
      {"OTTER_RETRY_S", "1w"},
      {"OTTER_LOG_LEVEL", "verbose"},
      {"OTTER_LOG_FORMAT", "xml"},
      {"OTTER_MAX_UPLOAD", "0"},
      {"OTTER_MAX_UPLOAD", "2G"},
      {"OTTER_MAX_UPLOAD", "16MB"},
      {"OTTER_MAX_UPLOAD", "1.5M"},
      {"OTTER_QUEUE_LIMIT", "999"},
      {"OTTER_QUEUE_LIMIT", "10000001"},
      {"OTTER_QUEUE_LIMIT", "1e6"},
      {"OTTER_SHARE_GROUP", "a/b"},
      {"OTTER_SHARE_GROUP", "a+"},
      {"OTTER_HTTP_ADDR", "8080"},
      {"OTTER_HTTP_ADDR", "localhost:http"},
      {"OTTER_PUBLIC_URL", "ota.example.com"},
      {"OTTER_PUBLIC_URL", "ftp://ota.example.com"},
      {"OTTER_PUBLIC_URL", "https://"},
      {"OTTER_REQUIRE_SIGNED", "maybe"},
      {"OTTER_CHUNK_MAX", "63"},
      {"OTTER_CHUNK_MAX", "65537"},
      {"OTTER_CHUNK_WINDOW", "0"},
      {"OTTER_CHUNK_WINDOW", "257"},
      {"OTTER_UPLOAD_GC", "10s"},
      {"OTTER_UPLOAD_GC", "31d"},
      {"OTTER_EVENTS", "checks"},
      {"OTTER_EVENTS", "status,,command"},
      {"OTTER_MQTT_CLIENT_ID", std::string(300, 'c')},
  };
  for (const auto& [name, value] : bad) {
    SCOPED_TRACE(name + "=" + value);
    env_error(name, value);
  }
}

TEST(config, error_messages_say_what_is_expected) {
  EXPECT_EQ(env_error("OTTER_MANIFEST_TTL", "abc"),
            "OTTER_MANIFEST_TTL (--manifest-ttl): \"abc\" is not a duration; expected seconds "
            "(60..604800) or a number with s/m/h/d");
  EXPECT_EQ(env_error("OTTER_MANIFEST_TTL", "30"),
            "OTTER_MANIFEST_TTL (--manifest-ttl): \"30\" is out of range; expected 60..604800 "
            "seconds (1m..7d)");
  EXPECT_NE(env_error("OTTER_MAX_UPLOAD", "2G").find("1073741824"), std::string::npos);
  EXPECT_NE(env_error("OTTER_LOG_LEVEL", "loud").find("trace, debug, info"), std::string::npos);
  // Control characters are made visible.
  EXPECT_NE(env_error("OTTER_RETRY_S", "60\n").find("\"60\\x0a\""), std::string::npos);
}

TEST(config, flag_errors_name_the_variable_too) {
  auto r = load({"--chunk-window=0"}, fake_env(required()));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("OTTER_CHUNK_WINDOW (--chunk-window)"), std::string::npos);
}

TEST(config, db_url_error_does_not_leak_password) {
  const std::string msg = env_error("OTTER_DB_URL", "postgresql://u:hunter2@db/x y");
  EXPECT_EQ(msg.find("hunter2"), std::string::npos) << msg;
  const std::string msg2 = env_error("OTTER_DB_URL", "host=db password='hunter2");
  EXPECT_EQ(msg2.find("hunter2"), std::string::npos) << msg2;
}

TEST(config, require_signed_needs_release_keys) {
  const std::string msg = env_error("OTTER_REQUIRE_SIGNED", "true");
  EXPECT_NE(msg.find("OTTER_RELEASE_KEYS"), std::string::npos);
}

TEST(config, valid_boundaries) {
  env_map env = required();
  env["OTTER_MANIFEST_TTL"] = "60";
  env["OTTER_RETRY_S"] = "7d";
  env["OTTER_MAX_UPLOAD"] = "1G";
  env["OTTER_QUEUE_LIMIT"] = "10000000";
  env["OTTER_CHUNK_MAX"] = "65536";
  env["OTTER_CHUNK_WINDOW"] = "1";
  env["OTTER_MQTT_URL"] = "tcp://[::1]:65535";
  env["OTTER_HTTP_ADDR"] = "[::]:1";
  env["OTTER_UPLOAD_GC"] = "30d";
  const settings s = load_ok({}, env);
  EXPECT_EQ(s.manifest_ttl, std::chrono::seconds(60));
  EXPECT_EQ(s.retry, std::chrono::seconds(604800));
  EXPECT_EQ(s.max_upload, 1024u * 1024 * 1024);
  EXPECT_EQ(s.queue_limit, 10000000u);
  EXPECT_EQ(s.chunk_max, 65536u);
  EXPECT_EQ(s.chunk_window, 1u);
  EXPECT_EQ(s.upload_gc, std::chrono::hours(24 * 30));
}

TEST(config, durations) {
  const std::vector<std::pair<std::string, long>> cases = {
      {"3600", 3600}, {"90s", 90},    {"90m", 5400}, {"1h", 3600},
      {"2d", 172800}, {"7d", 604800}, {"5M", 300},   {"1H", 3600},
  };
  for (const auto& [text, secs] : cases) {
    SCOPED_TRACE(text);
    EXPECT_EQ(load_ok({"--manifest-ttl", text}, required()).manifest_ttl.count(), secs);
  }
}

TEST(config, event_retention) {
  EXPECT_EQ(load_ok({}, required()).event_retention, std::chrono::days{30});
  EXPECT_EQ(load_ok({"--event-retention", "0"}, required()).event_retention.count(), 0);
  EXPECT_EQ(load_ok({"--event-retention", "1d"}, required()).event_retention, std::chrono::days{1});
  EXPECT_EQ(load_ok({"--event-retention", "3650d"}, required()).event_retention,
            std::chrono::days{3650});
  EXPECT_NE(env_error("OTTER_EVENT_RETENTION", "12h").find("expected 1d..3650d, or 0"),
            std::string::npos);
  EXPECT_NE(env_error("OTTER_EVENT_RETENTION", "3651d").find("out of range"), std::string::npos);
  EXPECT_NE(env_error("OTTER_EVENT_RETENTION", "forever").find("not a duration"),
            std::string::npos);
  // Offers restore chunk grants after a restart for as long as a manifest is valid.
  auto r = load({"--event-retention", "2d", "--manifest-ttl", "7d"}, fake_env(required()));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("OTTER_EVENT_RETENTION (--event-retention) 2d is shorter than "
                                   "OTTER_MANIFEST_TTL (--manifest-ttl) 7d"),
            std::string::npos)
      << r.error().message;
  EXPECT_EQ(load_ok({"--event-retention", "0", "--manifest-ttl", "7d"}, required())
                .event_retention.count(),
            0);
}

TEST(config, sizes) {
  const std::vector<std::pair<std::string, std::uint64_t>> cases = {
      {"1", 1},           {"1000", 1000},       {"4K", 4096},     {"4KiB", 4096},     {"4k", 4096},
      {"16M", 16u << 20}, {"16MiB", 16u << 20}, {"1G", 1u << 30}, {"1GiB", 1u << 30},
  };
  for (const auto& [text, bytes] : cases) {
    SCOPED_TRACE(text);
    EXPECT_EQ(load_ok({"--max-upload=" + text}, required()).max_upload, bytes);
  }
}

TEST(config, operators) {
  const settings s =
      load_ok({}, with(required(), "OTTER_OPERATORS", " alice:admin, bob.x:viewer,carol-1:admin,"));
  ASSERT_EQ(s.operators.size(), 3u);
  EXPECT_EQ(s.operators.at("alice"), role::admin);
  EXPECT_EQ(s.operators.at("bob.x"), role::viewer);
  EXPECT_EQ(s.operators.at("carol-1"), role::admin);

  EXPECT_NE(env_error("OTTER_OPERATORS", "alice:root").find("admin or viewer"), std::string::npos);
  EXPECT_NE(env_error("OTTER_OPERATORS", "al ice:admin").find("operator name"), std::string::npos);
  EXPECT_NE(env_error("OTTER_OPERATORS", "a/b:admin").find("operator name"), std::string::npos);
  EXPECT_NE(env_error("OTTER_OPERATORS", ":admin").find("operator name"), std::string::npos);
  EXPECT_NE(env_error("OTTER_OPERATORS", "alice:admin,alice:viewer").find("twice"),
            std::string::npos);
  EXPECT_NE(env_error("OTTER_OPERATORS", "alice:admin,alice:admin").find("twice"),
            std::string::npos);
}

TEST(config, no_operators_warns) {
  const settings s = load_ok({"--operators="}, required());
  EXPECT_TRUE(s.operators.empty());
  const auto w = warnings(s);
  ASSERT_FALSE(w.empty());
  EXPECT_NE(w.front().find("OTTER_OPERATORS"), std::string::npos);

  const settings t = load_ok({}, with(required(), "OTTER_OPERATORS", "alice:admin"));
  EXPECT_TRUE(warnings(t).empty());
}

TEST(config, plaintext_password_warns_only_off_loopback) {
  env_map env = with(required(), "OTTER_OPERATORS", "alice:admin");
  env["OTTER_MQTT_PASSWORD"] = "pw";
  EXPECT_TRUE(warnings(load_ok({}, env)).empty());
  env["OTTER_MQTT_URL"] = "tcp://broker.example.com:1883";
  const auto w = warnings(load_ok({}, env));
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w.front().find("ssl://"), std::string::npos);
  env["OTTER_MQTT_URL"] = "ssl://broker.example.com:8883";
  EXPECT_TRUE(warnings(load_ok({}, env)).empty());
}

TEST(config, describe_masks_secrets) {
  env_map env = required();
  env["OTTER_MQTT_PASSWORD"] = "mqtt-hunter2";
  env["OTTER_DB_URL"] = "postgresql://otter:db-hunter2@db:5432/otter?sslmode=require";
  env["OTTER_OPERATORS"] = "alice:admin";
  const settings s = load_ok({}, env);
  const std::string d = describe(s);
  EXPECT_EQ(d.find("hunter2"), std::string::npos) << d;
  EXPECT_NE(d.find("postgresql://otter:***@db:5432/otter?sslmode=require"), std::string::npos) << d;
  EXPECT_NE(d.find("alice:admin"), std::string::npos) << d;
  for (const auto& o : options()) EXPECT_NE(d.find(o.env), std::string::npos) << o.env;
  // One line per setting.
  EXPECT_EQ(static_cast<std::size_t>(std::count(d.begin(), d.end(), '\n')), options().size());
}

TEST(config, redact_db_url) {
  EXPECT_EQ(redact_db_url("postgresql://u:pw@h/db"), "postgresql://u:***@h/db");
  EXPECT_EQ(redact_db_url("postgres://u@h/db"), "postgres://u@h/db");
  EXPECT_EQ(redact_db_url("postgresql://h/db?user=u&password=pw&sslmode=require"),
            "postgresql://h/db?user=u&password=***&sslmode=require");
  EXPECT_EQ(redact_db_url("postgresql://u:p%40w@h1,h2/db"), "postgresql://u:***@h1,h2/db");
  EXPECT_EQ(redact_db_url("host=db password=pw user=u"), "host=db password=*** user=u");
  EXPECT_EQ(redact_db_url("host=db password = 'p w\\'x' user=u"), "host=db password = *** user=u");
  EXPECT_EQ(redact_db_url("host=db password='open"), "host=db password=***");
  EXPECT_EQ(redact_db_url(""), "");
}

TEST(config, help_lists_every_setting) {
  const std::string h = help_text("otterd", "serve [options]");
  EXPECT_EQ(h.rfind("Usage: otterd serve [options]", 0), 0u) << h;
  for (const auto& o : options()) {
    EXPECT_NE(h.find(o.env), std::string::npos) << o.env;
    EXPECT_NE(h.find(o.flag), std::string::npos) << o.flag;
  }
  const std::vector<std::string> all = {
      "OTTER_MQTT_URL",       "OTTER_MQTT_USER",        "OTTER_MQTT_PASSWORD",
      "OTTER_MQTT_CLIENT_ID", "OTTER_DB_URL",           "OTTER_SIGNING_KEY",
      "OTTER_TOPIC_ROOT",     "OTTER_DATA_DIR",         "OTTER_OPERATORS",
      "OTTER_INSTANCE",       "OTTER_MANIFEST_TTL",     "OTTER_RETRY_S",
      "OTTER_LOG_LEVEL",      "OTTER_LOG_FORMAT",       "OTTER_MAX_UPLOAD",
      "OTTER_QUEUE_LIMIT",    "OTTER_SHARE_GROUP",      "OTTER_HTTP_ADDR",
      "OTTER_PUBLIC_URL",     "OTTER_LINK_SECRET_FILE", "OTTER_RELEASE_KEYS",
      "OTTER_REQUIRE_SIGNED", "OTTER_CHUNK_MAX",        "OTTER_CHUNK_WINDOW",
      "OTTER_UPLOAD_GC",      "OTTER_EVENT_RETENTION",  "OTTER_EVENTS"};
  EXPECT_EQ(options().size(), all.size());
  for (const auto& name : all) EXPECT_NE(h.find(name), std::string::npos) << name;
}

TEST(config, events_none_and_all) {
  auto env = with(required(), "OTTER_EVENTS", "none");
  auto s = load_ok({}, env);
  ASSERT_TRUE(s.published_events);
  EXPECT_TRUE(s.published_events->empty());
  EXPECT_FALSE(s.publishes_event("status"));
  s = load_ok({"--events", "all"}, env);
  EXPECT_FALSE(s.published_events);
  EXPECT_NE(describe(s).find("OTTER_EVENTS"), std::string::npos);
}

TEST(config, every_option_has_a_documented_flag) {
  for (const auto& o : options()) {
    EXPECT_EQ(o.flag.rfind("--", 0), 0u) << o.flag;
    EXPECT_EQ(o.env.rfind("OTTER_", 0), 0u) << o.env;
    EXPECT_FALSE(o.help.empty()) << o.env;
    EXPECT_FALSE(o.default_text.empty()) << o.env;
  }
}

TEST(config, sanitize_instance) {
  EXPECT_EQ(sanitize_instance("web-1.example.com"), "web-1.example.com");
  EXPECT_EQ(sanitize_instance("my host/é"), "my-host---");
  EXPECT_EQ(sanitize_instance(std::string(100, 'x')), std::string(64, 'x'));
  EXPECT_EQ(sanitize_instance(""), "otterd");
  EXPECT_TRUE(protocol::valid_name(sanitize_instance("a b c")));
}

TEST(config, parse_host_port) {
  auto hp = parse_host_port("0.0.0.0:8080");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->first, "0.0.0.0");
  EXPECT_EQ(hp->second, 8080);
  hp = parse_host_port("[::1]:443");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->first, "::1");
  EXPECT_FALSE(parse_host_port("::1:443"));
  EXPECT_FALSE(parse_host_port("host:"));
  EXPECT_FALSE(parse_host_port(":80"));
  EXPECT_FALSE(parse_host_port("host:99999"));
}

TEST(config, process_env_reads_the_environment) {
  const env_lookup env = process_env();
  EXPECT_FALSE(env("OTTER_TEST_SURELY_NOT_SET_4711").has_value());
  EXPECT_TRUE(env("PATH").has_value());
}

}  // namespace
}  // namespace otter::config
