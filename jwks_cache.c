/*
 * JWKS cache: fetch, share through a socache, rate-limit, parse per process.
 *
 * Shared state lives in two socache entries per key source:
 *   meta  a fixed-size record: the SHA-256 of the cached document, when it
 *         was fetched, when a fetch was last attempted and its error;
 *   doc   the document itself, prefixed with its SHA-256.
 * The global mutex makes the "may I fetch now?" check-and-set atomic across
 * the children of one server, and serialises every socache call when the
 * provider is not MP-safe (shmcb).  No fetch runs while the mutex is held.
 *
 * Each process keeps the key set it parsed last for each source and swaps it
 * when the shared document's digest changes.  Requests hold a reference, so
 * a swap never frees keys that a request still uses.
 */
#include "jwks_cache.h"
#include "jwks_fetch.h"
#include "jwks_url.h"
#include "teleport_status.h"

#include "apr_atomic.h"
#include "apr_global_mutex.h"
#include "apr_hash.h"
#include "apr_strings.h"
#include "apr_thread_mutex.h"
#include "ap_provider.h"
#include "ap_socache.h"
#include "http_core.h"
#include "http_log.h"
#include "util_mutex.h"

#include <openssl/evp.h>
#include <string.h>

APLOG_USE_MODULE(auth_teleport);

#define MUTEX_TYPE "teleport-jwks-cache"
#define META_MAGIC 0x544c4d32u /* "TLM2": bump when jwks_meta changes */
#define DIGEST_LEN 32
#define LAST_ERROR_LEN 160

/* How often a request without keys looks for the result of a fetch that
 * another child or thread runs. */
#define WAIT_INTERVAL apr_time_from_msec(50)

/* Maximum lifetime of a socache entry: TeleportJWKSMaxStale's maximum, and
 * the longest relative time memcached accepts. */
#define MAX_ENTRY_LIFETIME apr_time_from_sec(30 * 86400)

/* How long a process uses its keys without comparing their version with
 * the shared one.  A token whose key is missing looks at once. */
#define SHARED_CHECK_INTERVAL apr_time_from_sec(1)

/* The default provider: shmcb, sized so that a TELEPORT_JWKS_MAX_BYTES
 * document fits.  shmcb splits its segment into sub-caches and an entry
 * must fit in one.  httpd 2.4.71 divides 2 MB into 8 sub-caches with about
 * 254 KB of data room each (its debug log prints subcache_data_size). */
#define DEFAULT_PROVIDER "shmcb"
#define DEFAULT_PROVIDER_ARGS "teleport-jwks(2097152)"

typedef struct {
    apr_uint32_t magic;
    apr_uint32_t doc_length;       /* 0: no document cached */
    unsigned char version[DIGEST_LEN];
    apr_time_t fetched_at;         /* last successful fetch */
    apr_time_t changed_at;         /* last fetch that changed the keys */
    apr_time_t attempted_at;       /* last fetch started */
    apr_time_t forced_at;          /* last fetch for an unknown key */
    apr_time_t failed_at;          /* last fetch failed */
    char last_error[LAST_ERROR_LEN];
} jwks_meta;

struct teleport_keys {
    teleport_keyset *set;
    unsigned char version[DIGEST_LEN];
    apr_time_t fetched_at;
    apr_uint32_t references;
    int pinned;                    /* from a file: never released */
};

/* Server-wide: created from TeleportCache at config time, read-only once
 * post_config has run. */
static const ap_socache_provider_t *cache_provider;
static ap_socache_instance_t *cache_instance;
static const char *cache_spec;
static apr_global_mutex_t *cache_mutex;
static int cache_needs_lock;

/* Key sources of this generation, for carrying their keys over a restart;
 * set by post_config, in pconf. */
static const teleport_key_source *const *cache_sources;
static int cache_source_count;

/* Per process, by source id: the last key set parsed, and this process's
 * last fetch attempt, which keeps the rate limit when the shared cache
 * cannot be read or written (a memcache or redis server that is down). */
typedef struct {
    teleport_keys *keys;
    apr_time_t attempted_at;
    apr_time_t forced_at;
    apr_time_t checked_at;   /* last look at the shared version */
} process_entry;

static apr_hash_t *process_entries;
static apr_pool_t *process_pool;
static apr_thread_mutex_t *process_lock;

static void digest(const void *data, size_t length,
                   unsigned char out[DIGEST_LEN])
{
    EVP_Digest(data, length, out, NULL, EVP_sha256(), NULL);
}

static void entry_id(const teleport_key_source *source, char kind,
                     unsigned char id[DIGEST_LEN])
{
    unsigned char buffer[TELEPORT_SOURCE_ID_LEN + 1];

    memcpy(buffer, source->id, TELEPORT_SOURCE_ID_LEN);
    buffer[TELEPORT_SOURCE_ID_LEN] = (unsigned char)kind;
    digest(buffer, sizeof(buffer), id);
}

const teleport_keyset *teleport_keys_set(const teleport_keys *keys)
{
    return keys->set;
}

const unsigned char *teleport_keys_version(const teleport_keys *keys)
{
    return keys->version;
}

static void keys_release(teleport_keys *keys)
{
    if (keys->pinned) {
        return;
    }
    if (apr_atomic_dec32(&keys->references) == 0) {
        teleport_keyset_free(keys->set);
        free(keys);
    }
}

