/*
 * Shared counters and the teleport-status handler.
 *
 * The counters live in an anonymous shared memory segment that the parent
 * creates in post_config and every child inherits.  Children add to them
 * with atomic increments, so a report sums all processes of the current
 * generation (a restart starts from zero).
 */
#include "teleport_status.h"

#include "apr_atomic.h"
#include "apr_shm.h"
#include "apr_strings.h"
#include "http_log.h"
#include "http_protocol.h"
#include "mod_status.h"

#include <jansson.h>
#include <string.h>

APLOG_USE_MODULE(auth_teleport);

/* Every rejection reason the module logs, in the README's order; anything
 * else counts as "other". */
static const char *const reasons[] = {
    "malformed", "multiple_headers", "bad_scheme", "bad_header",
    "alg_not_allowed", "unknown_kid", "key_mismatch", "bad_signature",
    "bad_payload", "bad_claim", "missing_exp", "expired", "not_yet_valid",
    "issued_in_future", "bad_audience", "bad_issuer", "missing_user",
    "bad_user", "other"
};
#define REASON_COUNT (sizeof(reasons) / sizeof(reasons[0]))

typedef struct {
    unsigned char id[TELEPORT_SOURCE_ID_LEN];
    apr_uint32_t fetches[3];  /* by teleport_fetch_event */
} source_counters;

typedef struct {
    apr_uint32_t accepted;
    apr_uint32_t unavailable;
    apr_uint32_t rejected[REASON_COUNT];
    source_counters sources[TELEPORT_STATUS_MAX_SOURCES];
} shared_counters;

/* Set in the parent by post_config, read-only afterwards. */
static shared_counters *counters;
static const teleport_key_source *const *status_sources;
static int status_source_count;

const char *teleport_status_post_config(apr_pool_t *pconf,
                                        const teleport_key_source *const *sources,
                                        int source_count)
{
    apr_shm_t *shm;
    apr_status_t rv;
    int i;

    counters = NULL;
    status_sources = sources;
    status_source_count = source_count < TELEPORT_STATUS_MAX_SOURCES
                          ? source_count : TELEPORT_STATUS_MAX_SOURCES;
    rv = apr_shm_create(&shm, sizeof(shared_counters), NULL, pconf);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(pconf, "cannot create the shared memory for "
                            "status counters: %pm", &rv);
    }
    counters = apr_shm_baseaddr_get(shm);
    memset(counters, 0, sizeof(*counters));
    for (i = 0; i < status_source_count; i++) {
        memcpy(counters->sources[i].id, sources[i]->id,
               TELEPORT_SOURCE_ID_LEN);
    }
    return NULL;
}

void teleport_status_count_accepted(void)
{
    if (counters != NULL) {
        apr_atomic_inc32(&counters->accepted);
    }
}

void teleport_status_count_unavailable(void)
{
    if (counters != NULL) {
        apr_atomic_inc32(&counters->unavailable);
    }
}

void teleport_status_count_rejected(const char *reason)
{
    size_t i;

    if (counters == NULL) {
        return;
    }
    for (i = 0; i < REASON_COUNT - 1; i++) {
        if (strcmp(reasons[i], reason) == 0) {
            break;
        }
    }
    apr_atomic_inc32(&counters->rejected[i]);
}

void teleport_status_count_fetch(const teleport_key_source *source,
                                 teleport_fetch_event event)
{
    int i;

    if (counters == NULL) {
        return;
    }
    for (i = 0; i < status_source_count; i++) {
        if (memcmp(counters->sources[i].id, source->id,
                   TELEPORT_SOURCE_ID_LEN) == 0) {
            apr_atomic_inc32(&counters->sources[i].fetches[event]);
            return;
        }
    }
}

static apr_uint32_t read_counter(apr_uint32_t *counter)
{
    return apr_atomic_read32(counter);
}

/* Report building: one snapshot, three renderings. */

typedef struct {
    const teleport_key_source *source;
    teleport_source_state state;
    const char *problem;       /* why the state is missing, or NULL */
    apr_uint32_t fetches[3];
} source_report;

static source_report *collect_sources(request_rec *r)
{
    source_report *reports = apr_pcalloc(r->pool, sizeof(source_report)
                                         * (status_source_count + 1));
    int i;

    for (i = 0; i < status_source_count; i++) {
        int event;

        reports[i].source = status_sources[i];
        reports[i].problem = teleport_cache_describe(r->server, r->pool,
                                                     status_sources[i],
                                                     &reports[i].state);
        for (event = 0; event < 3; event++) {
            reports[i].fetches[event] =
                read_counter(&counters->sources[i].fetches[event]);
        }
    }
    return reports;
}

