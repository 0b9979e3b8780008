/*
 * notify.c - what a FHIR Subscription notification says (see server.h).
 *
 * Pure parsing, no I/O: the listener (server.c) hands a notification's body
 * here and queues what comes back.  Three shapes are read: the R4
 * "backport" notification (a history Bundle whose first entry is a
 * Parameters resource carrying the status), the R4B/R5 one (a
 * SubscriptionStatus resource in the same place), and the bare R4 ping with
 * an empty body (the resource named in the PUT path, or nothing: a catch-up
 * poll).  A full resource carried in the notification is reduced to the
 * patient it names; a bare reference is passed on as "Type/id" for the sync
 * loop to resolve.  Duplicates are kept once, and the references are bounded
 * (SERVER_MAX_NOTIFY_REFS) so that a hostile body cannot hold the listener.
 */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhirid.h"
#include "jsonread.h"

/* A legitimate notification under the body cap may name up to 15,000
 * resources (its tree is about 10 times its text), which must reach the
 * reference bound and its 413 rather than fail as unparseable; a hostile
 * shape ("{},{},..." takes 70 times its text) still stops at the budget. */
#define NOTIFY_PARSED_BUDGET ((size_t)16 * SERVER_MAX_BODY)

/* "Type/id" from a reference or URL ("http://x/fhir/Observation/1/_history/2"). */
int notify_ref_from_url(const char *url, char *out, size_t len)
{
    char buf[512];
    char *parts[64];
    int n = 0, i;
    char *p, *save = NULL;

    if (url == NULL || strlen(url) >= sizeof(buf))
        return -1;
    snprintf(buf, sizeof(buf), "%s", url);
    p = strchr(buf, '?');
    if (p != NULL)
        *p = '\0';
    for (p = strtok_r(buf, "/", &save); p != NULL && n < 64; p = strtok_r(NULL, "/", &save))
        parts[n++] = p;
    for (i = n - 1; i >= 1; i--) {
        if (strcmp(parts[i - 1], "_history") == 0 || strcmp(parts[i], "_history") == 0)
            continue;
        if (i >= 2 && strcmp(parts[i - 1], "_history") == 0)
            continue;
        /* parts[i-1] must look like a resource type: capitalised letters */
        if (parts[i - 1][0] >= 'A' && parts[i - 1][0] <= 'Z') {
            snprintf(out, len, "%s/%s", parts[i - 1], parts[i]);
            return 0;
        }
    }
    return -1;
}

/* The patient a resource belongs to, as "Patient/id", else "Type/id" of
 * the resource itself (the sync loop reads it to find the patient). */
static int resource_ref(json_t *res, char *out, size_t len)
{
    static const char *const fields[] = {"subject", "patient"};
    const char *type = json_string_value(json_object_get(res, "resourceType"));
    const char *id = json_string_value(json_object_get(res, "id"));
    size_t i;

    if (type == NULL)
        return -1;
    if (strcmp(type, "Patient") == 0 && id != NULL) {
        snprintf(out, len, "Patient/%s", id);
        return 0;
    }
    for (i = 0; i < 2; i++) {
        const char *r =
            json_string_value(json_object_get(json_object_get(res, fields[i]), "reference"));
        char tmp[300];

        if (r != NULL && notify_ref_from_url(r, tmp, sizeof(tmp)) == 0 &&
            strncmp(tmp, "Patient/", 8) == 0) {
            snprintf(out, len, "%s", tmp);
            return 0;
        }
    }
    if (id != NULL) {
        snprintf(out, len, "%s/%s", type, id);
        return 0;
    }
    return -1;
}

static long long num_value(json_t *v)
{
    if (json_is_integer(v))
        return (long long)json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return -1;
}

static void note_event(struct notify_info *ni, long long n)
{
    if (n < 0)
        return;
    if (ni->first_event < 0 || n < ni->first_event)
        ni->first_event = n;
    if (n > ni->last_event)
        ni->last_event = n;
}

