/* SPDX-License-Identifier: MIT
 * cache/meta.c - the cache's sqlite database: schema, prepared statements
 * and the row-level helpers the rest of cache/ uses.
 *
 * One database per cache folder (meta.db, WAL, synchronous=NORMAL: a commit
 * survives a kill of the daemon; hs_meta_sync() makes it survive a power cut
 * too).  One connection, guarded by c->db_lock; every function here expects
 * the caller to hold it.  A busy timeout covers another process (a
 * hostsharectl reading the file); "database is locked" never reaches a user.
 *
 * Tables:
 *   inode(ino, mode, uid, gid, nlink, size, atime, mtime, ctime, target,
 *         hpath, host_size, host_mtime, listed, listed_at, checked_at,
 *         local, dver, present, dirty, trunc_min)
 *   dentry(parent, name, ino)            - the guest namespace
 *   journal(seq, op, state, flags, ino, path, path2, valid, mode, uid, gid,
 *           size, atime, mtime, created, error)
 *   meta(key, value)                     - schema version; instance (random,
 *                                          part of temporary host names);
 *                                          mount_seq (the last journal seq
 *                                          before the latest mount began)
 * Invariants: every dentry names an inode row; a directory has exactly one
 * dentry (the root none); inode.local = number of journal rows naming it;
 * hpath is unique among inodes (a host path holds one object).
 *
 * sqlite result codes become -errno here and nowhere else: SQLITE_FULL ->
 * -ENOSPC, corruption -> -EIO (logged with the file name), others -EIO.
 */
#include "cache_i.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCHEMA_VERSION 1

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);"
	"CREATE TABLE IF NOT EXISTS inode("
	/* AUTOINCREMENT: an inode number is never reused, so a number the
	 * kernel still remembers never names another file */
	" ino INTEGER PRIMARY KEY AUTOINCREMENT, mode INTEGER NOT NULL, uid INTEGER NOT NULL,"
	" gid INTEGER NOT NULL, nlink INTEGER NOT NULL DEFAULT 1,"
	" size INTEGER NOT NULL DEFAULT 0, atime INTEGER NOT NULL DEFAULT 0,"
	" mtime INTEGER NOT NULL DEFAULT 0, ctime INTEGER NOT NULL DEFAULT 0,"
	" target TEXT, hpath TEXT, host_size INTEGER NOT NULL DEFAULT -1,"
	" host_mtime INTEGER NOT NULL DEFAULT -1, listed INTEGER NOT NULL DEFAULT 0,"
	" listed_at INTEGER NOT NULL DEFAULT 0, checked_at INTEGER NOT NULL DEFAULT 0,"
	" local INTEGER NOT NULL DEFAULT 0, dver INTEGER NOT NULL DEFAULT 0,"
	" present BLOB, dirty BLOB, trunc_min INTEGER NOT NULL DEFAULT -1);"
	"CREATE UNIQUE INDEX IF NOT EXISTS inode_hpath ON inode(hpath);"
	"CREATE TABLE IF NOT EXISTS dentry(parent INTEGER NOT NULL,"
	" name TEXT NOT NULL, ino INTEGER NOT NULL, PRIMARY KEY(parent, name))"
	" WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS dentry_ino ON dentry(ino);"
	"CREATE TABLE IF NOT EXISTS journal("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT, op INTEGER NOT NULL,"
	" state INTEGER NOT NULL DEFAULT 0, flags INTEGER NOT NULL DEFAULT 0,"
	" ino INTEGER NOT NULL DEFAULT 0, path TEXT, path2 TEXT,"
	" valid INTEGER NOT NULL DEFAULT 0, mode INTEGER NOT NULL DEFAULT 0,"
	" uid INTEGER NOT NULL DEFAULT 0, gid INTEGER NOT NULL DEFAULT 0,"
	" size INTEGER NOT NULL DEFAULT 0, atime INTEGER NOT NULL DEFAULT 0,"
	" mtime INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL DEFAULT 0,"
	" error TEXT);"
	"CREATE INDEX IF NOT EXISTS journal_ino ON journal(ino, state);"
	"CREATE INDEX IF NOT EXISTS journal_path ON journal(path);"
	/* conflicts found by the flusher, until the user clears them */
	"CREATE TABLE IF NOT EXISTS conflict(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" at INTEGER NOT NULL, path TEXT NOT NULL, copy TEXT, reason TEXT NOT NULL);";

