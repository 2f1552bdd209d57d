/* SPDX-License-Identifier: MIT
 * cache/journal.c - the journal of host operations the guest still owes.
 *
 * Every guest change that the host must see appends one row, in the same
 * sqlite transaction as the namespace change itself, so the journal and the
 * guest view never disagree after a crash.  Rows are replayed by the flusher
 * in seq order: replaying them in order turns the host namespace into the
 * guest namespace (paths in a row are guest paths at the time of the change,
 * which are host paths at that point of the replay).
 *
 * Row states: PENDING -> RUNNING -> (deleted) on success; RUNNING ->
 * PENDING after a link failure; RUNNING -> FAILED when the host refused it
 * (kept for the user, skipped by the replay).
 *
 * Coalescing (only PENDING rows, only files and symlinks that never reached
 * the host):
 *   - created then unlinked: every row of the inode goes; a rename of it that
 *     replaced another name becomes an UNLINK of that name.
 *   - created then renamed (the editor's write-temp-then-rename): the
 *     CREATE moves to the rename's place with the new path, so the content
 *     is uploaded once, straight to its final name.  If the rename replaced
 *     a name, the moved CREATE carries REPLACED; should it be dropped or
 *     moved again later, an UNLINK of that name stays in its place.
 *   - a row that was sent before (STARTED: a link failure or a crash cut
 *     it, perhaps after the host made its name) leaves an UNLINK of that
 *     name in its place too, when it is dropped or moved.
 *   - data and attribute changes of a file whose CREATE is pending append
 *     nothing: the CREATE sends the content and attributes current at the
 *     time it runs.
 *
 * Concurrency: every function here runs under c->db_lock, inside the
 * caller's transaction.
 */
#include "cache_i.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static int add_local(struct hs_cache *c, uint64_t ino, int64_t delta)
{
	static const char sql[] = "UPDATE inode SET local=MAX(local+?,0) WHERE ino=?";
	sqlite3_stmt *st;

	if (!ino)
		return 0;
	st = hs_meta_prepare(c, sql);
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, delta);
	sqlite3_bind_int64(st, 2, (int64_t)ino);
	return hs_meta_step(c, st);
}

void hs_journal_wake(struct hs_cache *c)
{
	pthread_mutex_lock(&c->flush_lock);
	pthread_cond_broadcast(&c->flush_cond);
	pthread_mutex_unlock(&c->flush_lock);
}

void hs_journal_wake_for(struct hs_cache *c, uint64_t ino)
{
	pthread_mutex_lock(&c->flush_lock);
	if (!c->flush_wait_ino || c->flush_wait_ino == ino)
		pthread_cond_broadcast(&c->flush_cond);
	pthread_mutex_unlock(&c->flush_lock);
}

const char *hs_jop_name(int op)
{
	static const char *const names[] = {
		[HS_J_MKDIR] = "mkdir", [HS_J_CREATE] = "create",
		[HS_J_DATA] = "write", [HS_J_SETATTR] = "setattr",
		[HS_J_UNLINK] = "unlink", [HS_J_RMDIR] = "rmdir",
		[HS_J_RENAME] = "rename", [HS_J_SYMLINK] = "symlink",
		[HS_J_LINK] = "link",
	};
	return op > 0 && op < (int)HS_ARRAY_SIZE(names) && names[op] ?
	       names[op] : "?";
}

char *hs_journal_temp_name(struct hs_cache *c, const char *path, int64_t seq)
{
	const char *slash = strrchr(path, '/');
	char *p;

	if (!slash)
		return NULL;
	if (asprintf(&p, "%.*s/.hs-tmp.%.40s.%08x%08llx", (int)(slash - path),
		     path, slash + 1, c->instance, (unsigned long long)seq) < 0)
		return NULL;
	return p;
}

/* Rows of @ino that leave the removal of a host name in their place when
 * dropped or moved (hs_journal_unlinked(), hs_journal_renamed()): a
 * pending CREATE, RENAME or SYMLINK that replaced a name or was sent
 * before becomes an UNLINK of its name (a RENAME's: its target). */