static void add_ref(json_t *refs, const char *ref)
{
    size_t i;
    json_t *v;
    const char *slash = strchr(ref, '/');

    /* "Patient/.." would become a request for the base: not a reference */
    if (slash == NULL || !fhir_id_valid(slash + 1))
        return;

    /* The duplicate check is quadratic: past the bound nothing more is
     * kept (one past it is, so the caller can see the notification was
     * over), and the listener stays responsive whatever the body holds. */
    if (json_array_size(refs) > SERVER_MAX_NOTIFY_REFS)
        return;
    json_array_foreach(refs, i, v) if (strcmp(json_string_value(v), ref) == 0) return;
    json_array_append_new(refs, json_string(ref));
}

/* R4 backport status: Parameters with parameter[name]; R4B/R5:
 * SubscriptionStatus.  Fills type, counters and focus references. */
static const char *read_status(json_t *st, struct notify_info *ni, json_t *focus)
{
    const char *rt = json_string_value(json_object_get(st, "resourceType"));
    const char *type = NULL;
    size_t i, j;
    json_t *p, *part;
    char ref[300];

    if (rt != NULL && strcmp(rt, "SubscriptionStatus") == 0) {
        type = json_string_value(json_object_get(st, "type"));
        ni->events_since = num_value(json_object_get(st, "eventsSinceSubscriptionStart"));
        {
            const char *sub = json_string_value(
                json_object_get(json_object_get(st, "subscription"), "reference"));

            snprintf(ni->subscription, sizeof(ni->subscription), "%s", sub ? sub : "");
        }
        json_array_foreach(json_object_get(st, "notificationEvent"), i, p)
        {
            const char *f =
                json_string_value(json_object_get(json_object_get(p, "focus"), "reference"));

            note_event(ni, num_value(json_object_get(p, "eventNumber")));
            if (f != NULL && notify_ref_from_url(f, ref, sizeof(ref)) == 0)
                add_ref(focus, ref);
        }
        return type;
    }
    json_array_foreach(json_object_get(st, "parameter"), i, p)
    {
        const char *name = json_string_value(json_object_get(p, "name"));

        if (name == NULL)
            continue;
        if (strcmp(name, "type") == 0) {
            type = json_string_value(json_object_get(p, "valueCode"));
        } else if (strcmp(name, "events-since-subscription-start") == 0) {
            json_t *v = json_object_get(p, "valueString");

            if (v == NULL)
                v = json_object_get(p, "valueUnsignedInt");
            if (v == NULL)
                v = json_object_get(p, "valueInteger64");
            ni->events_since = num_value(v);
        } else if (strcmp(name, "subscription") == 0) {
            const char *r = json_string_value(
                json_object_get(json_object_get(p, "valueReference"), "reference"));

            snprintf(ni->subscription, sizeof(ni->subscription), "%s", r ? r : "");
        } else if (strcmp(name, "notification-event") == 0) {
            json_array_foreach(json_object_get(p, "part"), j, part)
            {
                const char *pn = json_string_value(json_object_get(part, "name"));

                if (pn == NULL)
                    continue;
                if (strcmp(pn, "event-number") == 0) {
                    json_t *v = json_object_get(part, "valueString");

                    if (v == NULL)
                        v = json_object_get(part, "valueUnsignedInt");
                    note_event(ni, num_value(v));
                } else if (strcmp(pn, "focus") == 0) {
                    const char *f = json_string_value(
                        json_object_get(json_object_get(part, "valueReference"), "reference"));

                    if (f != NULL && notify_ref_from_url(f, ref, sizeof(ref)) == 0)
                        add_ref(focus, ref);
                }
            }
        }
    }
    return type;
}

enum adp_err server_parse_notification(const char *body, size_t len, const char *path_ref,
                                       struct notify_info *out, struct adp_error *err)
{
    struct notify_info ni;
    json_t *doc = NULL, *focus = NULL;
    json_error_t jerr;
    const char *rt, *btype;
    size_t i, blank = 0;
    char ref[300];
    enum adp_err rc = ADP_OK;

