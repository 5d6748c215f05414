/*
 * teleport-jwt-verify: verify a Teleport Application Access JWT from the
 * command line with the module's verifier (jwt_verify.c), JWKS download
 * (jwks_fetch.c) and proxy URL rule (jwks_url.c), without httpd, and print
 * what the module would decide and why.
 */
#include "verify_options.h"
#include "verify_report.h"

#include "apr_file_info.h"
#include "apr_file_io.h"
#include "apr_general.h"
#include "apr_lib.h"
#include "apr_strings.h"

#include "../jwks_fetch.h"
#include "../jwks_url.h"
#include "../jwt_verify.h"

#include <curl/curl.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define PROGRAM "teleport-jwt-verify"


/* Most bytes read from standard input: four times the largest
 * --max-token-size, so that an oversized token is still decoded and shown
 * before the verifier rejects it. */
#define INPUT_MAX (4 * 1024 * 1024)

static apr_status_t keyset_cleanup(void *data)
{
    teleport_keyset_free(data);
    return APR_SUCCESS;
}

/* Parse a JWKS document into keys that live as long as p.  Unusable
 * entries are skipped with a warning, as the module does. */
static const char *parse_keys(apr_pool_t *p, const char *option,
                              const char *source, const char *text,
                              apr_size_t length, teleport_keyset **keys)
{
    char skip_detail[256] = "";
    teleport_error error;
    int skipped = 0;

    *keys = teleport_keyset_parse(text, length, &skipped, skip_detail,
                                  sizeof(skip_detail), &error);
    if (*keys == NULL) {
        return apr_psprintf(p, "%s: %s is not a usable JWKS (%s: %s)",
                            option, source, error.reason,
                            verify_printable(p, error.detail));
    }
    apr_pool_cleanup_register(p, *keys, keyset_cleanup,
                              apr_pool_cleanup_null);
    if (skipped > 0) {
        fprintf(stderr, PROGRAM ": warning: JWKS from %s: skipped %d "
                "unusable key(s), the first because %s\n", source, skipped,
                verify_printable(p, skip_detail));
    }
    return NULL;
}

static const char *read_keys_file(apr_pool_t *p, const char *path,
                                  teleport_keyset **keys)
{
    apr_finfo_t info;
    apr_file_t *file;
    apr_size_t length;
    apr_status_t rv;
    char *text;

    rv = apr_file_open(&file, path, APR_FOPEN_READ, APR_OS_DEFAULT, p);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(p, "--jwks-file: cannot open '%s': %pm", path,
                            &rv);
    }
    rv = apr_file_info_get(&info, APR_FINFO_SIZE | APR_FINFO_TYPE, file);
    if (rv != APR_SUCCESS || info.filetype != APR_REG
        || info.size > TELEPORT_JWKS_MAX_BYTES) {
        apr_file_close(file);
        return apr_psprintf(p, "--jwks-file: '%s' is not a regular file of "
                            "at most %d bytes", path, TELEPORT_JWKS_MAX_BYTES);
    }
    length = (apr_size_t)info.size;
    text = apr_palloc(p, length + 1);
    rv = apr_file_read_full(file, text, length, &length);
    apr_file_close(file);
    if (rv != APR_SUCCESS && rv != APR_EOF) {
        return apr_psprintf(p, "--jwks-file: cannot read '%s': %pm", path,
                            &rv);
    }
    text[length] = '\0';
    return parse_keys(p, "--jwks-file", path, text, length, keys);
}

static const char *fetch_keys(apr_pool_t *p, const verify_options *options,
                              teleport_keyset **keys, const char **url)
{
    const char *error = NULL;
    const char *text;
    apr_size_t length = 0;
    int allow_plain_http = 0;

    error = teleport_jwks_url(p, options->proxy_url, url, &allow_plain_http);
    if (error != NULL) {
        return apr_pstrcat(p, "--proxy-url: ", error, NULL);
    }
    text = teleport_fetch(p, *url, allow_plain_http, options->ca_file,
                          options->timeout, TELEPORT_JWKS_MAX_BYTES, &length, &error);
    if (text == NULL) {
        return apr_psprintf(p, "--proxy-url: JWKS fetch from %s failed: %s",
                            *url, verify_printable(p, error));
    }
    return parse_keys(p, "--proxy-url", *url, text, length, keys);
}

