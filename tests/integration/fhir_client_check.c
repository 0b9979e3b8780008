/*
 * fhir_client_check.c - http.c and fhir.c against a real FHIR R4 server.
 *
 *   fhir_client_check BASE_URL      e.g. http://127.0.0.1:8103/fhir/R4
 *   fhir_client_check --tls URL CA  TLS checks only, against any HTTPS server
 *                                   whose certificate CA issued for the host
 *                                   in URL (e.g. `openssl s_server -www`)
 *   fhir_client_check --mtls URL CA CERT KEY
 *                                   client-certificate checks against a server
 *                                   that requires one (s_server -Verify 1
 *                                   -verify_return_error)
 *
 * Creates a Patient and 45 Observations, pages through them with _count=10
 * (GET and, for a long query, POST _search), bounds the walk with max_pages,
 * runs a conditional update twice and a plain update, reads back, provokes
 * a 400 and a 404, sends several requests at once through the multi
 * interface, and checks the transport failures (closed port, TLS spoken to
 * a plain HTTP port, response over max_body).  Every run uses fresh
 * identifiers, so it can be repeated against the same server.
 *
 * Prints one line per check and ends with "N passed, N failed"; exit status
 * 0 when nothing failed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "fhir.h"
#include "http.h"

#define N_OBS 45

static int n_pass, n_fail;

static void check(int ok, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void check(int ok, const char *name, const char *fmt, ...)
{
    va_list ap;

    if (ok) {
        n_pass++;
        printf("ok   %s\n", name);
        return;
    }
    n_fail++;
    printf("FAIL %s: ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

static int closed_port(void)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = 1;

    if (fd < 0)
        return port;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Replace the host of base ("127.0.0.1" <-> "localhost"); NULL when base
 * uses neither. */
static char *swap_host(const char *base)
{
    const char *from[] = {"://127.0.0.1", "://localhost"};
    const char *to[] = {"://localhost", "://127.0.0.1"};
    const char *p;
    char *s;
    size_t i;

    for (i = 0; i < 2; i++) {
        p = strstr(base, from[i]);
        if (p == NULL)
            continue;
        s = malloc(strlen(base) + 16);
        if (s == NULL)
            return NULL;
        sprintf(s, "%.*s%s%s", (int)(p - base), base, to[i], p + strlen(from[i]));
        return s;
    }
    return NULL;
}

static int all_distinct_ids(json_t *arr)
{
    size_t i, j;
    const char *a, *b;

    for (i = 0; i < json_array_size(arr); i++) {
        a = json_string_value(json_object_get(json_array_get(arr, i), "id"));
        if (a == NULL)
            return 0;
        for (j = 0; j < i; j++) {
            b = json_string_value(json_object_get(json_array_get(arr, j), "id"));
            if (b != NULL && strcmp(a, b) == 0)
                return 0;
        }
    }
    return 1;
}

/* fhir_search_pages' callback for check 3a: counts the page, then reads
 * the patient through another search on the same client. */
struct nested {
    struct fhir_client *fc;
    const char *patient_id;
    int pages, resources, inner_found;
};

static enum adp_err nested_page(void *ud, json_t *resources, struct adp_error *err)
{
    struct nested *n = ud;
    json_t *inner = json_array();
    char q[160];
    enum adp_err rc;

