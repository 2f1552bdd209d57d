/* SPDX-License-Identifier: MIT
 * cache/doctor.c - read-only facts about the journal for hostsharectl,
 * from the open cache of a running mount or from a cache folder whose
 * mount is not running:
 *   - hs_cache_journal_info(): how much is pending, how old the oldest
 *     pending entry is, how many pending entries an earlier mount left,
 *     and the last entries the host refused (`hostsharectl doctor`).  The
 *     daemon's answer to the control socket's "doctor" request
 *     (fs/ctl_doctor.c) passes its open cache; tools/doctor.c, for a
 *     source that is not mounted, passes the cache folder.  The queries
 *     are journal.c's (hs_journal_info()).
 *   - hs_journal_pending() / hs_cache_folder_pending(): the journal rows,
 *     oldest first (`hostsharectl pending` of a folder whose mount is not
 *     running), and hs_pending_json(), the one encoding of such a row as
 *     the control protocol's JSON object (the daemon's "pending" answer,
 *     fs/ctl.c, uses it too).
 *   - hs_cache_owed_note(): the clause every message that tells the user
 *     to move a cache folder aside carries: what the folder still owes
 *     the host, or that it may owe something when that cannot be read.
 * A folder's meta.db is opened read-only here ("file:...?mode=ro").
 *
 * A mounted folder cannot be read from outside: the daemon holds its
 * database in exclusive locking mode, so the read-only open finds it
 * locked (-EBUSY).
 *
 * Locking: takes db_lock of an open cache for the queries; no network, no
 * writes.
 */
#include "cache_i.h"
#include "../common/json.h"

#include <ctype.h>
#include <inttypes.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* "file:" URI of @path opened read-only (a URI, so that a path with '?'
 * or '#' is not misread). */
static void ro_uri(const char *path, char *uri, size_t size)
{
	size_t i, n = (size_t)snprintf(uri, size, "file:");

	for (i = 0; path[i] && n + 4 < size; i++) {
		unsigned char ch = (unsigned char)path[i];

		if (isalnum(ch) || strchr("/-_.~@", ch))
			uri[n++] = (char)ch;
		else
			n += (size_t)snprintf(uri + n, size - n, "%%%02X", ch);
	}
	snprintf(uri + n, size - n, "?mode=ro");
}

/* Opens @dir/meta.db read-only into @ret.  0, or -errno with one line in
 * @err: -ENOENT no database there, -EIO it cannot be opened. */
static int open_folder(const char *dir, sqlite3 **ret, char *err,
		       size_t errlen)
{
	char path[PATH_MAX + 32], uri[PATH_MAX * 3 + 64];
	struct stat sb;

	*ret = NULL;
	snprintf(path, sizeof(path), "%s/meta.db", dir);
	if (!dir[0] || stat(path, &sb) < 0) {
		snprintf(err, errlen, "no cache database in '%s'", dir);
		return -ENOENT;
	}
	ro_uri(path, uri, sizeof(uri));
	if (sqlite3_open_v2(uri, ret, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI,
			    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s",
			 *ret ? sqlite3_errmsg(*ret) : "out of memory");
		sqlite3_close(*ret);
		*ret = NULL;
		return -EIO;
	}
	return 0;
}

/* A query's failure @r on @db as the folder's error: the daemon's lock
 * becomes -EBUSY with the way round it (@mountpoint_cmd: what to run on
 * the mountpoint instead). */
static int folder_error(sqlite3 *db, int r, const char *mountpoint_cmd,
			char *err, size_t errlen)
{
	if (r < 0 && ((db && (sqlite3_errcode(db) & 0xff) == SQLITE_BUSY) ||
		      strstr(err, "locked"))) {
		snprintf(err, errlen, "the cache is in use by a running "
			 "hostshare: run %s on its mountpoint", mountpoint_cmd);
		return -EBUSY;
	}
	return r;
}

static int info_of_folder(const char *dir, struct hs_cache_journal_info *ret,
			  char *err, size_t errlen)
{
	sqlite3 *db;
	int r = open_folder(dir, &db, err, errlen);

	if (r == 0)
		r = folder_error(db, hs_journal_info(db, ret, err, errlen),
				 "the doctor", err, errlen);
	sqlite3_close(db);
	return r;
}

