/* The device side of PROTOCOL.md: messages, manifest verification, semver and the download
 * window. See otter_core.h for the design; nothing here allocates. */
#include "otter_core.h"

#include <string.h>

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- error names ------------------------------------------------------------------- */

typedef struct err_text {
  int err;
  const char* name;
  const char* text;
} err_text;

static const err_text k_errors[] = {
    {OTTER_OK, "ok", "ok"},
    {OTTER_DUPLICATE, "duplicate", "chunk already received"},
    {OTTER_OUT_OF_ORDER, "out_of_order", "chunk past the resume offset, ask again"},
    {OTTER_E_ARG, "arg", "invalid argument"},
    {OTTER_E_NOSPACE, "nospace", "output buffer too small"},
    {OTTER_E_TOO_LARGE, "too_large", "input above a protocol or device limit"},
    {OTTER_E_JSON, "json", "malformed JSON"},
    {OTTER_E_FIELD, "field", "a field is missing, of the wrong type or badly formed"},
    {OTTER_E_NOT_FOUND, "not_found", "no such JSON member"},
    {OTTER_E_REQ, "req", "answer to another request"},
    {OTTER_E_STATE, "state", "called out of sequence"},
    {OTTER_E_JWS, "jws", "manifest is not a well-formed compact JWS"},
    {OTTER_E_HEADER, "header", "manifest header is not alg ES256, typ otter-manifest"},
    {OTTER_E_KID, "kid", "manifest kid names no pinned key"},
    {OTTER_E_SIGNATURE, "signature", "manifest signature does not verify with the pinned key"},
    {OTTER_E_SUB, "sub", "manifest sub is not this device"},
    {OTTER_E_NONCE, "nonce", "manifest nonce is not the one of this check"},
    {OTTER_E_EXPIRED, "expired", "manifest has expired"},
    {OTTER_E_MODEL, "model", "manifest is for another model"},
    {OTTER_E_SEMVER, "semver", "not a semantic version"},
    {OTTER_E_NOT_NEWER, "not_newer", "manifest version is not above the running one"},
    {OTTER_E_CHUNK_FILE, "chunk_file", "chunk of a file that is not being downloaded"},
    {OTTER_E_BEYOND_SIZE, "beyond_size", "chunk bytes past the image size"},
    {OTTER_E_CHUNK_LEN, "chunk_len", "chunk is empty or longer than asked for"},
    {OTTER_E_INCOMPLETE, "incomplete", "image is incomplete"},
    {OTTER_E_SHA256, "sha256", "image SHA-256 does not match the manifest"},
    {OTTER_E_IMAGE_SIG, "image_sig", "image signature does not verify with the release key"},
    {OTTER_E_IMAGE_SIG_MISSING, "image_sig_missing", "release key pinned but image unsigned"},
    {OTTER_E_CRYPTO, "crypto", "crypto backend failure"},
    {OTTER_E_RANDOM, "random", "random source failure"},
    {OTTER_E_PEM, "pem", "not a P-256 public key in PEM"},
    {OTTER_E_TOPIC, "topic", "not a topic of this device"},
};

static const err_text* find_err(int err) {
  size_t i;
  for (i = 0; i < COUNT_OF(k_errors); i++)
    if (k_errors[i].err == err) return &k_errors[i];
  return NULL;
}

const char* otter_err_name(int err) {
  const err_text* e = find_err(err);
  return e ? e->name : "unknown";
}

const char* otter_strerror(int err) {
  const err_text* e = find_err(err);
  return e ? e->text : "unknown error";
}

/* ---- small helpers ----------------------------------------------------------------- */

static int copy_str(char* out, size_t cap, const char* s) {
  const size_t n = strlen(s);
  if (n >= cap) return 0;
  memcpy(out, s, n + 1);
  return 1;
}

/* 1..64 characters of [A-Za-z0-9_.-]. */
static int valid_name(const char* s) {
  size_t i;
  const size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > OTTER_ID_MAX) return 0;
  for (i = 0; i < n; i++) {
    const char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '.' || c == '-'))
      return 0;
  }
  return 1;
}

