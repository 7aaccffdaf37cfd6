#include "service/service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <stdexcept>
#include <thread>

#include "config/config.hpp"
#include "http/link_signer.hpp"
#include "http/server.hpp"
#include "mqtt/client.hpp"
#include "protocol/messages.hpp"
#include "protocol/topics.hpp"
#include "service/admin_handler.hpp"
#include "service/clock.hpp"
#include "service/device_handler.hpp"
#include "service/device_queue.hpp"
#include "service/device_registry.hpp"
#include "service/image_store.hpp"
#include "service/metrics.hpp"
#include "service/ports.hpp"
#include "store/listener.hpp"
#include "store/repository.hpp"
#include "store/writer.hpp"

namespace otter::service {
namespace {

using namespace std::chrono_literals;

class mqtt_outbox final : public outbox {
 public:
  // room: the bytes the client may hold queued before wait_for_room() waits.
  mqtt_outbox(mqtt::client& c, std::uint64_t room) : client_(c), room_(room) {}
  void publish(const std::string& topic, std::string_view payload, int qos,
               bool retained) override {
    auto r = client_.publish(topic, payload, qos, retained);
    if (!r) {
      failures_++;
      spdlog::warn("decision=publish_failed topic={} reason=\"{}\"", topic, r.error().message);
    }
  }
  bool wait_for_room(std::chrono::milliseconds timeout) override {
    return client_.wait_queued_below(room_, timeout);
  }
  std::atomic<std::uint64_t> failures_{0};

 private:
  mqtt::client& client_;
  std::uint64_t room_;
};

class writer_recorder final : public recorder {
 public:
  explicit writer_recorder(store::writer& w) : writer_(w) {}
  bool submit(store::record_set&& set) override { return writer_.submit(std::move(set)); }

 private:
  store::writer& writer_;
};

std::string with_share(const std::string& group, const std::string& filter) {
  return group.empty() ? filter : "$share/" + group + "/" + filter;
}

}  // namespace

struct service::impl {
  config::settings cfg;
  crypto::ec_key key;
  protocol::topics topics;
  system_clock time;
  metrics counters;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  store::repository repo;          // commands (admin thread)
  store::repository catalog_repo;  // catalog reloads (serialised below), the listener's reads
  std::mutex reload_mu;
  catalog_source catalog;
  device_registry devices;
  image_store images;

  std::unique_ptr<mqtt::client> client;
  std::unique_ptr<mqtt_outbox> out;
  std::unique_ptr<store::writer> writer;
  std::unique_ptr<writer_recorder> records;
  std::unique_ptr<chunk_server> chunks;
  std::unique_ptr<held_statuses> held;  // shared device topics only
  std::unique_ptr<device_handler> devices_handler;
  std::unique_ptr<device_queue> device_work;  // after devices_handler: its workers call it
  std::unique_ptr<store::listener> listener;  // after chunks: its thread calls into them
  std::unique_ptr<admin_handler> admin;
  std::unique_ptr<http::link_signer> links;             // set when HTTP download is on
  std::shared_ptr<const release_key_set> release_keys;  // set with OTTER_RELEASE_KEYS
  std::unique_ptr<http::server> http_server;
  std::atomic<bool> accepting{false};
  std::atomic<std::chrono::steady_clock::time_point> last_message{};
  // Shared device topics: the registry is read back off the listener thread (a flush and a
  // read of the whole fleet would hold back the notes and grants behind them).
  std::mutex refresh_mu;
  std::condition_variable refresh_cv;
  bool refresh_wanted = false;
  bool refresher_stopping = false;
  std::thread refresher;

  impl(config::settings s, crypto::ec_key k)
      : cfg(std::move(s)),
        key(std::move(k)),
        topics(cfg.topic_root),
        repo(cfg.db_url),
        catalog_repo(cfg.db_url),
        images(cfg.data_dir) {}
  ~impl() { stop_refresher(); }

  void want_refresh() {
    std::lock_guard lock(refresh_mu);
    refresh_wanted = true;
    refresh_cv.notify_all();
  }
  void run_refresher() {
    std::unique_lock lock(refresh_mu);
    for (;;) {
      refresh_cv.wait(lock, [&] { return refresh_wanted || refresher_stopping; });
      if (refresher_stopping) return;
      refresh_wanted = false;
      lock.unlock();
      const bool done = refresh_devices();
      lock.lock();
      // Not done (records not written, database away): again in 5 s, or at the next connect.
      if (!done && !refresh_cv.wait_for(lock, 5s, [&] { return refresher_stopping; }))
        refresh_wanted = true;
    }
  }
  void stop_refresher() {
    {
      std::lock_guard lock(refresh_mu);
      refresher_stopping = true;
    }
    refresh_cv.notify_all();
    if (refresher.joinable()) refresher.join();
  }

