/*
 * Unit test of the JWS verifier (jwt_verify.c), without httpd.
 *
 * Keys are generated with OpenSSL and tokens are signed here, except for the
 * published examples of RFC 7515 appendix A.  Prints one "ok N - name" or
 * "not ok N - name: got X expected Y" line per check, then "N passed,
 * N failed"; exits 1 when a check failed.
 */
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "../../jwt_verify.h"

/* Fixed clock for the generated tokens: 2023-11-14T22:13:20Z. */
#define NOW 1700000000LL

#define AUDIENCE "http://localhost:8080"
#define ISSUER "teleport.example.com"

#define ALL_ALGS (TELEPORT_ALG_RS256 | TELEPORT_ALG_RS384                   \
                  | TELEPORT_ALG_RS512 | TELEPORT_ALG_PS256                 \
                  | TELEPORT_ALG_PS384 | TELEPORT_ALG_PS512                 \
                  | TELEPORT_ALG_ES256 | TELEPORT_ALG_ES384                 \
                  | TELEPORT_ALG_ES512 | TELEPORT_ALG_EDDSA | 0xfffffc00u)

static int check_count;
static int pass_count;
static int fail_count;

/* Test allocations, freed at exit so that valgrind reports only leaks of
 * the verifier. */
static void **allocations;
static size_t allocation_count;
static size_t allocation_capacity;

static EVP_PKEY *rsa_key;
static EVP_PKEY *rsa_other_key;
static EVP_PKEY *ec256_key;
static EVP_PKEY *ec256_other_key;
static EVP_PKEY *ec384_key;
static EVP_PKEY *ec521_key;
static EVP_PKEY *ed25519_key;

/* ---- reporting ---------------------------------------------------------- */

static void report(const char *name, int ok, const char *got,
                   const char *expected)
{
    check_count++;
    if (ok) {
        pass_count++;
        printf("ok %d - %s\n", check_count, name);
        return;
    }
    fail_count++;
    printf("not ok %d - %s: got %s expected %s\n", check_count, name, got,
           expected);
}

static void check_str(const char *name, const char *got, const char *expected)
{
    int ok = (got == NULL && expected == NULL)
             || (got != NULL && expected != NULL
                 && strcmp(got, expected) == 0);

    report(name, ok, got ? got : "(null)", expected ? expected : "(null)");
}

static void check_int(const char *name, long long got, long long expected)
{
    char got_text[32];
    char expected_text[32];

    snprintf(got_text, sizeof(got_text), "%lld", got);
    snprintf(expected_text, sizeof(expected_text), "%lld", expected);
    report(name, got == expected, got_text, expected_text);
}

static void check_true(const char *name, int condition)
{
    report(name, condition, "false", "true");
}

static void fatal(const char *step)
{
    fprintf(stderr, "test setup failed: %s\n", step);
    exit(2);
}

static void *keep(void *pointer)
{
    if (pointer == NULL) {
        fatal("out of memory");
    }
    if (allocation_count == allocation_capacity) {
        allocation_capacity = allocation_capacity ? 2 * allocation_capacity
                                                  : 256;
        allocations = realloc(allocations,
                              allocation_capacity * sizeof(*allocations));
        if (allocations == NULL) {
            fatal("out of memory");
        }
    }
    allocations[allocation_count++] = pointer;
    return pointer;
}

static char *format(const char *fmt, ...)
{
    va_list args;
    int len;
    char *text;

    va_start(args, fmt);
    len = vsnprintf(NULL, 0, fmt, args);
    va_end(args);
    text = keep(malloc((size_t)len + 1));
    va_start(args, fmt);
    vsnprintf(text, (size_t)len + 1, fmt, args);
    va_end(args);
    return text;
}

/* ---- encoding and signing ----------------------------------------------- */

static char *b64url(const unsigned char *data, size_t len)
{
    char *out = keep(malloc(4 * ((len + 2) / 3) + 1));
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    int i;

    while (n > 0 && out[n - 1] == '=') {
        n--;
    }
    out[n] = '\0';
    for (i = 0; i < n; i++) {
        if (out[i] == '+') {
            out[i] = '-';
        }
        else if (out[i] == '/') {
            out[i] = '_';
        }
    }
    return out;
}

static char *b64url_text(const char *text)
{
    return b64url((const unsigned char *)text, strlen(text));
}

static char *b64url_bn(const BIGNUM *bn, int pad_to)
{
    unsigned char buffer[1100];
    int len = pad_to > 0 ? BN_bn2binpad(bn, buffer, pad_to)
                         : BN_bn2bin(bn, buffer);

    return b64url(buffer, (size_t)len);
}

static const char *digest_of(const char *alg)
{
    if (strcmp(alg, "EdDSA") == 0) {
        return NULL;
    }
    if (strstr(alg, "384") != NULL) {
        return "SHA384";
    }
    if (strstr(alg, "512") != NULL) {
        return "SHA512";
    }
    return "SHA256";
}

static size_t ecdsa_coord_size(const char *alg)
{
    return strcmp(alg, "ES384") == 0 ? 48 : strcmp(alg, "ES512") == 0 ? 66
                                                                      : 32;
}

/* Sign input as alg does, returning the DER form for ECDSA. */
static unsigned char *sign_der(EVP_PKEY *pkey, const char *alg,
                               const char *input, size_t *sig_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char *sig;

    if (ctx == NULL
        || EVP_DigestSignInit_ex(ctx, &pctx, digest_of(alg), NULL, NULL, pkey,
                                 NULL) != 1) {
        fatal("EVP_DigestSignInit_ex");
    }
    if (alg[0] == 'P'
        && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0
            || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST)
               <= 0)) {
        fatal("PSS parameters");
    }
    if (EVP_DigestSign(ctx, NULL, sig_len, (const unsigned char *)input,
                       strlen(input)) != 1) {
        fatal("EVP_DigestSign length");
    }
    sig = keep(malloc(*sig_len));
    if (EVP_DigestSign(ctx, sig, sig_len, (const unsigned char *)input,
                       strlen(input)) != 1) {
        fatal("EVP_DigestSign");
    }
    EVP_MD_CTX_free(ctx);
    return sig;
}

/* Sign input in the JWS form: r || s for ECDSA (RFC 7518 section 3.4). */
static unsigned char *sign_jws(EVP_PKEY *pkey, const char *alg,
                               const char *input, size_t *sig_len)
{
    unsigned char *der = sign_der(pkey, alg, input, sig_len);
    const unsigned char *cursor = der;
    size_t size = ecdsa_coord_size(alg);
    ECDSA_SIG *ecdsa;
    unsigned char *raw;

    if (alg[0] != 'E' || strcmp(alg, "EdDSA") == 0) {
        return der;
    }
    ecdsa = d2i_ECDSA_SIG(NULL, &cursor, (long)*sig_len);
    if (ecdsa == NULL) {
        fatal("d2i_ECDSA_SIG");
    }
    raw = keep(malloc(2 * size));
    BN_bn2binpad(ECDSA_SIG_get0_r(ecdsa), raw, (int)size);
    BN_bn2binpad(ECDSA_SIG_get0_s(ecdsa), raw + size, (int)size);
    ECDSA_SIG_free(ecdsa);
    *sig_len = 2 * size;
    return raw;
}

/* Build a compact JWS from header and payload JSON texts. */
static char *make_token(EVP_PKEY *pkey, const char *alg, const char *header,
                        const char *payload)
{
    char *input = format("%s.%s", b64url_text(header), b64url_text(payload));
    size_t sig_len = 0;
    unsigned char *sig = sign_jws(pkey, alg, input, &sig_len);

    return format("%s.%s", input, b64url(sig, sig_len));
}

static char *header_for(const char *alg, const char *kid)
{
    if (kid == NULL) {
        return format("{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    }
    return format("{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", alg, kid);
}

static char *dump(json_t *value)
{
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);

    json_decref(value);
    return keep(text);
}

/* Claims as Teleport v16 sends them, valid at NOW. */
static json_t *claims(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:[s], s:{s:[s], s:[]}, s:I, "
                     "s:I, s:I}",
                     "iss", ISSUER, "sub", "alice", "username", "alice",
                     "aud", AUDIENCE, "roles", "access", "traits", "logins",
                     "alice", "kubernetes_groups", "exp",
                     (json_int_t)(NOW + 600), "nbf", (json_int_t)(NOW - 10),
                     "iat", (json_int_t)NOW);
}

/* Set (or with value NULL, remove) one member; return object. */
static json_t *with(json_t *object, const char *name, json_t *value)
{
    if (value == NULL) {
        json_object_del(object, name);
    }
    else {
        json_object_set_new(object, name, value);
    }
    return object;
}

static char *token_for(EVP_PKEY *pkey, const char *alg, const char *kid,
                       json_t *payload)
{
    return make_token(pkey, alg, header_for(alg, kid), dump(payload));
}

/* ---- JWKs --------------------------------------------------------------- */

static json_t *jwk_rsa(EVP_PKEY *pkey)
{
    BIGNUM *n = NULL;
    BIGNUM *e = NULL;
    json_t *jwk;

    if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) != 1
        || EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1) {
        fatal("RSA parameters");
    }
    jwk = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "alg", "RS256",
                    "use", "sig", "n", b64url_bn(n, 0), "e", b64url_bn(e, 0));
    BN_free(n);
    BN_free(e);
    return jwk;
}

/* EC JWK; with pad 0 the coordinates are not left-padded, as Teleport
 * writes them. */
static json_t *jwk_ec(EVP_PKEY *pkey, int pad)
{
    char group[32];
    BIGNUM *x = NULL;
    BIGNUM *y = NULL;
    int size = (EVP_PKEY_get_bits(pkey) + 7) / 8;
    const char *crv;
    json_t *jwk;

    if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
                                       group, sizeof(group), NULL) != 1
        || EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x) != 1
        || EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y) != 1) {
        fatal("EC parameters");
    }
    crv = strcmp(group, "prime256v1") == 0 ? "P-256"
          : strcmp(group, "secp384r1") == 0 ? "P-384" : "P-521";
    jwk = json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC", "crv", crv, "x",
                    b64url_bn(x, pad ? size : 0), "y",
                    b64url_bn(y, pad ? size : 0));
    BN_free(x);
    BN_free(y);
    return jwk;
}