    memset(&ni, 0, sizeof(ni));
    ni.events_since = ni.first_event = ni.last_event = -1;
    ni.refs = json_array();
    focus = json_array();
    if (ni.refs == NULL || focus == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    while (blank < len && (body[blank] == ' ' || body[blank] == '\n' || body[blank] == '\r' ||
                           body[blank] == '\t'))
        blank++;
    if (blank == len) {
        /* R4 empty notification: something matching the criteria changed */
        ni.kind = path_ref ? NOTIFY_ID_ONLY : NOTIFY_EMPTY;
        if (path_ref != NULL)
            add_ref(ni.refs, path_ref);
        goto done;
    }
    /* within a memory budget: a 1 MiB body of "{},{},..." would take 75 MiB */
    doc = jsonread_loadb_budget(body, len, NOTIFY_PARSED_BUDGET, &jerr);
    if (doc == NULL || !json_is_object(doc)) {
        rc = adp_error_set(err, ADP_EPARSE, "notification: not a JSON object%s%s",
                           doc ? "" : ": ", doc ? "" : jerr.text);
        goto out;
    }
    rt = json_string_value(json_object_get(doc, "resourceType"));
    btype = json_string_value(json_object_get(doc, "type"));
    if (rt == NULL) {
        rc = adp_error_set(err, ADP_EPARSE, "notification: no resourceType");
        goto out;
    }
    if (strcmp(rt, "Bundle") == 0 && btype != NULL &&
        (strcmp(btype, "history") == 0 || strcmp(btype, "subscription-notification") == 0)) {
        json_t *entries = json_object_get(doc, "entry");
        json_t *st = json_object_get(json_array_get(entries, 0), "resource");
        const char *type;
        int with_resource = 0, without = 0;

        if (st == NULL) {
            rc = adp_error_set(err, ADP_EPARSE,
                               "notification: Bundle.entry[0] has no subscription status");
            goto out;
        }
        type = read_status(st, &ni, focus);
        if (type == NULL) {
            rc = adp_error_set(err, ADP_EPARSE,
                               "notification: subscription status has no type");
            goto out;
        }
        if (strcmp(type, "handshake") == 0) {
            ni.kind = NOTIFY_HANDSHAKE;
            goto done;
        }
        if (strcmp(type, "heartbeat") == 0) {
            ni.kind = NOTIFY_HEARTBEAT;
            goto done;
        }
        if (strcmp(type, "event-notification") != 0 && strcmp(type, "query-event") != 0) {
            rc = adp_error_set(err, ADP_EPARSE,
                               "notification: status type '%s' is not handled", type);
            goto out;
        }
        for (i = 1; i < json_array_size(entries); i++) {
            json_t *e = json_array_get(entries, i);
            json_t *res = json_object_get(e, "resource");
            const char *url = json_string_value(json_object_get(e, "fullUrl"));

            if (url == NULL)
                url = json_string_value(
                    json_object_get(json_object_get(e, "request"), "url"));
            if (res != NULL && resource_ref(res, ref, sizeof(ref)) == 0) {
                with_resource = 1;
                add_ref(ni.refs, ref);
            } else if (url != NULL && notify_ref_from_url(url, ref, sizeof(ref)) == 0) {
                without = 1;
                add_ref(ni.refs, ref);
            }
        }
        if (with_resource)
            ni.kind = NOTIFY_FULL_RESOURCE;
        else if (without)
            ni.kind = NOTIFY_ID_ONLY;
        else
            ni.kind = NOTIFY_EMPTY;
        if (json_array_size(ni.refs) == 0) {
            json_t *fv;

            json_array_foreach(focus, i, fv) add_ref(ni.refs, json_string_value(fv));
        }
        goto done;
    }
    /* R4 rest-hook with a payload: the resource itself */
    if (resource_ref(doc, ref, sizeof(ref)) != 0) {
        if (path_ref == NULL) {
            rc = adp_error_set(err, ADP_EPARSE,
                               "notification: %s without id, subject or patient", rt);
            goto out;
        }
        snprintf(ref, sizeof(ref), "%s", path_ref);
    }
    ni.kind = NOTIFY_FULL_RESOURCE;
    add_ref(ni.refs, ref);
    goto done;
done:
    if (json_array_size(ni.refs) > SERVER_MAX_NOTIFY_REFS ||
        json_array_size(focus) > SERVER_MAX_NOTIFY_REFS) {
        ni.too_many = 1;
        json_array_clear(ni.refs);
    }
    *out = ni;
    ni.refs = NULL;
out:
    json_decref(ni.refs);
    json_decref(focus);
    json_decref(doc);
    return rc;
}
