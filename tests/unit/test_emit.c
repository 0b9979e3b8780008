/*
 * test_emit.c - decision -> FHIR output (emit.c).  Each scenario builds a
 * struct features by hand with source references, runs the real engine_run
 * and checks the CarePlan, RiskAssessment, Provenance, Device, evaluate
 * Bundle (GuidanceResponse, OperationOutcome) and the explanation text.
 *
 * Outputs of a few scenarios are also written to tests/out/emit-*.json
 * (git-ignored) so that they can be posted to the test FHIR server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "buf.h"
#include "emit.h"
#include "emit_int.h"
#include "engine.h"
#include "features.h"
#include "jsonwrite.h"
#include "chaos_alloc.h"
#include "legacy_hash.h"

#define BASE "https://dnmbc-adapter.example.org/fhir"
#define PID "pat-emit-7f3a"
#define PATIENT_REF "Patient/pat-emit-7f3a"
#define NOW1 "2026-11-26T10:00:00Z"
#define NOW2 "2027-03-01T08:30:00Z"

static struct rule_params P;

static long day(const char *s)
{
    long d = 0;

    assert_int_equal(feat_parse_date(s, &d), 0);
    return d;
}

static void known(struct fsrc *s, const char *ref, long date)
{
    s->known = 1;
    s->date = date;
    fsrc_add(s, ref);
}

static void set_site(struct features *f, enum site s, const char *ref, long date)
{
    f->site_present[s] = 1;
    known(&f->site_src[s], ref, date);
}

static void add_response(struct features *f, enum response r, const char *ref, long date)
{
    struct response_obs *o = &f->responses[f->nresponses++];

    o->value = r;
    o->date = date;
    snprintf(o->src, sizeof(o->src), "%s", ref);
}

/* HR+/HER2- (ER+, PR+ from one panel Observation, IHC 1+), bone only, age 53,
 * no response yet: upfront-systemic. */
static void base(struct features *f)
{
    long diag = day("2024-03-01");

    features_init(f);
    f->birth_date = day("1970-06-15");
    known(&f->birth_src, "Patient/" PID, FEAT_NO_DATE);
    f->primary = TRI_YES;
    known(&f->primary_src, "Condition/prim-1", diag);
    snprintf(f->primary_ref, sizeof(f->primary_ref), "Condition/prim-1");
    f->laterality = LAT_LEFT;
    known(&f->laterality_src, "Condition/prim-1", diag);
    f->er = RCP_POS;
    known(&f->er_src, "Observation/er-pr-panel", diag);
    f->pr = RCP_POS;
    known(&f->pr_src, "Observation/er-pr-panel", diag); /* same ref: dedup */
    f->her2_ihc = 1;
    known(&f->her2_ihc_src, "Observation/her2-ihc", diag);
    set_site(f, SITE_BONE, "Condition/met-bone", diag + 10);
}

static void ctx_init(struct emit_ctx *c, const char *now)
{
    memset(c, 0, sizeof(*c));
    c->canonical_base = BASE;
    c->patient_id = PID;
    c->now = now;
    c->software_version = "0.1.0";
    c->params = &P;
}

static int setup(void **state)
{
    (void)state;
    rule_params_defaults(&P);
    return 0;
}

/* ---- helpers ---------------------------------------------------------- */

struct out {
    struct decision d;
    json_t *cp, *ra;
    char hash[65];
};



/* Every scenario's hash is also checked against the old method. */
static void run(const struct features *f, const char *now, struct out *o)
{
    struct emit_ctx c;
    char old[65];

    ctx_init(&c, now);
    engine_run(f, &P, &o->d);
    o->cp = o->ra = NULL;
    assert_int_equal(emit_outputs(&c, f, &o->d, &o->cp, &o->ra, o->hash), 0);
    assert_non_null(o->cp);
    assert_non_null(o->ra);
    legacy_decision_hash(o->cp, o->ra, old);
    assert_string_equal(o->hash, old);
}

static void out_free(struct out *o)
{
    json_decref(o->cp);
    json_decref(o->ra);
}

static const char *sget(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Walk a dotted path of object keys and array indexes ("a.0.b"). */
static json_t *at(json_t *root, const char *path)
{
    char buf[256], *tok, *save = NULL;
    json_t *cur = root;

    snprintf(buf, sizeof(buf), "%s", path);
    for (tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save)) {
        if (json_is_array(cur))
            cur = json_array_get(cur, (size_t)strtoul(tok, NULL, 10));
        else
            cur = json_object_get(cur, tok);
    }
    return cur;
}

static const char *sat(json_t *root, const char *path)
{
    return json_string_value(at(root, path));
}

/* Does any activity.detail carry the SNOMED code (or, with rx, product)? */
static json_t *activity_with_code(json_t *cp, const char *code)
{
    json_t *acts = json_object_get(cp, "activity");
    size_t i;

    for (i = 0; i < json_array_size(acts); i++) {
        json_t *det = json_object_get(json_array_get(acts, i), "detail");
        const char *c1 = sat(det, "code.coding.0.code");
        const char *c2 = sat(det, "productCodeableConcept.coding.0.code");

        if ((c1 && strcmp(c1, code) == 0) || (c2 && strcmp(c2, code) == 0))
            return det;
    }
    return NULL;
}

static json_t *activity_with_text(json_t *cp, const char *needle)
{
    json_t *acts = json_object_get(cp, "activity");
    size_t i;

    for (i = 0; i < json_array_size(acts); i++) {
        json_t *det = json_object_get(json_array_get(acts, i), "detail");
        const char *d = sget(det, "description");

        if (d && strstr(d, needle))
            return det;
    }
    return NULL;
}

static int has_category(json_t *cp, const char *system, const char *code)
{
    json_t *cats = json_object_get(cp, "category");
    size_t i;

    for (i = 0; i < json_array_size(cats); i++) {
        json_t *c = json_array_get(cats, i);

        if (strcmp(sat(c, "coding.0.system"), system) == 0 &&
            strcmp(sat(c, "coding.0.code"), code) == 0)
            return 1;
    }
    return 0;
}

static int notes_contain(json_t *res, const char *needle)
{
    json_t *notes = json_object_get(res, "note");
    size_t i;

    for (i = 0; i < json_array_size(notes); i++)
        if (strstr(sget(json_array_get(notes, i), "text"), needle))
            return 1;
    return 0;
}

/* Every activity: detail only (cpl-3), status not-started, a description,
 * kind (if any) from the R4 required value set. */
