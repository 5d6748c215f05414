/*
 * mod_auth_teleport: "AuthType Teleport" for Apache httpd 2.4.
 *
 * Teleport Application Access forwards each request with a JWT in the
 * Teleport-Jwt-Assertion header, signed by the cluster's JWT CA.  This module
 * verifies that assertion against the keys the Teleport proxy publishes at
 * /.well-known/jwks.json, checks its registered claims, and sets r->user and
 * TELEPORT_* environment variables, so that httpd's own Require rules and
 * the application behind it can rely on the identity.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_auth.h"

#include "apr_lib.h"
#include "apr_strings.h"

#include "jwks_cache.h"
#include "jwt_verify.h"
#include "teleport_authz.h"
#include "teleport_identity.h"
#include "teleport_request.h"
#include "teleport_status.h"
#include "token_cache.h"
#include "mod_status.h"

#include <string.h>

module AP_MODULE_DECLARE_DATA auth_teleport_module;

#define DEFAULT_HEADER "Teleport-Jwt-Assertion"
#define DEFAULT_USER_CLAIM "username"
#define DEFAULT_CLOCK_SKEW apr_time_from_sec(60)
#define DEFAULT_FETCH_TIMEOUT apr_time_from_sec(5)
#define DEFAULT_MAX_AGE apr_time_from_sec(3600)
#define DEFAULT_MIN_REFRESH apr_time_from_sec(60)
#define DEFAULT_MAX_STALE apr_time_from_sec(86400)
#define MAX_CLOCK_SKEW apr_time_from_sec(86400)
#define RISKY_CLOCK_SKEW apr_time_from_sec(300)
#define MAX_FETCH_TIMEOUT apr_time_from_sec(300)

typedef struct {
    const teleport_key_source *source;  /* keys from a proxy URL, or */
    teleport_keys *file_keys;           /* keys from a JWKS file */
    const char *source_directive;       /* which one this section set */
    int source_set;

    apr_array_header_t *audiences;      /* const char *; empty: no check */
    int audiences_set;
    const char *issuer;
    int issuer_set;
    unsigned algorithms;
    int algorithms_set;
    apr_interval_time_t clock_skew;
    int clock_skew_set;
    const char *header;
    int header_set;
    const char *user_claim;
    int user_claim_set;
    const char *ca_file;
    int ca_file_set;
    apr_interval_time_t fetch_timeout;
    int fetch_timeout_set;
    apr_interval_time_t max_age;
    int max_age_set;
    apr_interval_time_t min_refresh;
    int min_refresh_set;
    apr_interval_time_t max_stale;
    int max_stale_set;
    apr_size_t max_token_size;          /* bytes; checked before decoding */
    int max_token_size_set;
    int forward_headers;                /* set X-Teleport-* for the backend */
    int forward_headers_set;
    int forward_assertion;              /* pass the token on */
    int forward_assertion_set;
} teleport_dir_conf;

/* The verified token of a request, kept for the authorization providers
 * and for the subrequests and internal redirects of the same request. */
typedef struct {
    const teleport_token *token;
    const char *compact;     /* the header value it came from */
    const char *user_claim;  /* the claim that named the user */
} teleport_request_state;

/* Config creation and merging */

static void *create_dir_conf(apr_pool_t *p, char *dir)
{
    teleport_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));

    (void)dir;
    conf->audiences = apr_array_make(p, 2, sizeof(const char *));
    conf->algorithms = TELEPORT_ALG_DEFAULT;
    conf->clock_skew = DEFAULT_CLOCK_SKEW;
    conf->header = DEFAULT_HEADER;
    conf->user_claim = DEFAULT_USER_CLAIM;
    conf->fetch_timeout = DEFAULT_FETCH_TIMEOUT;
    conf->max_age = DEFAULT_MAX_AGE;
    conf->min_refresh = DEFAULT_MIN_REFRESH;
    conf->max_stale = DEFAULT_MAX_STALE;
    conf->max_token_size = TELEPORT_TOKEN_MAX_DEFAULT;
    conf->forward_assertion = 1;
    return conf;
}

#define MERGE(field) \
    conf->field = add->field##_set ? add->field : base->field; \
    conf->field##_set = add->field##_set || base->field##_set

static void *merge_dir_conf(apr_pool_t *p, void *base_conf, void *add_conf)
{
    teleport_dir_conf *base = base_conf;
    teleport_dir_conf *add = add_conf;
    teleport_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));

    conf->source = add->source_set ? add->source : base->source;
    conf->file_keys = add->source_set ? add->file_keys : base->file_keys;
    conf->source_directive = add->source_set ? add->source_directive
                                             : base->source_directive;
    conf->source_set = add->source_set || base->source_set;
    MERGE(audiences);
    MERGE(issuer);
    MERGE(algorithms);
    MERGE(clock_skew);
    MERGE(header);
    MERGE(user_claim);
    MERGE(ca_file);
    MERGE(fetch_timeout);
    MERGE(max_age);
    MERGE(min_refresh);
    MERGE(max_stale);
    MERGE(max_token_size);
    MERGE(forward_headers);
    MERGE(forward_assertion);
    return conf;
}

/* Directive handlers */