/* Prepared statements, keyed by the address of their SQL text (callers
 * pass string literals).  Protected by db_lock like the connection. */
#define NSTMT 128
static struct {
	sqlite3 *db;
	const char *sql;
	sqlite3_stmt *st;
} stmts[NSTMT];

sqlite3_stmt *hs_meta_prepare(struct hs_cache *c, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int i, free_slot = -1;

	for (i = 0; i < NSTMT; i++) {
		if (stmts[i].db == c->db && stmts[i].sql == sql) {
			sqlite3_reset(stmts[i].st);
			sqlite3_clear_bindings(stmts[i].st);
			return stmts[i].st;
		}
		if (!stmts[i].db && free_slot < 0)
			free_slot = i;
	}
	if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
			       NULL) != SQLITE_OK) {
		hs_err("cache database: cannot prepare '%s': %s", sql,
		       sqlite3_errmsg(c->db));
		return NULL;
	}
	if (free_slot >= 0) {
		stmts[free_slot].db = c->db;
		stmts[free_slot].sql = sql;
		stmts[free_slot].st = st;
	}
	return st;
}

int hs_meta_errno(struct hs_cache *c, int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		hs_err("cache database '%s/meta.db' is corrupt: %s", c->dir,
		       sqlite3_errmsg(c->db));
		return -EIO;
	default:
		hs_err("cache database '%s/meta.db': %s", c->dir,
		       sqlite3_errmsg(c->db));
		return -EIO;
	}
}

int hs_meta_exec(struct hs_cache *c, const char *sql)
{
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : hs_meta_errno(c, rc);
}

/*
 * Group commit.  Each operation runs in a savepoint inside a write
 * transaction.  hs_meta_commit() commits at once: a namespace change
 * (mkdir, rename, unlink, ...) that returned survives a kill of the daemon.
 * hs_meta_commit_deferred() is for changes to a file that is open - its
 * creation, writes, attribute changes through the descriptor: the close(2)
 * or fsync(2) of that file commits them (hs_meta_flush()), as the
 * durability contract says, and the flusher commits a group left open
 * longer than GROUP_NS.  So a file written and closed costs one commit.
 */
#define GROUP_NS (20 * HS_NSEC_PER_MSEC)

/* The statements every operation runs, prepared once (sqlite3_exec()
 * would parse them again each time). */
static const char sql_begin[] = "BEGIN IMMEDIATE";
static const char sql_savepoint[] = "SAVEPOINT op";
static const char sql_release[] = "RELEASE op";
static const char sql_commit[] = "COMMIT";

static int exec_prepared(struct hs_cache *c, const char *sql)
{
	sqlite3_stmt *st = hs_meta_prepare(c, sql);

	return st ? hs_meta_step(c, st) : -EIO;
}

int hs_meta_begin(struct hs_cache *c)
{
	int r;

	if (!c->txn_open) {
		r = exec_prepared(c, sql_begin);
		if (r < 0)
			return r;
		c->txn_open = 1;
		c->txn_start = hs_now_ns();
	}
	r = exec_prepared(c, sql_savepoint);
	if (r == 0)
		c->in_op = 1;
	return r;
}

int hs_meta_flush(struct hs_cache *c)
{
	int r;

	if (!c->txn_open)
		return 0;
	r = exec_prepared(c, sql_commit);
	/* the disk is full: the reserve (reserve.c) is for this commit, and
	 * a COMMIT that failed so leaves its transaction open to try again */
	if (r < 0 && !sqlite3_get_autocommit(c->db) && hs_reserve_release(c))
		r = exec_prepared(c, sql_commit);
	if (r < 0) {
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
		hs_err("cache database: a group of changes could not be "
		       "committed and was lost");
	}
	c->txn_open = 0;
	return r;
}

int hs_meta_flush_if_old(struct hs_cache *c)
{
	if (c->txn_open && hs_now_ns() - c->txn_start >= GROUP_NS)
		return hs_meta_flush(c);
	return 0;
}

static int release_op(struct hs_cache *c)
{
	int r;

	if (!c->in_op)
		return -EINVAL;
	r = exec_prepared(c, sql_release);
	c->in_op = 0;
	return r;
}