static json_t *jwk_ed25519(EVP_PKEY *pkey)
{
    unsigned char raw[32];
    size_t len = sizeof(raw);

    if (EVP_PKEY_get_raw_public_key(pkey, raw, &len) != 1) {
        fatal("Ed25519 public key");
    }
    return json_pack("{s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519", "x",
                     b64url(raw, len));
}

/* JWK of pkey with kid (no "kid" member when kid is NULL). */
static json_t *jwk(EVP_PKEY *pkey, const char *kid)
{
    json_t *object;

    if (EVP_PKEY_is_a(pkey, "RSA")) {
        object = jwk_rsa(pkey);
    }
    else if (EVP_PKEY_is_a(pkey, "EC")) {
        object = jwk_ec(pkey, 0);
    }
    else {
        object = jwk_ed25519(pkey);
    }
    return kid ? with(object, "kid", json_string(kid)) : object;
}

/* JWKS text listing the given JWKs (a NULL-terminated list, references
 * stolen). */
static char *jwks(json_t *first, ...)
{
    json_t *keys = json_array();
    json_t *entry;
    va_list args;

    va_start(args, first);
    for (entry = first; entry != NULL; entry = va_arg(args, json_t *)) {
        json_array_append_new(keys, entry);
    }
    va_end(args);
    return dump(json_pack("{s:o}", "keys", keys));
}

static teleport_keyset *keysets[64];
static size_t keyset_count;

static teleport_keyset *parse_keys(const char *text)
{
    teleport_error error;
    teleport_keyset *keys = teleport_keyset_parse(text, strlen(text), NULL,
                                                  NULL, 0, &error);

    if (keys == NULL) {
        fprintf(stderr, "JWKS rejected: %s %s\n", error.reason, error.detail);
        fatal("JWKS");
    }
    if (keyset_count == sizeof(keysets) / sizeof(keysets[0])) {
        fatal("too many key sets");
    }
    keysets[keyset_count++] = keys;
    return keys;
}

static EVP_PKEY *generate(const char *type, const char *curve, size_t bits)
{
    EVP_PKEY *pkey = strcmp(type, "RSA") == 0
                     ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits)
                     : curve != NULL
                       ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve)
                       : EVP_PKEY_Q_keygen(NULL, NULL, type);

    if (pkey == NULL) {
        fatal(type);
    }
    return pkey;
}

/* ---- verification helpers ----------------------------------------------- */

static teleport_checks default_checks(void)
{
    static const char *const audiences[] = { AUDIENCE };
    teleport_checks checks;

    memset(&checks, 0, sizeof(checks));
    checks.algorithms = TELEPORT_ALG_DEFAULT;
    checks.audiences = audiences;
    checks.audience_count = 1;
    checks.issuer = ISSUER;
    checks.clock_skew = 60;
    checks.now = NOW;
    checks.user_claim = "username";
    return checks;
}

static const char *status_name(teleport_verify_status status)
{
    switch (status) {
    case TELEPORT_VERIFY_OK:
        return "OK";
    case TELEPORT_VERIFY_INVALID:
        return "INVALID";
    case TELEPORT_VERIFY_KEY_NOT_FOUND:
        return "KEY_NOT_FOUND";
    }
    return "?";
}

/* Verify and return "OK", or the status and reason ("INVALID expired"). */
static const char *outcome(const char *token, const teleport_keyset *keys,
                           const teleport_checks *checks,
                           teleport_error *error)
{
    teleport_token *verified = NULL;
    teleport_verify_status status;

    status = teleport_jwt_verify(token, strlen(token), keys, checks,
                                 &verified, error);
    teleport_token_free(verified);
    if (status == TELEPORT_VERIFY_OK) {
        return "OK";
    }
    return format("%s %s", status_name(status),
                  error->reason ? error->reason : "(null)");
}

static void expect(const char *name, const char *token,
                   const teleport_keyset *keys, const teleport_checks *checks,
                   const char *expected)
{
    teleport_error error;

    check_str(name, outcome(token, keys, checks, &error), expected);
}

/* Verify with the default checks. */
static void expect_default(const char *name, const char *token,
                           const teleport_keyset *keys, const char *expected)
{
    teleport_checks checks = default_checks();

    expect(name, token, keys, &checks, expected);
}

/* ---- RFC 7515 appendix A ------------------------------------------------ */

/* Payload of appendix A.1-A.3 and A.5: {"iss":"joe", "exp":1300819380,
 * "http://example.com/is_root":true} with CRLF line breaks. */
#define RFC_PAYLOAD                                                         \
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"      \
    "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ"

static const char rfc_a1_token[] =
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9." RFC_PAYLOAD
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

static const char rfc_a2_token[] =
    "eyJhbGciOiJSUzI1NiJ9." RFC_PAYLOAD
    ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7"
    "AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4"
    "BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K"
    "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv"
    "hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB"
    "p0igcN_IoypGlUPQGe77Rw";

static const char rfc_a3_token[] =
    "eyJhbGciOiJFUzI1NiJ9." RFC_PAYLOAD
    ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSA"
    "pmWQxfKTUJqPP3-Kg6NU1Q";

static const char rfc_a5_token[] = "eyJhbGciOiJub25lIn0." RFC_PAYLOAD ".";

/* Public parts of the keys of appendix A.2 (RSA) and A.3 (P-256). */
static const char rfc_jwks[] =
    "{\"keys\":["
    "{\"kty\":\"RSA\","
    "\"n\":\"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddx"
    "HmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRP"
    "EwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBY"
    "UsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9k"
    "G4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PA"
    "cDTW9gb54h4FRWyuXpoQ\","
    "\"e\":\"AQAB\"},"
    "{\"kty\":\"EC\",\"crv\":\"P-256\","
    "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
    "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}"
    "]}";

static void test_rfc_examples(void)
{
    teleport_keyset *keys = parse_keys(rfc_jwks);
    teleport_checks checks;
    teleport_token *token = NULL;
    teleport_error error;
    teleport_verify_status status;

    memset(&checks, 0, sizeof(checks));
    checks.algorithms = TELEPORT_ALG_RS256 | TELEPORT_ALG_ES256;
    checks.now = 1300819000;
    checks.user_claim = "iss";
    check_int("RFC 7515 key set: two keys",
              (long long)teleport_keyset_count(keys), 2);

    status = teleport_jwt_verify(rfc_a2_token, strlen(rfc_a2_token), keys,
                                 &checks, &token, &error);
    check_str("RFC 7515 A.2 RS256 verifies", status_name(status), "OK");
    check_str("RFC 7515 A.2 user from iss", token ? token->user : NULL,
              "joe");
    check_int("RFC 7515 A.2 expires", token ? token->expires : 0,
              1300819380);
    check_int("RFC 7515 A.2 key index", token ? token->key_index : -1, 0);
    check_str("RFC 7515 A.2 kid empty", token ? token->kid : NULL, "");
    check_str("RFC 7515 A.2 alg", token ? token->alg : NULL, "RS256");
    teleport_token_free(token);

    status = teleport_jwt_verify(rfc_a3_token, strlen(rfc_a3_token), keys,
                                 &checks, &token, &error);
    check_str("RFC 7515 A.3 ES256 verifies", status_name(status), "OK");
    check_int("RFC 7515 A.3 key index", token ? token->key_index : -1, 1);
    teleport_token_free(token);

    checks.user_claim = NULL;
    expect("RFC 7515 A.3 without user claim", rfc_a3_token, keys, &checks,
           "OK");
    checks.now = 1300819380;
    expect("RFC 7515 A.2 at exp is expired", rfc_a2_token, keys, &checks,
           "INVALID expired");

    checks.now = 1300819000;
    checks.algorithms = ALL_ALGS;
    expect("RFC 7515 A.1 HS256 rejected", rfc_a1_token, keys, &checks,
           "INVALID alg_not_allowed");
    expect("RFC 7515 A.5 alg none rejected", rfc_a5_token, keys, &checks,
           "INVALID alg_not_allowed");
    checks.algorithms = TELEPORT_ALG_ES256;
    expect("RFC 7515 A.2 RS256 not in allow-list", rfc_a2_token, keys,
           &checks, "INVALID alg_not_allowed");
}

/* ---- algorithm names and base64url -------------------------------------- */

static void test_alg_names(void)
{
    static const char *const never[] = { "none", "None", "NONE", "HS256",
                                         "HS384", "HS512", "rs256", "ES256K",
                                         "Ed25519", "" };
    size_t i;

    for (i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
        check_int(format("alg name \"%s\" unknown", never[i]),
                  teleport_alg_from_name(never[i]), 0);
    }
    check_int("alg name NULL unknown", teleport_alg_from_name(NULL), 0);
    check_int("alg name RS256", teleport_alg_from_name("RS256"),
              TELEPORT_ALG_RS256);
    check_int("alg name PS384", teleport_alg_from_name("PS384"),
              TELEPORT_ALG_PS384);
    check_int("alg name EdDSA", teleport_alg_from_name("EdDSA"),
              TELEPORT_ALG_EDDSA);
    check_str("alg bit ES512 name", teleport_alg_name(TELEPORT_ALG_ES512),
              "ES512");
    check_str("alg bit unknown name", teleport_alg_name(1u << 20), NULL);
}

/* Decode with teleport_base64url_decode and show the bytes as hex, or
 * "NULL" when rejected. */
static const char *decoded_hex(const char *in)
{
    size_t len = 0;
    unsigned char *out = teleport_base64url_decode(in, strlen(in), &len);
    char *hex;
    size_t i;

    if (out == NULL) {
        return "NULL";
    }
    hex = keep(malloc(2 * len + 3));
    strcpy(hex, "0x");
    for (i = 0; i < len; i++) {
        snprintf(hex + 2 + 2 * i, 3, "%02x", out[i]);
    }
    free(out);
    return hex;
}

static void test_base64url(void)
{
    check_str("base64url empty", decoded_hex(""), "0x");
    check_str("base64url one byte", decoded_hex("QQ"), "0x41");
    check_str("base64url two bytes", decoded_hex("QUI"), "0x4142");
    check_str("base64url three bytes", decoded_hex("QUJD"), "0x414243");
    check_str("base64url - and _", decoded_hex("-_8"), "0xfbff");
    check_str("base64url leading zero byte", decoded_hex("AAE"), "0x0001");
    check_str("base64url padding rejected", decoded_hex("QQ=="), "NULL");
    check_str("base64url + rejected", decoded_hex("+_8"), "NULL");
    check_str("base64url / rejected", decoded_hex("-/8"), "NULL");
    check_str("base64url space rejected", decoded_hex("QU JD"), "NULL");
    check_str("base64url newline rejected", decoded_hex("QUJD\n"), "NULL");
    check_str("base64url length 4n+1 rejected", decoded_hex("QUJDR"),
              "NULL");
    check_str("base64url trailing bits after 1 byte", decoded_hex("QR"),
              "NULL");
    check_str("base64url trailing bits after 2 bytes", decoded_hex("QUJ"),
              "NULL");
    check_str("base64url dot rejected", decoded_hex("QU.D"), "NULL");
    check_int("base64url NULL input",
              teleport_base64url_decode(NULL, 0, NULL) == NULL, 1);
}

