/*
 * The public keys the token fuzz target verifies against: one RSA-2048 key
 * listed with kid "rsa" and with kid "", and one P-256 key with kid "ec".
 * Generated once for fuzzing: the seed tokens in fuzz/seeds/token were
 * signed with the matching private keys, which were then discarded.
 */
#ifndef TELEPORT_FUZZ_KEYS_H
#define TELEPORT_FUZZ_KEYS_H

static const char fuzz_jwks[] =
    "{\"keys\":[{\"e\":\"AQAB\",\"kid\":\"rsa\",\"kty\":\"RSA\",\"n\":\"wGsYDXxrQ26cXNPZAw"
    "JpaVOnQlM7XDOYPuMgkDxibOYdJQHaJ1w9GYmtZfh7nq5RYAoM40N2tGJIE6xPbbVnmn"
    "8b_vnSc-nlpquDhTIA0hIhzhTWPNXvbkMxeQmnqmH4MjxKpUC2FMOv0z9TEO7qvtE2-T"
    "WAIMQpt1oVO7brY0-znuZtu_zNTNq4u6etkk79DQeEnOKWDZJYBySsQrhb2iEzyC_ZZm"
    "l_a9v6ZAJvb-w_l3cCACRUr-qhFlXEgv_eDb0hPHaGlhHDh7vwsMDigZymcVaYPdQi_I"
    "DZDw8KJDWc-cN7HYih1arGV8jak2TETY7xxfMPuH1lgKvTRtkHzQ\"},{\"e\":\"AQAB\",\""
    "kid\":\"\",\"kty\":\"RSA\",\"n\":\"wGsYDXxrQ26cXNPZAwJpaVOnQlM7XDOYPuMgkDxibOY"
    "dJQHaJ1w9GYmtZfh7nq5RYAoM40N2tGJIE6xPbbVnmn8b_vnSc-nlpquDhTIA0hIhzhT"
    "WPNXvbkMxeQmnqmH4MjxKpUC2FMOv0z9TEO7qvtE2-TWAIMQpt1oVO7brY0-znuZtu_z"
    "NTNq4u6etkk79DQeEnOKWDZJYBySsQrhb2iEzyC_ZZml_a9v6ZAJvb-w_l3cCACRUr-q"
    "hFlXEgv_eDb0hPHaGlhHDh7vwsMDigZymcVaYPdQi_IDZDw8KJDWc-cN7HYih1arGV8j"
    "ak2TETY7xxfMPuH1lgKvTRtkHzQ\"},{\"crv\":\"P-256\",\"kid\":\"ec\",\"kty\":\"EC\",\""
    "x\":\"W-DSa3uUwQBOj2WcVjwmkLAevqg0GvXr5V_D3wOSYlw\",\"y\":\"DsR49X7D5fv1j3"
    "oKkP_JYoc8roJAVSJ8StqTDnSoKh0\"}]}";

#endif /* TELEPORT_FUZZ_KEYS_H */
