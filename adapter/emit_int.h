/*
 * emit_int.h - what the emit files share (emit.c, emit_careplan.c,
 * emit_risk.c, emit_output.c); not for use outside emit.
 *
 * Building JSON: every set/append goes through put()/add(), which record an
 * allocation failure in struct bld instead of checking each call; the public
 * functions look at the flag once at the end and free everything on failure.
 * Texts are built in a struct buf (buf.h), whose failures stick the same way.
 */
#ifndef ADP_EMIT_INT_H
#define ADP_EMIT_INT_H

#include <stdlib.h>

#include <jansson.h>

#include "buf.h"
#include "jsonplain.h"
#include "emit.h"

#define SYS_SCT "http://snomed.info/sct"
#define SYS_RXNORM "http://www.nlm.nih.gov/research/umls/rxnorm"
#define SYS_UCUM "http://unitsofmeasure.org"
#define SYS_RISK_PROB "http://terminology.hl7.org/CodeSystem/risk-probability"
#define SYS_USCORE_CP_CAT "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
#define SYS_PROV_PARTICIPANT \
    "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
#define XHTML_NS "http://www.w3.org/1999/xhtml"

/* Our own code for the additive palliative flag (not an enum rec value). */
#define PALLIATIVE_CODE "palliative-lrt"
#define PALLIATIVE_DISPLAY "Palliative locoregional therapy of the primary"
#define METHOD_CODE "dnmbc-lrt-rules-v1"
#define METHOD_DISPLAY "dnMBC local-therapy decision rules, version 1"

static inline const char *nz(const char *s)
{
    return s != NULL ? s : "";
}

struct bld {
    int oom;
};

/* Steals v (also on failure). */
static inline void put(struct bld *b, json_t *o, const char *key, json_t *v)
{
    if (json_object_set_new(o, key, v) != 0)
        b->oom = 1;
}

/* Steals v (also on failure). */
static inline void add(struct bld *b, json_t *a, json_t *v)
{
    if (json_array_append_new(a, v) != 0)
        b->oom = 1;
}

/* What a public builder returns: v, or NULL (v freed) when anything failed. */
static inline json_t *built(const struct bld *b, json_t *v)
{
    if (b->oom) {
        json_decref(v);
        return NULL;
    }
    return v;
}

static inline json_t *obj(struct bld *b)
{
    json_t *o = json_object();

    if (o == NULL)
        b->oom = 1;
    return o;
}

static inline json_t *arr(struct bld *b)
{
    json_t *a = json_array();

    if (a == NULL)
        b->oom = 1;
    return a;
}

/* A JSON string, refused (b->oom) when s is not well-formed UTF-8 as
 * json_string would; checked with the reader's word-at-a-time rules, the
 * long narratives cost a tenth of json_string's byte-by-byte check. */
static inline json_t *str(struct bld *b, const char *s)
{
    const char *t = nz(s);
    size_t n = strlen(t);
    json_t *v = utf8_valid((const unsigned char *)t, n) ? json_stringn_nocheck(t, n) : NULL;

    if (v == NULL)
        b->oom = 1;
    return v;
}

/* JSON string from a malloc'd C string, which is freed. */
static inline json_t *str_own(struct bld *b, char *s)
{
    json_t *v;

    if (s == NULL) {
        b->oom = 1;
        return NULL;
    }
    v = str(b, s);
    free(s);
    return v;
}

static inline json_t *coding(struct bld *b, const char *system, const char *code,
                             const char *display)
{
    json_t *c = obj(b);

    put(b, c, "system", str(b, system));
    put(b, c, "code", str(b, code));
    if (display != NULL)
        put(b, c, "display", str(b, display));
    return c;
}

/* CodeableConcept with at most one coding (system NULL: text only). */
static inline json_t *concept(struct bld *b, const char *system, const char *code,
                              const char *display, const char *text)
{
    json_t *cc = obj(b), *codings;

    if (system != NULL) {
        codings = arr(b);
        add(b, codings, coding(b, system, code, display));
        put(b, cc, "coding", codings);
    }
    if (text != NULL)
        put(b, cc, "text", str(b, text));
    return cc;
}

static inline json_t *reference(struct bld *b, const char *ref)
{
    json_t *r = obj(b);

    put(b, r, "reference", str(b, ref));
    return r;
}

static inline json_t *annotation(struct bld *b, char *text_owned)
{
    json_t *a = obj(b);

    put(b, a, "text", str_own(b, text_owned));
    return a;
}

static inline json_t *narrative(struct bld *b, struct buf *body)
{
    static const char open[] = "<div xmlns=\"" XHTML_NS "\">", close[] = "</div>";
    json_t *t = obj(b);
    struct buf d = {0};
    char *div = NULL;

    /* Copied between the tags (not through printf: a narrative is several
     * kilobytes, and formatting it twice cost more than the rest of the
     * resource's text). */
    if (!body->oom && buf_addn(&d, open, sizeof(open) - 1) == 0 &&
        buf_addn(&d, body->p != NULL ? body->p : "", body->len) == 0 &&
        buf_addn(&d, close, sizeof(close) - 1) == 0)
        div = buf_take(&d);
    buf_free(&d);
    buf_free(body);
    put(b, t, "status", str(b, "generated"));
    put(b, t, "div", str_own(b, div));
    return t;
}

static inline int rec_valid(enum rec r)
{
    return (unsigned)r < REC_COUNT;
}

/* Text escaped for XHTML character content (emit.c).  Control characters
 * other than tab and newline are not allowed in XML 1.0: dropped. */
void emit_xhtml(struct buf *s, const char *t);

/* One list item: <li>, t escaped, </li>. */
void emit_xhtml_li(struct buf *s, const char *t);

/* emit.c: the sources of the features, and text shared by the resources and
 * the explanation. */
json_t *collect_sources(struct bld *b, const struct features *f);
json_t *reference_list(struct bld *b, json_t *set);
void reason_refs_from(struct bld *b, json_t *list, const struct fsrc *s);
void sites_text(const struct features *f, struct buf *s);
const char *crit_name(enum criterion_state c);
int local_therapy_proposed(const struct decision *d);
int any_missing(const struct decision *d);
const char *risk_display(const char *code);
const char *rs_category_name(int cat);
int models_not_computed(const struct features *f, const struct decision *d, struct buf *s,
                        const char *prefix, const char *suffix);
const char *na_reason_text(enum na_reason r);

/* emit_careplan.c */
void factors_list(const struct decision *d, int from, int to, struct buf *s, const char *sep);
json_t *build_careplan(struct bld *b, const struct emit_ctx *c, const struct features *f,
                       const struct decision *d, json_t *sources);

/* emit_risk.c */
json_t *build_risk(struct bld *b, const struct emit_ctx *c, const struct features *f,
                   const struct decision *d, json_t *sources);

/* emit_output.c: pieces every resource carries */
void put_rules_version(struct bld *b, const struct emit_ctx *c, json_t *res);
json_t *identifier_list(struct bld *b, const struct emit_ctx *c, const char *type);
json_t *patient_ref(struct bld *b, const struct emit_ctx *c);
json_t *rec_concept(struct bld *b, const struct emit_ctx *c, const char *code,
                    const char *display);

#endif
