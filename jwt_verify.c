/*
 * JWS compact-serialisation verifier for Teleport application-access tokens:
 * strict base64url (RFC 4648 section 5), JWK sets (RFC 7517, RFC 8037),
 * JWS signatures (RFC 7515, RFC 7518) and JWT claims (RFC 7519).
 *
 * A parsed key set is never written after teleport_keyset_parse() returns,
 * and this file keeps no static mutable state, so any number of threads may
 * verify against one key set at once.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "jwt_verify.h"

/* Deepest nesting of arrays and objects accepted in a header, payload or
 * JWKS.  Teleport's deepest value (traits) is at depth 3. */
#define JSON_MAX_DEPTH 16

/* Maximum number of JWKS entries read.  Teleport lists each key twice, and
 * two keys while its JWT CA rotates. */
#define JWKS_MAX_ENTRIES 64

/* RSA limits.  Moduli above 8192 bits only cost verification time.
 * OpenSSL 3 rejects public exponents over OPENSSL_RSA_MAX_PUBEXP_BITS (64)
 * for moduli over 3072 bits, and this file applies that to every size. */
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192
#define RSA_MAX_EXPONENT_BITS 64

#define ED25519_KEY_SIZE 32
#define ED25519_SIGNATURE_SIZE 64

/* Maximum characters of one token value copied into error->detail. */
#define DETAIL_VALUE_MAX 64

typedef enum {
    KEY_RSA,
    KEY_EC,
    KEY_OKP
} key_type;

/* One JWS algorithm (RFC 7518 section 3.1, RFC 8037 section 3.1). */
typedef struct {
    const char *name;
    unsigned bit;
    key_type type;
    const char *digest;  /* NULL for EdDSA, which hashes internally */
    int pss;             /* RSASSA-PSS instead of RSASSA-PKCS1-v1_5 */
    size_t coord_size;   /* ECDSA: bytes of r and of s */
} alg_entry;

static const alg_entry algorithms[] = {
    { "RS256", TELEPORT_ALG_RS256, KEY_RSA, "SHA256", 0, 0 },
    { "RS384", TELEPORT_ALG_RS384, KEY_RSA, "SHA384", 0, 0 },
    { "RS512", TELEPORT_ALG_RS512, KEY_RSA, "SHA512", 0, 0 },
    { "PS256", TELEPORT_ALG_PS256, KEY_RSA, "SHA256", 1, 0 },
    { "PS384", TELEPORT_ALG_PS384, KEY_RSA, "SHA384", 1, 0 },
    { "PS512", TELEPORT_ALG_PS512, KEY_RSA, "SHA512", 1, 0 },
    { "ES256", TELEPORT_ALG_ES256, KEY_EC, "SHA256", 0, 32 },
    { "ES384", TELEPORT_ALG_ES384, KEY_EC, "SHA384", 0, 48 },
    { "ES512", TELEPORT_ALG_ES512, KEY_EC, "SHA512", 0, 66 },
    { "EdDSA", TELEPORT_ALG_EDDSA, KEY_OKP, NULL, 0, 0 }
};

#define ALG_COUNT (sizeof(algorithms) / sizeof(algorithms[0]))

#define RSA_ALGS (TELEPORT_ALG_RS256 | TELEPORT_ALG_RS384 | TELEPORT_ALG_RS512 \
                  | TELEPORT_ALG_PS256 | TELEPORT_ALG_PS384                   \
                  | TELEPORT_ALG_PS512)

/* JWK "crv" values for ECDSA (RFC 7518 section 6.2.1.1). */
typedef struct {
    const char *name;
    const char *group;   /* OpenSSL group name */
    size_t size;         /* bytes of one coordinate */
    unsigned alg;
} curve_entry;

static const curve_entry curves[] = {
    { "P-256", "prime256v1", 32, TELEPORT_ALG_ES256 },
    { "P-384", "secp384r1", 48, TELEPORT_ALG_ES384 },
    { "P-521", "secp521r1", 66, TELEPORT_ALG_ES512 }
};

#define CURVE_COUNT (sizeof(curves) / sizeof(curves[0]))
#define EC_COORD_MAX 66

typedef struct {
    EVP_PKEY *pkey;
    char *kid;          /* "" when the JWK has none */
    const char *kty;
    unsigned algs;      /* TELEPORT_ALG_* bits this key may verify */
    int bits;
    int alias;          /* same key material as an earlier entry */
    /* Verification contexts set up with the key, hash and padding, one per
     * algorithm (index in algorithms[]) that the key may verify and that
     * hashes outside the signature.  Each signature uses a copy.  An entry
     * is NULL where preparation failed, and such signatures are verified
     * from the key instead. */
    EVP_PKEY_CTX *prepared[ALG_COUNT];
} keyset_entry;

struct teleport_keyset {
    keyset_entry *keys;
    size_t count;
    /* Hash of each algorithm (index in algorithms[]), fetched once per key
     * set.  OpenSSL 3 looks an implementation up again for every call that
     * names it, and in this module's benchmark profile that lookup cost
     * more than hashing a token. */
    EVP_MD *digests[ALG_COUNT];
};

/* The three segments of a compact JWS (RFC 7515 section 7.1). */
typedef struct {
    const char *header;
    size_t header_len;
    const char *payload;
    size_t payload_len;
    const char *signature;
    size_t signature_len;
    size_t signing_input_len;  /* header '.' payload */
} compact_parts;

/* A NumericDate (RFC 7519 section 2) read from the claims. */
typedef struct {
    int present;
    double value;
    int integer;        /* a JSON integer rather than a real */
    long long whole;    /* value truncated toward zero, clamped */
} numeric_date;

/* Reason words, documented in jwt_verify.h. */
static const char reason_malformed[] = "malformed";
static const char reason_bad_header[] = "bad_header";
static const char reason_alg_not_allowed[] = "alg_not_allowed";
static const char reason_unknown_kid[] = "unknown_kid";
static const char reason_key_mismatch[] = "key_mismatch";
static const char reason_bad_signature[] = "bad_signature";
static const char reason_bad_payload[] = "bad_payload";
static const char reason_bad_claim[] = "bad_claim";
static const char reason_missing_exp[] = "missing_exp";
static const char reason_expired[] = "expired";
static const char reason_not_yet_valid[] = "not_yet_valid";
static const char reason_issued_in_future[] = "issued_in_future";
static const char reason_bad_audience[] = "bad_audience";
static const char reason_bad_issuer[] = "bad_issuer";
static const char reason_missing_user[] = "missing_user";
static const char reason_bad_user[] = "bad_user";
static const char reason_bad_jwks[] = "bad_jwks";
static const char reason_no_usable_keys[] = "no_usable_keys";

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

static void set_error(teleport_error *error, const char *reason,
                      const char *format, ...) PRINTF_LIKE(3, 4);

static void set_error(teleport_error *error, const char *reason,
                      const char *format, ...)
{
    va_list args;

    error->reason = reason;
    va_start(args, format);
    vsnprintf(error->detail, sizeof(error->detail), format, args);
    va_end(args);
}

static void clear_error(teleport_error *error)
{
    error->reason = NULL;
    error->detail[0] = '\0';
    error->kid[0] = '\0';
}

void teleport_escape(char *out, size_t size, const char *in, size_t len)
{
    size_t used = 0;
    size_t i;

    if (size < 4) {
        if (size > 0) {
            out[0] = '\0';
        }
        return;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        int plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\'
                    && c != '%';
        size_t piece = plain ? 1 : 3;

        if (used + piece > size - 4) {
            memcpy(out + used, "...", 3);
            used += 3;
            break;
        }
        if (plain) {
            out[used] = (char)c;
        }
        else {
            snprintf(out + used, 4, "%%%02X", c);
        }
        used += piece;
    }
    out[used] = '\0';
}

/* Escape a value from a token for a detail message, capped at
 * DETAIL_VALUE_MAX bytes plus "..." so that one value cannot fill it. */
static void escape_value(char *out, size_t size, const char *in, size_t len)
{
    size_t limit = size < DETAIL_VALUE_MAX + 4 ? size : DETAIL_VALUE_MAX + 4;

    teleport_escape(out, limit, in, len);
}

