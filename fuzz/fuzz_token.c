/*
 * libFuzzer target: one compact JWS through teleport_jwt_verify() with
 * every algorithm allowed and every claim check enabled.
 */
#include "../jwt_verify.h"
#include "fuzz_keys.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static teleport_keyset *keys;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const audiences[] = { "http://localhost:8080" };
    teleport_checks checks = { 0 };
    teleport_token *token = NULL;
    teleport_error error;
    char *compact;

    if (keys == NULL) {
        keys = teleport_keyset_parse(fuzz_jwks, strlen(fuzz_jwks), NULL,
                                     NULL, 0, &error);
        if (keys == NULL) {
            abort();
        }
    }

    /* The module hands the verifier a NUL-terminated header value. */
    compact = malloc(size + 1);
    if (compact == NULL) {
        return 0;
    }
    memcpy(compact, data, size);
    compact[size] = '\0';

    checks.algorithms = ~0u;
    checks.audiences = audiences;
    checks.audience_count = 1;
    checks.issuer = "teleport.example.com";
    checks.clock_skew = 60;
    checks.now = 1700000000;
    checks.user_claim = "username";

    if (teleport_jwt_verify(compact, size, keys, &checks, &token, &error)
        == TELEPORT_VERIFY_OK) {
        teleport_token_free(token);
    }
    free(compact);
    return 0;
}
