/* otter device core: the device side of PROTOCOL.md in portable C99.
 *
 * No heap: every buffer is the caller's (the otter_device struct, message buffers, a scratch
 * buffer for the manifest). Nothing here does I/O; the caller moves bytes between MQTT, the
 * flash and these functions. Crypto is behind otter_crypto.h (mbedTLS: otter_crypto_mbedtls.c).
 *
 * Download design: chunks are accepted only in order. A chunk at the resume offset is hashed
 * and handed back for writing (flash writers such as Arduino's Update and esp_ota_write are
 * sequential anyway); a chunk before it is a duplicate and ignored; a chunk after it (a gap: an
 * earlier chunk was lost) is refused, and the caller asks again from the resume offset once the
 * window has drained (otter_download_need_request) or after its own timeout. */
#ifndef OTTER_CORE_H
#define OTTER_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "otter_crypto.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTTER_ID_MAX 64         /* device id, model, operator name: 1..64 of [A-Za-z0-9_.-] */
#define OTTER_VERSION_MAX 64    /* a device-side limit on version strings */
#define OTTER_ROOT_MAX 64       /* topic root */
#define OTTER_REQ_MAX 64        /* request ids, protocol limit */
#define OTTER_ROLLOUT_MAX 64    /* rollout ids (strings) */
#define OTTER_NONCE_HEX 32      /* this device's nonces: 16 random bytes in hex */
#define OTTER_ERROR_MAX 256     /* status "error", protocol limit (bytes here) */
#define OTTER_MESSAGE_MAX 16384 /* JSON payloads, protocol limit */
#define OTTER_MAX_ATTRS 16
#define OTTER_ATTR_KEY_MAX 32
#define OTTER_ATTR_VALUE_MAX 128
#define OTTER_JSON_MAX_DEPTH 16

/* Results. Stable: values and names never change, new ones are appended. Negative values are
 * errors; 0 is success; positive values are benign outcomes of otter_chunk_receive. */
typedef enum otter_err {
  OTTER_OK = 0,
  OTTER_DUPLICATE = 1,    /* chunk already received: ignore it */
  OTTER_OUT_OF_ORDER = 2, /* chunk past the resume offset: dropped, ask again later */

  OTTER_E_ARG = -1,                /* an invalid argument or configuration from the caller */
  OTTER_E_NOSPACE = -2,            /* the output buffer is too small */
  OTTER_E_TOO_LARGE = -3,          /* input above a protocol or device limit */
  OTTER_E_JSON = -4,               /* malformed JSON */
  OTTER_E_FIELD = -5,              /* a field is missing, of the wrong type or badly formed */
  OTTER_E_NOT_FOUND = -6,          /* no such JSON member */
  OTTER_E_REQ = -7,                /* an answer to another request: ignore it */
  OTTER_E_STATE = -8,              /* called out of sequence (no check sent, no download, ...) */
  OTTER_E_JWS = -9,                /* the manifest is not a well-formed compact JWS */
  OTTER_E_HEADER = -10,            /* header alg is not ES256 or typ is not otter-manifest */
  OTTER_E_KID = -11,               /* header kid names no pinned key */
  OTTER_E_SIGNATURE = -12,         /* signature does not verify with the pinned key */
  OTTER_E_SUB = -13,               /* manifest sub is not this device */
  OTTER_E_NONCE = -14,             /* manifest nonce is not the one just sent */
  OTTER_E_EXPIRED = -15,           /* manifest exp has passed */
  OTTER_E_MODEL = -16,             /* manifest is for another model */
  OTTER_E_SEMVER = -17,            /* not a Semantic Versioning 2.0.0 string */
  OTTER_E_NOT_NEWER = -18,         /* version not above the running one and no downgrade:true */
  OTTER_E_CHUNK_FILE = -19,        /* a chunk of a file that is not being downloaded */
  OTTER_E_BEYOND_SIZE = -20,       /* bytes past the manifest's size */
  OTTER_E_CHUNK_LEN = -21,         /* empty chunk, or longer than this device asked for */
  OTTER_E_INCOMPLETE = -22,        /* fewer than size bytes received */
  OTTER_E_SHA256 = -23,            /* image SHA-256 differs from the manifest's */
  OTTER_E_IMAGE_SIG = -24,         /* image_sig does not verify with the pinned release key */
  OTTER_E_IMAGE_SIG_MISSING = -25, /* a release key is pinned but the manifest has no image_sig */
  OTTER_E_CRYPTO = -26,            /* the crypto backend failed */
  OTTER_E_RANDOM = -27,            /* the random source failed */
  OTTER_E_PEM = -28,               /* not a P-256 public key in PEM (SubjectPublicKeyInfo) */
  OTTER_E_TOPIC = -29              /* not a topic of this device */
} otter_err;