static apr_status_t keys_release_cleanup(void *data)
{
    keys_release(data);
    return APR_SUCCESS;
}

static apr_status_t keyset_free_cleanup(void *data)
{
    teleport_keyset_free(data);
    return APR_SUCCESS;
}

/* Key sources */

const char *teleport_key_source_create(apr_pool_t *p, const char *proxy_url,
                                       teleport_key_source **source)
{
    teleport_key_source *created = apr_pcalloc(p, sizeof(*created));
    const char *error = teleport_jwks_url(p, proxy_url, &created->url,
                                          &created->allow_plain_http);

    if (error != NULL) {
        return error;
    }
    digest(created->url, strlen(created->url), created->id);
    *source = created;
    return NULL;
}

/* Static files */

const char *teleport_keys_load_file(apr_pool_t *p, const char *path,
                                    teleport_keys **keys, int *skipped,
                                    const char **skip_detail)
{
    teleport_keys *loaded;
    teleport_error error;
    char detail[256] = "";
    apr_finfo_t info;
    apr_file_t *file;
    apr_size_t length;
    char *text;
    apr_status_t rv;

    rv = apr_file_open(&file, path, APR_FOPEN_READ, APR_OS_DEFAULT, p);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(p, "cannot open '%s': %pm", path, &rv);
    }
    rv = apr_file_info_get(&info, APR_FINFO_SIZE, file);
    if (rv != APR_SUCCESS || info.size > TELEPORT_JWKS_MAX_BYTES) {
        apr_file_close(file);
        return apr_psprintf(p, "'%s' is larger than %d bytes or unreadable",
                            path, TELEPORT_JWKS_MAX_BYTES);
    }
    length = (apr_size_t)info.size;
    text = apr_palloc(p, length + 1);
    rv = apr_file_read_full(file, text, length, &length);
    apr_file_close(file);
    if (rv != APR_SUCCESS && rv != APR_EOF) {
        return apr_psprintf(p, "cannot read '%s': %pm", path, &rv);
    }
    text[length] = '\0';

    loaded = apr_pcalloc(p, sizeof(*loaded));
    loaded->set = teleport_keyset_parse(text, length, skipped, detail,
                                        sizeof(detail), &error);
    if (loaded->set == NULL) {
        return apr_psprintf(p, "'%s' is not a usable JWKS (%s: %s)", path,
                            error.reason, error.detail);
    }
    apr_pool_cleanup_register(p, loaded->set, keyset_free_cleanup,
                              apr_pool_cleanup_null);
    digest(text, length, loaded->version);
    loaded->pinned = 1;
    *skip_detail = apr_pstrdup(p, detail);
    *keys = loaded;
    return NULL;
}

/* Provider and mutex */

const char *teleport_cache_configure(cmd_parms *cmd, const char *spec)
{
    const char *name = spec;
    const char *args = NULL;
    const char *colon = strchr(spec, ':');
    const char *error;

    if (colon != NULL) {
        name = apr_pstrmemdup(cmd->pool, spec, (apr_size_t)(colon - spec));
        args = colon + 1;
    }
    cache_provider = ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, name,
                                        AP_SOCACHE_PROVIDER_VERSION);
    if (cache_provider == NULL) {
        return apr_psprintf(cmd->pool, "TeleportCache: unknown socache "
                            "provider '%s' (is mod_socache_%s loaded?)",
                            name, name);
    }
    error = cache_provider->create(&cache_instance, args, cmd->temp_pool,
                                   cmd->pool);
    if (error != NULL) {
        return apr_psprintf(cmd->pool, "TeleportCache: provider '%s' "
                            "rejected '%s': %s", name, args ? args : "",
                            error);
    }
    cache_spec = apr_pstrdup(cmd->pool, spec);
    return NULL;
}

void teleport_cache_pre_config(apr_pool_t *pconf)
{
    cache_provider = NULL;
    cache_instance = NULL;
    cache_spec = NULL;
    cache_mutex = NULL;
    ap_mutex_register(pconf, MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
}

/* Create the default provider when TeleportCache was not given.  Called
 * only when some location fetches keys from a URL. */
const char *teleport_cache_check_config(apr_pool_t *pconf)
{
    const char *error;

    if (cache_provider != NULL) {
        return NULL;
    }
    cache_provider = ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP,
                                        DEFAULT_PROVIDER,
                                        AP_SOCACHE_PROVIDER_VERSION);
    if (cache_provider == NULL) {
        return "TeleportProxyURL needs a socache provider: load "
               "mod_socache_shmcb, or name another with TeleportCache";
    }
    error = cache_provider->create(&cache_instance, DEFAULT_PROVIDER_ARGS,
                                   pconf, pconf);
    if (error != NULL) {
        return apr_pstrcat(pconf, "TeleportCache default (shmcb): ", error,
                           NULL);
    }
    cache_spec = DEFAULT_PROVIDER ":" DEFAULT_PROVIDER_ARGS;
    return NULL;
}

static apr_status_t cache_destroy(void *data);
static void restore_documents(server_rec *s, apr_pool_t *p);