int hs_cache_journal_info(struct hs_cache *c, const char *dir,
			  struct hs_cache_journal_info *ret, char *err,
			  size_t errlen)
{
	int r;

	if (!c)
		return info_of_folder(dir, ret, err, errlen);
	pthread_mutex_lock(&c->db_lock);
	r = hs_journal_info(c->db, ret, err, errlen);
	pthread_mutex_unlock(&c->db_lock);
	return r;
}

static const char *state_name(int state)
{
	switch (state) {
	case HS_JS_PENDING:
		return "pending";
	case HS_JS_RUNNING:
		return "sending";
	case HS_JS_FAILED:
		return "refused";
	}
	return "?";
}

int hs_journal_pending(sqlite3 *db, hs_pending_fn fn, void *arg, char *err,
		       size_t errlen)
{
	/* bytes: what a CREATE or DATA row has to move, at most the size
	 * (the dirty map would say exactly, but a listing does not load it) */
	static const char sql[] =
		"SELECT j.seq, j.op, j.state, j.path, j.path2, j.created, j.error,"
		" CASE WHEN j.op IN (" HS_SQL(HS_J_CREATE) "," HS_SQL(HS_J_DATA) ")"
		" THEN coalesce(i.size, 0) ELSE 0 END,"
		" i.hpath FROM journal j LEFT JOIN inode i ON i.ino=j.ino"
		" ORDER BY j.seq";
	int64_t now = hs_wall_ns();
	sqlite3_stmt *st = NULL;
	int rc, r = 0;

	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	while (rc == SQLITE_OK && r == 0 &&
	       (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int op = sqlite3_column_int(st, 1);
		const char *path = (const char *)sqlite3_column_text(st, 3);
		struct hs_pending p = {
			.seq = sqlite3_column_int64(st, 0),
			.op = hs_jop_name(op),
			.state = state_name(sqlite3_column_int(st, 2)),
			.path = path ? path : (const char *)sqlite3_column_text(st, 8),
			.path2 = op == HS_J_SYMLINK ? NULL :
				 (const char *)sqlite3_column_text(st, 4),
			.age_ms = (now - sqlite3_column_int64(st, 5)) / HS_NSEC_PER_MSEC,
			.error = (const char *)sqlite3_column_text(st, 6),
			.bytes = (uint64_t)sqlite3_column_int64(st, 7),
		};
		if (p.age_ms < 0)
			p.age_ms = 0;
		r = fn(arg, &p);
		rc = SQLITE_OK;
	}
	if (r == 0 && rc != SQLITE_DONE) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		r = -EIO;
	}
	sqlite3_finalize(st);
	return r;
}

int hs_cache_folder_pending(const char *dir, hs_pending_fn fn, void *arg,
			    char *err, size_t errlen)
{
	sqlite3 *db;
	int r = open_folder(dir, &db, err, errlen);

	if (r == 0)
		r = folder_error(db, hs_journal_pending(db, fn, arg, err, errlen),
				 "'hostsharectl pending'", err, errlen);
	sqlite3_close(db);
	return r;
}

void hs_pending_json(const struct hs_pending *p, struct hs_json *j)
{
	hs_json_open(j);
	hs_json_num(j, "seq", (uint64_t)p->seq);
	hs_json_str(j, "op", p->op);
	hs_json_str(j, "state", p->state);
	hs_json_str(j, "path", p->path ? p->path : "");
	if (p->path2)
		hs_json_str(j, "path2", p->path2);
	hs_json_num(j, "bytes", p->bytes);
	hs_json_num(j, "age_ms", (uint64_t)p->age_ms);
	if (p->error)
		hs_json_str(j, "error", p->error);
}

static int count_row(void *arg, const struct hs_pending *p)
{
	(*(uint64_t *)arg)++;
	return 0;
}

void hs_cache_owed_note(const char *dir, char *buf, size_t size)
{
	char err[256];
	uint64_t n = 0;
	int r = hs_cache_folder_pending(dir, count_row, &n, err, sizeof(err));

	if (r == 0 && n)
		snprintf(buf, size, "the folder still holds %" PRIu64 " change%s not on "
			 "the host (see 'hostsharectl pending %s')", n,
			 n == 1 ? "" : "s", dir);
	else if (r == 0)
		snprintf(buf, size, "the folder holds no change the host has not got");
	else
		snprintf(buf, size, "the folder may hold changes the host has not got "
			 "(its journal cannot be read)");
}
