/* otter OTA on ESP-IDF v5.1 - v5.3: esp-mqtt carries the protocol, the portable otter device
 * core (firmware-examples/core) checks it, esp_ota_ops writes the image, and the bootloader's
 * app rollback undoes an image that never confirms itself.
 *
 * Boot sequence of a new image: it starts in ESP_OTA_IMG_PENDING_VERIFY, connects and checks;
 * the first verified answer proves it can reach the service, so it calls
 * esp_ota_mark_app_valid_cancel_rollback() and reports "success". If it crashes or resets
 * before that, the bootloader boots the previous image, which finds the "pending" note in NVS
 * naming a version it is not, and reports "rolled_back". An image that cannot reach the service
 * within CONFIRM_DEADLINE_MS rolls itself back too (the bootloader acts only on a reset).
 *
 * Locking: s_lock guards the state below. The MQTT task takes it in its event handler while it
 * holds esp-mqtt's own API lock, so the app task must never call esp_mqtt_* while it holds
 * s_lock: it builds its messages under the lock and enqueues them after releasing it. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "esp_app_desc.h"
#include "esp_event.h"
#include "esp_log.h"
#include "esp_mac.h"
#include "esp_netif.h"
#include "esp_ota_ops.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "freertos/task.h"
#include "mqtt_client.h"
#include "nvs.h"
#include "nvs_flash.h"
#include "otter_core.h"
#include "protocol_examples_common.h"

static const char* TAG = "otter";

/* The service's manifest key (PEM public key, from the operator). */
static const char MANIFEST_KEY_PEM[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9I41+okjBrVhPUsnGFcA6IKXUy7N\n"
    "p8BbMkduZuAJc736vjTS1o07HDAfV6aCU9NcFngWFZiSSpuob9zxt+O9nA==\n"
    "-----END PUBLIC KEY-----\n";
/* Optional release key: when non-empty, every image must carry a valid image_sig. */
static const char RELEASE_KEY_PEM[] = "";

#define OFFER_TIMEOUT_MS 10000
#define CHUNK_TIMEOUT_MS 5000
#define CHECK_INTERVAL_MS (3600 * 1000)
#define RETRY_AFTER_FAILURE_MS 60000     /* doubles with every failed download in a row, */
#define RETRY_MAX_MS (3600 * 1000)       /* up to an hour */
#define OFFER_TIMEOUT_MAX_MS 300000      /* unanswered checks back off from OFFER_TIMEOUT_MS */
#define RESTART_DRAIN_MS 15000           /* after an install: wait this long for the outbox */
#define CONFIRM_DEADLINE_MS (600 * 1000) /* a new image must reach the service by then */

/* A whole chunk (plus topic and MQTT header) must fit the client's buffer, or every chunk
 * would arrive fragmented, be ignored and be asked for again forever. */
_Static_assert(CONFIG_OTTER_CHUNK_LEN + 128 <= CONFIG_OTTER_MQTT_BUFFER,
               "OTTER_MQTT_BUFFER must exceed OTTER_CHUNK_LEN by at least 128 bytes");

typedef enum { PHASE_IDLE, PHASE_WAIT_OFFER, PHASE_DOWNLOADING } phase_t;

/* Everything is static: after app_main's setup nothing is allocated. */
static SemaphoreHandle_t s_lock;
static esp_mqtt_client_handle_t s_mqtt;
static char s_id[24];
static otter_pubkey s_manifest_key;
static otter_pubkey s_release_key;
static otter_device s_dev;
static char s_scratch[CONFIG_OTTER_MQTT_BUFFER];
static char s_out[512];
static char s_topic[128];
static phase_t s_phase = PHASE_IDLE;
static int64_t s_phase_since_ms;
static int64_t s_offer_timeout_ms = OFFER_TIMEOUT_MS;
static uint32_t s_failures;   /* failed downloads in a row */
static uint32_t s_unanswered; /* checks in a row without a verified answer */
static int64_t s_last_chunk_ms;
static int64_t s_next_check_ms;
static int s_reported_progress = -1;
static bool s_confirmed;
static bool s_connected;       /* MQTT session up: timeouts send nothing while it is down */
static bool s_restart_pending; /* installed: restart once the statuses are out */
static int64_t s_restart_at_ms;
/* Messages the app task built under s_lock, enqueued after it let go of the lock. */
typedef struct {
  char topic[128];
  char payload[512];
  size_t len;
} deferred_msg;
static bool s_defer;
static deferred_msg s_deferred[3];
static size_t s_deferred_count;
static const esp_partition_t* s_update_partition;
static esp_ota_handle_t s_ota;
static bool s_ota_open;
static char s_pending_version[OTTER_VERSION_MAX + 1];
static char s_pending_rollout[OTTER_ROLLOUT_MAX + 1];

/* 64-bit microseconds since boot: a 32-bit tick count in ms would wrap after 49.7 days. */
static int64_t now_ms(void) {
  return esp_timer_get_time() / 1000;
}

static int random_bytes(void* ctx, uint8_t* out, size_t n) {
  (void)ctx;
  esp_fill_random(out, n);
  return 0;
}

static int64_t now_unix(void) {
  const time_t t = time(NULL);
  return t > 1700000000 ? (int64_t)t : 0; /* 0: unknown (no SNTP), exp is not checked */
}

static void publish(otter_topic_kind kind, size_t len) {
  if (otter_topic(&s_dev, kind, s_topic, sizeof s_topic) != OTTER_OK) return;
  if (s_defer) { /* the app task, under s_lock: see "Locking" above */
    if (s_deferred_count == sizeof s_deferred / sizeof s_deferred[0] ||
        len > sizeof s_deferred[0].payload)
      return; /* cannot happen (at most two messages a pass); the timeouts ask again */
    deferred_msg* d = &s_deferred[s_deferred_count++];
    memcpy(d->topic, s_topic, sizeof d->topic);
    memcpy(d->payload, s_out, len);
    d->len = len;
    return;
  }
  /* Queued in the client's outbox and sent from the MQTT task: safe from its event handler. */
  esp_mqtt_client_enqueue(s_mqtt, s_topic, s_out, (int)len, 1, 0, true);
}

static void send_status(otter_state state, int progress, const char* error, const char* version,
                        const char* rollout) {
  otter_status st = {state, progress, error, version, rollout};
  size_t n = 0;
  if (otter_build_status(&s_dev, &st, s_out, sizeof s_out, &n) == OTTER_OK)
    publish(OTTER_TOPIC_STATUS, n);
}

static void send_check(void) {
  size_t n = 0;
  if (otter_build_check(&s_dev, s_out, sizeof s_out, &n) != OTTER_OK) return;
  publish(OTTER_TOPIC_CHECK, n);
  s_phase = PHASE_WAIT_OFFER;
  s_phase_since_ms = now_ms();
  /* A slow service gets longer to answer each time (a new check supersedes the last nonce). */
  s_offer_timeout_ms =
      otter_backoff_ms(&s_dev, OFFER_TIMEOUT_MS, s_unanswered, OFFER_TIMEOUT_MAX_MS);
}

static void request_chunks(void) {
  size_t n = 0;
  if (otter_build_chunk_request(&s_dev, s_out, sizeof s_out, &n) == OTTER_OK)
    publish(OTTER_TOPIC_CHUNK, n);
  s_last_chunk_ms = now_ms();
}

/* ---- NVS: what must survive the restart ---------------------------------------------- */

static void load_pending(void) {
  nvs_handle_t h;
  size_t n;
  s_pending_version[0] = s_pending_rollout[0] = '\0';
  if (nvs_open("otter", NVS_READONLY, &h) != ESP_OK) return;
  n = sizeof s_pending_version;
  if (nvs_get_str(h, "pending", s_pending_version, &n) != ESP_OK) s_pending_version[0] = '\0';
  n = sizeof s_pending_rollout;
  if (nvs_get_str(h, "rollout", s_pending_rollout, &n) != ESP_OK) s_pending_rollout[0] = '\0';
  nvs_close(h);
}

static void store_pending(const char* version, const char* rollout) {
  nvs_handle_t h;
  if (nvs_open("otter", NVS_READWRITE, &h) != ESP_OK) return;
  if (version) {
    nvs_set_str(h, "pending", version);
    nvs_set_str(h, "rollout", rollout);
  } else {
    nvs_erase_key(h, "pending");
    nvs_erase_key(h, "rollout");
  }
  nvs_commit(h);
  nvs_close(h);
}

/* An image was installed but another one runs: the bootloader rolled back. */
static void report_rollback_if_any(void) {
  const char* running = esp_app_get_description()->version;
  if (s_pending_version[0] == '\0' || otter_same_release(s_pending_version, running)) return;
  char why[160];
  const esp_partition_t* invalid = esp_ota_get_last_invalid_partition();
  esp_app_desc_t desc;
  if (invalid && esp_ota_get_partition_description(invalid, &desc) == ESP_OK)
    snprintf(why, sizeof why, "image %s did not confirm itself; bootloader returned to %s",
             desc.version, running);
  else
    snprintf(why, sizeof why, "installed %s but %s runs after restart", s_pending_version, running);
  send_status(OTTER_STATE_ROLLED_BACK, -1, why, s_pending_version, s_pending_rollout);
  store_pending(NULL, NULL);
  s_pending_version[0] = '\0';
}

/* ---- download ------------------------------------------------------------------------ */

static void fail_download(const char* why) {
  ESP_LOGE(TAG, "update failed: %s", why);
  send_status(OTTER_STATE_FAILED, -1, why, NULL, NULL);
  otter_download_abort(&s_dev);
  if (s_ota_open) esp_ota_abort(s_ota);
  s_ota_open = false;
  s_phase = PHASE_IDLE;
  s_next_check_ms =
      now_ms() + otter_backoff_ms(&s_dev, RETRY_AFTER_FAILURE_MS, s_failures, RETRY_MAX_MS);
  if (s_failures < 32) s_failures++;
}

static void finish_download(void) {
  send_status(OTTER_STATE_VERIFYING, 100, NULL, NULL, NULL);
  const otter_err rc = otter_download_finish(&s_dev);
  if (rc != OTTER_OK) {
    fail_download(otter_strerror(rc));
    return;
  }
  send_status(OTTER_STATE_INSTALLING, 100, NULL, NULL, NULL);
  s_ota_open = false;
  esp_err_t err = esp_ota_end(s_ota); /* also validates the app image */
  if (err == ESP_OK) {
    /* The note first: a power loss right after the switch must still find it. */
    store_pending(s_dev.manifest.version, s_dev.manifest.rollout);
    err = esp_ota_set_boot_partition(s_update_partition);
    if (err != ESP_OK) store_pending(NULL, NULL);
  }
  if (err != ESP_OK) {
    fail_download(esp_err_to_name(err));
    return;
  }
  ESP_LOGI(TAG, "installed %s, restarting", s_dev.manifest.version);
  s_phase = PHASE_IDLE;
  /* The app task restarts once the statuses are out; nothing else is sent meanwhile, so a
   * reconnect cannot start the same download again into the slot just installed. */
  s_restart_pending = true;
  s_restart_at_ms = now_ms() + RESTART_DRAIN_MS;
}

static void on_offer(const char* payload, size_t len) {
  otter_manifest m;
  const otter_err rc =
      otter_handle_offer(&s_dev, payload, len, s_scratch, sizeof s_scratch, now_unix(), &m);
  if (rc == OTTER_E_REQ) return;
  s_unanswered = 0; /* answered, even if refused */
  if (rc != OTTER_OK) {
    ESP_LOGW(TAG, "manifest refused: %s", otter_strerror(rc));
    /* NULL, NULL: the refused offer's version and rollout when they are known (otter_core.h). */
    send_status(OTTER_STATE_REJECTED, -1, otter_strerror(rc), NULL, NULL);
    s_phase = PHASE_IDLE;
    s_next_check_ms = now_ms() + CHECK_INTERVAL_MS;
    return;
  }
  if (!s_confirmed) {
    /* First verified answer from this image: it can reach the service, keep it. */
    s_confirmed = true;
    esp_ota_mark_app_valid_cancel_rollback();
  }
  /* Reported apart from confirming: without rollback, or after a reset between confirming and
   * sending, the image is already valid and the note must still turn into "success". */
  const char* running = esp_app_get_description()->version;
  if (s_pending_version[0] && otter_same_release(s_pending_version, running)) {
    send_status(OTTER_STATE_SUCCESS, -1, NULL, running, s_pending_rollout);
    store_pending(NULL, NULL);
    s_pending_version[0] = '\0';
  }
  if (!m.update) {
    s_failures = 0;
    if (s_ota_open) esp_ota_abort(s_ota); /* the core dropped its download too */
    s_ota_open = false;
    s_phase = PHASE_IDLE;
    s_next_check_ms = now_ms() + (m.retry_s > 0 ? m.retry_s * 1000 : CHECK_INTERVAL_MS);
    return;
  }
  ESP_LOGI(TAG, "update to %s, %" PRIu64 " bytes", m.version, m.size);
  if (otter_download_offset(&s_dev) == 0) { /* a new image; a resumed one keeps its handle */
    if (s_ota_open) esp_ota_abort(s_ota);
    s_ota_open = false;
    s_update_partition = esp_ota_get_next_update_partition(NULL);
    if (!s_update_partition || m.size > s_update_partition->size) {
      fail_download("image does not fit the OTA partition");
      return;
    }
    const esp_err_t err = esp_ota_begin(s_update_partition, (size_t)m.size, &s_ota);
    if (err != ESP_OK) {
      fail_download(esp_err_to_name(err));
      return;
    }
    s_ota_open = true;
  }
  s_phase = PHASE_DOWNLOADING;
  s_reported_progress = -1;
  request_chunks();
}

static void on_chunk(uint64_t offset, const char* data, size_t len) {
  const otter_err rc = otter_chunk_receive(&s_dev, offset, (const uint8_t*)data, len);
  if (rc == OTTER_DUPLICATE || rc == OTTER_OUT_OF_ORDER) {
    /* A lost chunk shows up here: the window has ended, ask again now rather than at the
     * chunk timeout. */
    if (otter_download_need_request(&s_dev)) request_chunks();
    return;
  }
  if (rc != OTTER_OK) return;
  const esp_err_t err = esp_ota_write(s_ota, data, len);
  if (err != ESP_OK) {
    fail_download(esp_err_to_name(err));
    return;
  }
  s_last_chunk_ms = now_ms();
  const int p = otter_download_progress(&s_dev);
  if (s_reported_progress < 0 || p / 10 != s_reported_progress / 10) {
    s_reported_progress = p;
    send_status(OTTER_STATE_DOWNLOADING, p, NULL, NULL, NULL);
  }
  if (otter_download_complete(&s_dev))
    finish_download();
  else if (otter_download_need_request(&s_dev))
    request_chunks();
}

static void on_data(esp_mqtt_event_handle_t ev) {
  otter_down_kind kind;
  uint64_t offset = 0;
  /* The buffer is sized for whole messages; a fragmented one is not ours to handle. */
  if (ev->current_data_offset != 0 || ev->data_len != ev->total_data_len) return;
  if (otter_classify_topic(&s_dev, ev->topic, (size_t)ev->topic_len, &kind, &offset) != OTTER_OK)
    return;
  if (kind == OTTER_DOWN_OFFER && s_phase != PHASE_IDLE) {
    on_offer(ev->data, (size_t)ev->data_len);
  } else if (kind == OTTER_DOWN_CHUNK && s_phase == PHASE_DOWNLOADING) {
    on_chunk(offset, ev->data, (size_t)ev->data_len);
  } else if (kind == OTTER_DOWN_ERROR) {
    char req[65], code[32], msg[128];
    if (otter_parse_error(ev->data, (size_t)ev->data_len, req, sizeof req, code, sizeof code, msg,
                          sizeof msg) == OTTER_OK) {
      ESP_LOGW(TAG, "service error %s: %s (req %s)", code, msg, req);
      /* Transient errors, and answers to a check or a status, leave the download alone. */
      if (s_phase == PHASE_DOWNLOADING && otter_download_error_is_fatal(&s_dev, req, code)) {
        char why[180];
        snprintf(why, sizeof why, "service %s: %s", code, msg[0] ? msg : "no message");
        fail_download(why);
      }
    }
  }
}

static void mqtt_event(void* arg, esp_event_base_t base, int32_t id, void* data) {
  (void)arg;
  (void)base;
  esp_mqtt_event_handle_t ev = (esp_mqtt_event_handle_t)data;
  xSemaphoreTake(s_lock, portMAX_DELAY);
  switch ((esp_mqtt_event_id_t)id) {
    case MQTT_EVENT_CONNECTED:
      s_connected = true;
      otter_topic(&s_dev, OTTER_TOPIC_DOWN_FILTER, s_topic, sizeof s_topic);
      esp_mqtt_client_subscribe(s_mqtt, s_topic, 1);
      if (s_restart_pending) break; /* the outbox drains, then the app task restarts */
      report_rollback_if_any();
      send_check(); /* also resumes an interrupted download: the same image keeps its offset */
      break;
    case MQTT_EVENT_DISCONNECTED:
      s_connected = false;
      break;
    case MQTT_EVENT_DATA:
      on_data(ev);
      break;
    default:
      break;
  }
  xSemaphoreGive(s_lock);
}

void app_main(void) {
  esp_err_t err = nvs_flash_init();
  if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
    ESP_ERROR_CHECK(nvs_flash_erase());
    err = nvs_flash_init();
  }
  ESP_ERROR_CHECK(err);
  ESP_ERROR_CHECK(esp_netif_init());
  ESP_ERROR_CHECK(esp_event_loop_create_default());
  ESP_ERROR_CHECK(example_connect());

  uint8_t mac[6];
  esp_read_mac(mac, ESP_MAC_WIFI_STA);
  snprintf(s_id, sizeof s_id, "esp32-%02x%02x%02x%02x%02x%02x", mac[0], mac[1], mac[2], mac[3],
           mac[4], mac[5]);
  load_pending();
  s_lock = xSemaphoreCreateMutex();

  ESP_ERROR_CHECK(
      otter_pubkey_from_pem(MANIFEST_KEY_PEM, strlen(MANIFEST_KEY_PEM), &s_manifest_key) == OTTER_OK
          ? ESP_OK
          : ESP_ERR_INVALID_ARG);
  if (RELEASE_KEY_PEM[0])
    ESP_ERROR_CHECK(
        otter_pubkey_from_pem(RELEASE_KEY_PEM, strlen(RELEASE_KEY_PEM), &s_release_key) == OTTER_OK
            ? ESP_OK
            : ESP_ERR_INVALID_ARG);
  otter_config cfg = {0};
  cfg.root = CONFIG_OTTER_TOPIC_ROOT;
  cfg.device_id = s_id;
  cfg.model = CONFIG_OTTER_MODEL;
  cfg.version = esp_app_get_description()->version; /* PROJECT_VER */
  cfg.manifest_keys = &s_manifest_key;
  cfg.manifest_key_count = 1;
  cfg.release_key = RELEASE_KEY_PEM[0] ? &s_release_key : NULL;
  cfg.chunk_len_max = CONFIG_OTTER_CHUNK_LEN;
  cfg.window_max = CONFIG_OTTER_WINDOW;
  cfg.random = random_bytes;
  ESP_ERROR_CHECK(otter_init(&s_dev, &cfg) == OTTER_OK ? ESP_OK : ESP_ERR_INVALID_ARG);

  const esp_partition_t* running = esp_ota_get_running_partition();
  esp_ota_img_states_t state;
  if (esp_ota_get_state_partition(running, &state) == ESP_OK && state == ESP_OTA_IMG_PENDING_VERIFY)
    ESP_LOGI(TAG, "first boot of %s: confirming after the first verified check", cfg.version);
  else
    s_confirmed = true;        /* an image that is already valid has nothing to confirm */
  s_next_check_ms = INT64_MAX; /* the first check goes out when MQTT connects */
  ESP_LOGI(TAG, "%s running %s", s_id, cfg.version);

  esp_mqtt_client_config_t mqtt_cfg = {
      .broker.address.uri = CONFIG_OTTER_MQTT_URI,
      .credentials.client_id = s_id,
      /* Production brokers check that the username is the device id (PROTOCOL.md). */
      .credentials.username = CONFIG_OTTER_MQTT_USERNAME[0]   ? CONFIG_OTTER_MQTT_USERNAME
                              : CONFIG_OTTER_MQTT_PASSWORD[0] ? s_id
                                                              : NULL,
      .credentials.authentication.password =
          CONFIG_OTTER_MQTT_PASSWORD[0] ? CONFIG_OTTER_MQTT_PASSWORD : NULL,
      .buffer.size = CONFIG_OTTER_MQTT_BUFFER,
      /* The handler verifies ECDSA signatures and drives esp_ota_* on this task's stack: the
       * 6 KiB default leaves too little margin (unmeasured here: check the high-water mark). */
      .task.stack_size = 8192,
  };
  s_mqtt = esp_mqtt_client_init(&mqtt_cfg);
  esp_mqtt_client_register_event(s_mqtt, ESP_EVENT_ANY_ID, mqtt_event, NULL);
  esp_mqtt_client_start(s_mqtt);

  /* Timeouts: ask again for an offer or for chunks; check periodically; restart after an
   * install once the outbox has drained; roll back an image that never reached the service. */
  for (;;) {
    vTaskDelay(pdMS_TO_TICKS(500));
    xSemaphoreTake(s_lock, portMAX_DELAY);
    const int64_t now = now_ms();
    s_defer = true;
    if (s_connected && !s_restart_pending) {
      if (s_phase == PHASE_WAIT_OFFER && now - s_phase_since_ms > s_offer_timeout_ms) {
        if (s_unanswered < 32) s_unanswered++;
        send_check();
      }
      if (s_phase == PHASE_DOWNLOADING && now - s_last_chunk_ms > CHUNK_TIMEOUT_MS)
        request_chunks();
      if (s_phase == PHASE_IDLE && now >= s_next_check_ms) send_check();
    }
    s_defer = false;
    const size_t n_out = s_deferred_count;
    s_deferred_count = 0;
    const bool restart = s_restart_pending;
    const bool restart_due = restart && now >= s_restart_at_ms;
    const bool give_up = !s_confirmed && now > CONFIRM_DEADLINE_MS;
    xSemaphoreGive(s_lock);
    /* Only this task touches s_deferred, and no longer under s_lock. */
    for (size_t i = 0; i < n_out; i++)
      esp_mqtt_client_enqueue(s_mqtt, s_deferred[i].topic, s_deferred[i].payload,
                              (int)s_deferred[i].len, 1, 0, true);
    if (restart && (restart_due || esp_mqtt_client_get_outbox_size(s_mqtt) == 0)) {
      esp_mqtt_client_stop(s_mqtt);
      esp_restart();
    }
    if (give_up) {
      ESP_LOGE(TAG, "%s never reached the service: rolling back", cfg.version);
      esp_ota_mark_app_invalid_rollback_and_reboot();
    }
  }
}
