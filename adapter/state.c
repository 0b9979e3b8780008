/*
 * state.c - SQLite implementation of state.h.
 *
 * One file, WAL journal, schema version in PRAGMA user_version and migrated
 * forward on open.  Every statement is prepared per call: the state is
 * touched a few times per patient, far below the cost of the HTTP round
 * trips around it.
 */
#include "state.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_SCHEMA_VERSION 1

struct state {
    sqlite3 *db;
    char path[512];
};

static enum adp_err db_error(struct state *st, const char *what, struct adp_error *err)
{
    return adp_error_set(err, ADP_EIO, "state %s: %s: %s", st->path, what,
                         sqlite3_errmsg(st->db));
}

static const char *const migrations[STATE_SCHEMA_VERSION] = {
    /* 0 -> 1 */
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE patient ("
    "  patient_id TEXT PRIMARY KEY,"
    "  decision_hash TEXT NOT NULL,"
    "  rec TEXT NOT NULL,"
    "  careplan_id TEXT NOT NULL DEFAULT '',"
    "  careplan_version TEXT NOT NULL DEFAULT '',"
    "  risk_id TEXT NOT NULL DEFAULT '',"
    "  risk_version TEXT NOT NULL DEFAULT '',"
    "  updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')));",
};

static enum adp_err migrate(struct state *st, struct adp_error *err)
{
    sqlite3_stmt *q = NULL;
    int version, v;
    char sql[64];

    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &q, NULL) != SQLITE_OK ||
        sqlite3_step(q) != SQLITE_ROW) {
        sqlite3_finalize(q);
        return db_error(st, "reading schema version", err);
    }
    version = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (version > STATE_SCHEMA_VERSION)
        return adp_error_set(err, ADP_EIO,
                             "state %s: schema version %d is newer than this build (%d)",
                             st->path, version, STATE_SCHEMA_VERSION);
    for (v = version; v < STATE_SCHEMA_VERSION; v++) {
        if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            return db_error(st, "begin migration", err);
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
        if (sqlite3_exec(st->db, migrations[v], NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
            enum adp_err rc = db_error(st, "migration", err);

            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            return db_error(st, "commit migration", err);
    }
    return ADP_OK;
}

enum adp_err state_open(const char *path, struct state **out, struct adp_error *err)
{
    struct state *st;
    enum adp_err rc;

    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    snprintf(st->path, sizeof(st->path), "%s", path);
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = db_error(st, "open", err);
        goto fail;
    }
    sqlite3_busy_timeout(st->db, 5000);
    if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL,
                     NULL, NULL) != SQLITE_OK) {
        rc = db_error(st, "set WAL mode", err);
        goto fail;
    }
    rc = migrate(st, err);
    if (rc != ADP_OK)
        goto fail;
    *out = st;
    return ADP_OK;
fail:
    state_close(st);
    return rc;
}

void state_close(struct state *st)
{
    if (st == NULL)
        return;
    sqlite3_close(st->db);
    free(st);
}

enum adp_err state_get_watermark(struct state *st, char *buf, size_t len,
                                 struct adp_error *err)
{
    sqlite3_stmt *q = NULL;
    int r;

    buf[0] = '\0';
    if (sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key = 'watermark'", -1, &q,
                           NULL) != SQLITE_OK)
        return db_error(st, "read watermark", err);
    r = sqlite3_step(q);
    if (r == SQLITE_ROW)
        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return db_error(st, "read watermark", err);
    return ADP_OK;
}

enum adp_err state_set_watermark(struct state *st, const char *value, struct adp_error *err)
{
    sqlite3_stmt *q = NULL;
    int r;

    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO meta(key, value) VALUES('watermark', ?1) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(st, "write watermark", err);
    sqlite3_bind_text(q, 1, value, -1, SQLITE_TRANSIENT);
    r = sqlite3_step(q);
    sqlite3_finalize(q);
    if (r != SQLITE_DONE)
        return db_error(st, "write watermark", err);
    return ADP_OK;
}

static void col(sqlite3_stmt *q, int i, char *buf, size_t len)
{
    const unsigned char *t = sqlite3_column_text(q, i);

    snprintf(buf, len, "%s", t != NULL ? (const char *)t : "");
}

enum adp_err state_get_patient(struct state *st, const char *patient_id,
                               struct state_patient *out, int *found,
                               struct adp_error *err)
{
    sqlite3_stmt *q = NULL;
    int r;

    *found = 0;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT decision_hash, rec, careplan_id, careplan_version, "
                           "risk_id, risk_version FROM patient WHERE patient_id = ?1",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(st, "read patient", err);
    sqlite3_bind_text(q, 1, patient_id, -1, SQLITE_TRANSIENT);
    r = sqlite3_step(q);
    if (r == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        col(q, 0, out->decision_hash, sizeof(out->decision_hash));
        col(q, 1, out->rec, sizeof(out->rec));
        col(q, 2, out->careplan_id, sizeof(out->careplan_id));
        col(q, 3, out->careplan_version, sizeof(out->careplan_version));
        col(q, 4, out->risk_id, sizeof(out->risk_id));
        col(q, 5, out->risk_version, sizeof(out->risk_version));
        *found = 1;
    }
    sqlite3_finalize(q);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return db_error(st, "read patient", err);
    return ADP_OK;
}

enum adp_err state_put_patient(struct state *st, const char *patient_id,
                               const struct state_patient *p, struct adp_error *err)
{
    sqlite3_stmt *q = NULL;
    int r;

    if (sqlite3_prepare_v2(
            st->db,
            "INSERT INTO patient(patient_id, decision_hash, rec, careplan_id, "
            "careplan_version, risk_id, risk_version) VALUES(?1,?2,?3,?4,?5,?6,?7) "
            "ON CONFLICT(patient_id) DO UPDATE SET decision_hash = excluded.decision_hash, "
            "rec = excluded.rec, careplan_id = excluded.careplan_id, "
            "careplan_version = excluded.careplan_version, risk_id = excluded.risk_id, "
            "risk_version = excluded.risk_version, "
            "updated_at = strftime('%Y-%m-%dT%H:%M:%SZ','now')",
            -1, &q, NULL) != SQLITE_OK)
        return db_error(st, "write patient", err);
    sqlite3_bind_text(q, 1, patient_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, p->decision_hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 3, p->rec, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 4, p->careplan_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 5, p->careplan_version, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 6, p->risk_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 7, p->risk_version, -1, SQLITE_TRANSIENT);
    r = sqlite3_step(q);
    sqlite3_finalize(q);
    if (r != SQLITE_DONE)
        return db_error(st, "write patient", err);
    return ADP_OK;
}