static void to_hex(const uint8_t* in, size_t n, char* out) {
  static const char digits[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

static int lower_hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Constant-time comparison (digests and nonces). */
static int equal_ct(const void* a, const void* b, size_t n) {
  const unsigned char* x = (const unsigned char*)a;
  const unsigned char* y = (const unsigned char*)b;
  unsigned char d = 0;
  size_t i;
  for (i = 0; i < n; i++) d |= (unsigned char)(x[i] ^ y[i]);
  return d == 0;
}

/* ---- JSON writer ------------------------------------------------------------------- */

typedef struct writer {
  char* buf;
  size_t cap;
  size_t len;
  int overflow;
} writer;

static void put_raw(writer* w, const char* s, size_t n) {
  if (w->overflow) return;
  if (n >= w->cap - w->len) { /* keeps room for the NUL */
    w->overflow = 1;
    return;
  }
  memcpy(w->buf + w->len, s, n);
  w->len += n;
}

static void put_lit(writer* w, const char* s) {
  put_raw(w, s, strlen(s));
}

/* A JSON string; the caller has checked that s is valid UTF-8. */
static void put_str_n(writer* w, const char* s, size_t n) {
  size_t i;
  put_raw(w, "\"", 1);
  for (i = 0; i < n; i++) {
    const unsigned char c = (unsigned char)s[i];
    if (c == '"') {
      put_raw(w, "\\\"", 2);
    } else if (c == '\\') {
      put_raw(w, "\\\\", 2);
    } else if (c == '\n') {
      put_raw(w, "\\n", 2);
    } else if (c == '\r') {
      put_raw(w, "\\r", 2);
    } else if (c == '\t') {
      put_raw(w, "\\t", 2);
    } else if (c < 0x20 || c == 0x7f) {
      static const char digits[] = "0123456789abcdef";
      char e[6] = {'\\', 'u', '0', '0', 0, 0};
      e[4] = digits[c >> 4];
      e[5] = digits[c & 15];
      put_raw(w, e, 6);
    } else {
      put_raw(w, (const char*)&s[i], 1);
    }
  }
  put_raw(w, "\"", 1);
}

static void put_str(writer* w, const char* s) {
  put_str_n(w, s, strlen(s));
}

static void put_u64(writer* w, uint64_t v) {
  char tmp[21];
  size_t i = sizeof tmp;
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  put_raw(w, tmp + i, sizeof tmp - i);
}

static void put_key(writer* w, const char* key, int first) {
  if (!first) put_raw(w, ",", 1);
  put_str(w, key);
  put_raw(w, ":", 1);
}

static otter_err finish_writer(writer* w, size_t* len) {
  if (w->overflow) {
    if (w->cap) w->buf[0] = '\0';
    return OTTER_E_NOSPACE;
  }
  w->buf[w->len] = '\0';
  if (len) *len = w->len;
  return OTTER_OK;
}

static otter_err start_writer(writer* w, char* buf, size_t cap) {
  if (!buf || cap == 0) return OTTER_E_ARG;
  w->buf = buf;
  w->cap = cap;
  w->len = 0;
  w->overflow = 0;
  return OTTER_OK;
}

/* Longest prefix of s of at most max bytes that ends on a UTF-8 character boundary. */
static size_t utf8_cut(const char* s, size_t n, size_t max) {
  if (n <= max) return n;
  n = max;
  while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--;
  return n;
}

/* ---- base64 ------------------------------------------------------------------------ */

static int b64_value(char c, int url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (url) {
    if (c == '-') return 62;
    if (c == '_') return 63;
  } else {
    if (c == '+') return 62;
    if (c == '/') return 63;
  }
  return -1;
}

/* Unpadded base64 (url or standard alphabet); unused trailing bits must be zero. */
static otter_err b64_decode(const char* in, size_t len, uint8_t* out, size_t cap, size_t* out_len,
                            int url) {
  size_t i;
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  if (len % 4 == 1) return OTTER_E_FIELD;
  if ((len / 4) * 3 + (len % 4 ? len % 4 - 1 : 0) > cap) return OTTER_E_TOO_LARGE;
  for (i = 0; i < len; i++) {
    const int v = b64_value(in[i], url);
    if (v < 0) return OTTER_E_FIELD;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (uint8_t)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  if (acc != 0) return OTTER_E_FIELD; /* non-canonical: stray low bits */
  if (out_len) *out_len = o;
  return OTTER_OK;
}

otter_err otter_base64url_decode(const char* in, size_t len, uint8_t* out, size_t cap,
                                 size_t* out_len) {
  if ((!in && len) || (!out && cap)) return OTTER_E_ARG;
  return b64_decode(in, len, out, cap, out_len, 1);
}

/* ---- semver ------------------------------------------------------------------------ */

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

static int is_ident_char(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

/* A numeric part without leading zeros, at s[*i]. */
static int numeric_part(const char* s, size_t n, size_t* i) {
  const size_t start = *i;
  while (*i < n && is_digit(s[*i])) (*i)++;
  if (*i == start) return 0;
  if (s[start] == '0' && *i - start > 1) return 0;
  return 1;
}

/* Dot-separated non-empty identifiers up to '+' or the end; numeric identifiers without
 * leading zeros when strict_numeric. */
static int identifiers(const char* s, size_t n, size_t* i, int strict_numeric) {
  for (;;) {
    const size_t start = *i;
    int all_digits = 1;
    while (*i < n && is_ident_char(s[*i])) {
      if (!is_digit(s[*i])) all_digits = 0;
      (*i)++;
    }
    if (*i == start) return 0;
    if (strict_numeric && all_digits && s[start] == '0' && *i - start > 1) return 0;
    if (*i < n && s[*i] == '.') {
      (*i)++;
      continue;
    }
    return 1;
  }
}

typedef struct semver_parts {
  const char* core[3];
  size_t core_len[3];
  const char* pre; /* NULL if none */
  size_t pre_len;
} semver_parts;

static int parse_semver(const char* s, size_t n, semver_parts* p) {
  size_t i = 0;
  int k;
  for (k = 0; k < 3; k++) {
    const size_t start = i;
    if (!numeric_part(s, n, &i)) return 0;
    p->core[k] = s + start;
    p->core_len[k] = i - start;
    if (k < 2) {
      if (i >= n || s[i] != '.') return 0;
      i++;
    }
  }
  p->pre = NULL;
  p->pre_len = 0;
  if (i < n && s[i] == '-') {
    const size_t start = ++i;
    if (!identifiers(s, n, &i, 1)) return 0;
    p->pre = s + start;
    p->pre_len = i - start;
  }
  if (i < n && s[i] == '+') {
    i++;
    if (!identifiers(s, n, &i, 0)) return 0;
  }
  return i == n;
}

/* Numbers without leading zeros compare by length, then by digits: no overflow. */
static int cmp_numeric(const char* a, size_t an, const char* b, size_t bn) {
  int c;
  if (an != bn) return an < bn ? -1 : 1;
  c = memcmp(a, b, an);
  return c < 0 ? -1 : c > 0;
}

static int all_digits(const char* s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (!is_digit(s[i])) return 0;
  return 1;
}

static int cmp_prerelease(const char* a, size_t an, const char* b, size_t bn) {
  size_t i = 0;
  size_t j = 0;
  for (;;) {
    size_t ai = i;
    size_t bj = j;
    int an_num;
    int bn_num;
    int c;
    if (i >= an && j >= bn) return 0;
    if (i >= an) return -1; /* fewer identifiers: lower */
    if (j >= bn) return 1;
    while (ai < an && a[ai] != '.') ai++;
    while (bj < bn && b[bj] != '.') bj++;
    an_num = all_digits(a + i, ai - i);
    bn_num = all_digits(b + j, bj - j);
    if (an_num && bn_num) {
      c = cmp_numeric(a + i, ai - i, b + j, bj - j);
    } else if (an_num != bn_num) {
      c = an_num ? -1 : 1; /* numeric identifiers are lower */
    } else {
      const size_t m = ai - i < bj - j ? ai - i : bj - j;
      c = memcmp(a + i, b + j, m);
      c = c < 0 ? -1 : c > 0 ? 1 : (ai - i < bj - j ? -1 : ai - i > bj - j ? 1 : 0);
    }
    if (c != 0) return c;
    i = ai + 1;
    j = bj + 1;
    if (ai >= an) i = an;
    if (bj >= bn) j = bn;
  }
}

otter_err otter_semver_valid(const char* s, size_t len) {
  semver_parts p;
  if (!s) return OTTER_E_ARG;
  return parse_semver(s, len, &p) ? OTTER_OK : OTTER_E_SEMVER;
}

otter_err otter_semver_compare(const char* a, const char* b, int* order) {
  semver_parts pa;
  semver_parts pb;
  int k;
  if (!a || !b || !order) return OTTER_E_ARG;
  if (!parse_semver(a, strlen(a), &pa) || !parse_semver(b, strlen(b), &pb)) return OTTER_E_SEMVER;
  for (k = 0; k < 3; k++) {
    const int c = cmp_numeric(pa.core[k], pa.core_len[k], pb.core[k], pb.core_len[k]);
    if (c != 0) {
      *order = c;
      return OTTER_OK;
    }
  }
  if (!pa.pre || !pb.pre) {
    *order = pa.pre ? -1 : pb.pre ? 1 : 0; /* a pre-release is below its release */
    return OTTER_OK;
  }
  *order = cmp_prerelease(pa.pre, pa.pre_len, pb.pre, pb.pre_len);
  return OTTER_OK;
}

int otter_same_release(const char* a, const char* b) {
  int order = 0;
  if (!a || !b) return 0;
  if (otter_semver_compare(a, b, &order) == OTTER_OK) return order == 0;
  return strcmp(a, b) == 0;
}

uint32_t otter_backoff_ms(otter_device* dev, uint32_t base_ms, uint32_t failures, uint32_t cap_ms) {
  uint32_t d = base_ms < cap_ms ? base_ms : cap_ms;
  uint32_t i;
  uint8_t r[4];
  for (i = 0; i < failures && d < cap_ms; i++) d = d > cap_ms / 2 ? cap_ms : d * 2;
  if (!dev || !dev->random || dev->random(dev->random_ctx, r, sizeof r) != 0) return d;
  return d +
         (((uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 | r[3]) % (d / 4 + 1));
}

/* ---- keys -------------------------------------------------------------------------- */

/* SubjectPublicKeyInfo DER of a P-256 key up to its 65-byte point. */
static const uint8_t k_spki_prefix[26] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                          0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                          0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};

otter_err otter_pubkey_from_point(const uint8_t point[65], otter_pubkey* out) {
  uint8_t der[sizeof k_spki_prefix + 65];
  uint8_t digest[32];
  if (!point || !out || point[0] != 0x04) return OTTER_E_ARG;
  memcpy(der, k_spki_prefix, sizeof k_spki_prefix);
  memcpy(der + sizeof k_spki_prefix, point, 65);
  if (otter_sha256(der, sizeof der, digest) != 0) return OTTER_E_CRYPTO;
  memcpy(out->point, point, 65);
  to_hex(digest, 8, out->kid);
  return OTTER_OK;
}

otter_err otter_pubkey_from_pem(const char* pem, size_t len, otter_pubkey* out) {
  static const char begin[] = "-----BEGIN PUBLIC KEY-----";
  static const char end[] = "-----END PUBLIC KEY-----";
  char b64[128];
  size_t nb = 0;
  size_t i;
  size_t body_end = 0;
  uint8_t der[96];
  size_t der_len = 0;
  if (!pem || !out) return OTTER_E_ARG;
  /* Find the markers; base64 lines in between, whitespace ignored, '=' padding allowed. */
  for (i = 0; i + sizeof begin - 1 <= len; i++)
    if (memcmp(pem + i, begin, sizeof begin - 1) == 0) break;
  if (i + sizeof begin - 1 > len) return OTTER_E_PEM;
  i += sizeof begin - 1;
  for (body_end = i; body_end + sizeof end - 1 <= len; body_end++)
    if (memcmp(pem + body_end, end, sizeof end - 1) == 0) break;
  if (body_end + sizeof end - 1 > len) return OTTER_E_PEM;
  for (; i < body_end; i++) {
    const char c = pem[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    if (c == '=') break;
    if (nb >= sizeof b64) return OTTER_E_PEM;
    b64[nb++] = c;
  }
  for (; i < body_end; i++)
    if (pem[i] != '=' && pem[i] != ' ' && pem[i] != '\r' && pem[i] != '\n' && pem[i] != '\t')
      return OTTER_E_PEM;
  if (b64_decode(b64, nb, der, sizeof der, &der_len, 0) != OTTER_OK) return OTTER_E_PEM;
  if (der_len != sizeof k_spki_prefix + 65 || memcmp(der, k_spki_prefix, sizeof k_spki_prefix) != 0)
    return OTTER_E_PEM;
  return otter_pubkey_from_point(der + sizeof k_spki_prefix, out) == OTTER_OK ? OTTER_OK
                                                                              : OTTER_E_PEM;
}

/* ---- device ------------------------------------------------------------------------ */

otter_err otter_init(otter_device* dev, const otter_config* cfg) {
  const char* root;
  size_t i;
  if (!dev || !cfg) return OTTER_E_ARG;
  memset(dev, 0, sizeof *dev);
  root = cfg->root ? cfg->root : "ota/v1";
  if (root[0] == '\0' || strchr(root, '+') || strchr(root, '#') ||
      !copy_str(dev->root, sizeof dev->root, root))
    return OTTER_E_ARG;
  if (!valid_name(cfg->device_id) || !valid_name(cfg->model)) return OTTER_E_ARG;
  strcpy(dev->id, cfg->device_id);
  strcpy(dev->model, cfg->model);
  if (otter_set_version(dev, cfg->version) != OTTER_OK) return OTTER_E_ARG;
  if (!cfg->manifest_keys || cfg->manifest_key_count == 0) return OTTER_E_ARG;
  if (cfg->attr_count > OTTER_MAX_ATTRS || (cfg->attr_count && !cfg->attrs)) return OTTER_E_ARG;
  for (i = 0; i < cfg->attr_count; i++) {
    const otter_attr* a = &cfg->attrs[i];
    if (!a->key || !a->value || a->key[0] == '\0' || strlen(a->key) > OTTER_ATTR_KEY_MAX ||
        strlen(a->value) > OTTER_ATTR_VALUE_MAX || !otter_utf8_valid(a->key, strlen(a->key)) ||
        !otter_utf8_valid(a->value, strlen(a->value)))
      return OTTER_E_ARG;
  }
  if (cfg->chunk_len_max == 0 || cfg->window_max == 0 || !cfg->random) return OTTER_E_ARG;
  dev->manifest_keys = cfg->manifest_keys;
  dev->manifest_key_count = cfg->manifest_key_count;
  dev->release_key = cfg->release_key;
  dev->attrs = cfg->attrs;
  dev->attr_count = cfg->attr_count;
  dev->chunk_len_max = cfg->chunk_len_max;
  dev->window_max = cfg->window_max;
  dev->random = cfg->random;
  dev->random_ctx = cfg->random_ctx;
  return OTTER_OK;
}

otter_err otter_set_version(otter_device* dev, const char* version) {
  if (!dev || !version || strlen(version) > OTTER_VERSION_MAX ||
      otter_semver_valid(version, strlen(version)) != OTTER_OK)
    return OTTER_E_ARG;
  strcpy(dev->version, version);
  return OTTER_OK;
}

/* ---- topics ------------------------------------------------------------------------ */

otter_err otter_topic(const otter_device* dev, otter_topic_kind kind, char* buf, size_t cap) {
  writer w;
  const char* tail;
  if (!dev || start_writer(&w, buf, cap) != OTTER_OK) return OTTER_E_ARG;
  switch (kind) {
    case OTTER_TOPIC_CHECK:
      tail = "/up/check";
      break;
    case OTTER_TOPIC_STATUS:
      tail = "/up/status";
      break;
    case OTTER_TOPIC_CHUNK:
      tail = "/up/chunk";
      break;
    case OTTER_TOPIC_DOWN_FILTER:
      tail = "/down/#";
      break;
    default:
      return OTTER_E_ARG;
  }
  put_lit(&w, dev->root);
  put_lit(&w, "/dev/");
  put_lit(&w, dev->id);
  put_lit(&w, tail);
  return finish_writer(&w, NULL);
}

static int has_prefix(const char* s, size_t n, size_t* i, const char* p) {
  const size_t pn = strlen(p);
  if (n - *i < pn || memcmp(s + *i, p, pn) != 0) return 0;
  *i += pn;
  return 1;
}

otter_err otter_classify_topic(const otter_device* dev, const char* topic, size_t len,
                               otter_down_kind* kind, uint64_t* offset) {
  size_t i = 0;
  if (!dev || !topic || !kind) return OTTER_E_ARG;
  if (!has_prefix(topic, len, &i, dev->root) || !has_prefix(topic, len, &i, "/dev/") ||
      !has_prefix(topic, len, &i, dev->id) || !has_prefix(topic, len, &i, "/down/"))
    return OTTER_E_TOPIC;
  if (len - i == 5 && memcmp(topic + i, "offer", 5) == 0) {
    *kind = OTTER_DOWN_OFFER;
    return OTTER_OK;
  }
  if (len - i == 5 && memcmp(topic + i, "error", 5) == 0) {
    *kind = OTTER_DOWN_ERROR;
    return OTTER_OK;
  }
  if (has_prefix(topic, len, &i, "chunk/")) {
    otter_json num;
    uint64_t o;
    const char* slash = (const char*)memchr(topic + i, '/', len - i);
    if (!slash) return OTTER_E_TOPIC;
    num.p = slash + 1;
    num.n = (size_t)(topic + len - num.p);
    if (otter_json_u64(num, &o) != OTTER_OK) return OTTER_E_TOPIC;
    *kind = OTTER_DOWN_CHUNK;
    if (offset) *offset = o;
    if (!dev->dl.active || (size_t)(slash - (topic + i)) != 16 ||
        memcmp(topic + i, dev->manifest.chunk_file, 16) != 0)
      return OTTER_E_CHUNK_FILE;
    return OTTER_OK;
  }
  return OTTER_E_TOPIC;
}

/* ---- messages ---------------------------------------------------------------------- */

static void next_req(otter_device* dev, char prefix, char* out) {
  writer w;
  dev->seq++;
  start_writer(&w, out, OTTER_REQ_MAX + 1);
  put_raw(&w, &prefix, 1);
  put_lit(&w, "-");
  put_u64(&w, dev->seq);
  finish_writer(&w, NULL);
}

otter_err otter_build_check(otter_device* dev, char* buf, size_t cap, size_t* len) {
  writer w;
  uint8_t raw[OTTER_NONCE_HEX / 2];
  char req[OTTER_REQ_MAX + 1];
  char nonce[OTTER_NONCE_HEX + 1];
  size_t i;
  otter_err rc;
  if (!dev || start_writer(&w, buf, cap) != OTTER_OK) return OTTER_E_ARG;
  if (dev->random(dev->random_ctx, raw, sizeof raw) != 0) return OTTER_E_RANDOM;
  to_hex(raw, sizeof raw, nonce);
  next_req(dev, 'c', req);
  put_lit(&w, "{");
  put_key(&w, "req", 1);
  put_str(&w, req);
  put_key(&w, "model", 0);
  put_str(&w, dev->model);
  put_key(&w, "version", 0);
  put_str(&w, dev->version);
  put_key(&w, "nonce", 0);
  put_str(&w, nonce);
  if (dev->attr_count) {
    put_key(&w, "attrs", 0);
    put_lit(&w, "{");
    for (i = 0; i < dev->attr_count; i++) {
      put_key(&w, dev->attrs[i].key, i == 0);
      put_str(&w, dev->attrs[i].value);
    }
    put_lit(&w, "}");
  }
  put_lit(&w, "}");
  rc = finish_writer(&w, len);
  if (rc != OTTER_OK) return rc;
  /* Only a check that was built is outstanding. */
  strcpy(dev->check_req, req);
  strcpy(dev->nonce, nonce);
  dev->check_pending = 1;
  return OTTER_OK;
}

const char* otter_state_name(otter_state state) {
  switch (state) {
    case OTTER_STATE_DOWNLOADING:
      return "downloading";
    case OTTER_STATE_VERIFYING:
      return "verifying";
    case OTTER_STATE_INSTALLING:
      return "installing";
    case OTTER_STATE_SUCCESS:
      return "success";
    case OTTER_STATE_FAILED:
      return "failed";
    case OTTER_STATE_REJECTED:
      return "rejected";
    case OTTER_STATE_ROLLED_BACK:
      return "rolled_back";
  }
  return NULL;
}

otter_err otter_build_status(otter_device* dev, const otter_status* st, char* buf, size_t cap,
                             size_t* len) {
  writer w;
  char req[OTTER_REQ_MAX + 1];
  const char* state;
  const char* version;
  const char* rollout;
  if (!dev || !st || start_writer(&w, buf, cap) != OTTER_OK) return OTTER_E_ARG;
  state = otter_state_name(st->state);
  if (!state) return OTTER_E_ARG;
  if (st->progress < -1 || st->progress > 100) return OTTER_E_ARG;
  if ((st->state == OTTER_STATE_FAILED || st->state == OTTER_STATE_REJECTED ||
       st->state == OTTER_STATE_ROLLED_BACK) &&
      (!st->error || st->error[0] == '\0'))
    return OTTER_E_ARG;
  if (st->error && !otter_utf8_valid(st->error, strlen(st->error))) return OTTER_E_ARG;
  if (st->state == OTTER_STATE_REJECTED) {
    version =
        st->version ? st->version : (dev->refused_version[0] ? dev->refused_version : dev->version);
    rollout = st->rollout ? st->rollout : dev->refused_rollout;
  } else {
    version = st->version ? st->version
                          : (dev->have_manifest && dev->manifest.update ? dev->manifest.version
                                                                        : dev->version);
    rollout = st->rollout ? st->rollout : (dev->have_manifest ? dev->manifest.rollout : "");
  }
  if (otter_semver_valid(version, strlen(version)) != OTTER_OK) return OTTER_E_ARG;
  if (!otter_utf8_valid(rollout, strlen(rollout))) return OTTER_E_ARG;
  next_req(dev, 's', req);
  put_lit(&w, "{");
  put_key(&w, "req", 1);
  put_str(&w, req);
  put_key(&w, "version", 0);
  put_str(&w, version);
  put_key(&w, "state", 0);
  put_str(&w, state);
  if (st->progress >= 0) {
    put_key(&w, "progress", 0);
    put_u64(&w, (uint64_t)st->progress);
  }
  if (st->error) {
    const size_t n = strlen(st->error);
    put_key(&w, "error", 0);
    put_str_n(&w, st->error, utf8_cut(st->error, n, OTTER_ERROR_MAX));
  }
  if (rollout[0] != '\0') {
    put_key(&w, "rollout", 0);
    put_str(&w, rollout);
  }
  put_lit(&w, "}");
  return finish_writer(&w, len);
}

otter_err otter_parse_error(const char* payload, size_t len, char* req, size_t req_cap, char* code,
                            size_t code_cap, char* message, size_t message_cap) {
  otter_json doc;
  otter_json v;
  otter_err rc;
  if (!payload) return OTTER_E_ARG;
  if (len > OTTER_MESSAGE_MAX) return OTTER_E_TOO_LARGE;
  if (req && req_cap) req[0] = '\0';
  if (code && code_cap) code[0] = '\0';
  if (message && message_cap) message[0] = '\0';
  rc = otter_json_parse(payload, len, &doc);
  if (rc != OTTER_OK) return rc;
  if (!otter_json_is_object(doc)) return OTTER_E_FIELD;
  if (req && req_cap && otter_json_member(doc, "req", &v) == OTTER_OK)
    (void)otter_json_string(v, req, req_cap, NULL);
  if (code && code_cap) {
    rc = otter_json_member(doc, "code", &v);
    if (rc != OTTER_OK) return rc == OTTER_E_NOT_FOUND ? OTTER_E_FIELD : rc;
    rc = otter_json_string(v, code, code_cap, NULL);
    if (rc != OTTER_OK && rc != OTTER_E_TOO_LARGE) return rc;
  }
  if (message && message_cap && otter_json_member(doc, "message", &v) == OTTER_OK) {
    rc = otter_json_string(v, message, message_cap, NULL);
    if (rc == OTTER_E_TOO_LARGE) { /* cut to the buffer, on a character boundary */
      const size_t max = message_cap - 1;
      size_t i = 1;
      size_t o = 0;
      while (i + 1 < v.n && o < max && v.p[i] != '\\') message[o++] = v.p[i++];
      message[utf8_cut(message, o, o)] = '\0';
    }
  }
  return OTTER_OK;
}

/* ---- manifest ---------------------------------------------------------------------- */

/* A string member into out; OTTER_E_FIELD when missing or not a string. */
static otter_err get_str(otter_json obj, const char* key, char* out, size_t cap) {
  otter_json v;
  otter_err rc = otter_json_member(obj, key, &v);
  if (rc == OTTER_E_NOT_FOUND) return OTTER_E_FIELD;
  if (rc != OTTER_OK) return rc;
  rc = otter_json_string(v, out, cap, NULL);
  return rc == OTTER_E_TOO_LARGE ? OTTER_E_FIELD : rc;
}

static otter_err get_i64(otter_json obj, const char* key, int64_t* out) {
  otter_json v;
  otter_err rc = otter_json_member(obj, key, &v);
  if (rc == OTTER_E_NOT_FOUND) return OTTER_E_FIELD;
  if (rc != OTTER_OK) return rc;
  return otter_json_i64(v, out);
}

static otter_err get_u32_positive(otter_json obj, const char* key, uint32_t* out) {
  otter_json v;
  uint64_t x;
  otter_err rc = otter_json_member(obj, key, &v);
  if (rc == OTTER_E_NOT_FOUND) return OTTER_E_FIELD;
  if (rc != OTTER_OK) return rc;
  if (otter_json_u64(v, &x) != OTTER_OK || x == 0 || x > 0xffffffffu) return OTTER_E_FIELD;
  *out = (uint32_t)x;
  return OTTER_OK;
}

/* Optional boolean: absent is false. */
static otter_err get_opt_bool(otter_json obj, const char* key, int* out) {
  otter_json v;
  otter_err rc = otter_json_member(obj, key, &v);
  *out = 0;
  if (rc == OTTER_E_NOT_FOUND) return OTTER_OK;
  if (rc != OTTER_OK) return rc;
  return otter_json_bool(v, out);
}

/* The claims of an update manifest beyond sub, nonce and exp. */
static otter_err read_update_claims(const otter_device* dev, otter_json c, otter_manifest* m) {
  otter_json v;
  otter_json chunk;
  otter_err rc;
  int order;
  size_t i;
  size_t n;
  if ((rc = get_str(c, "model", m->model, sizeof m->model)) != OTTER_OK) return rc;
  if (strcmp(m->model, dev->model) != 0) return OTTER_E_MODEL;
  rc = get_str(c, "version", m->version, sizeof m->version);
  if (rc == OTTER_E_FIELD) {
    /* Tell an over-long version (not semver as far as this device goes) from a missing one. */
    if (otter_json_member(c, "version", &v) == OTTER_OK && v.n > 0 && v.p[0] == '"')
      return OTTER_E_SEMVER;
  }
  if (rc != OTTER_OK) return rc;
  if ((rc = get_opt_bool(c, "downgrade", &m->downgrade)) != OTTER_OK) return OTTER_E_FIELD;
  if (otter_semver_compare(m->version, dev->version, &order) != OTTER_OK) return OTTER_E_SEMVER;
  if (order == 0 || (order < 0 && !m->downgrade)) return OTTER_E_NOT_NEWER;
  /* from is informational; read it when it is a string that fits. */
  if (get_str(c, "from", m->from, sizeof m->from) != OTTER_OK) m->from[0] = '\0';
  if (otter_json_member(c, "size", &v) != OTTER_OK || otter_json_u64(v, &m->size) != OTTER_OK ||
      m->size == 0)
    return OTTER_E_FIELD;
  if ((rc = get_str(c, "sha256", m->sha256_hex, sizeof m->sha256_hex)) != OTTER_OK) return rc;
  n = strlen(m->sha256_hex);
  if (n != 64) return OTTER_E_FIELD;
  for (i = 0; i < 32; i++) {
    const int hi = lower_hex_digit(m->sha256_hex[2 * i]);
    const int lo = lower_hex_digit(m->sha256_hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return OTTER_E_FIELD;
    m->sha256[i] = (uint8_t)(hi * 16 + lo);
  }
  if ((rc = get_str(c, "rollout", m->rollout, sizeof m->rollout)) != OTTER_OK) return rc;
  if (m->rollout[0] == '\0') return OTTER_E_FIELD;
  /* This device downloads over MQTT only, so chunk is required. */
  if (otter_json_member(c, "chunk", &chunk) != OTTER_OK || !otter_json_is_object(chunk))
    return OTTER_E_FIELD;
  if ((rc = get_str(chunk, "file", m->chunk_file, sizeof m->chunk_file)) != OTTER_OK) return rc;
  if (strlen(m->chunk_file) != 16 || memcmp(m->chunk_file, m->sha256_hex, 16) != 0)
    return OTTER_E_FIELD;
  if ((rc = get_u32_positive(chunk, "max", &m->chunk_max)) != OTTER_OK) return rc;
  if ((rc = get_u32_positive(chunk, "window", &m->chunk_window)) != OTTER_OK) return rc;
  rc = otter_json_member(c, "image_sig", &v);
  if (rc == OTTER_OK) {
    char sig[90];
    size_t sig_len = 0;
    if (get_str(c, "image_sig", sig, sizeof sig) != OTTER_OK ||
        otter_base64url_decode(sig, strlen(sig), m->image_sig, sizeof m->image_sig, &sig_len) !=
            OTTER_OK ||
        sig_len != 64)
      return OTTER_E_FIELD;
    m->has_image_sig = 1;
  } else if (rc != OTTER_E_NOT_FOUND) {
    return rc;
  }
  return OTTER_OK;
}

/* Finds the '.'-separated parts of a compact JWS. */
static otter_err split_jws(const char* s, size_t n, size_t* dot1, size_t* dot2) {
  size_t i;
  int dots = 0;
  for (i = 0; i < n; i++) {
    if (s[i] != '.') continue;
    if (dots == 0) *dot1 = i;
    if (dots == 1) *dot2 = i;
    if (++dots > 2) return OTTER_E_JWS;
  }
  if (dots != 2 || *dot1 == 0 || *dot2 == *dot1 + 1 || *dot2 + 1 == n) return OTTER_E_JWS;
  return OTTER_OK;
}

static otter_err check_header(const otter_device* dev, const uint8_t* h, size_t n,
                              const otter_pubkey** key) {
  otter_json doc;
  otter_json v;
  char text[32];
  otter_err rc;
  size_t i;
  *key = NULL;
  if (otter_json_parse((const char*)h, n, &doc) != OTTER_OK || !otter_json_is_object(doc))
    return OTTER_E_JWS;
  if (get_str(doc, "alg", text, sizeof text) != OTTER_OK || strcmp(text, "ES256") != 0)
    return OTTER_E_HEADER;
  if (get_str(doc, "typ", text, sizeof text) != OTTER_OK || strcmp(text, "otter-manifest") != 0)
    return OTTER_E_HEADER;
  rc = otter_json_member(doc, "kid", &v);
  if (rc == OTTER_E_NOT_FOUND) return OTTER_OK; /* no kid: try every pinned key */
  if (rc != OTTER_OK) return OTTER_E_JWS;
  if (otter_json_string(v, text, sizeof text, NULL) != OTTER_OK) return OTTER_E_KID;
  for (i = 0; i < dev->manifest_key_count; i++)
    if (strcmp(dev->manifest_keys[i].kid, text) == 0) {
      *key = &dev->manifest_keys[i];
      return OTTER_OK;
    }
  return OTTER_E_KID;
}

static otter_err verify_manifest(otter_device* dev, const char* jws, size_t n, uint8_t* work,
                                 size_t work_cap, int64_t now, otter_manifest* m) {
  size_t dot1 = 0;
  size_t dot2 = 0;
  size_t hlen = 0;
  size_t clen = 0;
  size_t slen = 0;
  uint8_t sig[64];
  uint8_t digest[32];
  const otter_pubkey* key = NULL;
  otter_json claims;
  char text[OTTER_NONCE_HEX + 1 > OTTER_ID_MAX + 1 ? OTTER_NONCE_HEX + 1 : OTTER_ID_MAX + 1];
  otter_json v;
  otter_err rc;
  int verified = 0;
  size_t i;

  if ((rc = split_jws(jws, n, &dot1, &dot2)) != OTTER_OK) return rc;
  /* The header is small; decode it into the work buffer, then reuse it for the claims. */
  rc = otter_base64url_decode(jws, dot1, work, work_cap, &hlen);
  if (rc == OTTER_E_TOO_LARGE) return rc;
  if (rc != OTTER_OK) return OTTER_E_JWS;
  if ((rc = check_header(dev, work, hlen, &key)) != OTTER_OK) return rc;
  rc = otter_base64url_decode(jws + dot2 + 1, n - dot2 - 1, sig, sizeof sig, &slen);
  if (rc != OTTER_OK || slen != 64) return OTTER_E_JWS;
  if (otter_sha256((const uint8_t*)jws, dot2, digest) != 0) return OTTER_E_CRYPTO;
  if (key) {
    verified = otter_p256_verify(key->point, digest, sig);
  } else {
    for (i = 0; i < dev->manifest_key_count && !verified; i++)
      verified = otter_p256_verify(dev->manifest_keys[i].point, digest, sig);
  }
  if (!verified) return OTTER_E_SIGNATURE;

  /* Signed: now read the claims. */
  rc = otter_base64url_decode(jws + dot1 + 1, dot2 - dot1 - 1, work, work_cap, &clen);
  if (rc == OTTER_E_TOO_LARGE) return rc;
  if (rc != OTTER_OK) return OTTER_E_JWS;
  if (otter_json_parse((const char*)work, clen, &claims) != OTTER_OK) return OTTER_E_JSON;
  if (!otter_json_is_object(claims)) return OTTER_E_JSON;

  memset(m, 0, sizeof *m);
  m->retry_s = -1;
  /* The order of PROTOCOL.md: device, check, time, version. */
  rc = get_str(claims, "sub", text, sizeof text);
  if (rc == OTTER_E_JSON) return rc;
  if (rc != OTTER_OK || strcmp(text, dev->id) != 0) return OTTER_E_SUB;
  rc = get_str(claims, "nonce", text, sizeof text);
  if (rc == OTTER_E_JSON) return rc;
  if (rc != OTTER_OK || strlen(text) != OTTER_NONCE_HEX ||
      !equal_ct(text, dev->nonce, OTTER_NONCE_HEX))
    return OTTER_E_NONCE;
  /* Signed and answering this check: should a later rule refuse it, the "rejected" report
   * names the release and rollout it refused, so the service counts it in that rollout. */
  if (get_str(claims, "version", dev->refused_version, sizeof dev->refused_version) != OTTER_OK ||
      otter_semver_valid(dev->refused_version, strlen(dev->refused_version)) != OTTER_OK)
    dev->refused_version[0] = '\0';
  if (get_str(claims, "rollout", dev->refused_rollout, sizeof dev->refused_rollout) != OTTER_OK)
    dev->refused_rollout[0] = '\0';
  if ((rc = get_i64(claims, "exp", &m->exp)) != OTTER_OK) return rc;
  if (now > 0 && now >= m->exp) return OTTER_E_EXPIRED;
  if (otter_json_member(claims, "iat", &v) == OTTER_OK && otter_json_i64(v, &m->iat) != OTTER_OK)
    return OTTER_E_FIELD;
  if (otter_json_member(claims, "update", &v) != OTTER_OK ||
      otter_json_bool(v, &m->update) != OTTER_OK)
    return OTTER_E_FIELD;
  if (!m->update) {
    if (otter_json_member(claims, "retry_s", &v) == OTTER_OK &&
        (otter_json_i64(v, &m->retry_s) != OTTER_OK || m->retry_s < 0))
      return OTTER_E_FIELD;
    return OTTER_OK;
  }
  return read_update_claims(dev, claims, m);
}

otter_err otter_handle_offer(otter_device* dev, const char* payload, size_t len, char* scratch,
                             size_t scratch_cap, int64_t now, otter_manifest* out) {
  otter_json doc;
  otter_json v;
  otter_manifest m;
  size_t jws_len = 0;
  int update = 0;
  otter_err rc;
  if (!dev || !payload || !scratch || scratch_cap == 0) return OTTER_E_ARG;
  if (len > OTTER_MESSAGE_MAX) return OTTER_E_TOO_LARGE;
  if ((rc = otter_json_parse(payload, len, &doc)) != OTTER_OK) return rc;
  if (!otter_json_is_object(doc)) return OTTER_E_JSON;
  {
    char req[OTTER_REQ_MAX + 1];
    rc = get_str(doc, "req", req, sizeof req);
    if (rc == OTTER_E_JSON) return rc;
    if (rc != OTTER_OK || !dev->check_pending || strcmp(req, dev->check_req) != 0)
      return OTTER_E_REQ;
  }
  /* From here on the answer to the outstanding check: it is consumed whatever it says. */
  dev->check_pending = 0;
  dev->refused_version[0] = '\0';
  dev->refused_rollout[0] = '\0';
  if (otter_json_member(doc, "update", &v) != OTTER_OK || otter_json_bool(v, &update) != OTTER_OK)
    return OTTER_E_FIELD;
  if (otter_json_member(doc, "manifest", &v) != OTTER_OK) return OTTER_E_FIELD;
  /* The JWS text goes to the start of scratch, the decoded parts after it. */
  rc = otter_json_string(v, scratch, scratch_cap, &jws_len);
  if (rc != OTTER_OK) return rc;
  rc = verify_manifest(dev, scratch, jws_len, (uint8_t*)scratch + jws_len + 1,
                       scratch_cap - jws_len - 1, now, &m);
  memset(dev->nonce, 0, sizeof dev->nonce); /* one answer per nonce */
  if (rc != OTTER_OK) return rc;
  if (m.update != update) return OTTER_E_FIELD; /* the unsigned flag must agree */
  if (m.update) {
    const int same_image = dev->dl.active && dev->have_manifest && dev->manifest.update &&
                           dev->manifest.size == m.size &&
                           memcmp(dev->manifest.sha256, m.sha256, 32) == 0;
    if (!same_image) {
      otter_download_abort(dev);
      if (otter_sha256_start(&dev->dl.hash) != 0) return OTTER_E_CRYPTO;
      dev->dl.active = 1;
    }
    /* A new window is asked for either way: the old one's chunks may never come. */
    dev->dl.window_end = dev->dl.next;
    dev->dl.window_last = dev->dl.next;
    dev->dl.refused = 0;
    dev->dl.window_over = 1;
  } else {
    otter_download_abort(dev); /* the service says there is nothing to fetch any more */
  }
  dev->manifest = m;
  dev->have_manifest = 1;
  dev->refused_version[0] = '\0';
  dev->refused_rollout[0] = '\0';
  if (out) *out = m;
  return OTTER_OK;
}

/* ---- download ---------------------------------------------------------------------- */

void otter_download_abort(otter_device* dev) {
  if (!dev) return;
  if (dev->dl.active) otter_sha256_free(&dev->dl.hash);
  memset(&dev->dl, 0, sizeof dev->dl);
}

int otter_download_error_is_fatal(const otter_device* dev, const char* req, const char* code) {
  if (!dev || !req || !code || !dev->dl.active) return 0;
  if (req[0] != 'k' || req[1] != '-') return 0;
  return strcmp(code, "rate_limited") != 0 && strcmp(code, "unavailable") != 0 &&
         strcmp(code, "internal") != 0;
}

otter_err otter_download_restore(otter_device* dev, const uint8_t* data, size_t len) {
  if (!dev || (!data && len)) return OTTER_E_ARG;
  if (!dev->dl.active) return OTTER_E_STATE;
  if (len > dev->manifest.size - dev->dl.next) return OTTER_E_BEYOND_SIZE;
  if (otter_sha256_update(&dev->dl.hash, data, len) != 0) return OTTER_E_CRYPTO;
  dev->dl.next += len;
  dev->dl.window_end = dev->dl.next;
  dev->dl.window_last = dev->dl.next;
  dev->dl.window_over = 1;
  return OTTER_OK;
}

otter_err otter_build_chunk_request(otter_device* dev, char* buf, size_t cap, size_t* len) {
  writer w;
  char req[OTTER_REQ_MAX + 1];
  uint64_t remaining;
  uint64_t chunks;
  uint32_t chunk_len;
  uint32_t count;
  otter_err rc;
  if (!dev || start_writer(&w, buf, cap) != OTTER_OK) return OTTER_E_ARG;
  if (!dev->dl.active || dev->dl.next >= dev->manifest.size) return OTTER_E_STATE;
  chunk_len =
      dev->chunk_len_max < dev->manifest.chunk_max ? dev->chunk_len_max : dev->manifest.chunk_max;
  count =
      dev->window_max < dev->manifest.chunk_window ? dev->window_max : dev->manifest.chunk_window;
  remaining = dev->manifest.size - dev->dl.next;
  chunks = remaining / chunk_len + (remaining % chunk_len != 0);
  if (chunks < count) count = (uint32_t)chunks;
  next_req(dev, 'k', req);
  put_lit(&w, "{");
  put_key(&w, "req", 1);
  put_str(&w, req);
  put_key(&w, "file", 0);
  put_str(&w, dev->manifest.chunk_file);
  put_key(&w, "offset", 0);
  put_u64(&w, dev->dl.next);
  put_key(&w, "len", 0);
  put_u64(&w, chunk_len);
  put_key(&w, "count", 0);
  put_u64(&w, count);
  put_lit(&w, "}");
  rc = finish_writer(&w, len);
  if (rc != OTTER_OK) return rc;
  dev->dl.len = chunk_len;
  dev->dl.window_last = dev->dl.next + (uint64_t)(count - 1) * chunk_len;
  dev->dl.window_end = dev->dl.next + (uint64_t)count * chunk_len;
  if (dev->dl.window_end > dev->manifest.size) dev->dl.window_end = dev->manifest.size;
  dev->dl.refused = 0;
  dev->dl.window_over = 0;
  return OTTER_OK;
}

otter_err otter_chunk_receive(otter_device* dev, uint64_t offset, const uint8_t* data, size_t len) {
  otter_download* dl;
  if (!dev || (!data && len)) return OTTER_E_ARG;
  dl = &dev->dl;
  if (!dl->active) return OTTER_E_STATE;
  if (offset >= dev->manifest.size || len > dev->manifest.size - offset) return OTTER_E_BEYOND_SIZE;
  if (len == 0 || len > dev->chunk_len_max) return OTTER_E_CHUNK_LEN;
  if (offset >= dl->window_last) dl->window_over = 1;
  if (offset < dl->next) return OTTER_DUPLICATE;
  if (offset > dl->next) {
    dl->refused = 1;
    return OTTER_OUT_OF_ORDER;
  }
  if (otter_sha256_update(&dl->hash, data, len) != 0) return OTTER_E_CRYPTO;
  dl->next += len;
  return OTTER_OK;
}

int otter_download_need_request(const otter_device* dev) {
  const otter_download* dl;
  if (!dev) return 0;
  dl = &dev->dl;
  if (!dl->active || dl->next >= dev->manifest.size) return 0;
  return dl->next >= dl->window_end || dl->window_over;
}

int otter_download_complete(const otter_device* dev) {
  return dev && dev->dl.active && dev->dl.next == dev->manifest.size;
}

uint64_t otter_download_offset(const otter_device* dev) {
  return dev ? dev->dl.next : 0;
}

int otter_download_progress(const otter_device* dev) {
  if (!dev || !dev->dl.active || dev->manifest.size == 0) return 0;
  /* Divide first: size * 100 could overflow for absurd sizes. */
  if (dev->manifest.size > UINT64_MAX / 100)
    return (int)(dev->dl.next / (dev->manifest.size / 100));
  return (int)(dev->dl.next * 100 / dev->manifest.size);
}

otter_err otter_download_finish(otter_device* dev) {
  uint8_t digest[32];
  otter_err rc = OTTER_OK;
  if (!dev) return OTTER_E_ARG;
  if (!dev->dl.active) return OTTER_E_STATE;
  if (dev->dl.next != dev->manifest.size) {
    otter_download_abort(dev);
    return OTTER_E_INCOMPLETE;
  }
  if (otter_sha256_finish(&dev->dl.hash, digest) != 0) {
    memset(&dev->dl, 0, sizeof dev->dl);
    return OTTER_E_CRYPTO;
  }
  memset(&dev->dl, 0, sizeof dev->dl);
  if (!equal_ct(digest, dev->manifest.sha256, 32))
    rc = OTTER_E_SHA256;
  else if (dev->release_key && !dev->manifest.has_image_sig)
    rc = OTTER_E_IMAGE_SIG_MISSING;
  else if (dev->release_key &&
           !otter_p256_verify(dev->release_key->point, digest, dev->manifest.image_sig))
    rc = OTTER_E_IMAGE_SIG;
  return rc;
}
