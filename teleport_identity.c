/*
 * Identity from a verified token: environment variables for CGI, SSI and
 * mod_headers, headers for proxied backends, and the guard that keeps
 * clients from supplying those headers themselves.
 */
#include "teleport_identity.h"
#include "teleport_request.h"

#include "apr_atomic.h"
#include "apr_base64.h"
#include "apr_lib.h"
#include "apr_strings.h"
#include "http_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

APLOG_USE_MODULE(auth_teleport);

/* Identity headers set for the backend.  Client copies of these (in any
 * spelling that a backend may fold into the same name) are always removed
 * from the request. */
static const char *const identity_headers[] = {
    "X-Teleport-User", "X-Teleport-Roles", "X-Teleport-Traits", NULL
};

/*
 * The environment values a token gives every request, built once when the
 * token is verified and kept with it (the token cache shares it between
 * requests).  All strings are malloc'd.
 */
typedef struct {
    char *expires;             /* TELEPORT_EXPIRES */
    char *roles;               /* TELEPORT_ROLES; NULL without "roles" */
    size_t trait_count;
    char **trait_variables;    /* TELEPORT_TRAIT_<NAME> */
    char **trait_values;
    /* X-Teleport-Traits, built by the first request that forwards it and
     * then read by every thread; set with a compare-and-swap. */
    volatile void *traits_header;
} token_identity;

static void identity_free(void *data)
{
    token_identity *identity = data;
    size_t i;

    for (i = 0; i < identity->trait_count; i++) {
        free(identity->trait_variables[i]);
        free(identity->trait_values[i]);
    }
    free(identity->trait_variables);
    free(identity->trait_values);
    free(identity->expires);
    free(identity->roles);
    free((void *)identity->traits_header);
    free(identity);
}

/* Join a JSON array of strings with commas into *joined (malloc'd), or set
 * it to NULL when value is not an array.  Return 0 when out of memory. */
static int join_strings(json_t *value, char **joined)
{
    size_t length = 0;
    size_t index;
    json_t *item;
    char *cursor;

    *joined = NULL;
    if (!json_is_array(value)) {
        return 1;
    }
    json_array_foreach(value, index, item) {
        if (json_is_string(item)) {
            length += json_string_length(item) + 1;
        }
    }
    *joined = malloc(length + 1);
    if (*joined == NULL) {
        return 0;
    }
    cursor = *joined;
    json_array_foreach(value, index, item) {
        if (json_is_string(item)) {
            if (cursor != *joined) {
                *cursor++ = ',';
            }
            memcpy(cursor, json_string_value(item), json_string_length(item));
            cursor += json_string_length(item);
        }
    }
    *cursor = '\0';
    return 1;
}

/* TELEPORT_TRAIT_<NAME>: upper-cased, anything outside A-Z0-9 as '_'. */
static char *trait_variable(const char *name)
{
    size_t prefix = sizeof("TELEPORT_TRAIT_") - 1;
    size_t length = strlen(name);
    char *variable = malloc(prefix + length + 1);
    size_t i;

    if (variable == NULL) {
        return NULL;
    }
    memcpy(variable, "TELEPORT_TRAIT_", prefix);
    for (i = 0; i < length; i++) {
        variable[prefix + i] = apr_isalnum(name[i])
                               ? (char)apr_toupper(name[i]) : '_';
    }
    variable[prefix + length] = '\0';
    return variable;
}

/* Fill the trait variables of identity from the "traits" object. */
static int add_traits(token_identity *identity, json_t *traits)
{
    size_t count = json_is_object(traits) ? json_object_size(traits) : 0;
    const char *name;
    json_t *values;

    if (count == 0) {
        return 1;
    }
    identity->trait_variables = calloc(count, sizeof(char *));
    identity->trait_values = calloc(count, sizeof(char *));
    if (identity->trait_variables == NULL || identity->trait_values == NULL) {
        return 0;
    }
    json_object_foreach(traits, name, values) {
        size_t i = identity->trait_count++;

        identity->trait_variables[i] = trait_variable(name);
        if (identity->trait_variables[i] == NULL
            || !join_strings(values, &identity->trait_values[i])) {
            return 0;
        }
        if (identity->trait_values[i] == NULL) {
            identity->trait_values[i] = calloc(1, 1);
            if (identity->trait_values[i] == NULL) {
                return 0;
            }
        }
    }
    return 1;
}

int teleport_identity_prepare(teleport_token *token)
{
    token_identity *identity = calloc(1, sizeof(*identity));
    char expires[32];

    if (identity == NULL) {
        return 0;
    }
    snprintf(expires, sizeof(expires), "%lld", token->expires);
    identity->expires = malloc(strlen(expires) + 1);
    if (identity->expires != NULL) {
        memcpy(identity->expires, expires, strlen(expires) + 1);
    }
    if (identity->expires == NULL
        || !join_strings(json_object_get(token->claims, "roles"),
                         &identity->roles)
        || !add_traits(identity, json_object_get(token->claims, "traits"))) {
        identity_free(identity);
        return 0;
    }
    token->annex = identity;
    token->annex_free = identity_free;
    return 1;
}

