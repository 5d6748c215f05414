/*
 * The identity a verified token gives a request: r->user and the TELEPORT_*
 * environment, the X-Teleport-* headers for a backend, and the removal of
 * client copies of those headers from every request.
 */
#ifndef TELEPORT_IDENTITY_H
#define TELEPORT_IDENTITY_H

#include "httpd.h"
#include "jwt_verify.h"

/* Build the values that teleport_identity_set() and
 * teleport_identity_set_headers() give every request with this token, and
 * keep them with it.  Call once, right after verification; return 0 when
 * out of memory. */
int teleport_identity_prepare(teleport_token *token);

/* Set r->user from user_claim, which the caller has validated for this
 * location (token->user names the claim of the location that first
 * verified the token), and the TELEPORT_* environment. */
void teleport_identity_set(request_rec *r, const char *user_claim,
                           const teleport_token *token);

/* Set X-Teleport-User, X-Teleport-Roles and X-Teleport-Traits in the
 * request headers that a proxy or CGI receives; call after
 * teleport_identity_set(). */
void teleport_identity_set_headers(request_rec *r,
                                   const teleport_token *token);

/* post_read_request hook: remove every client-supplied identity header,
 * whatever the location, and their names from Connection. */
int teleport_identity_strip_forged(request_rec *r);

#endif /* TELEPORT_IDENTITY_H */