int hs_meta_commit(struct hs_cache *c)
{
	int r = release_op(c);

	return r < 0 ? r : hs_meta_flush(c);
}

int hs_meta_commit_deferred(struct hs_cache *c)
{
	int r = release_op(c);

	return r < 0 ? r : hs_meta_flush_if_old(c);
}

void hs_meta_rollback(struct hs_cache *c)
{
	if (!c->in_op)
		return;
	sqlite3_exec(c->db, "ROLLBACK TO op; RELEASE op", NULL, NULL, NULL);
	c->in_op = 0;
}

int hs_meta_sync(struct hs_cache *c)
{
	char path[4096 + 16];
	int r, fd;

	/* Every commit is in the WAL (or, once checkpointed, in the database
	 * file, which a checkpoint syncs first): syncing the WAL makes all of
	 * them durable.  Done by hand: a FULL-synchronous commit that changes
	 * nothing writes no frame and syncs nothing. */
	r = hs_meta_flush(c);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/meta.db-wal", c->dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno; /* no WAL: nothing unsynced */
	r = fdatasync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

/* The one line of a database this mount cannot use: @what (which names
 * the file and the reason), what the folder still owes the host and the
 * way out.  Our own connection is closed first, so the journal can be
 * read read-only (hs_cache_owed_note()).  Returns @r. */
static int unusable(struct hs_cache *c, int r, const char *what, char *err,
		    size_t errlen)
{
	char note[PATH_MAX + 128], *p;

	sqlite3_close_v2(c->db);
	c->db = NULL;
	hs_cache_owed_note(c->dir, note, sizeof(note));
	/* moved aside, not deleted: it may be all the host is owed */
	snprintf(err, errlen, "%s; %s; to start over with an empty cache, "
		 "move the folder '%s' aside", what, note, c->dir);
	for (p = err; *p; p++) /* quick_check's report has lines of its own */
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	return r;
}

int hs_meta_open(struct hs_cache *c, char *err, size_t errlen)
{
	char what[PATH_MAX + 600];
	char *path;
	int rc, r;
	sqlite3_stmt *st = NULL;

	if (asprintf(&path, "%s/meta.db", c->dir) < 0)
		return -ENOMEM;
	rc = sqlite3_open_v2(path, &c->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK)
		goto fail;
	sqlite3_busy_timeout(c->db, 30000);
	rc = sqlite3_exec(c->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
			  " PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY;"
			  /* one daemon owns the file (see the lock file): no
			   * per-transaction file locking */
			  " PRAGMA locking_mode=EXCLUSIVE; PRAGMA wal_autocheckpoint=4000;",
			  NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	rc = sqlite3_prepare_v2(c->db, "PRAGMA quick_check", -1, &st, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW ||
	    strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0) {
		snprintf(what, sizeof(what), "corrupt cache database '%s': %.300s",
			 path, rc == SQLITE_ROW ?
			 (const char *)sqlite3_column_text(st, 0) :
			 sqlite3_errmsg(c->db));
		sqlite3_finalize(st);
		free(path);
		return unusable(c, -EIO, what, err, errlen);
	}
	sqlite3_finalize(st);
	rc = sqlite3_exec(c->db, schema, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	rc = sqlite3_exec(c->db,
			  "INSERT OR IGNORE INTO meta VALUES('schema', 1);"
			  /* listing times are monotonic: meaningless now */
			  "UPDATE inode SET listed_at=0 WHERE listed_at>0;"
			  "UPDATE inode SET checked_at=0;"
			  /* a send cut short by a crash is resent */
			  "UPDATE journal SET state=" HS_SQL(HS_JS_PENDING)
			  " WHERE state=" HS_SQL(HS_JS_RUNNING) ";",
			  NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	rc = sqlite3_exec(c->db, "INSERT OR IGNORE INTO meta VALUES('instance',"
			  " abs(random() % 4294967296));", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	/* where this mount's journal rows begin: rows up to this seq are
	 * from an earlier mount (hs_journal_info(), the doctor) */
	rc = sqlite3_exec(c->db, "INSERT OR REPLACE INTO meta VALUES('mount_seq',"
			  " coalesce((SELECT seq FROM sqlite_sequence"
			  " WHERE name='journal'), 0));", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	rc = sqlite3_prepare_v2(c->db, "SELECT value FROM meta WHERE key='instance'",
				-1, &st, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	if (sqlite3_step(st) == SQLITE_ROW)
		c->instance = (uint32_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	st = NULL;
	free(path);
	return 0;
fail:
	r = (rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT ? -EIO :
	    (rc & 0xff) == SQLITE_FULL ? -ENOSPC : -EIO;
	snprintf(what, sizeof(what), "%s cache database '%s': %s",
		 r == -EIO && ((rc & 0xff) == SQLITE_NOTADB ||
			       (rc & 0xff) == SQLITE_CORRUPT) ? "corrupt" : "cannot open",
		 path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
	free(path);
	return unusable(c, r, what, err, errlen);
}

void hs_meta_close(struct hs_cache *c)
{
	int i;

	if (!c->db)
		return;
	hs_meta_flush(c);
	for (i = 0; i < NSTMT; i++) {
		if (stmts[i].db == c->db) {
			sqlite3_finalize(stmts[i].st);
			stmts[i].db = NULL;
			stmts[i].sql = NULL;
			stmts[i].st = NULL;
		}
	}
	sqlite3_close(c->db);
	c->db = NULL;
}

void hs_inode_release(struct hs_inode *i)
{
	free(i->hpath);
	i->hpath = NULL;
}

void hs_jentry_release(struct hs_jentry *e)
{
	free(e->path);
	free(e->path2);
	e->path = e->path2 = NULL;
}

static char *dup_col(sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);

	return s ? strdup((const char *)s) : NULL;
}

int hs_meta_get_inode(struct hs_cache *c, uint64_t ino, struct hs_inode *ret)
{
	static const char sql[] =
		"SELECT mode, uid, gid, nlink, size, atime, mtime, ctime, hpath,"
		" host_size, host_mtime, listed, listed_at, checked_at, local, dver"
		" FROM inode WHERE ino=?";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int rc;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, (int64_t)ino);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return hs_meta_errno(c, rc);
	memset(ret, 0, sizeof(*ret));
	ret->ino = ino;
	ret->mode = (uint32_t)sqlite3_column_int64(st, 0);
	ret->uid = (uint32_t)sqlite3_column_int64(st, 1);
	ret->gid = (uint32_t)sqlite3_column_int64(st, 2);
	ret->nlink = (uint32_t)sqlite3_column_int64(st, 3);
	ret->size = (uint64_t)sqlite3_column_int64(st, 4);
	ret->atime = sqlite3_column_int64(st, 5);
	ret->mtime = sqlite3_column_int64(st, 6);
	ret->ctime = sqlite3_column_int64(st, 7);
	ret->hpath = dup_col(st, 8);
	ret->host_size = sqlite3_column_int64(st, 9);
	ret->host_mtime = sqlite3_column_int64(st, 10);
	ret->listed_at = sqlite3_column_int64(st, 11) ? sqlite3_column_int64(st, 12) : -2;
	ret->checked_at = sqlite3_column_int64(st, 13);
	ret->local = sqlite3_column_int64(st, 14);
	ret->dver = (uint64_t)sqlite3_column_int64(st, 15);
	sqlite3_reset(st);
	return 0;
}

int hs_meta_lookup(struct hs_cache *c, uint64_t parent, const char *name,
		   uint64_t *ret_ino)
{
	static const char sql[] = "SELECT ino FROM dentry WHERE parent=? AND name=?";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int rc;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, (int64_t)parent);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return hs_meta_errno(c, rc);
	*ret_ino = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return 0;
}

static void bind_inode(sqlite3_stmt *st, const struct hs_inode *i)
{
	sqlite3_bind_int64(st, 1, i->mode);
	sqlite3_bind_int64(st, 2, i->uid);
	sqlite3_bind_int64(st, 3, i->gid);
	sqlite3_bind_int64(st, 4, i->nlink);
	sqlite3_bind_int64(st, 5, (int64_t)i->size);
	sqlite3_bind_int64(st, 6, i->atime);
	sqlite3_bind_int64(st, 7, i->mtime);
	sqlite3_bind_int64(st, 8, i->ctime);
	if (i->hpath)
		sqlite3_bind_text(st, 9, i->hpath, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 9);
	sqlite3_bind_int64(st, 10, i->host_size);
	sqlite3_bind_int64(st, 11, i->host_mtime);
	sqlite3_bind_int64(st, 12, i->listed_at != -2);
	sqlite3_bind_int64(st, 13, i->listed_at == -2 ? 0 : i->listed_at);
	sqlite3_bind_int64(st, 14, i->checked_at);
	sqlite3_bind_int64(st, 15, (int64_t)i->dver);
}

/* Writes the attribute columns of @i (not local, maps or target). */
int hs_meta_put_inode(struct hs_cache *c, const struct hs_inode *i)
{
	static const char sql[] =
		"UPDATE inode SET mode=?1, uid=?2, gid=?3, nlink=?4, size=?5,"
		" atime=?6, mtime=?7, ctime=?8, hpath=?9, host_size=?10,"
		" host_mtime=?11, listed=?12, listed_at=?13, checked_at=?14,"
		" dver=?15 WHERE ino=?16";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int rc;

	if (!st)
		return -EIO;
	bind_inode(st, i);
	sqlite3_bind_int64(st, 16, (int64_t)i->ino);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : hs_meta_errno(c, rc);
}

int hs_meta_new_inode(struct hs_cache *c, struct hs_inode *i)
{
	static const char sql[] =
		"INSERT INTO inode(mode, uid, gid, nlink, size, atime, mtime, ctime,"
		" hpath, host_size, host_mtime, listed, listed_at, checked_at, dver)"
		" VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int rc;

	if (!st)
		return -EIO;
	bind_inode(st, i);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return hs_meta_errno(c, rc);
	i->ino = (uint64_t)sqlite3_last_insert_rowid(c->db);
	return 0;
}

int hs_meta_step(struct hs_cache *c, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : hs_meta_errno(c, rc);
}

int hs_meta_exists(struct hs_cache *c, const char *sql, int64_t id)
{
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int rc;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : hs_meta_errno(c, rc);
}

int hs_meta_add_dentry(struct hs_cache *c, uint64_t parent, const char *name,
		       uint64_t ino)
{
	static const char sql[] = "INSERT INTO dentry(parent, name, ino) VALUES(?,?,?)";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, (int64_t)parent);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)ino);
	return hs_meta_step(c, st);
}

int hs_meta_del_dentry(struct hs_cache *c, uint64_t parent, const char *name)
{
	static const char sql[] = "DELETE FROM dentry WHERE parent=? AND name=?";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, (int64_t)parent);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	return hs_meta_step(c, st);
}

int hs_meta_path(struct hs_cache *c, uint64_t ino, char **ret)
{
	static const char sql[] = "SELECT parent, name FROM dentry WHERE ino=? LIMIT 1";
	char *path = strdup(""), *np;
	int depth = 0, rc;

	if (!path)
		return -ENOMEM;
	while (ino != HS_ROOT_INO) {
		sqlite3_stmt *st = hs_meta_prepare(c, sql);

		if (!st || ++depth > 4096) {
			free(path);
			return -EIO;
		}
		sqlite3_bind_int64(st, 1, (int64_t)ino);
		rc = sqlite3_step(st);
		if (rc != SQLITE_ROW) {
			free(path);
			return rc == SQLITE_DONE ? -ENOENT : hs_meta_errno(c, rc);
		}
		if (asprintf(&np, "/%s%s", sqlite3_column_text(st, 1), path) < 0) {
			sqlite3_reset(st);
			free(path);
			return -ENOMEM;
		}
		ino = (uint64_t)sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
		free(path);
		path = np;
	}
	if (!*path) {
		free(path);
		path = strdup("/");
		if (!path)
			return -ENOMEM;
	}
	*ret = path;
	return 0;
}

int hs_meta_dir_empty(struct hs_cache *c, uint64_t ino)
{
	static const char sql[] = "SELECT 1 FROM dentry WHERE parent=? LIMIT 1";
	int r = hs_meta_exists(c, sql, (int64_t)ino);

	return r < 0 ? r : !r;
}

uint64_t hs_meta_by_hpath(struct hs_cache *c, const char *hpath)
{
	static const char sql[] = "SELECT ino FROM inode WHERE hpath=?";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	uint64_t ino = 0;

	if (!st)
		return 0;
	sqlite3_bind_text(st, 1, hpath, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		ino = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return ino;
}

int hs_meta_set_hpath(struct hs_cache *c, uint64_t ino, const char *hpath)
{
	static const char clear[] = "UPDATE inode SET hpath=NULL WHERE hpath=? AND ino<>?";
	static const char set[] = "UPDATE inode SET hpath=? WHERE ino=?";
	sqlite3_stmt *st;
	int r;

	if (hpath) {
		st = hs_meta_prepare(c, clear);
		if (!st)
			return -EIO;
		sqlite3_bind_text(st, 1, hpath, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (int64_t)ino);
		r = hs_meta_step(c, st);
		if (r < 0)
			return r;
	}
	st = hs_meta_prepare(c, set);
	if (!st)
		return -EIO;
	if (hpath)
		sqlite3_bind_text(st, 1, hpath, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 1);
	sqlite3_bind_int64(st, 2, (int64_t)ino);
	return hs_meta_step(c, st);
}

int hs_meta_move_hpaths(struct hs_cache *c, const char *from, const char *to)
{
	/* "from/" <= hpath < "from0" selects everything below @from ('0' is
	 * the character after '/'). */
	static const char sql[] =
		"UPDATE inode SET hpath = ?2 || substr(hpath, length(?1) + 1)"
		" WHERE hpath = ?1 OR (hpath >= ?1 || '/' AND hpath < ?1 || '0')";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);

	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, from, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, to, -1, SQLITE_STATIC);
	return hs_meta_step(c, st);
}

int hs_meta_load_maps(struct hs_cache *c, uint64_t ino, struct hs_bitmap *present,
		      struct hs_bitmap *dirty, int64_t *ret_trunc_min)
{
	static const char sql[] = "SELECT present, dirty, trunc_min FROM inode WHERE ino=?";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int rc, r = 0;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, (int64_t)ino);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return rc == SQLITE_DONE ? -ENOENT : hs_meta_errno(c, rc);
	}
	r = hs_bitmap_load(present, sqlite3_column_blob(st, 0),
			   (size_t)sqlite3_column_bytes(st, 0));
	if (r == 0)
		r = hs_bitmap_load(dirty, sqlite3_column_blob(st, 1),
				   (size_t)sqlite3_column_bytes(st, 1));
	*ret_trunc_min = sqlite3_column_int64(st, 2);
	sqlite3_reset(st);
	return r;
}