/* ---- Teleport-shaped tokens --------------------------------------------- */

static void test_teleport_versions(void)
{
    teleport_keyset *v14_keys = parse_keys(jwks(jwk(rsa_key, ""), NULL));
    teleport_keyset *v16_keys =
        parse_keys(jwks(jwk(rsa_key, "rsa-kid"), jwk(rsa_key, ""), NULL));
    teleport_keyset *v17_keys =
        parse_keys(jwks(jwk(ec256_key, "ec-kid"), jwk(ec256_key, ""), NULL));
    char *v14_token = token_for(rsa_key, "RS256", NULL,
                                with(claims(), "aud",
                                     json_pack("[s]", AUDIENCE)));
    char *v16_token;
    teleport_checks checks = default_checks();
    teleport_token *token = NULL;
    teleport_error error;
    teleport_verify_status status;

    /* Teleport before v15.4.20: no kid, "aud" array, JWKS kid "". */
    status = teleport_jwt_verify(v14_token, strlen(v14_token), v14_keys,
                                 &checks, &token, &error);
    check_str("v14 RS256 without kid verifies", status_name(status), "OK");
    check_str("v14 token kid", token ? token->kid : NULL, "");
    check_str("v14 token user", token ? token->user : NULL, "alice");
    check_str("v14 token issuer", token ? token->issuer : NULL, ISSUER);
    check_str("v14 token subject", token ? token->subject : NULL, "alice");
    check_int("v14 token expires", token ? token->expires : 0, NOW + 600);
    check_int("v14 token key index", token ? token->key_index : -1, 0);
    check_true("v14 token claims object",
               token != NULL && json_is_object(token->claims));
    teleport_token_free(token);

    /* v16: kid, "aud" string, each key listed with its kid and with "". */
    check_int("v16 JWKS folds the kid-less copy",
              (long long)teleport_keyset_count(v16_keys), 1);
    check_int("v16 JWKS has the kid",
              teleport_keyset_has_kid(v16_keys, "rsa-kid"), 1);
    check_int("v16 JWKS has no empty kid",
              teleport_keyset_has_kid(v16_keys, ""), 0);
    v16_token = token_for(rsa_key, "RS256", "rsa-kid", claims());
    status = teleport_jwt_verify(v16_token, strlen(v16_token), v16_keys,
                                 &checks, &token, &error);
    check_str("v16 RS256 with kid verifies", status_name(status), "OK");
    check_str("v16 token kid", token ? token->kid : NULL, "rsa-kid");
    check_str("v16 error kid filled on success", error.kid, "rsa-kid");
    teleport_token_free(token);
    expect_default("v16 key set verifies kid-less token", v14_token, v16_keys,
                   "OK");

    /* v17 and later with the balanced-v1 suite: ES256 with kid. */
    expect_default("v17 ES256 with kid verifies",
                   token_for(ec256_key, "ES256", "ec-kid", claims()),
                   v17_keys, "OK");
    expect_default("v17 ES256 without kid verifies",
                   token_for(ec256_key, "ES256", NULL, claims()), v17_keys,
                   "OK");
    expect_default("v14 token against v17 keys",
                   v14_token, v17_keys, "KEY_NOT_FOUND key_mismatch");
}

/* Every supported algorithm, with all bits allowed. */
static void test_algorithms(void)
{
    static const struct {
        const char *alg;
        EVP_PKEY **key;
    } cases[] = {
        { "RS256", &rsa_key }, { "RS384", &rsa_key }, { "RS512", &rsa_key },
        { "PS256", &rsa_key }, { "PS384", &rsa_key }, { "PS512", &rsa_key },
        { "ES256", &ec256_key }, { "ES384", &ec384_key },
        { "ES512", &ec521_key }, { "EdDSA", &ed25519_key }
    };
    teleport_checks checks = default_checks();
    json_t *rsa_any_alg = with(jwk(rsa_key, "rsa"), "alg", NULL);
    teleport_keyset *keys =
        parse_keys(jwks(rsa_any_alg, jwk(ec256_key, "ec256"),
                        jwk(ec384_key, "ec384"), jwk(ec521_key, "ec521"),
                        jwk(ed25519_key, "ed25519"), NULL));
    teleport_keyset *rs256_only = parse_keys(jwks(jwk(rsa_key, "rsa"), NULL));
    size_t i;

    checks.algorithms = ALL_ALGS;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *alg = cases[i].alg;

        expect(format("%s without kid verifies", alg),
               token_for(*cases[i].key, alg, NULL, claims()), keys, &checks,
               "OK");
    }
    expect("ES384 by kid verifies",
           token_for(ec384_key, "ES384", "ec384", claims()), keys, &checks,
           "OK");
    expect("ES512 by kid verifies",
           token_for(ec521_key, "ES512", "ec521", claims()), keys, &checks,
           "OK");
    expect("EdDSA by kid verifies",
           token_for(ed25519_key, "EdDSA", "ed25519", claims()), keys,
           &checks, "OK");
    expect("PS256 by kid verifies",
           token_for(rsa_key, "PS256", "rsa", claims()), keys, &checks, "OK");
    expect("PS256 on a JWK with alg RS256",
           token_for(rsa_key, "PS256", "rsa", claims()), rs256_only, &checks,
           "INVALID key_mismatch");
    expect("ES384 token on a P-256 kid",
           token_for(ec384_key, "ES384", "ec256", claims()), keys, &checks,
           "INVALID key_mismatch");
    expect_default("ES384 not in default allow-list",
                   token_for(ec384_key, "ES384", "ec384", claims()), keys,
                   "INVALID alg_not_allowed");
    expect_default("PS256 not in default allow-list",
                   token_for(rsa_key, "PS256", "rsa", claims()), keys,
                   "INVALID alg_not_allowed");
}

/* A signature made with one algorithm under the name of another: the
 * padding (PKCS #1 v1.5 or PSS) and the hash that the header's "alg" names
 * must both match, for a key that may verify every RSA algorithm. */
static void test_signature_confusion(void)
{
    static const struct {
        const char *named;   /* "alg" in the header */
        const char *signer;  /* algorithm that made the signature */
    } cases[] = {
        { "RS256", "PS256" }, { "PS256", "RS256" }, { "RS256", "RS384" },
        { "RS384", "RS256" }, { "RS512", "RS256" }, { "PS256", "PS384" },
        { "PS512", "PS256" }, { "PS384", "RS384" }
    };
    teleport_checks checks = default_checks();
    teleport_keyset *keys =
        parse_keys(jwks(with(jwk(rsa_key, "rsa"), "alg", NULL), NULL));
    size_t i;

    checks.algorithms = ALL_ALGS;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *named = cases[i].named;
        const char *signer = cases[i].signer;

        expect(format("%s signature named %s", signer, named),
               make_token(rsa_key, signer, header_for(named, "rsa"),
                          dump(claims())),
               keys, &checks, "INVALID bad_signature");
        expect(format("%s signature named %s, no kid", signer, named),
               make_token(rsa_key, signer, header_for(named, NULL),
                          dump(claims())),
               keys, &checks, "KEY_NOT_FOUND bad_signature");
        expect(format("%s signature named %s, control", named, named),
               make_token(rsa_key, named, header_for(named, "rsa"),
                          dump(claims())),
               keys, &checks, "OK");
    }
}

/* ---- ECDSA signature encoding ------------------------------------------- */

/* Replace the signature segment of token with sig. */
static char *with_signature(const char *token, const unsigned char *sig,
                            size_t sig_len)
{
    const char *last_dot = strrchr(token, '.');

    return format("%.*s.%s", (int)(last_dot - token), token,
                  b64url(sig, sig_len));
}

static char *signing_input_of(const char *token)
{
    const char *last_dot = strrchr(token, '.');

    return format("%.*s", (int)(last_dot - token), token);
}

/* A P-256 key whose x or y is shorter than 32 bytes, so that the JWK
 * carries a short coordinate; NULL when none turned up. */
static EVP_PKEY *generate_short_coordinate_key(void)
{
    int attempt;

    /* About 1 key in 128 qualifies; 5000 attempts all fail with
     * probability below 1e-17. */
    for (attempt = 0; attempt < 5000; attempt++) {
        EVP_PKEY *pkey = generate("EC", "P-256", 0);
        BIGNUM *x = NULL;
        BIGNUM *y = NULL;
        int short_coordinate;

        EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x);
        EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y);
        short_coordinate = BN_num_bytes(x) < 32 || BN_num_bytes(y) < 32;
        BN_free(x);
        BN_free(y);
        if (short_coordinate) {
            return pkey;
        }
        EVP_PKEY_free(pkey);
    }
    return NULL;
}

/* Sign input with P-256 until r (which_half 0) or s (1) starts with a zero
 * byte; NULL when no such signature turned up. */
static unsigned char *sign_with_leading_zero(const char *input,
                                             int which_half)
{
    int attempt;

    /* About 1 signature in 256 qualifies; 20000 attempts all fail with
     * probability below 1e-33. */
    for (attempt = 0; attempt < 20000; attempt++) {
        size_t sig_len = 0;
        unsigned char *sig = sign_jws(ec256_key, "ES256", input, &sig_len);

        if (sig[which_half * 32] == 0) {
            return sig;
        }
    }
    return NULL;
}