    if (inner == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    n->pages++;
    n->resources += (int)json_array_size(resources);
    snprintf(q, sizeof(q), "_id=%s", n->patient_id);
    rc = fhir_search_all(n->fc, "Patient", q, inner, 0, err);
    if (rc == ADP_OK && json_array_size(inner) == 1)
        n->inner_found++;
    json_decref(inner);
    return rc;
}

/* POST a fault rule to the test server's /$test/fault (origin of base).
 * Returns 0 when the server accepted it. */
static int add_fault(struct http_client *h, const char *base, const char *rule)
{
    struct http_response r;
    struct adp_error e;
    const char *p = strstr(base, "://");
    char url[512];
    int rc;

    if (p == NULL)
        return -1;
    p = strchr(p + 3, '/');
    snprintf(url, sizeof(url), "%.*s/$test/fault",
             (int)(p != NULL ? (size_t)(p - base) : strlen(base)), base);
    adp_error_clear(&e);
    memset(&r, 0, sizeof(r));
    if (http_do(h, "POST", url, NULL, rule, "application/json", &r, &e) != ADP_OK)
        return -1;
    rc = r.status == 200 ? 0 : -1;
    http_response_free(&r);
    return rc;
}

struct multi_done {
    int calls;
    enum adp_err rc;
    long status;
};

static void on_multi_done(void *ud, enum adp_err rc, const struct http_response *resp,
                          const struct adp_error *err)
{
    struct multi_done *d = ud;

    (void)err;
    d->calls++;
    d->rc = rc;
    d->status = resp != NULL ? resp->status : 0;
}

/* Transport security against an HTTPS server: verification on by default,
 * CA file honoured, host name checked, insecure mode works. */
static void tls_checks(const char *url, const char *ca)
{
    struct http_client *h = NULL;
    struct http_opts o;
    struct http_response r;
    struct adp_error err;
    enum adp_err rc;
    char *alt = swap_host(url);

    /* system store only: the test CA is unknown */
    memset(&o, 0, sizeof(o));
    adp_error_clear(&err);
    memset(&r, 0, sizeof(r));
    if (http_client_new(&o, &h, &err) == ADP_OK) {
        rc = http_do(h, "GET", url, NULL, NULL, NULL, &r, &err);
        check(rc == ADP_ETLS, "untrusted certificate is ADP_ETLS", "rc=%d %s", rc,
              err.msg);
        http_response_free(&r);
        http_client_free(h);
        h = NULL;
    }
    /* with the CA file */
    o.ca_file = ca;
    adp_error_clear(&err);
    if (http_client_new(&o, &h, &err) == ADP_OK) {
        rc = http_do(h, "GET", url, NULL, NULL, NULL, &r, &err);
        check(rc == ADP_OK && r.status == 200, "trusted via ca_file",
              "rc=%d status=%ld %s", rc, r.status, err.msg);
        http_response_free(&r);
        if (alt != NULL) {
            /* the certificate names one of 127.0.0.1 / localhost only */
            adp_error_clear(&err);
            rc = http_do(h, "GET", alt, NULL, NULL, NULL, &r, &err);
            check(rc == ADP_ETLS, "host name not in certificate is ADP_ETLS", "rc=%d %s",
                  rc, err.msg);
            http_response_free(&r);
        }
        http_client_free(h);
        h = NULL;
    }
    /* unreadable CA file */
    o.ca_file = "/nonexistent/ca.pem";
    adp_error_clear(&err);
    if (http_client_new(&o, &h, &err) == ADP_OK) {
        rc = http_do(h, "GET", url, NULL, NULL, NULL, &r, &err);
        check(rc == ADP_ETLS, "missing CA file is ADP_ETLS", "rc=%d %s", rc, err.msg);
        http_response_free(&r);
        http_client_free(h);
        h = NULL;
    }
    /* insecure: accepted (and warned about on stderr) */
    o.ca_file = NULL;
    o.insecure = 1;
    adp_error_clear(&err);
    if (http_client_new(&o, &h, &err) == ADP_OK) {
        rc = http_do(h, "GET", url, NULL, NULL, NULL, &r, &err);
        check(rc == ADP_OK && r.status == 200, "insecure skips verification", "rc=%d %s",
              rc, err.msg);
        http_response_free(&r);
        http_client_free(h);
    }
    free(alt);
}

/* Client certificate: refused without one, accepted with it. */
static void mtls_checks(const char *url, const char *ca, const char *cert,
                        const char *key)
{
    struct http_client *h = NULL;
    struct http_opts o;
    struct http_response r;
    struct adp_error err;
    enum adp_err rc;

    memset(&o, 0, sizeof(o));
    o.ca_file = ca;
    adp_error_clear(&err);
    memset(&r, 0, sizeof(r));
    if (http_client_new(&o, &h, &err) == ADP_OK) {
        rc = http_do(h, "GET", url, NULL, NULL, NULL, &r, &err);
        check(rc == ADP_ETLS, "missing client certificate is ADP_ETLS", "rc=%d %s", rc,
              err.msg);
        http_response_free(&r);
        http_client_free(h);
        h = NULL;
    }
    o.client_cert = cert;
    o.client_key = key;
    adp_error_clear(&err);
    if (http_client_new(&o, &h, &err) == ADP_OK) {
        rc = http_do(h, "GET", url, NULL, NULL, NULL, &r, &err);
        check(rc == ADP_OK && r.status == 200, "client certificate accepted",
              "rc=%d status=%ld %s", rc, r.status, err.msg);
        http_response_free(&r);
        http_client_free(h);
        h = NULL;
    }
    o.client_key = "/nonexistent/key.pem";
    adp_error_clear(&err);
    if (http_client_new(&o, &h, &err) == ADP_OK) {
        rc = http_do(h, "GET", url, NULL, NULL, NULL, &r, &err);
        check(rc == ADP_ETLS, "unreadable client key is ADP_ETLS", "rc=%d %s", rc,
              err.msg);
        http_response_free(&r);
        http_client_free(h);
    }
}

int main(int argc, char **argv)
{
    struct http_client *http = NULL, *small = NULL;
    struct fhir_client *fc = NULL, *fc_small = NULL, *fc_alt = NULL;
    struct http_opts so;
    struct adp_error err;
    struct fhir_write w, w1, w2, w3;
    struct http_response raw;
    struct multi_done md[5];
    json_t *res = NULL, *found = NULL, *got = NULL, *page = NULL;
    char run[64], patient_id[128] = "", query[4096], url[8192], outcome[512];
    char *alt = NULL, *esc = NULL, *body = NULL;
    const char *base, *next, *s;
    size_t i, qlen;
    int created = 0, ok;
    enum adp_err rc;

    if (argc == 4 && strcmp(argv[1], "--tls") == 0) {
        if (http_global_init() != 0)
            return 1;
        tls_checks(argv[2], argv[3]);
        http_global_cleanup();
        printf("%d passed, %d failed\n", n_pass, n_fail);
        return n_fail == 0 ? 0 : 1;
    }
    if (argc == 6 && strcmp(argv[1], "--mtls") == 0) {
        if (http_global_init() != 0)
            return 1;
        mtls_checks(argv[2], argv[3], argv[4], argv[5]);
        http_global_cleanup();
        printf("%d passed, %d failed\n", n_pass, n_fail);
        return n_fail == 0 ? 0 : 1;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s BASE_URL | --tls URL CA | --mtls URL CA CERT KEY\n",
                argv[0]);
        return 2;
    }
    base = argv[1];
    if (http_global_init() != 0) {
        fprintf(stderr, "curl_global_init failed\n");
        return 1;
    }
    snprintf(run, sizeof(run), "run-%ld-%ld", (long)time(NULL), (long)getpid());
    adp_error_clear(&err);
    rc = http_client_new(NULL, &http, &err);
    if (rc == ADP_OK)
        rc = fhir_client_new(base, http, &fc, &err);
    check(rc == ADP_OK, "client setup", "%s", err.msg);
    if (rc != ADP_OK)
        goto out;

