/*
 * Command-line options of teleport-jwt-verify.
 */
#include "verify_options.h"

#include "apr_file_io.h"
#include "apr_getopt.h"
#include "apr_lib.h"
#include "apr_strings.h"

#include "../jwt_verify.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

/* Defaults and limits, the same as the module's directives. */
#define DEFAULT_TIMEOUT_SECONDS 5
#define MAX_TIMEOUT_SECONDS 300
#define DEFAULT_CLOCK_SKEW 60
#define MAX_CLOCK_SKEW 86400
#define DEFAULT_USER_CLAIM "username"
#define MIN_TOKEN_SIZE 256
#define MAX_TOKEN_SIZE 1048576

/* Latest --now accepted: 9999-12-31T23:59:59Z. */
#define MAX_NOW 253402300799LL

enum {
    OPT_PROXY_URL = 256,
    OPT_CA_FILE,
    OPT_TIMEOUT,
    OPT_JWKS_FILE,
    OPT_AUDIENCE,
    OPT_ISSUER,
    OPT_CLOCK_SKEW,
    OPT_ALGORITHMS,
    OPT_USER_CLAIM,
    OPT_MAX_TOKEN_SIZE,
    OPT_NOW,
    OPT_VERSION
};

static const apr_getopt_option_t option_table[] = {
    { "proxy-url", OPT_PROXY_URL, 1, NULL },
    { "ca-file", OPT_CA_FILE, 1, NULL },
    { "timeout", OPT_TIMEOUT, 1, NULL },
    { "jwks-file", OPT_JWKS_FILE, 1, NULL },
    { "audience", OPT_AUDIENCE, 1, NULL },
    { "issuer", OPT_ISSUER, 1, NULL },
    { "clock-skew", OPT_CLOCK_SKEW, 1, NULL },
    { "algorithms", OPT_ALGORITHMS, 1, NULL },
    { "user-claim", OPT_USER_CLAIM, 1, NULL },
    { "max-token-size", OPT_MAX_TOKEN_SIZE, 1, NULL },
    { "now", OPT_NOW, 1, NULL },
    { "help", 'h', 0, NULL },
    { "version", OPT_VERSION, 0, NULL },
    { NULL, 0, 0, NULL }
};

void verify_options_print_help(FILE *out)
{
    fputs(
"Usage: teleport-jwt-verify (--proxy-url URL | --jwks-file PATH) [options]\n"
"                           [TOKEN | -]\n"
"\n"
"Verifies a Teleport Application Access JWT with the verifier and checks of\n"
"mod_auth_teleport, without httpd.  Prints the token's header and claims\n"
"(marked \"unverified\" unless the signature verifies; the signature itself\n"
"is never printed), the key that verified it, and then \"valid\" or\n"
"\"rejected: reason=WORD: DETAIL\" with the reason word the module logs.\n"
"\n"
"TOKEN is the value of the Teleport-Jwt-Assertion header; \"Bearer \" in\n"
"front of it is removed.  Without TOKEN, or with \"-\", the token is read\n"
"from standard input, which keeps it out of the process list.\n"
"\n"
"Key source (exactly one):\n"
"  --proxy-url URL         the Teleport proxy's public address, as for\n"
"                          TeleportProxyURL; keys are fetched once from\n"
"                          URL/.well-known/jwks.json.  https is required,\n"
"                          except for 127.0.0.0/8, ::1 and localhost;\n"
"                          /.well-known/jwks-oidc and other documents are\n"
"                          rejected.  Environment proxy settings are ignored.\n"
"  --ca-file PATH          PEM CA bundle that verifies the proxy's\n"
"                          certificate (default: the system CA bundle)\n"
"  --timeout SECONDS       connect and total timeout of the fetch, in\n"
"                          seconds from 1 to 300 (default: 5)\n"
"  --jwks-file PATH        JWKS document to verify with, as for\n"
"                          TeleportJWKSFile\n"
"\n"
"Checks (the directive each one mirrors in brackets):\n"
"  --audience URI          accepted \"aud\" value, compared exactly; repeat\n"
"                          for more (default: no check) [TeleportAudience]\n"
"  --issuer NAME           required \"iss\", the cluster name (default: no\n"
"                          check) [TeleportIssuer]\n"
"  --clock-skew SECONDS    leeway for exp, nbf and iat, in seconds from 0\n"
"                          to 86400 (default: 60) [TeleportClockSkew]\n"
"  --algorithms \"ALG ...\"  accepted \"alg\" values, separated by spaces or\n"
"                          commas, from RS256 RS384 RS512 PS256 PS384 PS512\n"
"                          ES256 ES384 ES512 EdDSA (default: \"RS256 ES256\");\n"
"                          none and HS256/HS384/HS512 are rejected\n"
"                          [TeleportAlgorithms]\n"
"  --user-claim CLAIM      claim that names the user (default: username)\n"
"                          [TeleportUserClaim]\n"
"  --max-token-size BYTES  longest token accepted, in bytes from 256 to\n"
"                          1048576 (default: 16384) [TeleportMaxTokenSize]\n"
"  --now EPOCH             check the dates as of this time, in seconds since\n"
"                          1970-01-01 UTC (default: the system clock), to\n"
"                          reproduce a rejection logged earlier\n"
"\n"
"  -h, --help              print this help and exit\n"
"  --version               print the version and exit\n"
"\n"
"Exit status: 0 valid, 1 rejected, 2 invalid option or no usable keys.\n",
        out);
}