/* Escape a JSON string value for a detail message. */
static void escape_json_string(char *out, size_t size, json_t *value)
{
    escape_value(out, size, json_string_value(value),
                 json_string_length(value));
}

static char *copy_string(const char *text, size_t len)
{
    char *copy = malloc(len + 1);

    if (copy == NULL) {
        return NULL;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    return copy;
}

/* Compare a JSON string with a C string, embedded NULs included. */
static int string_equals(json_t *value, const char *expected)
{
    size_t len = strlen(expected);

    return json_is_string(value) && json_string_length(value) == len
           && memcmp(json_string_value(value), expected, len) == 0;
}

/* ---- base64url ---------------------------------------------------------- */

/* Value of each byte in the base64url alphabet (RFC 4648 section 5, table
 * 2), -1 for bytes outside it.  A table keeps the check of every token
 * character free of branches. */
static const signed char base64url_values[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
    -1,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, 63,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1
};

/*
 * Return 1 when in[0..len) is strict base64url: only the RFC 4648 section 5
 * alphabet, no padding, no length that leaves 6 bits over, and zero in the
 * unused low bits of the last character (RFC 4648 section 3.5).
 */
static int is_base64url(const char *in, size_t len)
{
    const unsigned char *bytes = (const unsigned char *)in;
    int invalid = 0;
    int last = 0;
    size_t i;

    if (len % 4 == 1) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        invalid |= base64url_values[bytes[i]];
    }
    /* Every valid value is 0-63, so only a -1 sets the sign bit. */
    if (invalid < 0) {
        return 0;
    }
    if (len > 0) {
        last = base64url_values[bytes[len - 1]];
    }
    if (len % 4 == 2 && (last & 0x0f) != 0) {
        return 0;
    }
    if (len % 4 == 3 && (last & 0x03) != 0) {
        return 0;
    }
    return 1;
}

unsigned char *teleport_base64url_decode(const char *in, size_t in_len,
                                         size_t *out_len)
{
    size_t padding = (4 - in_len % 4) % 4;
    size_t padded_len = in_len + padding;
    /* Teleport's segments fit here; a larger one costs a malloc. */
    unsigned char local[1024];
    unsigned char *standard;
    unsigned char *out;
    size_t i;
    int decoded;

    if (in == NULL || out_len == NULL || in_len > INT_MAX - 4
        || !is_base64url(in, in_len)) {
        return NULL;
    }

    /* Translate to the standard alphabet and pad, for EVP_DecodeBlock. */
    standard = padded_len < sizeof(local) ? local : malloc(padded_len + 1);
    out = malloc(padded_len / 4 * 3 + 1);
    if (standard == NULL || out == NULL) {
        if (standard != local) {
            free(standard);
        }
        free(out);
        return NULL;
    }
    for (i = 0; i < in_len; i++) {
        standard[i] = (unsigned char)in[i];
        if (in[i] == '-') {
            standard[i] = '+';
        }
        else if (in[i] == '_') {
            standard[i] = '/';
        }
    }
    memset(standard + in_len, '=', padding);
    standard[padded_len] = '\0';

    /* EVP_DecodeBlock counts the bytes that the padding stands for. */
    decoded = EVP_DecodeBlock(out, standard, (int)padded_len);
    if (standard != local) {
        free(standard);
    }
    if (decoded < 0 || (size_t)decoded < padding) {
        free(out);
        return NULL;
    }
    *out_len = (size_t)decoded - padding;
    out[*out_len] = '\0';
    return out;
}

/* ---- JSON --------------------------------------------------------------- */

/* Return 1 when no array or object in text nests deeper than
 * JSON_MAX_DEPTH.  This runs before jansson, so deep input never reaches
 * its recursive parser. */
static int depth_within_limit(const char *text, size_t len)
{
    size_t depth = 0;
    int in_string = 0;
    size_t i;

    for (i = 0; i < len; i++) {
        char c = text[i];

        if (in_string) {
            if (c == '\\') {
                i++;
            }
            else if (c == '"') {
                in_string = 0;
            }
        }
        else if (c == '"') {
            in_string = 1;
        }
        else if (c == '[' || c == '{') {
            if (++depth > JSON_MAX_DEPTH) {
                return 0;
            }
        }
        else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return 1;
}

/*
 * Parse text as one JSON object, rejecting duplicate member names and deep
 * nesting.  Return the object, or NULL with a phrase in problem.
 */
static json_t *load_object(const char *text, size_t len, char *problem,
                           size_t problem_size)
{
    json_error_t json_error;
    char shown[DETAIL_VALUE_MAX + 4];
    json_t *value;

    if (!depth_within_limit(text, len)) {
        snprintf(problem, problem_size, "JSON nested deeper than %d levels",
                 JSON_MAX_DEPTH);
        return NULL;
    }
    value = json_loadb(text, len, JSON_REJECT_DUPLICATES, &json_error);
    if (value == NULL) {
        /* jansson quotes the text near the error, so escape it. */
        escape_value(shown, sizeof(shown), json_error.text,
                     strlen(json_error.text));
        snprintf(problem, problem_size, "invalid JSON at byte %d: %s",
                 json_error.position, shown);
        return NULL;
    }
    if (!json_is_object(value)) {
        snprintf(problem, problem_size, "JSON value is not an object");
        json_decref(value);
        return NULL;
    }
    return value;
}

/* ---- algorithms --------------------------------------------------------- */

unsigned teleport_alg_from_name(const char *name)
{
    size_t i;

    if (name == NULL) {
        return 0;
    }
    /* "alg" values are case-sensitive (RFC 7515 section 4.1.1). */
    for (i = 0; i < ALG_COUNT; i++) {
        if (strcmp(algorithms[i].name, name) == 0) {
            return algorithms[i].bit;
        }
    }
    return 0;
}

const char *teleport_alg_name(unsigned alg)
{
    size_t i;

    for (i = 0; i < ALG_COUNT; i++) {
        if (algorithms[i].bit == alg) {
            return algorithms[i].name;
        }
    }
    return NULL;
}

static const alg_entry *find_alg(unsigned bit)
{
    size_t i;

    for (i = 0; i < ALG_COUNT; i++) {
        if (algorithms[i].bit == bit) {
            return &algorithms[i];
        }
    }
    return NULL;
}

/* ---- JWK set ------------------------------------------------------------ */

static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM_BLD *builder)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(builder);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;

    if (params != NULL && ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1) {
        if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params)
            != 1) {
            pkey = NULL;
        }
    }
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

/* Decode a base64url string member of a JWK; NULL when absent, not a
 * string, not strict base64url or empty. */
static unsigned char *decode_member(json_t *jwk, const char *name,
                                    size_t *len)
{
    json_t *value = json_object_get(jwk, name);
    unsigned char *bytes;

    if (!json_is_string(value)) {
        return NULL;
    }
    bytes = teleport_base64url_decode(json_string_value(value),
                                      json_string_length(value), len);
    if (bytes != NULL && *len == 0) {
        free(bytes);
        return NULL;
    }
    return bytes;
}

static int check_rsa_numbers(const BIGNUM *n, const BIGNUM *e, char *problem,
                             size_t problem_size)
{
    int bits = BN_num_bits(n);

    if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) {
        snprintf(problem, problem_size,
                 "RSA modulus of %d bits is outside %d-%d",
                 bits, RSA_MIN_BITS, RSA_MAX_BITS);
        return 0;
    }
    if (!BN_is_odd(e) || BN_num_bits(e) < 2
        || BN_num_bits(e) > RSA_MAX_EXPONENT_BITS) {
        snprintf(problem, problem_size,
                 "RSA exponent is even, below 3 or above %d bits",
                 RSA_MAX_EXPONENT_BITS);
        return 0;
    }
    return 1;
}