/* "signature", "not_newer", ... (the enum name without OTTER_E_, lowercase). */
const char* otter_err_name(int err);
/* A sentence for logs and status reports. */
const char* otter_strerror(int err);

/* ---- keys ---------------------------------------------------------------------------- */

typedef struct otter_pubkey {
  uint8_t point[65]; /* uncompressed P-256 point 0x04||X||Y */
  char kid[17];      /* first 16 hex characters of SHA-256(SubjectPublicKeyInfo DER) */
} otter_pubkey;

/* Reads "-----BEGIN PUBLIC KEY-----" PEM of a P-256 key (as otterd's and openssl's). */
otter_err otter_pubkey_from_pem(const char* pem, size_t len, otter_pubkey* out);
/* From the raw 65-byte point (for keys compiled into firmware). */
otter_err otter_pubkey_from_point(const uint8_t point[65], otter_pubkey* out);

/* ---- device -------------------------------------------------------------------------- */

/* Fills out[0..n) with random bytes; returns 0 on success. */
typedef int (*otter_random_fn)(void* ctx, uint8_t* out, size_t n);

typedef struct otter_attr {
  const char* key;
  const char* value;
} otter_attr;

typedef struct otter_config {
  const char* root;      /* NULL: "ota/v1" */
  const char* device_id; /* the MQTT client id */
  const char* model;
  const char* version;               /* the running version */
  const otter_pubkey* manifest_keys; /* pinned manifest keys (key rotation: several) */
  size_t manifest_key_count;
  const otter_pubkey* release_key; /* NULL: image_sig is not required */
  const otter_attr* attrs;         /* optional check attrs; must outlive the device */
  size_t attr_count;
  uint32_t chunk_len_max; /* this device's largest chunk (its MQTT receive buffer), > 0 */
  uint32_t window_max;    /* chunks per request this device accepts, > 0 */
  otter_random_fn random;
  void* random_ctx;
} otter_config;

typedef struct otter_manifest {
  int update;  /* 1: an update; 0: up to date */
  int64_t iat; /* 0 if absent */
  int64_t exp;
  int64_t retry_s; /* update:false only; -1 if absent */
  char model[OTTER_ID_MAX + 1];
  char version[OTTER_VERSION_MAX + 1];
  char from[OTTER_VERSION_MAX + 1];
  char rollout[OTTER_ROLLOUT_MAX + 1];
  uint64_t size;
  uint8_t sha256[32];
  char sha256_hex[65];
  char chunk_file[17];
  uint32_t chunk_max;
  uint32_t chunk_window;
  int downgrade;
  int has_image_sig;
  uint8_t image_sig[64];
} otter_manifest;

typedef struct otter_download {
  int active;
  uint64_t next;         /* resume offset: the first byte not yet received */
  uint64_t window_end;   /* end of the bytes asked for so far */
  uint64_t window_last;  /* offset of the last chunk asked for */
  uint32_t len;          /* chunk length in use */
  int refused;           /* a chunk of the current window was refused as out of order */
  int window_over;       /* the current window's last chunk has arrived */
  otter_sha256_ctx hash; /* over bytes [0, next) */
} otter_download;

typedef struct otter_device {
  char root[OTTER_ROOT_MAX + 1];
  char id[OTTER_ID_MAX + 1];
  char model[OTTER_ID_MAX + 1];
  char version[OTTER_VERSION_MAX + 1];
  const otter_pubkey* manifest_keys;
  size_t manifest_key_count;
  const otter_pubkey* release_key;
  const otter_attr* attrs;
  size_t attr_count;
  uint32_t chunk_len_max;
  uint32_t window_max;
  otter_random_fn random;
  void* random_ctx;
  uint32_t seq;
  int check_pending;
  char check_req[OTTER_REQ_MAX + 1];
  char nonce[OTTER_NONCE_HEX + 1];
  int have_manifest;
  otter_manifest manifest; /* the last accepted one */
  /* The last refused offer's version and rollout, when its signed claims were for this check
   * and named them ("" otherwise): what a "rejected" status reports. */
  char refused_version[OTTER_VERSION_MAX + 1];
  char refused_rollout[OTTER_ROLLOUT_MAX + 1];
  otter_download dl;
} otter_device;