static void check_activities(json_t *cp)
{
    static const char *const kinds[] = {"Appointment", "CommunicationRequest",
                                        "DeviceRequest", "MedicationRequest",
                                        "NutritionOrder", "Task", "ServiceRequest",
                                        "VisionPrescription"};
    json_t *acts = json_object_get(cp, "activity");
    size_t i, k;

    assert_true(json_array_size(acts) > 0);
    for (i = 0; i < json_array_size(acts); i++) {
        json_t *a = json_array_get(acts, i), *det = json_object_get(a, "detail");
        const char *kind = sget(det, "kind");
        int ok = 0;

        assert_null(json_object_get(a, "reference"));
        assert_non_null(det);
        assert_string_equal(sget(det, "status"), "not-started");
        assert_non_null(sget(det, "description"));
        assert_true(strlen(sget(det, "description")) > 10);
        assert_null(activity_with_code(cp, "432105003"));
        if (kind == NULL)
            continue;
        for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
            if (strcmp(kind, kinds[k]) == 0)
                ok = 1;
        assert_true(ok);
    }
}

/*
 * XHTML check: starts with the namespaced div, every '&' begins one of the
 * XML entities, every '<' opens or closes an allowed tag, and tags nest.
 */
static void check_xhtml(const char *div)
{
    static const char *const allowed[] = {"div", "p", "b", "ul", "li"};
    char stack[64][8];
    int depth = 0;
    const char *p;

    assert_non_null(div);
    assert_memory_equal(div, "<div xmlns=\"http://www.w3.org/1999/xhtml\">", 42);
    for (p = div; *p; p++) {
        if (*p == '&') {
            assert_true(strncmp(p, "&amp;", 5) == 0 || strncmp(p, "&lt;", 4) == 0 ||
                        strncmp(p, "&gt;", 4) == 0 || strncmp(p, "&quot;", 6) == 0);
        } else if (*p == '>') {
            fail_msg("stray '>' in narrative at offset %d", (int)(p - div));
        } else if (*p == '<') {
            int closing = p[1] == '/';
            const char *n = p + 1 + closing, *e = n;
            char name[8];
            size_t k;
            int ok = 0;

            while (*e >= 'a' && *e <= 'z')
                e++;
            assert_true(e > n && e - n < (long)sizeof(name));
            memcpy(name, n, (size_t)(e - n));
            name[e - n] = '\0';
            for (k = 0; k < sizeof(allowed) / sizeof(allowed[0]); k++)
                if (strcmp(name, allowed[k]) == 0)
                    ok = 1;
            if (!ok)
                fail_msg("tag <%s> not allowed", name);
            while (*e && *e != '>')
                e++;
            assert_int_equal(*e, '>');
            if (closing) {
                assert_true(depth > 0);
                assert_string_equal(stack[depth - 1], name);
                depth--;
            } else {
                assert_true(depth < 64);
                snprintf(stack[depth++], sizeof(stack[0]), "%s", name);
            }
            p = e;
        }
    }
    assert_int_equal(depth, 0);
}

/* XHTML escaping, byte by byte: the three XML specials become entities,
 * tab and newline stay, other control bytes are dropped, everything else
 * (DEL, UTF-8) passes; text that needs nothing comes through whole. */
static void test_xhtml_escape(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"", ""},
        {"plain text, 100% (ok)", "plain text, 100% (ok)"},
        {"a&b<c>d", "a&amp;b&lt;c&gt;d"},
        {"&<>", "&amp;&lt;&gt;"},
        {"x\x01y\x1f\tz\n\r", "xy\tz\n"},
        {"\x7f\xc3\xa9\xe2\x89\xa5 5", "\x7f\xc3\xa9\xe2\x89\xa5 5"},
        {"\x02", ""},
        {"end<", "end&lt;"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b = {0};
        char *got;

        emit_xhtml(&b, cases[i].in);
        got = buf_take(&b);
        assert_non_null(got);
        assert_string_equal(got, cases[i].out);
        free(got);
    }
}

/* Narrative: generated, well-formed, no patient identifiers. */
static const char *check_narrative(json_t *res)
{
    const char *div = sat(res, "text.div");

    assert_string_equal(sat(res, "text.status"), "generated");
    check_xhtml(div);
    assert_null(strstr(div, PID));
    assert_null(strstr(div, "Patient/"));
    assert_null(strstr(div, "Condition/"));
    assert_null(strstr(div, "Observation/"));
    return div;
}

/* The text as emitted into the narrative: XML-escaped. */
static char *escaped(const char *t)
{
    char *o = malloc(strlen(t) * 5 + 1), *q = o;

    assert_non_null(o);
    for (; *t; t++) {
        if (*t == '&')
            q += sprintf(q, "&amp;");
        else if (*t == '<')
            q += sprintf(q, "&lt;");
        else if (*t == '>')
            q += sprintf(q, "&gt;");
        else
            *q++ = *t;
    }
    *q = '\0';
    return o;
}

static json_t *refs_of(json_t *list)
{
    json_t *a = json_array();
    size_t i;

    for (i = 0; i < json_array_size(list); i++)
        json_array_append_new(a, json_string(sget(json_array_get(list, i), "reference")));
    return a;
}

/* Exact set equality (and no duplicates) of a reference list and names. */
static void check_refs(json_t *list, const char *const *want, int nwant)
{
    json_t *got = refs_of(list);
    size_t i;
    int k;

    assert_int_equal(json_array_size(got), (size_t)nwant);
    for (k = 0; k < nwant; k++) {
        int found = 0;

        for (i = 0; i < json_array_size(got); i++)
            if (strcmp(json_string_value(json_array_get(got, i)), want[k]) == 0)
                found++;
        if (found != 1)
            fail_msg("reference %s found %d times", want[k], found);
    }
    json_decref(got);
}

static void save(const char *name, json_t *doc)
{
    char path[256];

    /* Best effort: the files are for the integration tests, not checked here. */
    (void)mkdir("tests/out", 0755);
    snprintf(path, sizeof(path), "tests/out/emit-%s.json", name);
    (void)json_dump_file(doc, path, JSON_INDENT(2) | JSON_SORT_KEYS);
}

static void save_pair(const char *name, struct out *o)
{
    char n[128];

    snprintf(n, sizeof(n), "%s-careplan", name);
    save(n, o->cp);
    snprintf(n, sizeof(n), "%s-riskassessment", name);
    save(n, o->ra);
}