/* Parse a duration in seconds (units as for httpd's timeouts: ms, s, mi,
 * hr) that must lie within [minimum, maximum]. */
static const char *set_duration(cmd_parms *cmd, const char *arg,
                                apr_interval_time_t minimum,
                                apr_interval_time_t maximum,
                                apr_interval_time_t *value, int *set)
{
    apr_interval_time_t parsed;

    if (arg[0] == '\0' || arg[0] == '-' || !apr_isdigit(arg[0])
        || ap_timeout_parameter_parse(arg, &parsed, "s") != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a non-negative "
                            "number of seconds", cmd->cmd->name, arg);
    }
    if (parsed < minimum || parsed > maximum) {
        return apr_psprintf(cmd->pool, "%s: '%s' is out of range (%"
                            APR_TIME_T_FMT " to %" APR_TIME_T_FMT " s)",
                            cmd->cmd->name, arg, apr_time_sec(minimum),
                            apr_time_sec(maximum));
    }
    *value = parsed;
    *set = 1;
    return NULL;
}

static const char *claim_source(cmd_parms *cmd, teleport_dir_conf *conf)
{
    if (conf->source_directive != NULL
        && strcmp(conf->source_directive, cmd->cmd->name) != 0) {
        return apr_psprintf(cmd->pool, "%s: %s is already set in this "
                            "context; use one key source", cmd->cmd->name,
                            conf->source_directive);
    }
    conf->source_directive = cmd->cmd->name;
    conf->source_set = 1;
    return NULL;
}

/* Every TeleportProxyURL with the section that named it, so that the
 * socache is created and the parent can fetch each source once at startup.
 * pre_config makes it anew for every generation. */
typedef struct {
    const teleport_key_source *source;
    const teleport_dir_conf *conf;
} configured_source;

static apr_array_header_t *configured_sources;

/* TeleportTokenCache: entries per child process; 0 disables the cache.
 * Server-wide, reset by pre_config for every generation. */
#define DEFAULT_TOKEN_CACHE_ENTRIES 1024
#define MAX_TOKEN_CACHE_ENTRIES 1048576
static unsigned token_cache_entries = DEFAULT_TOKEN_CACHE_ENTRIES;

/* The verified-token cache of this child, created in child_init. */
static teleport_token_cache *token_cache;

static const char *set_proxy_url(cmd_parms *cmd, void *dconf, const char *arg)
{
    teleport_dir_conf *conf = dconf;
    configured_source *configured;
    teleport_key_source *source;
    const char *error = claim_source(cmd, conf);

    if (error != NULL) {
        return error;
    }
    error = teleport_key_source_create(cmd->pool, arg, &source);
    if (error != NULL) {
        return apr_pstrcat(cmd->pool, "TeleportProxyURL: ", error, NULL);
    }
    conf->source = source;
    conf->file_keys = NULL;
    configured = apr_array_push(configured_sources);
    configured->source = source;
    configured->conf = conf;
    return NULL;
}

static const char *set_jwks_file(cmd_parms *cmd, void *dconf, const char *arg)
{
    teleport_dir_conf *conf = dconf;
    const char *path = ap_server_root_relative(cmd->pool, arg);
    const char *skip_detail = NULL;
    const char *error = claim_source(cmd, conf);
    int skipped = 0;

    if (error != NULL) {
        return error;
    }
    if (path == NULL) {
        return apr_psprintf(cmd->pool, "TeleportJWKSFile: invalid path '%s'",
                            arg);
    }
    error = teleport_keys_load_file(cmd->pool, path, &conf->file_keys,
                                    &skipped, &skip_detail);
    if (error != NULL) {
        return apr_pstrcat(cmd->pool, "TeleportJWKSFile: ", error, NULL);
    }
    if (skipped > 0) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_WARNING, 0,
                     cmd->server,
                     "TLP020: TeleportJWKSFile %s: skipped %d unusable "
                     "key(s), the first because %s", path, skipped,
                     skip_detail);
    }
    conf->source = NULL;
    return NULL;
}

static const char *add_audience(cmd_parms *cmd, void *dconf, const char *arg)
{
    teleport_dir_conf *conf = dconf;

    if (arg[0] == '\0') {
        return "TeleportAudience: an audience must not be empty";
    }
    if (!conf->audiences_set) {
        conf->audiences = apr_array_make(cmd->pool, 2, sizeof(const char *));
        conf->audiences_set = 1;
    }
    APR_ARRAY_PUSH(conf->audiences, const char *) = arg;
    return NULL;
}

static const char *set_issuer(cmd_parms *cmd, void *dconf, const char *arg)
{
    teleport_dir_conf *conf = dconf;

    (void)cmd;
    if (arg[0] == '\0') {
        return "TeleportIssuer: the issuer must not be empty";
    }
    conf->issuer = arg;
    conf->issuer_set = 1;
    return NULL;
}

