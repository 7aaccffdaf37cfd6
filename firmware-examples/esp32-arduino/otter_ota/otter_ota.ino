// otter OTA for ESP32 with Arduino: the "MQTT" library by Joël Gähwiler (256dpi/arduino-mqtt,
// based on lwmqtt) for MQTT, Update for the flash, the portable otter device core (../../core)
// for the protocol. Before building, copy the core into this sketch's src/ folder:
// ../sync_core.sh   (see firmware-examples/README.md).
//
// Targets Arduino-ESP32 2.0.x (ESP-IDF 4.4, mbedTLS 2.28) and 3.0.x (ESP-IDF 5.1, mbedTLS 3.x),
// and MQTT 2.5.2 (Library Manager: "MQTT" by Joel Gaehwiler; 2.5.2 or later, for the constructor
// with two buffer sizes and dropOverflow). Written against 2.5.2's MQTTClient.h and README. It
// publishes and subscribes at QoS 1, as PROTOCOL.md asks (PubSubClient, used before, publishes at
// QoS 0 only). Not compiled in the otter repository (no ESP toolchain there).
#include <Arduino.h>
#include <MQTT.h>
#include <Preferences.h>
#include <Update.h>
#include <WiFi.h>
#include <esp_ota_ops.h>
#include <esp_system.h>
#if __has_include(<esp_random.h>)
#include <esp_random.h>  // ESP-IDF 5 (Arduino-ESP32 3.x) moved esp_fill_random here
#endif
#include <time.h>

#include "src/otter_core/otter_core.h"

