/*
 * One JWKS download over HTTPS with libcurl: certificate and host name
 * verification always on, the body capped, redirects kept to the same
 * protocols, environment proxy settings ignored.
 */
#ifndef TELEPORT_JWKS_FETCH_H
#define TELEPORT_JWKS_FETCH_H

#include "apr_pools.h"
#include "apr_time.h"

/* Largest JWKS document accepted from a proxy or a file, in bytes.  A
 * Teleport JWKS lists one or two keys per signature suite, each twice
 * (with and without "kid"): about 2 KB for RSA-2048. */
#define TELEPORT_JWKS_MAX_BYTES (64 * 1024)

/* Initialise libcurl's global state; call once before any thread runs. */
void teleport_fetch_global_init(void);

/*
 * Download url.  ca_file (NULL: the system bundle) verifies the server;
 * allow_plain_http also permits http:// (loopback URLs only, checked by
 * the caller); timeout bounds connect and transfer together; max_bytes
 * caps the body.  Returns the NUL-terminated body allocated from p, or
 * NULL with *error describing the failure.
 */
const char *teleport_fetch(apr_pool_t *p, const char *url, int allow_plain_http,
                           const char *ca_file, apr_interval_time_t timeout,
                           apr_size_t max_bytes, apr_size_t *length,
                           const char **error);

#endif /* TELEPORT_JWKS_FETCH_H */
