/*
 * Verification and report of teleport-jwt-verify.
 */
#include "verify_report.h"

#include "apr_strings.h"
#include "apr_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Clock skew of the extra pass that names the key of a token whose claims
 * fail: no date of a real token fails with it, and exp plus this skew is
 * still exact in the double arithmetic of the verifier. */
#define KEY_SEARCH_CLOCK_SKEW (1LL << 52)

/* Latest time shown as a date: 9999-12-31T23:59:59Z. */
#define MAX_SHOWN_TIME 253402300799LL

/* Escaped values are at most three times as long as the original. */
#define ESCAPED_USER_SIZE (TELEPORT_USER_MAX * 3 + 4)
#define ESCAPED_KID_SIZE 96

/* Reasons that teleport_jwt_verify() reports before the signature has
 * verified.  Any other reason comes from the claims checks, which run only
 * after the signature verified. */
static const char *const signature_stage_reasons[] = {
    "malformed", "bad_header", "alg_not_allowed", "unknown_kid",
    "key_mismatch", "bad_signature", NULL
};

typedef struct {
    teleport_verify_status status;
    teleport_error error;
    teleport_token *token;      /* the verified token, or NULL */
    int signature_verified;
    int key_known;
    teleport_key_info key;      /* the verifying key when key_known */
} verdict;

/* The header and claims decoded for display only, whatever the verdict. */
typedef struct {
    json_t *header;
    json_t *claims;
    char header_problem[160];
    char claims_problem[160];
} decoded_token;

const char *verify_printable(apr_pool_t *p, const char *text)
{
    char *copy = apr_pstrdup(p, text);
    char *c;

    for (c = copy; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            *c = '?';
        }
    }
    return copy;
}

/* Decode one base64url segment into a JSON object.  Returns NULL, with
 * problem filled, when the segment is not one. */
static json_t *decode_segment(const char *segment, size_t length,
                              char *problem, size_t problem_size)
{
    unsigned char *bytes;
    size_t decoded_length = 0;
    json_error_t json_error;
    char shown[120];
    json_t *value;

    bytes = teleport_base64url_decode(segment, length, &decoded_length);
    if (bytes == NULL) {
        snprintf(problem, problem_size, "the segment is not strict "
                 "base64url");
        return NULL;
    }
    value = json_loadb((const char *)bytes, decoded_length,
                       JSON_REJECT_DUPLICATES, &json_error);
    free(bytes);
    if (value == NULL) {
        /* jansson quotes the text near the error, which comes from the
         * token: escape it as the verifier does. */
        teleport_escape(shown, sizeof(shown), json_error.text,
                        strlen(json_error.text));
        snprintf(problem, problem_size, "not JSON: %s", shown);
        return NULL;
    }
    if (!json_is_object(value)) {
        json_decref(value);
        snprintf(problem, problem_size, "not a JSON object");
        return NULL;
    }
    return value;
}

static void decode_token(const char *token, size_t length,
                         decoded_token *decoded)
{
    const char *end = token + length;
    const char *first_dot = memchr(token, '.', length);
    const char *second_dot = NULL;

    memset(decoded, 0, sizeof(*decoded));
    if (first_dot != NULL) {
        second_dot = memchr(first_dot + 1, '.', (size_t)(end - first_dot - 1));
    }
    if (second_dot == NULL) {
        snprintf(decoded->header_problem, sizeof(decoded->header_problem),
                 "the token is not three segments separated by dots");
        snprintf(decoded->claims_problem, sizeof(decoded->claims_problem),
                 "%s", decoded->header_problem);
        return;
    }
    decoded->header = decode_segment(token, (size_t)(first_dot - token),
                                     decoded->header_problem,
                                     sizeof(decoded->header_problem));
    decoded->claims = decode_segment(first_dot + 1,
                                     (size_t)(second_dot - first_dot - 1),
                                     decoded->claims_problem,
                                     sizeof(decoded->claims_problem));
}