static const char *add_algorithm(cmd_parms *cmd, void *dconf, const char *arg)
{
    teleport_dir_conf *conf = dconf;
    unsigned algorithm = teleport_alg_from_name(arg);

    if (strcasecmp(arg, "none") == 0) {
        return "TeleportAlgorithms: 'none' would accept unsigned tokens";
    }
    if (strncasecmp(arg, "HS", 2) == 0) {
        return apr_psprintf(cmd->pool, "TeleportAlgorithms: '%s' is an HMAC "
                            "algorithm, which cannot be verified with a "
                            "public key", arg);
    }
    if (algorithm == 0) {
        return apr_psprintf(cmd->pool, "TeleportAlgorithms: unknown "
                            "algorithm '%s' (supported: RS256 RS384 RS512 "
                            "PS256 PS384 PS512 ES256 ES384 ES512 EdDSA)", arg);
    }
    if (!conf->algorithms_set) {
        conf->algorithms = 0;
        conf->algorithms_set = 1;
    }
    conf->algorithms |= algorithm;
    return NULL;
}

static const char *set_clock_skew(cmd_parms *cmd, void *dconf, const char *arg)
{
    teleport_dir_conf *conf = dconf;
    const char *error = set_duration(cmd, arg, 0, MAX_CLOCK_SKEW,
                                     &conf->clock_skew,
                                     &conf->clock_skew_set);

    if (error == NULL && conf->clock_skew > RISKY_CLOCK_SKEW) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_WARNING, 0,
                     cmd->server, "TLP025: TeleportClockSkew %s at %s:%d "
                     "accepts tokens more than %d s past their exp; "
                     "Teleport itself allows 60 s", arg,
                     cmd->directive->filename, cmd->directive->line_num,
                     (int)apr_time_sec(RISKY_CLOCK_SKEW));
    }
    return error;
}

static const char *set_header(cmd_parms *cmd, void *dconf, const char *arg)
{
    teleport_dir_conf *conf = dconf;
    const char *end = ap_scan_http_token(arg);

    if (arg[0] == '\0' || *end != '\0') {
        return apr_psprintf(cmd->pool, "TeleportHeader: '%s' is not a valid "
                            "header field name", arg);
    }
    conf->header = arg;
    conf->header_set = 1;
    return NULL;
}

static const char *set_user_claim(cmd_parms *cmd, void *dconf,
                                  const char *arg)
{
    teleport_dir_conf *conf = dconf;

    (void)cmd;
    if (arg[0] == '\0') {
        return "TeleportUserClaim: the claim name must not be empty";
    }
    conf->user_claim = arg;
    conf->user_claim_set = 1;
    return NULL;
}

static const char *set_ca_file(cmd_parms *cmd, void *dconf, const char *arg)
{
    teleport_dir_conf *conf = dconf;
    const char *path = ap_server_root_relative(cmd->pool, arg);
    apr_file_t *file;
    apr_status_t rv;

    if (path == NULL) {
        return apr_psprintf(cmd->pool, "TeleportCAFile: invalid path '%s'",
                            arg);
    }
    rv = apr_file_open(&file, path, APR_FOPEN_READ, APR_OS_DEFAULT,
                       cmd->temp_pool);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "TeleportCAFile: cannot read '%s': "
                            "%pm", path, &rv);
    }
    apr_file_close(file);
    conf->ca_file = path;
    conf->ca_file_set = 1;
    return NULL;
}

static const char *set_fetch_timeout(cmd_parms *cmd, void *dconf,
                                     const char *arg)
{
    teleport_dir_conf *conf = dconf;

    return set_duration(cmd, arg, apr_time_from_msec(1), MAX_FETCH_TIMEOUT,
                        &conf->fetch_timeout, &conf->fetch_timeout_set);
}

static const char *set_max_age(cmd_parms *cmd, void *dconf, const char *arg)
{
    teleport_dir_conf *conf = dconf;

    return set_duration(cmd, arg, apr_time_from_sec(1),
                        apr_time_from_sec(30 * 86400), &conf->max_age,
                        &conf->max_age_set);
}

static const char *set_min_refresh(cmd_parms *cmd, void *dconf,
                                   const char *arg)
{
    teleport_dir_conf *conf = dconf;

    return set_duration(cmd, arg, 0, apr_time_from_sec(86400),
                        &conf->min_refresh, &conf->min_refresh_set);
}

static const char *set_max_stale(cmd_parms *cmd, void *dconf, const char *arg)
{
    teleport_dir_conf *conf = dconf;

    return set_duration(cmd, arg, 0, apr_time_from_sec(30 * 86400),
                        &conf->max_stale, &conf->max_stale_set);
}

static const char *set_max_token_size(cmd_parms *cmd, void *dconf,
                                      const char *arg)
{
    teleport_dir_conf *conf = dconf;
    apr_int64_t size;
    char *end;

    size = apr_strtoi64(arg, &end, 10);
    if (arg[0] == '\0' || *end != '\0' || size < 256 || size > 1048576) {
        return apr_psprintf(cmd->pool, "TeleportMaxTokenSize: '%s' is not a "
                            "size in bytes from 256 to 1048576", arg);
    }
    conf->max_token_size = (apr_size_t)size;
    conf->max_token_size_set = 1;
    return NULL;
}

static const char *set_forward_headers(cmd_parms *cmd, void *dconf, int on)
{
    teleport_dir_conf *conf = dconf;

    (void)cmd;
    conf->forward_headers = on;
    conf->forward_headers_set = 1;
    return NULL;
}