/* Copies the strings; keys and attrs are referenced and must outlive the device. */
otter_err otter_init(otter_device* dev, const otter_config* cfg);
/* Sets the running version (after an update is installed and the device restarted). */
otter_err otter_set_version(otter_device* dev, const char* version);

/* ---- topics -------------------------------------------------------------------------- */

typedef enum otter_topic_kind {
  OTTER_TOPIC_CHECK,      /* R/dev/D/up/check */
  OTTER_TOPIC_STATUS,     /* R/dev/D/up/status */
  OTTER_TOPIC_CHUNK,      /* R/dev/D/up/chunk */
  OTTER_TOPIC_DOWN_FILTER /* R/dev/D/down/# */
} otter_topic_kind;

otter_err otter_topic(const otter_device* dev, otter_topic_kind kind, char* buf, size_t cap);

typedef enum otter_down_kind {
  OTTER_DOWN_OFFER,
  OTTER_DOWN_ERROR,
  OTTER_DOWN_CHUNK
} otter_down_kind;

/* Classifies a received topic. For a chunk, *offset is its O and the file must be the one
 * being downloaded (OTTER_E_CHUNK_FILE otherwise). OTTER_E_TOPIC for anything else. */
otter_err otter_classify_topic(const otter_device* dev, const char* topic, size_t len,
                               otter_down_kind* kind, uint64_t* offset);

/* ---- messages ------------------------------------------------------------------------ */

/* Builds a check with a fresh nonce (remembered for the answer). Output is NUL-terminated;
 * *len excludes the NUL. */
otter_err otter_build_check(otter_device* dev, char* buf, size_t cap, size_t* len);

typedef enum otter_state {
  OTTER_STATE_DOWNLOADING,
  OTTER_STATE_VERIFYING,
  OTTER_STATE_INSTALLING,
  OTTER_STATE_SUCCESS,
  OTTER_STATE_FAILED,
  OTTER_STATE_REJECTED,
  OTTER_STATE_ROLLED_BACK
} otter_state;

const char* otter_state_name(otter_state state);

typedef struct otter_status {
  otter_state state;
  int progress;      /* 0..100, or -1 to omit */
  const char* error; /* required with failed, rejected, rolled_back; cut to 256 bytes */
  /* NULL: the accepted manifest's version, else the running one; for "rejected", the refused
   * offer's version when its signed claims named one, else the running one. */
  const char* version;
  /* NULL: the accepted manifest's rollout, if any; for "rejected", the refused offer's, if
   * any. "" omits it. */
  const char* rollout;
} otter_status;

otter_err otter_build_status(otter_device* dev, const otter_status* st, char* buf, size_t cap,
                             size_t* len);

/* Handles an offer payload: JSON checks, req, then the manifest (signature with a pinned key,
 * header, sub, nonce, exp, and for updates model, version and the download claims).
 * now: unix seconds, or 0 when the device does not know the time (exp is then not checked).
 * scratch: holds the manifest text and then its decoded parts; twice the payload length is
 * always enough (OTTER_E_TOO_LARGE when it is too small).
 * OTTER_OK: accepted, *out (may be NULL) and dev->manifest hold it; for an update the download
 * is set up (kept, with its progress, if it is the same image as the one in progress); an
 * update:false answer ends any download in progress.
 * OTTER_E_REQ: an answer to another check, ignore. Any other error: report "rejected". */
otter_err otter_handle_offer(otter_device* dev, const char* payload, size_t len, char* scratch,
                             size_t scratch_cap, int64_t now, otter_manifest* out);

/* Reads an error message {"req","code","message"}; each output is NUL-terminated and cut to
 * its buffer (NULL to skip). */
otter_err otter_parse_error(const char* payload, size_t len, char* req, size_t req_cap, char* code,
                            size_t code_cap, char* message, size_t message_cap);