static EVP_PKEY *build_rsa(json_t *jwk, char *problem, size_t problem_size)
{
    size_t n_len = 0, e_len = 0;
    unsigned char *n_bytes = decode_member(jwk, "n", &n_len);
    unsigned char *e_bytes = decode_member(jwk, "e", &e_len);
    BIGNUM *n = NULL, *e = NULL;
    OSSL_PARAM_BLD *builder = NULL;
    EVP_PKEY *pkey = NULL;

    if (n_bytes == NULL || e_bytes == NULL) {
        snprintf(problem, problem_size,
                 "RSA \"n\" or \"e\" missing or not strict base64url");
        goto done;
    }
    n = BN_bin2bn(n_bytes, (int)n_len, NULL);
    e = BN_bin2bn(e_bytes, (int)e_len, NULL);
    builder = OSSL_PARAM_BLD_new();
    if (n == NULL || e == NULL || builder == NULL) {
        snprintf(problem, problem_size, "out of memory");
        goto done;
    }
    if (!check_rsa_numbers(n, e, problem, problem_size)) {
        goto done;
    }
    if (OSSL_PARAM_BLD_push_BN(builder, OSSL_PKEY_PARAM_RSA_N, n) == 1
        && OSSL_PARAM_BLD_push_BN(builder, OSSL_PKEY_PARAM_RSA_E, e) == 1) {
        pkey = pkey_from_params("RSA", builder);
    }
    if (pkey == NULL) {
        snprintf(problem, problem_size, "OpenSSL rejected the RSA key");
    }

done:
    OSSL_PARAM_BLD_free(builder);
    BN_free(n);
    BN_free(e);
    free(n_bytes);
    free(e_bytes);
    return pkey;
}

/* Return 1 when OpenSSL's full public-key check passes.  EVP_PKEY_fromdata
 * of OpenSSL 3 already rejects points off the curve; this keeps the check
 * explicit. */
static int check_public_key(EVP_PKEY *pkey)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    int ok = ctx != NULL && EVP_PKEY_public_check(ctx) == 1;

    EVP_PKEY_CTX_free(ctx);
    return ok;
}

/*
 * Build an EC public key from "x" and "y".  Teleport does not left-pad the
 * coordinates, so shorter values are padded with zeros here.
 */
static EVP_PKEY *build_ec(json_t *jwk, const curve_entry *curve, char *problem,
                          size_t problem_size)
{
    size_t x_len = 0, y_len = 0;
    unsigned char *x = decode_member(jwk, "x", &x_len);
    unsigned char *y = decode_member(jwk, "y", &y_len);
    unsigned char point[1 + 2 * EC_COORD_MAX];
    size_t point_len = 1 + 2 * curve->size;
    OSSL_PARAM_BLD *builder = NULL;
    EVP_PKEY *pkey = NULL;

    if (x == NULL || y == NULL || x_len > curve->size
        || y_len > curve->size) {
        snprintf(problem, problem_size,
                 "EC \"x\" or \"y\" missing, not strict base64url or "
                 "longer than %zu bytes", curve->size);
        goto done;
    }

    /* Uncompressed point (SEC 1 section 2.3.3): 0x04 || X || Y. */
    memset(point, 0, sizeof(point));
    point[0] = 0x04;
    memcpy(point + 1 + curve->size - x_len, x, x_len);
    memcpy(point + 1 + 2 * curve->size - y_len, y, y_len);

    builder = OSSL_PARAM_BLD_new();
    if (builder != NULL
        && OSSL_PARAM_BLD_push_utf8_string(builder, OSSL_PKEY_PARAM_GROUP_NAME,
                                           curve->group, 0) == 1
        && OSSL_PARAM_BLD_push_octet_string(builder, OSSL_PKEY_PARAM_PUB_KEY,
                                            point, point_len) == 1) {
        pkey = pkey_from_params("EC", builder);
    }
    if (pkey != NULL && !check_public_key(pkey)) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    if (pkey == NULL) {
        snprintf(problem, problem_size,
                 "EC point is not on curve %s", curve->name);
    }

done:
    OSSL_PARAM_BLD_free(builder);
    free(x);
    free(y);
    return pkey;
}

static EVP_PKEY *build_okp(json_t *jwk, char *problem, size_t problem_size)
{
    size_t x_len = 0;
    unsigned char *x;
    EVP_PKEY *pkey = NULL;

    /* Of the OKP curves of RFC 8037 section 2, only Ed25519 is accepted. */
    if (!string_equals(json_object_get(jwk, "crv"), "Ed25519")) {
        snprintf(problem, problem_size, "OKP \"crv\" is not Ed25519");
        return NULL;
    }
    x = decode_member(jwk, "x", &x_len);
    if (x == NULL || x_len != ED25519_KEY_SIZE) {
        snprintf(problem, problem_size,
                 "Ed25519 \"x\" is not %d bytes of strict base64url",
                 ED25519_KEY_SIZE);
        free(x);
        return NULL;
    }
    pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, x_len);
    if (pkey == NULL) {
        snprintf(problem, problem_size, "OpenSSL rejected the Ed25519 key");
    }
    free(x);
    return pkey;
}

static const curve_entry *find_curve(json_t *crv)
{
    size_t i;

    for (i = 0; i < CURVE_COUNT; i++) {
        if (string_equals(crv, curves[i].name)) {
            return &curves[i];
        }
    }
    return NULL;
}

/* Build the key of one JWK by "kty"; set entry->kty and entry->algs. */
static EVP_PKEY *build_key(json_t *jwk, keyset_entry *entry, char *problem,
                           size_t problem_size)
{
    json_t *kty = json_object_get(jwk, "kty");
    const curve_entry *curve;
    char shown[DETAIL_VALUE_MAX + 4];

    if (!json_is_string(kty)) {
        snprintf(problem, problem_size, "\"kty\" missing or not a string");
        return NULL;
    }
    if (string_equals(kty, "RSA")) {
        entry->kty = "RSA";
        entry->algs = RSA_ALGS;
        return build_rsa(jwk, problem, problem_size);
    }
    if (string_equals(kty, "EC")) {
        curve = find_curve(json_object_get(jwk, "crv"));
        if (curve == NULL) {
            snprintf(problem, problem_size,
                     "EC \"crv\" missing or not supported");
            return NULL;
        }
        entry->kty = "EC";
        entry->algs = curve->alg;
        return build_ec(jwk, curve, problem, problem_size);
    }
    if (string_equals(kty, "OKP")) {
        entry->kty = "OKP";
        entry->algs = TELEPORT_ALG_EDDSA;
        return build_okp(jwk, problem, problem_size);
    }
    escape_json_string(shown, sizeof(shown), kty);
    snprintf(problem, problem_size, "\"kty\" \"%s\" is not supported", shown);
    return NULL;
}

/* Check "kid", "use" and "alg" of one JWK, restricting entry->algs. */
static int check_jwk_members(json_t *jwk, keyset_entry *entry, char *problem,
                             size_t problem_size)
{
    json_t *kid = json_object_get(jwk, "kid");
    json_t *use = json_object_get(jwk, "use");
    json_t *alg = json_object_get(jwk, "alg");
    unsigned alg_bit;

    if (kid != NULL && (!json_is_string(kid)
                        || strlen(json_string_value(kid))
                           != json_string_length(kid))) {
        snprintf(problem, problem_size,
                 "\"kid\" is not a string without NUL bytes");
        return 0;
    }
    if (use != NULL && !string_equals(use, "sig")) {
        snprintf(problem, problem_size, "\"use\" is not \"sig\"");
        return 0;
    }
    if (alg == NULL) {
        return 1;
    }
    alg_bit = json_is_string(alg)
              ? teleport_alg_from_name(json_string_value(alg)) : 0;
    if (alg_bit == 0 || !string_equals(alg, teleport_alg_name(alg_bit))) {
        snprintf(problem, problem_size, "\"alg\" is not a supported algorithm");
        return 0;
    }
    if ((entry->algs & alg_bit) == 0) {
        snprintf(problem, problem_size, "\"alg\" %s does not fit \"kty\" %s",
                 teleport_alg_name(alg_bit), entry->kty);
        return 0;
    }

    /* RFC 7517 section 4.4: the key is meant for this algorithm only. */
    entry->algs = alg_bit;
    return 1;
}

