/*
 * state.c - SQLite implementation of state.h.
 *
 * One file, WAL journal, schema version in PRAGMA user_version and migrated
 * forward on open.  Each SQL text is prepared once per handle, on first use,
 * and kept until state_close (preparing per call was ~6% of the
 * adapter's CPU).  Pool workers share the main handle: every public call
 * holds the handle's mutex, so calls from several threads are serialised
 * and a multi-statement transaction is never interleaved (one
 * connection per worker made SQLite's WAL locks the adapter's most frequent
 * system calls, threads waking each other and sleeping in the busy
 * handler).
 */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "instant.h"

#define STATE_SCHEMA_VERSION 4

/* The cached statements, one per SQL text in stmt_sql. */
enum stmt_id {
    Q_BEGIN,
    Q_COMMIT,
    Q_SYNC_FULL,
    Q_SYNC_NORMAL,
    Q_WATERMARK_GET,
    Q_WATERMARK_SET,
    Q_PATIENT_GET,
    Q_PATIENT_PUT,
    Q_PATIENT_DEL,
    Q_OUTBOX_PUT,
    Q_OUTBOX_GET,
    Q_OUTBOX_FAILED,
    Q_OUTBOX_DEL,
    Q_OUTBOX_LIST,
    Q_OUTBOX_COUNT,
    Q_DEAD_PUT,
    Q_DEAD_GET,
    Q_DEAD_LIST,
    Q_DEAD_DEL,
    Q_DEAD_REQUEUE,
    Q_DEAD_REQUEUE_DEL,
    Q_PENDING,
    Q_RESUME_GET,
    Q_RESUME_SET,
    Q_RULES_GET,
    Q_RULES_SET,
    Q_COUNT
};

#define DEAD_COLS                                                                        \
    "SELECT patient_id, kind, decision_hash, attempts, http_status, last_error, "        \
    "outcome, failed_at FROM dead_letter "

static const char *const stmt_sql[Q_COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_SYNC_FULL] = "PRAGMA synchronous=FULL",
    [Q_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
    [Q_WATERMARK_GET] = "SELECT value FROM meta WHERE key = 'watermark'",
    [Q_WATERMARK_SET] = "INSERT INTO meta(key, value) VALUES('watermark', ?1) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [Q_PATIENT_GET] = "SELECT decision_hash, rec, careplan_id, careplan_version, "
                      "risk_id, risk_version, input_hash FROM patient "
                      "WHERE patient_id = ?1",
    [Q_PATIENT_PUT] =
        "INSERT INTO patient(patient_id, decision_hash, rec, careplan_id, "
        "careplan_version, risk_id, risk_version, input_hash) "
        "VALUES(?1,?2,?3,?4,?5,?6,?7,?8) "
        "ON CONFLICT(patient_id) DO UPDATE SET decision_hash = excluded.decision_hash, "
        "rec = excluded.rec, careplan_id = excluded.careplan_id, "
        "careplan_version = excluded.careplan_version, risk_id = excluded.risk_id, "
        "risk_version = excluded.risk_version, input_hash = excluded.input_hash, "
        "updated_at = strftime('%Y-%m-%dT%H:%M:%SZ','now')",
    [Q_PATIENT_DEL] = "DELETE FROM patient WHERE patient_id = ?1",
    /* A newer decision replaces the old one but keeps its attempt count.
     * The careplan and risk columns (schema 2) are no longer written: a
     * replayed decision is rebuilt from the inputs.  They stay in the schema
     * (an older binary still inserts into them); a body an older version
     * left in a row is dropped when the row is replaced or moved. */
    [Q_OUTBOX_PUT] =
        "INSERT INTO outbox(patient_id, kind, decision_hash) "
        "VALUES(?1,?2,?3) ON CONFLICT(patient_id) DO UPDATE SET "
        "kind = excluded.kind, decision_hash = excluded.decision_hash, "
        "careplan = NULL, risk = NULL",
    [Q_OUTBOX_GET] = "SELECT patient_id, kind, decision_hash, attempts, last_error, "
                     "created_at FROM outbox WHERE patient_id = ?1",
    [Q_OUTBOX_FAILED] = "UPDATE outbox SET attempts = attempts + 1, last_error = ?2 "
                        "WHERE patient_id = ?1",
    [Q_OUTBOX_DEL] = "DELETE FROM outbox WHERE patient_id = ?1",
    [Q_OUTBOX_LIST] = "SELECT patient_id FROM outbox ORDER BY seq",
    [Q_OUTBOX_COUNT] = "SELECT count(*) FROM outbox",
    [Q_DEAD_PUT] =
        "INSERT INTO dead_letter(patient_id, kind, decision_hash, "
        "attempts, http_status, last_error, outcome) "
        "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 "
        "WHERE 1 ON CONFLICT(patient_id) DO UPDATE SET kind = excluded.kind, "
        "decision_hash = excluded.decision_hash, careplan = NULL, "
        "risk = NULL, attempts = dead_letter.attempts + excluded.attempts, "
        "http_status = excluded.http_status, last_error = excluded.last_error, "
        "outcome = excluded.outcome, "
        "failed_at = strftime('%Y-%m-%dT%H:%M:%SZ','now')",
    [Q_DEAD_GET] = DEAD_COLS "WHERE patient_id = ?1",
    [Q_DEAD_LIST] = DEAD_COLS "ORDER BY seq",
    [Q_DEAD_DEL] = "DELETE FROM dead_letter WHERE patient_id = ?1",
    [Q_DEAD_REQUEUE] =
        "INSERT INTO outbox(patient_id, kind, decision_hash, "
        "last_error) SELECT patient_id, kind, decision_hash, "
        "last_error FROM dead_letter WHERE ?1 IS NULL OR patient_id = ?1 "
        "ORDER BY seq ON CONFLICT(patient_id) DO NOTHING",
    [Q_DEAD_REQUEUE_DEL] = "DELETE FROM dead_letter WHERE ?1 IS NULL OR patient_id = ?1",
    [Q_PENDING] = "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM dead_letter)",
    [Q_RESUME_GET] = "SELECT value FROM meta WHERE key = 'resume'",
    [Q_RESUME_SET] = "INSERT INTO meta(key, value) VALUES('resume', ?1) "
                     "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [Q_RULES_GET] = "SELECT value FROM meta WHERE key = 'rules_version'",
    [Q_RULES_SET] = "INSERT INTO meta(key, value) VALUES('rules_version', ?1) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
};