static const char *set_forward_assertion(cmd_parms *cmd, void *dconf, int on)
{
    teleport_dir_conf *conf = dconf;

    (void)cmd;
    conf->forward_assertion = on;
    conf->forward_assertion_set = 1;
    return NULL;
}

static const char *set_token_cache(cmd_parms *cmd, void *dconf,
                                   const char *arg)
{
    const char *error = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    apr_int64_t entries;
    char *end;

    (void)dconf;
    if (error != NULL) {
        return error;
    }
    entries = apr_strtoi64(arg, &end, 10);
    if (arg[0] == '\0' || *end != '\0' || entries < 0
        || entries > MAX_TOKEN_CACHE_ENTRIES) {
        return apr_psprintf(cmd->pool, "TeleportTokenCache: '%s' is not a "
                            "number of entries from 0 to %d", arg,
                            MAX_TOKEN_CACHE_ENTRIES);
    }
    token_cache_entries = (unsigned)entries;
    return NULL;
}

static const char *set_cache(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *error = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dconf;
    if (error != NULL) {
        return error;
    }
    return teleport_cache_configure(cmd, arg);
}

#define DIRECTIVE_CONTEXT (RSRC_CONF | ACCESS_CONF)

static const command_rec teleport_commands[] = {
    AP_INIT_TAKE1("TeleportProxyURL", set_proxy_url, NULL, DIRECTIVE_CONTEXT,
                  "Teleport proxy public address; keys come from "
                  "URL/.well-known/jwks.json"),
    AP_INIT_TAKE1("TeleportJWKSFile", set_jwks_file, NULL, DIRECTIVE_CONTEXT,
                  "JWKS file to verify tokens with instead of fetching"),
    AP_INIT_ITERATE("TeleportAudience", add_audience, NULL, DIRECTIVE_CONTEXT,
                    "Accepted 'aud' values (the application's URI in "
                    "Teleport)"),
    AP_INIT_TAKE1("TeleportIssuer", set_issuer, NULL, DIRECTIVE_CONTEXT,
                  "Required 'iss' value (the Teleport cluster name)"),
    AP_INIT_ITERATE("TeleportAlgorithms", add_algorithm, NULL,
                    DIRECTIVE_CONTEXT,
                    "Accepted signature algorithms (default RS256 ES256)"),
    AP_INIT_TAKE1("TeleportClockSkew", set_clock_skew, NULL,
                  DIRECTIVE_CONTEXT,
                  "Leeway for exp, nbf and iat in seconds (default 60)"),
    AP_INIT_TAKE1("TeleportHeader", set_header, NULL, DIRECTIVE_CONTEXT,
                  "Request header carrying the token (default "
                  "Teleport-Jwt-Assertion; Authorization means Bearer)"),
    AP_INIT_TAKE1("TeleportUserClaim", set_user_claim, NULL,
                  DIRECTIVE_CONTEXT,
                  "Claim that becomes the user name (default username)"),
    AP_INIT_TAKE1("TeleportCAFile", set_ca_file, NULL, DIRECTIVE_CONTEXT,
                  "CA bundle for the Teleport proxy's certificate"),
    AP_INIT_TAKE1("TeleportFetchTimeout", set_fetch_timeout, NULL,
                  DIRECTIVE_CONTEXT,
                  "Connect and total timeout of a JWKS fetch in seconds "
                  "(default 5)"),
    AP_INIT_TAKE1("TeleportJWKSMaxAge", set_max_age, NULL, DIRECTIVE_CONTEXT,
                  "Refresh keys older than this many seconds (default 3600)"),
    AP_INIT_TAKE1("TeleportJWKSMinRefresh", set_min_refresh, NULL,
                  DIRECTIVE_CONTEXT,
                  "At most one JWKS fetch per URL in this many seconds "
                  "(default 60)"),
    AP_INIT_TAKE1("TeleportJWKSMaxStale", set_max_stale, NULL,
                  DIRECTIVE_CONTEXT,
                  "Keep using keys this many seconds after their fetch when "
                  "refreshes fail (default 86400)"),
    AP_INIT_TAKE1("TeleportMaxTokenSize", set_max_token_size, NULL,
                  DIRECTIVE_CONTEXT,
                  "Longest token accepted in bytes, checked before any "
                  "decoding (default 16384)"),
    AP_INIT_FLAG("TeleportForwardHeaders", set_forward_headers, NULL,
                 DIRECTIVE_CONTEXT,
                 "On: pass X-Teleport-User, X-Teleport-Roles and "
                 "X-Teleport-Traits to the backend (default Off)"),
    AP_INIT_FLAG("TeleportForwardAssertion", set_forward_assertion, NULL,
                 DIRECTIVE_CONTEXT,
                 "Off: remove the token header once verified (default On)"),
    AP_INIT_TAKE1("TeleportTokenCache", set_token_cache, NULL, RSRC_CONF,
                  "Verified tokens remembered per child process (default "
                  "1024; 0 disables)"),
    AP_INIT_TAKE1("TeleportCache", set_cache, NULL, RSRC_CONF,
                  "socache provider[:arguments] shared by all children "
                  "(default shmcb)"),
    { NULL }
};


#define LOG_VALUE_MAX 256

const char *teleport_log_escape(apr_pool_t *p, const char *value)
{
    char *escaped = apr_palloc(p, LOG_VALUE_MAX);

    teleport_escape(escaped, LOG_VALUE_MAX, value, strlen(value));
    return escaped;
}