int teleport_cache_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                               server_rec *s,
                               const teleport_key_source *const *sources,
                               int source_count)
{
    struct ap_socache_hints hints = { 0 };
    apr_status_t rv;

    if (cache_provider == NULL) {
        return OK;
    }
    cache_sources = sources;
    cache_source_count = source_count;

    rv = ap_global_mutex_create(&cache_mutex, NULL, MUTEX_TYPE, NULL, s,
                                pconf, 0);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "TLP001: cannot create the JWKS cache mutex");
        return HTTP_INTERNAL_SERVER_ERROR;
    }

    hints.avg_id_len = DIGEST_LEN;
    hints.avg_obj_size = 4096;
    hints.expiry_interval = 300;
    rv = cache_provider->init(cache_instance, "mod_auth_teleport", &hints, s,
                              pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "TLP002: cannot initialise the JWKS cache '%s'",
                     cache_spec);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_pool_cleanup_register(pconf, s, cache_destroy, apr_pool_cleanup_null);
    cache_needs_lock = (cache_provider->flags & AP_SOCACHE_FLAG_NOTMPSAFE) != 0;
    restore_documents(s, ptemp);

    teleport_fetch_global_init();
    return OK;
}

void teleport_cache_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv;

    process_entries = apr_hash_make(pchild);
    process_pool = pchild;
    apr_thread_mutex_create(&process_lock, APR_THREAD_MUTEX_DEFAULT, pchild);
    if (cache_mutex == NULL) {
        return;
    }
    rv = apr_global_mutex_child_init(&cache_mutex,
                                     apr_global_mutex_lockfile(cache_mutex),
                                     pchild);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "TLP003: cannot attach the JWKS cache mutex in a child");
    }
}

/* Shared entries */

static void lock_cache(server_rec *s, int always)
{
    apr_status_t rv;

    if (!always && !cache_needs_lock) {
        return;
    }
    rv = apr_global_mutex_lock(cache_mutex);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                      "TLP004: cannot lock the JWKS cache mutex");
    }
}

static void unlock_cache(server_rec *s, int always)
{
    apr_status_t rv;

    if (!always && !cache_needs_lock) {
        return;
    }
    rv = apr_global_mutex_unlock(cache_mutex);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                      "TLP005: cannot unlock the JWKS cache mutex");
    }
}

/* Read the meta record; a missing or foreign one reads as all zero. */
static void meta_read(server_rec *s, apr_pool_t *p,
                      const teleport_key_source *source, jwks_meta *meta)
{
    unsigned char id[DIGEST_LEN];
    unsigned int length = sizeof(*meta);
    apr_status_t rv;

    entry_id(source, 'm', id);
    rv = cache_provider->retrieve(cache_instance, s, id, sizeof(id),
                                  (unsigned char *)meta, &length, p);
    if (rv != APR_SUCCESS || length != sizeof(*meta)
        || meta->magic != META_MAGIC) {
        memset(meta, 0, sizeof(*meta));
        meta->magic = META_MAGIC;
    }
}

static void meta_write(server_rec *s, apr_pool_t *p,
                       const teleport_key_source *source,
                       const jwks_meta *meta)
{
    /* The refresh state must outlive any key set that it describes, and
     * memcached reads a lifetime over 30 days as an absolute time. */
    const apr_time_t lifetime = MAX_ENTRY_LIFETIME;
    unsigned char id[DIGEST_LEN];
    apr_status_t rv;

    entry_id(source, 'm', id);
    rv = cache_provider->store(cache_instance, s, id, sizeof(id),
                               apr_time_now() + lifetime,
                               (unsigned char *)meta, sizeof(*meta), p);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s,
                      "TLP006: cannot store the JWKS refresh state of %s "
                      "in the socache", source->url);
    }
}

/* Read the cached document whose digest the meta record names. */
static const char *doc_read(server_rec *s, apr_pool_t *p,
                            const teleport_key_source *source,
                            const jwks_meta *meta)
{
    unsigned char id[DIGEST_LEN];
    unsigned char check[DIGEST_LEN];
    unsigned int length = DIGEST_LEN + meta->doc_length + 1;
    unsigned char *buffer = apr_palloc(p, length);
    apr_status_t rv;

    entry_id(source, 'd', id);
    lock_cache(s, 0);
    rv = cache_provider->retrieve(cache_instance, s, id, sizeof(id),
                                  buffer, &length, p);
    unlock_cache(s, 0);
    if (rv != APR_SUCCESS || length != DIGEST_LEN + meta->doc_length
        || memcmp(buffer, meta->version, DIGEST_LEN) != 0) {
        return NULL;
    }
    digest(buffer + DIGEST_LEN, meta->doc_length, check);
    if (memcmp(check, meta->version, DIGEST_LEN) != 0) {
        return NULL;
    }
    buffer[length] = '\0';
    return (const char *)buffer + DIGEST_LEN;
}

static apr_status_t doc_write(server_rec *s, apr_pool_t *p,
                              const teleport_key_source *source,
                              apr_time_t expiry,
                              const unsigned char version[DIGEST_LEN],
                              const char *doc, apr_size_t doc_length)
{
    unsigned char id[DIGEST_LEN];
    unsigned char *buffer = apr_palloc(p, DIGEST_LEN + doc_length);
    apr_status_t rv;

    memcpy(buffer, version, DIGEST_LEN);
    memcpy(buffer + DIGEST_LEN, doc, doc_length);
    entry_id(source, 'd', id);
    rv = cache_provider->store(cache_instance, s, id, sizeof(id),
                               expiry, buffer,
                               (unsigned int)(DIGEST_LEN + doc_length),
                               p);
    return rv;
}