static void test_ecdsa_encoding(void)
{
    teleport_keyset *keys = parse_keys(jwks(jwk(ec256_key, "ec"), NULL));
    char *token = token_for(ec256_key, "ES256", "ec", claims());
    char *input = signing_input_of(token);
    size_t der_len = 0;
    unsigned char *der = sign_der(ec256_key, "ES256", input, &der_len);
    unsigned char *zero_r = sign_with_leading_zero(input, 0);
    unsigned char *zero_s = sign_with_leading_zero(input, 1);
    EVP_PKEY *short_key = generate_short_coordinate_key();
    unsigned char padded[64 + 8];

    check_true("ES256 signature with leading zero r found", zero_r != NULL);
    check_true("ES256 signature with leading zero s found", zero_s != NULL);
    if (zero_r != NULL) {
        expect_default("ES256 with leading zero r verifies",
                       with_signature(token, zero_r, 64), keys, "OK");
    }
    if (zero_s != NULL) {
        expect_default("ES256 with leading zero s verifies",
                       with_signature(token, zero_s, 64), keys, "OK");
    }
    expect_default("ES256 DER signature rejected",
                   with_signature(token, der, der_len), keys,
                   "INVALID bad_signature");

    memset(padded, 0, sizeof(padded));
    memcpy(padded, der, der_len < 64 ? der_len : 64);
    expect_default("ES256 DER signature padded to 64 bytes rejected",
                   with_signature(token, padded, 64), keys,
                   "INVALID bad_signature");
    expect_default("ES256 signature of 63 bytes rejected",
                   with_signature(token, zero_r ? zero_r + 1 : padded, 63),
                   keys, "INVALID bad_signature");
    if (zero_r != NULL) {
        memcpy(padded, zero_r, 64);
        padded[64] = 0;
        expect_default("ES256 valid signature plus one byte rejected",
                       with_signature(token, padded, 65), keys,
                       "INVALID bad_signature");
    }
    memset(padded, 0, sizeof(padded));
    expect_default("ES256 signature of 66 bytes rejected",
                   with_signature(token, padded, 66), keys,
                   "INVALID bad_signature");
    expect_default("ES256 all-zero signature rejected",
                   with_signature(token, padded, 64), keys,
                   "INVALID bad_signature");

    check_true("P-256 key with short coordinate found", short_key != NULL);
    if (short_key != NULL) {
        teleport_keyset *short_keys =
            parse_keys(jwks(jwk(short_key, "short"), NULL));

        expect_default("EC JWK with short coordinate verifies",
                       token_for(short_key, "ES256", "short", claims()),
                       short_keys, "OK");
        EVP_PKEY_free(short_key);
    }
}

/* ---- algorithms that are never accepted --------------------------------- */

/* HS256 token whose HMAC secret is the RSA public key in PEM, the classic
 * algorithm-confusion attack. */
static char *hmac_with_public_key(const char *kid)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long pem_len;
    char *input;
    unsigned char mac[32];
    size_t mac_len = 0;

    if (bio == NULL || PEM_write_bio_PUBKEY(bio, rsa_key) != 1) {
        fatal("PEM_write_bio_PUBKEY");
    }
    pem_len = BIO_get_mem_data(bio, &pem);
    input = format("%s.%s", b64url_text(header_for("HS256", kid)),
                   b64url_text(dump(claims())));
    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, pem, (size_t)pem_len,
                  (const unsigned char *)input, strlen(input), mac,
                  sizeof(mac), &mac_len) == NULL) {
        fatal("EVP_Q_mac");
    }
    BIO_free(bio);
    return format("%s.%s", input, b64url(mac, mac_len));
}

static void test_forbidden_algs(void)
{
    teleport_keyset *keys = parse_keys(jwks(jwk(rsa_key, "rsa"), NULL));
    char *payload = b64url_text(dump(claims()));
    teleport_checks checks = default_checks();
    static const char *const nones[] = { "none", "None", "NONE" };
    size_t i;

    checks.algorithms = ALL_ALGS;
    expect("HS256 with RSA PEM secret and kid rejected",
           hmac_with_public_key("rsa"), keys, &checks,
           "INVALID alg_not_allowed");
    expect("HS256 with RSA PEM secret without kid rejected",
           hmac_with_public_key(NULL), keys, &checks,
           "INVALID alg_not_allowed");
    for (i = 0; i < sizeof(nones) / sizeof(nones[0]); i++) {
        char *header = b64url_text(header_for(nones[i], NULL));

        expect(format("alg %s with empty signature rejected", nones[i]),
               format("%s.%s.", header, payload), keys, &checks,
               "INVALID alg_not_allowed");
        expect(format("alg %s with a signature rejected", nones[i]),
               format("%s.%s.AAAA", header, payload), keys, &checks,
               "INVALID alg_not_allowed");
    }
    expect("alg RS256 with NUL suffix rejected",
           format("%s.%s.AAAA",
                  b64url_text("{\"alg\":\"RS256\\u0000x\"}"), payload),
           keys, &checks, "INVALID bad_header");
}

/* ---- key choice ---------------------------------------------------------- */

static void test_key_selection(void)
{
    teleport_keyset *keys = parse_keys(jwks(jwk(rsa_key, "rsa"),
                                            jwk(ec256_key, "ec"), NULL));
    teleport_keyset *two_rsa = parse_keys(jwks(jwk(rsa_other_key, ""),
                                               jwk(rsa_key, ""), NULL));
    teleport_keyset *other_only = parse_keys(jwks(jwk(rsa_other_key, ""),
                                                  NULL));
    teleport_keyset *two_kids = parse_keys(jwks(jwk(rsa_key, "first"),
                                                jwk(rsa_key, "second"),
                                                NULL));
    char *kidless = token_for(rsa_key, "RS256", NULL, claims());
    teleport_checks checks = default_checks();
    teleport_token *token = NULL;
    teleport_error error;

    expect_default("unknown kid", token_for(rsa_key, "RS256", "other",
                                            claims()),
                   keys, "KEY_NOT_FOUND unknown_kid");
    expect_default("kid selects EC key for RS256",
                   token_for(rsa_key, "RS256", "ec", claims()), keys,
                   "INVALID key_mismatch");
    expect_default("kid selects RSA key for ES256",
                   token_for(ec256_key, "ES256", "rsa", claims()), keys,
                   "INVALID key_mismatch");
    expect_default("RS256 signature one byte short",
                   format("%.*s", (int)strlen(kidless) - 2, kidless),
                   two_rsa, "KEY_NOT_FOUND bad_signature");
    expect_default("kid selects a key that did not sign",
                   token_for(rsa_other_key, "RS256", "rsa", claims()), keys,
                   "INVALID bad_signature");

    teleport_jwt_verify(kidless, strlen(kidless), two_rsa, &checks, &token,
                        &error);
    check_true("kid-less token verifies with second key", token != NULL);
    check_int("kid-less token key index", token ? token->key_index : -1, 1);
    teleport_token_free(token);
    expect_default("kid-less token no key verifies", kidless, other_only,
                   "KEY_NOT_FOUND bad_signature");
    expect_default("kid-less token no key of its type",
                   token_for(ec256_key, "ES256", NULL, claims()), other_only,
                   "KEY_NOT_FOUND key_mismatch");

    check_int("same key with two kids allocations twice",
              (long long)teleport_keyset_count(two_kids), 2);
    expect_default("same key found by first kid",
                   token_for(rsa_key, "RS256", "first", claims()), two_kids,
                   "OK");
    expect_default("same key found by second kid",
                   token_for(rsa_key, "RS256", "second", claims()), two_kids,
                   "OK");
    expect_default("same key with two kids, kid-less", kidless, two_kids,
                   "OK");
}

/* Kid-less tokens are tried against at most TELEPORT_KIDLESS_MAX_TRIES
 * keys. */
static void test_kidless_limit(void)
{
    EVP_PKEY *pkeys[TELEPORT_KIDLESS_MAX_TRIES + 1];
    json_t *array = json_array();
    teleport_keyset *keys;
    size_t i;

    for (i = 0; i < TELEPORT_KIDLESS_MAX_TRIES + 1; i++) {
        pkeys[i] = generate("EC", "P-256", 0);
        json_array_append_new(array, jwk(pkeys[i], ""));
    }
    keys = parse_keys(dump(json_pack("{s:o}", "keys", array)));
    check_int("kid-less limit key set size",
              (long long)teleport_keyset_count(keys),
              TELEPORT_KIDLESS_MAX_TRIES + 1);
    expect_default("kid-less token signed by last tried key",
                   token_for(pkeys[TELEPORT_KIDLESS_MAX_TRIES - 1], "ES256",
                             NULL, claims()),
                   keys, "OK");
    expect_default("kid-less token signed by key past the limit",
                   token_for(pkeys[TELEPORT_KIDLESS_MAX_TRIES], "ES256", NULL,
                             claims()),
                   keys, "KEY_NOT_FOUND bad_signature");

    /* Extra kids of one key are not extra tries. */
    array = json_array();
    for (i = 0; i < TELEPORT_KIDLESS_MAX_TRIES; i++) {
        json_array_append_new(array, jwk(pkeys[0], format("kid-%zu", i)));
    }
    json_array_append_new(array, jwk(pkeys[1], ""));
    keys = parse_keys(dump(json_pack("{s:o}", "keys", array)));
    check_int("one key with many kids: entries",
              (long long)teleport_keyset_count(keys),
              TELEPORT_KIDLESS_MAX_TRIES + 1);
    expect_default("one key with many kids counts as one try",
                   token_for(pkeys[1], "ES256", NULL, claims()), keys, "OK");

    for (i = 0; i < TELEPORT_KIDLESS_MAX_TRIES + 1; i++) {
        EVP_PKEY_free(pkeys[i]);
    }
}

/* ---- header ------------------------------------------------------------- */

/* Token with a raw header text, signed by the RSA key as RS256. */
static char *rs256_with_header(const char *header)
{
    return make_token(rsa_key, "RS256", header, dump(claims()));
}