/* Startup checks */

static const char *const source_directives[] = {
    "TeleportProxyURL", "TeleportJWKSFile", NULL
};
static const char *const audience_directives[] = { "TeleportAudience", NULL };

/* Return 1 when one of names is set in the directive list at node or below
 * it; <VirtualHost> sections are skipped when skip_vhosts is set. */
static int scope_sets(const ap_directive_t *node, const char *const *names,
                      int skip_vhosts)
{
    const char *const *name;

    for (; node != NULL; node = node->next) {
        for (name = names; *name != NULL; name++) {
            if (strcasecmp(node->directive, *name) == 0) {
                return 1;
            }
        }
        if (skip_vhosts && strcasecmp(node->directive, "<VirtualHost") == 0) {
            continue;
        }
        if (scope_sets(node->first_child, names, skip_vhosts)) {
            return 1;
        }
    }
    return 0;
}

/* Return 1 when names are set where they can reach the section holding
 * node: in its <VirtualHost>, or in the main server outside any vhost. */
static int reachable(const ap_directive_t *node, const char *const *names)
{
    const ap_directive_t *vhost = node->parent;

    while (vhost != NULL
           && strcasecmp(vhost->directive, "<VirtualHost") != 0) {
        vhost = vhost->parent;
    }
    if (vhost != NULL && scope_sets(vhost->first_child, names, 0)) {
        return 1;
    }
    return scope_sets(ap_conftree, names, 1);
}

static int is_teleport_auth_type(apr_pool_t *p, const ap_directive_t *node)
{
    const char *args = node->args;

    return strcasecmp(node->directive, "AuthType") == 0
           && strcasecmp(ap_getword_conf(p, &args), TELEPORT_AUTH_TYPE) == 0;
}

/* Check every "AuthType Teleport" for a key source and an audience.
 * Returns the number of errors logged. */
static int check_auth_types(apr_pool_t *p, const ap_directive_t *node,
                            server_rec *s)
{
    int errors = 0;

    for (; node != NULL; node = node->next) {
        errors += check_auth_types(p, node->first_child, s);
        if (!is_teleport_auth_type(p, node)) {
            continue;
        }
        if (!reachable(node, source_directives)) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, s,
                         "TLP021: AuthType Teleport at %s:%d has no key "
                         "source: set TeleportProxyURL or TeleportJWKSFile",
                         node->filename, node->line_num);
            errors++;
        }
        else if (!reachable(node, audience_directives)) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_WARNING, 0, s,
                         "TLP022: AuthType Teleport at %s:%d sets no "
                         "TeleportAudience, so it accepts tokens issued for "
                         "any application of the cluster", node->filename,
                         node->line_num);
        }
    }
    return errors;
}

/* Request handling */

static int is_teleport_request(request_rec *r)
{
    const char *type = ap_auth_type(r);

    return type != NULL && strcasecmp(type, TELEPORT_AUTH_TYPE) == 0;
}

static int uses_authorization_header(const teleport_dir_conf *conf)
{
    return strcasecmp(conf->header, "Authorization") == 0;
}

/* Add the challenge that RFC 9110 section 11.6.1 requires with a 401. */
static void set_challenge(request_rec *r, const teleport_dir_conf *conf)
{
    const char *scheme = uses_authorization_header(conf) ? "Bearer"
                                                         : TELEPORT_AUTH_TYPE;
    const char *realm = ap_auth_name(r);
    const char *field = r->proxyreq == PROXYREQ_PROXY ? "Proxy-Authenticate"
                                                      : "WWW-Authenticate";

    if (realm != NULL) {
        scheme = apr_psprintf(r->pool, "%s realm=\"%s\"", scheme,
                              ap_escape_quotes(r->pool, realm));
    }
    apr_table_setn(r->err_headers_out, field, scheme);
}

static int reject(request_rec *r, const teleport_dir_conf *conf,
                  const char *reason, const char *kid, const char *detail)
{
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  "TLP030: token rejected: reason=%s kid=\"%s\" uri=%s: %s",
                  reason, kid, teleport_log_escape(r->pool, r->uri), detail);
    apr_table_setn(r->notes, "teleport-reason", reason);
    teleport_status_count_rejected(reason);
    set_challenge(r, conf);
    return HTTP_UNAUTHORIZED;
}

static int unavailable(request_rec *r, const teleport_dir_conf *conf,
                       apr_interval_time_t retry_after)
{
    apr_time_t seconds;

    if (retry_after <= 0) {
        retry_after = conf->min_refresh;
    }
    seconds = apr_time_sec(retry_after + apr_time_from_sec(1) - 1);
    if (seconds < 1) {
        seconds = 1;
    }
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                  "TLP031: no usable keys from %s for uri=%s; answering 503 "
                  "until a JWKS fetch succeeds", conf->source->url,
                  teleport_log_escape(r->pool, r->uri));
    apr_table_setn(r->notes, "teleport-reason", "no_keys");
    teleport_status_count_unavailable();
    apr_table_setn(r->err_headers_out, "Retry-After",
                   apr_psprintf(r->pool, "%" APR_TIME_T_FMT, seconds));
    return HTTP_SERVICE_UNAVAILABLE;
}