/*
 * A JWKS document saved in the parent while a restart destroys the socache,
 * so that the next generation starts with the last good keys even when the
 * proxy is down then.  malloc'd: it outlives pconf.
 */
typedef struct saved_document {
    struct saved_document *next;
    unsigned char id[TELEPORT_SOURCE_ID_LEN];
    char *doc;
    apr_size_t length;
    apr_time_t fetched_at;
    apr_time_t changed_at;
} saved_document;

/* httpd unloads and reloads its modules at every restart, so the list
 * hangs off the process pool, which lives as long as the parent. */
#define SAVED_DOCUMENTS_KEY "mod_auth_teleport saved JWKS documents"

static saved_document **saved_documents(server_rec *s)
{
    void *head = NULL;

    apr_pool_userdata_get(&head, SAVED_DOCUMENTS_KEY, s->process->pool);
    if (head == NULL) {
        head = apr_pcalloc(s->process->pool, sizeof(saved_document *));
        apr_pool_userdata_set(head, SAVED_DOCUMENTS_KEY, NULL,
                              s->process->pool);
    }
    return head;
}

static void free_saved_documents(server_rec *s)
{
    saved_document **head = saved_documents(s);

    while (*head != NULL) {
        saved_document *next = (*head)->next;

        free((*head)->doc);
        free(*head);
        *head = next;
    }
}

static void save_document(server_rec *s, apr_pool_t *p,
                          const teleport_key_source *source)
{
    saved_document *saved;
    const char *doc;
    jwks_meta meta;

    lock_cache(s, 0);
    meta_read(s, p, source, &meta);
    unlock_cache(s, 0);
    if (meta.doc_length == 0 || (doc = doc_read(s, p, source, &meta)) == NULL) {
        return;
    }
    saved = calloc(1, sizeof(*saved));
    if (saved == NULL || (saved->doc = malloc(meta.doc_length)) == NULL) {
        free(saved);
        return;
    }
    memcpy(saved->id, source->id, TELEPORT_SOURCE_ID_LEN);
    memcpy(saved->doc, doc, meta.doc_length);
    saved->length = meta.doc_length;
    saved->fetched_at = meta.fetched_at;
    saved->changed_at = meta.changed_at;
    saved->next = *saved_documents(s);
    *saved_documents(s) = saved;
}

static apr_status_t cache_destroy(void *data)
{
    server_rec *s = data;
    apr_pool_t *scratch;
    int i;

    if (cache_provider == NULL || cache_instance == NULL) {
        return APR_SUCCESS;
    }
    free_saved_documents(s);
    /* Only shmcb loses its entries with the parent's pool; memcache and
     * redis keep theirs, and their connections may already be closed. */
    if (strncmp(cache_spec, DEFAULT_PROVIDER, sizeof(DEFAULT_PROVIDER) - 1)
        != 0) {
        cache_provider->destroy(cache_instance, s);
        return APR_SUCCESS;
    }
    if (apr_pool_create(&scratch, NULL) == APR_SUCCESS) {
        for (i = 0; i < cache_source_count; i++) {
            save_document(s, scratch, cache_sources[i]);
        }
        apr_pool_destroy(scratch);
    }
    cache_provider->destroy(cache_instance, s);
    return APR_SUCCESS;
}

/* Put the documents saved by the previous generation into the new socache
 * with their original fetch times, so TeleportJWKSMaxAge and
 * TeleportJWKSMaxStale still count from the real fetch. */
static void restore_documents(server_rec *s, apr_pool_t *p)
{
    saved_document *saved;
    int i;

    for (i = 0; i < cache_source_count; i++) {
        const teleport_key_source *source = cache_sources[i];
        jwks_meta meta;

        for (saved = *saved_documents(s); saved != NULL;
             saved = saved->next) {
            if (memcmp(saved->id, source->id, TELEPORT_SOURCE_ID_LEN) != 0) {
                continue;
            }
            memset(&meta, 0, sizeof(meta));
            meta.magic = META_MAGIC;
            digest(saved->doc, saved->length, meta.version);
            meta.doc_length = (apr_uint32_t)saved->length;
            meta.fetched_at = saved->fetched_at;
            meta.changed_at = saved->changed_at;
            lock_cache(s, 1);
            if (doc_write(s, p, source, apr_time_now() + MAX_ENTRY_LIFETIME,
                          meta.version, saved->doc,
                          saved->length) == APR_SUCCESS) {
                meta_write(s, p, source, &meta);
            }
            unlock_cache(s, 1);
            break;
        }
    }
    free_saved_documents(s);
}

/* Per-process key sets */

/* Return the process's entry for source, creating it; call with
 * process_lock held. */