struct state {
    pthread_mutex_t mu;          /* held by every public call (see the end) */
    sqlite3 *db;
    int lock_fd;                 /* -1 when not locked */
    int file_fd;                 /* the state file itself (locked handle), -1 otherwise:
                                  * the instance lock is on its inode, and state_check
                                  * compares its identity with the path's */
    /* The first error that made the store unusable (disk full, I/O error,
     * read-only, damaged, the file gone); "" while healthy.  Sticky: once
     * a write was lost, a write to the server could no longer be recorded,
     * so none is started (state_failed). */
    char failed[600];
    dev_t dev;                   /* identity of file_fd at open */
    ino_t ino;
    char path[512];
    sqlite3_stmt *stmt[Q_COUNT]; /* NULL until first use; finalized by state_close */
    /* Rows in outbox and dead_letter, -1 when not known.  Kept only by the
     * handle holding the lock (no other process writes then): while both
     * are 0, as in a healthy run, a patient's outbox and dead-letter
     * lookups and deletes need no SQL. */
    long outbox_n, dead_n;
};

/* SQLite results that say the store itself cannot be relied on any more
 * (as opposed to a busy lock or a constraint): see struct state's failed. */
static int store_broken(int code)
{
    switch (code & 0xff) {
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_READONLY:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
        return 1;
    default:
        return 0;
    }
}

/* The error of the last SQLite call on st, naming the file and the action.
 * A damaged or read-only file says so first: the operator's next step
 * differs (restore or move the file aside; fix permissions). */
static enum adp_err db_error(struct state *st, const char *what, struct adp_error *err)
{
    int code = st->db != NULL ? sqlite3_errcode(st->db) & 0xff : SQLITE_CANTOPEN;
    const char *how = code == SQLITE_CORRUPT || code == SQLITE_NOTADB ? " is damaged"
                      : code == SQLITE_READONLY                       ? " is read-only"
                                                                      : "";
    char msg[600];

    snprintf(msg, sizeof(msg), "state %.400s%s: %s: %s", st->path, how, what,
             sqlite3_errmsg(st->db));
    if (st->failed[0] == '\0' && store_broken(code))
        snprintf(st->failed, sizeof(st->failed), "%s", msg);
    return adp_error_set(err, ADP_EIO, "%s", msg);
}

/* The cached statement for id, prepared on first use.  NULL (the reason in
 * sqlite3_errmsg) when it cannot be prepared.  Borrowed, valid until
 * state_close; every user hands it back with stmt_release before returning. */
static sqlite3_stmt *stmt_get(struct state *st, enum stmt_id id)
{
    if (st->stmt[id] == NULL &&
        sqlite3_prepare_v3(st->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                           &st->stmt[id], NULL) != SQLITE_OK)
        st->stmt[id] = NULL; /* prepare leaves it NULL on error; make sure */
    return st->stmt[id];
}

/* Ready q for its next use.  The reset ends it: a SELECT stopped at its
 * first row would otherwise keep its read snapshot (holding back WAL
 * checkpoints) and refuse new bindings.  Clearing frees the bound copies of
 * patient data.  sqlite3_errmsg still holds a failed step's error
 * afterwards, as it did after the sqlite3_finalize this replaces. */
static void stmt_release(sqlite3_stmt *q)
{
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
}

/* Are there no outbox (which 0) or dead-letter (which 1) rows?  Only the
 * locked handle knows (counting again after a change); 0 means "look". */
static int none_pending(struct state *st, int which)
{
    sqlite3_stmt *q;

    if (st->lock_fd < 0)
        return 0;
    if (st->outbox_n < 0 || st->dead_n < 0) {
        q = stmt_get(st, Q_PENDING);
        if (q == NULL)
            return 0;
        if (sqlite3_step(q) == SQLITE_ROW) {
            st->outbox_n = sqlite3_column_int64(q, 0);
            st->dead_n = sqlite3_column_int64(q, 1);
        }
        stmt_release(q);
        if (st->outbox_n < 0 || st->dead_n < 0)
            return 0;
    }
    return (which == 0 ? st->outbox_n : st->dead_n) == 0;
}

