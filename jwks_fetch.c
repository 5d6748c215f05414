/*
 * JWKS download with libcurl.
 */
#include "jwks_fetch.h"

#include "apr_strings.h"

#include <curl/curl.h>
#include <string.h>

#define MAX_REDIRECTS 3L

typedef struct {
    char *data;
    apr_size_t length;
    apr_size_t max_bytes;
    int too_large;
} fetch_body;

void teleport_fetch_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t append_body(char *chunk, size_t size, size_t count, void *data)
{
    fetch_body *body = data;
    size_t length = size * count;

    if (length > body->max_bytes - body->length) {
        body->too_large = 1;
        return 0; /* libcurl then fails with CURLE_WRITE_ERROR */
    }
    memcpy(body->data + body->length, chunk, length);
    body->length += length;
    return length;
}

static void set_options(CURL *curl, const char *url, int allow_plain_http,
                        const char *ca_file, apr_interval_time_t timeout,
                        fetch_body *body, char *error_buffer)
{
    const char *protocols = allow_plain_http ? "http,https" : "https";
    long timeout_ms = (long)apr_time_as_msec(timeout);

    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, protocols);
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, protocols);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, MAX_REDIRECTS);
    /* An empty proxy disables http_proxy and friends from httpd's
     * environment: the JWKS comes straight from the Teleport proxy. */
    curl_easy_setopt(curl, CURLOPT_PROXY, "");
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (ca_file != NULL) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file);
    }
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE,
                     (curl_off_t)body->max_bytes);
    curl_easy_setopt(curl, CURLOPT_USERAGENT,
                     "mod_auth_teleport/" TELEPORT_MODULE_VERSION);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, append_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
}

const char *teleport_fetch(apr_pool_t *p, const char *url, int allow_plain_http,
                           const char *ca_file, apr_interval_time_t timeout,
                           apr_size_t max_bytes, apr_size_t *length,
                           const char **error)
{
    char error_buffer[CURL_ERROR_SIZE] = "";
    fetch_body body = { 0 };
    long status = 0;
    CURLcode code;
    CURL *curl;

    body.data = apr_palloc(p, max_bytes + 1);
    body.max_bytes = max_bytes;
    curl = curl_easy_init();
    if (curl == NULL) {
        *error = "cannot create a libcurl handle";
        return NULL;
    }
    set_options(curl, url, allow_plain_http, ca_file, timeout, &body,
                error_buffer);
    code = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);

    if (body.too_large || code == CURLE_FILESIZE_EXCEEDED) {
        *error = apr_psprintf(p, "body larger than %" APR_SIZE_T_FMT " bytes",
                              max_bytes);
        return NULL;
    }
    if (code != CURLE_OK) {
        *error = apr_psprintf(p, "%s (%s)", curl_easy_strerror(code),
                              error_buffer[0] ? error_buffer : "no detail");
        return NULL;
    }
    if (status != 200) {
        *error = apr_psprintf(p, "HTTP status %ld", status);
        return NULL;
    }
    body.data[body.length] = '\0';
    *length = body.length;
    return body.data;
}
