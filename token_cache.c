/*
 * Verified-token cache: a set-associative table of 4-way buckets, guarded
 * by one thread mutex per process.  Entries are reference counted so that
 * an eviction never frees a token that a request still reads.
 */
#include "token_cache.h"

#include "apr_atomic.h"
#include "apr_thread_mutex.h"
#include "apr_thread_proc.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define WAYS 4

typedef struct {
    teleport_token *token;
    apr_uint32_t references;
} shared_token;

typedef struct {
    unsigned char digest[TELEPORT_DIGEST_LEN];
    unsigned char version[TELEPORT_DIGEST_LEN];
    shared_token *shared;            /* NULL: empty */
} cache_slot;

struct teleport_token_cache {
    cache_slot *slots;
    unsigned buckets;
    apr_thread_mutex_t *lock;
};

/* SHA-256 fetched once per process: EVP_sha256() makes OpenSSL 3 look the
 * implementation up again on every digest, which costs more than hashing a
 * token.  Read-only once teleport_token_cache_create() has run. */
static EVP_MD *sha256;

/* Each thread's digest context, kept between requests: EVP_Digest() would
 * allocate and free one, and take and drop a reference to sha256 (an
 * atomic counter that every thread of the process writes), per token. */
static apr_threadkey_t *digest_context_key;

static void release(shared_token *shared)
{
    if (shared != NULL && apr_atomic_dec32(&shared->references) == 0) {
        teleport_token_free(shared->token);
        free(shared);
    }
}

static apr_status_t release_cleanup(void *data)
{
    release(data);
    return APR_SUCCESS;
}

static apr_status_t token_free_cleanup(void *data)
{
    teleport_token_free(data);
    return APR_SUCCESS;
}

static void digest_context_free(void *data)
{
    EVP_MD_CTX_free(data);
}

static apr_status_t cache_cleanup(void *data)
{
    teleport_token_cache *cache = data;
    unsigned i;

    for (i = 0; i < cache->buckets * WAYS; i++) {
        release(cache->slots[i].shared);
        cache->slots[i].shared = NULL;
    }
    return APR_SUCCESS;
}

teleport_token_cache *teleport_token_cache_create(apr_pool_t *p,
                                                  unsigned capacity)
{
    teleport_token_cache *cache;

    if (capacity == 0) {
        return NULL;
    }
    if (sha256 == NULL) {
        sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    }
    if (digest_context_key == NULL
        && apr_threadkey_private_create(&digest_context_key,
                                        digest_context_free, p)
           != APR_SUCCESS) {
        digest_context_key = NULL;
    }
    cache = apr_pcalloc(p, sizeof(*cache));
    cache->buckets = (capacity + WAYS - 1) / WAYS;
    cache->slots = apr_pcalloc(p, sizeof(cache_slot) * cache->buckets * WAYS);
    if (apr_thread_mutex_create(&cache->lock, APR_THREAD_MUTEX_DEFAULT, p)
        != APR_SUCCESS) {
        return NULL;
    }
    apr_pool_cleanup_register(p, cache, cache_cleanup, apr_pool_cleanup_null);
    return cache;
}

/* Return this thread's digest context set up for SHA-256, creating it on
 * the thread's first call; NULL when that fails. */
static EVP_MD_CTX *digest_context(void)
{
    void *stored = NULL;
    EVP_MD_CTX *context;

    if (digest_context_key == NULL || sha256 == NULL
        || apr_threadkey_private_get(&stored, digest_context_key)
           != APR_SUCCESS) {
        return NULL;
    }
    if (stored != NULL) {
        return stored;
    }
    context = EVP_MD_CTX_new();
    if (context == NULL || EVP_DigestInit_ex(context, sha256, NULL) != 1
        || apr_threadkey_private_set(context, digest_context_key)
           != APR_SUCCESS) {
        EVP_MD_CTX_free(context);
        return NULL;
    }
    return context;
}

/* Compute the SHA-256 of length bytes of compact into digest. */
static void digest_bytes(const char *compact, size_t length,
                         unsigned char digest[TELEPORT_DIGEST_LEN])
{
    EVP_MD_CTX *context = digest_context();

    /* A NULL type starts a new hash with the context's own digest. */
    if (context != NULL && EVP_DigestInit_ex(context, NULL, NULL) == 1
        && EVP_DigestUpdate(context, compact, length) == 1
        && EVP_DigestFinal_ex(context, digest, NULL) == 1) {
        return;
    }
    EVP_Digest(compact, length, digest, NULL,
               sha256 != NULL ? sha256 : EVP_sha256(), NULL);
}

void teleport_token_key_init(teleport_token_key *key, const char *compact,
                             size_t length)
{
    key->compact = compact;
    key->length = length;
    key->digested = 0;
}

/* Return the digest of key's bytes, computing it on the first call. */
static const unsigned char *key_digest(teleport_token_key *key)
{
    if (!key->digested) {
        digest_bytes(key->compact, key->length, key->digest);
        key->digested = 1;
    }
    return key->digest;
}

/* Connection memo */

struct teleport_token_memo {
    shared_token *shared;                      /* NULL: empty */
    unsigned char version[TELEPORT_DIGEST_LEN];
    char *bytes;                               /* the token's bytes */
    size_t length;
    size_t capacity;                           /* bytes allocated */
    apr_pool_t *pool;
};

static apr_status_t memo_cleanup(void *data)
{
    teleport_token_memo *memo = data;

    release(memo->shared);
    memo->shared = NULL;
    return APR_SUCCESS;
}

teleport_token_memo *teleport_token_memo_create(apr_pool_t *p)
{
    teleport_token_memo *memo = apr_pcalloc(p, sizeof(*memo));

    memo->pool = p;
    apr_pool_cleanup_register(p, memo, memo_cleanup, apr_pool_cleanup_null);
    return memo;
}