/* Read standard input whole, up to INPUT_MAX bytes. */
static const char *read_input(apr_pool_t *p, char **text, apr_size_t *length)
{
    apr_size_t capacity = 64 * 1024;
    apr_size_t used = 0;
    apr_file_t *in;
    apr_status_t rv;
    char *buffer;

    if (apr_file_open_stdin(&in, p) != APR_SUCCESS) {
        return "cannot open standard input";
    }
    buffer = apr_palloc(p, capacity + 1);
    for (;;) {
        apr_size_t chunk = capacity - used;

        rv = apr_file_read(in, buffer + used, &chunk);
        used += chunk;
        if (rv == APR_EOF) {
            break;
        }
        if (rv != APR_SUCCESS) {
            return apr_psprintf(p, "cannot read standard input: %pm", &rv);
        }
        if (used == capacity) {
            char *larger;

            if (capacity >= INPUT_MAX) {
                return apr_psprintf(p, "standard input holds more than %d "
                                    "bytes, which is not a token", INPUT_MAX);
            }
            larger = apr_palloc(p, capacity * 2 + 1);
            memcpy(larger, buffer, used);
            buffer = larger;
            capacity *= 2;
        }
    }
    buffer[used] = '\0';
    *text = buffer;
    *length = used;
    return NULL;
}

/* Find the token in text as the module finds it in the header value:
 * without surrounding white space and without a "Bearer " prefix. */
static void trim_token(const char **text, apr_size_t *length)
{
    const char *start = *text;
    const char *end = start + *length;

    while (start < end && apr_isspace(*start)) {
        start++;
    }
    if (end - start >= 7 && strncasecmp(start, "Bearer ", 7) == 0) {
        start += 7;
        while (start < end && *start == ' ') {
            start++;
        }
    }
    while (end > start && apr_isspace(end[-1])) {
        end--;
    }
    *text = start;
    *length = (apr_size_t)(end - start);
}

static const char *read_token(apr_pool_t *p, const verify_options *options,
                              const char **token, apr_size_t *length)
{
    const char *error;
    char *input = NULL;

    if (options->token != NULL && strcmp(options->token, "-") != 0) {
        *token = options->token;
        *length = strlen(options->token);
    }
    else {
        if (isatty(STDIN_FILENO)) {
            fputs(PROGRAM ": reading the token from standard input "
                  "(end it with Ctrl-D)\n", stderr);
        }
        error = read_input(p, &input, length);
        if (error != NULL) {
            return error;
        }
        *token = input;
    }
    trim_token(token, length);
    if (*length == 0) {
        return options->token != NULL && strcmp(options->token, "-") != 0
                   ? "the TOKEN argument is empty"
                   : "no token: standard input is empty";
    }
    return NULL;
}

static int fail(const char *message, int show_help_hint)
{
    fprintf(stderr, PROGRAM ": %s\n", message);
    if (show_help_hint) {
        fputs("Run '" PROGRAM " --help' for the options.\n", stderr);
    }
    return VERIFY_EXIT_USAGE;
}

static int run(apr_pool_t *p, int argc, const char *const *argv)
{
    verify_options options;
    teleport_keyset *keys = NULL;
    const char *source;
    const char *token;
    const char *error;
    apr_size_t length = 0;

    error = verify_options_parse(p, argc, argv, &options);
    if (error != NULL) {
        return fail(error, 1);
    }
    if (options.help) {
        verify_options_print_help(stdout);
        return VERIFY_EXIT_VALID;
    }
    if (options.version) {
        puts(PROGRAM " " TELEPORT_MODULE_VERSION);
        return VERIFY_EXIT_VALID;
    }

    if (options.proxy_url != NULL) {
        error = fetch_keys(p, &options, &keys, &source);
    }
    else {
        source = options.jwks_file;
        error = read_keys_file(p, options.jwks_file, &keys);
    }
    if (error != NULL) {
        return fail(error, 0);
    }
    error = read_token(p, &options, &token, &length);
    if (error != NULL) {
        return fail(error, 1);
    }
    if (!options.now_set) {
        options.now = (long long)apr_time_sec(apr_time_now());
    }
    return verify_report(p, &options, keys, source, token, length);
}

int main(int argc, const char *const *argv)
{
    apr_pool_t *pool;
    int status;

    if (apr_app_initialize(&argc, &argv, NULL) != APR_SUCCESS) {
        fputs(PROGRAM ": cannot initialise APR\n", stderr);
        return VERIFY_EXIT_USAGE;
    }
    if (apr_pool_create(&pool, NULL) != APR_SUCCESS) {
        fputs(PROGRAM ": cannot create a memory pool\n", stderr);
        apr_terminate();
        return VERIFY_EXIT_USAGE;
    }
    teleport_fetch_global_init();

    status = run(pool, argc, argv);

    apr_pool_destroy(pool);
    curl_global_cleanup();
    apr_terminate();
    return status;
}