static void test_header(void)
{
    teleport_keyset *keys = parse_keys(jwks(jwk(rsa_key, "rsa"), NULL));
    teleport_keyset *other = parse_keys(jwks(jwk(rsa_other_key, ""), NULL));
    char *attacker_jwk = dump(jwk(rsa_key, NULL));

    expect_default("header duplicate alg",
                   rs256_with_header("{\"alg\":\"RS256\",\"alg\":\"RS256\"}"),
                   keys, "INVALID bad_header");
    expect_default("header duplicate kid",
                   rs256_with_header("{\"alg\":\"RS256\",\"kid\":\"rsa\","
                                     "\"kid\":\"rsa\"}"),
                   keys, "INVALID bad_header");
    expect_default("header crit",
                   rs256_with_header("{\"alg\":\"RS256\",\"crit\":[\"exp\"],"
                                     "\"exp\":1}"),
                   keys, "INVALID bad_header");
    expect_default("header zip",
                   rs256_with_header("{\"alg\":\"RS256\",\"zip\":\"DEF\"}"),
                   keys, "INVALID bad_header");
    expect_default("header enc",
                   rs256_with_header("{\"alg\":\"RS256\","
                                     "\"enc\":\"A128GCM\"}"),
                   keys, "INVALID bad_header");
    expect_default("header without alg",
                   rs256_with_header("{\"typ\":\"JWT\"}"), keys,
                   "INVALID bad_header");
    expect_default("header alg number", rs256_with_header("{\"alg\":256}"),
                   keys, "INVALID bad_header");
    expect_default("header kid number",
                   rs256_with_header("{\"alg\":\"RS256\",\"kid\":5}"), keys,
                   "INVALID bad_header");
    expect_default("header kid null",
                   rs256_with_header("{\"alg\":\"RS256\",\"kid\":null}"),
                   keys, "INVALID bad_header");
    expect_default("header array", rs256_with_header("[\"RS256\"]"), keys,
                   "INVALID bad_header");
    expect_default("header not JSON", rs256_with_header("{alg:RS256}"), keys,
                   "INVALID bad_header");
    expect_default("header trailing garbage",
                   rs256_with_header("{\"alg\":\"RS256\"}x"), keys,
                   "INVALID bad_header");
    expect_default("header empty kid is kid-less",
                   rs256_with_header("{\"alg\":\"RS256\",\"kid\":\"\"}"),
                   keys, "OK");
    expect_default("header jku ignored",
                   rs256_with_header("{\"alg\":\"RS256\",\"kid\":\"rsa\","
                                     "\"jku\":\"http://127.0.0.1:1/\"}"),
                   keys, "OK");
    expect_default("header jwk never supplies a key",
                   rs256_with_header(format("{\"alg\":\"RS256\",\"jwk\":%s}",
                                            attacker_jwk)),
                   other, "KEY_NOT_FOUND bad_signature");
    expect_default("header x5c never supplies a key",
                   rs256_with_header("{\"alg\":\"RS256\",\"x5c\":[\"MIIB\"],"
                                     "\"x5u\":\"http://127.0.0.1:1/\"}"),
                   other, "KEY_NOT_FOUND bad_signature");
}

/* ---- compact serialisation ----------------------------------------------- */

/* Copy of token with the character at position replaced by c. */
static char *with_char(const char *token, size_t position, char c)
{
    char *copy = format("%s", token);

    copy[position] = c;
    return copy;
}

static void test_segments(void)
{
    teleport_keyset *keys = parse_keys(jwks(jwk(rsa_key, "rsa"), NULL));
    char *token = token_for(rsa_key, "RS256", "rsa", claims());
    size_t header_len = (size_t)(strchr(token, '.') - token);
    char *input = signing_input_of(token);
    char *signature = strrchr(token, '.') + 1;
    size_t sig_len = strlen(signature);
    teleport_checks checks = default_checks();
    teleport_token *verified = NULL;
    teleport_error error;
    char *with_nul;

    expect_default("valid RS256 token", token, keys, "OK");
    expect_default("two segments", input, keys, "INVALID malformed");
    expect_default("four segments", format("%s.%s", token, signature), keys,
                   "INVALID malformed");
    expect_default("five segments", format("%s.e30.e30", token), keys,
                   "INVALID malformed");
    expect_default("one segment", b64url_text("{\"alg\":\"RS256\"}"), keys,
                   "INVALID malformed");
    expect_default("empty token", "", keys, "INVALID malformed");
    expect_default("empty signature", format("%s.", input), keys,
                   "INVALID malformed");
    expect_default("empty header", strchr(token, '.'), keys,
                   "INVALID malformed");
    expect_default("empty payload",
                   format("%.*s..%s", (int)header_len, token, signature),
                   keys, "INVALID malformed");
    expect_default("padding on signature", format("%s=", token), keys,
                   "INVALID malformed");
    expect_default("padding on header",
                   format("%.*s=%s", (int)header_len, token,
                          token + header_len),
                   keys, "INVALID malformed");
    expect_default("plus in signature",
                   with_char(token, strlen(token) - sig_len / 2, '+'), keys,
                   "INVALID malformed");
    expect_default("slash in signature",
                   with_char(token, strlen(token) - sig_len / 2, '/'), keys,
                   "INVALID malformed");
    expect_default("space in payload", with_char(token, header_len + 3, ' '),
                   keys, "INVALID malformed");
    expect_default("trailing newline", format("%s\n", token), keys,
                   "INVALID malformed");
    expect_default("leading space", format(" %s", token), keys,
                   "INVALID malformed");
    expect_default("signature length 4n+1", format("%sAAA", token), keys,
                   "INVALID malformed");
    with_nul = with_char(token, header_len + 3, '\0');
    teleport_jwt_verify(with_nul, strlen(token), keys, &checks, &verified,
                        &error);
    check_str("NUL inside token", error.reason, "malformed");

    /* 256 bytes of RSA signature end in 4 spare bits: set one of them. */
    expect_default("non-canonical trailing bits in signature",
                   with_char(token, strlen(token) - 1,
                             (char)(signature[sig_len - 1] + 1)),
                   keys, "INVALID malformed");

    checks.max_token_length = strlen(token);
    expect("token at the length cap", token, keys, &checks, "OK");
    checks.max_token_length = strlen(token) - 1;
    expect("token over the length cap", token, keys, &checks,
           "INVALID malformed");
}

/* Return levels nested empty arrays as JSON text, "[[...]]". */
static char *nested_arrays(size_t levels)
{
    char *text = keep(malloc(2 * levels + 1));

    memset(text, '[', levels);
    memset(text + levels, ']', levels);
    text[2 * levels] = '\0';
    return text;
}

static void test_nesting(void)
{
    teleport_keyset *keys = parse_keys(jwks(jwk(rsa_key, "rsa"), NULL));
    teleport_checks checks = default_checks();
    char *base = dump(claims());
    char *deep_payload;
    teleport_error error;
    clock_t started;
    double seconds;

    /* The payload object is level 1, so 15 arrays inside reach 16. */
    base[strlen(base) - 1] = '\0';
    expect_default("payload nested 16 levels",
                   make_token(rsa_key, "RS256", header_for("RS256", "rsa"),
                              format("%s,\"deep\":%s}", base,
                                     nested_arrays(15))),
                   keys, "OK");
    expect_default("payload nested 17 levels",
                   make_token(rsa_key, "RS256", header_for("RS256", "rsa"),
                              format("%s,\"deep\":%s}", base,
                                     nested_arrays(16))),
                   keys, "INVALID bad_payload");
    expect_default("nesting inside strings not counted",
                   make_token(rsa_key, "RS256", header_for("RS256", "rsa"),
                              format("%s,\"deep\":\"\\\"%s\"}", base,
                                     nested_arrays(40))),
                   keys, "OK");
    expect_default("header nested 17 levels",
                   rs256_with_header(format("{\"alg\":\"RS256\",\"x\":%s}",
                                            nested_arrays(16))),
                   keys, "INVALID bad_header");

    deep_payload = make_token(rsa_key, "RS256", header_for("RS256", "rsa"),
                              nested_arrays(100000));
    expect_default("100000-deep payload over default length cap",
                   deep_payload, keys, "INVALID malformed");
    checks.max_token_length = 1u << 20;
    started = clock();
    check_str("100000-deep payload rejected",
              outcome(deep_payload, keys, &checks, &error),
              "INVALID bad_payload");
    seconds = (double)(clock() - started) / CLOCKS_PER_SEC;
    check_true("100000-deep payload rejected within 1 s", seconds < 1.0);
}

/* ---- claims ------------------------------------------------------------- */

/* RS256 token with kid "rsa" over claims. */
static char *signed_claims(json_t *payload)
{
    return token_for(rsa_key, "RS256", "rsa", payload);
}

/* RS256 token with kid "rsa" over a raw payload text. */
static char *signed_text(const char *payload)
{
    return make_token(rsa_key, "RS256", header_for("RS256", "rsa"), payload);
}

static void test_payload(void)
{
    teleport_keyset *keys = parse_keys(jwks(jwk(rsa_key, "rsa"), NULL));
    char *bad_json = signed_text("{\"exp\":");
    const char *dot = strrchr(bad_json, '.');

    expect_default("payload array", signed_text("[1,2]"), keys,
                   "INVALID bad_payload");
    expect_default("payload string", signed_text("\"claims\""), keys,
                   "INVALID bad_payload");
    expect_default("payload not JSON", bad_json, keys, "INVALID bad_payload");
    expect_default("payload duplicate exp",
                   signed_text(format("{\"exp\":%lld,\"exp\":%lld}",
                                      NOW + 600, NOW + 600)),
                   keys, "INVALID bad_payload");
    expect_default("payload duplicate username",
                   signed_text(format("{\"exp\":%lld,\"aud\":\"%s\","
                                      "\"iss\":\"%s\",\"username\":\"alice\","
                                      "\"username\":\"root\"}",
                                      NOW + 600, AUDIENCE, ISSUER)),
                   keys, "INVALID bad_payload");
    expect_default("payload NUL in string rejected by jansson",
                   signed_claims(with(claims(), "username",
                                      json_stringn("al\0ice", 6))),
                   keys, "INVALID bad_payload");

    /* A broken signature is reported before the broken payload. */
    expect_default("signature checked before payload",
                   format("%.*sAAAA.%s", (int)(dot - bad_json) - 4, bad_json,
                          dot + 1),
                   keys, "INVALID bad_signature");
}

static void test_time_types(void)
{
    teleport_keyset *keys = parse_keys(jwks(jwk(rsa_key, "rsa"), NULL));

    expect_default("exp missing", signed_claims(with(claims(), "exp", NULL)),
                   keys, "INVALID missing_exp");
    expect_default("exp string",
                   signed_claims(with(claims(), "exp",
                                      json_string("1700000600"))),
                   keys, "INVALID bad_claim");
    expect_default("exp true", signed_claims(with(claims(), "exp",
                                                  json_true())),
                   keys, "INVALID bad_claim");
    expect_default("exp null", signed_claims(with(claims(), "exp",
                                                  json_null())),
                   keys, "INVALID bad_claim");
    expect_default("exp array",
                   signed_claims(with(claims(), "exp",
                                      json_pack("[I]",
                                                (json_int_t)(NOW + 600)))),
                   keys, "INVALID bad_claim");
    expect_default("exp object", signed_claims(with(claims(), "exp",
                                                    json_object())),
                   keys, "INVALID bad_claim");
    expect_default("nbf string", signed_claims(with(claims(), "nbf",
                                                    json_string("0"))),
                   keys, "INVALID bad_claim");
    expect_default("iat string", signed_claims(with(claims(), "iat",
                                                    json_string("0"))),
                   keys, "INVALID bad_claim");

}