    /* 1. create a Patient */
    res = json_pack("{s:s, s:[{s:s, s:s}], s:[{s:s, s:[s]}]}", "resourceType", "Patient",
                    "identifier", "system", "urn:dnmbc-test:patient", "value", run,
                    "name", "family", "Check", "given", "Client");
    adp_error_clear(&err);
    rc = fhir_create(fc, "Patient", res, &w, &err);
    check(rc == ADP_OK && w.status == 201 && w.id[0] != '\0', "create Patient",
          "rc=%d status=%ld %s", rc, w.status, err.msg);
    json_decref(res);
    res = NULL;
    if (rc != ADP_OK)
        goto out;
    snprintf(patient_id, sizeof(patient_id), "%s", w.id);

    /* 2. 45 Observations for it */
    for (i = 0; i < N_OBS; i++) {
        char ident[96];

        snprintf(ident, sizeof(ident), "%s-%zu", run, i);
        snprintf(url, sizeof(url), "Patient/%s", patient_id);
        res =
            json_pack("{s:s, s:s, s:[{s:s, s:s}], s:{s:[{s:s, s:s}]}, s:{s:s}, "
                      "s:{s:f, s:s, s:s, s:s}}",
                      "resourceType", "Observation", "status", "final", "identifier",
                      "system", "urn:dnmbc-test:obs", "value", ident, "code", "coding",
                      "system", "http://loinc.org", "code", "2857-1", "subject",
                      "reference", url, "valueQuantity", "value", 1.0 + (double)i, "unit",
                      "ng/mL", "system", "http://unitsofmeasure.org", "code", "ng/mL");
        adp_error_clear(&err);
        if (fhir_create(fc, "Observation", res, &w, &err) == ADP_OK)
            created++;
        else
            printf("     create Observation %zu: %s\n", i, err.msg);
        json_decref(res);
        res = NULL;
    }
    check(created == N_OBS, "create 45 Observations", "%d created", created);