/* Return memo's token, with a reference for the caller, when it was made
 * from exactly key's bytes under version; NULL otherwise. */
static shared_token *memo_get(const teleport_token_memo *memo,
                              const teleport_token_key *key,
                              const unsigned char version[TELEPORT_DIGEST_LEN])
{
    if (memo == NULL || memo->shared == NULL || memo->length != key->length
        || memcmp(memo->version, version, TELEPORT_DIGEST_LEN) != 0
        || memcmp(memo->bytes, key->compact, key->length) != 0) {
        return NULL;
    }
    apr_atomic_inc32(&memo->shared->references);
    return memo->shared;
}

/* Make shared, with one more reference, memo's token.  The buffer only
 * grows, doubling from 1 KiB up to TELEPORT_MEMO_MAX, so a connection's
 * pool gains at most twice that, whatever the number of tokens it carries. */
static void memo_set(teleport_token_memo *memo, const teleport_token_key *key,
                     const unsigned char version[TELEPORT_DIGEST_LEN],
                     shared_token *shared)
{
    shared_token *previous;

    if (memo == NULL || key->length > TELEPORT_MEMO_MAX) {
        return;
    }
    if (key->length > memo->capacity) {
        size_t capacity = memo->capacity > 0 ? memo->capacity : 1024;

        while (capacity < key->length) {
            capacity *= 2;
        }
        if (capacity > TELEPORT_MEMO_MAX) {
            capacity = TELEPORT_MEMO_MAX;
        }
        memo->bytes = apr_palloc(memo->pool, capacity);
        memo->capacity = capacity;
    }
    apr_atomic_inc32(&shared->references);
    previous = memo->shared;
    memo->shared = shared;
    memcpy(memo->bytes, key->compact, key->length);
    memo->length = key->length;
    memcpy(memo->version, version, TELEPORT_DIGEST_LEN);
    release(previous);
}

/* Token cache */

static cache_slot *bucket_of(teleport_token_cache *cache,
                             const unsigned char digest[TELEPORT_DIGEST_LEN])
{
    apr_uint32_t index;

    /* The digest is uniform, so its first bytes spread the buckets. */
    memcpy(&index, digest, sizeof(index));
    return cache->slots + (size_t)(index % cache->buckets) * WAYS;
}

/* Give pool p (a request's) the reference to shared that the caller took,
 * and return its token. */
static const teleport_token *hold_for(apr_pool_t *p, shared_token *shared)
{
    apr_pool_cleanup_register(p, shared, release_cleanup,
                              apr_pool_cleanup_null);
    return shared->token;
}

const teleport_token *teleport_token_cache_get(
    teleport_token_cache *cache, teleport_token_memo *memo,
    teleport_token_key *key,
    const unsigned char version[TELEPORT_DIGEST_LEN], apr_pool_t *p)
{
    const unsigned char *digest;
    cache_slot *bucket;
    shared_token *found = memo_get(memo, key, version);
    int i;

    if (found != NULL) {
        return hold_for(p, found);
    }

    digest = key_digest(key);
    bucket = bucket_of(cache, digest);
    apr_thread_mutex_lock(cache->lock);
    for (i = 0; i < WAYS; i++) {
        if (bucket[i].shared != NULL
            && memcmp(bucket[i].digest, digest, TELEPORT_DIGEST_LEN) == 0
            && memcmp(bucket[i].version, version, TELEPORT_DIGEST_LEN) == 0) {
            found = bucket[i].shared;
            apr_atomic_inc32(&found->references);
            break;
        }
    }
    apr_thread_mutex_unlock(cache->lock);

    if (found == NULL) {
        return NULL;
    }
    memo_set(memo, key, version, found);
    return hold_for(p, found);
}

/* The slot to fill: one holding the same digest, an empty one, or the one
 * whose token expires first. */
static cache_slot *choose_slot(cache_slot *bucket,
                               const unsigned char digest[TELEPORT_DIGEST_LEN])
{
    cache_slot *chosen = &bucket[0];
    int i;

    for (i = 0; i < WAYS; i++) {
        if (bucket[i].shared == NULL
            || memcmp(bucket[i].digest, digest, TELEPORT_DIGEST_LEN) == 0) {
            return &bucket[i];
        }
        if (bucket[i].shared->token->expires
            < chosen->shared->token->expires) {
            chosen = &bucket[i];
        }
    }
    return chosen;
}

void teleport_token_cache_put(teleport_token_cache *cache,
                              teleport_token_memo *memo,
                              teleport_token_key *key,
                              const unsigned char version[TELEPORT_DIGEST_LEN],
                              teleport_token *token, apr_pool_t *p)
{
    const unsigned char *digest = key_digest(key);
    shared_token *shared = malloc(sizeof(*shared));
    shared_token *evicted;
    cache_slot *slot;

    if (shared == NULL) {
        /* Not cached: the request alone owns the token. */
        apr_pool_cleanup_register(p, token, token_free_cleanup,
                                  apr_pool_cleanup_null);
        return;
    }
    shared->token = token;
    shared->references = 2; /* the cache's and the request's */

    apr_thread_mutex_lock(cache->lock);
    slot = choose_slot(bucket_of(cache, digest), digest);
    evicted = slot->shared;
    memcpy(slot->digest, digest, TELEPORT_DIGEST_LEN);
    memcpy(slot->version, version, TELEPORT_DIGEST_LEN);
    slot->shared = shared;
    apr_thread_mutex_unlock(cache->lock);

    release(evicted);
    memo_set(memo, key, version, shared);
    hold_for(p, shared);
}