static process_entry *process_entry_get(const teleport_key_source *source)
{
    process_entry *entry;

    entry = apr_hash_get(process_entries, source->id, TELEPORT_SOURCE_ID_LEN);
    if (entry == NULL) {
        entry = apr_pcalloc(process_pool, sizeof(*entry));
        apr_hash_set(process_entries,
                     apr_pmemdup(process_pool, source->id,
                                 TELEPORT_SOURCE_ID_LEN),
                     TELEPORT_SOURCE_ID_LEN, entry);
    }
    return entry;
}

static void hold_for_request(request_rec *r, teleport_keys *keys)
{
    apr_pool_cleanup_register(r->pool, keys, keys_release_cleanup,
                              apr_pool_cleanup_null);
}

/* Return the process's keys for source with a reference for r, or NULL.
 * *recent is 1 when the shared version was compared within
 * SHARED_CHECK_INTERVAL; if not, the caller compares it now. */
static teleport_keys *process_get(request_rec *r,
                                  const teleport_key_source *source,
                                  int *recent)
{
    apr_time_t now = apr_time_now();
    process_entry *entry;
    teleport_keys *keys;

    apr_thread_mutex_lock(process_lock);
    entry = process_entry_get(source);
    keys = entry->keys;
    if (keys != NULL) {
        apr_atomic_inc32(&keys->references);
    }
    *recent = now >= entry->checked_at
              && now - entry->checked_at < SHARED_CHECK_INTERVAL;
    apr_thread_mutex_unlock(process_lock);
    if (keys != NULL) {
        hold_for_request(r, keys);
    }
    return keys;
}

/* Parse doc into new keys with one reference for r; NULL when doc has no
 * usable key, with *error describing why. */
static teleport_keys *keys_parse(request_rec *r, const char *doc,
                                 apr_size_t length,
                                 const unsigned char version[DIGEST_LEN],
                                 apr_time_t fetched_at, int *skipped,
                                 char *skip_detail, size_t skip_detail_size,
                                 teleport_error *error)
{
    teleport_keyset *set;
    teleport_keys *keys;

    set = teleport_keyset_parse(doc, length, skipped, skip_detail,
                                skip_detail_size, error);
    if (set == NULL) {
        return NULL;
    }
    keys = calloc(1, sizeof(*keys));
    if (keys == NULL) {
        teleport_keyset_free(set);
        error->reason = "no_memory";
        apr_cpystrn(error->detail, "out of memory", sizeof(error->detail));
        return NULL;
    }
    keys->set = set;
    memcpy(keys->version, version, DIGEST_LEN);
    keys->fetched_at = fetched_at;
    keys->references = 1;
    hold_for_request(r, keys);
    return keys;
}

/* Make keys the process's keys for source; returns the previous ones,
 * with their reference for r, or NULL. */
static teleport_keys *process_install(request_rec *r,
                                      const teleport_key_source *source,
                                      teleport_keys *keys)
{
    process_entry *entry;
    teleport_keys *previous;

    apr_atomic_inc32(&keys->references);
    apr_thread_mutex_lock(process_lock);
    entry = process_entry_get(source);
    previous = entry->keys;
    entry->keys = keys;
    apr_thread_mutex_unlock(process_lock);
    if (previous != NULL) {
        hold_for_request(r, previous); /* takes over the table's reference */
    }
    return previous;
}

/* Fetching and refreshing */

typedef enum {
    CLAIM_GRANTED,       /* this request fetches now */
    CLAIM_IN_PROGRESS,   /* another request is fetching */
    CLAIM_RATE_LIMITED   /* the last attempt was too recent */
} claim_result;

static int fetch_in_progress(const jwks_meta *meta,
                             const teleport_fetch_options *options,
                             apr_time_t now)
{
    return meta->attempted_at > meta->fetched_at
           && meta->attempted_at > meta->failed_at
           && now >= meta->attempted_at
           && now - meta->attempted_at < options->fetch_timeout;
}

static apr_time_t later(apr_time_t a, apr_time_t b)
{
    return a > b ? a : b;
}

/* Return 1 when an attempt at last (0: none) is too recent for another
 * at now, with the time left in *retry_after. */
static int rate_limited(apr_time_t last, apr_time_t now,
                        const teleport_fetch_options *options,
                        apr_interval_time_t *retry_after)
{
    if (last != 0 && now >= last && now - last < options->min_refresh) {
        *retry_after = last + options->min_refresh - now;
        return 1;
    }
    return 0;
}

/*
 * Claim the right to fetch source now.  Under the global mutex, no other
 * fetch may be running, and the last attempt of the same kind, shared or of
 * this process, must be at least min_refresh ago.  The kinds are counted
 * apart: a forced refresh (a key id that the keys lack) follows the last
 * forced one, so a new key right after a periodic fetch is still found; a
 * fetch for missing or old keys follows the last attempt of any kind, so a
 * failing proxy is retried once per interval.  A fetch that died with its
 * child stops counting as running after the fetch timeout.
 *
 * seen is the meta record the caller read just before, or NULL.  A forced
 * refresh that seen already rate-limits is rejected without taking the
 * global mutex, because the shared forced time only grows and the locked
 * check would reject it too.  Tokens with random kids then cost one round trip through the
 * global mutex, not two.  A fetch that another process starts between the
 * two reads makes such a request get 401 rather than wait for that fetch,
 * as it would if the fetch started just after the lock was released.
 */