/* After a change (or a failed one) to outbox or dead_letter. */
static void pending_changed(struct state *st)
{
    st->outbox_n = st->dead_n = -1;
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
    /* 1 -> 2: input hash, outbox, dead letters */
    "ALTER TABLE patient ADD COLUMN input_hash TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE outbox ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  patient_id TEXT NOT NULL UNIQUE,"
    "  kind TEXT NOT NULL,"
    "  decision_hash TEXT NOT NULL,"
    "  careplan TEXT,"
    "  risk TEXT,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT NOT NULL DEFAULT '',"
    "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')));"
    "CREATE TABLE dead_letter ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  patient_id TEXT NOT NULL UNIQUE,"
    "  kind TEXT NOT NULL,"
    "  decision_hash TEXT NOT NULL,"
    "  careplan TEXT,"
    "  risk TEXT,"
    "  attempts INTEGER NOT NULL,"
    "  http_status INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT NOT NULL DEFAULT '',"
    "  outcome TEXT NOT NULL DEFAULT '',"
    "  failed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')));",
    /* 2 -> 3: CDS Hooks card feedback (cds.c).  IF NOT EXISTS: a version-2
     * file of an earlier build may have it already, made outside the
     * migrations, with the same columns. */
    "CREATE TABLE IF NOT EXISTS cds_feedback ("
    "  id INTEGER PRIMARY KEY,"
    "  received TEXT NOT NULL,"
    "  client TEXT NOT NULL,"
    "  card TEXT NOT NULL,"
    "  outcome TEXT NOT NULL,"
    "  outcome_time TEXT NOT NULL,"
    "  reason TEXT,"
    "  comment TEXT);",
    /* 3 -> 4: the terminology server's $translate answers, "no match"
     * (target '') included, per server (terminology.c) */
    "CREATE TABLE term_cache ("
    "  server TEXT NOT NULL,"
    "  system TEXT NOT NULL,"
    "  code TEXT NOT NULL,"
    "  target TEXT NOT NULL DEFAULT '',"
    "  equivalence TEXT NOT NULL DEFAULT '',"
    "  fetched_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),"
    "  PRIMARY KEY (server, system, code));",
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

/* The pid written in "<path>.lock" by the instance holding it, or "". */
static void holder_pid(int fd, char *pid, size_t len)
{
    ssize_t n = pread(fd, pid, len - 1, 0);

    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
}

/* Exclusive lock on "<path>.lock" (kept open; the kernel drops it when the
 * process dies, so a SIGKILL never leaves a stale lock), which also holds
 * our pid for the message a second instance prints. */
static enum adp_err take_lock(struct state *st, struct adp_error *err)
{
    char lp[600], pid[32] = "";
    int len;

    snprintf(lp, sizeof(lp), "%s.lock", st->path);
    st->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->lock_fd < 0)
        return adp_error_set(err, ADP_EIO, "state %s: cannot open lock file %s: %s",
                             st->path, lp, strerror(errno));
    if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;

        holder_pid(st->lock_fd, pid, sizeof(pid));
        close(st->lock_fd);
        st->lock_fd = -1;
        if (e == EWOULDBLOCK)
            return adp_error_set(err, ADP_EIO,
                                 "state %s is in use by another dnmbc-adapter (pid %s); "
                                 "refusing to start a second instance",
                                 st->path, pid[0] ? pid : "unknown");
        return adp_error_set(err, ADP_EIO, "state %s: cannot lock %s: %s", st->path, lp,
                             strerror(e));
    }
    len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    /* the pid is for the message above only: failing to write it is harmless */
    if (ftruncate(st->lock_fd, 0) == 0 && pwrite(st->lock_fd, pid, (size_t)len, 0) != len)
        pid[0] = '\0';
    return ADP_OK;
}

/*
 * Open the state file itself before SQLite does (locked handle only):
 *  - a new file is created 0600 whatever the umask (it holds patient ids;
 *    SQLite gives the -wal and -shm files the main file's mode);
 *  - a file that cannot be opened for writing (read-only file or file
 *    system) is refused here, where SQLite would quietly open it read-only
 *    and fail the writes one patient at a time;
 *  - the instance lock is taken on this inode (flock; SQLite's own locks
 *    are fcntl locks, which Linux keeps apart), so a second path to the
 *    same file (a hard link, a symlink, another mount) is refused too;
 *    "<path>.lock" alone is keyed by the name.
 */
static enum adp_err open_file(struct state *st, struct adp_error *err)
{
    struct stat sb;
    int created = 1;