    /* 3. search with _count=10: five pages, 45 distinct resources */
    found = json_array();
    snprintf(query, sizeof(query), "subject=Patient/%s&_count=10", patient_id);
    adp_error_clear(&err);
    rc = fhir_search_all(fc, "Observation", query, found, 0, &err);
    check(rc == ADP_OK && json_array_size(found) == N_OBS && all_distinct_ids(found),
          "search GET _count=10 returns all 45 across pages", "rc=%d n=%zu %s", rc,
          json_array_size(found), err.msg);

    /* 3a. fhir_search_pages is reentrant: each page's callback runs another
     * search on the same client, and the outer walk still sees every page */
    {
        struct nested nest;

        memset(&nest, 0, sizeof(nest));
        nest.fc = fc;
        nest.patient_id = patient_id;
        adp_error_clear(&err);
        rc = fhir_search_pages(fc, "Observation", query, 0, nested_page, &nest, &err);
        check(rc == ADP_OK && nest.pages == 5 && nest.resources == N_OBS &&
                  nest.inner_found == 5,
              "search pages with a nested search in each page's callback",
              "rc=%d pages=%d n=%d inner=%d %s", rc, nest.pages, nest.resources,
              nest.inner_found, err.msg);
    }

    /* 3b. the first page really has at most 10 entries and a next link */
    snprintf(url, sizeof(url), "%s/Observation?%s", fhir_base(fc), query);
    adp_error_clear(&err);
    memset(&raw, 0, sizeof(raw));
    rc = http_do(http, "GET", url, NULL, NULL, NULL, &raw, &err);
    page = rc == ADP_OK ? json_loads(raw.body, 0, NULL) : NULL;
    next = NULL;
    for (i = 0; page != NULL && i < json_array_size(json_object_get(page, "link")); i++) {
        json_t *l = json_array_get(json_object_get(page, "link"), i);
        s = json_string_value(json_object_get(l, "relation"));
        if (s != NULL && strcmp(s, "next") == 0)
            next = json_string_value(json_object_get(l, "url"));
    }
    check(page != NULL && json_array_size(json_object_get(page, "entry")) <= 10 &&
              next != NULL,
          "first page holds <= 10 entries and a next link", "rc=%d status=%ld", rc,
          raw.status);
    check(raw.content_type != NULL && strstr(raw.content_type, "json") != NULL,
          "Content-Type header collected", "%s",
          raw.content_type != NULL ? raw.content_type : "(none)");

