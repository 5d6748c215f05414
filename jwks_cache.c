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

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

APLOG_USE_MODULE(auth_teleport);

#define MUTEX_TYPE "teleport-jwks-cache"
#define META_MAGIC 0x544c4d31u /* "TLM1" */
#define DIGEST_LEN 32
#define LAST_ERROR_LEN 160

/* How long shared entries live in the socache.  Keys older than the
 * location's max age are refreshed long before this. */
#define ENTRY_LIFETIME apr_time_from_sec(86400)

/* The default provider: shmcb, sized so that a TELEPORT_JWKS_MAX_BYTES
 * document fits.  shmcb splits its segment into sub-caches and an entry
 * must fit in one; httpd 2.4.71 divides 2 MB into 8 sub-caches with about
 * 254 KB of data room each (its debug log prints subcache_data_size). */
#define DEFAULT_PROVIDER "shmcb"
#define DEFAULT_PROVIDER_ARGS "teleport-jwks(2097152)"

typedef struct {
    apr_uint32_t magic;
    apr_uint32_t doc_length;       /* 0: no document cached */
    unsigned char version[DIGEST_LEN];
    apr_time_t fetched_at;         /* last successful fetch */
    apr_time_t attempted_at;       /* last fetch started */
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

/* Per process: the last key set parsed for each source, by source id. */
static apr_hash_t *process_keys;
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

static int host_is_loopback(const char *host)
{
    return strcasecmp(host, "localhost") == 0
           || strncmp(host, "127.", 4) == 0
           || strcmp(host, "::1") == 0;
}

const char *teleport_key_source_create(apr_pool_t *p, const char *proxy_url,
                                       teleport_key_source **source)
{
    static const char jwks_path[] = "/.well-known/jwks.json";
    teleport_key_source *created;
    apr_uri_t uri;
    const char *path;
    size_t length;

    if (apr_uri_parse(p, proxy_url, &uri) != APR_SUCCESS
        || uri.scheme == NULL || uri.hostname == NULL
        || uri.hostname[0] == '\0') {
        return apr_psprintf(p, "'%s' is not an absolute URL", proxy_url);
    }
    if (uri.user != NULL || uri.password != NULL
        || uri.query != NULL || uri.fragment != NULL) {
        return apr_psprintf(p, "'%s' must not contain user information, "
                            "a query or a fragment", proxy_url);
    }

    created = apr_pcalloc(p, sizeof(*created));
    if (strcasecmp(uri.scheme, "http") == 0
        && host_is_loopback(uri.hostname)) {
        created->allow_plain_http = 1;
    }
    else if (strcasecmp(uri.scheme, "https") != 0) {
        return apr_psprintf(p, "'%s' must use https (http is accepted for "
                            "loopback hosts only)", proxy_url);
    }

    /* Accept the proxy's public address, with or without the JWKS path.
     * Other well-known documents carry another CA's keys: Teleport's OIDC
     * keys (/.well-known/jwks-oidc) never verify application tokens. */
    path = uri.path ? uri.path : "";
    length = strlen(path);
    while (length > 0 && path[length - 1] == '/') {
        length--;
    }
    path = apr_pstrmemdup(p, path, length);
    if (length >= sizeof(jwks_path) - 1
        && strcmp(path + length - (sizeof(jwks_path) - 1), jwks_path) == 0) {
        path = apr_pstrmemdup(p, path, length - (sizeof(jwks_path) - 1));
    }
    else if (strstr(path, "/.well-known/") != NULL) {
        return apr_psprintf(p, "'%s' names another document; give the "
                            "proxy's public address, whose keys are at "
                            "%s", proxy_url, jwks_path);
    }

    uri.path = apr_pstrcat(p, path, jwks_path, NULL);
    created->url = apr_uri_unparse(p, &uri, APR_URI_UNP_OMITUSERINFO);
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

static apr_status_t cache_destroy(void *data)
{
    server_rec *s = data;

    if (cache_provider != NULL && cache_instance != NULL) {
        cache_provider->destroy(cache_instance, s);
    }
    return APR_SUCCESS;
}

int teleport_cache_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                               server_rec *s)
{
    struct ap_socache_hints hints = { 0 };
    apr_status_t rv;

    (void)ptemp;
    if (cache_provider == NULL) {
        return OK;
    }

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

    /* libcurl's global state, once in the parent before any thread. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return OK;
}

void teleport_cache_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv;

    process_keys = apr_hash_make(pchild);
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

static void lock_cache(request_rec *r, int always)
{
    apr_status_t rv;

    if (!always && !cache_needs_lock) {
        return;
    }
    rv = apr_global_mutex_lock(cache_mutex);
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r,
                      "TLP004: cannot lock the JWKS cache mutex");
    }
}

static void unlock_cache(request_rec *r, int always)
{
    apr_status_t rv;

    if (!always && !cache_needs_lock) {
        return;
    }
    rv = apr_global_mutex_unlock(cache_mutex);
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r,
                      "TLP005: cannot unlock the JWKS cache mutex");
    }
}

/* Read the meta record; a missing or foreign one reads as all zero. */
static void meta_read(request_rec *r, const teleport_key_source *source,
                      jwks_meta *meta)
{
    unsigned char id[DIGEST_LEN];
    unsigned int length = sizeof(*meta);
    apr_status_t rv;

    entry_id(source, 'm', id);
    rv = cache_provider->retrieve(cache_instance, r->server, id, sizeof(id),
                                  (unsigned char *)meta, &length, r->pool);
    if (rv != APR_SUCCESS || length != sizeof(*meta)
        || meta->magic != META_MAGIC) {
        memset(meta, 0, sizeof(*meta));
        meta->magic = META_MAGIC;
    }
}

static void meta_write(request_rec *r, const teleport_key_source *source,
                       const jwks_meta *meta)
{
    unsigned char id[DIGEST_LEN];
    apr_status_t rv;

    entry_id(source, 'm', id);
    rv = cache_provider->store(cache_instance, r->server, id, sizeof(id),
                               apr_time_now() + ENTRY_LIFETIME,
                               (unsigned char *)meta, sizeof(*meta), r->pool);
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, rv, r,
                      "TLP006: cannot store the JWKS refresh state of %s "
                      "in the socache", source->url);
    }
}