    st->file_fd = open(st->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
    if (st->file_fd < 0 && errno == EEXIST) {
        created = 0;
        st->file_fd = open(st->path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    }
    if (st->file_fd < 0) {
        if (errno == EROFS || errno == EACCES || errno == EPERM)
            return adp_error_set(err, ADP_EIO,
                                 "state %s is read-only (%s): the adapter must be able to "
                                 "write its state file; fix its permissions or file system",
                                 st->path, strerror(errno));
        return adp_error_set(err, ADP_EIO, "state %s: cannot open: %s", st->path,
                             strerror(errno));
    }
    if (fstat(st->file_fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return adp_error_set(err, ADP_EIO, "state %s: not a regular file", st->path);
    if (created && fchmod(st->file_fd, 0600) != 0)
        return adp_error_set(err, ADP_EIO, "state %s: cannot make it private: %s", st->path,
                             strerror(errno));
    if (flock(st->file_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK)
            return adp_error_set(err, ADP_EIO, "state %s: cannot lock it: %s", st->path,
                                 strerror(errno));
        return adp_error_set(err, ADP_EIO,
                             "state %s is in use by another dnmbc-adapter (the same file "
                             "under another path); refusing to start a second instance",
                             st->path);
    }
    st->dev = sb.st_dev;
    st->ino = sb.st_ino;
    return ADP_OK;
}

/* Start-up checks of a locked handle: the file is writable and not
 * damaged.  A damaged file would otherwise fail patient after patient with
 * "database disk image is malformed".  quick_check reads every page once
 * (milliseconds for the adapter's files) but skips the index-content
 * comparison of integrity_check. */
static enum adp_err check_file(struct state *st, struct adp_error *err)
{
    sqlite3_stmt *q = NULL;
    char first[300] = "";
    int r, rows = 0;

    if (sqlite3_db_readonly(st->db, "main") == 1)
        return adp_error_set(err, ADP_EIO,
                             "state %s is read-only: the adapter must be able to write its "
                             "state file; fix its permissions or file system",
                             st->path);
    if (sqlite3_prepare_v2(st->db, "PRAGMA quick_check", -1, &q, NULL) != SQLITE_OK)
        return db_error(st, "integrity check", err);
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(q, 0);

        if (rows++ == 0)
            snprintf(first, sizeof(first), "%s", t != NULL ? (const char *)t : "");
    }
    sqlite3_finalize(q);
    if (r != SQLITE_DONE)
        return db_error(st, "integrity check", err);
    if (rows != 1 || strcmp(first, "ok") != 0)
        return adp_error_set(err, ADP_EIO, "state %s is damaged (integrity check: %s)",
                             st->path, first);
    return ADP_OK;
}

/* Busy handler: 200 us steps for up to 5 s (25,000 calls). */
static int busy_wait(void *ud, int calls)
{
    struct timespec ts = {0, 200000L};

    (void)ud;
    if (calls >= 25000)
        return 0;
    nanosleep(&ts, NULL);
    return 1;
}

enum adp_err state_open(const char *path, struct state **out, struct adp_error *err)
{
    return state_open_ex(path, STATE_LOCK, out, err);
}

/* SQLite's allocation statistics take a process-wide mutex on every
 * allocation; nothing here reads them. */
static void sqlite_setup(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); /* MISUSE once initialised */
}

enum adp_err state_open_ex(const char *path, int flags, struct state **out,
                           struct adp_error *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct state *st;
    enum adp_err rc;

    pthread_once(&once, sqlite_setup);
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    if (pthread_mutex_init(&st->mu, NULL) != 0) {
        free(st);
        return adp_error_set(err, ADP_ENOMEM, "state %s: cannot create its lock", path);
    }
    st->lock_fd = -1;
    st->file_fd = -1;
    st->outbox_n = st->dead_n = -1;
    snprintf(st->path, sizeof(st->path), "%s", path);
    if (flags & STATE_LOCK) {
        rc = take_lock(st, err);
        if (rc == ADP_OK)
            rc = open_file(st, err);
        if (rc != ADP_OK)
            goto fail;
    }
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = db_error(st, "open", err);
        goto fail;
    }
    /* The adapter's workers share one connection (state_* calls take the
     * handle's lock); other processes (`status`) may still hold the file
     * briefly: wait for them in short steps, not in sqlite3_busy_timeout's
     * growing sleeps.
     *
     * synchronous=NORMAL: in WAL mode a commit survives the process being
     * killed, and after a power loss the file is intact but may lack the
     * last commits.  That is enough for every record the server can give
     * back (a lost patient record means the decision is compared with the
     * plan on the server again; a lost watermark means a longer catch-up), so
     * a patient's finishing commit costs no fsync (one fdatasync
     * per patient was a tenth of the adapter's CPU).  The commits a network
     * write relies on, or an operator's command, are made FULL (durable). */
    sqlite3_busy_handler(st->db, busy_wait, NULL);
    if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL,
                     NULL, NULL) != SQLITE_OK) {
        rc = db_error(st, "set WAL mode", err);
        goto fail;
    }
    /* 1 MiB of page cache instead of SQLite's default 2 MB, which grows
     * with the file while peak RSS must stay flat from 1,000 to 10,000
     * patients.  Each patient touches a few rows by key; the OS page cache
     * keeps the rest of the file warm. */
    if (sqlite3_exec(st->db, "PRAGMA cache_size=-1024", NULL, NULL, NULL) != SQLITE_OK) {
        rc = db_error(st, "set cache size", err);
        goto fail;
    }
    if (flags & STATE_LOCK) {
        rc = check_file(st, err);
        if (rc != ADP_OK)
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
    int i;

    if (st == NULL)
        return;
    /* sqlite3_close refuses (and leaks the connection) while any statement
     * is unfinalized */
    for (i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    sqlite3_close(st->db);
    /* after sqlite3_close: closing any descriptor of the file drops the
     * process's fcntl locks on it, SQLite's included */
    if (st->file_fd >= 0)
        close(st->file_fd);
    if (st->lock_fd >= 0)
        close(st->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&st->mu);
    free(st);
}

static enum adp_err run(struct state *st, enum stmt_id id, const char *what,
                        const char *const *params, int nparams, int *changes,
                        struct adp_error *err);
static enum adp_err tx(struct state *st, enum stmt_id id, struct adp_error *err);
static void rollback(struct state *st);
static enum adp_err commit(struct state *st, struct adp_error *err);

/* The text of meta key `id` (Q_WATERMARK_GET, Q_RESUME_GET) into buf, ""
 * when absent. */
static enum adp_err get_meta_locked(struct state *st, enum stmt_id id, char *buf, size_t len,
                                    struct adp_error *err)
{
    sqlite3_stmt *q;
    int r;

    buf[0] = '\0';
    q = stmt_get(st, id);
    if (q == NULL)
        return db_error(st, "read watermark", err);
    r = sqlite3_step(q);
    if (r == SQLITE_ROW)
        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(q, 0));
    stmt_release(q);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return db_error(st, "read watermark", err);
    return ADP_OK;
}

/* value ("" allowed) as the canonical instant text into out; what names it
 * in the error. */
static enum adp_err canonical_instant(const struct state *st, const char *what,
                                      const char *value, char *out, size_t len,
                                      struct adp_error *err)
{
    struct adp_error local;
    int64_t us;

    if (value[0] == '\0') {
        snprintf(out, len, "%s", "");
        return ADP_OK;
    }
    adp_error_clear(&local);
    if (instant_parse(value, what, &us, &local) != ADP_OK)
        return adp_error_set(err, ADP_EIO, "state %s: %s", st->path, local.msg);
    instant_format(us, out, len);
    return ADP_OK;
}

static enum adp_err set_watermark_locked(struct state *st, const char *value,
                                         struct adp_error *err);

/* Read meta key `id` in its canonical form.  A value stored by an earlier
 * version (the server's own text, any offset or fraction) is converted and
 * written back once, so that it is compared as an instant from then on. */