static void test_time_limits(void)
{
    teleport_keyset *keys = parse_keys(jwks(jwk(rsa_key, "rsa"), NULL));
    teleport_checks checks = default_checks();
    teleport_token *token = NULL;
    teleport_error error;
    char *real_exp = signed_text(format("{\"exp\":%lld.75,\"aud\":\"%s\","
                                        "\"iss\":\"%s\","
                                        "\"username\":\"alice\"}",
                                        NOW + 600, AUDIENCE, ISSUER));

    teleport_jwt_verify(real_exp, strlen(real_exp), keys, &checks, &token,
                        &error);
    check_true("exp real verifies", token != NULL);
    check_int("exp real truncated", token ? token->expires : 0, NOW + 600);
    teleport_token_free(token);

    expect_default("exp 59 s ago within skew",
                   signed_claims(with(claims(), "exp",
                                      json_integer(NOW - 59))),
                   keys, "OK");
    expect_default("exp 60 s ago expired",
                   signed_claims(with(claims(), "exp",
                                      json_integer(NOW - 60))),
                   keys, "INVALID expired");
    expect_default("exp 0.5 s past skew expired",
                   signed_claims(with(claims(), "exp",
                                      json_real((double)NOW - 60.5))),
                   keys, "INVALID expired");
    expect_default("exp most negative integer expired",
                   signed_claims(with(claims(), "exp",
                                      json_integer(LLONG_MIN))),
                   keys, "INVALID expired");
    expect_default("exp largest integer valid",
                   signed_claims(with(claims(), "exp",
                                      json_integer(LLONG_MAX))),
                   keys, "OK");
    expect_default("exp 1e300 valid",
                   signed_claims(with(claims(), "exp", json_real(1e300))),
                   keys, "OK");
    expect_default("exp -1e300 expired",
                   signed_claims(with(claims(), "exp", json_real(-1e300))),
                   keys, "INVALID expired");
    expect_default("nbf 60 s ahead within skew",
                   signed_claims(with(claims(), "nbf",
                                      json_integer(NOW + 60))),
                   keys, "OK");
    expect_default("nbf 61 s ahead not yet valid",
                   signed_claims(with(claims(), "nbf",
                                      json_integer(NOW + 61))),
                   keys, "INVALID not_yet_valid");
    expect_default("nbf largest integer not yet valid",
                   signed_claims(with(claims(), "nbf",
                                      json_integer(LLONG_MAX))),
                   keys, "INVALID not_yet_valid");
    expect_default("nbf most negative integer valid",
                   signed_claims(with(claims(), "nbf",
                                      json_integer(LLONG_MIN))),
                   keys, "OK");
    expect_default("iat 61 s ahead issued in future",
                   signed_claims(with(claims(), "iat",
                                      json_integer(NOW + 61))),
                   keys, "INVALID issued_in_future");
    expect_default("iat 1e300 issued in future",
                   signed_claims(with(claims(), "iat", json_real(1e300))),
                   keys, "INVALID issued_in_future");
    expect_default("iat an hour old valid",
                   signed_claims(with(claims(), "iat",
                                      json_integer(NOW - 3600))),
                   keys, "OK");
    expect_default("nbf and iat absent valid",
                   signed_claims(with(with(claims(), "nbf", NULL), "iat",
                                      NULL)),
                   keys, "OK");

    checks.clock_skew = 0;
    expect("exp now without skew expired",
           signed_claims(with(claims(), "exp", json_integer(NOW))), keys,
           &checks, "INVALID expired");
    expect("exp now plus 1 without skew valid",
           signed_claims(with(claims(), "exp", json_integer(NOW + 1))), keys,
           &checks, "OK");
}

static void test_audience(void)
{
    static const char *const two[] = { "https://other.example.com",
                                       AUDIENCE };
    teleport_keyset *keys = parse_keys(jwks(jwk(rsa_key, "rsa"), NULL));
    teleport_checks checks = default_checks();

    expect_default("aud missing", signed_claims(with(claims(), "aud", NULL)),
                   keys, "INVALID bad_audience");
    expect_default("aud empty array",
                   signed_claims(with(claims(), "aud", json_array())), keys,
                   "INVALID bad_audience");
    expect_default("aud array of number",
                   signed_claims(with(claims(), "aud", json_pack("[i]", 123))),
                   keys, "INVALID bad_audience");
    expect_default("aud array with a number and a match",
                   signed_claims(with(claims(), "aud",
                                      json_pack("[i,s]", 1, AUDIENCE))),
                   keys, "INVALID bad_audience");
    expect_default("aud number",
                   signed_claims(with(claims(), "aud", json_integer(5))),
                   keys, "INVALID bad_audience");
    expect_default("aud object",
                   signed_claims(with(claims(), "aud", json_object())), keys,
                   "INVALID bad_audience");
    expect_default("aud other string",
                   signed_claims(with(claims(), "aud",
                                      json_string("http://localhost:8081"))),
                   keys, "INVALID bad_audience");
    expect_default("aud prefix of accepted",
                   signed_claims(with(claims(), "aud",
                                      json_string("http://localhost"))),
                   keys, "INVALID bad_audience");
    expect_default("aud accepted with suffix",
                   signed_claims(with(claims(), "aud",
                                      json_string(AUDIENCE "/"))),
                   keys, "INVALID bad_audience");
    expect_default("aud array second value matches",
                   signed_claims(with(claims(), "aud",
                                      json_pack("[s,s]", "x", AUDIENCE))),
                   keys, "OK");

    checks.audiences = two;
    checks.audience_count = 2;
    expect("aud matches second accepted audience", signed_claims(claims()),
           keys, &checks, "OK");
    checks.audience_count = 0;
    expect("aud unchecked when no audiences",
           signed_claims(with(claims(), "aud", json_integer(5))), keys,
           &checks, "OK");
}

static void test_issuer(void)
{
    teleport_keyset *keys = parse_keys(jwks(jwk(rsa_key, "rsa"), NULL));
    teleport_checks checks = default_checks();

    expect_default("iss missing", signed_claims(with(claims(), "iss", NULL)),
                   keys, "INVALID bad_issuer");
    expect_default("iss other cluster",
                   signed_claims(with(claims(), "iss",
                                      json_string("leaf.example.com"))),
                   keys, "INVALID bad_issuer");
    expect_default("iss number",
                   signed_claims(with(claims(), "iss", json_integer(1))),
                   keys, "INVALID bad_issuer");
    expect_default("iss array",
                   signed_claims(with(claims(), "iss",
                                      json_pack("[s]", ISSUER))),
                   keys, "INVALID bad_issuer");
    checks.issuer = NULL;
    expect("iss unchecked when no issuer",
           signed_claims(with(claims(), "iss", json_integer(1))), keys,
           &checks, "OK");
}

/* Token whose username claim is the given UTF-8 text. */
static char *user_token(const char *name)
{
    return signed_claims(with(claims(), "username", json_string(name)));
}

static void test_user(void)
{
    static const struct {
        const char *label;
        const char *name;
    } unsafe[] = {
        { "C0 control", "al\x01ice" },
        { "tab", "al\tice" },
        { "newline", "alice\n" },
        { "DEL", "al\x7fice" },
        { "C1 control U+0085", "al\xc2\x85ice" },
        { "C1 control U+009F", "al\xc2\x9fice" },
        { "line separator U+2028", "al\xe2\x80\xa8ice" },
        { "paragraph separator U+2029", "al\xe2\x80\xa9ice" },
        { "bidi U+202A", "al\xe2\x80\xaaice" },
        { "bidi override U+202E", "al\xe2\x80\xaeice" },
        { "bidi isolate U+2066", "al\xe2\x81\xa6ice" },
        { "bidi isolate U+2069", "al\xe2\x81\xa9ice" }
    };
    teleport_keyset *keys = parse_keys(jwks(jwk(rsa_key, "rsa"), NULL));
    teleport_checks checks = default_checks();
    teleport_token *token = NULL;
    teleport_error error;
    char long_name[TELEPORT_USER_MAX + 2];
    char *plain = signed_claims(claims());
    size_t i;

    for (i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++) {
        expect_default(format("user with %s", unsafe[i].label),
                       user_token(unsafe[i].name), keys, "INVALID bad_user");
    }
    expect_default("user missing",
                   signed_claims(with(claims(), "username", NULL)), keys,
                   "INVALID missing_user");
    expect_default("user null",
                   signed_claims(with(claims(), "username", json_null())),
                   keys, "INVALID bad_user");
    expect_default("user number",
                   signed_claims(with(claims(), "username", json_integer(7))),
                   keys, "INVALID bad_user");
    expect_default("user array",
                   signed_claims(with(claims(), "username",
                                      json_pack("[s]", "alice"))),
                   keys, "INVALID bad_user");
    expect_default("user empty", user_token(""), keys, "INVALID bad_user");

    memset(long_name, 'a', sizeof(long_name));
    long_name[TELEPORT_USER_MAX] = '\0';
    expect_default("user of maximum length", user_token(long_name), keys,
                   "OK");
    long_name[TELEPORT_USER_MAX] = 'a';
    long_name[TELEPORT_USER_MAX + 1] = '\0';
    expect_default("user one byte too long", user_token(long_name), keys,
                   "INVALID bad_user");
    expect_default("user with accents", user_token("\xc3\xa9lodie"), keys,
                   "OK");
    expect_default("user with U+2030 allowed",
                   user_token("al\xe2\x80\xb0ice"), keys, "OK");
    expect_default("user with U+00A0 allowed", user_token("al\xc2\xa0ice"),
                   keys, "OK");

    checks.user_claim = "sub";
    expect("user from sub", signed_claims(with(claims(), "username", NULL)),
           keys, &checks, "OK");
    checks.user_claim = NULL;
    teleport_jwt_verify(plain, strlen(plain), keys, &checks, &token, &error);
    check_true("no user claim verifies", token != NULL);
    check_str("no user claim leaves user NULL", token ? token->user : "x",
              NULL);
    teleport_token_free(token);
}

