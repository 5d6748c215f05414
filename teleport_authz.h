/*
 * Authorization providers for Require: teleport-role, teleport-trait and
 * teleport-claim, deciding on the claims that AuthType Teleport verified
 * for the request.
 */
#ifndef TELEPORT_AUTHZ_H
#define TELEPORT_AUTHZ_H

#include "apr_pools.h"

/* Register the three providers; call from register_hooks. */
void teleport_authz_register(apr_pool_t *p);

#endif /* TELEPORT_AUTHZ_H */