/* Turn one JWK into entry; return 0 with a phrase in problem to skip it. */
static int parse_jwk(json_t *jwk, keyset_entry *entry, char *problem,
                     size_t problem_size)
{
    json_t *kid;

    memset(entry, 0, sizeof(*entry));
    if (!json_is_object(jwk)) {
        snprintf(problem, problem_size, "not a JSON object");
        return 0;
    }
    if (string_equals(json_object_get(jwk, "kty"), "oct")) {
        snprintf(problem, problem_size,
                 "symmetric (\"oct\") keys are never used");
        return 0;
    }
    entry->pkey = build_key(jwk, entry, problem, problem_size);
    if (entry->pkey == NULL) {
        return 0;
    }
    if (!check_jwk_members(jwk, entry, problem, problem_size)) {
        EVP_PKEY_free(entry->pkey);
        entry->pkey = NULL;
        return 0;
    }

    kid = json_object_get(jwk, "kid");
    entry->kid = copy_string(kid ? json_string_value(kid) : "",
                             kid ? json_string_length(kid) : 0);
    entry->bits = EVP_PKEY_get_bits(entry->pkey);
    if (entry->kid == NULL) {
        snprintf(problem, problem_size, "out of memory");
        EVP_PKEY_free(entry->pkey);
        entry->pkey = NULL;
        return 0;
    }
    return 1;
}

static keyset_entry *find_kid(const teleport_keyset *keys, const char *kid)
{
    size_t i;

    for (i = 0; i < keys->count; i++) {
        if (strcmp(keys->keys[i].kid, kid) == 0) {
            return &keys->keys[i];
        }
    }
    return NULL;
}

static keyset_entry *find_same_key(const teleport_keyset *keys,
                                   const EVP_PKEY *pkey)
{
    size_t i;

    for (i = 0; i < keys->count; i++) {
        if (!keys->keys[i].alias
            && EVP_PKEY_eq(keys->keys[i].pkey, pkey) == 1) {
            return &keys->keys[i];
        }
    }
    return NULL;
}

static void free_entry(keyset_entry *entry)
{
    size_t i;

    for (i = 0; i < ALG_COUNT; i++) {
        EVP_PKEY_CTX_free(entry->prepared[i]);
    }
    EVP_PKEY_free(entry->pkey);
    free(entry->kid);
}

typedef enum {
    ENTRY_ADDED,
    ENTRY_FOLDED,
    ENTRY_SKIPPED
} entry_outcome;

/*
 * Add a parsed entry to keys, taking ownership of it.  Since 2024 Teleport
 * lists each key twice, once with "kid" = base64url(SHA-256 of the DER key)
 * and once with "kid": "".  A repeat of a key already in the set is folded
 * into the earlier entry, so kid-less tokens try each distinct key once,
 * while every non-empty kid stays findable.
 */
static entry_outcome add_entry(teleport_keyset *keys, keyset_entry *entry,
                               char *problem, size_t problem_size)
{
    keyset_entry *same;
    char shown[DETAIL_VALUE_MAX + 4];

    if (entry->kid[0] != '\0') {
        same = find_kid(keys, entry->kid);
        if (same != NULL && EVP_PKEY_eq(same->pkey, entry->pkey) != 1) {
            escape_value(shown, sizeof(shown), entry->kid,
                         strlen(entry->kid));
            snprintf(problem, problem_size,
                     "\"kid\" \"%s\" is already used by a "
                     "different key", shown);
            free_entry(entry);
            return ENTRY_SKIPPED;
        }
        if (same != NULL) {
            free_entry(entry);
            return ENTRY_FOLDED;
        }
    }

    same = find_same_key(keys, entry->pkey);
    if (same != NULL && entry->kid[0] == '\0') {
        free_entry(entry);
        return ENTRY_FOLDED;
    }
    if (same != NULL && same->kid[0] == '\0') {
        /* The earlier listing had no kid: it takes this one. */
        free(same->kid);
        same->kid = entry->kid;
        entry->kid = NULL;
        free_entry(entry);
        return ENTRY_FOLDED;
    }

    /* A second non-empty kid for the same key: findable by that kid, but
     * not tried again for kid-less tokens. */
    entry->alias = same != NULL;
    keys->keys[keys->count++] = *entry;
    return ENTRY_ADDED;
}

static void note_skip(int *skipped, char *first, size_t first_size,
                      size_t index, const char *problem)
{
    if (*skipped == 0) {
        snprintf(first, first_size, "JWKS keys[%zu] skipped: %s", index,
                 problem);
    }
    (*skipped)++;
}

/* Parse the entries of the "keys" array into keys; count the skipped ones
 * and describe the first in first. */
static void add_entries(teleport_keyset *keys, json_t *array, int *skipped,
                        char *first, size_t first_size)
{
    size_t total = json_array_size(array);
    size_t considered = total < JWKS_MAX_ENTRIES ? total : JWKS_MAX_ENTRIES;
    keyset_entry entry;
    char problem[160];
    size_t i;

    for (i = 0; i < considered; i++) {
        json_t *jwk = json_array_get(array, i);

        if (!parse_jwk(jwk, &entry, problem, sizeof(problem))
            || add_entry(keys, &entry, problem, sizeof(problem))
               == ENTRY_SKIPPED) {
            note_skip(skipped, first, first_size, i, problem);
        }
    }
    for (i = considered; i < total; i++) {
        snprintf(problem, sizeof(problem), "only the first %d entries are read",
                 JWKS_MAX_ENTRIES);
        note_skip(skipped, first, first_size, i, problem);
    }
}

static int set_pss_parameters(EVP_PKEY_CTX *ctx, const alg_entry *alg)
{
    /* RFC 7518 section 3.5: MGF1 with the same hash, salt as long as the
     * hash output. */
    return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) > 0
           && EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) > 0
           && EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, alg->digest, NULL) > 0;
}

/* A context that verifies alg signatures over a hash made with md, by
 * pkey; NULL when OpenSSL cannot set one up. */
static EVP_PKEY_CTX *prepare_verify(EVP_PKEY *pkey, const alg_entry *alg,
                                    const EVP_MD *md)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);

    if (ctx != NULL && EVP_PKEY_verify_init(ctx) == 1
        && EVP_PKEY_CTX_set_signature_md(ctx, md) > 0
        && (!alg->pss || set_pss_parameters(ctx, alg))) {
        return ctx;
    }
    EVP_PKEY_CTX_free(ctx);
    return NULL;
}

/*
 * Do once per key set what every signature check would otherwise repeat:
 * fetch the hashes, and set up a verification context for each key and
 * algorithm it may verify.  A failure here only leaves the slower path.
 */
static void prepare_keyset(teleport_keyset *keys)
{
    size_t a;
    size_t i;

    for (a = 0; a < ALG_COUNT; a++) {
        if (algorithms[a].digest != NULL) {
            keys->digests[a] = EVP_MD_fetch(NULL, algorithms[a].digest, NULL);
        }
    }
    for (i = 0; i < keys->count; i++) {
        keyset_entry *entry = &keys->keys[i];

        for (a = 0; a < ALG_COUNT; a++) {
            if ((entry->algs & algorithms[a].bit) != 0
                && keys->digests[a] != NULL) {
                entry->prepared[a] = prepare_verify(entry->pkey,
                                                    &algorithms[a],
                                                    keys->digests[a]);
            }
        }
    }
}

/* Allocate an empty key set with room for JWKS_MAX_ENTRIES keys. */
static teleport_keyset *new_keyset(void)
{
    teleport_keyset *keys = calloc(1, sizeof(*keys));

    if (keys == NULL) {
        return NULL;
    }
    keys->keys = calloc(JWKS_MAX_ENTRIES, sizeof(*keys->keys));
    if (keys->keys == NULL) {
        free(keys);
        return NULL;
    }
    return keys;
}