static const char *format_time(apr_pool_t *p, apr_time_t when)
{
    char *text;

    if (when == 0) {
        return "never";
    }
    text = apr_palloc(p, APR_RFC822_DATE_LEN);
    apr_rfc822_date(text, when);
    return text;
}

static void render_text(request_rec *r, const source_report *reports)
{
    apr_uint32_t rejected = 0;
    size_t i;
    int s;

    for (i = 0; i < REASON_COUNT; i++) {
        rejected += read_counter(&counters->rejected[i]);
    }
    ap_set_content_type(r, "text/plain; charset=utf-8");
    ap_rprintf(r, "mod_auth_teleport status (since the last restart, all "
               "child processes)\n\nrequests accepted: %u\n"
               "requests answered 503 (no usable keys): %u\n"
               "requests rejected: %u\n",
               read_counter(&counters->accepted),
               read_counter(&counters->unavailable), rejected);
    for (i = 0; i < REASON_COUNT; i++) {
        apr_uint32_t count = read_counter(&counters->rejected[i]);

        if (count > 0) {
            ap_rprintf(r, "  %s: %u\n", reasons[i], count);
        }
    }
    for (s = 0; s < status_source_count; s++) {
        const source_report *report = &reports[s];
        const teleport_source_state *state = &report->state;
        int k;

        ap_rprintf(r, "\nkey source %s\n  keys:", report->source->url);
        for (k = 0; k < state->keys->nelts; k++) {
            teleport_key_info *key = &APR_ARRAY_IDX(state->keys, k,
                                                    teleport_key_info);

            ap_rprintf(r, "%s \"%s\" %s %d bits", k ? "," : "", key->kid,
                       key->kty, key->bits);
        }
        ap_rprintf(r, "%s\n  last fetched: %s\n  last changed: %s\n"
                   "  last attempt: %s\n  last error: %s\n"
                   "  fetches: %u succeeded, %u failed, %u suppressed by "
                   "TeleportJWKSMinRefresh\n",
                   state->keys->nelts ? "" : " none",
                   format_time(r->pool, state->fetched_at),
                   format_time(r->pool, state->changed_at),
                   format_time(r->pool, state->attempted_at),
                   report->problem ? report->problem
                   : state->last_error && state->last_error[0]
                   ? state->last_error : "none",
                   report->fetches[TELEPORT_FETCH_SUCCEEDED],
                   report->fetches[TELEPORT_FETCH_FAILED],
                   report->fetches[TELEPORT_FETCH_SUPPRESSED]);
    }
}

static json_t *time_json(apr_time_t when)
{
    return when == 0 ? json_null() : json_integer(apr_time_sec(when));
}

static json_t *source_json(const source_report *report)
{
    const teleport_source_state *state = &report->state;
    json_t *keys = json_array();
    int k;

    for (k = 0; k < state->keys->nelts; k++) {
        teleport_key_info *key = &APR_ARRAY_IDX(state->keys, k,
                                                teleport_key_info);

        json_array_append_new(keys, json_pack("{s:s, s:s, s:i}", "kid",
                                              key->kid, "kty", key->kty,
                                              "bits", key->bits));
    }
    return json_pack("{s:s, s:o, s:o, s:o, s:o, s:s?, s:{s:I, s:I, s:I}}",
                     "url", report->source->url, "keys", keys,
                     "fetched_at", time_json(state->fetched_at),
                     "changed_at", time_json(state->changed_at),
                     "attempted_at", time_json(state->attempted_at),
                     "last_error",
                     state->last_error && state->last_error[0]
                     ? state->last_error : NULL,
                     "fetches",
                     "succeeded",
                     (json_int_t)report->fetches[TELEPORT_FETCH_SUCCEEDED],
                     "failed",
                     (json_int_t)report->fetches[TELEPORT_FETCH_FAILED],
                     "suppressed",
                     (json_int_t)report->fetches[TELEPORT_FETCH_SUPPRESSED]);
}