/* Read the cached document whose digest the meta record names. */
static const char *doc_read(request_rec *r, const teleport_key_source *source,
                            const jwks_meta *meta)
{
    unsigned char id[DIGEST_LEN];
    unsigned char check[DIGEST_LEN];
    unsigned int length = DIGEST_LEN + meta->doc_length + 1;
    unsigned char *buffer = apr_palloc(r->pool, length);
    apr_status_t rv;

    entry_id(source, 'd', id);
    lock_cache(r, 0);
    rv = cache_provider->retrieve(cache_instance, r->server, id, sizeof(id),
                                  buffer, &length, r->pool);
    unlock_cache(r, 0);
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

static apr_status_t doc_write(request_rec *r,
                              const teleport_key_source *source,
                              const unsigned char version[DIGEST_LEN],
                              const char *doc, apr_size_t doc_length)
{
    unsigned char id[DIGEST_LEN];
    unsigned char *buffer = apr_palloc(r->pool, DIGEST_LEN + doc_length);
    apr_status_t rv;

    memcpy(buffer, version, DIGEST_LEN);
    memcpy(buffer + DIGEST_LEN, doc, doc_length);
    entry_id(source, 'd', id);
    rv = cache_provider->store(cache_instance, r->server, id, sizeof(id),
                               apr_time_now() + ENTRY_LIFETIME, buffer,
                               (unsigned int)(DIGEST_LEN + doc_length),
                               r->pool);
    return rv;
}

/* Per-process key sets */

/* Return the process's keys for source with a reference for r, or NULL. */
static teleport_keys *process_get(request_rec *r,
                                  const teleport_key_source *source)
{
    teleport_keys *keys;

    apr_thread_mutex_lock(process_lock);
    keys = apr_hash_get(process_keys, source->id, TELEPORT_SOURCE_ID_LEN);
    if (keys != NULL) {
        apr_atomic_inc32(&keys->references);
    }
    apr_thread_mutex_unlock(process_lock);
    if (keys != NULL) {
        apr_pool_cleanup_register(r->pool, keys, keys_release_cleanup,
                                  apr_pool_cleanup_null);
    }
    return keys;
}

/* Parse doc and make it the process's keys for source.  Returns the new
 * keys with a reference for r, or NULL when doc has no usable key. */
static teleport_keys *process_install(request_rec *r,
                                      const teleport_key_source *source,
                                      const char *doc, apr_size_t length,
                                      const unsigned char version[DIGEST_LEN],
                                      apr_time_t fetched_at)
{
    teleport_keys *keys;
    teleport_keys *previous;
    teleport_keyset *set;
    teleport_error error;
    char detail[256] = "";
    int skipped = 0;

    set = teleport_keyset_parse(doc, length, &skipped, detail, sizeof(detail),
                                &error);
    if (set == NULL) {
        return NULL;
    }
    keys = calloc(1, sizeof(*keys));
    if (keys == NULL) {
        teleport_keyset_free(set);
        return NULL;
    }
    keys->set = set;
    memcpy(keys->version, version, DIGEST_LEN);
    keys->fetched_at = fetched_at;
    keys->references = 2; /* the process table's and r's */

    apr_thread_mutex_lock(process_lock);
    previous = apr_hash_get(process_keys, source->id, TELEPORT_SOURCE_ID_LEN);
    apr_hash_set(process_keys, source->id, TELEPORT_SOURCE_ID_LEN, keys);
    apr_thread_mutex_unlock(process_lock);
    if (previous != NULL) {
        keys_release(previous);
    }
    apr_pool_cleanup_register(r->pool, keys, keys_release_cleanup,
                              apr_pool_cleanup_null);
    return keys;
}

/* Fetching */

typedef struct {
    char *data;
    size_t length;
    int too_large;
} fetch_body;

static size_t fetch_write(char *chunk, size_t size, size_t count, void *data)
{
    fetch_body *body = data;
    size_t length = size * count;

    if (body->length + length > TELEPORT_JWKS_MAX_BYTES) {
        body->too_large = 1;
        return 0; /* makes libcurl fail with CURLE_WRITE_ERROR */
    }
    memcpy(body->data + body->length, chunk, length);
    body->length += length;
    return length;
}

/* Fetch source's JWKS.  Returns the body or NULL with *error set. */
static const char *fetch_document(request_rec *r,
                                  const teleport_key_source *source,
                                  const teleport_fetch_options *options,
                                  apr_size_t *length, const char **error)
{
    const char *protocols = source->allow_plain_http ? "http,https" : "https";
    char curl_error[CURL_ERROR_SIZE] = "";
    fetch_body body = { 0 };
    long timeout_ms = (long)apr_time_as_msec(options->fetch_timeout);
    long status = 0;
    CURLcode code;
    CURL *curl;

    body.data = apr_palloc(r->pool, TELEPORT_JWKS_MAX_BYTES + 1);
    curl = curl_easy_init();
    if (curl == NULL) {
        *error = "cannot create a libcurl handle";
        return NULL;
    }
    curl_easy_setopt(curl, CURLOPT_URL, source->url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, protocols);
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, protocols);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 3L);
    /* Ignore http_proxy and friends from httpd's environment: the JWKS
     * comes straight from the Teleport proxy. */
    curl_easy_setopt(curl, CURLOPT_PROXY, "");
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (options->ca_file != NULL) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, options->ca_file);
    }
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE,
                     (curl_off_t)TELEPORT_JWKS_MAX_BYTES);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "mod_auth_teleport/" TELEPORT_MODULE_VERSION);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, fetch_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);

    code = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);

    if (body.too_large || code == CURLE_FILESIZE_EXCEEDED) {
        *error = apr_psprintf(r->pool, "body larger than %d bytes",
                              TELEPORT_JWKS_MAX_BYTES);
        return NULL;
    }
    if (code != CURLE_OK) {
        *error = apr_psprintf(r->pool, "%s (%s)", curl_easy_strerror(code),
                              curl_error[0] ? curl_error : "no detail");
        return NULL;
    }
    if (status != 200) {
        *error = apr_psprintf(r->pool, "HTTP status %ld", status);
        return NULL;
    }
    body.data[body.length] = '\0';
    *length = body.length;
    return body.data;
}