teleport_keyset *teleport_keyset_parse(const char *json, size_t len,
                                       int *skipped, char *skip_detail,
                                       size_t skip_detail_size,
                                       teleport_error *error)
{
    teleport_error unused;
    teleport_keyset *keys;
    json_t *document;
    json_t *array;
    int skip_count = 0;
    char problem[160];
    char first_skip[256] = "";

    error = error != NULL ? error : &unused;
    clear_error(error);
    if (skip_detail != NULL && skip_detail_size > 0) {
        skip_detail[0] = '\0';
    }
    if (skipped != NULL) {
        *skipped = 0;
    }
    if (json == NULL) {
        set_error(error, reason_bad_jwks, "JWKS document is missing");
        return NULL;
    }

    document = load_object(json, len, problem, sizeof(problem));
    if (document == NULL) {
        set_error(error, reason_bad_jwks, "JWKS: %s", problem);
        return NULL;
    }
    array = json_object_get(document, "keys");
    if (!json_is_array(array)) {
        set_error(error, reason_bad_jwks, "JWKS has no \"keys\" array");
        json_decref(document);
        return NULL;
    }

    keys = new_keyset();
    if (keys == NULL) {
        json_decref(document);
        set_error(error, reason_no_usable_keys, "out of memory");
        return NULL;
    }

    add_entries(keys, array, &skip_count, first_skip, sizeof(first_skip));
    json_decref(document);
    prepare_keyset(keys);
    if (skipped != NULL) {
        *skipped = skip_count;
    }
    if (skip_detail != NULL && skip_detail_size > 0) {
        snprintf(skip_detail, skip_detail_size, "%s", first_skip);
    }
    if (keys->count == 0) {
        teleport_keyset_free(keys);
        set_error(error, reason_no_usable_keys,
                  "JWKS contains no usable key (%s)",
                  skip_count > 0 ? first_skip : "\"keys\" is empty");
        return NULL;
    }
    return keys;
}

void teleport_keyset_free(teleport_keyset *keys)
{
    size_t i;

    if (keys == NULL) {
        return;
    }
    for (i = 0; i < keys->count; i++) {
        free_entry(&keys->keys[i]);
    }
    for (i = 0; i < ALG_COUNT; i++) {
        EVP_MD_free(keys->digests[i]);
    }
    free(keys->keys);
    free(keys);
}

size_t teleport_keyset_count(const teleport_keyset *keys)
{
    return keys != NULL ? keys->count : 0;
}

int teleport_keyset_key_info(const teleport_keyset *keys, size_t index,
                             teleport_key_info *info)
{
    if (keys == NULL || info == NULL || index >= keys->count) {
        return 0;
    }
    info->kid = keys->keys[index].kid;
    info->kty = keys->keys[index].kty;
    info->bits = keys->keys[index].bits;
    return 1;
}

int teleport_keyset_has_kid(const teleport_keyset *keys, const char *kid)
{
    if (keys == NULL || kid == NULL || kid[0] == '\0') {
        return 0;
    }
    return find_kid(keys, kid) != NULL;
}

/* ---- signature ---------------------------------------------------------- */

/*
 * Convert a JWS ECDSA signature, r || s with each left-padded to coord_size
 * bytes (RFC 7518 section 3.4), to the DER form that OpenSSL verifies.
 */
static unsigned char *ecdsa_raw_to_der(const unsigned char *raw,
                                       size_t coord_size, size_t *der_len)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)coord_size, NULL);
    BIGNUM *s = BN_bin2bn(raw + coord_size, (int)coord_size, NULL);
    unsigned char *der = NULL;
    unsigned char *cursor;
    int len;

    if (sig == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(sig, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(sig);
        return NULL;
    }

    /* sig owns r and s from here. */
    len = i2d_ECDSA_SIG(sig, NULL);
    if (len > 0) {
        der = malloc((size_t)len);
    }
    cursor = der;
    if (der != NULL && i2d_ECDSA_SIG(sig, &cursor) == len) {
        *der_len = (size_t)len;
    }
    else {
        free(der);
        der = NULL;
    }
    ECDSA_SIG_free(sig);
    return der;
}

/* A token and the parts of it that choosing and checking a key needs. */
typedef struct {
    const alg_entry *alg;
    const char *kid;
    const unsigned char *input;
    size_t input_len;
    const unsigned char *sig;
    size_t sig_len;
    /* The signing input hashed with the key set's prefetched hash for alg;
     * hash_len 0 when there is none (EdDSA, or the fetch failed). */
    unsigned char hash[EVP_MAX_MD_SIZE];
    unsigned int hash_len;
} signed_token;

/* Verify with a copy of the context prepared for the key and algorithm.
 * An EVP_PKEY_CTX must not be used by two threads at once, and copying
 * one skips the provider lookups that initialising a new one makes.
 * Threads copy the shared context concurrently: in OpenSSL 3.0,
 * EVP_PKEY_CTX_dup only reads its source and takes references atomically,
 * and the default provider's RSA and ECDSA dupctx copy without writing
 * it.  OpenSSL does not promise this for every provider. */
static int verify_prepared(EVP_PKEY_CTX *prepared,
                           const signed_token *signed_input,
                           const unsigned char *sig, size_t sig_len)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_dup(prepared);
    int valid;

    if (ctx == NULL) {
        return 0;
    }
    valid = EVP_PKEY_verify(ctx, sig, sig_len, signed_input->hash,
                            signed_input->hash_len) == 1;
    EVP_PKEY_CTX_free(ctx);
    return valid;
}

/* Verify from the key itself: EdDSA, which hashes inside the signature,
 * and keys whose context could not be prepared. */
static int verify_from_key(const alg_entry *alg, EVP_PKEY *pkey,
                           const signed_token *signed_input,
                           const unsigned char *sig, size_t sig_len)
{
    EVP_MD_CTX *md_ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pkey_ctx = NULL;
    int valid = 0;

    if (md_ctx != NULL
        && EVP_DigestVerifyInit_ex(md_ctx, &pkey_ctx, alg->digest, NULL, NULL,
                                   pkey, NULL) == 1
        && (!alg->pss || set_pss_parameters(pkey_ctx, alg))) {
        valid = EVP_DigestVerify(md_ctx, sig, sig_len, signed_input->input,
                                 signed_input->input_len) == 1;
    }
    EVP_MD_CTX_free(md_ctx);
    return valid;
}

/* Return 1 when the token's signature is valid for entry's key. */
static int verify_signature(const keyset_entry *entry,
                            const signed_token *signed_input)
{
    const alg_entry *alg = signed_input->alg;
    EVP_PKEY_CTX *prepared = entry->prepared[alg - algorithms];
    const unsigned char *sig = signed_input->sig;
    size_t sig_len = signed_input->sig_len;
    unsigned char *der = NULL;
    int valid;

    /* RSASSA signatures are exactly as long as the modulus (RFC 8017
     * sections 8.1.2 and 8.2.2). */
    if (alg->type == KEY_RSA
        && sig_len != (size_t)EVP_PKEY_get_size(entry->pkey)) {
        return 0;
    }
    if (alg->type == KEY_EC) {
        der = ecdsa_raw_to_der(sig, alg->coord_size, &sig_len);
        if (der == NULL) {
            return 0;
        }
        sig = der;
    }
    if (prepared != NULL && signed_input->hash_len > 0) {
        valid = verify_prepared(prepared, signed_input, sig, sig_len);
    }
    else {
        valid = verify_from_key(alg, entry->pkey, signed_input, sig, sig_len);
    }
    free(der);
    return valid;
}

/* Return the signature length alg fixes, or 0 when it depends on the key. */
static size_t fixed_signature_length(const alg_entry *alg)
{
    if (alg->type == KEY_EC) {
        return 2 * alg->coord_size;
    }
    if (alg->type == KEY_OKP) {
        return ED25519_SIGNATURE_SIZE;
    }
    return 0;
}

static teleport_verify_status verify_by_kid(const teleport_keyset *keys,
                                            const signed_token *signed_input,
                                            int *key_index,
                                            teleport_error *error)
{
    const keyset_entry *entry = find_kid(keys, signed_input->kid);

    if (entry == NULL) {
        set_error(error, reason_unknown_kid, "kid \"%s\" is not in the key "
                  "set", error->kid);
        return TELEPORT_VERIFY_KEY_NOT_FOUND;
    }
    if ((entry->algs & signed_input->alg->bit) == 0) {
        set_error(error, reason_key_mismatch, "key \"%s\" (%s, %d bits) "
                  "cannot verify %s", error->kid, entry->kty, entry->bits,
                  signed_input->alg->name);
        return TELEPORT_VERIFY_INVALID;
    }
    if (!verify_signature(entry, signed_input)) {
        set_error(error, reason_bad_signature, "%s signature does not "
                  "verify with key \"%s\"", signed_input->alg->name,
                  error->kid);
        return TELEPORT_VERIFY_INVALID;
    }
    *key_index = (int)(entry - keys->keys);
    return TELEPORT_VERIFY_OK;
}