static enum adp_err get_instant_locked(struct state *st, enum stmt_id id, const char *what,
                                       char *buf, size_t len, struct adp_error *err)
{
    char stored[128], canon[INSTANT_TEXT_MAX];
    enum adp_err rc;
    const char *p[1] = {canon};

    buf[0] = '\0';
    rc = get_meta_locked(st, id, stored, sizeof(stored), err);
    if (rc == ADP_OK)
        rc = canonical_instant(st, what, stored, canon, sizeof(canon), err);
    if (rc != ADP_OK)
        return rc;
    if (strcmp(stored, canon) != 0)
        rc = run(st, id == Q_WATERMARK_GET ? Q_WATERMARK_SET : Q_RESUME_SET,
                 "migrate watermark", p, 1, NULL, err);
    if (rc == ADP_OK)
        snprintf(buf, len, "%s", canon);
    return rc;
}

static enum adp_err get_watermark_locked(struct state *st, char *buf, size_t len,
                                         struct adp_error *err)
{
    return get_instant_locked(st, Q_WATERMARK_GET, "stored watermark", buf, len, err);
}

/* Run the cached statement id with text parameters (NULL binds SQL NULL);
 * *changes receives sqlite3_changes when not NULL.  what names the action
 * in the error. */
static enum adp_err run(struct state *st, enum stmt_id id, const char *what,
                        const char *const *params, int nparams, int *changes,
                        struct adp_error *err)
{
    sqlite3_stmt *q;
    int r, i;

    q = stmt_get(st, id);
    if (q == NULL)
        return db_error(st, what, err);
    for (i = 0; i < nparams; i++) {
        if (params[i] == NULL)
            sqlite3_bind_null(q, i + 1);
        else
            sqlite3_bind_text(q, i + 1, params[i], -1, SQLITE_TRANSIENT);
    }
    r = sqlite3_step(q);
    stmt_release(q);
    if (r != SQLITE_DONE && r != SQLITE_ROW)
        return db_error(st, what, err);
    if (changes != NULL)
        *changes = sqlite3_changes(st->db);
    return ADP_OK;
}

static enum adp_err set_watermark_locked(struct state *st, const char *value,
                                         struct adp_error *err)
{
    char canon[INSTANT_TEXT_MAX];
    const char *p[1] = {canon};
    enum adp_err rc = canonical_instant(st, "new watermark", value, canon, sizeof(canon), err);

    if (rc != ADP_OK)
        return rc;
    return run(st, Q_WATERMARK_SET, "write watermark", p, 1, NULL, err);
}

/* rules_version NULL: the stored rules version is left as it is. */
static enum adp_err set_progress_locked(struct state *st, const char *watermark,
                                        const char *resume, const char *rules_version,
                                        struct adp_error *err)
{
    char canon[INSTANT_TEXT_MAX];
    const char *p[1] = {canon};
    const char *rv[1] = {rules_version};
    enum adp_err rc;

    rc = canonical_instant(st, "resume point", resume, canon, sizeof(canon), err);
    if (rc != ADP_OK)
        return rc;
    rc = tx(st, Q_BEGIN, err);
    if (rc != ADP_OK)
        return rc;
    if ((rc = set_watermark_locked(st, watermark, err)) != ADP_OK ||
        (rc = run(st, Q_RESUME_SET, "write resume point", p, 1, NULL, err)) != ADP_OK ||
        (rules_version != NULL &&
         (rc = run(st, Q_RULES_SET, "write rules version", rv, 1, NULL, err)) != ADP_OK)) {
        rollback(st);
        return rc;
    }
    return commit(st, err);
}

static void col(sqlite3_stmt *q, int i, char *buf, size_t len)
{
    const unsigned char *t = sqlite3_column_text(q, i);

    snprintf(buf, len, "%s", t != NULL ? (const char *)t : "");
}

static enum adp_err get_patient_locked(struct state *st, const char *patient_id,
                                       struct state_patient *out, int *found,
                                       struct adp_error *err)
{
    sqlite3_stmt *q;
    int r;

    *found = 0;
    q = stmt_get(st, Q_PATIENT_GET);
    if (q == NULL)
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
        col(q, 6, out->input_hash, sizeof(out->input_hash));
        *found = 1;
    }
    stmt_release(q);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return db_error(st, "read patient", err);
    return ADP_OK;
}

static enum adp_err put_patient_locked(struct state *st, const char *patient_id,
                                       const struct state_patient *p, struct adp_error *err)
{
    const char *v[8] = {patient_id,      p->decision_hash,    p->rec,
                        p->careplan_id,  p->careplan_version, p->risk_id,
                        p->risk_version, p->input_hash};

    return run(st, Q_PATIENT_PUT, "write patient", v, 8, NULL, err);
}

/* Transaction control.  tx runs BEGIN IMMEDIATE or COMMIT (the error names
 * the SQL, as before).  rollback is for error paths only, so it is parsed
 * per call; it is skipped when SQLite already ended the transaction. */
static enum adp_err tx(struct state *st, enum stmt_id id, struct adp_error *err)
{
    return run(st, id, stmt_sql[id], NULL, 0, NULL, err);
}