static void render_json(request_rec *r, const source_report *reports)
{
    json_t *rejected = json_object();
    json_t *sources = json_array();
    json_t *report;
    char *text;
    size_t i;
    int s;

    for (i = 0; i < REASON_COUNT; i++) {
        json_object_set_new(rejected, reasons[i],
                            json_integer(read_counter(&counters->rejected[i])));
    }
    for (s = 0; s < status_source_count; s++) {
        json_array_append_new(sources, source_json(&reports[s]));
    }
    report = json_pack("{s:I, s:I, s:o, s:o}",
                       "accepted",
                       (json_int_t)read_counter(&counters->accepted),
                       "unavailable",
                       (json_int_t)read_counter(&counters->unavailable),
                       "rejected", rejected, "sources", sources);
    text = json_dumps(report, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(report);
    ap_set_content_type(r, "application/json");
    if (text != NULL) {
        ap_rputs(text, r);
        ap_rputs("\n", r);
        free(text);
    }
}

/* Escape a Prometheus label value: backslash, double quote, newline. */
static const char *label_value(apr_pool_t *p, const char *value)
{
    char *escaped = apr_palloc(p, 2 * strlen(value) + 1);
    char *out = escaped;

    for (; *value != '\0'; value++) {
        if (*value == '\\' || *value == '"' || *value == '\n') {
            *out++ = '\\';
            *out++ = *value == '\n' ? 'n' : *value;
            continue;
        }
        *out++ = *value;
    }
    *out = '\0';
    return escaped;
}

static void render_metrics(request_rec *r, const source_report *reports)
{
    static const char *const events[] = { "succeeded", "failed",
                                          "suppressed" };
    size_t i;
    int s;
    int e;

    ap_set_content_type(r, "text/plain; version=0.0.4; charset=utf-8");
    ap_rputs("# HELP teleport_requests_total Requests under AuthType "
             "Teleport by outcome and rejection reason.\n"
             "# TYPE teleport_requests_total counter\n", r);
    ap_rprintf(r, "teleport_requests_total{outcome=\"accepted\"} %u\n"
               "teleport_requests_total{outcome=\"unavailable\"} %u\n",
               read_counter(&counters->accepted),
               read_counter(&counters->unavailable));
    for (i = 0; i < REASON_COUNT; i++) {
        ap_rprintf(r, "teleport_requests_total{outcome=\"rejected\","
                   "reason=\"%s\"} %u\n", reasons[i],
                   read_counter(&counters->rejected[i]));
    }
    ap_rputs("# HELP teleport_jwks_fetches_total JWKS fetches by result.\n"
             "# TYPE teleport_jwks_fetches_total counter\n", r);
    for (s = 0; s < status_source_count; s++) {
        const char *url = label_value(r->pool, reports[s].source->url);

        for (e = 0; e < 3; e++) {
            ap_rprintf(r, "teleport_jwks_fetches_total{url=\"%s\","
                       "result=\"%s\"} %u\n", url, events[e],
                       reports[s].fetches[e]);
        }
    }
    ap_rputs("# HELP teleport_jwks_keys Usable keys in the shared JWKS.\n"
             "# TYPE teleport_jwks_keys gauge\n", r);
    for (s = 0; s < status_source_count; s++) {
        ap_rprintf(r, "teleport_jwks_keys{url=\"%s\"} %d\n",
                   label_value(r->pool, reports[s].source->url),
                   reports[s].state.keys->nelts);
    }
    ap_rputs("# HELP teleport_jwks_last_fetch_timestamp_seconds Time of "
             "the last successful JWKS fetch (0: never).\n"
             "# TYPE teleport_jwks_last_fetch_timestamp_seconds gauge\n", r);
    for (s = 0; s < status_source_count; s++) {
        ap_rprintf(r, "teleport_jwks_last_fetch_timestamp_seconds"
                   "{url=\"%s\"} %" APR_TIME_T_FMT "\n",
                   label_value(r->pool, reports[s].source->url),
                   apr_time_sec(reports[s].state.fetched_at));
    }
}

int teleport_status_handler(request_rec *r)
{
    source_report *reports;

    if (r->handler == NULL || strcmp(r->handler, "teleport-status") != 0) {
        return DECLINED;
    }
    r->allowed = AP_METHOD_BIT << M_GET;
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (counters == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "TLP060: teleport-status has no counters: no key "
                      "source is configured or the shared memory failed");
        return HTTP_SERVICE_UNAVAILABLE;
    }
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    reports = collect_sources(r);
    if (r->args != NULL && strcmp(r->args, "json") == 0) {
        render_json(r, reports);
    }
    else if (r->args != NULL && strcmp(r->args, "metrics") == 0) {
        render_metrics(r, reports);
    }
    else {
        render_text(r, reports);
    }
    return OK;
}

int teleport_status_hook(request_rec *r, int flags)
{
    apr_uint32_t rejected = 0;
    size_t i;

    if (counters == NULL) {
        return OK;
    }
    for (i = 0; i < REASON_COUNT; i++) {
        rejected += read_counter(&counters->rejected[i]);
    }
    if (flags & AP_STATUS_SHORT) {
        ap_rprintf(r, "TeleportAccepted: %u\nTeleportRejected: %u\n"
                   "TeleportUnavailable: %u\n",
                   read_counter(&counters->accepted), rejected,
                   read_counter(&counters->unavailable));
        return OK;
    }
    ap_rprintf(r, "<hr>\n<h2>mod_auth_teleport</h2>\n<p>Requests accepted: "
               "%u, rejected: %u, answered 503: %u. Details: a location "
               "with <code>SetHandler teleport-status</code>.</p>\n",
               read_counter(&counters->accepted), rejected,
               read_counter(&counters->unavailable));
    return OK;
}