static claim_result claim_fetch(request_rec *r,
                                const teleport_key_source *source,
                                const teleport_fetch_options *options,
                                int forced, const jwks_meta *seen,
                                apr_interval_time_t *retry_after)
{
    apr_time_t now = apr_time_now();
    apr_time_t last;
    process_entry *entry;
    claim_result result;
    jwks_meta meta;

    if (forced && seen != NULL && !fetch_in_progress(seen, options, now)) {
        apr_thread_mutex_lock(process_lock);
        last = later(seen->forced_at, process_entry_get(source)->forced_at);
        apr_thread_mutex_unlock(process_lock);
        if (rate_limited(last, now, options, retry_after)) {
            return CLAIM_RATE_LIMITED;
        }
    }

    lock_cache(r->server, 1);
    meta_read(r->server, r->pool, source, &meta);
    apr_thread_mutex_lock(process_lock);
    entry = process_entry_get(source);
    last = forced ? later(meta.forced_at, entry->forced_at)
                  : later(meta.attempted_at, entry->attempted_at);
    if (fetch_in_progress(&meta, options, now)) {
        result = CLAIM_IN_PROGRESS;
    }
    else if (rate_limited(last, now, options, retry_after)) {
        result = CLAIM_RATE_LIMITED;
    }
    else {
        result = CLAIM_GRANTED;
        entry->attempted_at = now;
        if (forced) {
            entry->forced_at = now;
        }
    }
    apr_thread_mutex_unlock(process_lock);
    if (result == CLAIM_GRANTED) {
        meta.attempted_at = now;
        if (forced) {
            meta.forced_at = now;
        }
        meta_write(r->server, r->pool, source, &meta);
    }
    unlock_cache(r->server, 1);
    return result;
}

/* Record a failed fetch in the shared state: its time and reason. */
static void store_failure(server_rec *s, apr_pool_t *p,
                          const teleport_key_source *source,
                          const char *error)
{
    jwks_meta meta;

    lock_cache(s, 1);
    meta_read(s, p, source, &meta);
    meta.failed_at = apr_time_now();
    apr_cpystrn(meta.last_error, error, sizeof(meta.last_error));
    meta_write(s, p, source, &meta);
    unlock_cache(s, 1);
}

static void record_failure(server_rec *s, apr_pool_t *p,
                           const teleport_key_source *source,
                           const char *error)
{
    ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                 "TLP010: JWKS fetch from %s failed: %s", source->url, error);
    teleport_status_count_fetch(source, TELEPORT_FETCH_FAILED);
    store_failure(s, p, source, error);
}

static void record_success(server_rec *s, apr_pool_t *p,
                           const teleport_key_source *source,
                           const teleport_fetch_options *options,
                           const char *doc, apr_size_t length,
                           const teleport_keys *keys)
{
    jwks_meta meta;
    apr_status_t rv;

    lock_cache(s, 1);
    rv = doc_write(s, p, source, apr_time_now() + options->max_stale,
                   keys->version, doc, length);
    meta_read(s, p, source, &meta);
    meta.last_error[0] = '\0';
    meta.fetched_at = keys->fetched_at;
    if (memcmp(meta.version, keys->version, DIGEST_LEN) != 0) {
        meta.changed_at = keys->fetched_at;
    }
    if (rv == APR_SUCCESS) {
        memcpy(meta.version, keys->version, DIGEST_LEN);
        meta.doc_length = (apr_uint32_t)length;
    }
    meta_write(s, p, source, &meta);
    unlock_cache(s, 1);

    if (rv != APR_SUCCESS) {
        /* The keys still serve this process; other children fetch their
         * own copy, subject to the same rate limit. */
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                      "TLP011: cannot store the JWKS of %" APR_SIZE_T_FMT
                      " bytes from %s in the socache '%s'; each child "
                      "fetches its own copy until it fits", length,
                      source->url, cache_spec);
    }
}

/* Return the key ids of a that are not in b, quoted and comma-separated. */
static const char *kids_missing(apr_pool_t *p, const teleport_keyset *a,
                                const teleport_keyset *b)
{
    apr_array_header_t *kids = apr_array_make(p, 4, sizeof(char *));
    teleport_key_info info;
    size_t i;

    for (i = 0; teleport_keyset_key_info(a, i, &info); i++) {
        if (b == NULL || info.kid[0] == '\0'
            || !teleport_keyset_has_kid(b, info.kid)) {
            char kid[96];

            /* Key ids come from the proxy: escape them like token values. */
            teleport_escape(kid, sizeof(kid), info.kid, strlen(info.kid));
            APR_ARRAY_PUSH(kids, const char *) =
                apr_psprintf(p, "\"%s\" (%s)", kid, info.kty);
        }
    }
    return kids->nelts > 0 ? apr_array_pstrcat(p, kids, ',') : "none";
}

static void log_key_change(request_rec *r, const teleport_key_source *source,
                           const teleport_keys *previous,
                           const teleport_keys *keys)
{
    const teleport_keyset *old_set = previous ? previous->set : NULL;

    if (previous != NULL
        && memcmp(previous->version, keys->version, DIGEST_LEN) == 0) {
        return;
    }
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r,
                  "TLP015: keys of %s changed: added %s; removed %s",
                  source->url, kids_missing(r->pool, keys->set, old_set),
                  previous ? kids_missing(r->pool, old_set, keys->set)
                           : "none");
}