    /* 3c. next link on another origin is refused (or, when the server
     * builds links from the Host header, the walk succeeds) */
    alt = swap_host(fhir_base(fc));
    if (alt != NULL && next != NULL) {
        struct http_response r2;
        json_t *p2 = NULL, *l2;
        const char *n2 = NULL;
        char alt_url[8192];

        snprintf(alt_url, sizeof(alt_url), "%s/Observation?%s", alt, query);
        adp_error_clear(&err);
        memset(&r2, 0, sizeof(r2));
        if (http_do(http, "GET", alt_url, NULL, NULL, NULL, &r2, &err) == ADP_OK)
            p2 = json_loads(r2.body, 0, NULL);
        json_array_foreach(json_object_get(p2, "link"), i, l2)
        {
            s = json_string_value(json_object_get(l2, "relation"));
            if (s != NULL && strcmp(s, "next") == 0)
                n2 = json_string_value(json_object_get(l2, "url"));
        }
        if (n2 != NULL && fhir_client_new(alt, http, &fc_alt, &err) == ADP_OK) {
            json_t *f2 = json_array();
            int foreign = !fhir_same_origin(n2, alt);

            adp_error_clear(&err);
            rc = fhir_search_all(fc_alt, "Observation", query, f2, 0, &err);
            if (foreign)
                check(rc == ADP_EHTTP && strstr(err.msg, "next link on another origin") &&
                          json_array_size(f2) == 0,
                      "next link on another origin refused", "rc=%d n=%zu %s", rc,
                      json_array_size(f2), err.msg);
            else
                check(rc == ADP_OK && json_array_size(f2) == N_OBS,
                      "same-origin next links followed via alternate host name",
                      "rc=%d %s", rc, err.msg);
            json_decref(f2);
        } else {
            check(0, "alternate host search", "no page or next link via %s", alt);
        }
        json_decref(p2);
        http_response_free(&r2);
    }
    json_decref(page);
    page = NULL;
    http_response_free(&raw);

    /* 4. max_pages bounds the walk and leaves `into` untouched */
    {
        json_t *f3 = json_array();

        adp_error_clear(&err);
        rc = fhir_search_all(fc, "Observation", query, f3, 2, &err);
        check(rc == ADP_EHTTP && strstr(err.msg, "more than 2 pages") != NULL &&
                  json_array_size(f3) == 0,
              "max_pages=2 fails on a 5-page result", "rc=%d n=%zu %s", rc,
              json_array_size(f3), err.msg);
        json_decref(f3);
    }

    /* 4b. first page only: one entry despite a next link; the same query
     * with fhir_search_all and max_pages=1 is refused */
    {
        json_t *f6 = json_array(), *f7 = json_array();
        char q1[256];

        snprintf(q1, sizeof(q1), "subject=Patient/%s&_sort=-_lastUpdated&_count=1",
                 patient_id);
        adp_error_clear(&err);
        rc = fhir_search_first_page(fc, "Observation", q1, f6, &err);
        check(rc == ADP_OK && json_array_size(f6) == 1, "first page only (_count=1)",
              "rc=%d n=%zu %s", rc, json_array_size(f6), err.msg);
        adp_error_clear(&err);
        rc = fhir_search_all(fc, "Observation", q1, f7, 1, &err);
        check(rc == ADP_EHTTP && json_array_size(f7) == 0,
              "search_all with max_pages=1 on a multi-page result fails", "rc=%d n=%zu",
              rc, json_array_size(f7));
        json_decref(f6);
        json_decref(f7);
    }

    /* 5. a query over 1500 characters goes as POST _search and pages too */
    qlen = (size_t)snprintf(query, sizeof(query), "_count=10&_id=");
    for (i = 0; i < json_array_size(found) && qlen < sizeof(query) - 80; i++) {
        s = json_string_value(json_object_get(json_array_get(found, i), "id"));
        qlen +=
            (size_t)snprintf(query + qlen, sizeof(query) - qlen, "%s%s", i ? "," : "", s);
    }
    while (qlen <= 1500 && qlen < sizeof(query) - 40)
        qlen += (size_t)snprintf(query + qlen, sizeof(query) - qlen,
                                 ",does-not-exist-%zu", qlen);
    {
        json_t *f4 = json_array();

        adp_error_clear(&err);
        rc = fhir_search_all(fc, "Observation", query, f4, 0, &err);
        check(rc == ADP_OK && json_array_size(f4) == json_array_size(found) &&
                  json_array_size(f4) == N_OBS && all_distinct_ids(f4),
              "search POST _search (query > 1500 chars) returns all 45",
              "len=%zu rc=%d n=%zu %s", strlen(query), rc, json_array_size(f4), err.msg);
        json_decref(f4);
    }