/*
 * Tokens of Teleport before v15.4.20, v16.4.3 and v17.0.0 carry no "kid":
 * try each distinct key that fits the algorithm, at most
 * TELEPORT_KIDLESS_MAX_TRIES of them.
 */
static teleport_verify_status verify_without_kid(
    const teleport_keyset *keys, const signed_token *signed_input,
    int *key_index, teleport_error *error)
{
    size_t tries = 0;
    size_t i;

    for (i = 0; i < keys->count && tries < TELEPORT_KIDLESS_MAX_TRIES; i++) {
        const keyset_entry *entry = &keys->keys[i];

        if (entry->alias || (entry->algs & signed_input->alg->bit) == 0) {
            continue;
        }
        tries++;
        if (verify_signature(entry, signed_input)) {
            *key_index = (int)i;
            return TELEPORT_VERIFY_OK;
        }
    }
    if (tries == 0) {
        set_error(error, reason_key_mismatch, "token has no kid and the key "
                  "set has no key for %s", signed_input->alg->name);
    }
    else {
        set_error(error, reason_bad_signature, "token has no kid and none "
                  "of %zu %s keys verifies it", tries,
                  signed_input->alg->name);
    }
    return TELEPORT_VERIFY_KEY_NOT_FOUND;
}

/* ---- compact serialisation and header ----------------------------------- */

/*
 * Split a compact JWS into its three segments and check their syntax.  An
 * empty signature segment passes here: it is rejected after "alg", so that
 * an unsecured JWS (RFC 7515 appendix A.5) is reported as alg_not_allowed.
 */
static int split_compact(const char *compact, size_t len, size_t max_len,
                         compact_parts *parts, teleport_error *error)
{
    const char *first_dot;
    const char *second_dot;
    size_t dots = 0;
    size_t i;

    if (len > max_len) {
        set_error(error, reason_malformed, "token of %zu bytes exceeds the "
                  "maximum of %zu", len, max_len);
        return 0;
    }
    for (i = 0; i < len; i++) {
        dots += compact[i] == '.';
    }
    if (dots != 2) {
        set_error(error, reason_malformed, "token has %zu segments, "
                  "expected 3", dots + 1);
        return 0;
    }

    first_dot = memchr(compact, '.', len);
    second_dot = memchr(first_dot + 1, '.', len - (size_t)(first_dot + 1
                                                           - compact));
    parts->header = compact;
    parts->header_len = (size_t)(first_dot - compact);
    parts->payload = first_dot + 1;
    parts->payload_len = (size_t)(second_dot - parts->payload);
    parts->signature = second_dot + 1;
    parts->signature_len = len - (size_t)(parts->signature - compact);
    parts->signing_input_len = (size_t)(second_dot - compact);

    if (parts->header_len == 0 || parts->payload_len == 0) {
        set_error(error, reason_malformed, "header or payload segment is "
                  "empty");
        return 0;
    }
    if (!is_base64url(parts->header, parts->header_len)
        || !is_base64url(parts->payload, parts->payload_len)
        || !is_base64url(parts->signature, parts->signature_len)) {
        set_error(error, reason_malformed, "a segment is not strict "
                  "base64url");
        return 0;
    }
    return 1;
}

/* Decode a segment and parse it as a JSON object; NULL with problem filled. */
static json_t *decode_object(const char *segment, size_t len, char *problem,
                             size_t problem_size)
{
    size_t decoded_len = 0;
    unsigned char *decoded = teleport_base64url_decode(segment, len,
                                                       &decoded_len);
    json_t *object;

    if (decoded == NULL) {
        snprintf(problem, problem_size, "segment does not decode");
        return NULL;
    }
    object = load_object((const char *)decoded, decoded_len, problem,
                         problem_size);
    free(decoded);
    return object;
}

/* Read "kid" into error->kid as soon as the header is parsed; return 0 when
 * it is present but not a string without NUL bytes. */
static int read_kid(json_t *header, const char **kid, teleport_error *error)
{
    json_t *value = json_object_get(header, "kid");

    *kid = "";
    if (value == NULL) {
        return 1;
    }
    if (!json_is_string(value)) {
        set_error(error, reason_bad_header, "header \"kid\" is not a string");
        return 0;
    }
    escape_json_string(error->kid, sizeof(error->kid), value);
    if (strlen(json_string_value(value)) != json_string_length(value)) {
        set_error(error, reason_bad_header, "header \"kid\" contains a NUL "
                  "byte");
        return 0;
    }
    *kid = json_string_value(value);
    return 1;
}

/*
 * Parse the protected header and check "alg" against the allow-list.
 * "jwk", "jku", "x5u" and "x5c" are ignored: keys come from the key set
 * only.  Return the header, or NULL with error filled.
 */
static json_t *read_header(const compact_parts *parts, unsigned allowed,
                           const alg_entry **alg, const char **kid,
                           teleport_error *error)
{
    char problem[160];
    char shown[DETAIL_VALUE_MAX + 4];
    json_t *header = decode_object(parts->header, parts->header_len, problem,
                                   sizeof(problem));
    json_t *alg_value;
    unsigned bit;

    if (header == NULL) {
        set_error(error, reason_bad_header, "header: %s", problem);
        return NULL;
    }
    if (!read_kid(header, kid, error)) {
        goto fail;
    }
    alg_value = json_object_get(header, "alg");
    if (!json_is_string(alg_value)) {
        set_error(error, reason_bad_header, "header \"alg\" is missing or "
                  "not a string");
        goto fail;
    }

    /* RFC 7515 section 4.1.11: no extension is understood, so "crit" is
     * rejected; "zip" and "enc" belong to JWE (RFC 7516). */
    if (json_object_get(header, "crit") != NULL
        || json_object_get(header, "zip") != NULL
        || json_object_get(header, "enc") != NULL) {
        set_error(error, reason_bad_header, "header contains \"crit\", "
                  "\"zip\" or \"enc\"");
        goto fail;
    }

    bit = teleport_alg_from_name(json_string_value(alg_value));
    if (bit == 0 || (bit & allowed) == 0
        || !string_equals(alg_value, teleport_alg_name(bit))) {
        escape_json_string(shown, sizeof(shown), alg_value);
        set_error(error, reason_alg_not_allowed, "alg \"%s\" is not allowed",
                  shown);
        goto fail;
    }
    *alg = find_alg(bit);
    return header;

fail:
    json_decref(header);
    return NULL;
}

/* ---- claims ------------------------------------------------------------- */

/* Read a NumericDate claim (RFC 7519 section 2): a JSON number, integer or
 * real, that must be finite. */
static int read_date(json_t *claims, const char *name, numeric_date *date,
                     teleport_error *error)
{
    json_t *value = json_object_get(claims, name);

    memset(date, 0, sizeof(*date));
    if (value == NULL) {
        return 1;
    }
    date->present = 1;
    if (json_is_integer(value)) {
        date->integer = 1;
        date->whole = json_integer_value(value);
        date->value = (double)date->whole;
        return 1;
    }
    if (!json_is_real(value) || !isfinite(json_real_value(value))) {
        set_error(error, reason_bad_claim, "\"%s\" is not a finite JSON "
                  "number", name);
        return 0;
    }
    date->value = json_real_value(value);
    if (date->value >= 9.2e18) {
        date->whole = LLONG_MAX;
    }
    else if (date->value <= -9.2e18) {
        date->whole = LLONG_MIN;
    }
    else {
        date->whole = (long long)date->value;
    }
    return 1;
}

/* Write a date as the token gave it, for an error detail.  Only rejections
 * format dates: an accepted token costs no string work here. */
static const char *date_text(const numeric_date *date, char *out,
                             size_t size)
{
    if (date->integer) {
        snprintf(out, size, "%lld", date->whole);
    }
    else {
        snprintf(out, size, "%.3f", date->value);
    }
    return out;
}

/*
 * Compare exp, nbf and iat with checks->now.  The arithmetic is done in
 * double, which cannot overflow for any JSON number jansson accepts and is
 * exact for integers below 2^53.
 */