// ---- settings: edit these -------------------------------------------------------------
static const char* WIFI_SSID = "your-ssid";
static const char* WIFI_PASSWORD = "your-password";
static const char* MQTT_HOST = "192.168.1.10";
static const uint16_t MQTT_PORT = 1883;
static const char* MQTT_USER = nullptr;  // nullptr with a password: the device id (production)
static const char* MQTT_PASSWORD = nullptr;
static const char* MODEL = "esp32-devkitc";
static const char* FW_VERSION = "1.0.0";  // bump for every image you release
// The service's manifest key: `otterctl` or the operator gives it (PEM public key).
static const char MANIFEST_KEY_PEM[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9I41+okjBrVhPUsnGFcA6IKXUy7N\n"
    "p8BbMkduZuAJc736vjTS1o07HDAfV6aCU9NcFngWFZiSSpuob9zxt+O9nA==\n"
    "-----END PUBLIC KEY-----\n";
// Optional release key: when set, every image must carry a valid image_sig.
static const char* RELEASE_KEY_PEM = nullptr;

// The MQTT client's buffers (it allocates them once, in its constructor). An incoming packet must
// fit the read buffer whole: an offer (about 1.2 KB with image_sig) and a chunk (topic of about
// 80 bytes + CHUNK_LEN); a larger one is dropped (dropOverflow) instead of closing the connection.
// Since 2.5.2 a publish sends its payload straight from our buffer, so the write buffer holds a
// packet's header and topic, and the CONNECT packet (client id, username and password).
static const int MQTT_READ_BUFFER = 2048;
static const int MQTT_WRITE_BUFFER = 1024;
static const int MQTT_KEEPALIVE_S = 15;
// How long connect, subscribe and each QoS 1 publish wait for the broker's acknowledgement. When
// one does not come the library closes the connection; loop() connects again and checks, which
// resumes a download.
static const int MQTT_TIMEOUT_MS = 5000;
static const uint32_t CHUNK_LEN = 1024;
static const uint32_t WINDOW = 4;
static const uint32_t OFFER_TIMEOUT_MS = 10000;
static const uint32_t CHUNK_TIMEOUT_MS = 5000;
static const uint32_t CHECK_INTERVAL_MS = 3600UL * 1000UL;  // when the manifest gives no retry_s
static const uint32_t RETRY_AFTER_FAILURE_MS = 60000;       // doubles per failure in a row,
static const uint32_t RETRY_MAX_MS = 3600UL * 1000UL;       // up to an hour
static const uint32_t OFFER_TIMEOUT_MAX_MS = 300000;        // unanswered checks back off

// ---- state ----------------------------------------------------------------------------
static WiFiClient net;
static MQTTClient mqtt(MQTT_READ_BUFFER, MQTT_WRITE_BUFFER);
static Preferences prefs;
static char device_id[24];
static otter_pubkey manifest_key;
static otter_pubkey release_key;
static otter_device dev;
static char scratch[MQTT_READ_BUFFER];  // the offer's manifest, decoded
static char out[512];                   // messages we build
static char topic[128];

enum phase { IDLE, WAIT_OFFER, DOWNLOADING };
static phase state = IDLE;
static uint32_t phase_since = 0;
static uint32_t offer_timeout = OFFER_TIMEOUT_MS;
static uint32_t failures = 0;    // failed downloads in a row
static uint32_t unanswered = 0;  // checks in a row without a verified answer
static uint32_t last_chunk_at = 0;
static uint32_t next_check_at = 0;
static int reported_progress = -1;
static bool checked_once = false;
static bool restart_pending = false;  // installed: restart from loop(), a second later
static uint32_t restart_at = 0;

// Messages received and not yet handled. The library calls on_message() from mqtt.loop(), and
// also from inside subscribe() and every QoS 1 publish() while they wait for the acknowledgement;
// its README asks that the callback not publish, subscribe or unsubscribe, and the payload lies
// in the client's read buffer, which the next packet overwrites. So on_message() only copies the
// message (topic, NUL, payload) here and loop() handles it after mqtt.loop() returns, where
// publishing is allowed. The inbox is first in, first out, so a message is classified and handled
// against the state its predecessors left. Room for a window of chunks, an offer and an error:
// a message that finds no room is dropped (a lost chunk is asked for again, a lost offer is a
// check that times out).
struct inbox_entry {
  size_t topic_len;
  unsigned int len;
  char data[MQTT_READ_BUFFER];  // the packet fitted the read buffer: so do its topic and payload
};
static const unsigned INBOX_SLOTS = WINDOW + 2;
static inbox_entry inbox[INBOX_SLOTS];
static unsigned inbox_head = 0;
static unsigned inbox_count = 0;
static uint32_t inbox_dropped = 0;
static uint32_t reported_drops = 0;

static int random_bytes(void*, uint8_t* buf, size_t n) {
  esp_fill_random(buf, n);  // hardware RNG (true random with Wi-Fi on)
  return 0;
}

static int64_t now_unix() {
  const time_t t = time(nullptr);
  return t > 1700000000 ? (int64_t)t : 0;  // 0: unknown (no SNTP yet), exp is not checked
}

// QoS 1, as PROTOCOL.md asks: publish() returns once the broker acknowledged the message
// (PUBACK), or false after MQTT_TIMEOUT_MS, having closed the connection; loop() then connects
// again and checks. Messages that arrive meanwhile wait in the inbox.
static bool publish(otter_topic_kind kind, size_t len) {
  if (otter_topic(&dev, kind, topic, sizeof topic) != OTTER_OK) return false;
  if (mqtt.publish(topic, out, (int)len, false, 1)) return true;
  Serial.printf("otter: publish to %s failed (lwmqtt error %d)\n", topic, (int)mqtt.lastError());
  return false;
}

static void send_status(otter_state st, int progress, const char* error, const char* version,
                        const char* rollout) {
  otter_status s = {st, progress, error, version, rollout};
  size_t n = 0;
  if (otter_build_status(&dev, &s, out, sizeof out, &n) == OTTER_OK) publish(OTTER_TOPIC_STATUS, n);
}

static void send_check() {
  size_t n = 0;
  if (otter_build_check(&dev, out, sizeof out, &n) != OTTER_OK) return;
  publish(OTTER_TOPIC_CHECK, n);
  state = WAIT_OFFER;
  phase_since = millis();
  // A slow service gets longer to answer each time (a new check supersedes the last nonce).
  offer_timeout = otter_backoff_ms(&dev, OFFER_TIMEOUT_MS, unanswered, OFFER_TIMEOUT_MAX_MS);
}

static void request_chunks() {
  size_t n = 0;
  if (otter_build_chunk_request(&dev, out, sizeof out, &n) == OTTER_OK)
    publish(OTTER_TOPIC_CHUNK, n);
  last_chunk_at = millis();
}

static void fail_download(const char* why) {
  Serial.printf("otter: update failed: %s\n", why);
  send_status(OTTER_STATE_FAILED, -1, why, nullptr, nullptr);
  otter_download_abort(&dev);
  if (Update.isRunning()) Update.abort();
  state = IDLE;
  next_check_at = millis() + otter_backoff_ms(&dev, RETRY_AFTER_FAILURE_MS, failures, RETRY_MAX_MS);
  if (failures < 32) failures++;
}

static void finish_download() {
  send_status(OTTER_STATE_VERIFYING, 100, nullptr, nullptr, nullptr);
  const otter_err rc = otter_download_finish(&dev);
  if (rc != OTTER_OK) {
    fail_download(otter_strerror(rc));
    return;
  }
  send_status(OTTER_STATE_INSTALLING, 100, nullptr, nullptr, nullptr);
  if (!Update.end()) {  // checks the ESP image and sets the boot partition
    fail_download(Update.errorString());
    return;
  }
  // The new image reports success after the restart; remember what it should be.
  prefs.putString("pending", dev.manifest.version);
  prefs.putString("rollout", dev.manifest.rollout);
  Serial.printf("otter: installed %s, restarting\n", dev.manifest.version);
  // The statuses above were acknowledged (or the connection is gone). Restart from loop() a
  // second later, which meanwhile runs the client (acknowledging what still arrives) and sends
  // nothing else.
  state = IDLE;
  restart_pending = true;
  restart_at = millis() + 1000;
}

static void on_offer(const uint8_t* payload, unsigned int len) {
  otter_manifest m;
  const otter_err rc =
      otter_handle_offer(&dev, (const char*)payload, len, scratch, sizeof scratch, now_unix(), &m);
  if (rc == OTTER_E_REQ) return;  // an answer to an older check
  unanswered = 0;                 // answered, even if refused
  if (rc != OTTER_OK) {
    Serial.printf("otter: manifest refused: %s\n", otter_strerror(rc));
    // nullptr, nullptr: the refused offer's version and rollout when known (otter_core.h).
    send_status(OTTER_STATE_REJECTED, -1, otter_strerror(rc), nullptr, nullptr);
    state = IDLE;
    next_check_at = millis() + CHECK_INTERVAL_MS;
    return;
  }
  if (!checked_once) {
    // The first verified answer since boot: this image can talk to the service, keep it.
    checked_once = true;
    esp_ota_mark_app_valid_cancel_rollback();
  }
  if (!m.update) {
    failures = 0;
    if (Update.isRunning()) Update.abort();  // the core dropped its download too
    state = IDLE;
    // At most a day: millis() arithmetic below holds for delays under 24.8 days.
    const uint32_t retry_s = m.retry_s > 86400 ? 86400 : (uint32_t)m.retry_s;
    next_check_at = millis() + (retry_s > 0 ? retry_s * 1000UL : CHECK_INTERVAL_MS);
    return;
  }
  Serial.printf("otter: update %s -> %s (%llu bytes)\n", FW_VERSION, m.version,
                (unsigned long long)m.size);
  // Resuming the same image after a reconnect keeps Update running; anything else starts over.
  if (otter_download_offset(&dev) == 0) {
    if (Update.isRunning()) Update.abort();
    if (m.size > UINT32_MAX || !Update.begin((size_t)m.size)) {
      fail_download(Update.errorString());
      return;
    }
  }
  state = DOWNLOADING;
  reported_progress = -1;
  request_chunks();
}

static void on_chunk(uint64_t offset, const uint8_t* payload, unsigned int len) {
  const otter_err rc = otter_chunk_receive(&dev, offset, payload, len);
  if (rc == OTTER_DUPLICATE || rc == OTTER_OUT_OF_ORDER) {
    // A lost chunk shows up here: the window has ended, ask again now rather than at the
    // chunk timeout.
    if (otter_download_need_request(&dev)) request_chunks();
    return;
  }
  if (rc != OTTER_OK) return;  // refused (past the end, too long): the timeout asks again
  // Update.write takes a non-const pointer; it does not modify the data.
  if (Update.write((uint8_t*)payload, len) != len) {
    fail_download(Update.errorString());
    return;
  }
  last_chunk_at = millis();
  const int p = otter_download_progress(&dev);
  if (reported_progress < 0 || p / 10 != reported_progress / 10) {
    reported_progress = p;
    send_status(OTTER_STATE_DOWNLOADING, p, nullptr, nullptr, nullptr);
  }
  if (otter_download_complete(&dev)) {
    finish_download();
    return;
  }
  if (otter_download_need_request(&dev)) request_chunks();
}

// A message from the inbox (t is NUL-terminated), handled from loop(): it may publish.
static void handle_message(const char* t, const uint8_t* payload, unsigned int len) {
  otter_down_kind kind;
  uint64_t offset = 0;
  if (otter_classify_topic(&dev, t, strlen(t), &kind, &offset) != OTTER_OK) return;
  switch (kind) {
    case OTTER_DOWN_OFFER:
      if (state == WAIT_OFFER || state == DOWNLOADING) on_offer(payload, len);
      break;
    case OTTER_DOWN_CHUNK:
      if (state == DOWNLOADING) on_chunk(offset, payload, len);
      break;
    case OTTER_DOWN_ERROR: {
      char req[65], code[32], msg[128];
      if (otter_parse_error((const char*)payload, len, req, sizeof req, code, sizeof code, msg,
                            sizeof msg) == OTTER_OK) {
        Serial.printf("otter: service error %s: %s (req %s)\n", code, msg, req);
        // Transient errors, and answers to a check or a status, leave the download alone.
        if (state == DOWNLOADING && otter_download_error_is_fatal(&dev, req, code)) {
          char why[180];
          snprintf(why, sizeof why, "service %s: %s", code, msg[0] ? msg : "no message");
          fail_download(why);
        }
      }
      break;
    }
  }
}

// The MQTT library's callback (onMessageAdvanced): copies the message into the inbox, nothing
// more (see inbox_entry). topic and bytes are NUL-terminated by the library; bytes may be null
// when length is 0.
static void on_message(MQTTClient*, char t[], char bytes[], int length) {
  const size_t tlen = strlen(t);
  if (length < 0 || inbox_count == INBOX_SLOTS ||
      tlen + 1 + (size_t)length > sizeof inbox[0].data) {
    inbox_dropped++;
    return;
  }
  inbox_entry& e = inbox[(inbox_head + inbox_count) % INBOX_SLOTS];
  memcpy(e.data, t, tlen + 1);
  if (length > 0) memcpy(e.data + tlen + 1, bytes, (size_t)length);
  e.topic_len = tlen;
  e.len = (unsigned int)length;
  inbox_count++;
}

// Handles the messages that were waiting when it was called; those that arrive meanwhile (during
// a publish) wait for the next call, so that loop() gets to its timers. The entry being handled
// still counts as used, so on_message() cannot overwrite it.
static void handle_inbox() {
  for (unsigned n = inbox_count; n > 0 && inbox_count > 0; n--) {
    const inbox_entry& e = inbox[inbox_head];
    handle_message(e.data, (const uint8_t*)e.data + e.topic_len + 1, e.len);
    inbox_head = (inbox_head + 1) % INBOX_SLOTS;
    inbox_count--;
  }
  const uint32_t drops = inbox_dropped + mqtt.droppedMessages();
  if (drops != reported_drops) {
    reported_drops = drops;
    Serial.printf(
        "otter: dropped %lu messages larger than the MQTT read buffer, %lu with the inbox full\n",
        (unsigned long)mqtt.droppedMessages(), (unsigned long)inbox_dropped);
  }
}

// After a restart: did the image we installed come up? Reports success or rolled_back once.
static void report_boot() {
  String pending = prefs.getString("pending", "");
  if (pending.length() == 0) return;
  String rollout = prefs.getString("rollout", "");
  if (otter_same_release(pending.c_str(), FW_VERSION)) {
    send_status(OTTER_STATE_SUCCESS, -1, nullptr, FW_VERSION, rollout.c_str());
  } else {
    char why[160];
    snprintf(why, sizeof why, "installed %s but running %s after restart", pending.c_str(),
             FW_VERSION);
    send_status(OTTER_STATE_ROLLED_BACK, -1, why, pending.c_str(), rollout.c_str());
  }
  prefs.remove("pending");
  prefs.remove("rollout");
}

static void connect_mqtt() {
  // Client id = device id; production brokers check that the username is the device id too
  // (PROTOCOL.md). A clean session (set in setup()): the device resumes by checking again.
  const char* user = MQTT_USER ? MQTT_USER : (MQTT_PASSWORD ? device_id : nullptr);
  if (!mqtt.connect(device_id, user, MQTT_PASSWORD)) {
    Serial.printf("otter: MQTT connect failed (lwmqtt error %d, return code %d)\n",
                  (int)mqtt.lastError(), (int)mqtt.returnCode());
    delay(2000);
    return;
  }
  otter_topic(&dev, OTTER_TOPIC_DOWN_FILTER, topic, sizeof topic);
  if (!mqtt.subscribe(topic, 1)) {  // QoS 1; a refused subscription closes the connection
    Serial.printf("otter: subscribe to %s failed (lwmqtt error %d)\n", topic,
                  (int)mqtt.lastError());
    delay(2000);
    return;
  }
  if (restart_pending) return;
  report_boot();
  send_check();  // also resumes an interrupted download: the same image keeps its offset
}

// Arduino-ESP32 marks the running app valid at boot unless this returns true; we do it after
// the first verified check instead (only matters with a rollback-enabled bootloader).
extern "C" bool verifyRollbackLater() {
  return true;
}

void setup() {
  Serial.begin(115200);
  // Station mode first: on Arduino-ESP32 3.x macAddress() fills nothing before it.
  WiFi.mode(WIFI_STA);
  uint8_t mac[6];
  WiFi.macAddress(mac);
  snprintf(device_id, sizeof device_id, "esp32-%02x%02x%02x%02x%02x%02x", mac[0], mac[1], mac[2],
           mac[3], mac[4], mac[5]);
  prefs.begin("otter", false);
  if (otter_pubkey_from_pem(MANIFEST_KEY_PEM, strlen(MANIFEST_KEY_PEM), &manifest_key) != OTTER_OK)
    Serial.println("otter: MANIFEST_KEY_PEM is not a P-256 public key");
  if (RELEASE_KEY_PEM &&
      otter_pubkey_from_pem(RELEASE_KEY_PEM, strlen(RELEASE_KEY_PEM), &release_key) != OTTER_OK)
    Serial.println("otter: RELEASE_KEY_PEM is not a P-256 public key");

  otter_config cfg = {};
  cfg.device_id = device_id;
  cfg.model = MODEL;
  cfg.version = FW_VERSION;
  cfg.manifest_keys = &manifest_key;
  cfg.manifest_key_count = 1;
  cfg.release_key = RELEASE_KEY_PEM ? &release_key : nullptr;
  cfg.chunk_len_max = CHUNK_LEN;
  cfg.window_max = WINDOW;
  cfg.random = random_bytes;
  const otter_err rc = otter_init(&dev, &cfg);
  if (rc != OTTER_OK) Serial.printf("otter: init failed: %s\n", otter_strerror(rc));

  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  configTime(0, 0, "pool.ntp.org");  // optional: lets the device check exp
  mqtt.begin(MQTT_HOST, MQTT_PORT, net);
  mqtt.setKeepAlive(MQTT_KEEPALIVE_S);  // a blocking publish is traffic too: it resets the timer
  mqtt.setCleanSession(true);           // the library's default, stated
  mqtt.setTimeout(MQTT_TIMEOUT_MS);
  mqtt.dropOverflow(true);  // after begin(), which resets it
  mqtt.onMessageAdvanced(on_message);
  Serial.printf("otter: %s running %s\n", device_id, FW_VERSION);
}

void loop() {
  if (restart_pending && (int32_t)(millis() - restart_at) >= 0) ESP.restart();
  if (WiFi.status() != WL_CONNECTED) {
    delay(500);
    return;
  }
  if (!mqtt.connected()) {
    connect_mqtt();
    return;
  }
  mqtt.loop();     // copies what arrived into the inbox
  handle_inbox();  // handles it, publishing the answers
  if (restart_pending) return;
  const uint32_t now = millis();
  if (state == WAIT_OFFER && now - phase_since > offer_timeout) {
    if (unanswered < 32) unanswered++;
    send_check();
  }
  if (state == DOWNLOADING && now - last_chunk_at > CHUNK_TIMEOUT_MS) request_chunks();
  if (state == IDLE && (int32_t)(now - next_check_at) >= 0) send_check();
}