/* Parse a decimal integer from minimum to maximum, digits only. */
static int parse_integer(const char *arg, apr_int64_t minimum,
                         apr_int64_t maximum, apr_int64_t *value)
{
    char *end;

    if (!apr_isdigit(arg[0])) {
        return 0;
    }
    errno = 0;
    *value = apr_strtoi64(arg, &end, 10);
    return errno == 0 && *end == '\0' && *value >= minimum
           && *value <= maximum;
}

static const char *parse_seconds(apr_pool_t *p, const char *option,
                                 const char *arg, apr_int64_t minimum,
                                 apr_int64_t maximum, apr_int64_t *value)
{
    if (!parse_integer(arg, minimum, maximum, value)) {
        return apr_psprintf(p, "%s: '%s' is not a whole number of seconds "
                            "from %" APR_INT64_T_FMT " to %" APR_INT64_T_FMT,
                            option, arg, minimum, maximum);
    }
    return NULL;
}

/* Add one algorithm name to the allow-list, rejecting what
 * TeleportAlgorithms rejects. */
static const char *add_algorithm(apr_pool_t *p, const char *name,
                                 unsigned *algorithms)
{
    unsigned algorithm = teleport_alg_from_name(name);

    if (strcasecmp(name, "none") == 0) {
        return "--algorithms: 'none' would accept unsigned tokens";
    }
    if (strncasecmp(name, "HS", 2) == 0) {
        return apr_psprintf(p, "--algorithms: '%s' is an HMAC algorithm, "
                            "which cannot be verified with a public key",
                            name);
    }
    if (algorithm == 0) {
        return apr_psprintf(p, "--algorithms: unknown algorithm '%s' "
                            "(supported: RS256 RS384 RS512 PS256 PS384 "
                            "PS512 ES256 ES384 ES512 EdDSA)", name);
    }
    *algorithms |= algorithm;
    return NULL;
}

/* Parse a list such as "RS256 ES256" or "RS256,ES256".  A repeated
 * --algorithms adds to the list, as a repeated TeleportAlgorithms does. */
static const char *parse_algorithms(apr_pool_t *p, const char *arg,
                                    verify_options *options)
{
    char *list = apr_pstrdup(p, arg);
    char *state = NULL;
    char *name;
    const char *error;
    unsigned added = 0;

    for (name = apr_strtok(list, " ,\t", &state); name != NULL;
         name = apr_strtok(NULL, " ,\t", &state)) {
        error = add_algorithm(p, name, &added);
        if (error != NULL) {
            return error;
        }
    }
    if (added == 0) {
        return apr_psprintf(p, "--algorithms: '%s' names no algorithm", arg);
    }
    options->algorithms = options->algorithms_set ? options->algorithms | added
                                                  : added;
    options->algorithms_set = 1;
    return NULL;
}

static const char *require_value(apr_pool_t *p, const char *option,
                                 const char *arg)
{
    if (arg[0] == '\0') {
        return apr_psprintf(p, "%s: the value must not be empty", option);
    }
    return NULL;
}