/* ---- tests -------------------------------------------------------------- */

static void test_identifiers(void **state)
{
    struct emit_ctx c;
    char *s;

    (void)state;
    ctx_init(&c, NOW1);
    s = emit_identifier_system(&c, "CarePlan");
    assert_string_equal(s, BASE "/identifier/careplan");
    free(s);
    s = emit_identifier_system(&c, "RiskAssessment");
    assert_string_equal(s, BASE "/identifier/riskassessment");
    free(s);
    s = emit_hash_extension_url(&c);
    assert_string_equal(s, BASE "/StructureDefinition/decision-hash");
    free(s);
}

static void test_upfront_careplan(void **state)
{
    static const char *const sources[] = {
        PATIENT_REF, "Condition/prim-1", "Condition/met-bone",
        "Observation/er-pr-panel", "Observation/her2-ihc"};
    struct features f;
    struct out o;
    json_t *det;
    const char *div;
    char *sys, *esc;
    int i;

    (void)state;
    base(&f);
    run(&f, NOW1, &o);
    assert_int_equal(o.d.rec, REC_UPFRONT_SYSTEMIC);

    assert_string_equal(sget(o.cp, "resourceType"), "CarePlan");
    assert_string_equal(sget(o.cp, "status"), "draft");
    assert_string_equal(sget(o.cp, "intent"), "proposal");
    assert_string_equal(sget(o.cp, "created"), NOW1);
    assert_string_equal(sat(o.cp, "identifier.0.system"), BASE "/identifier/careplan");
    assert_string_equal(sat(o.cp, "identifier.0.value"), PID);
    assert_string_equal(sat(o.cp, "subject.reference"), "Patient/" PID);
    assert_string_equal(sat(o.cp, "addresses.0.reference"), "Condition/prim-1");
    assert_int_equal(json_array_size(json_object_get(o.cp, "addresses")), 1);
    assert_true(has_category(o.cp, "http://hl7.org/fhir/us/core/CodeSystem/careplan-category",
                             "assess-plan"));
    assert_true(has_category(o.cp, BASE "/CodeSystem/dnmbc-recommendation",
                             "upfront-systemic"));
    assert_false(has_category(o.cp, BASE "/CodeSystem/dnmbc-recommendation",
                              "palliative-lrt"));
    assert_int_equal(json_array_size(json_object_get(o.cp, "category")), 2);
    assert_string_equal(sat(o.cp, "category.1.coding.0.display"),
                        rec_display(REC_UPFRONT_SYSTEMIC));
    assert_non_null(sget(o.cp, "title"));
    assert_non_null(strstr(sget(o.cp, "description"), "HR+/HER2-"));
    assert_null(json_object_get(o.cp, "author"));

    /* supportingInfo: exactly the feature sources, deduplicated. */
    check_refs(json_object_get(o.cp, "supportingInfo"), sources, 5);

    check_activities(o.cp);
    det = activity_with_code(o.cp, "169413002");
    assert_non_null(det);
    assert_string_equal(sget(det, "kind"), "MedicationRequest");
    det = activity_with_code(o.cp, "1601374");
    assert_non_null(det);
    assert_string_equal(sat(det, "productCodeableConcept.coding.0.system"),
                        "http://www.nlm.nih.gov/research/umls/rxnorm");
    assert_non_null(strstr(sget(det, "description"), "CDK4/6"));
    det = activity_with_text(o.cp, "Reassess the response");
    assert_non_null(det);
    assert_non_null(strstr(sget(det, "description"), "3-9 months"));
    assert_null(activity_with_code(o.cp, "69031006"));
    assert_null(activity_with_code(o.cp, "108290001"));
    assert_null(activity_with_text(o.cp, "Palliative"));

    /* Notes: rationale names the rule; no local therapy: no caveat. */
    assert_true(notes_contain(o.cp, rule_code(RULE_UPFRONT)));
    assert_true(notes_contain(o.cp, rule_text(RULE_UPFRONT)));
    assert_false(notes_contain(o.cp, "multidisciplinary tumour board"));

    div = check_narrative(o.cp);
    assert_non_null(strstr(div, "Steps"));
    assert_non_null(strstr(div, "HR+/HER2-"));
    assert_non_null(strstr(div, "bone"));
    assert_non_null(strstr(div, rule_code(RULE_UPFRONT)));
    /* Factor texts holding '<' or '&' must appear escaped. */
    for (i = 0; i < FAC_COUNT; i++)
        if (o.d.factors[i]) {
            esc = escaped(factor_text((enum factor)i));
            assert_non_null(strstr(div, esc));
            free(esc);
        }

    /* Hash extension, recorded hash round trip. */
    sys = emit_hash_extension_url(&(struct emit_ctx){.canonical_base = BASE});
    assert_string_equal(sat(o.cp, "extension.0.url"), sys);
    free(sys);
    assert_int_equal(strlen(o.hash), 64);
    assert_true(strspn(o.hash, "0123456789abcdef") == 64);
    save_pair("upfront", &o);
    out_free(&o);
}

static void test_hash(void **state)
{
    struct features f;
    struct out a, b, c;
    struct emit_ctx ctx;
    json_t *cp, *ra, *pair;
    char mine[65];

    (void)state;
    base(&f);
    run(&f, NOW1, &a);
    run(&f, NOW2, &b);
    /* Same decision at another time: same hash, different time fields. */
    assert_string_equal(a.hash, b.hash);
    assert_string_not_equal(sget(a.cp, "created"), sget(b.cp, "created"));
    assert_string_equal(sget(b.ra, "occurrenceDateTime"), NOW2);

    ctx_init(&ctx, NOW1);
    assert_string_equal(emit_recorded_hash(&ctx, a.cp), a.hash);
    assert_string_equal(emit_recorded_hash(&ctx, a.ra), a.hash);
    assert_null(emit_recorded_hash(&ctx, json_object_get(a.cp, "subject")));
    {
        struct emit_ctx other = ctx;

        other.canonical_base = "https://elsewhere.example.org/fhir";
        assert_null(emit_recorded_hash(&other, a.cp));
    }

    /* The hash is SHA-256 of [CarePlan, RiskAssessment] without time fields
     * and hash extensions, keys sorted, compact: the same as before the
     * streaming hasher, at both times. */
    legacy_decision_hash(a.cp, a.ra, mine);
    assert_string_equal(mine, a.hash);
    legacy_decision_hash(b.cp, b.ra, mine);
    assert_string_equal(mine, a.hash);
    /* And the same as jsonwrite_sha256 of that pair. */
    cp = json_deep_copy(a.cp);
    ra = json_deep_copy(a.ra);
    json_object_del(cp, "created");
    legacy_drop_hash_extension(cp);
    json_object_del(ra, "occurrenceDateTime");
    legacy_drop_hash_extension(ra);
    pair = json_pack("[oo]", cp, ra);
    assert_int_equal(jsonwrite_sha256(pair, mine), 0);
    assert_string_equal(mine, a.hash);
    json_decref(pair);

    /* Any change of content changes the hash: a grade adds the He model. */
    f.grade = 2;
    known(&f.grade_src, "Observation/grade", FEAT_NO_DATE);
    run(&f, NOW1, &c);
    assert_int_equal(c.d.rec, a.d.rec);
    assert_string_not_equal(c.hash, a.hash);
    out_free(&c);
    /* A new response changes the decision and the hash. */
    add_response(&f, RESP_PD, "Observation/resp-1", day("2024-08-01"));
    run(&f, NOW1, &c);
    assert_int_equal(c.d.rec, REC_SECOND_LINE_SYSTEMIC);
    assert_string_not_equal(c.hash, a.hash);
    out_free(&c);
    out_free(&a);
    out_free(&b);
}