static void fill_checks(const verify_options *options,
                        teleport_checks *checks)
{
    memset(checks, 0, sizeof(*checks));
    checks->algorithms = options->algorithms;
    checks->audiences = (const char *const *)options->audiences->elts;
    checks->audience_count = (size_t)options->audiences->nelts;
    checks->issuer = options->issuer;
    checks->clock_skew = options->clock_skew;
    checks->now = options->now;
    checks->user_claim = options->user_claim;
    checks->max_token_length = options->max_token_size;
}

static int signature_failed(const char *reason)
{
    const char *const *word;

    for (word = signature_stage_reasons; *word != NULL; word++) {
        if (strcmp(reason, *word) == 0) {
            return 1;
        }
    }
    return 0;
}

static int find_key_by_kid(const teleport_keyset *keys, const char *kid,
                           teleport_key_info *info)
{
    size_t i;

    for (i = 0; teleport_keyset_key_info(keys, i, info); i++) {
        if (strcmp(info->kid, kid) == 0) {
            return 1;
        }
    }
    return 0;
}

/*
 * Name the key that verified a token rejected for its claims.  The
 * verifier reports the key only for a valid token, so the token is
 * verified once more without the audience, issuer, user and date checks.
 * When that still fails (a payload that is not JSON, "exp" missing or not
 * a number), the header's "kid" names the key.
 */
static void identify_key(const char *token, size_t length,
                         const teleport_keyset *keys,
                         const teleport_checks *checks, json_t *header,
                         verdict *result)
{
    teleport_checks relaxed = *checks;
    teleport_token *verified = NULL;
    teleport_error ignored;
    const char *kid;

    relaxed.audiences = NULL;
    relaxed.audience_count = 0;
    relaxed.issuer = NULL;
    relaxed.user_claim = NULL;
    relaxed.clock_skew = KEY_SEARCH_CLOCK_SKEW;
    if (teleport_jwt_verify(token, length, keys, &relaxed, &verified,
                            &ignored) == TELEPORT_VERIFY_OK) {
        result->key_known = teleport_keyset_key_info(
            keys, (size_t)verified->key_index, &result->key);
        teleport_token_free(verified);
        return;
    }
    kid = json_string_value(json_object_get(header, "kid"));
    if (kid != NULL && kid[0] != '\0') {
        result->key_known = find_key_by_kid(keys, kid, &result->key);
    }
}

static void verify(const char *token, size_t length,
                   const teleport_keyset *keys, const teleport_checks *checks,
                   json_t *header, verdict *result)
{
    memset(result, 0, sizeof(*result));
    result->status = teleport_jwt_verify(token, length, keys, checks,
                                         &result->token, &result->error);
    if (result->status == TELEPORT_VERIFY_OK) {
        result->signature_verified = 1;
        result->key_known = teleport_keyset_key_info(
            keys, (size_t)result->token->key_index, &result->key);
        return;
    }
    if (!signature_failed(result->error.reason)) {
        result->signature_verified = 1;
        identify_key(token, length, keys, checks, header, result);
    }
}

/* ---- report ------------------------------------------------------------- */

static void print_keys(const teleport_keyset *keys, const char *source)
{
    char kid[ESCAPED_KID_SIZE];
    teleport_key_info info;
    size_t i;

    printf("keys: %zu usable from %s\n", teleport_keyset_count(keys), source);
    for (i = 0; teleport_keyset_key_info(keys, i, &info); i++) {
        teleport_escape(kid, sizeof(kid), info.kid, strlen(info.kid));
        printf("  kid=\"%s\" kty=%s bits=%d\n", kid, info.kty, info.bits);
    }
}

/* Print value as indented JSON.  Non-ASCII characters are written as \u
 * escapes, so that bidirectional controls in a claim cannot reorder what
 * the terminal shows. */