/*
 * Claim the right to fetch source now: under the global mutex, the last
 * attempt must be at least min_refresh ago.  Returns 1 and records the
 * attempt, or 0 with *retry_after set.
 */
static int claim_fetch(request_rec *r, const teleport_key_source *source,
                       const teleport_fetch_options *options,
                       apr_interval_time_t *retry_after)
{
    apr_time_t now = apr_time_now();
    apr_time_t next;
    jwks_meta meta;
    int claimed = 0;

    lock_cache(r, 1);
    meta_read(r, source, &meta);
    next = meta.attempted_at + options->min_refresh;
    if (meta.attempted_at == 0 || now >= next || now < meta.attempted_at) {
        meta.attempted_at = now;
        meta_write(r, source, &meta);
        claimed = 1;
    }
    unlock_cache(r, 1);

    *retry_after = claimed ? 0 : next - now;
    return claimed;
}

static void record_failure(request_rec *r, const teleport_key_source *source,
                           const char *error)
{
    jwks_meta meta;

    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                  "TLP010: JWKS fetch from %s failed: %s", source->url,
                  error);
    lock_cache(r, 1);
    meta_read(r, source, &meta);
    apr_cpystrn(meta.last_error, error, sizeof(meta.last_error));
    meta_write(r, source, &meta);
    unlock_cache(r, 1);
}