/* Bone only, partial response, ECOG 0, grade 2: curative-lrt, high. */
static void curative(struct features *f)
{
    base(f);
    add_response(f, RESP_SD, "Observation/resp-early", day("2024-05-01"));
    add_response(f, RESP_PR, "Observation/resp-late", day("2024-08-01"));
    f->ecog = 0;
    known(&f->ecog_src, "Observation/ecog", day("2024-08-01"));
    f->grade = 2;
    known(&f->grade_src, "Observation/grade", day("2024-03-01"));
}

static void test_curative_lrt(void **state)
{
    static const char *const sources[] = {
        PATIENT_REF, "Condition/prim-1", "Condition/met-bone",
        "Observation/grade", "Observation/er-pr-panel", "Observation/her2-ihc",
        "Observation/ecog", "Observation/resp-early", "Observation/resp-late"};
    struct features f;
    struct out o;
    json_t *det, *pred;
    const char *div;
    size_t i;

    (void)state;
    curative(&f);
    run(&f, NOW1, &o);
    assert_int_equal(o.d.rec, REC_CURATIVE_LRT);
    assert_int_equal(o.d.benefit, BENEFIT_HIGH);
    assert_true(has_category(o.cp, BASE "/CodeSystem/dnmbc-recommendation", "curative-lrt"));
    check_refs(json_object_get(o.cp, "supportingInfo"), sources, 9);
    check_refs(json_object_get(o.ra, "basis"), sources, 9);
    check_activities(o.cp);

    det = activity_with_code(o.cp, "69031006");
    assert_non_null(det);
    assert_string_equal(sget(det, "kind"), "ServiceRequest");
    assert_string_equal(sat(det, "code.coding.0.system"), "http://snomed.info/sct");
    assert_string_equal(sat(det, "reasonReference.0.reference"), "Condition/prim-1");
    assert_non_null(strstr(sget(det, "description"), "left breast"));
    assert_non_null(activity_with_code(o.cp, "108290001"));
    det = activity_with_code(o.cp, "387713003");
    assert_non_null(det);
    assert_non_null(strstr(sget(det, "description"), "bone"));
    assert_string_equal(sat(det, "reasonReference.0.reference"), "Condition/met-bone");
    /* Systemic therapy continues. */
    det = activity_with_code(o.cp, "169413002");
    assert_non_null(det);
    assert_non_null(strstr(sget(det, "description"), "Continue"));
    /* Performance status known: nothing to confirm. */
    assert_null(activity_with_text(o.cp, "performance status"));

    /* Local therapy proposed: the caveat is in the notes and narrative. */
    assert_true(notes_contain(o.cp, "MF07-01"));
    assert_true(notes_contain(o.cp, "not an order"));
    assert_true(notes_contain(o.cp, rule_code(RULE_CURATIVE_LRT)));
    assert_true(notes_contain(o.cp, "low metastatic burden met"));
    div = check_narrative(o.cp);
    assert_non_null(strstr(div, "multidisciplinary tumour board"));

    /* RiskAssessment. */
    assert_string_equal(sget(o.ra, "resourceType"), "RiskAssessment");
    assert_string_equal(sget(o.ra, "status"), "preliminary");
    assert_string_equal(sat(o.ra, "identifier.0.system"), BASE "/identifier/riskassessment");
    assert_string_equal(sat(o.ra, "identifier.0.value"), PID);
    assert_string_equal(sat(o.ra, "subject.reference"), "Patient/" PID);
    assert_string_equal(sat(o.ra, "condition.reference"), "Condition/prim-1");
    assert_string_equal(sget(o.ra, "occurrenceDateTime"), NOW1);
    assert_string_equal(sat(o.ra, "method.coding.0.system"), BASE "/CodeSystem/dnmbc-method");
    assert_non_null(strstr(sat(o.ra, "method.text"), "0.1.0"));
    assert_string_equal(sat(o.ra, "extension.0.valueString"), o.hash);
    pred = at(o.ra, "prediction.0");
    assert_string_equal(sat(pred, "qualitativeRisk.coding.0.system"),
                        "http://terminology.hl7.org/CodeSystem/risk-probability");
    assert_string_equal(sat(pred, "qualitativeRisk.coding.0.code"), "high");
    assert_non_null(sat(pred, "outcome.text"));
    /* Lin M1a (relative risk 1 vs M1a) and He score 1 -> 64.5 %. */
    pred = at(o.ra, "prediction.1");
    assert_true(json_real_value(json_object_get(pred, "relativeRisk")) == 1.0);
    assert_non_null(strstr(sget(pred, "rationale"), "M1a"));
    pred = at(o.ra, "prediction.2");
    assert_int_equal(o.d.models.he_score, 1);
    assert_true(json_real_value(json_object_get(pred, "probabilityDecimal")) == 64.5);
    assert_non_null(strstr(sget(pred, "rationale"), "percentage"));
    assert_int_equal(json_array_size(json_object_get(o.ra, "prediction")), 3);
    /* ras-2: every decimal probability <= 100; a prediction without one
     * says why in probabilityRange (validators read a missing probability
     * as a ras-2 failure). */
    for (i = 0; i < json_array_size(json_object_get(o.ra, "prediction")); i++) {
        json_t *pr = json_array_get(at(o.ra, "prediction"), i);
        json_t *pd = json_object_get(pr, "probabilityDecimal");

        if (pd != NULL) {
            assert_true(json_real_value(pd) >= 0 && json_real_value(pd) <= 100);
            assert_null(json_object_get(pr, "probabilityRange"));
        } else {
            assert_string_equal(sat(pr, "probabilityRange.extension.0.url"),
                                "http://hl7.org/fhir/StructureDefinition/data-absent-reason");
            assert_string_equal(sat(pr, "probabilityRange.extension.0.valueCode"),
                                "not-applicable");
        }
    }
    /* Models not computed, each with its reason. */
    assert_true(notes_contain(o.ra, "Yoo 2017"));
    assert_true(notes_contain(o.ra, "Plichta"));
    assert_true(notes_contain(o.ra, "no 21-gene recurrence score is recorded"));
    assert_false(notes_contain(o.ra, "He 2020"));
    assert_false(notes_contain(o.ra, "Lin M1"));
    check_narrative(o.ra);
    save_pair("curative-lrt", &o);
    out_free(&o);
}