static void test_identity(void)
{
    teleport_keyset *keys = parse_keys(jwks(jwk(rsa_key, "rsa"), NULL));

    expect_default("roles null",
                   signed_claims(with(claims(), "roles", json_null())), keys,
                   "OK");
    expect_default("roles absent",
                   signed_claims(with(claims(), "roles", NULL)), keys, "OK");
    expect_default("roles empty array",
                   signed_claims(with(claims(), "roles", json_array())), keys,
                   "OK");
    expect_default("roles string",
                   signed_claims(with(claims(), "roles",
                                      json_string("access"))),
                   keys, "INVALID bad_claim");
    expect_default("roles with number",
                   signed_claims(with(claims(), "roles",
                                      json_pack("[s,i]", "access", 1))),
                   keys, "INVALID bad_claim");
    expect_default("roles with newline",
                   signed_claims(with(claims(), "roles",
                                      json_pack("[s]", "access\nadmin"))),
                   keys, "INVALID bad_claim");
    expect_default("roles with DEL",
                   signed_claims(with(claims(), "roles",
                                      json_pack("[s]", "acc\x7f"))),
                   keys, "INVALID bad_claim");
    expect_default("traits empty object",
                   signed_claims(with(claims(), "traits", json_object())),
                   keys, "OK");
    expect_default("traits null",
                   signed_claims(with(claims(), "traits", json_null())), keys,
                   "OK");
    expect_default("traits absent",
                   signed_claims(with(claims(), "traits", NULL)), keys, "OK");
    expect_default("trait value null",
                   signed_claims(with(claims(), "traits",
                                      json_pack("{s:n}", "logins"))),
                   keys, "OK");
    expect_default("traits array",
                   signed_claims(with(claims(), "traits", json_array())),
                   keys, "INVALID bad_claim");
    expect_default("trait value string",
                   signed_claims(with(claims(), "traits",
                                      json_pack("{s:s}", "logins", "root"))),
                   keys, "INVALID bad_claim");
    expect_default("trait value with number",
                   signed_claims(with(claims(), "traits",
                                      json_pack("{s:[i]}", "logins", 0))),
                   keys, "INVALID bad_claim");
    expect_default("trait value with control",
                   signed_claims(with(claims(), "traits",
                                      json_pack("{s:[s]}", "logins",
                                                "ro\x1bot"))),
                   keys, "INVALID bad_claim");
    expect_default("trait name with control",
                   signed_claims(with(claims(), "traits",
                                      json_pack("{s:[s]}", "log\x01ins",
                                                "root"))),
                   keys, "INVALID bad_claim");
}

/* ---- error value --------------------------------------------------------- */

static void test_error_fields(void)
{
    teleport_keyset *keys = parse_keys(jwks(jwk(rsa_key, "rsa"), NULL));
    char *token = signed_claims(claims());
    char *signature = strrchr(token, '.') + 1;
    char *long_kid = keep(malloc(201));
    teleport_checks checks = default_checks();
    teleport_token *verified = NULL;
    teleport_error error;
    teleport_verify_status status;

    outcome(rs256_with_header("{\"alg\":\"RS256\",\"kid\":\"a\\u0001b\\\\\"}"),
            keys, &checks, &error);
    check_str("error kid escaped", error.kid, "a%01b%5C");
    check_str("error reason for escaped kid", error.reason, "unknown_kid");

    memset(long_kid, 'k', 200);
    long_kid[200] = '\0';
    outcome(token_for(rsa_key, "RS256", long_kid, claims()), keys, &checks,
            &error);
    check_true("error kid capped", strlen(error.kid) < sizeof(error.kid));
    check_true("error kid cap marked",
               strstr(error.kid, "...") != NULL);
    check_true("error detail kid capped",
               strlen(error.detail) < sizeof(error.detail));

    outcome(format("%.*sAAAA", (int)(strlen(token) - 4), token), keys,
            &checks, &error);
    check_str("tampered signature reason", error.reason, "bad_signature");
    check_true("detail omits the signature",
               strstr(error.detail, "AAAA") == NULL
               && strstr(error.detail, signature + 8) == NULL);
    check_str("error kid on bad signature", error.kid, "rsa");

    outcome(signed_claims(with(claims(), "exp", json_integer(NOW - 100))),
            keys, &checks, &error);
    check_str("expired detail",
              error.detail,
              "exp 1699999900 is not after now 1700000000 minus 60 s skew");

    outcome(signed_claims(with(claims(), "aud", json_string("\x1b[31m"))),
            keys, &checks, &error);
    check_str("audience detail escaped", error.detail,
              "aud \"%1B[31m\" is not an accepted audience");

    status = teleport_jwt_verify(token, strlen(token), keys, &checks,
                                 &verified, &error);
    check_str("success status", status_name(status), "OK");
    check_str("success leaves reason NULL", error.reason, NULL);
    check_str("success fills error kid", error.kid, "rsa");
    teleport_token_free(verified);

    status = teleport_jwt_verify(token, strlen(token), keys, &checks,
                                 &verified, NULL);
    check_str("NULL error pointer accepted", status_name(status), "OK");
    teleport_token_free(verified);
    status = teleport_jwt_verify(token, strlen(token), NULL, &checks,
                                 &verified, &error);
    check_str("NULL key set rejected", status_name(status), "INVALID");
    check_true("NULL key set leaves token NULL", verified == NULL);
    status = teleport_jwt_verify(NULL, 0, keys, &checks, &verified, &error);
    check_str("NULL token text rejected", error.reason, "malformed");
    teleport_token_free(NULL);
}

/* ---- JWK sets ------------------------------------------------------------ */

static char *random_modulus(int bits)
{
    BIGNUM *n = BN_new();
    char *text;

    if (n == NULL || BN_rand(n, bits, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD)
                     != 1) {
        fatal("BN_rand");
    }
    text = b64url_bn(n, 0);
    BN_free(n);
    return text;
}

/* Parse text; return the number of keys, and the skip count in *skipped. */
static long long parsed_count(const char *text, int *skipped, char *detail,
                              size_t detail_size, teleport_error *error)
{
    teleport_keyset *keys = teleport_keyset_parse(text, strlen(text),
                                                  skipped, detail,
                                                  detail_size, error);
    long long count = (long long)teleport_keyset_count(keys);

    teleport_keyset_free(keys);
    return count;
}

static void test_jwks_skips(void)
{
    unsigned char long_x[33] = { 0x11 };
    unsigned char ed448_x[57] = { 0x22 };
    unsigned char big_e[9] = { 1, 0, 0, 0, 0, 0, 0, 0, 1 };
    EVP_PKEY *weak = generate("RSA", NULL, 1024);
    json_t *on_curve = jwk_ec(ec256_key, 1);
    const char *x = json_string_value(json_object_get(on_curve, "x"));
    const struct {
        const char *label;
        json_t *entry;
    } bad[] = {
        { "oct key", json_pack("{s:s, s:s}", "kty", "oct", "k", "c2VjcmV0") },
        { "use enc", with(jwk(rsa_other_key, NULL), "use",
                          json_string("enc")) },
        { "use number", with(jwk(rsa_other_key, NULL), "use",
                             json_integer(1)) },
        { "RSA 1024", jwk(weak, NULL) },
        { "RSA 2047 bits", with(jwk(rsa_other_key, NULL), "n",
                                json_string(random_modulus(2047))) },
        { "RSA 8200 bits", with(jwk(rsa_other_key, NULL), "n",
                                json_string(random_modulus(8200))) },
        { "exponent 1", with(jwk(rsa_other_key, NULL), "e",
                             json_string("AQ")) },
        { "exponent even", with(jwk(rsa_other_key, NULL), "e",
                                json_string("AQAA")) },
        { "exponent over 64 bits", with(jwk(rsa_other_key, NULL), "e",
                                        json_string(b64url(big_e, 9))) },
        { "RSA e padded", with(jwk(rsa_other_key, NULL), "e",
                               json_string("AQAB=")) },
        { "RSA n missing", with(jwk(rsa_other_key, NULL), "n", NULL) },
        { "RSA n number", with(jwk(rsa_other_key, NULL), "n",
                               json_integer(5)) },
        { "point not on curve", with(jwk_ec(ec256_key, 1), "y",
                                     json_string(x)) },
        { "EC x too long", with(jwk_ec(ec256_key, 1), "x",
                                json_string(b64url(long_x, 33))) },
        { "EC y missing", with(jwk_ec(ec256_key, 1), "y", NULL) },
        { "EC curve secp256k1", with(jwk_ec(ec256_key, 1), "crv",
                                     json_string("secp256k1")) },
        { "OKP Ed448", json_pack("{s:s, s:s, s:s}", "kty", "OKP", "crv",
                                 "Ed448", "x", b64url(ed448_x, 57)) },
        { "Ed25519 x of 31 bytes", json_pack("{s:s, s:s, s:s}", "kty", "OKP",
                                             "crv", "Ed25519", "x",
                                             b64url(ed448_x, 31)) },
        { "unknown kty", json_pack("{s:s}", "kty", "XYZ") },
        { "kty missing", with(jwk(rsa_other_key, NULL), "kty", NULL) },
        { "not an object", json_integer(42) },
        { "kid number", with(jwk(rsa_other_key, NULL), "kid",
                             json_integer(5)) },
        { "alg HS256", with(jwk(rsa_other_key, NULL), "alg",
                            json_string("HS256")) },
        { "alg ES256 on RSA", with(jwk(rsa_other_key, NULL), "alg",
                                   json_string("ES256")) },
        { "kid taken by another key", jwk(rsa_other_key, "good") }
    };
    size_t bad_count = sizeof(bad) / sizeof(bad[0]);
    json_t *all = json_array();
    teleport_keyset *keys;
    teleport_error error;
    char detail[200];
    char *text;
    int skipped = -1;
    size_t i;

    for (i = 0; i < bad_count; i++) {
        json_array_append(all, bad[i].entry);
        check_int(format("JWKS skips %s: keys", bad[i].label),
                  parsed_count(jwks(jwk(rsa_key, "good"), bad[i].entry, NULL),
                               &skipped, NULL, 0, &error),
                  1);
        check_int(format("JWKS skips %s: skipped", bad[i].label), skipped, 1);
    }
    json_array_insert_new(all, 0, jwk(rsa_key, "good"));
    text = dump(json_pack("{s:o}", "keys", all));
    keys = teleport_keyset_parse(text, strlen(text), &skipped, detail,
                                 sizeof(detail), &error);
    check_int("JWKS with every skip: keys",
              (long long)teleport_keyset_count(keys), 1);
    check_int("JWKS with every skip: skipped", skipped, (long long)bad_count);
    check_str("JWKS with every skip: detail", detail,
              "JWKS keys[1] skipped: symmetric (\"oct\") keys are never used");
    if (keys != NULL) {
        expect_default("JWKS with every skip: good key verifies",
                       token_for(rsa_key, "RS256", "good", claims()), keys,
                       "OK");
    }
    teleport_keyset_free(keys);
    json_decref(on_curve);
    EVP_PKEY_free(weak);
}

