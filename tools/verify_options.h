/*
 * Command-line options of teleport-jwt-verify: the key source and the
 * checks that mod_auth_teleport's directives set, with the same defaults
 * and limits.
 */
#ifndef TELEPORT_VERIFY_OPTIONS_H
#define TELEPORT_VERIFY_OPTIONS_H

#include <stdio.h>

#include "apr_pools.h"
#include "apr_tables.h"
#include "apr_time.h"

/* Exit statuses. */
#define VERIFY_EXIT_VALID 0
#define VERIFY_EXIT_REJECTED 1
#define VERIFY_EXIT_USAGE 2

typedef struct {
    const char *token;              /* NULL or "-": read standard input */
    const char *proxy_url;          /* --proxy-url, or NULL */
    const char *jwks_file;          /* --jwks-file, or NULL */
    const char *ca_file;            /* NULL: the system CA bundle */
    apr_interval_time_t timeout;    /* connect and total fetch time */
    int timeout_set;
    apr_array_header_t *audiences;  /* of const char *, empty: no check */
    const char *issuer;             /* NULL: no check */
    long long clock_skew;           /* seconds */
    unsigned algorithms;            /* TELEPORT_ALG_* bits */
    int algorithms_set;
    const char *user_claim;
    apr_size_t max_token_size;      /* bytes */
    long long now;                  /* seconds since the epoch */
    int now_set;                    /* 0: now is the system clock */
    int help;
    int version;
} verify_options;

/*
 * Parse argv into options, with defaults for what argv does not set.
 * Returns NULL, or an error message that names the option and its value.
 * The values point into argv or are allocated from p.
 */
const char *verify_options_parse(apr_pool_t *p, int argc,
                                 const char *const *argv,
                                 verify_options *options);

/* Write the --help text. */
void verify_options_print_help(FILE *out);

#endif /* TELEPORT_VERIFY_OPTIONS_H */