static const char sql_convert_to_unlink[] =
	"UPDATE journal SET op=" HS_SQL(HS_J_UNLINK) ", ino=0,"
	" path=CASE op WHEN " HS_SQL(HS_J_RENAME) " THEN path2 ELSE path END,"
	" path2=NULL, flags=0"
	" WHERE ino=? AND state=" HS_SQL(HS_JS_PENDING)
	" AND op IN (" HS_SQL(HS_J_CREATE) "," HS_SQL(HS_J_RENAME) ","
	HS_SQL(HS_J_SYMLINK) ")"
	" AND (flags & (" HS_SQL(HS_JF_REPLACED) " | " HS_SQL(HS_JF_STARTED) "))";

/* Rows of @ino about to be dropped: an upload one of them began may have
 * left its temporary file on the host, which a new row removes. */
static int forget_started(struct hs_cache *c, uint64_t ino)
{
	static const char sql[] = "SELECT seq, path FROM journal WHERE ino=? AND"
				  " state=" HS_SQL(HS_JS_PENDING)
				  " AND op=" HS_SQL(HS_J_CREATE)
				  " AND (flags & " HS_SQL(HS_JF_STARTED) ")";
	struct { int64_t seq; char *path; } v[16];
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int n = 0, i, r = 0;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, (int64_t)ino);
	while (n < 16 && sqlite3_step(st) == SQLITE_ROW) {
		v[n].seq = sqlite3_column_int64(st, 0);
		v[n].path = strdup((const char *)sqlite3_column_text(st, 1));
		n++;
	}
	sqlite3_reset(st);
	for (i = 0; i < n; i++) {
		struct hs_jentry e = { .op = HS_J_UNLINK };

		e.path = v[i].path ? hs_journal_temp_name(c, v[i].path, v[i].seq) : NULL;
		if (r == 0 && !e.path)
			r = -ENOMEM;
		if (r == 0)
			r = hs_journal_append(c, &e);
		free(e.path);
		free(v[i].path);
	}
	return r;
}

int hs_journal_append(struct hs_cache *c, const struct hs_jentry *e)
{
	static const char sql[] =
		"INSERT INTO journal(op, state, flags, ino, path, path2, valid, mode,"
		" uid, gid, size, atime, mtime, created)"
		" VALUES(?,0,?,?,?,?,?,?,?,?,?,?,?,?)";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int r;

	if (!st)
		return -EIO;
	sqlite3_bind_int(st, 1, e->op);
	sqlite3_bind_int(st, 2, (int)e->flags);
	sqlite3_bind_int64(st, 3, (int64_t)e->ino);
	sqlite3_bind_text(st, 4, e->path, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, e->path2, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, e->attr.valid);
	sqlite3_bind_int64(st, 7, e->attr.mode);
	sqlite3_bind_int64(st, 8, e->attr.uid);
	sqlite3_bind_int64(st, 9, e->attr.gid);
	sqlite3_bind_int64(st, 10, (int64_t)e->attr.size);
	sqlite3_bind_int64(st, 11, e->attr.atime_ns);
	sqlite3_bind_int64(st, 12, e->attr.mtime_ns);
	/* wall clock: the row may be replayed after a reboot, when the
	 * monotonic clock has started again */
	sqlite3_bind_int64(st, 13, hs_wall_ns());
	r = hs_meta_step(c, st);
	if (r == 0)
		r = add_local(c, e->ino, 1);
	atomic_store(&c->last_change_ns, hs_now_ns());
	if (r == 0)
		hs_journal_wake_for(c, e->ino);
	return r;
}


int hs_journal_has_data(struct hs_cache *c, uint64_t ino)
{
	static const char sql[] = "SELECT 1 FROM journal WHERE ino=?"
				  " AND state=" HS_SQL(HS_JS_PENDING)
				  " AND op IN (" HS_SQL(HS_J_CREATE) ","
				  HS_SQL(HS_J_DATA) ") LIMIT 1";
	return hs_meta_exists(c, sql, (int64_t)ino);
}