static void rollback(struct state *st)
{
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

/* COMMIT, or on failure (disk full, I/O error) roll back: a transaction left
 * open would make every later BEGIN on this handle fail. */
static enum adp_err commit(struct state *st, struct adp_error *err)
{
    enum adp_err rc = tx(st, Q_COMMIT, err);

    if (rc != ADP_OK)
        rollback(st);
    return rc;
}

static enum adp_err forget_patient_locked(struct state *st, const char *patient_id,
                                          struct adp_error *err)
{
    const char *p[1] = {patient_id};
    enum adp_err rc;

    rc = tx(st, Q_BEGIN, err);
    if (rc != ADP_OK)
        return rc;
    if ((rc = run(st, Q_PATIENT_DEL, "forget patient", p, 1, NULL, err)) != ADP_OK ||
        (rc = run(st, Q_OUTBOX_DEL, "forget patient", p, 1, NULL, err)) != ADP_OK ||
        (rc = run(st, Q_DEAD_DEL, "forget patient", p, 1, NULL, err)) != ADP_OK) {
        rollback(st);
        return rc;
    }
    return commit(st, err);
}

static enum adp_err outbox_put_locked(struct state *st, const char *patient_id,
                                      const char *kind, const char *decision_hash,
                                      struct adp_error *err)
{
    const char *p[3] = {patient_id, kind, decision_hash};

    return run(st, Q_OUTBOX_PUT, "write outbox", p, 3, NULL, err);
}

static void outbox_row(sqlite3_stmt *q, void *row)
{
    struct state_outbox *out = row;

    memset(out, 0, sizeof(*out));
    col(q, 0, out->patient_id, sizeof(out->patient_id));
    col(q, 1, out->kind, sizeof(out->kind));
    col(q, 2, out->decision_hash, sizeof(out->decision_hash));
    out->attempts = sqlite3_column_int(q, 3);
    col(q, 4, out->last_error, sizeof(out->last_error));
    col(q, 5, out->created_at, sizeof(out->created_at));
}

/* The one row of a patient in the outbox (dead = 0) or the dead letters
 * (dead = 1), read by fill; *found 0 when there is none. */
static enum adp_err pending_get_locked(struct state *st, int dead, const char *patient_id,
                                       void (*fill)(sqlite3_stmt *, void *), void *out,
                                       int *found, struct adp_error *err)
{
    const char *what = dead ? "read dead letter" : "read outbox";
    sqlite3_stmt *q;
    int r;

    *found = 0;
    if (none_pending(st, dead))
        return ADP_OK;
    q = stmt_get(st, dead ? Q_DEAD_GET : Q_OUTBOX_GET);
    if (q == NULL)
        return db_error(st, what, err);
    sqlite3_bind_text(q, 1, patient_id, -1, SQLITE_TRANSIENT);
    r = sqlite3_step(q);
    if (r == SQLITE_ROW) {
        fill(q, out);
        *found = 1;
    }
    stmt_release(q);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return db_error(st, what, err);
    return ADP_OK;
}

static enum adp_err outbox_get_locked(struct state *st, const char *patient_id,
                                      struct state_outbox *out, int *found,
                                      struct adp_error *err)
{
    return pending_get_locked(st, 0, patient_id, outbox_row, out, found, err);
}

static enum adp_err outbox_failed_locked(struct state *st, const char *patient_id,
                                         const char *last_error, int *attempts,
                                         struct adp_error *err)
{
    const char *p[2] = {patient_id, last_error};
    struct state_outbox o;
    enum adp_err rc;
    int found = 0;

    rc = run(st, Q_OUTBOX_FAILED, "update outbox", p, 2, NULL, err);
    if (rc == ADP_OK)
        rc = outbox_get_locked(st, patient_id, &o, &found, err);
    if (rc == ADP_OK)
        *attempts = found ? o.attempts : 0;
    return rc;
}

static enum adp_err outbox_done_locked(struct state *st, const char *patient_id,
                                       struct adp_error *err)
{
    const char *p[1] = {patient_id};

    return run(st, Q_OUTBOX_DEL, "clear outbox", p, 1, NULL, err);
}

static enum adp_err outbox_list_locked(struct state *st, char ***ids, int *n,
                                       struct adp_error *err)
{
    sqlite3_stmt *q;
    char **out = NULL, **grown;
    int count = 0, cap = 0, r, i;
    enum adp_err rc = ADP_OK;

    q = stmt_get(st, Q_OUTBOX_LIST);
    if (q == NULL)
        return db_error(st, "list outbox", err);
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(q, 0);

        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            grown = realloc(out, (size_t)cap * sizeof(*out));
            if (grown == NULL) {
                rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
                goto out;
            }
            out = grown;
        }
        out[count] = strdup(t != NULL ? (const char *)t : "");
        if (out[count] == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
            goto out;
        }
        count++;
    }
    stmt_release(q);
    q = NULL;
    if (r != SQLITE_DONE) {
        rc = db_error(st, "list outbox", err);
        goto out;
    }
    *ids = out;
    *n = count;
    out = NULL;
out:
    if (q != NULL)
        stmt_release(q);
    if (out != NULL) {
        for (i = 0; i < count; i++)
            free(out[i]);
        free(out);
    }
    return rc;
}

static enum adp_err outbox_count_locked(struct state *st, int *n, struct adp_error *err)
{
    sqlite3_stmt *q;
    int r;

    q = stmt_get(st, Q_OUTBOX_COUNT);
    if (q == NULL)
        return db_error(st, "count outbox", err);
    r = sqlite3_step(q);
    if (r == SQLITE_ROW)
        *n = sqlite3_column_int(q, 0);
    stmt_release(q);
    if (r != SQLITE_ROW)
        return db_error(st, "count outbox", err);
    return ADP_OK;
}

static enum adp_err dead_letter_locked(struct state *st, const char *patient_id,
                                       const char *kind, const char *decision_hash,
                                       int attempts, int http_status,
                                       const char *last_error, const char *outcome,
                                       struct adp_error *err)
{
    sqlite3_stmt *q;
    const char *p[1] = {patient_id};
    enum adp_err rc;
    int r;