static const char *check_readable(apr_pool_t *p, const char *option,
                                  const char *path)
{
    apr_file_t *file;
    apr_status_t rv;

    rv = apr_file_open(&file, path, APR_FOPEN_READ, APR_OS_DEFAULT, p);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(p, "%s: cannot read '%s': %pm", option, path,
                            &rv);
    }
    apr_file_close(file);
    return NULL;
}

/* Apply one key-source option.  Returns 1 when option_ch is one. */
static int set_source_option(apr_pool_t *p, int option_ch, const char *arg,
                             verify_options *options, const char **error)
{
    apr_int64_t seconds = 0;

    switch (option_ch) {
    case OPT_PROXY_URL:
        *error = require_value(p, "--proxy-url", arg);
        options->proxy_url = arg;
        return 1;
    case OPT_JWKS_FILE:
        *error = require_value(p, "--jwks-file", arg);
        options->jwks_file = arg;
        return 1;
    case OPT_CA_FILE:
        *error = check_readable(p, "--ca-file", arg);
        options->ca_file = arg;
        return 1;
    case OPT_TIMEOUT:
        *error = parse_seconds(p, "--timeout", arg, 1, MAX_TIMEOUT_SECONDS,
                               &seconds);
        options->timeout = apr_time_from_sec(seconds);
        options->timeout_set = 1;
        return 1;
    }
    return 0;
}

/* Apply one check option.  Returns 1 when option_ch is one. */
static int set_check_option(apr_pool_t *p, int option_ch, const char *arg,
                            verify_options *options, const char **error)
{
    apr_int64_t value = 0;

    switch (option_ch) {
    case OPT_AUDIENCE:
        *error = require_value(p, "--audience", arg);
        APR_ARRAY_PUSH(options->audiences, const char *) = arg;
        return 1;
    case OPT_ISSUER:
        *error = require_value(p, "--issuer", arg);
        options->issuer = arg;
        return 1;
    case OPT_USER_CLAIM:
        *error = require_value(p, "--user-claim", arg);
        options->user_claim = arg;
        return 1;
    case OPT_ALGORITHMS:
        *error = parse_algorithms(p, arg, options);
        return 1;
    case OPT_CLOCK_SKEW:
        *error = parse_seconds(p, "--clock-skew", arg, 0, MAX_CLOCK_SKEW,
                               &value);
        options->clock_skew = value;
        return 1;
    case OPT_MAX_TOKEN_SIZE:
        if (!parse_integer(arg, MIN_TOKEN_SIZE, MAX_TOKEN_SIZE, &value)) {
            *error = apr_psprintf(p, "--max-token-size: '%s' is not a size "
                                  "in bytes from %d to %d", arg,
                                  MIN_TOKEN_SIZE, MAX_TOKEN_SIZE);
        }
        options->max_token_size = (apr_size_t)value;
        return 1;
    case OPT_NOW:
        if (!parse_integer(arg, 0, MAX_NOW, &value)) {
            *error = apr_psprintf(p, "--now: '%s' is not a time in seconds "
                                  "since 1970-01-01 UTC (0 to %lld)", arg,
                                  MAX_NOW);
        }
        options->now = value;
        options->now_set = 1;
        return 1;
    }
    return 0;
}

static void set_defaults(apr_pool_t *p, verify_options *options)
{
    memset(options, 0, sizeof(*options));
    options->timeout = apr_time_from_sec(DEFAULT_TIMEOUT_SECONDS);
    options->audiences = apr_array_make(p, 2, sizeof(const char *));
    options->clock_skew = DEFAULT_CLOCK_SKEW;
    options->algorithms = TELEPORT_ALG_DEFAULT;
    options->user_claim = DEFAULT_USER_CLAIM;
    options->max_token_size = TELEPORT_TOKEN_MAX_DEFAULT;
}