  bool reload_catalog() {
    std::lock_guard lock(reload_mu);
    try {
      auto next = std::make_shared<rollout::catalog>(catalog_repo.load_catalog());
      spdlog::info("decision=catalog_reload releases={} rollouts={}", next->releases.size(),
                   next->rollouts.size());
      catalog.replace(std::move(next));
      return true;
    } catch (const std::exception& e) {
      // Checks go on being answered from the catalog we have.
      spdlog::warn("decision=catalog_reload_failed reason=\"{}\"", e.what());
      return false;
    }
  }

  // After a command that changed the catalog, before its answer: the change must hold for
  // every check this instance answers afterwards (PROTOCOL.md), so a failed reload (a broken
  // connection is replaced on the next try) is tried again before the operator hears "ok".
  void reload_catalog_after_command() {
    for (auto wait : {0ms, 50ms, 250ms, 1000ms}) {
      std::this_thread::sleep_for(wait);
      if (reload_catalog()) return;
    }
    spdlog::error(
        "decision=catalog_stale reason=\"reload failed after a command; the change applies here "
        "at the next reload (a command or NOTIFY otter_catalog)\"");
  }

  std::function<std::optional<std::string>(const std::string&, const std::string&, std::int64_t)>
  download_url() {
    if (!links) return {};
    return [this](const std::string& device, const std::string& sha, std::int64_t exp) {
      return std::optional<std::string>(cfg.public_url + links->make(device, sha, exp));
    };
  }

  nlohmann::json metrics_json() {
    auto j = counters.to_json();
    const auto ws = writer->stats();
    j["instance"] = cfg.instance;
    j["uptime_s"] =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started)
            .count();
    j["devices"] = devices.size();
    j["queue"] = ws.queued;
    j["queue_limit"] = writer->queue_limit();
    j["records_written"] = ws.written;
    j["records_rejected"] = ws.rejected;
    j["records_dropped"] = ws.dropped;
    j["db_connected"] = ws.connected;
    j["mqtt_connected"] = client && client->connected();
    j["publish_failures"] = out ? out->failures_.load() : 0;
    j["chunk_inflight_bytes"] = chunks ? chunks->inflight_bytes() : 0;
    j["statuses_held"] = held ? held->size() : 0;  // waiting for another instance's offer
    return j;
  }

  void on_message(const mqtt::message& m) {
    if (!accepting.load()) return;
    last_message = std::chrono::steady_clock::now();
    try {
      auto t = topics.parse(m.topic);
      if (!t) return;  // not ours (our own answers, other roots)
      // MQTT marks a message retained only when the broker replays a stored one to a new
      // subscription: a request of the past, never to be acted on again.
      switch (t->kind) {
        case protocol::topic_kind::admin_request:
        case protocol::topic_kind::admin_upload:
          admin->submit(*t, m.payload, m.retained);
          break;
        default:
          if (m.retained)
            devices_handler->refuse_retained(*t, m.payload);
          else if (m.payload.size() > protocol::kMaxMessageBytes)
            // Refused here rather than copied into a worker's queue: the broker lets through
            // up to its message_size_limit (uploads need 16 MiB), 10000 of them per worker.
            devices_handler->handle(*t, m.payload);
          else if (device_work->submit(*t, m.payload) == device_queue::admit::device_busy)
            devices_handler->refuse_busy(*t, m.payload);
      }
    } catch (const std::exception& e) {
      // The edge: one bad message must never take the service down.
      spdlog::error("decision=message_failed topic={} error=\"{}\"", m.topic, e.what());
    }
  }

  bool open_database(const std::atomic<bool>& stop) {
    auto delay = 250ms;
    while (!stop.load()) {
      try {
        repo.open();
        return true;
      } catch (const std::exception& e) {
        spdlog::warn("decision=wait_for_database reason=\"{}\" retry_in_ms={}", e.what(),
                     delay.count());
      }
      for (auto waited = 0ms; waited < delay && !stop.load(); waited += 50ms)
        std::this_thread::sleep_for(50ms);
      delay = std::min(delay * 2, std::chrono::milliseconds(5000));
    }
    return false;
  }