typedef enum {
    ASSERTION_ABSENT,
    ASSERTION_FOUND,
    ASSERTION_INVALID
} assertion_status;

/* Read the one token of this request into *token.  On ASSERTION_INVALID
 * *reason names the problem. */
static assertion_status read_assertion(request_rec *r,
                                       const teleport_dir_conf *conf,
                                       const char **token,
                                       const char **reason)
{
    const char *value = apr_table_get(r->headers_in, conf->header);

    if (value == NULL) {
        return ASSERTION_ABSENT;
    }
    /* httpd joins repeated header fields with ", "; a compact JWS has no
     * comma, so a comma means more than one assertion. */
    if (strchr(value, ',') != NULL) {
        *reason = "multiple_headers";
        return ASSERTION_INVALID;
    }
    while (apr_isspace(*value)) {
        value++;
    }
    if (uses_authorization_header(conf)) {
        if (strncasecmp(value, "Bearer ", 7) != 0) {
            *reason = "bad_scheme";
            return ASSERTION_INVALID;
        }
        value += 7;
        while (*value == ' ') {
            value++;
        }
    }
    *token = value;
    return ASSERTION_FOUND;
}

static void fill_fetch_options(const teleport_dir_conf *conf,
                               teleport_fetch_options *options)
{
    options->ca_file = conf->ca_file;
    options->fetch_timeout = conf->fetch_timeout;
    options->max_age = conf->max_age;
    options->min_refresh = conf->min_refresh;
    options->max_stale = conf->max_stale > conf->max_age ? conf->max_stale
                                                         : conf->max_age;
}

static void fill_checks(request_rec *r, const teleport_dir_conf *conf,
                        teleport_checks *checks)
{
    memset(checks, 0, sizeof(*checks));
    checks->algorithms = conf->algorithms;
    checks->audiences = (const char *const *)conf->audiences->elts;
    checks->audience_count = (size_t)conf->audiences->nelts;
    checks->issuer = conf->issuer;
    checks->clock_skew = apr_time_sec(conf->clock_skew);
    checks->now = apr_time_sec(r->request_time);
    checks->user_claim = conf->user_claim;
    checks->max_token_length = conf->max_token_size;
}

static teleport_keys *load_keys(request_rec *r, const teleport_dir_conf *conf,
                                const teleport_fetch_options *options,
                                int force_refresh,
                                apr_interval_time_t *retry_after)
{
    if (conf->file_keys != NULL) {
        return force_refresh ? NULL : conf->file_keys;
    }
    return teleport_keys_acquire(r, conf->source, options, force_refresh,
                                 retry_after);
}

static apr_status_t token_cleanup(void *data)
{
    teleport_token_free(data);
    return APR_SUCCESS;
}

static void keep_token(request_rec *r, const teleport_dir_conf *conf,
                       const teleport_token *token, const char *compact)
{
    teleport_request_state *state = apr_pcalloc(r->pool, sizeof(*state));

    state->token = token;
    state->compact = compact != NULL ? compact : "";
    state->user_claim = conf->user_claim;
    ap_set_module_config(r->request_config, &auth_teleport_module, state);
}

const teleport_token *teleport_request_token(request_rec *r)
{
    teleport_request_state *state;

    state = ap_get_module_config(r->request_config, &auth_teleport_module);
    return state != NULL ? state->token : NULL;
}

/* Return the token that the main request (for a subrequest) or the
 * redirecting request (for an internal redirect) verified from the same
 * header value, or from any value when r has none because
 * TeleportForwardAssertion Off removed it.  NULL when there is none.  Both
 * requests share r's pool, so the token outlives r. */
static const teleport_token *inherited_token(request_rec *r,
                                             const teleport_dir_conf *conf,
                                             const char *compact)
{
    request_rec *other = r->main != NULL ? r->main : r->prev;
    teleport_request_state *state;

    if (other == NULL) {
        return NULL;
    }
    state = ap_get_module_config(other->request_config,
                                 &auth_teleport_module);
    if (state == NULL
        || (compact != NULL && strcmp(state->compact, compact) != 0)
        || strcmp(state->user_claim, conf->user_claim) != 0) {
        return NULL;
    }
    return state->token;
}

/* Return the token memo of r's connection, creating it on the first
 * request that uses the token cache; NULL for an HTTP/2 stream, whose
 * connection record (mod_http2's secondary connection) serves one request
 * only. */
static teleport_token_memo *connection_memo(request_rec *r)
{
    conn_rec *c = r->connection;
    teleport_token_memo *memo;

    if (c->master != NULL) {
        return NULL;
    }
    memo = ap_get_module_config(c->conn_config, &auth_teleport_module);
    if (memo == NULL) {
        memo = teleport_token_memo_create(c->pool);
        ap_set_module_config(c->conn_config, &auth_teleport_module, memo);
    }
    return memo;
}

/* Verify the token with keys, or take the result of an earlier
 * verification of the same bytes with the same keys from the token cache.
 * key NULL bypasses the cache.  Either way this location's checks apply,
 * and the token lives until r's pool is cleared. */