static void test_jwks_folding(void)
{
    teleport_key_info info;
    teleport_error error;
    char detail[200];
    int skipped = -1;
    char *empty_first = jwks(jwk(rsa_key, ""), jwk(rsa_key, "late"), NULL);
    teleport_keyset *keys = parse_keys(empty_first);

    check_int("kid then empty kid: keys",
              parsed_count(jwks(jwk(rsa_key, "K"), jwk(rsa_key, ""), NULL),
                           &skipped, NULL, 0, &error),
              1);
    check_int("kid then empty kid: nothing skipped", skipped, 0);
    check_int("same entry twice: keys",
              parsed_count(jwks(jwk(rsa_key, "K"), jwk(rsa_key, "K"), NULL),
                           &skipped, NULL, 0, &error),
              1);
    check_int("same entry twice: nothing skipped", skipped, 0);
    check_int("kid reused by other key: keys",
              parsed_count(jwks(jwk(rsa_key, "K"), jwk(rsa_other_key, "K"),
                                NULL),
                           &skipped, detail, sizeof(detail), &error),
              1);
    check_int("kid reused by other key: skipped", skipped, 1);
    check_str("kid reused by other key: detail", detail,
              "JWKS keys[1] skipped: \"kid\" \"K\" is already used by a "
              "different key");
    check_int("two kid-less keys: keys",
              parsed_count(jwks(jwk(rsa_key, NULL), jwk(rsa_other_key, ""),
                                NULL),
                           &skipped, NULL, 0, &error),
              2);

    check_int("empty kid then kid: keys",
              (long long)teleport_keyset_count(keys), 1);
    check_int("empty kid then kid: kid found",
              teleport_keyset_has_kid(keys, "late"), 1);
    expect_default("empty kid then kid: token with kid",
                   token_for(rsa_key, "RS256", "late", claims()), keys, "OK");
    expect_default("empty kid then kid: kid-less token",
                   token_for(rsa_key, "RS256", NULL, claims()), keys, "OK");
    check_int("key info of key 0", teleport_keyset_key_info(keys, 0, &info),
              1);
    check_str("key info kid", info.kid, "late");
    check_str("key info kty", info.kty, "RSA");
    check_int("key info bits", info.bits, 2048);
    check_int("key info out of range",
              teleport_keyset_key_info(keys, 1, &info), 0);
    check_int("has_kid of empty kid", teleport_keyset_has_kid(keys, ""), 0);
    check_int("has_kid of unknown kid", teleport_keyset_has_kid(keys, "x"),
              0);
}

static void test_key_info(void)
{
    teleport_keyset *keys =
        parse_keys(jwks(jwk(ec256_key, "a"), jwk(ec521_key, "b"),
                        jwk(ed25519_key, "c"), NULL));
    teleport_key_info info;

    teleport_keyset_key_info(keys, 0, &info);
    check_str("P-256 key info kty", info.kty, "EC");
    check_int("P-256 key info bits", info.bits, 256);
    teleport_keyset_key_info(keys, 1, &info);
    check_int("P-521 key info bits", info.bits, 521);
    teleport_keyset_key_info(keys, 2, &info);
    check_str("Ed25519 key info kty", info.kty, "OKP");
    check_str("Ed25519 key info kid", info.kid, "c");
    check_int("key set count of NULL", (long long)teleport_keyset_count(NULL),
              0);
}

/* Parse a JWKS text and return the reason word, or "OK". */
static const char *jwks_outcome(const char *text, int *skipped)
{
    teleport_error error;
    teleport_keyset *keys = teleport_keyset_parse(text, strlen(text),
                                                  skipped, NULL, 0, &error);

    if (keys != NULL) {
        teleport_keyset_free(keys);
        return "OK";
    }
    return error.reason ? error.reason : "(null)";
}

static void test_jwks_documents(void)
{
    json_t *many = json_array();
    json_t *fewer = json_array();
    teleport_error error;
    int skipped = -1;
    size_t i;

    check_str("JWKS not JSON", jwks_outcome("keys", NULL), "bad_jwks");
    check_str("JWKS array", jwks_outcome("[]", NULL), "bad_jwks");
    check_str("JWKS without keys", jwks_outcome("{}", NULL), "bad_jwks");
    check_str("JWKS keys object", jwks_outcome("{\"keys\":{}}", NULL),
              "bad_jwks");
    check_str("JWKS duplicate keys",
              jwks_outcome("{\"keys\":[],\"keys\":[]}", NULL), "bad_jwks");
    check_str("JWKS nested too deep",
              jwks_outcome(format("{\"keys\":[],\"x\":%s}",
                                  nested_arrays(100000)), NULL),
              "bad_jwks");
    check_str("JWKS empty keys", jwks_outcome("{\"keys\":[]}", &skipped),
              "no_usable_keys");
    check_int("JWKS empty keys: skipped", skipped, 0);
    check_str("JWKS only unusable keys",
              jwks_outcome("{\"keys\":[1,{\"kty\":\"oct\"}]}", &skipped),
              "no_usable_keys");
    check_int("JWKS only unusable keys: skipped", skipped, 2);
    check_true("JWKS NULL text",
               teleport_keyset_parse(NULL, 0, NULL, NULL, 0, &error) == NULL
               && strcmp(error.reason, "bad_jwks") == 0);
    check_true("JWKS NULL error pointer",
               teleport_keyset_parse("{}", 2, NULL, NULL, 0, NULL) == NULL);

    /* Only the first 64 entries are read. */
    for (i = 0; i < 64; i++) {
        json_array_append_new(many, json_integer((json_int_t)i));
        if (i < 63) {
            json_array_append_new(fewer, json_integer((json_int_t)i));
        }
    }
    json_array_append_new(many, jwk(rsa_key, "late"));
    json_array_append_new(fewer, jwk(rsa_key, "late"));
    check_str("JWKS key after 64 entries ignored",
              jwks_outcome(dump(json_pack("{s:o}", "keys", many)), &skipped),
              "no_usable_keys");
    check_int("JWKS key after 64 entries: skipped", skipped, 65);
    check_str("JWKS key as 64th entry used",
              jwks_outcome(dump(json_pack("{s:o}", "keys", fewer)), &skipped),
              "OK");
}

/* ---- threads ------------------------------------------------------------- */

#define THREAD_COUNT 4
#define THREAD_ROUNDS 50

/* Token and key set shared by the threads, read-only while they run. */
typedef struct {
    const char *token;
    const teleport_keyset *keys;
    int verified;
} thread_work;

static void *verify_in_thread(void *argument)
{
    thread_work *work = argument;
    teleport_checks checks = default_checks();
    int round;

    for (round = 0; round < THREAD_ROUNDS; round++) {
        teleport_token *token = NULL;
        teleport_error error;

        if (teleport_jwt_verify(work->token, strlen(work->token), work->keys,
                                &checks, &token, &error)
            == TELEPORT_VERIFY_OK) {
            work->verified++;
        }
        teleport_token_free(token);
    }
    return NULL;
}

/* Several threads verify against one key set at once. */
static void test_threads(void)
{
    teleport_keyset *keys = parse_keys(jwks(jwk(rsa_key, "rsa"),
                                            jwk(ec256_key, ""), NULL));
    char *rsa_token = token_for(rsa_key, "RS256", "rsa", claims());
    char *ec_token = token_for(ec256_key, "ES256", NULL, claims());
    pthread_t threads[THREAD_COUNT];
    thread_work work[THREAD_COUNT];
    int i;

    for (i = 0; i < THREAD_COUNT; i++) {
        work[i].token = i % 2 ? rsa_token : ec_token;
        work[i].keys = keys;
        work[i].verified = 0;
        if (pthread_create(&threads[i], NULL, verify_in_thread, &work[i])
            != 0) {
            fatal("pthread_create");
        }
    }
    for (i = 0; i < THREAD_COUNT; i++) {
        pthread_join(threads[i], NULL);
    }
    for (i = 0; i < THREAD_COUNT; i++) {
        check_int(format("thread %d verified every round", i),
                  work[i].verified, THREAD_ROUNDS);
    }
}

/* ---- main ---------------------------------------------------------------- */

static void generate_keys(void)
{
    rsa_key = generate("RSA", NULL, 2048);
    rsa_other_key = generate("RSA", NULL, 2048);
    ec256_key = generate("EC", "P-256", 0);
    ec256_other_key = generate("EC", "P-256", 0);
    ec384_key = generate("EC", "P-384", 0);
    ec521_key = generate("EC", "P-521", 0);
    ed25519_key = generate("ED25519", NULL, 0);
}

static void free_all(void)
{
    size_t i;

    for (i = 0; i < keyset_count; i++) {
        teleport_keyset_free(keysets[i]);
    }
    for (i = 0; i < allocation_count; i++) {
        free(allocations[i]);
    }
    free(allocations);
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(rsa_other_key);
    EVP_PKEY_free(ec256_key);
    EVP_PKEY_free(ec256_other_key);
    EVP_PKEY_free(ec384_key);
    EVP_PKEY_free(ec521_key);
    EVP_PKEY_free(ed25519_key);
}

int main(void)
{
    generate_keys();

    test_rfc_examples();
    test_alg_names();
    test_base64url();
    test_teleport_versions();
    test_algorithms();
    test_signature_confusion();
    test_ecdsa_encoding();
    test_forbidden_algs();
    test_key_selection();
    test_kidless_limit();
    test_header();
    test_segments();
    test_nesting();
    test_payload();
    test_time_types();
    test_time_limits();
    test_audience();
    test_issuer();
    test_user();
    test_identity();
    test_error_fields();
    test_jwks_skips();
    test_jwks_folding();
    test_key_info();
    test_jwks_documents();
    test_threads();

    free_all();
    printf("%d passed, %d failed\n", pass_count, fail_count);
    return fail_count == 0 ? 0 : 1;
}