    /* 6. conditional update twice: same id, new version */
    esc = http_escape("urn:dnmbc-test:cu|");
    snprintf(query, sizeof(query), "identifier=%s%s", esc != NULL ? esc : "", run);
    res = json_pack("{s:s, s:[{s:s, s:s}], s:[{s:s}]}", "resourceType", "Patient",
                    "identifier", "system", "urn:dnmbc-test:cu", "value", run, "name",
                    "family", "First");
    memset(&w1, 0, sizeof(w1));
    memset(&w2, 0, sizeof(w2));
    adp_error_clear(&err);
    rc = fhir_conditional_update(fc, "Patient", query, res, &w1, &err);
    check(rc == ADP_OK && w1.id[0] != '\0' && (w1.status == 201 || w1.status == 200),
          "conditional update #1 creates", "rc=%d status=%ld %s", rc, w1.status, err.msg);
    json_object_set_new(json_array_get(json_object_get(res, "name"), 0), "family",
                        json_string("Second"));
    adp_error_clear(&err);
    rc = fhir_conditional_update(fc, "Patient", query, res, &w2, &err);
    check(rc == ADP_OK && w2.status == 200 && strcmp(w1.id, w2.id) == 0,
          "conditional update #2 updates the same resource",
          "rc=%d status=%ld id %s vs %s %s", rc, w2.status, w1.id, w2.id, err.msg);
    check(w1.version[0] != '\0' && w2.version[0] != '\0' &&
              strcmp(w1.version, w2.version) != 0,
          "conditional update changes meta.versionId", "'%s' -> '%s'", w1.version,
          w2.version);
    json_decref(res);
    res = NULL;

    /* 7. read back */
    adp_error_clear(&err);
    rc = fhir_read(fc, "Patient", w2.id, &got, &err);
    s = json_string_value(
        json_object_get(json_array_get(json_object_get(got, "name"), 0), "family"));
    check(rc == ADP_OK && s != NULL && strcmp(s, "Second") == 0,
          "read back the updated Patient", "rc=%d %s", rc, err.msg);
    s = json_string_value(json_object_get(json_object_get(got, "meta"), "versionId"));
    check(s != NULL && strcmp(s, w2.version) == 0, "read version matches update",
          "%s vs %s", s != NULL ? s : "(none)", w2.version);

    /* 8. plain update by id */
    if (got != NULL) {
        memset(&w3, 0, sizeof(w3));
        json_object_set_new(json_array_get(json_object_get(got, "name"), 0), "family",
                            json_string("Third"));
        adp_error_clear(&err);
        rc = fhir_update(fc, "Patient", w2.id, got, &w3, &err);
        check(rc == ADP_OK && w3.status == 200 && strcmp(w3.id, w2.id) == 0 &&
                  strcmp(w3.version, w2.version) != 0,
              "update by id", "rc=%d status=%ld %s v%s %s", rc, w3.status, w3.id,
              w3.version, err.msg);
    }
    json_decref(got);
    got = NULL;

