/*
 * libFuzzer target: one JWKS document through teleport_keyset_parse(), and
 * the listing calls the key cache makes on a parsed set.
 */
#include "../jwt_verify.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    teleport_key_info info;
    teleport_keyset *keys;
    teleport_error error;
    char skip_detail[256];
    int skipped = 0;
    size_t i;

    keys = teleport_keyset_parse((const char *)data, size, &skipped,
                                 skip_detail, sizeof(skip_detail), &error);
    if (keys == NULL) {
        return 0;
    }
    for (i = 0; teleport_keyset_key_info(keys, i, &info); i++) {
        if (info.kid[0] != '\0' && !teleport_keyset_has_kid(keys, info.kid)) {
            abort();
        }
    }
    teleport_keyset_free(keys);
    return 0;
}
