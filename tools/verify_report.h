/*
 * Verification and report of teleport-jwt-verify: runs the module's
 * verifier on one token and prints the keys, the decoded header and
 * claims, the key that verified the signature and the verdict.
 */
#ifndef TELEPORT_VERIFY_REPORT_H
#define TELEPORT_VERIFY_REPORT_H

#include "apr_pools.h"

#include "verify_options.h"
#include "../jwt_verify.h"

/*
 * Verify token (length bytes, not NUL-terminated) against keys with the
 * checks of options, print the report on standard output and return
 * VERIFY_EXIT_VALID or VERIFY_EXIT_REJECTED.  source names where the keys
 * came from.
 */
int verify_report(apr_pool_t *p, const verify_options *options,
                  const teleport_keyset *keys, const char *source,
                  const char *token, apr_size_t length);

/* Return a copy of text with control characters replaced by '?', for
 * messages that quote data read from a file or a server. */
const char *verify_printable(apr_pool_t *p, const char *text);

#endif /* TELEPORT_VERIFY_REPORT_H */