static int check_times(const numeric_date *exp, const numeric_date *nbf,
                       const numeric_date *iat, const teleport_checks *checks,
                       teleport_error *error)
{
    double now = (double)checks->now;
    double skew = (double)checks->clock_skew;
    char text[32];

    if (now >= exp->value + skew) {
        set_error(error, reason_expired, "exp %s is not after now %lld "
                  "minus %lld s skew", date_text(exp, text, sizeof(text)),
                  checks->now, checks->clock_skew);
        return 0;
    }
    if (nbf->present && nbf->value - skew > now) {
        set_error(error, reason_not_yet_valid, "nbf %s is after now %lld "
                  "plus %lld s skew", date_text(nbf, text, sizeof(text)),
                  checks->now, checks->clock_skew);
        return 0;
    }
    if (iat->present && iat->value - skew > now) {
        set_error(error, reason_issued_in_future, "iat %s is after now %lld "
                  "plus %lld s skew", date_text(iat, text, sizeof(text)),
                  checks->now, checks->clock_skew);
        return 0;
    }
    return 1;
}

static int check_dates(json_t *claims, const teleport_checks *checks,
                       long long *expires, teleport_error *error)
{
    numeric_date exp, nbf, iat;

    if (!read_date(claims, "exp", &exp, error)
        || !read_date(claims, "nbf", &nbf, error)
        || !read_date(claims, "iat", &iat, error)) {
        return 0;
    }
    if (!exp.present) {
        set_error(error, reason_missing_exp, "token has no \"exp\" claim");
        return 0;
    }
    if (!check_times(&exp, &nbf, &iat, checks, error)) {
        return 0;
    }
    *expires = exp.whole;
    return 1;
}

static int audience_accepted(json_t *value, const teleport_checks *checks)
{
    size_t i;

    for (i = 0; i < checks->audience_count; i++) {
        if (checks->audiences[i] != NULL
            && string_equals(value, checks->audiences[i])) {
            return 1;
        }
    }
    return 0;
}

/* "aud" is a string or an array of strings (RFC 7519 section 4.1.3);
 * Teleport sent an array before v15 and a string since. */
static int check_audience(json_t *claims, const teleport_checks *checks,
                          teleport_error *error)
{
    json_t *aud = json_object_get(claims, "aud");
    char shown[DETAIL_VALUE_MAX + 4];
    json_t *value;
    size_t i;

    if (checks->audience_count == 0 || checks->audiences == NULL) {
        return 1;
    }
    if (json_is_string(aud)) {
        if (audience_accepted(aud, checks)) {
            return 1;
        }
        escape_json_string(shown, sizeof(shown), aud);
        set_error(error, reason_bad_audience, "aud \"%s\" is not an "
                  "accepted audience", shown);
        return 0;
    }
    if (!json_is_array(aud)) {
        set_error(error, reason_bad_audience, "aud is missing or neither a "
                  "string nor an array");
        return 0;
    }
    json_array_foreach(aud, i, value) {
        if (!json_is_string(value)) {
            set_error(error, reason_bad_audience, "aud array contains a "
                      "value that is not a string");
            return 0;
        }
    }
    json_array_foreach(aud, i, value) {
        if (audience_accepted(value, checks)) {
            return 1;
        }
    }
    set_error(error, reason_bad_audience, "none of the %zu aud values is an "
              "accepted audience", json_array_size(aud));
    return 0;
}

static int check_issuer(json_t *claims, const teleport_checks *checks,
                        teleport_error *error)
{
    json_t *iss = json_object_get(claims, "iss");
    char shown[DETAIL_VALUE_MAX + 4];

    if (checks->issuer == NULL || string_equals(iss, checks->issuer)) {
        return 1;
    }
    if (!json_is_string(iss)) {
        set_error(error, reason_bad_issuer, "iss is missing or not a string");
        return 0;
    }
    escape_json_string(shown, sizeof(shown), iss);
    set_error(error, reason_bad_issuer, "iss \"%s\" is not the expected "
              "issuer", shown);
    return 0;
}

/* Return 1 when text contains a C0 control character (NUL included) or
 * DEL. */
static int has_control(const char *text, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];

        if (c < 0x20 || c == 0x7f) {
            return 1;
        }
    }
    return 0;
}

/*
 * Return 1 when UTF-8 text contains a character unsafe in a value that
 * callers place in headers, environment variables and logs:
 * C0 and C1 controls, DEL, U+2028, U+2029, and the bidirectional controls
 * U+202A-U+202E and U+2066-U+2069.  jansson only returns valid UTF-8, so
 * the byte patterns below only match those code points.
 */
static int has_unsafe_char(const char *text, size_t len)
{
    const unsigned char *bytes = (const unsigned char *)text;
    size_t i;

    if (has_control(text, len)) {
        return 1;
    }
    for (i = 0; i + 1 < len; i++) {
        if (bytes[i] == 0xc2 && bytes[i + 1] >= 0x80 && bytes[i + 1] <= 0x9f) {
            return 1;
        }
        if (i + 2 >= len || bytes[i] != 0xe2) {
            continue;
        }
        if (bytes[i + 1] == 0x80 && bytes[i + 2] >= 0xa8
            && bytes[i + 2] <= 0xae) {
            return 1;
        }
        if (bytes[i + 1] == 0x81 && bytes[i + 2] >= 0xa6
            && bytes[i + 2] <= 0xa9) {
            return 1;
        }
    }
    return 0;
}

static int check_user(json_t *claims, const teleport_checks *checks,
                      const char **user, teleport_error *error)
{
    json_t *value;
    size_t len;

    *user = NULL;
    if (checks->user_claim == NULL) {
        return 1;
    }
    value = json_object_get(claims, checks->user_claim);
    if (value == NULL) {
        set_error(error, reason_missing_user, "user claim \"%.64s\" is "
                  "missing", checks->user_claim);
        return 0;
    }
    if (!json_is_string(value) || json_string_length(value) == 0) {
        set_error(error, reason_bad_user, "user claim \"%.64s\" is not a "
                  "non-empty string", checks->user_claim);
        return 0;
    }
    len = json_string_length(value);
    if (len > TELEPORT_USER_MAX) {
        set_error(error, reason_bad_user, "user name of %zu bytes is longer "
                  "than %d", len, TELEPORT_USER_MAX);
        return 0;
    }
    if (has_unsafe_char(json_string_value(value), len)) {
        char shown[DETAIL_VALUE_MAX + 4];

        escape_json_string(shown, sizeof(shown), value);
        set_error(error, reason_bad_user, "user name \"%s\" contains a "
                  "control or bidirectional character", shown);
        return 0;
    }
    *user = json_string_value(value);
    return 1;
}

/* Return 1 when value is null or an array of strings without unsafe
 * characters. */
static int is_string_list(json_t *value)
{
    json_t *item;
    size_t i;

    if (json_is_null(value)) {
        return 1;
    }
    if (!json_is_array(value)) {
        return 0;
    }
    json_array_foreach(value, i, item) {
        if (!json_is_string(item)
            || has_unsafe_char(json_string_value(item),
                               json_string_length(item))) {
            return 0;
        }
    }
    return 1;
}

/* Return 1 when claim name is absent, not a string (then not used for
 * identity), or a string without unsafe characters. */
static int string_claim_is_clean(json_t *claims, const char *name)
{
    json_t *value = json_object_get(claims, name);

    return !json_is_string(value)
           || !has_unsafe_char(json_string_value(value),
                               json_string_length(value));
}

/* Check what a caller may place in headers and environment variables:
 * "sub" and "iss" without unsafe characters (see has_unsafe_char()),
 * Teleport's "roles" (array of such strings, or null) and "traits" (object
 * of trait name to array of such strings, or null). */
