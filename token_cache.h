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

/*
 * The token of one request as a cache key: its bytes and their SHA-256.
 * The first lookup that needs the digest computes it and later lookups
 * reuse it.  Set up with teleport_token_key_init().
 */
typedef struct {
    const char *compact;
    size_t length;
    unsigned char digest[TELEPORT_DIGEST_LEN];
    int digested;
} teleport_token_key;

void teleport_token_key_init(teleport_token_key *key, const char *compact,
                             size_t length);

/*
 * The token a connection used last.  A client that keeps its connection
 * open usually sends the same token with each request on it.  A request
 * whose token has exactly the bytes of the last one, under the same key set
 * version, takes it from here without hashing it or locking the cache.
 * A connection is served by one thread at a time, so the memo needs no
 * lock.  It holds at most one token and up to twice TELEPORT_MEMO_MAX
 * bytes from pool p, and releases the token when p is cleared.
 */
typedef struct teleport_token_memo teleport_token_memo;

#define TELEPORT_MEMO_MAX 8192

teleport_token_memo *teleport_token_memo_create(apr_pool_t *p);

/*
 * Return the token verified earlier from key's bytes under key set
 * version, from memo (may be NULL) or the cache, or NULL.  The token stays
 * valid until pool p (the request's) is cleared.  The caller still applies
 * teleport_token_check(): expired tokens are not removed here, but evicted
 * first when their bucket is full.
 */
const teleport_token *teleport_token_cache_get(
    teleport_token_cache *cache, teleport_token_memo *memo,
    teleport_token_key *key,
    const unsigned char version[TELEPORT_DIGEST_LEN], apr_pool_t *p);

/*
 * Store token (which the cache then owns) under key for key set version,
 * evicting the entry of its bucket that expires first, and make it memo's
 * token.  The token stays valid until pool p (the request's) is cleared.
 */
void teleport_token_cache_put(teleport_token_cache *cache,
                              teleport_token_memo *memo,
                              teleport_token_key *key,
                              const unsigned char version[TELEPORT_DIGEST_LEN],
                              teleport_token *token, apr_pool_t *p);

#endif /* TELEPORT_TOKEN_CACHE_H */
