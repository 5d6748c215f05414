/*
 * Identity from a verified token: environment variables for CGI, SSI and
 * mod_headers, headers for proxied backends, and the guard that keeps
 * clients from supplying those headers themselves.
 */
#include "teleport_identity.h"
#include "teleport_request.h"

#include "apr_base64.h"
#include "apr_lib.h"
#include "apr_strings.h"
#include "http_log.h"

#include <stdlib.h>
#include <string.h>

APLOG_USE_MODULE(auth_teleport);

/* Identity headers set for the backend.  Client copies of these (in any
 * spelling that a backend may fold into the same name) are always removed
 * from the request. */
static const char *const identity_headers[] = {
    "X-Teleport-User", "X-Teleport-Roles", "X-Teleport-Traits", NULL
};

/* Join a JSON array of strings with commas; NULL when not such an array. */
static const char *join_strings(apr_pool_t *p, json_t *array)
{
    apr_array_header_t *parts;
    json_t *item;
    size_t index;

    if (!json_is_array(array)) {
        return NULL;
    }
    parts = apr_array_make(p, (int)json_array_size(array), sizeof(char *));
    json_array_foreach(array, index, item) {
        if (json_is_string(item)) {
            APR_ARRAY_PUSH(parts, const char *) = json_string_value(item);
        }
    }
    return apr_array_pstrcat(p, parts, ',');
}

/* TELEPORT_TRAIT_<NAME>: upper-cased, anything outside A-Z0-9 as '_'. */
static const char *trait_variable(apr_pool_t *p, const char *name)
{
    char *variable = apr_pstrcat(p, "TELEPORT_TRAIT_", name, NULL);
    char *c;

    for (c = variable + sizeof("TELEPORT_TRAIT_") - 1; *c != '\0'; c++) {
        *c = apr_isalnum(*c) ? (char)apr_toupper(*c) : '_';
    }
    return variable;
}

void teleport_identity_set(request_rec *r, const char *user_claim,
                           const teleport_token *token)
{
    json_t *user = json_object_get(token->claims, user_claim);
    apr_table_t *env = r->subprocess_env;
    json_t *traits = json_object_get(token->claims, "traits");
    const char *roles = join_strings(r->pool,
                                     json_object_get(token->claims, "roles"));
    const char *name;
    json_t *values;

    r->user = apr_pstrdup(r->pool, json_string_value(user));
    r->ap_auth_type = TELEPORT_AUTH_TYPE;
    apr_table_setn(env, "TELEPORT_USER", r->user);
    apr_table_setn(env, "TELEPORT_KID", apr_pstrdup(r->pool, token->kid));
    apr_table_setn(env, "TELEPORT_EXPIRES",
                   apr_psprintf(r->pool, "%" APR_INT64_T_FMT,
                                (apr_int64_t)token->expires));
    if (token->subject != NULL) {
        apr_table_setn(env, "TELEPORT_SUB",
                       apr_pstrdup(r->pool, token->subject));
    }
    if (token->issuer != NULL) {
        apr_table_setn(env, "TELEPORT_ISSUER",
                       apr_pstrdup(r->pool, token->issuer));
    }
    if (roles != NULL) {
        apr_table_setn(env, "TELEPORT_ROLES", roles);
    }
    if (json_is_object(traits)) {
        json_object_foreach(traits, name, values) {
            const char *joined = join_strings(r->pool, values);

            apr_table_setn(env, trait_variable(r->pool, name),
                           joined ? joined : "");
        }
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

/* Encode bytes as base64url without padding (RFC 4648 section 5). */
static const char *base64url(apr_pool_t *p, const char *data, int length)
{
    char *encoded = apr_palloc(p, apr_base64_encode_len(length));
    char *c;

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

void teleport_identity_set_headers(request_rec *r,
                                   const teleport_token *token)
{
    json_t *traits = json_object_get(token->claims, "traits");
    const char *roles = join_strings(r->pool,
                                     json_object_get(token->claims, "roles"));
    char *json;

    apr_table_set(r->headers_in, "X-Teleport-User", r->user);
    apr_table_set(r->headers_in, "X-Teleport-Roles", roles ? roles : "");
    json = json_dumps(json_is_object(traits) ? traits : json_object(),
                      JSON_COMPACT | JSON_SORT_KEYS);
    if (json == NULL) {
        return;
    }
    apr_table_set(r->headers_in, "X-Teleport-Traits",
                  base64url(r->pool, json, (int)strlen(json)));
    free(json);
}

