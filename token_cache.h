/*
 * Verified-token cache, one per child process.
 *
 * Teleport reuses one token for every request of an application session
 * (minutes), so a token that verified once is remembered, keyed by the
 * SHA-256 of its exact bytes, and later requests skip the signature.  A hit
 * still has to pass the location's checks (teleport_token_check) and is
 * only valid against the key set version it was verified with: a rotation
 * that changes the keys makes every entry verify again.
 */
#ifndef TELEPORT_TOKEN_CACHE_H
#define TELEPORT_TOKEN_CACHE_H

#include "apr_pools.h"
#include "jwt_verify.h"

#define TELEPORT_DIGEST_LEN 32

typedef struct teleport_token_cache teleport_token_cache;

/* Create a cache of at most capacity tokens in pool p (the child's pool).
 * Returns NULL when capacity is 0 (caching disabled). */
teleport_token_cache *teleport_token_cache_create(apr_pool_t *p,
                                                  unsigned capacity);

/* Digest of a token's bytes, the cache key. */
void teleport_token_digest(const char *compact, size_t length,
                           unsigned char digest[TELEPORT_DIGEST_LEN]);

/*
 * Return the token stored under digest for key set version, or NULL.  The
 * token stays valid until pool p (the request's) is cleared.  The caller
 * still applies teleport_token_check(): expired tokens are not removed
 * here, but evicted first when their bucket is full.
 */
const teleport_token *teleport_token_cache_get(
    teleport_token_cache *cache,
    const unsigned char digest[TELEPORT_DIGEST_LEN],
    const unsigned char version[TELEPORT_DIGEST_LEN], apr_pool_t *p);

/*
 * Store token (which the cache then owns) under digest for key set
 * version, evicting the entry of its bucket that expires first.  The token
 * stays valid until pool p (the request's) is cleared.
 */
void teleport_token_cache_put(teleport_token_cache *cache,
                              const unsigned char digest[TELEPORT_DIGEST_LEN],
                              const unsigned char version[TELEPORT_DIGEST_LEN],
                              teleport_token *token, apr_pool_t *p);

#endif /* TELEPORT_TOKEN_CACHE_H */
