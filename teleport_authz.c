/*
 * Require teleport-role, teleport-trait and teleport-claim.  Each line is
 * parsed once at config time; at request time the providers read the
 * claims kept for the request, never the token again.
 */
#include "teleport_authz.h"
#include "teleport_request.h"

#include "ap_provider.h"
#include "http_config.h"
#include "http_log.h"
#include "http_request.h"
#include "mod_auth.h"

#include <string.h>

APLOG_USE_MODULE(auth_teleport);

/* A parsed "Require teleport-*" line: for roles, the accepted values; for
 * traits and claims, the name and then the accepted values. */
typedef struct {
    const char *name;
    apr_array_header_t *values;
} require_rule;

/* Split a Require line into words; NULL when it has no value. */
static require_rule *parse_rule(cmd_parms *cmd, const char *line, int named)
{
    require_rule *rule = apr_pcalloc(cmd->pool, sizeof(*rule));
    char *word;

    rule->values = apr_array_make(cmd->pool, 4, sizeof(const char *));
    while (*(word = ap_getword_conf(cmd->pool, &line)) != '\0') {
        if (named && rule->name == NULL) {
            rule->name = word;
            continue;
        }
        APR_ARRAY_PUSH(rule->values, const char *) = word;
    }
    return rule->values->nelts > 0 ? rule : NULL;
}

static const char *parse_role_rule(cmd_parms *cmd, const char *line,
                                   const void **parsed)
{
    *parsed = parse_rule(cmd, line, 0);
    return *parsed ? NULL : "Require teleport-role: give at least one role";
}

static const char *parse_trait_rule(cmd_parms *cmd, const char *line,
                                    const void **parsed)
{
    *parsed = parse_rule(cmd, line, 1);
    return *parsed ? NULL : "Require teleport-trait: give a trait name and "
                            "at least one value";
}

static const char *parse_claim_rule(cmd_parms *cmd, const char *line,
                                    const void **parsed)
{
    *parsed = parse_rule(cmd, line, 1);
    return *parsed ? NULL : "Require teleport-claim: give a claim name and "
                            "at least one value";
}

/* Return 1 when value (a string, or an array of strings) equals or
 * contains one of the rule's values. */
static int matches_rule(json_t *value, const require_rule *rule)
{
    json_t *item;
    size_t index;
    int i;

    for (i = 0; i < rule->values->nelts; i++) {
        const char *expected = APR_ARRAY_IDX(rule->values, i, const char *);

        if (json_is_string(value)
            && strcmp(json_string_value(value), expected) == 0) {
            return 1;
        }
        json_array_foreach(value, index, item) {
            if (json_is_string(item)
                && strcmp(json_string_value(item), expected) == 0) {
                return 1;
            }
        }
    }
    return 0;
}

/* Decide a rule against value from the request's claims.  A user
 * authenticated by another module has no Teleport claims: denied. */
static authz_status check_rule(request_rec *r, const char *provider,
                               const require_rule *rule, json_t *value,
                               const teleport_token *token)
{
    if (r->user == NULL) {
        return AUTHZ_DENIED_NO_USER;
    }
    if (token == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "TLP050: Require %s denied: user %s was not "
                      "authenticated by AuthType Teleport", provider,
                      teleport_log_escape(r->pool, r->user));
        return AUTHZ_DENIED;
    }
    if (value != NULL && matches_rule(value, rule)) {
        return AUTHZ_GRANTED;
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  "TLP051: Require %s%s%s denied for user %s: %s",
                  provider, rule->name ? " " : "",
                  rule->name ? rule->name : "",
                  teleport_log_escape(r->pool, r->user),
                  value == NULL ? "the token has no such claim"
                                : "no value matches");
    return AUTHZ_DENIED;
}

static authz_status check_role(request_rec *r, const char *line,
                               const void *parsed)
{
    const teleport_token *token = teleport_request_token(r);
    json_t *roles = token ? json_object_get(token->claims, "roles") : NULL;

    (void)line;
    return check_rule(r, "teleport-role", parsed, roles, token);
}

static authz_status check_trait(request_rec *r, const char *line,
                                const void *parsed)
{
    const require_rule *rule = parsed;
    const teleport_token *token = teleport_request_token(r);
    json_t *traits = token ? json_object_get(token->claims, "traits") : NULL;

    (void)line;
    return check_rule(r, "teleport-trait", rule,
                      json_object_get(traits, rule->name), token);
}

static authz_status check_claim(request_rec *r, const char *line,
                                const void *parsed)
{
    const require_rule *rule = parsed;
    const teleport_token *token = teleport_request_token(r);
    json_t *claims = token ? token->claims : NULL;

    (void)line;
    return check_rule(r, "teleport-claim", rule,
                      json_object_get(claims, rule->name), token);
}

static const authz_provider role_provider = { check_role, parse_role_rule };
static const authz_provider trait_provider = { check_trait,
                                               parse_trait_rule };
static const authz_provider claim_provider = { check_claim,
                                               parse_claim_rule };

void teleport_authz_register(apr_pool_t *p)
{
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "teleport-role",
                              AUTHZ_PROVIDER_VERSION, &role_provider,
                              AP_AUTH_INTERNAL_PER_CONF);
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "teleport-trait",
                              AUTHZ_PROVIDER_VERSION, &trait_provider,
                              AP_AUTH_INTERNAL_PER_CONF);
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "teleport-claim",
                              AUTHZ_PROVIDER_VERSION, &claim_provider,
                              AP_AUTH_INTERNAL_PER_CONF);
}
