/*
 * Request state shared by the module's units: the token verified for a
 * request, and escaping for log lines.
 */
#ifndef TELEPORT_REQUEST_H
#define TELEPORT_REQUEST_H

#include "httpd.h"
#include "jwt_verify.h"

/* The AuthType this module handles, and the AUTH_TYPE it sets. */
#define TELEPORT_AUTH_TYPE "Teleport"

/* The token AuthType Teleport verified for r, or NULL when it verified
 * none (no Teleport authentication, or another module authenticated). */
const teleport_token *teleport_request_token(request_rec *r);

/* Escape a value from a request or token for a log line (see
 * teleport_escape), capped at 256 bytes. */
const char *teleport_log_escape(apr_pool_t *p, const char *value);

#endif /* TELEPORT_REQUEST_H */