    rc = tx(st, Q_BEGIN, err);
    if (rc != ADP_OK)
        return rc;
    q = stmt_get(st, Q_DEAD_PUT);
    if (q == NULL) {
        rc = db_error(st, "write dead letter", err);
        goto fail;
    }
    sqlite3_bind_text(q, 1, patient_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 3, decision_hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 4, attempts);
    sqlite3_bind_int(q, 5, http_status);
    sqlite3_bind_text(q, 6, last_error != NULL ? last_error : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 7, outcome != NULL ? outcome : "", -1, SQLITE_TRANSIENT);
    r = sqlite3_step(q);
    stmt_release(q);
    if (r != SQLITE_DONE) {
        rc = db_error(st, "write dead letter", err);
        goto fail;
    }
    rc = run(st, Q_OUTBOX_DEL, "clear outbox", p, 1, NULL, err);
    if (rc != ADP_OK)
        goto fail;
    return commit(st, err);
fail:
    rollback(st);
    return rc;
}

static void dead_row(sqlite3_stmt *q, void *row)
{
    struct state_dead *d = row;

    memset(d, 0, sizeof(*d));
    col(q, 0, d->patient_id, sizeof(d->patient_id));
    col(q, 1, d->kind, sizeof(d->kind));
    col(q, 2, d->decision_hash, sizeof(d->decision_hash));
    d->attempts = sqlite3_column_int(q, 3);
    d->http_status = sqlite3_column_int(q, 4);
    col(q, 5, d->last_error, sizeof(d->last_error));
    col(q, 6, d->outcome, sizeof(d->outcome));
    col(q, 7, d->failed_at, sizeof(d->failed_at));
}

static enum adp_err dead_get_locked(struct state *st, const char *patient_id,
                                    struct state_dead *out, int *found,
                                    struct adp_error *err)
{
    return pending_get_locked(st, 1, patient_id, dead_row, out, found, err);
}

static enum adp_err dead_list_locked(struct state *st, struct state_dead **rows, int *n,
                                     struct adp_error *err)
{
    sqlite3_stmt *q;
    struct state_dead *out = NULL, *grown;
    int count = 0, cap = 0, r;

    q = stmt_get(st, Q_DEAD_LIST);
    if (q == NULL)
        return db_error(st, "list dead letters", err);
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            grown = realloc(out, (size_t)cap * sizeof(*out));
            if (grown == NULL) {
                stmt_release(q);
                free(out);
                return adp_error_set(err, ADP_ENOMEM, "out of memory");
            }
            out = grown;
        }
        dead_row(q, &out[count++]);
    }
    stmt_release(q);
    if (r != SQLITE_DONE) {
        free(out);
        return db_error(st, "list dead letters", err);
    }
    *rows = out;
    *n = count;
    return ADP_OK;
}

static enum adp_err dead_clear_locked(struct state *st, const char *patient_id,
                                      struct adp_error *err)
{
    const char *p[1] = {patient_id};

    return run(st, Q_DEAD_DEL, "clear dead letter", p, 1, NULL, err);
}

static enum adp_err finish_patient_locked(struct state *st, const char *patient_id,
                                          const struct state_patient *sp,
                                          struct adp_error *err)
{
    const char *p[1] = {patient_id};
    int outbox = !none_pending(st, 0), dead = !none_pending(st, 1);
    enum adp_err rc;

    rc = tx(st, Q_BEGIN, err);
    if (rc != ADP_OK)
        return rc;
    if (sp != NULL)
        rc = put_patient_locked(st, patient_id, sp, err);
    if (rc == ADP_OK && outbox)
        rc = run(st, Q_OUTBOX_DEL, "clear outbox", p, 1, NULL, err);
    if (rc == ADP_OK && dead)
        rc = run(st, Q_DEAD_DEL, "clear dead letter", p, 1, NULL, err);
    if (outbox || dead)
        pending_changed(st);
    if (rc != ADP_OK) {
        rollback(st);
        return rc;
    }
    return commit(st, err);
}

static enum adp_err dead_requeue_locked(struct state *st, const char *patient_id, int *n,
                                        struct adp_error *err)
{
    const char *p[1] = {patient_id};
    enum adp_err rc;
    int moved = 0;

    rc = tx(st, Q_BEGIN, err);
    if (rc != ADP_OK)
        return rc;
    rc = run(st, Q_DEAD_REQUEUE, "requeue dead letters", p, 1, NULL, err);
    if (rc == ADP_OK)
        rc = run(st, Q_DEAD_REQUEUE_DEL, "requeue dead letters", p, 1, &moved, err);
    if (rc != ADP_OK) {
        rollback(st);
        return rc;
    }
    rc = commit(st, err);
    if (rc == ADP_OK)
        *n = moved;
    return rc;
}

/* synchronous=FULL (on) or NORMAL for the next commits on st (prepared
 * once: twice per written patient).  Leaving it FULL after a failed switch
 * back only costs time. */
static enum adp_err durable(struct state *st, int on, struct adp_error *err)
{
    return run(st, on ? Q_SYNC_FULL : Q_SYNC_NORMAL, "set synchronous", NULL, 0, NULL, err);
}

/* The public calls: one at a time per handle (pool workers share the
 * main connection), each under the handle's lock. */