static void record_success(request_rec *r, const teleport_key_source *source,
                           const char *doc, apr_size_t length,
                           const unsigned char version[DIGEST_LEN],
                           apr_time_t fetched_at)
{
    jwks_meta meta;
    apr_status_t rv;

    lock_cache(r, 1);
    rv = doc_write(r, source, version, doc, length);
    meta_read(r, source, &meta);
    meta.last_error[0] = '\0';
    if (rv == APR_SUCCESS) {
        memcpy(meta.version, version, DIGEST_LEN);
        meta.doc_length = (apr_uint32_t)length;
        meta.fetched_at = fetched_at;
    }
    meta_write(r, source, &meta);
    unlock_cache(r, 1);

    if (rv != APR_SUCCESS) {
        /* The keys still serve this process; other children fetch their
         * own copy, subject to the same rate limit. */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r,
                      "TLP011: JWKS of %" APR_SIZE_T_FMT " bytes from %s "
                      "does not fit in the socache '%s'; give TeleportCache "
                      "more room", length, source->url, cache_spec);
    }
}

/* Fetch, validate and publish source's keys.  Returns them with a
 * reference for r, or NULL when the fetch or the document failed; a
 * failure never replaces keys that are already cached. */
static teleport_keys *refresh(request_rec *r,
                              const teleport_key_source *source,
                              const teleport_fetch_options *options)
{
    unsigned char version[DIGEST_LEN];
    apr_time_t fetched_at = apr_time_now();
    teleport_keys *keys;
    const char *error = NULL;
    const char *doc;
    apr_size_t length = 0;

    doc = fetch_document(r, source, options, &length, &error);
    if (doc == NULL) {
        record_failure(r, source, error);
        return NULL;
    }
    digest(doc, length, version);
    keys = process_install(r, source, doc, length, version, fetched_at);
    if (keys == NULL) {
        teleport_error parse_error;
        teleport_keyset *set;

        set = teleport_keyset_parse(doc, length, NULL, NULL, 0, &parse_error);
        teleport_keyset_free(set);
        record_failure(r, source, apr_psprintf(r->pool, "%s: %s",
                                               parse_error.reason,
                                               parse_error.detail));
        return NULL;
    }
    record_success(r, source, doc, length, version, fetched_at);
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  "TLP012: fetched %" APR_SIZE_T_FMT " keys from %s",
                  teleport_keyset_count(keys->set), source->url);
    return keys;
}

/* Bring the process's keys up to the shared version.  Returns them with a
 * reference for r, or NULL when neither holds usable keys. */
static teleport_keys *current_keys(request_rec *r,
                                   const teleport_key_source *source,
                                   jwks_meta *meta)
{
    teleport_keys *keys = process_get(r, source);
    const char *doc;

    lock_cache(r, 0);
    meta_read(r, source, meta);
    unlock_cache(r, 0);
    if (meta->doc_length == 0
        || (keys != NULL
            && memcmp(keys->version, meta->version, DIGEST_LEN) == 0)) {
        return keys;
    }

    doc = doc_read(r, source, meta);
    if (doc == NULL) {
        return keys;
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  "TLP013: loading the shared JWKS of %s into this process",
                  source->url);
    return process_install(r, source, doc, meta->doc_length, meta->version,
                           meta->fetched_at);
}

teleport_keys *teleport_keys_acquire(request_rec *r,
                                     const teleport_key_source *source,
                                     const teleport_fetch_options *options,
                                     int force_refresh,
                                     apr_interval_time_t *retry_after)
{
    teleport_keys *keys;
    teleport_keys *fresh;
    jwks_meta meta;
    int stale;

    *retry_after = 0;
    keys = current_keys(r, source, &meta);
    stale = keys != NULL
            && apr_time_now() - keys->fetched_at > options->max_age;
    if (keys != NULL && !stale && !force_refresh) {
        return keys;
    }
    if (!claim_fetch(r, source, options, retry_after)) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "TLP014: JWKS refresh of %s suppressed by "
                      "TeleportJWKSMinRefresh for another %" APR_TIME_T_FMT
                      " s", source->url, apr_time_sec(*retry_after));
        return keys;
    }
    fresh = refresh(r, source, options);
    return fresh != NULL ? fresh : keys;
}