static void test_curative_ps_unverified_palliative(void **state)
{
    struct features f;
    struct out o;
    json_t *det;

    (void)state;
    curative(&f);
    f.ecog = -1;
    memset(&f.ecog_src, 0, sizeof(f.ecog_src));
    f.ecog_src.date = FEAT_NO_DATE;
    f.symptomatic_primary = TRI_YES;
    known(&f.symptomatic_src, "Condition/ulcer", day("2024-03-05"));
    run(&f, NOW1, &o);
    assert_int_equal(o.d.rec, REC_CURATIVE_LRT);
    assert_int_equal(o.d.crit_ps, CRIT_UNVERIFIED);
    assert_true(o.d.palliative);
    det = activity_with_text(o.cp, missing_text(MISS_PERFORMANCE_STATUS));
    assert_non_null(det);
    assert_true(has_category(o.cp, BASE "/CodeSystem/dnmbc-recommendation", "palliative-lrt"));
    det = activity_with_text(o.cp, "Palliative");
    assert_non_null(det);
    assert_string_equal(sat(det, "reasonCode.0.coding.0.code"), "363676003");
    assert_string_equal(sat(det, "reasonReference.0.reference"), "Condition/ulcer");
    assert_true(notes_contain(o.cp, "unverified"));
    assert_true(notes_contain(o.cp, missing_text(MISS_PERFORMANCE_STATUS)));
    check_activities(o.cp);
    check_narrative(o.cp);
    out_free(&o);
}

static void test_upfront_palliative(void **state)
{
    struct features f;
    struct out o;

    (void)state;
    base(&f);
    f.symptomatic_primary = TRI_YES;
    known(&f.symptomatic_src, "Observation/bleeding", day("2024-03-02"));
    run(&f, NOW1, &o);
    assert_int_equal(o.d.rec, REC_UPFRONT_SYSTEMIC);
    assert_true(o.d.palliative);
    assert_int_equal(json_array_size(json_object_get(o.cp, "category")), 3);
    assert_non_null(activity_with_text(o.cp, "Palliative"));
    /* Local therapy proposed (palliative): caveat present. */
    assert_true(notes_contain(o.cp, "not an order"));
    assert_true(notes_contain(o.cp, rule_code(RULE_PALLIATIVE)));
    out_free(&o);
}

static void test_second_line(void **state)
{
    struct features f;
    struct out o;
    json_t *det;

    (void)state;
    base(&f);
    add_response(&f, RESP_PD, "Observation/resp-pd", day("2024-09-01"));
    run(&f, NOW1, &o);
    assert_int_equal(o.d.rec, REC_SECOND_LINE_SYSTEMIC);
    check_activities(o.cp);
    /* rules version 2: the step names what the disease progressed on and
     * leaves the regimen to current guidelines, without the first-line
     * trial citation */
    det = activity_with_text(o.cp, "Next-line");
    assert_non_null(det);
    assert_string_equal(sget(det, "kind"), "MedicationRequest");
    assert_non_null(strstr(sget(det, "description"), "progressed on"));
    assert_non_null(strstr(sget(det, "description"), "current guidelines"));
    assert_null(strstr(sget(det, "description"), "PALATINE"));
    det = activity_with_text(o.cp, "locoregional therapy");
    assert_non_null(det);
    assert_true(json_is_true(json_object_get(det, "doNotPerform")));
    /* First-line agents are not proposed after progression. */
    assert_null(activity_with_code(o.cp, "1601374"));
    assert_null(activity_with_code(o.cp, "69031006"));
    assert_false(notes_contain(o.cp, "not an order"));
    assert_string_equal(sat(o.ra, "prediction.0.qualitativeRisk.coding.0.code"), "low");
    assert_non_null(strstr(sat(o.cp, "text.div"), "Do not:"));
    save_pair("second-line", &o);
    out_free(&o);
}

/* TNBC, liver + lung, stable disease, PD-L1+, gBRCA: continue-systemic with
 * chemotherapy + immunotherapy and a PARP option; Lin M1c; He score 3. */