/* Check the options that only make sense together. */
static const char *check_combination(const verify_options *options)
{
    if (options->proxy_url != NULL && options->jwks_file != NULL) {
        return "--proxy-url and --jwks-file are both given; use one key "
               "source";
    }
    if (options->proxy_url == NULL && options->jwks_file == NULL) {
        return "no key source: give --proxy-url URL or --jwks-file PATH";
    }
    if (options->jwks_file != NULL
        && (options->ca_file != NULL || options->timeout_set)) {
        return "--ca-file and --timeout apply to --proxy-url only, not to "
               "--jwks-file";
    }
    return NULL;
}

/* Describe an option that apr_getopt_long() did not accept. */
static const char *getopt_error(apr_pool_t *p, apr_status_t rv,
                                const apr_getopt_t *getopt)
{
    const char *word = getopt->ind > 0 ? getopt->argv[getopt->ind - 1] : "";

    if (rv == APR_BADARG) {
        return apr_psprintf(p, "option '%s' needs a value", word);
    }
    return apr_psprintf(p, "unknown option '%s'", word);
}

/* Return 1 when word is a long option that takes a value and does not
 * contain it after '='. */
static int takes_next_word(const char *word)
{
    const apr_getopt_option_t *option;

    if (strncmp(word, "--", 2) != 0 || strchr(word, '=') != NULL) {
        return 0;
    }
    for (option = option_table; option->name != NULL; option++) {
        if (strcmp(word + 2, option->name) == 0) {
            return option->has_arg;
        }
    }
    return 0;
}

/*
 * Copy argv without the "-" arguments, which stand for standard input and
 * which apr_getopt_long() would report as invalid options.  *dashes
 * receives their number.  A "-" that is the value of an option, or that
 * follows "--", stays.
 */
static const char **remove_dashes(apr_pool_t *p, int *argc,
                                  const char *const *argv, int *dashes)
{
    const char **copy = apr_palloc(p, sizeof(*copy) * ((size_t)*argc + 1));
    int options_ended = 0;
    int copied = 0;
    int i;

    *dashes = 0;
    for (i = 0; i < *argc; i++) {
        if (i > 0 && !options_ended && strcmp(argv[i], "-") == 0) {
            (*dashes)++;
            continue;
        }
        copy[copied++] = argv[i];
        if (i == 0 || options_ended) {
            continue;
        }
        if (strcmp(argv[i], "--") == 0) {
            options_ended = 1;
        }
        else if (takes_next_word(argv[i]) && i + 1 < *argc) {
            copy[copied++] = argv[++i];
        }
    }
    copy[copied] = NULL;
    *argc = copied;
    return copy;
}

static const char *parse_arguments(apr_pool_t *p, apr_getopt_t *getopt,
                                   verify_options *options)
{
    const char *error = NULL;
    const char *arg;
    int option_ch;
    apr_status_t rv;

    while ((rv = apr_getopt_long(getopt, option_table, &option_ch, &arg))
           != APR_EOF) {
        if (rv != APR_SUCCESS) {
            return getopt_error(p, rv, getopt);
        }
        if (option_ch == 'h' || option_ch == OPT_VERSION) {
            options->help |= option_ch == 'h';
            options->version |= option_ch == OPT_VERSION;
        }
        else if (!set_source_option(p, option_ch, arg, options, &error)) {
            set_check_option(p, option_ch, arg, options, &error);
        }
        if (error != NULL) {
            return error;
        }
    }
    return NULL;
}

const char *verify_options_parse(apr_pool_t *p, int argc,
                                 const char *const *argv,
                                 verify_options *options)
{
    apr_getopt_t *getopt;
    const char *error;
    int arguments;
    int dashes;

    set_defaults(p, options);
    argv = remove_dashes(p, &argc, argv, &dashes);
    if (apr_getopt_init(&getopt, p, argc, argv) != APR_SUCCESS) {
        return "cannot read the command line";
    }
    getopt->errfn = NULL;
    getopt->interleave = 1;

    error = parse_arguments(p, getopt, options);
    if (error != NULL || options->help || options->version) {
        return error;
    }
    arguments = argc - getopt->ind + dashes;
    if (arguments > 1) {
        /* The arguments are not quoted: one of them may be a token. */
        return apr_psprintf(p, "one token expected, got %d arguments (the "
                            "options start with --)", arguments);
    }
    if (getopt->ind < argc) {
        options->token = getopt->argv[getopt->ind];
    }
    return check_combination(options);
}