enum adp_err state_get_watermark(struct state *st, char *buf, size_t len,
                                 struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = get_watermark_locked(st, buf, len, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_set_watermark(struct state *st, const char *value, struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = set_watermark_locked(st, value, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_get_progress(struct state *st, char *watermark, size_t wlen, char *resume,
                                size_t rlen, struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = get_watermark_locked(st, watermark, wlen, err);
    if (rc == ADP_OK)
        rc = get_instant_locked(st, Q_RESUME_GET, "stored resume point", resume, rlen, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_set_progress(struct state *st, const char *watermark, const char *resume,
                                struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = set_progress_locked(st, watermark, resume, NULL, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_set_covered(struct state *st, const char *watermark,
                               const char *rules_version, struct adp_error *err)
{
    enum adp_err rc;

    if (rules_version == NULL || rules_version[0] == '\0')
        return adp_error_set(err, ADP_EIO, "state %s: empty rules version", st->path);
    pthread_mutex_lock(&st->mu);
    rc = set_progress_locked(st, watermark, "", rules_version, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_get_rules_version(struct state *st, char *buf, size_t len,
                                     struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = get_meta_locked(st, Q_RULES_GET, buf, len, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_get_patient(struct state *st, const char *patient_id,
                               struct state_patient *out, int *found, struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = get_patient_locked(st, patient_id, out, found, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_put_patient(struct state *st, const char *patient_id,
                               const struct state_patient *p, struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = put_patient_locked(st, patient_id, p, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_forget_patient(struct state *st, const char *patient_id,
                                  struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    /* a network write or an operator relies on this commit */
    rc = durable(st, 1, err);
    if (rc == ADP_OK) {
        rc = forget_patient_locked(st, patient_id, err);
        pending_changed(st);
        (void)durable(st, 0, NULL);
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_outbox_put(struct state *st, const char *patient_id, const char *kind,
                              const char *decision_hash, struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    /* a network write or an operator relies on this commit */
    rc = durable(st, 1, err);
    if (rc == ADP_OK) {
        rc = outbox_put_locked(st, patient_id, kind, decision_hash, err);
        pending_changed(st);
        (void)durable(st, 0, NULL);
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_outbox_get(struct state *st, const char *patient_id,
                              struct state_outbox *out, int *found, struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = outbox_get_locked(st, patient_id, out, found, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_outbox_failed(struct state *st, const char *patient_id,
                                 const char *last_error, int *attempts,
                                 struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = outbox_failed_locked(st, patient_id, last_error, attempts, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_outbox_done(struct state *st, const char *patient_id,
                               struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = outbox_done_locked(st, patient_id, err);
    pending_changed(st);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_outbox_list(struct state *st, char ***ids, int *n, struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = outbox_list_locked(st, ids, n, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_outbox_count(struct state *st, int *n, struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = outbox_count_locked(st, n, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_dead_letter(struct state *st, const char *patient_id, const char *kind,
                               const char *decision_hash, int attempts, int http_status,
                               const char *last_error, const char *outcome,
                               struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = dead_letter_locked(st, patient_id, kind, decision_hash, attempts, http_status,
                            last_error, outcome, err);
    pending_changed(st);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_dead_get(struct state *st, const char *patient_id,
                            struct state_dead *out, int *found, struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = dead_get_locked(st, patient_id, out, found, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_dead_list(struct state *st, struct state_dead **rows, int *n,
                             struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = dead_list_locked(st, rows, n, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_dead_clear(struct state *st, const char *patient_id,
                              struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = dead_clear_locked(st, patient_id, err);
    pending_changed(st);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_finish_patient(struct state *st, const char *patient_id,
                                  const struct state_patient *sp, struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    rc = finish_patient_locked(st, patient_id, sp, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_dead_requeue(struct state *st, const char *patient_id, int *n,
                                struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    /* a network write or an operator relies on this commit */
    rc = durable(st, 1, err);
    if (rc == ADP_OK) {
        rc = dead_requeue_locked(st, patient_id, n, err);
        pending_changed(st);
        (void)durable(st, 0, NULL);
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int state_failed(struct state *st, char *why, size_t len)
{
    int failed;

    if (st == NULL)
        return 0;
    pthread_mutex_lock(&st->mu);
    failed = st->failed[0] != '\0';
    if (failed && why != NULL)
        snprintf(why, len, "%s", st->failed);
    pthread_mutex_unlock(&st->mu);
    return failed;
}

/* The handle's file is still the one at its path: a removed file (or
 * state directory) keeps working through the open descriptor, and every
 * record written to it is gone at exit. */
enum adp_err state_check(struct state *st, struct adp_error *err)
{
    struct stat open_sb, path_sb;
    enum adp_err rc = ADP_OK;

    pthread_mutex_lock(&st->mu);
    if (st->failed[0] == '\0' && st->file_fd >= 0) {
        if (fstat(st->file_fd, &open_sb) == 0 && open_sb.st_nlink == 0)
            snprintf(st->failed, sizeof(st->failed),
                     "state %.400s was deleted while the adapter ran; nothing more is "
                     "written (restart the adapter)",
                     st->path);
        else if (stat(st->path, &path_sb) != 0)
            snprintf(st->failed, sizeof(st->failed),
                     "state %.400s is gone (%s): its directory was removed or renamed; "
                     "nothing more is written (restart the adapter)",
                     st->path, strerror(errno));
        else if (path_sb.st_dev != st->dev || path_sb.st_ino != st->ino)
            snprintf(st->failed, sizeof(st->failed),
                     "state %.400s was replaced by another file while the adapter ran; "
                     "nothing more is written (restart the adapter)",
                     st->path);
    }
    if (st->failed[0] != '\0')
        rc = adp_error_set(err, ADP_EIO, "%s", st->failed);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

enum adp_err state_bulk_run(struct state *st,
                            enum adp_err (*fn)(struct sqlite3 *db, struct state *st, void *ud,
                                               struct adp_error *err),
                            void *ud, struct adp_error *err)
{
    enum adp_err rc;

    pthread_mutex_lock(&st->mu);
    if (st->failed[0] != '\0')
        rc = adp_error_set(err, ADP_EIO, "%s", st->failed);
    else
        rc = fn(st->db, st, ud, err);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* Called from inside state_bulk_run's fn (the lock is held). */
enum adp_err state_bulk_db_error(struct state *st, const char *what, struct adp_error *err)
{
    return db_error(st, what, err);
}