void teleport_identity_set(request_rec *r, const char *user_claim,
                           const teleport_token *token)
{
    const token_identity *identity = token->annex;
    json_t *user = json_object_get(token->claims, user_claim);
    apr_table_t *env = r->subprocess_env;
    size_t i;

    /* The token, and with it every value below, lives until r's pool is
     * cleared, so the tables take the values without copies.  r->user is
     * copied: it is not const, and the token may serve other requests. */
    r->user = apr_pstrdup(r->pool, json_string_value(user));
    r->ap_auth_type = TELEPORT_AUTH_TYPE;
    apr_table_setn(env, "TELEPORT_USER", r->user);
    apr_table_setn(env, "TELEPORT_KID", token->kid);
    apr_table_setn(env, "TELEPORT_EXPIRES", identity->expires);
    if (token->subject != NULL) {
        apr_table_setn(env, "TELEPORT_SUB", token->subject);
    }
    if (token->issuer != NULL) {
        apr_table_setn(env, "TELEPORT_ISSUER", token->issuer);
    }
    if (identity->roles != NULL) {
        apr_table_setn(env, "TELEPORT_ROLES", identity->roles);
    }
    for (i = 0; i < identity->trait_count; i++) {
        apr_table_setn(env, identity->trait_variables[i],
                       identity->trait_values[i]);
    }
    apr_table_setn(r->notes, "teleport-user", r->user);
}

/* Return 1 when name is one of identity_headers, compared without case and
 * with '_' taken as '-' (CGI and many frameworks fold both into one). */
static int is_identity_header(const char *name)
{
    const char *const *header;

    for (header = identity_headers; *header != NULL; header++) {
        const char *a = name;
        const char *b = *header;

        while (*a != '\0' && *b != '\0'
               && (*a == '_' ? '-' : apr_tolower(*a)) == apr_tolower(*b)) {
            a++;
            b++;
        }
        if (*a == '\0' && *b == '\0') {
            return 1;
        }
    }
    return 0;
}

static int collect_identity_header(void *data, const char *key,
                                   const char *value)
{
    apr_array_header_t *names = data;

    (void)value;
    if (is_identity_header(key)) {
        APR_ARRAY_PUSH(names, const char *) = key;
    }
    return 1;
}

/* Drop identity header names from Connection: mod_proxy removes the fields
 * that Connection lists (RFC 9110 section 7.6.1), which would let a client
 * strip the trusted values on their way to the backend. */
static void strip_connection_options(request_rec *r)
{
    const char *value = apr_table_get(r->headers_in, "Connection");
    apr_array_header_t *kept;
    char *option;

    if (value == NULL) {
        return;
    }
    kept = apr_array_make(r->pool, 2, sizeof(char *));
    while ((option = ap_get_list_item(r->pool, &value)) != NULL) {
        if (!is_identity_header(option)) {
            APR_ARRAY_PUSH(kept, char *) = option;
        }
    }
    if (kept->nelts == 0) {
        apr_table_unset(r->headers_in, "Connection");
        return;
    }
    apr_table_setn(r->headers_in, "Connection",
                   apr_array_pstrcat(r->pool, kept, ','));
}

int teleport_identity_strip_forged(request_rec *r)
{
    apr_array_header_t *names = apr_array_make(r->pool, 2, sizeof(char *));
    int i;

    apr_table_do(collect_identity_header, names, r->headers_in, NULL);
    for (i = 0; i < names->nelts; i++) {
        const char *name = APR_ARRAY_IDX(names, i, const char *);

        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "TLP040: removing client-supplied header %s",
                      teleport_log_escape(r->pool, name));
        apr_table_unset(r->headers_in, name);
    }
    strip_connection_options(r);
    return DECLINED;
}

/* Encode bytes as base64url without padding (RFC 4648 section 5) into a
 * malloc'd string; NULL when out of memory. */
static char *base64url(const char *data, int length)
{
    char *encoded = malloc((size_t)apr_base64_encode_len(length));
    char *c;

    if (encoded == NULL) {
        return NULL;
    }
    apr_base64_encode_binary(encoded, (const unsigned char *)data, length);
    for (c = encoded; *c != '\0' && *c != '='; c++) {
        if (*c == '+') {
            *c = '-';
        }
        else if (*c == '/') {
            *c = '_';
        }
    }
    *c = '\0';
    return encoded;
}

/* Return the X-Teleport-Traits value of the token, building it on first
 * use; NULL when out of memory. */
static const char *traits_header(const teleport_token *token)
{
    token_identity *identity = token->annex;
    json_t *traits = json_object_get(token->claims, "traits");
    json_t *empty = NULL;
    char *encoded;
    char *json;
    void *existing = apr_atomic_casptr(&identity->traits_header, NULL,
                                       NULL);

    if (existing != NULL) {
        return existing;
    }
    if (!json_is_object(traits)) {
        traits = empty = json_object();
    }
    json = json_dumps(traits, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(empty);
    if (json == NULL) {
        return NULL;
    }
    encoded = base64url(json, (int)strlen(json));
    free(json);
    if (encoded == NULL) {
        return NULL;
    }
    /* Another thread may have built it meanwhile: keep the first. */
    existing = apr_atomic_casptr(&identity->traits_header, encoded, NULL);
    if (existing != NULL) {
        free(encoded);
        return existing;
    }
    return encoded;
}

void teleport_identity_set_headers(request_rec *r,
                                   const teleport_token *token)
{
    const token_identity *identity = token->annex;
    const char *traits = traits_header(token);

    apr_table_set(r->headers_in, "X-Teleport-User", r->user);
    apr_table_set(r->headers_in, "X-Teleport-Roles",
                  identity->roles != NULL ? identity->roles : "");
    if (traits != NULL) {
        apr_table_set(r->headers_in, "X-Teleport-Traits", traits);
    }
}