  // HTTP download is on with OTTER_HTTP_ADDR; links default to http://<that address>.
  void open_http_links() {
    if (cfg.http_addr.empty()) return;
    if (cfg.public_url.empty()) cfg.public_url = "http://" + cfg.http_addr;
    const std::filesystem::path secret = cfg.link_secret_file.empty()
                                             ? std::filesystem::path(cfg.data_dir) / "link-secret"
                                             : std::filesystem::path(cfg.link_secret_file);
    http::link_signer::secret_file_info info;
    links = std::make_unique<http::link_signer>(http::link_signer::load_or_create(secret, &info));
    // A mistyped OTTER_LINK_SECRET_FILE would otherwise go unnoticed until another instance's
    // links fail with 403.
    if (info.created && !cfg.link_secret_file.empty())
      spdlog::warn(
          "decision=link_secret_created file={} reason=\"OTTER_LINK_SECRET_FILE named no file; "
          "instances that serve each other's links must share this one\"",
          secret.string());
    else if (info.created)
      spdlog::info("decision=link_secret_created file={}", secret.string());
    if ((info.mode & 077) != 0)
      spdlog::warn(
          "config: the link secret {} is open to other users (mode {:o}); run: chmod "
          "600 {}",
          secret.string(), info.mode, secret.string());
    spdlog::info("decision=http_links public_url={} secret_file={}", cfg.public_url,
                 secret.string());
  }

  // Offers made before a restart still let their devices fetch: a download in progress goes
  // on instead of failing with `forbidden` and a new check.
  void restore_chunk_grants(std::chrono::seconds validity) {
    try {
      const auto offers = repo.load_recent_offers(time.now() - validity);
      for (const auto& o : offers) chunks->authorize(o.device, o.sha256, o.size, o.rollout, o.at);
      spdlog::info("decision=chunk_grants_restored grants={} window_s={}", offers.size(),
                   validity.count());
    } catch (const std::exception& e) {
      // Not fatal: devices re-check and get a fresh offer.
      spdlog::warn("decision=chunk_grants_not_restored reason=\"{}\"", e.what());
    }
  }

  // Another instance's offers (NOTIFY otter_grants): its devices may fetch from this one too.
  void on_grants(const std::string& payload) {
    std::size_t n = 0;
    for (const auto& g : store::parse_grant_notification(payload)) {
      if (g.origin == cfg.instance) continue;
      chunks->authorize(g.device, g.sha256, g.size, g.rollout, g.at);
      // A status without "rollout" that reaches this instance is attributed to this offer.
      if (!g.version.empty()) devices.on_offer(g.device, g.rollout, g.version, g.at);
      // Reports that waited for this offer go now.
      if (held && held->claim_release(g.device)) post_release(g.device);
      ++n;
    }
    if (n) spdlog::debug("decision=chunk_grants_shared grants={}", n);
  }

  // Held reports are recorded on the device's worker, in order with its messages.
  void post_release(const std::string& device) {
    device_work->post(device, [this, device] { devices_handler->release_held(device); });
  }
  // Reports whose offer never came here: recorded as they are.
  void post_due_releases() {
    for (const auto& d : held->claim_due(std::chrono::steady_clock::now())) post_release(d);
  }

  // The device notes other instances sent while the listener was away were missed: what they
  // recorded meanwhile is read back.
  bool refresh_devices() {
    try {
      const auto mark = devices.mark();
      if (!writer->flush(std::chrono::seconds(5))) {
        spdlog::warn("decision=devices_not_refreshed reason=\"records not written within 5 s\"");
        return false;
      }
      const auto stored = repo.load_devices();
      devices.refresh(stored, mark);
      spdlog::info("decision=devices_refreshed devices={}", stored.size());
      return true;
    } catch (const std::exception& e) {
      spdlog::warn("decision=devices_not_refreshed reason=\"{}\"", e.what());
      return false;
    }
  }

  // What another instance learned of devices (NOTIFY otter_devices): their next message may
  // come here.
  void on_device_notes(const std::string& payload) {
    std::size_t n = 0;
    for (auto& note : store::parse_device_notification(payload)) {
      if (note.origin == cfg.instance) continue;
      if (note.attrs_left_out) read_back_attrs(note);
      devices.apply(note);
      ++n;
    }
    if (n) spdlog::debug("decision=device_notes_shared notes={}", n);
  }

  // A note too long for NOTIFY came without the device's attributes; the row holds them (the
  // note was sent when it committed). Without them a group rollout would answer that device
  // here as if it had none.
  void read_back_attrs(store::device_note& note) {
    auto dev = catalog_repo.get_device(note.device);
    if (dev && dev->contains("attrs") && (*dev)["attrs"].is_object()) {
      note.attrs = (*dev)["attrs"];
      spdlog::info("decision=device_attrs_read device={} reason=\"too long for a note\"",
                   note.device);
    } else {
      spdlog::warn(
          "decision=device_attrs_unknown device={} reason=\"too long for a note and not read: "
          "{}\"",
          note.device, dev ? "no attributes stored" : dev.error().message);
    }
  }

