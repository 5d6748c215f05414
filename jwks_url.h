/*
 * The JWKS URL of a Teleport proxy: the rule behind TeleportProxyURL and
 * teleport-jwt-verify --proxy-url.  APR and APR-util only, no httpd, so the
 * module and the command-line verifier apply the same rule.
 */
#ifndef TELEPORT_JWKS_URL_H
#define TELEPORT_JWKS_URL_H

#include "apr_pools.h"

/* Path of a Teleport proxy's JWKS: the keys of its JWT CA, which signs
 * application tokens. */
#define TELEPORT_JWKS_PATH "/.well-known/jwks.json"

/*
 * Return 1 when host, as apr_uri_parse() returns it (IPv6 without
 * brackets), is "localhost" (any case), a dotted-quad IPv4 address in
 * 127.0.0.0/8 or the IPv6 address ::1.  Names that merely start with
 * "127." are not loopback hosts.
 */
int teleport_host_is_loopback(const char *host);

/*
 * Derive the JWKS URL from a proxy's public address, given with or without
 * TELEPORT_JWKS_PATH.  The address must be an absolute URL without user
 * information, query or fragment, using https, or http for a loopback
 * host.  A path that names another /.well-known/ document is rejected:
 * Teleport's OIDC keys (/.well-known/jwks-oidc) belong to another CA and
 * never verify application tokens.  On success returns NULL, stores the
 * URL (allocated from p) in *jwks_url and 1 in *allow_plain_http for an
 * http URL.  Otherwise returns an error message that quotes proxy_url.
 */
const char *teleport_jwks_url(apr_pool_t *p, const char *proxy_url,
                              const char **jwks_url, int *allow_plain_http);

#endif /* TELEPORT_JWKS_URL_H */
