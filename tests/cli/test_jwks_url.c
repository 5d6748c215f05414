/*
 * Unit test of teleport_jwks_url() and teleport_host_is_loopback()
 * (jwks_url.c): string rules only, no network.  Prints one "ok N - name" or
 * "not ok N - name: got X expected Y" line per check, then "N passed,
 * N failed".  Exits 1 when a check failed.
 */
#include <stdio.h>
#include <string.h>

#include "apr_general.h"
#include "apr_pools.h"

#include "../../jwks_url.h"

typedef struct {
    const char *proxy_url;
    const char *jwks_url;        /* expected URL, or NULL for an error */
    int allow_plain_http;
    const char *error_part;      /* expected part of the error message */
} url_case;

static const url_case url_cases[] = {
    { "https://teleport.example.com:3080",
      "https://teleport.example.com:3080/.well-known/jwks.json", 0, NULL },
    { "https://teleport.example.com:3080/",
      "https://teleport.example.com:3080/.well-known/jwks.json", 0, NULL },
    { "https://teleport.example.com/.well-known/jwks.json",
      "https://teleport.example.com/.well-known/jwks.json", 0, NULL },
    { "https://teleport.example.com/.well-known/jwks.json/",
      "https://teleport.example.com/.well-known/jwks.json", 0, NULL },
    { "https://teleport.example.com/prefix//",
      "https://teleport.example.com/prefix/.well-known/jwks.json", 0, NULL },
    { "HTTPS://teleport.example.com",
      "HTTPS://teleport.example.com/.well-known/jwks.json", 0, NULL },
    { "http://127.0.0.1:3080",
      "http://127.0.0.1:3080/.well-known/jwks.json", 1, NULL },
    { "http://127.255.0.9", "http://127.255.0.9/.well-known/jwks.json", 1,
      NULL },
    { "http://localhost:3080",
      "http://localhost:3080/.well-known/jwks.json", 1, NULL },
    { "http://LOCALHOST", "http://LOCALHOST/.well-known/jwks.json", 1, NULL },
    { "http://[::1]:3080", "http://[::1]:3080/.well-known/jwks.json", 1,
      NULL },
    { "http://teleport.example.com", NULL, 0, "must use https" },
    { "http://127.example.com", NULL, 0, "must use https" },
    { "http://127.0.0.1.example.com", NULL, 0, "must use https" },
    { "http://localhost.example.com", NULL, 0, "must use https" },
    { "http://128.0.0.1", NULL, 0, "must use https" },
    { "http://[::2]", NULL, 0, "must use https" },
    { "ftp://127.0.0.1/", NULL, 0, "must use https" },
    { "https://teleport.example.com/.well-known/jwks-oidc", NULL, 0,
      "names another document" },
    { "https://teleport.example.com/.well-known/openid-configuration", NULL,
      0, "names another document" },
    { "https://user:secret@teleport.example.com", NULL, 0,
      "must not contain user information" },
    { "https://teleport.example.com/?x=1", NULL, 0,
      "must not contain user information" },
    { "https://teleport.example.com/#keys", NULL, 0,
      "must not contain user information" },
    { "teleport.example.com:3080", NULL, 0, "is not an absolute URL" },
    { "/.well-known/jwks.json", NULL, 0, "is not an absolute URL" },
    { "", NULL, 0, "is not an absolute URL" }
};

typedef struct {
    const char *host;
    int loopback;
} host_case;

static const host_case host_cases[] = {
    { "localhost", 1 }, { "LocalHost", 1 }, { "127.0.0.1", 1 },
    { "127.1.2.3", 1 }, { "::1", 1 }, { "0:0:0:0:0:0:0:1", 1 },
    { "127.example.com", 0 }, { "127.0.0.1.example.com", 0 },
    { "127.1", 0 }, { "126.0.0.1", 0 }, { "::2", 0 }, { "", 0 },
    { "localhost.example.com", 0 }
};

static int check_count;
static int fail_count;

static void report(const char *name, int ok, const char *got,
                   const char *expected)
{
    check_count++;
    if (ok) {
        printf("ok %d - %s\n", check_count, name);
        return;
    }
    fail_count++;
    printf("not ok %d - %s: got %s expected %s\n", check_count, name,
           got != NULL ? got : "(null)",
           expected != NULL ? expected : "(null)");
}

static void check_url_case(apr_pool_t *p, const url_case *test)
{
    const char *jwks_url = NULL;
    int allow_plain_http = -1;
    const char *error;
    char name[200];

    error = teleport_jwks_url(p, test->proxy_url, &jwks_url,
                              &allow_plain_http);
    snprintf(name, sizeof(name), "jwks url of '%s'", test->proxy_url);
    if (test->jwks_url == NULL) {
        report(name, error != NULL && strstr(error, test->error_part) != NULL,
               error != NULL ? error : jwks_url, test->error_part);
        return;
    }
    report(name, error == NULL && strcmp(jwks_url, test->jwks_url) == 0,
           error != NULL ? error : jwks_url, test->jwks_url);
    snprintf(name, sizeof(name), "plain http allowed for '%s'",
             test->proxy_url);
    report(name, allow_plain_http == test->allow_plain_http,
           allow_plain_http ? "1" : "0", test->allow_plain_http ? "1" : "0");
}

int main(int argc, const char *const *argv)
{
    apr_pool_t *pool;
    size_t i;

    if (apr_app_initialize(&argc, &argv, NULL) != APR_SUCCESS
        || apr_pool_create(&pool, NULL) != APR_SUCCESS) {
        fputs("cannot initialise APR\n", stderr);
        return 1;
    }
    for (i = 0; i < sizeof(url_cases) / sizeof(url_cases[0]); i++) {
        check_url_case(pool, &url_cases[i]);
    }
    for (i = 0; i < sizeof(host_cases) / sizeof(host_cases[0]); i++) {
        char name[120];
        int got = teleport_host_is_loopback(host_cases[i].host);

        snprintf(name, sizeof(name), "loopback '%s'", host_cases[i].host);
        report(name, got == host_cases[i].loopback, got ? "1" : "0",
               host_cases[i].loopback ? "1" : "0");
    }
    apr_pool_destroy(pool);
    apr_terminate();
    printf("%d passed, %d failed\n", check_count - fail_count, fail_count);
    return fail_count == 0 ? 0 : 1;
}