/* Fetch, validate and publish source's keys.  Returns them with a
 * reference for r, or NULL when the fetch or the document failed; a
 * failure never replaces keys that are already cached. */
static teleport_keys *refresh(request_rec *r,
                              const teleport_key_source *source,
                              const teleport_fetch_options *options)
{
    unsigned char version[DIGEST_LEN];
    char skip_detail[256] = "";
    teleport_keys *keys;
    teleport_keys *previous;
    teleport_error error;
    const char *fetch_error = NULL;
    const char *doc;
    apr_size_t length = 0;
    int skipped = 0;

    doc = teleport_fetch(r->pool, source->url, source->allow_plain_http,
                         options->ca_file, options->fetch_timeout,
                         TELEPORT_JWKS_MAX_BYTES, &length, &fetch_error);
    if (doc == NULL) {
        record_failure(r->server, r->pool, source, fetch_error);
        return NULL;
    }
    digest(doc, length, version);
    keys = keys_parse(r, doc, length, version, apr_time_now(), &skipped,
                      skip_detail, sizeof(skip_detail), &error);
    if (keys == NULL) {
        record_failure(r->server, r->pool, source, apr_psprintf(r->pool, "%s: %s",
                                               error.reason, error.detail));
        return NULL;
    }
    if (skipped > 0) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "TLP016: JWKS from %s: skipped %d unusable key(s), "
                      "the first because %s", source->url, skipped,
                      skip_detail);
    }
    record_success(r->server, r->pool, source, options, doc, length, keys);
    teleport_status_count_fetch(source, TELEPORT_FETCH_SUCCEEDED);
    previous = process_install(r, source, keys);
    log_key_change(r, source, previous, keys);
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  "TLP012: fetched %" APR_SIZE_T_FMT " usable keys from %s",
                  teleport_keyset_count(keys->set), source->url);
    return keys;
}

/* Record that the process compared its keys with the shared meta record,
 * and take the shared fetch time when another process fetched the same
 * document later, so that the keys' age counts from the last fetch. */
static void process_checked(const teleport_key_source *source,
                            teleport_keys *keys, const jwks_meta *meta)
{
    apr_thread_mutex_lock(process_lock);
    process_entry_get(source)->checked_at = apr_time_now();
    if (keys != NULL && meta->doc_length != 0
        && memcmp(keys->version, meta->version, DIGEST_LEN) == 0
        && meta->fetched_at > keys->fetched_at) {
        keys->fetched_at = meta->fetched_at;
    }
    apr_thread_mutex_unlock(process_lock);
}

/* Bring the process's keys up to the shared version.  Unless look_now is
 * set, a process that compared versions within SHARED_CHECK_INTERVAL keeps
 * its keys without reading the socache, and *meta is then all zero.
 * Returns the keys with a reference for r, or NULL when neither holds
 * usable keys. */
static teleport_keys *current_keys(request_rec *r,
                                   const teleport_key_source *source,
                                   int look_now, jwks_meta *meta)
{
    teleport_keys *shared;
    teleport_keys *keys;
    teleport_error error;
    const char *doc;
    int recent;

    memset(meta, 0, sizeof(*meta));
    keys = process_get(r, source, &recent);
    if (keys != NULL && recent && !look_now) {
        return keys;
    }
    lock_cache(r->server, 0);
    meta_read(r->server, r->pool, source, meta);
    unlock_cache(r->server, 0);
    if (meta->doc_length == 0
        || (keys != NULL
            && memcmp(keys->version, meta->version, DIGEST_LEN) == 0)) {
        process_checked(source, keys, meta);
        return keys;
    }
    doc = doc_read(r->server, r->pool, source, meta);
    if (doc == NULL) {
        return keys;
    }
    shared = keys_parse(r, doc, meta->doc_length, meta->version,
                        meta->fetched_at, NULL, NULL, 0, &error);
    if (shared == NULL) {
        return keys;
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  "TLP013: loaded the shared JWKS of %s into this process",
                  source->url);
    process_install(r, source, shared);
    process_checked(source, shared, meta);
    return shared;
}

/* Wait, at most the fetch timeout, until the fetch that another request
 * runs ends; return the keys current then, or previous when there are
 * none. */
static teleport_keys *wait_for_fetch(request_rec *r,
                                     const teleport_key_source *source,
                                     const teleport_fetch_options *options,
                                     teleport_keys *previous)
{
    apr_time_t deadline = apr_time_now() + options->fetch_timeout;
    teleport_keys *keys;
    jwks_meta meta;

    do {
        apr_sleep(WAIT_INTERVAL);
        keys = current_keys(r, source, 1, &meta);
    } while (fetch_in_progress(&meta, options, apr_time_now())
             && apr_time_now() < deadline);
    return keys != NULL ? keys : previous;
}