int hs_journal_has_pending_create(struct hs_cache *c, uint64_t ino)
{
	static const char sql[] = "SELECT 1 FROM journal WHERE ino=?"
				  " AND state=" HS_SQL(HS_JS_PENDING)
				  " AND op IN (" HS_SQL(HS_J_CREATE) ","
				  HS_SQL(HS_J_SYMLINK) ") LIMIT 1";
	return hs_meta_exists(c, sql, (int64_t)ino);
}

int hs_journal_has_staged(struct hs_cache *c, uint64_t ino)
{
	static const char sql[] = "SELECT 1 FROM journal WHERE ino=?"
				  " AND op=" HS_SQL(HS_J_CREATE)
				  " AND (flags & " HS_SQL(HS_JF_STAGED) ") LIMIT 1";
	return hs_meta_exists(c, sql, (int64_t)ino);
}

/* True if @ino has a row that blocks coalescing: one being sent, one the
 * host refused, or a hard link made from it. */
static int has_blocker(struct hs_cache *c, uint64_t ino)
{
	static const char sql[] = "SELECT 1 FROM journal WHERE ino=? AND"
				  " (state<>" HS_SQL(HS_JS_PENDING)
				  " OR op=" HS_SQL(HS_J_LINK) ") LIMIT 1";
	return hs_meta_exists(c, sql, (int64_t)ino);
}

/* Runs @sql (one statement, @ino its parameter); *ret_n: rows it changed. */
static int run_for(struct hs_cache *c, const char *sql, uint64_t ino, int *ret_n)
{
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int r;

	*ret_n = 0;
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, (int64_t)ino);
	r = hs_meta_step(c, st);
	if (r == 0)
		*ret_n = sqlite3_changes(c->db);
	return r;
}

int hs_journal_unlinked(struct hs_cache *c, uint64_t ino, int *ret_dropped)
{
	/* what replaced another name must still remove it from the host, and
	 * so must a row sent before (STARTED): its answer may have been lost
	 * after the host made the name */
	static const char del[] = "DELETE FROM journal WHERE ino=?"
				  " AND state=" HS_SQL(HS_JS_PENDING);
	int r, n, m;

	*ret_dropped = 0;
	r = hs_journal_has_pending_create(c, ino);
	if (r <= 0)
		return r;
	r = has_blocker(c, ino);
	if (r != 0)
		return r < 0 ? r : 0;
	r = forget_started(c, ino);
	if (r < 0)
		return r;
	r = run_for(c, sql_convert_to_unlink, ino, &n);
	if (r == 0)
		r = run_for(c, del, ino, &m);
	if (r < 0)
		return r;
	r = add_local(c, ino, -(n + m));
	hs_jgen_bump(c, ino);
	*ret_dropped = 1;
	return r;
}

int hs_journal_drop_data(struct hs_cache *c, uint64_t ino, int *ret_n)
{
	/* the data changes of a file on the host that the guest deleted are
	 * of no use to anyone: the removal follows them.  Only a send that
	 * began changing the host copy (SENDING) must finish first, or the
	 * removal's version check would take that half-sent copy for
	 * someone else's edit and keep it. */
	static const char del[] =
		"DELETE FROM journal WHERE ino=? AND state=" HS_SQL(HS_JS_PENDING)
		" AND op=" HS_SQL(HS_J_DATA) " AND (flags & " HS_SQL(HS_JF_SENDING) ")=0";
	int r = run_for(c, del, ino, ret_n);

	return r == 0 && *ret_n ? add_local(c, ino, -*ret_n) : r;
}

int hs_journal_needs_data(struct hs_cache *c, uint64_t ino)
{
	static const char sql[] = "SELECT 1 FROM journal WHERE ino=? AND"
		" op IN (" HS_SQL(HS_J_CREATE) "," HS_SQL(HS_J_DATA) ") LIMIT 1";
	return hs_meta_exists(c, sql, (int64_t)ino);
}

