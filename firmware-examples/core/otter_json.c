/* A strict, allocation-free JSON reader: one validating pass, then lookups on spans.
 * Recursion is bounded by OTTER_JSON_MAX_DEPTH, every index is checked against the length. */
#include <string.h>

#include "otter_core.h"

typedef struct reader {
  const char* s;
  size_t n;
  size_t i;
  int depth;
} reader;

static int value(reader* r);

static void skip_ws(reader* r) {
  while (r->i < r->n &&
         (r->s[r->i] == ' ' || r->s[r->i] == '\t' || r->s[r->i] == '\n' || r->s[r->i] == '\r'))
    r->i++;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Four hex digits at s[i]; -1 if not. */
static long hex4(const char* s, size_t n, size_t i) {
  long v = 0;
  size_t k;
  if (i + 4 > n) return -1;
  for (k = 0; k < 4; k++) {
    const int h = hex_value(s[i + k]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

/* Length of the well-formed UTF-8 sequence at s[i] (non-ASCII lead), 0 if malformed. */
static size_t utf8_len(const unsigned char* s, size_t n, size_t i) {
  const unsigned char c = s[i];
  size_t len;
  unsigned long cp;
  size_t k;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > n) return 0;
  for (k = 1; k < len; k++) {
    if ((s[i + k] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i + k] & 0x3f);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0;
  if (cp >= 0xd800 && cp <= 0xdfff) return 0;
  return len;
}

int otter_utf8_valid(const char* s, size_t n) {
  const unsigned char* u = (const unsigned char*)s;
  size_t i = 0;
  while (i < n) {
    const size_t len = u[i] < 0x80 ? 1 : utf8_len(u, n, i);
    if (len == 0) return 0;
    i += len;
  }
  return 1;
}

/* Validates a string starting at the opening quote. */
static int string(reader* r) {
  if (r->i >= r->n || r->s[r->i] != '"') return 0;
  r->i++;
  while (r->i < r->n) {
    const unsigned char c = (unsigned char)r->s[r->i];
    if (c == '"') {
      r->i++;
      return 1;
    }
    if (c < 0x20) return 0;
    if (c == '\\') {
      char e;
      if (r->i + 1 >= r->n) return 0;
      e = r->s[r->i + 1];
      if (e == 'u') {
        const long u = hex4(r->s, r->n, r->i + 2);
        if (u < 0) return 0;
        r->i += 6;
        if (u >= 0xd800 && u <= 0xdbff) { /* needs a low surrogate */
          long lo;
          if (r->i + 1 >= r->n || r->s[r->i] != '\\' || r->s[r->i + 1] != 'u') return 0;
          lo = hex4(r->s, r->n, r->i + 2);
          if (lo < 0xdc00 || lo > 0xdfff) return 0;
          r->i += 6;
        } else if (u >= 0xdc00 && u <= 0xdfff) {
          return 0;
        }
      } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                 e == 'r' || e == 't') {
        r->i += 2;
      } else {
        return 0;
      }
    } else if (c < 0x80) {
      r->i++;
    } else {
      const size_t len = utf8_len((const unsigned char*)r->s, r->n, r->i);
      if (len == 0) return 0;
      r->i += len;
    }
  }
  return 0;
}

static int digits(reader* r) {
  const size_t start = r->i;
  while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9') r->i++;
  return r->i > start;
}

static int number(reader* r) {
  if (r->i < r->n && r->s[r->i] == '-') r->i++;
  if (r->i >= r->n) return 0;
  if (r->s[r->i] == '0') {
    r->i++;
  } else if (!digits(r)) {
    return 0;
  }
  if (r->i < r->n && r->s[r->i] == '.') {
    r->i++;
    if (!digits(r)) return 0;
  }
  if (r->i < r->n && (r->s[r->i] == 'e' || r->s[r->i] == 'E')) {
    r->i++;
    if (r->i < r->n && (r->s[r->i] == '+' || r->s[r->i] == '-')) r->i++;
    if (!digits(r)) return 0;
  }
  return 1;
}

static int literal(reader* r, const char* word) {
  const size_t len = strlen(word);
  if (r->n - r->i < len || memcmp(r->s + r->i, word, len) != 0) return 0;
  r->i += len;
  return 1;
}

static int container(reader* r, char open, char close) {
  if (++r->depth > OTTER_JSON_MAX_DEPTH) return 0;
  r->i++; /* the opening bracket */
  (void)open;
  skip_ws(r);
  if (r->i < r->n && r->s[r->i] == close) {
    r->i++;
    r->depth--;
    return 1;
  }
  for (;;) {
    skip_ws(r);
    if (close == '}') {
      if (!string(r)) return 0;
      skip_ws(r);
      if (r->i >= r->n || r->s[r->i] != ':') return 0;
      r->i++;
      skip_ws(r);
    }
    if (!value(r)) return 0;
    skip_ws(r);
    if (r->i >= r->n) return 0;
    if (r->s[r->i] == ',') {
      r->i++;
      continue;
    }
    if (r->s[r->i] == close) {
      r->i++;
      r->depth--;
      return 1;
    }
    return 0;
  }
}

static int value(reader* r) {
  if (r->i >= r->n) return 0;
  switch (r->s[r->i]) {
    case '{':
      return container(r, '{', '}');
    case '[':
      return container(r, '[', ']');
    case '"':
      return string(r);
    case 't':
      return literal(r, "true");
    case 'f':
      return literal(r, "false");
    case 'n':
      return literal(r, "null");
    default:
      return number(r);
  }
}

otter_err otter_json_parse(const char* doc, size_t len, otter_json* out) {
  reader r;
  size_t start;
  if (!doc || !out) return OTTER_E_ARG;
  r.s = doc;
  r.n = len;
  r.i = 0;
  r.depth = 0;
  skip_ws(&r);
  start = r.i;
  if (!value(&r)) return OTTER_E_JSON;
  out->p = doc + start;
  out->n = r.i - start;
  skip_ws(&r);
  return r.i == len ? OTTER_OK : OTTER_E_JSON;
}

int otter_json_is_object(otter_json v) {
  return v.n >= 2 && v.p && v.p[0] == '{';
}

/* Unescapes the string value at v (already validated) into out: OTTER_OK, OTTER_E_TOO_LARGE
 * when it does not fit, OTTER_E_FIELD when it holds a NUL (C strings cannot). */
static otter_err unescape(otter_json v, char* out, size_t cap, size_t* len) {
  size_t i = 1;
  size_t o = 0;
  const size_t end = v.n - 1; /* the closing quote */
  while (i < end) {
    unsigned long cp;
    char c = v.p[i];
    if (c != '\\') {
      if (o + 1 >= cap) return OTTER_E_TOO_LARGE;
      out[o++] = c;
      i++;
      continue;
    }
    c = v.p[i + 1];
    if (c != 'u') {
      char d;
      switch (c) {
        case 'b':
          d = '\b';
          break;
        case 'f':
          d = '\f';
          break;
        case 'n':
          d = '\n';
          break;
        case 'r':
          d = '\r';
          break;
        case 't':
          d = '\t';
          break;
        default:
          d = c;
          break; /* " \ / */
      }
      if (o + 1 >= cap) return OTTER_E_TOO_LARGE;
      out[o++] = d;
      i += 2;
      continue;
    }
    cp = (unsigned long)hex4(v.p, v.n, i + 2);
    i += 6;
    if (cp >= 0xd800 && cp <= 0xdbff) {
      const unsigned long lo = (unsigned long)hex4(v.p, v.n, i + 2);
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      i += 6;
    }
    if (cp == 0) return OTTER_E_FIELD;
    if (cp < 0x80) {
      if (o + 1 >= cap) return OTTER_E_TOO_LARGE;
      out[o++] = (char)cp;
    } else if (cp < 0x800) {
      if (o + 2 >= cap) return OTTER_E_TOO_LARGE;
      out[o++] = (char)(0xc0 | (cp >> 6));
      out[o++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      if (o + 3 >= cap) return OTTER_E_TOO_LARGE;
      out[o++] = (char)(0xe0 | (cp >> 12));
      out[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
      out[o++] = (char)(0x80 | (cp & 0x3f));
    } else {
      if (o + 4 >= cap) return OTTER_E_TOO_LARGE;
      out[o++] = (char)(0xf0 | (cp >> 18));
      out[o++] = (char)(0x80 | ((cp >> 12) & 0x3f));
      out[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
      out[o++] = (char)(0x80 | (cp & 0x3f));
    }
  }
  out[o] = '\0';
  if (len) *len = o;
  return OTTER_OK;
}

static int is_string(otter_json v) {
  return v.p && v.n >= 2 && v.p[0] == '"';
}

otter_err otter_json_member(otter_json obj, const char* key, otter_json* value_out) {
  reader r;
  int found = 0;
  const size_t key_len = key ? strlen(key) : 0;
  if (!key || !value_out) return OTTER_E_ARG;
  if (!otter_json_is_object(obj)) return OTTER_E_FIELD;
  r.s = obj.p;
  r.n = obj.n;
  r.i = 1;
  r.depth = 0;
  for (;;) {
    otter_json k;
    size_t vstart;
    skip_ws(&r);
    if (r.i >= r.n || r.s[r.i] == '}') break;
    k.p = r.s + r.i;
    if (!string(&r)) return OTTER_E_JSON;
    k.n = (size_t)(r.s + r.i - k.p);
    skip_ws(&r);
    if (r.i >= r.n || r.s[r.i] != ':') return OTTER_E_JSON;
    r.i++;
    skip_ws(&r);
    vstart = r.i;
    if (!value(&r)) return OTTER_E_JSON;
    {
      /* Keys we look up are short and plain; compare unescaped when escapes are present. */
      char buf[OTTER_ID_MAX + 1];
      size_t klen = 0;
      const int plain = k.n - 2 == key_len && memcmp(k.p + 1, key, key_len) == 0;
      const int match =
          plain || (memchr(k.p, '\\', k.n) && unescape(k, buf, sizeof buf, &klen) == OTTER_OK &&
                    klen == key_len && memcmp(buf, key, key_len) == 0);
      if (match) {
        if (found) return OTTER_E_JSON;
        found = 1;
        value_out->p = r.s + vstart;
        value_out->n = r.i - vstart;
      }
    }
    skip_ws(&r);
    if (r.i < r.n && r.s[r.i] == ',') r.i++;
  }
  return found ? OTTER_OK : OTTER_E_NOT_FOUND;
}

otter_err otter_json_string(otter_json v, char* out, size_t cap, size_t* len) {
  reader r;
  if (!out || cap == 0) return OTTER_E_ARG;
  out[0] = '\0';
  if (!is_string(v)) return OTTER_E_FIELD;
  r.s = v.p;
  r.n = v.n;
  r.i = 0;
  r.depth = 0;
  if (!string(&r) || r.i != v.n) return OTTER_E_FIELD;
  {
    const otter_err rc = unescape(v, out, cap, len);
    if (rc != OTTER_OK) out[0] = '\0';
    return rc;
  }
}

otter_err otter_json_u64(otter_json v, uint64_t* out) {
  uint64_t x = 0;
  size_t i;
  if (!out) return OTTER_E_ARG;
  if (!v.p || v.n == 0 || v.n > 20) return OTTER_E_FIELD;
  if (v.p[0] == '0' && v.n > 1) return OTTER_E_FIELD;
  for (i = 0; i < v.n; i++) {
    const char c = v.p[i];
    unsigned d;
    if (c < '0' || c > '9') return OTTER_E_FIELD;
    d = (unsigned)(c - '0');
    if (x > (UINT64_MAX - d) / 10) return OTTER_E_FIELD;
    x = x * 10 + d;
  }
  *out = x;
  return OTTER_OK;
}

otter_err otter_json_i64(otter_json v, int64_t* out) {
  uint64_t m;
  const int neg = v.p && v.n > 0 && v.p[0] == '-';
  otter_json rest = v;
  if (!out) return OTTER_E_ARG;
  if (neg) {
    rest.p++;
    rest.n--;
  }
  if (otter_json_u64(rest, &m) != OTTER_OK) return OTTER_E_FIELD;
  if (neg) {
    if (m > (uint64_t)INT64_MAX + 1) return OTTER_E_FIELD;
    *out = m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
  } else {
    if (m > (uint64_t)INT64_MAX) return OTTER_E_FIELD;
    *out = (int64_t)m;
  }
  return OTTER_OK;
}

otter_err otter_json_bool(otter_json v, int* out) {
  if (!out) return OTTER_E_ARG;
  if (v.p && v.n == 4 && memcmp(v.p, "true", 4) == 0) {
    *out = 1;
    return OTTER_OK;
  }
  if (v.p && v.n == 5 && memcmp(v.p, "false", 5) == 0) {
    *out = 0;
    return OTTER_OK;
  }
  return OTTER_E_FIELD;
}
