/* otter_crypto.h with mbedTLS: Debian's 2.28 on the host, 3.x in ESP-IDF 5.x.
 * Only public API is used (no struct fields), so MBEDTLS_PRIVATE is not needed. */
#include "otter_crypto.h"

#include <string.h>

#include "mbedtls/bignum.h"
#include "mbedtls/ecdsa.h"
#include "mbedtls/ecp.h"
#include "mbedtls/sha256.h"
#include "mbedtls/version.h"

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#define OTTER_SHA256_STARTS(c) mbedtls_sha256_starts((c), 0)
#define OTTER_SHA256_UPDATE(c, d, n) mbedtls_sha256_update((c), (d), (n))
#define OTTER_SHA256_FINISH(c, o) mbedtls_sha256_finish((c), (o))
#else
/* 2.x: the int-returning functions carry the _ret suffix. */
#define OTTER_SHA256_STARTS(c) mbedtls_sha256_starts_ret((c), 0)
#define OTTER_SHA256_UPDATE(c, d, n) mbedtls_sha256_update_ret((c), (d), (n))
#define OTTER_SHA256_FINISH(c, o) mbedtls_sha256_finish_ret((c), (o))
#endif

/* Compile-time check that the context fits the caller's storage (C99 has no static_assert). */
typedef char
    otter_sha256_ctx_fits[sizeof(mbedtls_sha256_context) <= OTTER_SHA256_CTX_SIZE ? 1 : -1];

static mbedtls_sha256_context* ctx_of(otter_sha256_ctx* ctx) {
  return (mbedtls_sha256_context*)(void*)ctx->u.bytes;
}

int otter_sha256_start(otter_sha256_ctx* ctx) {
  mbedtls_sha256_init(ctx_of(ctx));
  return OTTER_SHA256_STARTS(ctx_of(ctx)) == 0 ? 0 : -1;
}

int otter_sha256_update(otter_sha256_ctx* ctx, const uint8_t* data, size_t len) {
  if (len == 0) return 0;
  return OTTER_SHA256_UPDATE(ctx_of(ctx), data, len) == 0 ? 0 : -1;
}

int otter_sha256_finish(otter_sha256_ctx* ctx, uint8_t digest[32]) {
  const int rc = OTTER_SHA256_FINISH(ctx_of(ctx), digest);
  mbedtls_sha256_free(ctx_of(ctx));
  return rc == 0 ? 0 : -1;
}

void otter_sha256_free(otter_sha256_ctx* ctx) {
  /* ESP-IDF's hardware SHA releases its engine here, so this is not just a memset. */
  mbedtls_sha256_free(ctx_of(ctx));
  memset(ctx, 0, sizeof *ctx);
}

int otter_sha256(const uint8_t* data, size_t len, uint8_t digest[32]) {
  otter_sha256_ctx ctx;
  if (otter_sha256_start(&ctx) != 0) return -1;
  if (otter_sha256_update(&ctx, data, len) != 0) {
    mbedtls_sha256_free(ctx_of(&ctx));
    return -1;
  }
  return otter_sha256_finish(&ctx, digest);
}

int otter_p256_verify(const uint8_t pub[65], const uint8_t digest[32], const uint8_t sig[64]) {
  mbedtls_ecp_group grp;
  mbedtls_ecp_point q;
  mbedtls_mpi r;
  mbedtls_mpi s;
  int ok = 0;
  mbedtls_ecp_group_init(&grp);
  mbedtls_ecp_point_init(&q);
  mbedtls_mpi_init(&r);
  mbedtls_mpi_init(&s);
  if (mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1) == 0 &&
      mbedtls_ecp_point_read_binary(&grp, &q, pub, 65) == 0 &&
      mbedtls_ecp_check_pubkey(&grp, &q) == 0 && mbedtls_mpi_read_binary(&r, sig, 32) == 0 &&
      mbedtls_mpi_read_binary(&s, sig + 32, 32) == 0 &&
      mbedtls_ecdsa_verify(&grp, digest, 32, &q, &r, &s) == 0)
    ok = 1;
  mbedtls_mpi_free(&s);
  mbedtls_mpi_free(&r);
  mbedtls_ecp_point_free(&q);
  mbedtls_ecp_group_free(&grp);
  return ok;
}
