/*
 * The JWKS URL of a Teleport proxy.
 */
#include "jwks_url.h"

#include "apr_strings.h"
#include "apr_uri.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

int teleport_host_is_loopback(const char *host)
{
    struct in_addr ipv4;
    struct in6_addr ipv6;

    if (strcasecmp(host, "localhost") == 0) {
        return 1;
    }
    /* inet_pton() accepts only the four-part dotted-decimal form, so a
     * host name such as "127.example.com" never passes. */
    if (inet_pton(AF_INET, host, &ipv4) == 1) {
        return (ntohl(ipv4.s_addr) >> 24) == 127;
    }
    if (inet_pton(AF_INET6, host, &ipv6) == 1) {
        return IN6_IS_ADDR_LOOPBACK(&ipv6);
    }
    return 0;
}

/* Return path without trailing slashes and without a final
 * TELEPORT_JWKS_PATH, or NULL when it names another /.well-known/
 * document. */
static const char *proxy_base_path(apr_pool_t *p, const char *path)
{
    const size_t jwks_length = sizeof(TELEPORT_JWKS_PATH) - 1;
    size_t length = strlen(path);

    while (length > 0 && path[length - 1] == '/') {
        length--;
    }
    if (length >= jwks_length
        && strncmp(path + length - jwks_length, TELEPORT_JWKS_PATH,
                   jwks_length) == 0) {
        return apr_pstrmemdup(p, path, length - jwks_length);
    }
    path = apr_pstrmemdup(p, path, length);
    if (strstr(path, "/.well-known/") != NULL) {
        return NULL;
    }
    return path;
}

const char *teleport_jwks_url(apr_pool_t *p, const char *proxy_url,
                              const char **jwks_url, int *allow_plain_http)
{
    apr_uri_t uri;
    const char *base_path;

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

    if (strcasecmp(uri.scheme, "http") == 0
        && teleport_host_is_loopback(uri.hostname)) {
        *allow_plain_http = 1;
    }
    else if (strcasecmp(uri.scheme, "https") == 0) {
        *allow_plain_http = 0;
    }
    else {
        return apr_psprintf(p, "'%s' must use https (http is accepted for "
                            "loopback hosts only)", proxy_url);
    }

    base_path = proxy_base_path(p, uri.path != NULL ? uri.path : "");
    if (base_path == NULL) {
        return apr_psprintf(p, "'%s' names another document; give the "
                            "proxy's public address, whose keys are at "
                            "%s", proxy_url, TELEPORT_JWKS_PATH);
    }
    uri.path = apr_pstrcat(p, base_path, TELEPORT_JWKS_PATH, NULL);
    *jwks_url = apr_uri_unparse(p, &uri, APR_URI_UNP_OMITUSERINFO);
    return NULL;
}