teleport_keys *teleport_keys_acquire(request_rec *r,
                                     const teleport_key_source *source,
                                     const teleport_fetch_options *options,
                                     int force_refresh,
                                     apr_interval_time_t *retry_after)
{
    apr_time_t now = apr_time_now();
    teleport_keys *keys;
    teleport_keys *fresh;
    jwks_meta meta;
    int stale;

    *retry_after = 0;
    keys = current_keys(r, source, force_refresh, &meta);
    if (keys != NULL && !force_refresh
        && now - keys->fetched_at > options->max_age) {
        /* Another process may have refreshed them within the last second. */
        keys = current_keys(r, source, 1, &meta);
    }
    if (keys != NULL && now - keys->fetched_at > options->max_stale) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "TLP017: keys of %s are older than "
                      "TeleportJWKSMaxStale; not using them", source->url);
        keys = NULL;
    }
    stale = keys != NULL && now - keys->fetched_at > options->max_age;
    if (keys != NULL && !stale && !force_refresh) {
        return keys;
    }

    /* When force_refresh is set, current_keys() has just read meta. */
    switch (claim_fetch(r, source, options, force_refresh && keys != NULL,
                        force_refresh ? &meta : NULL, retry_after)) {
    case CLAIM_GRANTED:
        fresh = refresh(r, source, options);
        return fresh != NULL ? fresh : keys;
    case CLAIM_IN_PROGRESS:
        /* A request that lacks its key waits too: the running fetch may be
         * the refresh that brings it. */
        if (keys != NULL && !force_refresh) {
            return keys;
        }
        return wait_for_fetch(r, source, options, keys);
    case CLAIM_RATE_LIMITED:
        teleport_status_count_fetch(source, TELEPORT_FETCH_SUPPRESSED);
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "TLP014: JWKS refresh of %s suppressed by "
                      "TeleportJWKSMinRefresh for another %" APR_TIME_T_FMT
                      " ms", source->url, apr_time_as_msec(*retry_after));
        break;
    }
    return keys;
}

void teleport_cache_prefetch(server_rec *s, apr_pool_t *p,
                             const teleport_key_source *source,
                             const teleport_fetch_options *options)
{
    unsigned char version[DIGEST_LEN];
    char skip_detail[256] = "";
    teleport_keys keys = { 0 };
    teleport_error error;
    const char *fetch_error = NULL;
    const char *doc;
    apr_size_t length = 0;
    int skipped = 0;

    doc = teleport_fetch(p, source->url, source->allow_plain_http,
                         options->ca_file, options->fetch_timeout,
                         TELEPORT_JWKS_MAX_BYTES, &length, &fetch_error);
    if (doc != NULL) {
        keys.set = teleport_keyset_parse(doc, length, &skipped, skip_detail,
                                         sizeof(skip_detail), &error);
        if (keys.set == NULL) {
            fetch_error = apr_psprintf(p, "%s: %s", error.reason,
                                       error.detail);
        }
    }
    if (keys.set == NULL) {
        /* Not counted against TeleportJWKSMinRefresh: the first request
         * fetches again, with its location's full configuration. */
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                     "TLP018: startup fetch of %s found no usable keys: %s; "
                     "requests will fetch again", source->url, fetch_error);
        teleport_status_count_fetch(source, TELEPORT_FETCH_FAILED);
        store_failure(s, p, source, fetch_error);
        return;
    }

    digest(doc, length, version);
    memcpy(keys.version, version, DIGEST_LEN);
    keys.fetched_at = apr_time_now();
    record_success(s, p, source, options, doc, length, &keys);
    teleport_status_count_fetch(source, TELEPORT_FETCH_SUCCEEDED);
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                 "TLP019: startup fetch of %s found %" APR_SIZE_T_FMT
                 " usable keys: %s%s", source->url,
                 teleport_keyset_count(keys.set),
                 kids_missing(p, keys.set, NULL),
                 skipped > 0 ? apr_psprintf(p, "; skipped %d, the first "
                                            "because %s", skipped,
                                            skip_detail)
                             : "");
    teleport_keyset_free(keys.set);
}

const char *teleport_cache_describe(server_rec *s, apr_pool_t *p,
                                    const teleport_key_source *source,
                                    teleport_source_state *state)
{
    teleport_key_info info;
    teleport_keyset *set;
    teleport_error error;
    const char *doc;
    jwks_meta meta;
    size_t i;

    memset(state, 0, sizeof(*state));
    state->keys = apr_array_make(p, 4, sizeof(teleport_key_info));
    if (cache_provider == NULL || cache_instance == NULL) {
        return "no socache";
    }
    lock_cache(s, 0);
    meta_read(s, p, source, &meta);
    unlock_cache(s, 0);
    state->fetched_at = meta.fetched_at;
    state->changed_at = meta.changed_at;
    state->attempted_at = meta.attempted_at;
    state->failed_at = meta.failed_at;
    state->last_error = apr_pstrndup(p, meta.last_error,
                                     sizeof(meta.last_error));
    if (meta.doc_length == 0 || (doc = doc_read(s, p, source, &meta)) == NULL) {
        return NULL;
    }
    set = teleport_keyset_parse(doc, meta.doc_length, NULL, NULL, 0, &error);
    for (i = 0; teleport_keyset_key_info(set, i, &info); i++) {
        teleport_key_info *copy = apr_array_push(state->keys);

        copy->kid = apr_pstrdup(p, info.kid);
        copy->kty = apr_pstrdup(p, info.kty);
        copy->bits = info.bits;
    }
    teleport_keyset_free(set);
    return NULL;
}
