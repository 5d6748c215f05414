/*
 * JWS compact-serialisation verifier for Teleport application-access tokens.
 *
 * This unit handles base64url, JSON (jansson) and signatures (OpenSSL 3
 * EVP), and nothing of httpd: it takes bytes, a key set and the checks to
 * apply, and returns the verified claims or one error value.  It never logs,
 * so it can be unit-tested and fuzzed on its own.  Memory comes from malloc;
 * every object returned has a matching free function.
 */
#ifndef TELEPORT_JWT_VERIFY_H
#define TELEPORT_JWT_VERIFY_H

#include <stddef.h>
#include <jansson.h>

/* Signature algorithms (RFC 7518 section 3.1, RFC 8037 section 3.1), as bits
 * so that an allow-list is one unsigned int. */
#define TELEPORT_ALG_RS256 (1u << 0)
#define TELEPORT_ALG_RS384 (1u << 1)
#define TELEPORT_ALG_RS512 (1u << 2)
#define TELEPORT_ALG_PS256 (1u << 3)
#define TELEPORT_ALG_PS384 (1u << 4)
#define TELEPORT_ALG_PS512 (1u << 5)
#define TELEPORT_ALG_ES256 (1u << 6)
#define TELEPORT_ALG_ES384 (1u << 7)
#define TELEPORT_ALG_ES512 (1u << 8)
#define TELEPORT_ALG_EDDSA (1u << 9)

/* Teleport signs with RS256 (legacy suite) or ES256 (balanced-v1, fips-v1,
 * hsm-v1 suites, Teleport v17 and later). */
#define TELEPORT_ALG_DEFAULT (TELEPORT_ALG_RS256 | TELEPORT_ALG_ES256)

/* Largest token accepted, in bytes, unless the caller sets another cap. */
#define TELEPORT_TOKEN_MAX_DEFAULT 16384

/* Most keys a token without "kid" is tried against. */
#define TELEPORT_KIDLESS_MAX_TRIES 8

/* Longest accepted user name, in bytes. */
#define TELEPORT_USER_MAX 512

/* Outcome of teleport_jwt_verify(). */
typedef enum {
    TELEPORT_VERIFY_OK = 0,
    /* The token is invalid, and error->reason names why.  Answer 401. */
    TELEPORT_VERIFY_INVALID,
    /* The token names a "kid" the key set does not contain, or carries no
     * "kid" and no key of the set verifies it.  A caller may refresh the
     * key set (rate limited) and verify again.  error->reason is
     * "unknown_kid" or "bad_signature", or "key_mismatch" when the token
     * carries no "kid" and the set contains no key of the type "alg" needs. */
    TELEPORT_VERIFY_KEY_NOT_FOUND
} teleport_verify_status;

/*
 * Rejection reasons set by this unit (stable words, documented in README):
 *   malformed         not three non-empty strict base64url segments, or over
 *                     the size cap (an empty signature segment is reported
 *                     after the "alg" check, so an unsecured JWS with
 *                     "alg": "none" is reported as alg_not_allowed)
 *   bad_header        header not a JSON object, duplicate members, "alg" or
 *                     "kid" not a string, "crit", "zip" or "enc" present
 *                     (JSON text with "\u0000" in any string is not
 *                     loaded at all: bad_header or bad_payload, and in a
 *                     JWKS the whole document is bad_jwks)
 *   alg_not_allowed   "alg" not in the allow-list ("none" and HS* never are)
 *   unknown_kid       non-empty "kid" not in the key set
 *   key_mismatch      the key that "kid" selects does not fit "alg", or
 *                     (without "kid") no key of the set does
 *   bad_signature     signature does not verify, or has the wrong length
 *   bad_payload       payload not a JSON object, or duplicate members
 *   bad_claim         exp/nbf/iat not a JSON number, roles/traits of the
 *                     wrong shape, or in roles, traits, "sub", "iss" or
 *                     "kid" (values callers place in headers and
 *                     environment variables) a C0 or C1 control, DEL,
 *                     U+2028/U+2029 or a bidirectional control
 *   missing_exp       no "exp"
 *   expired           exp + skew <= now
 *   not_yet_valid     nbf - skew > now
 *   issued_in_future  iat - skew > now
 *   bad_audience      "aud" missing or matching none of the audiences
 *   bad_issuer        "iss" missing or different
 *   missing_user      user claim absent
 *   bad_user          user claim not a non-empty string, too long, or with
 *                     control or bidirectional-override characters
 *   bad_jwks          JWKS not a JSON object with a "keys" array
 *   no_usable_keys    JWKS with no usable key
 */

/*
 * Error value.  reason is a static, stable word for logs and docs
 * (see the README's table).  detail is a short English phrase with values
 * from the token escaped by teleport_escape() and capped; it never contains
 * the token or its signature.  kid is the token's "kid", escaped the same
 * way, or empty.
 */
typedef struct {
    const char *reason;
    char detail[256];
    char kid[96];
} teleport_error;

/* Parsed JWK set; opaque. */
typedef struct teleport_keyset teleport_keyset;

/* One key of a set, for listing (status pages, logs). */
typedef struct {
    const char *kid;  /* "" when the JWK has none or an empty one */
    const char *kty;  /* "RSA", "EC" or "OKP" */
    int bits;         /* modulus or curve size in bits */
} teleport_key_info;