int hs_journal_renamed(struct hs_cache *c, uint64_t ino, const char *to,
		       int replaced, int *ret_folded)
{
	/* a CREATE that had replaced a name, or was sent before (its answer
	 * may have been lost after the host made the name), leaves the
	 * removal of that name in its place; so does a RENAME of it left
	 * from a rename made while the CREATE was being sent (the CREATE
	 * could not move then; now it moves past the RENAME, which would
	 * find no source) */
	static const char get[] = "SELECT op, path2, mode FROM journal WHERE ino=?"
				  " AND state=" HS_SQL(HS_JS_PENDING)
				  " AND op IN (" HS_SQL(HS_J_CREATE) ","
				  HS_SQL(HS_J_SYMLINK) ") ORDER BY seq LIMIT 1";
	static const char del[] = "DELETE FROM journal WHERE ino=?"
				  " AND state=" HS_SQL(HS_JS_PENDING)
				  " AND op IN (" HS_SQL(HS_J_CREATE) ","
				  HS_SQL(HS_J_DATA) "," HS_SQL(HS_J_SETATTR) ","
				  HS_SQL(HS_J_RENAME) "," HS_SQL(HS_J_SYMLINK) ")";
	struct hs_jentry e;
	sqlite3_stmt *st;
	int r, rc, n;

	*ret_folded = 0;
	r = has_blocker(c, ino);
	if (r != 0)
		return r < 0 ? r : 0;
	st = hs_meta_prepare(c, get);
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, (int64_t)ino);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return rc == SQLITE_DONE ? 0 : hs_meta_errno(c, rc);
	}
	memset(&e, 0, sizeof(e));
	e.op = sqlite3_column_int(st, 0);
	e.path2 = sqlite3_column_text(st, 1) ?
			  strdup((const char *)sqlite3_column_text(st, 1)) : NULL;
	e.attr.mode = (uint32_t)sqlite3_column_int64(st, 2);
	sqlite3_reset(st);
	e.ino = ino;
	e.path = strdup(to);
	if (!e.path) {
		hs_jentry_release(&e);
		return -ENOMEM;
	}
	e.flags = replaced ? HS_JF_REPLACED : 0;
	r = forget_started(c, ino);
	if (r < 0) {
		hs_jentry_release(&e);
		return r;
	}
	st = hs_meta_prepare(c, sql_convert_to_unlink);
	if (!st) {
		hs_jentry_release(&e);
		return -EIO;
	}
	sqlite3_bind_int64(st, 1, (int64_t)ino);
	r = hs_meta_step(c, st);
	n = sqlite3_changes(c->db);
	st = hs_meta_prepare(c, del);
	if (!st) {
		hs_jentry_release(&e);
		return -EIO;
	}
	sqlite3_bind_int64(st, 1, (int64_t)ino);
	if (r == 0)
		r = hs_meta_step(c, st);
	n += sqlite3_changes(c->db);
	if (r == 0)
		r = add_local(c, ino, -n);
	if (r == 0)
		r = hs_journal_append(c, &e);
	hs_jentry_release(&e);
	hs_jgen_bump(c, ino);
	if (r == 0)
		*ret_folded = 1;
	return r;
}

int hs_journal_next(struct hs_cache *c, int64_t after, struct hs_jentry *ret)
{
	static const char sql[] =
		"SELECT seq, op, state, flags, ino, path, path2, valid, mode, uid,"
		" gid, size, atime, mtime, created FROM journal"
		" WHERE seq>? AND state<>" HS_SQL(HS_JS_FAILED) " ORDER BY seq LIMIT 1";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	const unsigned char *s;
	int64_t age;
	int rc;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, after);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return rc == SQLITE_DONE ? -ENOENT : hs_meta_errno(c, rc);
	}
	memset(ret, 0, sizeof(*ret));
	ret->seq = sqlite3_column_int64(st, 0);
	ret->op = sqlite3_column_int(st, 1);
	ret->state = sqlite3_column_int(st, 2);
	ret->flags = (unsigned)sqlite3_column_int(st, 3);
	ret->ino = (uint64_t)sqlite3_column_int64(st, 4);
	s = sqlite3_column_text(st, 5);
	ret->path = s ? strdup((const char *)s) : NULL;
	s = sqlite3_column_text(st, 6);
	ret->path2 = s ? strdup((const char *)s) : NULL;
	ret->attr.valid = (uint32_t)sqlite3_column_int64(st, 7);
	ret->attr.mode = (uint32_t)sqlite3_column_int64(st, 8);
	ret->attr.uid = (uint32_t)sqlite3_column_int64(st, 9);
	ret->attr.gid = (uint32_t)sqlite3_column_int64(st, 10);
	ret->attr.size = (uint64_t)sqlite3_column_int64(st, 11);
	ret->attr.atime_ns = sqlite3_column_int64(st, 12);
	ret->attr.mtime_ns = sqlite3_column_int64(st, 13);
	/* its age on the monotonic clock (a wall clock that went back
	 * makes it new, not older than it is) */
	age = hs_wall_ns() - sqlite3_column_int64(st, 14);
	ret->created_ns = hs_now_ns() - HS_MAX(age, 0);
	sqlite3_reset(st);
	return 0;
}