static void test_continue_tnbc(void **state)
{
    struct features f;
    struct out o;
    json_t *det, *pred;
    size_t i;
    int lin = 0, he = 0, rs = 0;

    (void)state;
    base(&f);
    f.er = RCP_NEG;
    f.pr = RCP_NEG;
    f.her2_ihc = 0;
    f.grade = 3;
    known(&f.grade_src, "Observation/grade", FEAT_NO_DATE);
    memset(f.site_present, 0, sizeof(f.site_present));
    memset(&f.site_src[SITE_BONE], 0, sizeof(f.site_src[SITE_BONE]));
    f.site_src[SITE_BONE].date = FEAT_NO_DATE;
    set_site(&f, SITE_LIVER, "Condition/met-liver", day("2024-03-05"));
    set_site(&f, SITE_LUNG, "Condition/met-lung", day("2024-03-05"));
    f.pdl1 = TRI_YES;
    known(&f.pdl1_src, "Observation/pdl1", FEAT_NO_DATE);
    f.gbrca = TRI_YES;
    known(&f.gbrca_src, "Observation/brca", FEAT_NO_DATE);
    f.rs = 25;
    known(&f.rs_src, "Observation/rs", FEAT_NO_DATE);
    add_response(&f, RESP_SD, "Observation/resp-sd", day("2024-08-01"));
    f.ecog = 1;
    known(&f.ecog_src, "Observation/ecog", day("2024-08-01"));
    run(&f, NOW1, &o);
    assert_int_equal(o.d.rec, REC_CONTINUE_SYSTEMIC);
    check_activities(o.cp);
    det = activity_with_code(o.cp, "367336001");
    assert_non_null(det);
    assert_non_null(strstr(sget(det, "description"), "Continue"));
    det = activity_with_code(o.cp, "76334006");
    assert_non_null(det);
    assert_string_equal(sat(det, "productCodeableConcept.coding.0.code"), "1547545");
    assert_non_null(activity_with_text(o.cp, "PARP"));
    assert_null(activity_with_text(o.cp, "PI3K"));
    assert_null(activity_with_code(o.cp, "69031006"));
    assert_false(notes_contain(o.cp, "not an order"));
    assert_true(notes_contain(o.cp, "not triple-negative not met"));
    assert_true(notes_contain(o.cp, factor_text(FAC_TNBC)));

    for (i = 0; i < json_array_size(json_object_get(o.ra, "prediction")); i++) {
        pred = json_array_get(json_object_get(o.ra, "prediction"), i);
        if (json_object_get(pred, "relativeRisk")) {
            assert_true(json_real_value(json_object_get(pred, "relativeRisk")) == 2.45);
            assert_non_null(strstr(sget(pred, "rationale"), "M1c"));
            lin = 1;
        }
        if (json_object_get(pred, "probabilityDecimal")) {
            assert_true(json_real_value(json_object_get(pred, "probabilityDecimal")) == 23.7);
            he = 1;
        }
        if (strstr(sat(pred, "outcome.text"), "recurrence score"))
            rs = 1;
    }
    assert_true(lin && he);
    /* RS recorded but TNBC is outside the TBCRC 013 population. */
    assert_false(rs);
    assert_true(notes_contain(o.ra, "ER-positive/HER2-negative disease only"));
    save_pair("continue-tnbc", &o);
    out_free(&o);
}

static void test_her2_positive_and_rs(void **state)
{
    struct features f;
    struct out o;
    json_t *det;
    size_t i;
    int rs = 0;

    (void)state;
    base(&f);
    f.her2_ihc = 3;
    run(&f, NOW1, &o);
    assert_int_equal(o.d.systemic, SYS_ANTIHER2_CHEMO_ENDO);
    det = activity_with_code(o.cp, "224905");
    assert_non_null(det);
    assert_string_equal(sget(det, "kind"), "MedicationRequest");
    assert_non_null(activity_with_code(o.cp, "367336001"));
    det = activity_with_code(o.cp, "169413002");
    assert_non_null(det);
    assert_non_null(strstr(sget(det, "description"), "maintenance"));
    out_free(&o);

    /* ER+/HER2- with RS 12: the RS category is a prediction (low). */
    base(&f);
    f.rs = 12;
    known(&f.rs_src, "Observation/rs", FEAT_NO_DATE);
    run(&f, NOW1, &o);
    for (i = 0; i < json_array_size(json_object_get(o.ra, "prediction")); i++) {
        json_t *pred = json_array_get(json_object_get(o.ra, "prediction"), i);

        if (strstr(sat(pred, "outcome.text"), "recurrence score")) {
            assert_string_equal(sat(pred, "qualitativeRisk.coding.0.code"), "low");
            assert_non_null(strstr(sget(pred, "rationale"), "TBCRC 013"));
            rs = 1;
        }
    }
    assert_true(rs);
    assert_false(notes_contain(o.ra, "21-gene"));
    assert_true(notes_contain(o.ra, "He 2020 biologic score not computed: grade unknown"));
    out_free(&o);
}

static void test_insufficient_data(void **state)
{
    struct features f;
    struct out o;
    const char *div;

    (void)state;
    base(&f);
    f.er = RCP_UNKNOWN;
    memset(&f.er_src, 0, sizeof(f.er_src));
    f.pr = RCP_UNKNOWN;
    memset(&f.pr_src, 0, sizeof(f.pr_src));
    f.her2_ihc = 2;
    memset(f.site_present, 0, sizeof(f.site_present));
    memset(&f.site_src[SITE_BONE], 0, sizeof(f.site_src[SITE_BONE]));
    f.metastasis_unsited = 1;
    known(&f.metastasis_unsited_src, "Condition/met-nos", day("2024-03-03"));
    run(&f, NOW1, &o);
    assert_int_equal(o.d.rec, REC_INSUFFICIENT_DATA);
    assert_true(has_category(o.cp, BASE "/CodeSystem/dnmbc-recommendation",
                             "insufficient-data"));
    check_activities(o.cp);
    assert_non_null(activity_with_text(o.cp, "ER/PR testing of the primary or a metastasis"));
    assert_non_null(activity_with_text(o.cp, "ISH for HER2 IHC 2+"));
    assert_non_null(activity_with_text(o.cp, "staging imaging to define metastatic sites"));
    /* One activity per missing item and no therapy. */
    assert_int_equal(json_array_size(json_object_get(o.cp, "activity")), 3);
    assert_null(activity_with_code(o.cp, "367336001"));
    assert_true(notes_contain(o.cp, "Missing data"));
    div = check_narrative(o.cp);
    assert_non_null(strstr(div, "Missing data"));
    assert_non_null(strstr(div, "ISH for HER2 IHC 2+"));
    assert_true(notes_contain(o.ra, "Lin M1 subgroup not computed"));
    assert_true(notes_contain(o.ra, "hormone-receptor status unknown"));
    assert_true(notes_contain(o.ra, "HER2 status equivocal"));
    save_pair("insufficient-data", &o);
    out_free(&o);
}