static teleport_verify_status verify_with_keys(request_rec *r,
                                               const teleport_keys *keys,
                                               const char *compact,
                                               teleport_token_key *key,
                                               const teleport_checks *checks,
                                               const teleport_token **token,
                                               teleport_error *error)
{
    const unsigned char *version = teleport_keys_version(keys);
    teleport_token_memo *memo = NULL;
    teleport_token *verified;
    teleport_verify_status status;

    if (key != NULL) {
        memo = connection_memo(r);
        *token = teleport_token_cache_get(token_cache, memo, key, version,
                                          r->pool);
        if (*token != NULL) {
            return teleport_token_check(*token, checks, error);
        }
    }
    status = teleport_jwt_verify(compact, strlen(compact),
                                 teleport_keys_set(keys), checks, &verified,
                                 error);
    if (status != TELEPORT_VERIFY_OK) {
        return status;
    }
    if (!teleport_identity_prepare(verified)) {
        teleport_token_free(verified);
        ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_ENOMEM, r,
                      "TLP034: out of memory building the identity of a "
                      "verified token");
        /* error->reason stays NULL, so authenticate() returns 503, as
         * it does when keys are missing. */
        error->reason = NULL;
        return TELEPORT_VERIFY_INVALID;
    }
    if (key != NULL) {
        teleport_token_cache_put(token_cache, memo, key, version, verified,
                                 r->pool);
    }
    else {
        apr_pool_cleanup_register(r->pool, verified, token_cleanup,
                                  apr_pool_cleanup_null);
    }
    *token = verified;
    return TELEPORT_VERIFY_OK;
}

/* Verify with the cached keys, and once more after a refresh when the key
 * is not among them (a rotation, or a kid-less token of a new key). */
static teleport_verify_status verify(request_rec *r,
                                     const teleport_dir_conf *conf,
                                     const char *compact,
                                     const teleport_token **token,
                                     teleport_error *error,
                                     apr_interval_time_t *retry_after)
{
    teleport_token_key key;
    teleport_fetch_options options;
    teleport_checks checks;
    teleport_keys *keys;
    teleport_keys *fresh;
    teleport_verify_status status;
    size_t length;
    int use_cache;

    fill_fetch_options(conf, &options);
    fill_checks(r, conf, &checks);
    /* A token over this location's size cap never comes from the cache,
     * so the verifier rejects it before any decoding. */
    length = strlen(compact);
    use_cache = token_cache != NULL && length <= conf->max_token_size;
    teleport_token_key_init(&key, compact, length);

    keys = load_keys(r, conf, &options, 0, retry_after);
    if (keys == NULL) {
        return TELEPORT_VERIFY_KEY_NOT_FOUND;
    }
    status = verify_with_keys(r, keys, compact, use_cache ? &key : NULL,
                              &checks, token, error);
    if (status != TELEPORT_VERIFY_KEY_NOT_FOUND) {
        return status;
    }
    fresh = load_keys(r, conf, &options, 1, retry_after);
    if (fresh == NULL || fresh == keys) {
        return status;
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  "TLP032: verifying again with refreshed keys");
    return verify_with_keys(r, fresh, compact, use_cache ? &key : NULL,
                            &checks, token, error);
}

/* Apply this location's checks to a token verified earlier for the same
 * request, without the signature work. */
static teleport_verify_status recheck(request_rec *r,
                                      const teleport_dir_conf *conf,
                                      const teleport_token *token,
                                      teleport_error *error)
{
    teleport_checks checks;

    fill_checks(r, conf, &checks);
    return teleport_token_check(token, &checks, error);
}

static int authenticate(request_rec *r)
{
    teleport_dir_conf *conf;
    const teleport_token *token = NULL;
    teleport_error error;
    apr_interval_time_t retry_after = -1;
    teleport_verify_status status;
    const char *compact = NULL;
    const char *reason = NULL;

    if (!is_teleport_request(r)) {
        return DECLINED;
    }
    conf = ap_get_module_config(r->per_dir_config, &auth_teleport_module);
    if (conf->source == NULL && conf->file_keys == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "TLP033: AuthType Teleport for uri=%s has no key "
                      "source: set TeleportProxyURL or TeleportJWKSFile",
                      teleport_log_escape(r->pool, r->uri));
        return HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (read_assertion(r, conf, &compact, &reason)) {
    case ASSERTION_ABSENT:
        token = inherited_token(r, conf, NULL);
        if (token == NULL) {
            set_challenge(r, conf);
            return HTTP_UNAUTHORIZED;
        }
        break;
    case ASSERTION_INVALID:
        return reject(r, conf, reason, "",
                      strcmp(reason, "bad_scheme") == 0
                      ? "the Authorization scheme is not Bearer"
                      : "more than one assertion header, or a comma in it");
    case ASSERTION_FOUND:
        token = inherited_token(r, conf, compact);
        break;
    }

    memset(&error, 0, sizeof(error));
    status = token != NULL ? recheck(r, conf, token, &error)
                           : verify(r, conf, compact, &token, &error,
                                    &retry_after);
    if (status != TELEPORT_VERIFY_OK && error.reason == NULL) {
        return unavailable(r, conf, retry_after);
    }
    if (status != TELEPORT_VERIFY_OK) {
        return reject(r, conf, error.reason, error.kid, error.detail);
    }

    teleport_identity_set(r, conf->user_claim, token);
    keep_token(r, conf, token, compact);
    teleport_status_count_accepted();
    if (conf->forward_headers) {
        teleport_identity_set_headers(r, token);
    }
    if (!conf->forward_assertion) {
        apr_table_unset(r->headers_in, conf->header);
    }
    return OK;
}