int hs_journal_set_state(struct hs_cache *c, int64_t seq, int state,
			 const char *error)
{
	static const char sql[] = "UPDATE journal SET state=?, error=? WHERE seq=?";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);

	if (!st)
		return -EIO;
	sqlite3_bind_int(st, 1, state);
	if (error)
		sqlite3_bind_text(st, 2, error, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 2);
	sqlite3_bind_int64(st, 3, seq);
	hs_jgen_bump_all(c);
	return hs_meta_step(c, st);
}

int hs_journal_done(struct hs_cache *c, const struct hs_jentry *e)
{
	static const char sql[] = "DELETE FROM journal WHERE seq=?";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int r;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, e->seq);
	r = hs_meta_step(c, st);
	if (r == 0 && sqlite3_changes(c->db) > 0)
		r = add_local(c, e->ino, -1);
	hs_jgen_bump(c, e->ino);
	return r;
}

int hs_journal_staged(struct hs_cache *c, int64_t seq)
{
	static const char sql[] = "UPDATE journal SET state=" HS_SQL(HS_JS_PENDING) ","
				  " flags=flags | " HS_SQL(HS_JF_STAGED) " WHERE seq=?";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, seq);
	hs_jgen_bump_all(c);
	return hs_meta_step(c, st);
}

int hs_journal_counts(struct hs_cache *c, uint64_t *ret_pending,
		      uint64_t *ret_bytes, uint64_t *ret_failed)
{
	static const char sql[] =
		"SELECT (SELECT count(*) FROM journal WHERE state<>" HS_SQL(HS_JS_FAILED) "),"
		" (SELECT count(*) FROM journal WHERE state=" HS_SQL(HS_JS_FAILED) "),"
		" (SELECT coalesce(sum(i.size),0) FROM inode i WHERE i.ino IN"
		"  (SELECT ino FROM journal WHERE op IN (" HS_SQL(HS_J_CREATE) "," HS_SQL(HS_J_DATA) ")"
		"   AND state<>" HS_SQL(HS_JS_FAILED) "))";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int rc;

	if (!st)
		return -EIO;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return hs_meta_errno(c, rc);
	}
	*ret_pending = (uint64_t)sqlite3_column_int64(st, 0);
	*ret_failed = (uint64_t)sqlite3_column_int64(st, 1);
	*ret_bytes = (uint64_t)sqlite3_column_int64(st, 2);
	sqlite3_reset(st);
	return 0;
}

int hs_journal_claim(struct hs_cache *c, struct hs_jentry *e)
{
	static const char sql[] = "UPDATE journal SET state=" HS_SQL(HS_JS_RUNNING) ","
				  " flags=flags | " HS_SQL(HS_JF_STARTED)
				  " WHERE seq=? AND state=" HS_SQL(HS_JS_PENDING);
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int64_t seq = e->seq;
	int r;

	if (!st)
		return -EIO;
	/* coalescing may have rewritten the row since it was read; read
	 * before the update, STARTED says whether an earlier claim sent it */
	hs_jentry_release(e);
	r = hs_journal_next(c, seq - 1, e);
	if (r < 0)
		return r;
	if (e->seq != seq || e->state != HS_JS_PENDING)
		return -ESTALE;
	sqlite3_bind_int64(st, 1, seq);
	r = hs_meta_step(c, st);
	if (r < 0)
		return r;
	if (sqlite3_changes(c->db) == 0)
		return -ESTALE;
	e->state = HS_JS_RUNNING;
	hs_jgen_bump(c, e->ino);
	return 0;
}