/*
 * Parse a JWKS document (RFC 7517 section 5).  Entries that cannot be used
 * for verification (unknown "kty", "oct" keys, "use" other than "sig",
 * "alg" not supported or not fitting the key, unsupported curve, malformed
 * or weak numbers, RSA modulus under 2048 or over 8192 bits, RSA exponent
 * below 3, even or over 64 bits, EC point not on the curve, non-empty
 * "kid" already taken by a different key, entries after the 64th) are
 * skipped; *skipped (if not NULL) receives their count and skip_detail (if
 * not NULL, skip_detail_size > 0) a phrase describing the first one
 * skipped.  A JWK "alg" restricts its key to that algorithm (RFC 7517
 * section 4.4).  An entry repeating a key already in the set is folded
 * into it and not counted as skipped: its non-empty "kid" stays findable,
 * and a token without "kid" tries each distinct key once.  Returns NULL
 * and fills error when the document itself is unusable (not JSON, no
 * "keys" array) or no entry is usable (reason "no_usable_keys").
 */
teleport_keyset *teleport_keyset_parse(const char *json, size_t len,
                                       int *skipped, char *skip_detail,
                                       size_t skip_detail_size,
                                       teleport_error *error);
void teleport_keyset_free(teleport_keyset *keys);
size_t teleport_keyset_count(const teleport_keyset *keys);
/* Fill info for the key at index (0 to count - 1); return 1, or 0 when
 * index is out of range.  The strings in info belong to keys. */
int teleport_keyset_key_info(const teleport_keyset *keys, size_t index,
                             teleport_key_info *info);
/* Return 1 when a key with this non-empty kid is in the set. */
int teleport_keyset_has_kid(const teleport_keyset *keys, const char *kid);

/* Checks applied to a token besides its signature. */
typedef struct {
    unsigned algorithms;            /* allow-list, TELEPORT_ALG_* bits */
    const char *const *audiences;   /* accepted "aud" values, or NULL */
    size_t audience_count;          /* 0: "aud" is not checked */
    const char *issuer;             /* required "iss", or NULL */
    long long clock_skew;           /* seconds of leeway for exp/nbf/iat */
    long long now;                  /* current time, seconds since epoch */
    const char *user_claim;         /* claim naming the user; NULL: none */
    size_t max_token_length;        /* 0: TELEPORT_TOKEN_MAX_DEFAULT */
} teleport_checks;

/* A verified token; claims owned by it. */
typedef struct {
    json_t *claims;       /* payload object */
    const char *alg;      /* header "alg" (a static string) */
    unsigned alg_bit;     /* its TELEPORT_ALG_* bit */
    const char *kid;      /* header "kid" or "", a copy owned by the token */
    const char *user;     /* the user claim, points into claims */
    const char *issuer;   /* "iss" or NULL */
    const char *subject;  /* "sub" or NULL */
    long long expires;    /* "exp", truncated to whole seconds */
    int key_index;        /* index in the key set of the verifying key */
    /* Values the caller derives from the token, set before the token is
     * shared between threads; teleport_token_free() releases annex with
     * annex_free. */
    void *annex;
    void (*annex_free)(void *annex);
} teleport_token;

/*
 * Verify a compact JWS (RFC 7515 section 7.1) against keys and checks.
 * On TELEPORT_VERIFY_OK *token receives a new object to release with
 * teleport_token_free(); otherwise *token is NULL and error is filled.
 */
teleport_verify_status teleport_jwt_verify(const char *compact, size_t len,
                                           const teleport_keyset *keys,
                                           const teleport_checks *checks,
                                           teleport_token **token,
                                           teleport_error *error);
void teleport_token_free(teleport_token *token);

/*
 * Apply checks to a token that teleport_jwt_verify() verified earlier: the
 * allow-list, the dates, audience, issuer and user claim, without the
 * signature.  For a token verified once and checked again under another
 * configuration (a subrequest, a cached token).
 */
teleport_verify_status teleport_token_check(const teleport_token *token,
                                            const teleport_checks *checks,
                                            teleport_error *error);

/* Map "RS256" etc. to its TELEPORT_ALG_* bit; 0 when unknown (including
 * "none" and every HS* name, which are never supported). */
unsigned teleport_alg_from_name(const char *name);
const char *teleport_alg_name(unsigned alg);

/*
 * Copy len bytes of in to out for a log line: bytes outside printable
 * ASCII and the characters '"', '\\' and '%' become %XX, so a value can
 * neither end a quoted field nor start a new line, and httpd's error log
 * (which escapes backslashes again) shows it unchanged.  Truncated with
 * "..." to fit size bytes including the NUL.
 */
void teleport_escape(char *out, size_t size, const char *in, size_t len);

/*
 * Decode strict base64url (RFC 4648 section 5, no padding, no whitespace,
 * canonical trailing bits).  Returns a malloc'd buffer (NUL-terminated for
 * convenience, *out_len excludes the NUL) or NULL when the input is not
 * strict base64url.
 */
unsigned char *teleport_base64url_decode(const char *in, size_t in_len,
                                         size_t *out_len);

#endif /* TELEPORT_JWT_VERIFY_H */
