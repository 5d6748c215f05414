/*
 * Counters of the module, summed over all child processes in a shared
 * memory segment, and the teleport-status handler that reports them with
 * the state of each key source.
 */
#ifndef TELEPORT_STATUS_H
#define TELEPORT_STATUS_H

#include "httpd.h"
#include "jwks_cache.h"

/* Create the segment for this generation and name the key sources it
 * reports (at most TELEPORT_STATUS_MAX_SOURCES; later ones are counted
 * together).  Returns an error string or NULL. */
#define TELEPORT_STATUS_MAX_SOURCES 64
const char *teleport_status_post_config(apr_pool_t *pconf,
                                        const teleport_key_source *const *sources,
                                        int source_count);

void teleport_status_count_accepted(void);
void teleport_status_count_rejected(const char *reason);
void teleport_status_count_unavailable(void);

typedef enum {
    TELEPORT_FETCH_SUCCEEDED,
    TELEPORT_FETCH_FAILED,
    TELEPORT_FETCH_SUPPRESSED   /* refused by TeleportJWKSMinRefresh */
} teleport_fetch_event;

void teleport_status_count_fetch(const teleport_key_source *source,
                                 teleport_fetch_event event);

/* The handler for "SetHandler teleport-status": plain text, or JSON with
 * ?json, or the Prometheus text format with ?metrics. */
int teleport_status_handler(request_rec *r);

/* mod_status's status_hook: the same summary on its page. */
int teleport_status_hook(request_rec *r, int flags);

#endif /* TELEPORT_STATUS_H */