static void test_not_applicable_bundle(void **state)
{
    struct features f;
    struct decision d;
    struct emit_ctx c;
    json_t *bundle, *report, *gr, *oo, *cp = NULL, *ra = NULL;
    char hash[65];

    (void)state;
    base(&f);
    memset(f.site_present, 0, sizeof(f.site_present));
    memset(&f.site_src[SITE_BONE], 0, sizeof(f.site_src[SITE_BONE]));
    engine_run(&f, &P, &d);
    assert_int_equal(d.rec, REC_NOT_APPLICABLE);
    ctx_init(&c, NOW1);
    assert_int_equal(emit_outputs(&c, &f, &d, &cp, &ra, hash), -1);
    assert_null(cp);
    assert_null(ra);

    report = json_pack("{s:[],s:[{s:s,s:s,s:s}]}", "unmapped", "issues", "resource",
                       "Observation/bad-1", "field", "valueQuantity", "message",
                       "unit 'xyz' is not UCUM");
    bundle = emit_evaluate_bundle(&c, &f, &d, report);
    assert_non_null(bundle);
    assert_string_equal(sget(bundle, "resourceType"), "Bundle");
    assert_string_equal(sget(bundle, "type"), "collection");
    assert_int_equal(json_array_size(json_object_get(bundle, "entry")), 2);
    gr = at(bundle, "entry.0.resource");
    assert_string_equal(sget(gr, "resourceType"), "GuidanceResponse");
    assert_string_equal(sget(gr, "status"), "success");
    assert_string_equal(sget(gr, "moduleUri"), BASE "/PlanDefinition/dnmbc-local-therapy");
    assert_string_equal(sat(gr, "subject.reference"), "Patient/" PID);
    assert_string_equal(sget(gr, "occurrenceDateTime"), NOW1);
    assert_string_equal(sat(gr, "reasonCode.0.coding.0.code"), "not-applicable");
    assert_non_null(strstr(sat(gr, "note.0.text"), "no distant metastasis"));
    assert_non_null(strstr(sat(gr, "note.0.text"), rule_code(RULE_NA_NO_METASTASIS)));
    assert_null(json_object_get(gr, "result"));
    check_narrative(gr);
    oo = at(bundle, "entry.1.resource");
    assert_string_equal(sget(oo, "resourceType"), "OperationOutcome");
    assert_string_equal(sat(oo, "issue.0.severity"), "warning");
    assert_non_null(strstr(sat(oo, "issue.0.diagnostics"), "Observation/bad-1"));
    save("not-applicable-bundle", bundle);
    json_decref(bundle);
    json_decref(report);
}

static void test_evaluate_bundle(void **state)
{
    struct features f;
    struct decision d;
    struct emit_ctx c;
    json_t *b1, *b2, *empty;
    const char *u1, *u2;

    (void)state;
    curative(&f);
    engine_run(&f, &P, &d);
    ctx_init(&c, NOW1);
    empty = json_pack("{s:[],s:[]}", "unmapped", "issues");
    b1 = emit_evaluate_bundle(&c, &f, &d, empty);
    c.now = NOW2;
    b2 = emit_evaluate_bundle(&c, &f, &d, NULL);
    assert_non_null(b1);
    assert_non_null(b2);
    assert_int_equal(json_array_size(json_object_get(b1, "entry")), 2);
    assert_string_equal(sat(b1, "entry.0.resource.resourceType"), "CarePlan");
    assert_string_equal(sat(b1, "entry.1.resource.resourceType"), "RiskAssessment");
    u1 = sat(b1, "entry.0.fullUrl");
    u2 = sat(b1, "entry.1.fullUrl");
    assert_int_equal(strlen(u1), 45);
    assert_memory_equal(u1, "urn:uuid:", 9);
    assert_int_equal(u1[9 + 14], '8');
    assert_string_not_equal(u1, u2);
    /* Deterministic: same decision, same fullUrls at another time. */
    assert_string_equal(u1, sat(b2, "entry.0.fullUrl"));
    assert_string_equal(u2, sat(b2, "entry.1.fullUrl"));
    save("curative-lrt-bundle", b1);
    json_decref(b1);
    json_decref(b2);
    json_decref(empty);
}

static void test_provenance_device(void **state)
{
    static const char *const targets[] = {"CarePlan/cp-1/_history/1",
                                          "RiskAssessment/ra-1/_history/1"};
    struct features f;
    struct emit_ctx c;
    json_t *pv, *dev, *ents;
    size_t i;

    (void)state;
    curative(&f);
    ctx_init(&c, NOW1);
    pv = emit_provenance(&c, &f, targets, 2);
    assert_non_null(pv);
    assert_string_equal(sget(pv, "resourceType"), "Provenance");
    assert_string_equal(sat(pv, "target.0.reference"), targets[0]);
    assert_string_equal(sat(pv, "target.1.reference"), targets[1]);
    assert_string_equal(sget(pv, "recorded"), NOW1);
    assert_string_equal(sat(pv, "agent.0.type.coding.0.code"), "author");
    assert_string_equal(sat(pv, "agent.0.type.coding.0.system"),
                        "http://terminology.hl7.org/CodeSystem/provenance-participant-type");
    /* the author is contained: no Device resource of our own on the server */
    assert_string_equal(sat(pv, "agent.0.who.reference"), "#" EMIT_DEVICE_LOCAL_ID);
    assert_non_null(strstr(sat(pv, "agent.0.who.display"), "dnmbc-adapter"));
    assert_int_equal(json_array_size(json_object_get(pv, "contained")), 1);
    assert_string_equal(sat(pv, "contained.0.resourceType"), "Device");
    assert_string_equal(sat(pv, "contained.0.id"), EMIT_DEVICE_LOCAL_ID);
    assert_string_equal(sat(pv, "contained.0.identifier.0.system"), BASE "/identifier/device");
    assert_string_equal(sat(pv, "contained.0.version.0.value"), "0.1.0");
    ents = json_object_get(pv, "entity");
    assert_int_equal(json_array_size(ents), 9);
    for (i = 0; i < json_array_size(ents); i++)
        assert_string_equal(sget(json_array_get(ents, i), "role"), "source");
    assert_string_equal(sat(pv, "entity.0.what.reference"), "Patient/" PID);
    save("provenance", pv);
    json_decref(pv);

    dev = emit_device(&c);
    assert_string_equal(sget(dev, "resourceType"), "Device");
    assert_string_equal(sat(dev, "identifier.0.system"), BASE "/identifier/device");
    assert_string_equal(sat(dev, "identifier.0.value"), "dnmbc-adapter");
    assert_string_equal(sat(dev, "deviceName.0.name"), "dnmbc-adapter");
    assert_string_equal(sat(dev, "version.0.value"), "0.1.0");
    assert_non_null(sat(dev, "type.text"));
    save("device", dev);
    json_decref(dev);
}