int hs_journal_busy(struct hs_cache *c, uint64_t *ret_failed)
{
	static const char any[] = "SELECT EXISTS(SELECT 1 FROM journal"
				  " WHERE state<>" HS_SQL(HS_JS_FAILED) ")";
	static const char failed[] = "SELECT count(*) FROM journal"
				     " WHERE state=" HS_SQL(HS_JS_FAILED);
	sqlite3_stmt *st = hs_meta_prepare(c, any);
	int busy = 0, rc;

	if (!st)
		return -EIO;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		busy = sqlite3_column_int(st, 0);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW)
		return hs_meta_errno(c, rc);
	*ret_failed = 0;
	if (!busy && (st = hs_meta_prepare(c, failed))) {
		if (sqlite3_step(st) == SQLITE_ROW)
			*ret_failed = (uint64_t)sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
	}
	return busy;
}

/* The age of a row appended at wall-clock time @created, in ms (a wall
 * clock that went back makes it new, not negative). */
static int64_t age_ms(int64_t created, int64_t now)
{
	return HS_MAX(now - created, 0) / HS_NSEC_PER_MSEC;
}

int64_t hs_journal_oldest_ms(struct hs_cache *c)
{
	static const char sql[] = "SELECT min(created) FROM journal"
				  " WHERE state<>" HS_SQL(HS_JS_FAILED);
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int64_t age = -1;

	if (!st)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW &&
	    sqlite3_column_type(st, 0) != SQLITE_NULL)
		age = age_ms(sqlite3_column_int64(st, 0), hs_wall_ns());
	sqlite3_reset(st);
	return age;
}

int hs_journal_info(sqlite3 *db, struct hs_cache_journal_info *ret,
		    char *err, size_t errlen)
{
	/* "created" is wall-clock time (the row may outlive a reboot); a
	 * row of an earlier mount has a seq at or below the mount_seq that
	 * hs_meta_open() recorded when the latest mount began */
	static const char facts_sql[] =
		"SELECT coalesce(sum(state<>" HS_SQL(HS_JS_FAILED) "), 0),"
		" coalesce(sum(state=" HS_SQL(HS_JS_FAILED) "), 0),"
		" min(CASE WHEN state<>" HS_SQL(HS_JS_FAILED) " THEN created END),"
		" coalesce(sum(state<>" HS_SQL(HS_JS_FAILED) " AND seq <="
		"  coalesce((SELECT value FROM meta WHERE key='mount_seq'), 0)), 0)"
		" FROM journal";
	static const char refused_sql[] =
		"SELECT coalesce(path, ''), coalesce(error, '') FROM journal"
		" WHERE state=" HS_SQL(HS_JS_FAILED) " ORDER BY seq DESC LIMIT 3";
	sqlite3_stmt *st = NULL;
	size_t n;
	int rc;

	memset(ret, 0, sizeof(*ret));
	ret->oldest_age_ms = -1;
	rc = sqlite3_prepare_v2(db, facts_sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return -EIO;
	}
	ret->pending_ops = (uint64_t)sqlite3_column_int64(st, 0);
	ret->failed_ops = (uint64_t)sqlite3_column_int64(st, 1);
	if (sqlite3_column_type(st, 2) != SQLITE_NULL)
		ret->oldest_age_ms = age_ms(sqlite3_column_int64(st, 2),
					    hs_wall_ns());
	ret->earlier_mount_ops = (uint64_t)sqlite3_column_int64(st, 3);
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(db, refused_sql, -1, &st, NULL) != SQLITE_OK)
		return 0; /* the counts stand without the names */
	while (sqlite3_step(st) == SQLITE_ROW) {
		n = strlen(ret->refused);
		snprintf(ret->refused + n, sizeof(ret->refused) - n,
			 "%s'%.150s': %.150s", n ? "; " : "",
			 (const char *)sqlite3_column_text(st, 0),
			 (const char *)sqlite3_column_text(st, 1));
	}
	sqlite3_finalize(st);
	return 0;
}

