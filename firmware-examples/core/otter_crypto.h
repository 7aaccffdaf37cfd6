/* The crypto the device core needs, kept small so that a port is one file.
 * otter_crypto_mbedtls.c implements it with mbedTLS 2.28 or 3.x (ESP-IDF 5.x). */
#ifndef OTTER_CRYPTO_H
#define OTTER_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Room for the backend's SHA-256 context, so callers embed it without a heap.
 * The mbedTLS backend checks at compile time that its context fits. */
#define OTTER_SHA256_CTX_SIZE 256

typedef struct otter_sha256_ctx {
  union {
    unsigned char bytes[OTTER_SHA256_CTX_SIZE];
    uint64_t align_u64;
    void* align_ptr;
    long double align_ld;
  } u;
} otter_sha256_ctx;

/* Each returns 0 on success, non-zero on a backend failure. */
int otter_sha256_start(otter_sha256_ctx* ctx);
int otter_sha256_update(otter_sha256_ctx* ctx, const uint8_t* data, size_t len);
/* Writes the digest and releases the context; start again to reuse it. */
int otter_sha256_finish(otter_sha256_ctx* ctx, uint8_t digest[32]);
/* Releases a context that will not be finished (safe on a finished or zeroed context). */
void otter_sha256_free(otter_sha256_ctx* ctx);

/* One-shot helper built on the three above. */
int otter_sha256(const uint8_t* data, size_t len, uint8_t digest[32]);

/* ECDSA P-256: 1 if sig (r||s, 32 bytes each, big-endian) is a valid signature of digest
 * by the uncompressed public point pub (0x04 || X || Y); 0 otherwise, including for a point
 * that is not on the curve. */
int otter_p256_verify(const uint8_t pub[65], const uint8_t digest[32], const uint8_t sig[64]);

#ifdef __cplusplus
}
#endif

#endif