    /* 9. an invalid resource: 400 with the server's diagnostics, without
     * any part of what we sent */
    /* Observation.status is required (1..1) */
    res = json_pack("{s:s, s:{s:s}, s:[{s:s}]}", "resourceType", "Observation", "code",
                    "text", "x", "note", "text", "MARKER-never-echo");
    body = json_dumps(res, JSON_COMPACT);
    snprintf(url, sizeof(url), "%s/Observation", fhir_base(fc));
    memset(&raw, 0, sizeof(raw));
    adp_error_clear(&err);
    rc = http_do(http, "POST", url, NULL, body, NULL, &raw, &err);
    fhir_outcome_text(rc == ADP_OK ? raw.body : "", outcome, sizeof(outcome));
    check(rc == ADP_OK && raw.status == 400 && raw.body != NULL &&
              strstr(raw.body, "OperationOutcome") != NULL,
          "invalid resource answered by 400 OperationOutcome", "rc=%d status=%ld", rc,
          raw.status);
    http_response_free(&raw);
    adp_error_clear(&err);
    rc = fhir_create(fc, "Observation", res, &w, &err);
    check(rc == ADP_EHTTP && err.http_status == 400 &&
              strncmp(err.msg, "POST Observation: HTTP 400: ", 28) == 0 &&
              outcome[0] != '(' && strstr(err.msg, outcome) != NULL,
          "400 error carries the OperationOutcome diagnostics", "rc=%d status=%d msg=%s",
          rc, err.http_status, err.msg);
    check(strstr(err.msg, "MARKER") == NULL, "400 error does not quote the request", "%s",
          err.msg);
    printf("     (message: %s)\n", err.msg);
    json_decref(res);
    res = NULL;

    /* 10. 404 on read */
    adp_error_clear(&err);
    rc = fhir_read(fc, "Patient", "does-not-exist-0", &got, &err);
    check(rc == ADP_EHTTP && err.http_status == 404 && got == NULL &&
              strncmp(err.msg, "GET Patient: HTTP 404", 21) == 0 &&
              strstr(err.msg, "does-not-exist") == NULL,
          "read of a missing id is ADP_EHTTP 404 without the id", "rc=%d status=%d %s",
          rc, err.http_status, err.msg);

    /* 10b. injected 429 with Retry-After: header parsed, status and
     * diagnostics in the error */
    snprintf(url, sizeof(url), "%s/Patient/%s", fhir_base(fc), patient_id);
    if (add_fault(http, base,
                  "{\"method\":\"GET\",\"resourceType\":\"Patient\","
                  "\"status\":429,\"retryAfter\":30,\"count\":2,"
                  "\"diagnostics\":\"slow down please\"}") == 0) {
        memset(&raw, 0, sizeof(raw));
        adp_error_clear(&err);
        rc = http_do(http, "GET", url, NULL, NULL, NULL, &raw, &err);
        check(rc == ADP_OK && raw.status == 429 && raw.retry_after_s == 30,
              "429 response: Retry-After collected", "rc=%d status=%ld retry=%ld", rc,
              raw.status, raw.retry_after_s);
        http_response_free(&raw);
        adp_error_clear(&err);
        rc = fhir_read(fc, "Patient", patient_id, &got, &err);
        check(rc == ADP_EHTTP && err.http_status == 429 &&
                  strstr(err.msg, "slow down please") != NULL &&
                  strstr(err.msg, "Retry-After 30 s") != NULL,
              "429 error carries diagnostics and Retry-After", "rc=%d %s", rc, err.msg);
        json_decref(got);
        got = NULL;
    } else {
        check(0, "fault injection (429)", "POST /$test/fault refused");
    }

    /* 10c. injected 503 on a conditional update */
    if (add_fault(http, base,
                  "{\"method\":\"PUT\",\"resourceType\":\"CarePlan\","
                  "\"status\":503,\"diagnostics\":\"database restarting\"}") == 0) {
        res = json_pack("{s:s, s:s, s:s, s:{s:s}}", "resourceType", "CarePlan", "status",
                        "active", "intent", "proposal", "subject", "reference",
                        "Patient/x");
        adp_error_clear(&err);
        rc = fhir_conditional_update(fc, "CarePlan", "identifier=urn%3Ax%7C1", res, &w,
                                     &err);
        check(rc == ADP_EHTTP && err.http_status == 503 &&
                  strcmp(err.msg, "PUT CarePlan: HTTP 503: database restarting") == 0,
              "503 on conditional update", "rc=%d %s", rc, err.msg);
        json_decref(res);
        res = NULL;
    } else {
        check(0, "fault injection (503)", "POST /$test/fault refused");
    }