  void start_http() {
    if (!links) return;
    const auto hp = config::parse_host_port(cfg.http_addr);
    if (!hp) throw std::runtime_error("bad OTTER_HTTP_ADDR " + cfg.http_addr);
    http_server = std::make_unique<http::server>(
        http::server_deps{
            *links, [this](const std::string& sha) { return images.path_of(sha); },
            [this] {
              return std::pair<bool, bool>{client->connected(), writer->stats().connected};
            },
            [this] { return unix_seconds(time.now()); }},
        hp->first, hp->second);
    http_server->start();
  }

  // Read before the database: a bad file must stop otterd at once, not after it waited for
  // PostgreSQL (which it does for as long as it takes).
  void load_release_keys() {
    if (cfg.release_keys.empty()) return;
    auto keys = release_key_set::from_file(cfg.release_keys);
    if (!keys)
      throw std::runtime_error("OTTER_RELEASE_KEYS (--release-keys): " + keys.error().message);
    spdlog::info("decision=release_keys count={} file={}", keys->size(), cfg.release_keys);
    release_keys = std::make_shared<const release_key_set>(std::move(keys).value());
  }

  int run(const std::atomic<bool>& stop) {
    images.open();
    open_http_links();
    load_release_keys();
    if (!open_database(stop)) return 0;
    devices.load(repo.load_devices());
    reload_catalog();
    spdlog::info("decision=loaded devices={}", devices.size());

    chunk_settings cs;
    cs.max = cfg.chunk_max;
    cs.window = cfg.chunk_window;
    cs.offer_validity = cfg.manifest_ttl;
    cs.device_inflight_cap =
        std::max<std::uint64_t>(1024 * 1024, 2ull * cfg.chunk_max * cfg.chunk_window);
    // Instances that share the device topics share their chunk grants: a request may reach
    // an instance that did not make the offer, so it waits a moment for the grant.
    const bool shared = !cfg.share_group.empty();
    if (shared) cs.grant_wait = std::chrono::milliseconds(1000);

    mqtt::client_options o;
    o.server_uri = cfg.mqtt_url;
    o.client_id = cfg.mqtt_client_id;
    o.username = cfg.mqtt_user;
    o.password = cfg.mqtt_password;
    o.will = mqtt::message{topics.service_state(cfg.instance), "offline", 1, true, {}, {}};
    client = std::make_unique<mqtt::client>(o);
    // Chunk workers wait while this much is queued for a slow broker (see chunk_settings).
    out = std::make_unique<mqtt_outbox>(*client, cs.total_inflight_cap);

    writer = std::make_unique<store::writer>(
        cfg.db_url, cfg.queue_limit, [this](const std::vector<store::event_record>& evs) {
          for (const auto& e : evs)
            if (cfg.publishes_event(e.kind))
              out->publish(topics.event(e.kind), e.to_json_text(), 0, false);
        });
    records = std::make_unique<writer_recorder>(*writer);
    writer->start();
    manifest_settings ms{cfg.manifest_ttl, cfg.retry, cfg.chunk_max, cfg.chunk_window};
    chunks = std::make_unique<chunk_server>(topics, images, *out, *records, time, counters, cs,
                                            cfg.instance);
    restore_chunk_grants(cs.offer_validity);
    device_handler_deps dd{topics, key,  catalog,  devices,      *records,
                           *out,   time, counters, chunks.get(), download_url()};
    dd.shared = shared;
    if (shared) {
      held = std::make_unique<held_statuses>(std::chrono::milliseconds(1000), 10000, 16);
      dd.held = held.get();
    }
    devices_handler = std::make_unique<device_handler>(dd, ms, cfg.instance);
    // Two workers at least (the callback thread then only receives), at most four.
    const auto n_workers = std::clamp(std::thread::hardware_concurrency(), 2u, 4u);
    device_work = std::make_unique<device_queue>(
        n_workers, 10000, [this](const protocol::parsed_topic& t, std::string_view payload) {
          devices_handler->handle(t, payload);
        });
    device_work->start();
    chunks->on_late_refusal(
        [this](const std::string& device, const std::optional<std::string>& req, const error& err) {
          devices_handler->refuse_chunk(device, req, err);
        });
    chunks->start();
    // Shared device topics: what other instances announced before the listener's first
    // connect or while it was away is read back from the database: their grants (or their
    // devices would get forbidden here) and what they recorded of devices.
    store::listener_handlers lh;
    lh.on_change = [this] { reload_catalog(); };
    lh.on_grants = [this](const std::string& payload) { on_grants(payload); };
    if (shared) {
      lh.on_devices = [this](const std::string& payload) { on_device_notes(payload); };
      lh.on_connect = [this, validity = cs.offer_validity] {
        restore_chunk_grants(validity);
        want_refresh();
      };
      refresher = std::thread([this] { run_refresher(); });
    }
    listener = std::make_unique<store::listener>(cfg.db_url, std::move(lh));
    listener->start();
    admin_settings as;
    as.operators = cfg.operators;
    as.max_upload = cfg.max_upload;
    as.instance = cfg.instance;
    as.require_signed = cfg.require_signed;
    as.upload_gc = cfg.upload_gc;
    as.event_retention = cfg.event_retention;
    as.release_keys = release_keys;
    admin = std::make_unique<admin_handler>(
        admin_handler_deps{topics, repo, images, *records, *out, time, counters,
                           [this] { reload_catalog_after_command(); },
                           [this] { writer->flush(5s); }, [this] { return metrics_json(); }},
        as);
    admin->start();
    start_http();

    client->on_message([this](const mqtt::message& m) { on_message(m); });
    client->on_state([this](bool up) {
      spdlog::info("decision=mqtt_{} broker={}", up ? "connected" : "disconnected", cfg.mqtt_url);
      if (up) out->publish(topics.service_state(cfg.instance), "online", 1, true);
    });
    // Not connected yet: these are remembered and made on every (re)connect.
    const std::vector<std::string> filters = {
        with_share(cfg.share_group, topics.device_up_filter()),
        with_share(cfg.share_group, topics.admin_req_filter()),
        with_share(cfg.share_group, topics.admin_upload_filter())};
    for (const auto& f : filters) {
      if (auto r = client->subscribe(f, 1); !r)
        throw std::runtime_error("cannot subscribe to " + f + ": " + r.error().message);
    }
    accepting = true;
    client->start_connect();
    spdlog::info("decision=serving root={} instance={} kid={}", topics.root(), cfg.instance,
                 key.kid());

    auto next_metrics = std::chrono::steady_clock::now();
    while (!stop.load()) {
      if (held) post_due_releases();
      if (std::chrono::steady_clock::now() >= next_metrics) {
        if (client->connected()) out->publish(topics.metrics(), metrics_json().dump(), 1, true);
        next_metrics += 5s;
      }
      std::this_thread::sleep_for(50ms);
    }

    // Stop the broker sending first, and take everything it sent before its answer: a message
    // that arrived after `accepting` went false would be lost, and with shared subscriptions
    // the broker sends this instance's share elsewhere only once it has unsubscribed.
    spdlog::info("decision=shutdown stage=unsubscribe");
    for (const auto& f : filters)
      if (auto r = client->unsubscribe(f, 5s); !r)
        spdlog::warn("decision=shutdown unsubscribe={} reason=\"{}\"", f, r.error().message);
    // A broker may still deliver what it had queued for us: take it until the line is quiet.
    const auto give_up = std::chrono::steady_clock::now() + 2s;
    while (std::chrono::steady_clock::now() < give_up &&
           std::chrono::steady_clock::now() - last_message.load() < 200ms)
      std::this_thread::sleep_for(20ms);
    spdlog::info("decision=shutdown stage=drain");
    accepting = false;
    // Reports waiting for an offer's note get their second (the listener still runs).
    const auto held_until = std::chrono::steady_clock::now() + 1200ms;
    while (held && held->size() > 0 && std::chrono::steady_clock::now() < held_until) {
      post_due_releases();
      std::this_thread::sleep_for(20ms);
    }
    device_work->stop();  // handles what was received, so its records are drained below
    if (held)
      for (const auto& d : held->devices()) devices_handler->release_held(d);
    if (http_server) http_server->stop();
    chunks->stop();
    admin->stop();
    stop_refresher();  // it flushes the writer
    const auto left = writer->stop(30s);
    if (left > 0)
      spdlog::error("decision=shutdown records_unwritten={} reason=\"database unavailable\"", left);
    listener->stop();
    out->publish(topics.service_state(cfg.instance), "offline", 1, true);
    client->disconnect(5s);
    spdlog::info("decision=shutdown stage=done");
    return left > 0 ? 1 : 0;
  }
};

service::service(config::settings settings, crypto::ec_key signing_key)
    : impl_(std::make_unique<impl>(std::move(settings), std::move(signing_key))) {}

service::~service() = default;

int service::run(const std::atomic<bool>& stop) {
  return impl_->run(stop);
}

}  // namespace otter::service