static int check_identity(json_t *claims, teleport_error *error)
{
    json_t *roles = json_object_get(claims, "roles");
    json_t *traits = json_object_get(claims, "traits");
    const char *name;
    json_t *values;

    if (!string_claim_is_clean(claims, "sub")
        || !string_claim_is_clean(claims, "iss")) {
        set_error(error, reason_bad_claim, "\"sub\" or \"iss\" contains "
                  "control or bidirectional characters");
        return 0;
    }
    if (roles != NULL && !is_string_list(roles)) {
        set_error(error, reason_bad_claim, "\"roles\" is not null or an "
                  "array of strings without control or bidirectional "
                  "characters");
        return 0;
    }
    if (traits == NULL || json_is_null(traits)) {
        return 1;
    }
    if (!json_is_object(traits)) {
        set_error(error, reason_bad_claim, "\"traits\" is not null or an "
                  "object");
        return 0;
    }
    json_object_foreach(traits, name, values) {
        if (has_unsafe_char(name, strlen(name)) || !is_string_list(values)) {
            set_error(error, reason_bad_claim, "a trait is not null or an "
                      "array of strings without control or bidirectional "
                      "characters");
            return 0;
        }
    }
    return 1;
}

/* ---- verification ------------------------------------------------------- */

/* Decode the signature and verify it with the key that "kid" names, or
 * with each candidate key when there is no kid. */
static teleport_verify_status check_signature(const compact_parts *parts,
                                              const alg_entry *alg,
                                              const char *kid,
                                              const teleport_keyset *keys,
                                              int *key_index,
                                              teleport_error *error)
{
    signed_token signed_input;
    size_t sig_len = 0;
    unsigned char *sig;
    size_t fixed_len = fixed_signature_length(alg);
    teleport_verify_status status;

    if (parts->signature_len == 0) {
        set_error(error, reason_malformed, "signature segment is empty");
        return TELEPORT_VERIFY_INVALID;
    }
    sig = teleport_base64url_decode(parts->signature, parts->signature_len,
                                    &sig_len);
    if (sig == NULL) {
        set_error(error, reason_malformed, "signature does not decode");
        return TELEPORT_VERIFY_INVALID;
    }
    if (fixed_len != 0 && sig_len != fixed_len) {
        set_error(error, reason_bad_signature, "%s signature is %zu bytes, "
                  "expected %zu", alg->name, sig_len, fixed_len);
        free(sig);
        return TELEPORT_VERIFY_INVALID;
    }

    signed_input.alg = alg;
    signed_input.kid = kid;
    signed_input.input = (const unsigned char *)parts->header;
    signed_input.input_len = parts->signing_input_len;
    signed_input.sig = sig;
    signed_input.sig_len = sig_len;
    signed_input.hash_len = 0;
    if (keys->digests[alg - algorithms] != NULL
        && EVP_Digest(signed_input.input, signed_input.input_len,
                      signed_input.hash, &signed_input.hash_len,
                      keys->digests[alg - algorithms], NULL) != 1) {
        signed_input.hash_len = 0;
    }
    if (kid[0] != '\0') {
        status = verify_by_kid(keys, &signed_input, key_index, error);
    }
    else {
        status = verify_without_kid(keys, &signed_input, key_index, error);
    }
    free(sig);
    return status;
}

/* Parse the payload and apply every claim check; return the claims or NULL
 * with error filled. */
static json_t *read_claims(const compact_parts *parts,
                           const teleport_checks *checks, long long *expires,
                           const char **user, teleport_error *error)
{
    char problem[160];
    json_t *claims = decode_object(parts->payload, parts->payload_len, problem,
                                   sizeof(problem));

    if (claims == NULL) {
        set_error(error, reason_bad_payload, "payload: %s", problem);
        return NULL;
    }
    if (!check_dates(claims, checks, expires, error)
        || !check_audience(claims, checks, error)
        || !check_issuer(claims, checks, error)
        || !check_user(claims, checks, user, error)
        || !check_identity(claims, error)) {
        json_decref(claims);
        return NULL;
    }
    return claims;
}

/* A token owning claims, with a copy of kid in the same allocation. */
static teleport_token *build_token(json_t *claims, const alg_entry *alg,
                                   const char *kid, const char *user,
                                   long long expires, int key_index)
{
    size_t kid_len = strlen(kid);
    teleport_token *token = calloc(1, sizeof(*token) + kid_len + 1);
    json_t *iss = json_object_get(claims, "iss");
    json_t *sub = json_object_get(claims, "sub");
    char *kid_copy;

    if (token == NULL) {
        return NULL;
    }
    kid_copy = (char *)(token + 1);
    memcpy(kid_copy, kid, kid_len + 1);
    token->claims = claims;
    token->alg = alg->name;
    token->alg_bit = alg->bit;
    token->kid = kid_copy;
    token->user = user;
    token->issuer = json_is_string(iss) ? json_string_value(iss) : NULL;
    token->subject = json_is_string(sub) ? json_string_value(sub) : NULL;
    token->expires = expires;
    token->key_index = key_index;
    return token;
}

teleport_verify_status teleport_jwt_verify(const char *compact, size_t len,
                                           const teleport_keyset *keys,
                                           const teleport_checks *checks,
                                           teleport_token **token,
                                           teleport_error *error)
{
    teleport_error unused;
    compact_parts parts;
    const alg_entry *alg = NULL;
    const char *kid = "";
    const char *user = NULL;
    json_t *header;
    json_t *claims;
    long long expires = 0;
    int key_index = -1;
    teleport_verify_status status;

    error = error != NULL ? error : &unused;
    clear_error(error);
    if (token != NULL) {
        *token = NULL;
    }
    if (compact == NULL || keys == NULL || checks == NULL || token == NULL) {
        set_error(error, reason_malformed, "no token, key set or checks");
        return TELEPORT_VERIFY_INVALID;
    }
    if (!split_compact(compact, len, checks->max_token_length > 0
                                     ? checks->max_token_length
                                     : TELEPORT_TOKEN_MAX_DEFAULT,
                       &parts, error)) {
        return TELEPORT_VERIFY_INVALID;
    }
    header = read_header(&parts, checks->algorithms, &alg, &kid, error);
    if (header == NULL) {
        return TELEPORT_VERIFY_INVALID;
    }

    /* The signature is checked before the payload is parsed at all. */
    status = check_signature(&parts, alg, kid, keys, &key_index, error);
    if (status != TELEPORT_VERIFY_OK) {
        json_decref(header);
        return status;
    }
    claims = read_claims(&parts, checks, &expires, &user, error);
    if (claims == NULL) {
        json_decref(header);
        return TELEPORT_VERIFY_INVALID;
    }
    /* The kid becomes TELEPORT_KID, and a JWKS could list an unsafe one. */
    if (has_unsafe_char(kid, strlen(kid))) {
        set_error(error, reason_bad_claim, "kid contains control or "
                  "bidirectional characters");
        json_decref(header);
        json_decref(claims);
        return TELEPORT_VERIFY_INVALID;
    }

    /* The token keeps a copy of kid and no header: a cached token holds
     * only what later checks read. */
    *token = build_token(claims, alg, kid, user, expires, key_index);
    json_decref(header);
    if (*token == NULL) {
        json_decref(claims);
        set_error(error, reason_malformed, "out of memory");
        return TELEPORT_VERIFY_INVALID;
    }
    return TELEPORT_VERIFY_OK;
}

void teleport_token_free(teleport_token *token)
{
    if (token == NULL) {
        return;
    }
    if (token->annex != NULL && token->annex_free != NULL) {
        token->annex_free(token->annex);
    }
    json_decref(token->claims);
    free(token);
}

teleport_verify_status teleport_token_check(const teleport_token *token,
                                            const teleport_checks *checks,
                                            teleport_error *error)
{
    const char *user = NULL;
    long long expires = 0;

    clear_error(error);
    if ((checks->algorithms & token->alg_bit) == 0) {
        set_error(error, reason_alg_not_allowed, "alg \"%s\" is not allowed",
                  token->alg);
    }
    else if (check_dates(token->claims, checks, &expires, error)
             && check_audience(token->claims, checks, error)
             && check_issuer(token->claims, checks, error)
             && check_user(token->claims, checks, &user, error)) {
        return TELEPORT_VERIFY_OK;
    }
    /* Only a rejection reports the kid; an accepted token skips the
     * escaping. */
    escape_value(error->kid, sizeof(error->kid), token->kid,
                 strlen(token->kid));
    return TELEPORT_VERIFY_INVALID;
}