static void print_json(const char *label, json_t *value, const char *problem)
{
    char *text;

    if (value == NULL) {
        printf("%s: not shown: %s\n", label, problem);
        return;
    }
    text = json_dumps(value, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    if (text == NULL) {
        printf("%s: not shown: out of memory\n", label);
        return;
    }
    printf("%s:\n%s\n", label, text);
    free(text);
}

/* Format seconds since the epoch as an RFC 3339 UTC date. */
static const char *format_time(apr_pool_t *p, long long seconds)
{
    apr_time_exp_t date;

    if (seconds < 0 || seconds > MAX_SHOWN_TIME
        || apr_time_exp_gmt(&date, apr_time_from_sec(seconds))
           != APR_SUCCESS) {
        return "(out of range)";
    }
    return apr_psprintf(p, "%04d-%02d-%02dT%02d:%02d:%02dZ",
                        date.tm_year + 1900, date.tm_mon + 1, date.tm_mday,
                        date.tm_hour, date.tm_min, date.tm_sec);
}

static void print_date(apr_pool_t *p, json_t *claims, const char *name,
                       long long now)
{
    json_t *value = json_object_get(claims, name);
    double seconds;
    long long whole;

    if (value == NULL) {
        if (strcmp(name, "exp") == 0) {
            printf("%s:  missing\n", name);
        }
        return;
    }
    if (!json_is_number(value)) {
        printf("%s:  not a number\n", name);
        return;
    }
    seconds = json_number_value(value);
    if (seconds < -9.2e18 || seconds > 9.2e18) {
        printf("%s:  %g (out of range)\n", name, seconds);
        return;
    }
    whole = (long long)seconds;
    printf("%s:  %lld  %s  now %s %lld s\n", name, whole,
           format_time(p, whole), whole >= now ? "+" : "-",
           whole >= now ? whole - now : now - whole);
}

static void print_dates(apr_pool_t *p, const verify_options *options,
                        json_t *claims)
{
    printf("now:  %lld  %s  (%s)\n", options->now,
           format_time(p, options->now),
           options->now_set ? "--now" : "system clock");
    if (claims != NULL) {
        print_date(p, claims, "iat", options->now);
        print_date(p, claims, "nbf", options->now);
        print_date(p, claims, "exp", options->now);
    }
    printf("clock skew: %lld s\n", options->clock_skew);
}

static void print_signature(const verdict *result)
{
    char kid[ESCAPED_KID_SIZE];

    if (!result->signature_verified) {
        puts("signature: not verified");
        return;
    }
    if (!result->key_known) {
        puts("signature: verified (the token has no kid, and its claims "
             "are too malformed to find the key)");
        return;
    }
    teleport_escape(kid, sizeof(kid), result->key.kid,
                    strlen(result->key.kid));
    printf("signature: verified with key kid=\"%s\" kty=%s bits=%d\n", kid,
           result->key.kty, result->key.bits);
}

static int print_verdict(const verdict *result)
{
    char user[ESCAPED_USER_SIZE];

    if (result->status != TELEPORT_VERIFY_OK) {
        printf("rejected: reason=%s: %s\n", result->error.reason,
               result->error.detail);
        return VERIFY_EXIT_REJECTED;
    }
    if (result->token->user != NULL) {
        teleport_escape(user, sizeof(user), result->token->user,
                        strlen(result->token->user));
        printf("user: %s\n", user);
    }
    puts("valid");
    return VERIFY_EXIT_VALID;
}

int verify_report(apr_pool_t *p, const verify_options *options,
                  const teleport_keyset *keys, const char *source,
                  const char *token, apr_size_t length)
{
    teleport_checks checks;
    decoded_token decoded;
    verdict result;
    int status;

    fill_checks(options, &checks);
    decode_token(token, length, &decoded);
    verify(token, length, keys, &checks, decoded.header, &result);

    print_keys(keys, source);
    printf("token: %zu bytes\n", (size_t)length);
    print_json(result.signature_verified ? "header" : "header (unverified)",
               decoded.header, decoded.header_problem);
    print_json(result.signature_verified ? "claims" : "claims (unverified)",
               decoded.claims, decoded.claims_problem);
    print_dates(p, options, decoded.claims);
    print_signature(&result);
    status = print_verdict(&result);

    teleport_token_free(result.token);
    json_decref(decoded.header);
    json_decref(decoded.claims);
    return status;
}