/* 1 when an error answer (req and code from otter_parse_error) ends the download in progress:
 * it answers a chunk request ("k-...") and asking again cannot help. rate_limited,
 * unavailable and internal are transient (the chunk timeout asks again); an error answering a
 * check or a status says nothing about the download. 0 otherwise, and with no download. */
int otter_download_error_is_fatal(const otter_device* dev, const char* req, const char* code);

/* ---- download ------------------------------------------------------------------------ */

/* Resuming after a restart: feeds bytes already in flash, from offset 0, before the first
 * chunk request. */
otter_err otter_download_restore(otter_device* dev, const uint8_t* data, size_t len);

/* Builds {"req","file","offset","len","count"} from the resume offset. OTTER_E_STATE when no
 * download is active or every byte is in. */
otter_err otter_build_chunk_request(otter_device* dev, char* buf, size_t cap, size_t* len);

/* A chunk arrived at `offset`. OTTER_OK: write data at offset (it is hashed);
 * OTTER_DUPLICATE / OTTER_OUT_OF_ORDER: drop it; errors: drop it (OTTER_E_BEYOND_SIZE is
 * a misbehaving server). */
otter_err otter_chunk_receive(otter_device* dev, uint64_t offset, const uint8_t* data, size_t len);

/* 1 when the caller should send otter_build_chunk_request: the window is drained, or its last
 * chunk arrived after a refused one. Also ask again after a timeout of your choosing. */
int otter_download_need_request(const otter_device* dev);
int otter_download_complete(const otter_device* dev);
uint64_t otter_download_offset(const otter_device* dev);
int otter_download_progress(const otter_device* dev); /* 0..100 */

/* After the last byte: checks size, SHA-256 and (with a pinned release key) image_sig.
 * Ends the download either way. */
otter_err otter_download_finish(otter_device* dev);
/* Drops the download (e.g. after a flash write failed). */
void otter_download_abort(otter_device* dev);

/* ---- semver, base64url, JSON --------------------------------------------------------- */

otter_err otter_semver_valid(const char* s, size_t len);
/* *order < 0, 0, > 0 by semver precedence (build metadata ignored). OTTER_E_SEMVER if either
 * string is not a valid version. */
otter_err otter_semver_compare(const char* a, const char* b, int* order);
/* 1 when a and b name the same release: equal by semver precedence (build metadata ignored,
 * "1.1.0+b7" is "1.1.0"), or byte-equal when either is not a valid version. */
int otter_same_release(const char* a, const char* b);

/* Retry delay: base_ms doubled `failures` times, at most cap_ms, plus up to 25 % jitter from
 * the device's random source (none if it fails), so that a fleet that failed together does not
 * come back together. */
uint32_t otter_backoff_ms(otter_device* dev, uint32_t base_ms, uint32_t failures, uint32_t cap_ms);

/* base64url without padding; OTTER_E_FIELD on any other character or an impossible length. */
otter_err otter_base64url_decode(const char* in, size_t len, uint8_t* out, size_t cap,
                                 size_t* out_len);

/* 1 if s[0, n) is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF). */
int otter_utf8_valid(const char* s, size_t n);

/* A JSON value: a span of the document it lives in. */
typedef struct otter_json {
  const char* p;
  size_t n;
} otter_json;

/* Checks that doc is exactly one JSON value (RFC 8259, UTF-8, nesting at most
 * OTTER_JSON_MAX_DEPTH) and returns it. */
otter_err otter_json_parse(const char* doc, size_t len, otter_json* value);
int otter_json_is_object(otter_json v);
/* The member `key` of an object (parsed value). OTTER_E_NOT_FOUND; OTTER_E_JSON when the key
 * appears twice (ambiguous, so refused). */
otter_err otter_json_member(otter_json obj, const char* key, otter_json* value);
/* Unescaped string into out (NUL-terminated). OTTER_E_FIELD if not a string or it holds a NUL;
 * OTTER_E_TOO_LARGE if it does not fit. */
otter_err otter_json_string(otter_json v, char* out, size_t cap, size_t* len);
/* Integers without fraction or exponent; OTTER_E_FIELD otherwise or on overflow. */
otter_err otter_json_u64(otter_json v, uint64_t* out);
otter_err otter_json_i64(otter_json v, int64_t* out);
otter_err otter_json_bool(otter_json v, int* out);

#ifdef __cplusplus
}
#endif

#endif
