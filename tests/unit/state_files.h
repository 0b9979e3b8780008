/*
 * state_files.h - state files for the unit tests that open or migrate one:
 * a fresh path, its removal with the WAL, shared-memory and lock files
 * beside it, a file in the version-2 layout (the build before the CDS
 * feedback table and the $translate cache), and one integer from a query.
 * Include after cmocka.h and sqlite3.h.
 */
#ifndef TEST_STATE_FILES_H
#define TEST_STATE_FILES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A path under /tmp that does not exist yet (buf: at least 32 bytes). */
static void sf_path(char *buf, size_t len)
{
    int fd;

    snprintf(buf, len, "/tmp/dnmbc-state-XXXXXX");
    fd = mkstemp(buf);
    assert_true(fd >= 0);
    close(fd);
    unlink(buf);
}

static void sf_remove(const char *p)
{
    static const char *const side[] = {"", "-wal", "-shm", ".lock"};
    char q[300];
    size_t i;

    for (i = 0; i < sizeof(side) / sizeof(side[0]); i++) {
        snprintf(q, sizeof(q), "%s%s", p, side[i]);
        unlink(q);
    }
}

static void sf_exec(const char *p, const char *sql)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* A version-2 file as that build left it (records, outbox, dead letters),
 * then the statements of rows (its rows, or tables of its own). */
static void sf_make_v2(const char *p, const char *rows)
{
    sf_exec(p, "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
               "CREATE TABLE patient (patient_id TEXT PRIMARY KEY, decision_hash TEXT NOT NULL,"
               " rec TEXT NOT NULL, careplan_id TEXT NOT NULL DEFAULT '', careplan_version TEXT"
               " NOT NULL DEFAULT '', risk_id TEXT NOT NULL DEFAULT '', risk_version TEXT NOT"
               " NULL DEFAULT '', updated_at TEXT, input_hash TEXT NOT NULL DEFAULT '');"
               "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, patient_id TEXT NOT"
               " NULL UNIQUE, kind TEXT NOT NULL, decision_hash TEXT NOT NULL, careplan TEXT,"
               " risk TEXT, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL"
               " DEFAULT '', created_at TEXT);"
               "CREATE TABLE dead_letter (seq INTEGER PRIMARY KEY AUTOINCREMENT, patient_id TEXT"
               " NOT NULL UNIQUE, kind TEXT NOT NULL, decision_hash TEXT NOT NULL, careplan"
               " TEXT, risk TEXT, attempts INTEGER NOT NULL, http_status INTEGER NOT NULL"
               " DEFAULT 0, last_error TEXT NOT NULL DEFAULT '', outcome TEXT NOT NULL DEFAULT"
               " '', failed_at TEXT);"
               "PRAGMA user_version = 2;");
    if (rows != NULL && rows[0] != '\0')
        sf_exec(p, rows);
}

/* The first column of the first row of sql, or -1. */
static int sf_int(const char *p, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    int v = -1;

    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

#endif
