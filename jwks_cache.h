/*
 * JWKS cache: fetches a Teleport proxy's JWKS with libcurl, shares it between
 * all child processes through an httpd socache provider, rate-limits forced
 * refreshes across the server, and keeps the parsed key set per process.
 *
 * This unit handles fetching, the socache and the shared refresh state,
 * not claims or authorization.
 */
#ifndef TELEPORT_JWKS_CACHE_H
#define TELEPORT_JWKS_CACHE_H

#include "httpd.h"
#include "http_config.h"
#include "jwks_fetch.h"
#include "jwt_verify.h"


/* Length of the binary digest that identifies a key source. */
#define TELEPORT_SOURCE_ID_LEN 32

/* Where a location's keys come from: a JWKS URL, fixed at config time. */
typedef struct {
    const char *url;
    unsigned char id[TELEPORT_SOURCE_ID_LEN]; /* SHA-256 of url */
    int allow_plain_http;                      /* loopback http:// URL */
} teleport_key_source;

/* How a location fetches and refreshes its keys. */
typedef struct {
    const char *ca_file;              /* NULL: the system CA bundle */
    apr_interval_time_t fetch_timeout;
    apr_interval_time_t max_age;      /* refresh keys older than this */
    apr_interval_time_t min_refresh;  /* at most one fetch per interval */
    apr_interval_time_t max_stale;    /* use no keys fetched longer ago */
} teleport_fetch_options;

/* A parsed key set with a reference count; opaque. */
typedef struct teleport_keys teleport_keys;

const teleport_keyset *teleport_keys_set(const teleport_keys *keys);

/* SHA-256 of the JWKS document the keys were parsed from. */
const unsigned char *teleport_keys_version(const teleport_keys *keys);

/*
 * Build the key source for a proxy URL given to TeleportProxyURL.  Returns
 * an error string naming the value, or NULL.
 */
const char *teleport_key_source_create(apr_pool_t *p, const char *proxy_url,
                                       teleport_key_source **source);

/*
 * Read and parse a static JWKS file.  The keys live as long as pool p.
 * Returns an error string naming the file, or NULL; *skipped and
 * skip_detail tell about unusable entries for a startup warning.
 */
const char *teleport_keys_load_file(apr_pool_t *p, const char *path,
                                    teleport_keys **keys, int *skipped,
                                    const char **skip_detail);

/* TeleportCache "provider[:args]": look the provider up and create its
 * instance.  Returns an error string naming the value, or NULL. */
const char *teleport_cache_configure(cmd_parms *cmd, const char *spec);

/* Hook helpers, called from the module's hooks of the same names. */
void teleport_cache_pre_config(apr_pool_t *pconf);
const char *teleport_cache_check_config(apr_pool_t *pconf);
/* sources: every key source of this generation (in pconf); their shared
 * keys are carried over a graceful or full restart of the parent. */
int teleport_cache_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                               server_rec *s,
                               const teleport_key_source *const *sources,
                               int source_count);
void teleport_cache_child_init(apr_pool_t *pchild, server_rec *s);

/*
 * Fetch source's keys once, in the parent after post_config created the
 * cache, so that children find them shared.  Bounded by the fetch timeout;
 * a failure is logged and leaves the first request to fetch again.
 */
void teleport_cache_prefetch(server_rec *s, apr_pool_t *p,
                             const teleport_key_source *source,
                             const teleport_fetch_options *options);

/*
 * Return the current keys of source for request r, fetching them when none
 * are cached, when they are older than options->max_age, or when
 * force_refresh is set (an unknown "kid").  One fetch runs at a time per
 * source across all children, at most one per options->min_refresh; a
 * request without keys waits up to the fetch timeout for a fetch that
 * another request runs.  A failed fetch keeps the previous keys until they
 * are options->max_stale old.  The keys stay valid until r->pool is
 * cleared.  NULL means no usable keys, and *retry_after then contains the time
 * until the next fetch may run, or 0 when unknown.
 */
teleport_keys *teleport_keys_acquire(request_rec *r,
                                     const teleport_key_source *source,
                                     const teleport_fetch_options *options,
                                     int force_refresh,
                                     apr_interval_time_t *retry_after);

/* State of a key source in the shared cache, for status pages. */
typedef struct {
    apr_array_header_t *keys;   /* teleport_key_info of the shared keys */
    apr_time_t fetched_at;      /* 0: never */
    apr_time_t changed_at;
    apr_time_t attempted_at;
    apr_time_t failed_at;
    const char *last_error;     /* "" when the last fetch succeeded */
} teleport_source_state;

/* Fill state from the shared cache.  Returns NULL, or why nothing could
 * be read. */
const char *teleport_cache_describe(server_rec *s, apr_pool_t *p,
                                    const teleport_key_source *source,
                                    teleport_source_state *state);

#endif /* TELEPORT_JWKS_CACHE_H */