/* True if a block of @dirty lies in a hole of cache file @fd: its data was
 * never written to the cache disk (lost with the page cache in a crash). */
static int dirty_in_hole(int fd, const struct hs_bitmap *dirty, uint64_t size)
{
	uint64_t nb = (size + HS_BLOCK - 1) / HS_BLOCK, b = 0, e;
	off_t data;

	while (b < nb) {
		b = hs_bitmap_next_set(dirty, b, nb);
		if (b == HS_BITMAP_NONE)
			break;
		e = hs_bitmap_next_clear(dirty, b, nb);
		if (e == HS_BITMAP_NONE)
			e = nb;
		for (; b < e; b++) {
			data = lseek(fd, (off_t)(b * HS_BLOCK), SEEK_DATA);
			if (data < 0)
				return errno == ENXIO; /* only a hole up to the end */
			if ((uint64_t)data >= (b + 1) * HS_BLOCK &&
			    b * HS_BLOCK < size)
				return 1;
			/* skip the data run */
			data = lseek(fd, (off_t)(b * HS_BLOCK), SEEK_HOLE);
			if (data < 0)
				return 0;
			if ((uint64_t)data / HS_BLOCK > b + 1)
				b = HS_MIN((uint64_t)data / HS_BLOCK, e) - 1;
		}
	}
	return 0;
}

int hs_journal_check_data(struct hs_cache *c)
{
	static const char sql[] =
		"SELECT j.seq, j.ino, coalesce(j.path, i.hpath), i.size FROM journal j"
		" JOIN inode i ON i.ino=j.ino"
		" WHERE j.op IN (" HS_SQL(HS_J_CREATE) "," HS_SQL(HS_J_DATA) ")"
		" AND j.state=" HS_SQL(HS_JS_PENDING)
		/* a file gone from the guest sends no data (send_create(),
		 * send_data()): its cache file may be gone with it */
		" AND i.nlink > 0";
	struct { int64_t seq; uint64_t ino, size; char *path; } *v = NULL;
	size_t n = 0, cap = 0, k;
	sqlite3_stmt *st;
	int r = 0;

	pthread_mutex_lock(&c->db_lock);
	st = hs_meta_prepare(c, sql);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		if (n == cap) {
			void *nv;

			cap = cap ? cap * 2 : 64;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			v = nv;
		}
		v[n].seq = sqlite3_column_int64(st, 0);
		v[n].ino = (uint64_t)sqlite3_column_int64(st, 1);
		v[n].path = sqlite3_column_text(st, 2) ?
			    strdup((const char *)sqlite3_column_text(st, 2)) : NULL;
		v[n].size = (uint64_t)sqlite3_column_int64(st, 3);
		n++;
	}
	if (st)
		sqlite3_reset(st);
	for (k = 0; r == 0 && k < n; k++) {
		struct hs_bitmap present, dirty;
		int64_t trunc;
		char *p = hs_file_data_path(c, v[k].ino);
		int fd = p ? open(p, O_RDONLY | O_CLOEXEC) : -1, lost;

		hs_bitmap_init(&present);
		hs_bitmap_init(&dirty);
		lost = hs_meta_load_maps(c, v[k].ino, &present, &dirty, &trunc) == 0 &&
		       !hs_bitmap_empty(&dirty) &&
		       (fd < 0 ? errno == ENOENT : dirty_in_hole(fd, &dirty, v[k].size));
		if (lost) {
			hs_warn("'%s': its data was lost in a crash before it reached "
				"the cache disk (it had not been fsync'd); it is not "
				"sent to the host", v[k].path ? v[k].path : "?");
			r = hs_journal_set_state(c, v[k].seq, HS_JS_FAILED,
						 "data lost in a crash (not fsync'd)");
		}
		if (fd >= 0)
			close(fd);
		free(p);
		hs_bitmap_release(&present);
		hs_bitmap_release(&dirty);
	}
	if (r == 0)
		r = hs_meta_flush(c);
	pthread_mutex_unlock(&c->db_lock);
	for (k = 0; k < n; k++)
		free(v[k].path);
	free(v);
	return r;
}