int hs_meta_each_dirty(struct hs_cache *c,
		       void (*fn)(void *arg, uint64_t ino, uint64_t blocks),
		       void *arg)
{
	static const char sql[] =
		"SELECT ino, dirty FROM inode WHERE ino IN (SELECT ino FROM journal"
		" WHERE op IN (" HS_SQL(HS_J_CREATE) "," HS_SQL(HS_J_DATA) "))"
		" AND length(dirty) > 0";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int rc;

	if (!st)
		return -EIO;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t n = hs_bitmap_count_saved(sqlite3_column_blob(st, 1),
						   (size_t)sqlite3_column_bytes(st, 1));

		if (n)
			fn(arg, (uint64_t)sqlite3_column_int64(st, 0), n);
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : hs_meta_errno(c, rc);
}

int hs_meta_save_maps(struct hs_cache *c, uint64_t ino,
		      const struct hs_bitmap *present, const struct hs_bitmap *dirty,
		      int64_t trunc_min)
{
	static const char sql[] =
		"UPDATE inode SET present=?, dirty=?, trunc_min=? WHERE ino=?";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	size_t plen, dlen;
	void *p, *d;
	int r;

	if (!st)
		return -EIO;
	p = hs_bitmap_save(present, &plen);
	d = hs_bitmap_save(dirty, &dlen);
	if ((plen && !p) || (dlen && !d)) {
		free(p);
		free(d);
		return -ENOMEM;
	}
	sqlite3_bind_blob(st, 1, p, (int)plen, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, d, (int)dlen, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, trunc_min);
	sqlite3_bind_int64(st, 4, (int64_t)ino);
	r = hs_meta_step(c, st);
	free(p);
	free(d);
	return r;
}