    /* 10d. total timeout -> ADP_ENET */
    if (add_fault(http, base,
                  "{\"method\":\"GET\",\"resourceType\":\"Patient\","
                  "\"delayMs\":3000}") == 0) {
        struct http_client *quick = NULL;
        struct http_opts qo;

        memset(&qo, 0, sizeof(qo));
        qo.total_timeout_ms = 500;
        adp_error_clear(&err);
        if (http_client_new(&qo, &quick, &err) == ADP_OK) {
            memset(&raw, 0, sizeof(raw));
            rc = http_do(quick, "GET", url, NULL, NULL, NULL, &raw, &err);
            check(rc == ADP_ENET && strstr(err.msg, "(curl 28)") != NULL,
                  "total timeout is ADP_ENET", "rc=%d %s", rc, err.msg);
            http_response_free(&raw);
            http_client_free(quick);
        }
    } else {
        check(0, "fault injection (delay)", "POST /$test/fault refused");
    }

    /* 11. five requests in flight at once through the multi interface */
    memset(md, 0, sizeof(md));
    snprintf(url, sizeof(url), "%s/Patient/%s", fhir_base(fc), patient_id);
    ok = 1;
    for (i = 0; i < 5; i++) {
        adp_error_clear(&err);
        if (http_submit_sink(http, url, NULL, NULL, NULL, on_multi_done, &md[i], &err) !=
            ADP_OK)
            ok = 0;
    }
    adp_error_clear(&err);
    if (http_client_run(http, NULL, &err) != ADP_OK)
        ok = 0;
    for (i = 0; i < 5; i++)
        if (md[i].calls != 1 || md[i].rc != ADP_OK || md[i].status != 200)
            ok = 0;
    check(ok, "5 concurrent GETs complete once each with 200", "%s", err.msg);

    /* 12. body cap */
    memset(&so, 0, sizeof(so));
    so.max_body = 512;
    adp_error_clear(&err);
    if (http_client_new(&so, &small, &err) == ADP_OK &&
        fhir_client_new(base, small, &fc_small, &err) == ADP_OK) {
        json_t *f5 = json_array();

        snprintf(query, sizeof(query), "subject=Patient/%s&_count=10", patient_id);
        rc = fhir_search_all(fc_small, "Observation", query, f5, 0, &err);
        check(rc == ADP_EHTTP &&
                  strstr(err.msg, "response larger than 512 bytes") != NULL,
              "response over max_body fails cleanly", "rc=%d %s", rc, err.msg);
        json_decref(f5);
    } else {
        check(0, "small client setup", "%s", err.msg);
    }

    /* 13. closed port -> ADP_ENET */
    {
        struct fhir_client *fcc = NULL;
        char cbase[128];

        snprintf(cbase, sizeof(cbase), "http://127.0.0.1:%d/fhir/R4", closed_port());
        adp_error_clear(&err);
        if (fhir_client_new(cbase, http, &fcc, &err) == ADP_OK) {
            rc = fhir_read(fcc, "Patient", "x", &got, &err);
            check(rc == ADP_ENET && err.http_status == 0 &&
                      strncmp(err.msg, "GET Patient: ", 13) == 0,
                  "closed port is ADP_ENET", "rc=%d %s", rc, err.msg);
            fhir_client_free(fcc);
        }
    }

    /* 14. TLS spoken to a plain HTTP port -> ADP_ETLS */
    if (strncmp(base, "http://", 7) == 0) {
        char tls_url[512];

        snprintf(tls_url, sizeof(tls_url), "https://%s/metadata", base + 7);
        adp_error_clear(&err);
        memset(&raw, 0, sizeof(raw));
        rc = http_do(http, "GET", tls_url, NULL, NULL, NULL, &raw, &err);
        check(rc == ADP_ETLS, "https to a plain HTTP port is ADP_ETLS", "rc=%d %s", rc,
              err.msg);
        http_response_free(&raw);
    }

out:
    free(body);
    free(esc);
    free(alt);
    json_decref(found);
    json_decref(res);
    fhir_client_free(fc_alt);
    fhir_client_free(fc_small);
    fhir_client_free(fc);
    http_client_free(small);
    http_client_free(http);
    http_global_cleanup();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 ? 0 : 1;
}