static int note_auth_failure(request_rec *r, const char *auth_type)
{
    teleport_dir_conf *conf;

    if (strcasecmp(auth_type, TELEPORT_AUTH_TYPE) != 0) {
        return DECLINED;
    }
    conf = ap_get_module_config(r->per_dir_config, &auth_teleport_module);
    set_challenge(r, conf);
    return OK;
}

/* Server lifecycle */

static int pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    (void)plog;
    (void)ptemp;
    configured_sources = apr_array_make(pconf, 4, sizeof(configured_source));
    token_cache_entries = DEFAULT_TOKEN_CACHE_ENTRIES;
    teleport_cache_pre_config(pconf);
    return OK;
}

static int check_config(apr_pool_t *pconf, apr_pool_t *plog,
                        apr_pool_t *ptemp, server_rec *s)
{
    const char *error;

    (void)plog;
    if (check_auth_types(ptemp, ap_conftree, s) > 0) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (configured_sources->nelts == 0) {
        return OK;
    }
    error = teleport_cache_check_config(pconf);
    if (error != NULL) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, s,
                     "TLP023: %s", error);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

/* Return each configured key source once, with the section that named it
 * first. */
static apr_array_header_t *unique_sources(apr_pool_t *p)
{
    apr_array_header_t *unique = apr_array_make(p, 4,
                                                sizeof(configured_source));
    apr_hash_t *seen = apr_hash_make(p);
    int i;

    for (i = 0; i < configured_sources->nelts; i++) {
        configured_source *configured = &APR_ARRAY_IDX(configured_sources, i,
                                                       configured_source);
        const unsigned char *id = configured->source->id;

        if (apr_hash_get(seen, id, TELEPORT_SOURCE_ID_LEN) == NULL) {
            apr_hash_set(seen, id, TELEPORT_SOURCE_ID_LEN, configured);
            *(configured_source *)apr_array_push(unique) = *configured;
        }
    }
    return unique;
}

/* The key sources of a unique_sources() array, as a plain list. */
static const teleport_key_source *const *source_list(
    apr_pool_t *pconf, const apr_array_header_t *sources)
{
    const teleport_key_source **list;
    int i;

    list = apr_pcalloc(pconf, sizeof(*list) * (sources->nelts + 1));
    for (i = 0; i < sources->nelts; i++) {
        list[i] = APR_ARRAY_IDX(sources, i, configured_source).source;
    }
    return list;
}

/* Fetch each key source once in the parent, with the fetch settings of
 * the first section that names it. */
static void prefetch_sources(server_rec *s, apr_pool_t *ptemp,
                             const apr_array_header_t *sources)
{
    int i;

    for (i = 0; i < sources->nelts; i++) {
        configured_source *configured = &APR_ARRAY_IDX(sources, i,
                                                       configured_source);
        teleport_fetch_options options;

        fill_fetch_options(configured->conf, &options);
        teleport_cache_prefetch(s, ptemp, configured->source, &options);
    }
}

static int post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                       server_rec *s)
{
    apr_array_header_t *sources = unique_sources(pconf);
    const teleport_key_source *const *list = source_list(pconf, sources);
    const char *error;
    int status;

    (void)plog;
    error = teleport_status_post_config(pconf, list, sources->nelts);
    if (error != NULL) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "TLP024: %s; "
                     "teleport-status will answer 503", error);
    }
    if (sources->nelts == 0) {
        return OK;
    }
    status = teleport_cache_post_config(pconf, ptemp, s, list,
                                        sources->nelts);
    /* httpd reads its configuration twice at startup; fetch only once,
     * when the server is about to run. */
    if (status == OK
        && ap_state_query(AP_SQ_MAIN_STATE) != AP_SQ_MS_CREATE_PRE_CONFIG) {
        prefetch_sources(s, ptemp, sources);
    }
    return status;
}

static void child_init(apr_pool_t *pchild, server_rec *s)
{
    teleport_cache_child_init(pchild, s);
    token_cache = teleport_token_cache_create(pchild, token_cache_entries);
}

static void register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_authn(authenticate, NULL, NULL, APR_HOOK_MIDDLE,
                        AP_AUTH_INTERNAL_PER_CONF);
    ap_hook_note_auth_failure(note_auth_failure, NULL, NULL,
                              APR_HOOK_MIDDLE);
    ap_hook_post_read_request(teleport_identity_strip_forged, NULL, NULL,
                              APR_HOOK_REALLY_FIRST);
    ap_hook_handler(teleport_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, teleport_status_hook, NULL, NULL,
                      APR_HOOK_MIDDLE);

    teleport_authz_register(p);
}

AP_DECLARE_MODULE(auth_teleport) = {
    STANDARD20_MODULE_STUFF,
    create_dir_conf,
    merge_dir_conf,
    NULL,
    NULL,
    teleport_commands,
    register_hooks,
    AP_MODULE_FLAG_NONE
};