static void test_operation_outcome(void **state)
{
    json_t *oo = emit_operation_outcome("structure", "entry[3]: missing 'code'");

    (void)state;
    assert_string_equal(sget(oo, "resourceType"), "OperationOutcome");
    assert_int_equal(json_array_size(json_object_get(oo, "issue")), 1);
    assert_string_equal(sat(oo, "issue.0.severity"), "error");
    assert_string_equal(sat(oo, "issue.0.code"), "structure");
    assert_string_equal(sat(oo, "issue.0.diagnostics"), "entry[3]: missing 'code'");
    json_decref(oo);
}

static void test_explain(void **state)
{
    struct features f;
    struct decision d;
    struct emit_ctx c;
    json_t *report;
    char *text;
    int r, m;

    (void)state;
    base(&f);
    f.er = RCP_UNKNOWN;
    memset(&f.er_src, 0, sizeof(f.er_src));
    f.pr = RCP_UNKNOWN;
    memset(&f.pr_src, 0, sizeof(f.pr_src));
    f.symptomatic_primary = TRI_YES;
    known(&f.symptomatic_src, "Condition/ulcer", day("2024-03-05"));
    engine_run(&f, &P, &d);
    assert_int_equal(d.rec, REC_INSUFFICIENT_DATA);
    ctx_init(&c, NOW1);
    report = json_pack("{s:[{s:s,s:s,s:s,s:s,s:i}],s:[]}", "unmapped", "system",
                       "http://loinc.org", "code", "99999-9", "display", "Mystery test",
                       "resourceType", "Observation", "count", 2, "issues");
    text = emit_explain(&c, &f, &d, report);
    assert_non_null(text);
    assert_non_null(strstr(text, "Features\n"));
    assert_non_null(strstr(text, "  HER2 IHC: 1+  [Observation/her2-ihc]"));
    assert_non_null(strstr(text, "  metastasis: bone, onset 2024-03-11  [Condition/met-bone]"));
    assert_non_null(strstr(text, "missing:"));
    assert_non_null(strstr(text, " ER,"));
    assert_non_null(strstr(text, "Derived\n"));
    assert_non_null(strstr(text, "age at diagnosis: 53"));
    assert_non_null(strstr(text, "M1 subgroup: M1a"));
    assert_non_null(strstr(text, "Rules fired\n"));
    for (r = 0; r < RULE_COUNT; r++)
        if (d.fired[r]) {
            assert_non_null(strstr(text, rule_code((enum rule_id)r)));
            assert_non_null(strstr(text, rule_text((enum rule_id)r)));
        } else {
            assert_null(strstr(text, rule_code((enum rule_id)r)));
        }
    assert_non_null(strstr(text, "insufficient-data"));
    assert_non_null(strstr(text, "plus palliative-lrt"));
    assert_non_null(strstr(text, "Missing data\n"));
    for (m = 0; m < MISS_COUNT; m++)
        if (d.missing[m])
            assert_non_null(strstr(text, missing_text((enum missing_item)m)));
    assert_non_null(strstr(text, "ER/PR testing"));
    assert_non_null(strstr(text, "Models\n"));
    assert_non_null(strstr(text, "Yoo 2017"));
    assert_non_null(strstr(text, "Unmapped codings\n  http://loinc.org|99999-9 \"Mystery test\""
                                 " (Observation x2)"));
    free(text);
    json_decref(report);
}

/* Allocation failure at every step (jansson allocator, chaos_alloc.h): each
 * call either succeeds with the same result or fails cleanly; leaks show
 * under valgrind / ASan. */
static void test_allocation_failures(void **state)
{
    static const char *const targets[] = {"CarePlan/cp-1/_history/1"};
    struct features f;
    struct decision d;
    struct emit_ctx c;
    json_t *cp, *ra, *doc, *ref_cp, *ref_ra, *ref_doc;
    char ref[65], hash[65];
    int at, rc, failures = 0;

    (void)state;
    curative(&f);
    f.symptomatic_primary = TRI_YES;
    known(&f.symptomatic_src, "Condition/ulcer", day("2024-03-05"));
    engine_run(&f, &P, &d);
    ctx_init(&c, NOW1);
    assert_int_equal(emit_outputs(&c, &f, &d, &ref_cp, &ref_ra, ref), 0);

    /* The first run that succeeds must be complete: an allocation failure
     * that was ignored would show as a difference here. */
    for (at = 1;; at++) {
        cp = ra = NULL;
        chaos_on(at);
        rc = emit_outputs(&c, &f, &d, &cp, &ra, hash);
        chaos_off();
        if (rc == 0) {
            assert_string_equal(hash, ref);
            assert_true(json_equal(cp, ref_cp));
            assert_true(json_equal(ra, ref_ra));
            json_decref(cp);
            json_decref(ra);
            break;
        }
        assert_int_equal(rc, -1);
        assert_null(cp);
        assert_null(ra);
        failures++;
        assert_true(at < 200000);
    }
    assert_true(failures > 100);
    json_decref(ref_cp);
    json_decref(ref_ra);

    ref_doc = emit_evaluate_bundle(&c, &f, &d, NULL);
    for (at = 1;; at++) {
        chaos_on(at);
        doc = emit_evaluate_bundle(&c, &f, &d, NULL);
        chaos_off();
        if (doc != NULL) {
            assert_true(json_equal(doc, ref_doc));
            json_decref(doc);
            break;
        }
        assert_true(at < 200000);
    }
    json_decref(ref_doc);
    ref_doc = emit_provenance(&c, &f, targets, 1);
    for (at = 1;; at++) {
        chaos_on(at);
        doc = emit_provenance(&c, &f, targets, 1);
        chaos_off();
        if (doc != NULL) {
            assert_true(json_equal(doc, ref_doc));
            json_decref(doc);
            break;
        }
        assert_true(at < 200000);
    }
    json_decref(ref_doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identifiers),
        cmocka_unit_test(test_xhtml_escape),
        cmocka_unit_test(test_upfront_careplan),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_curative_lrt),
        cmocka_unit_test(test_curative_ps_unverified_palliative),
        cmocka_unit_test(test_upfront_palliative),
        cmocka_unit_test(test_second_line),
        cmocka_unit_test(test_continue_tnbc),
        cmocka_unit_test(test_her2_positive_and_rs),
        cmocka_unit_test(test_insufficient_data),
        cmocka_unit_test(test_not_applicable_bundle),
        cmocka_unit_test(test_evaluate_bundle),
        cmocka_unit_test(test_provenance_device),
        cmocka_unit_test(test_operation_outcome),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_allocation_failures),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
