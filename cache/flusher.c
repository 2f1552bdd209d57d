/* SPDX-License-Identifier: MIT
 * cache/flusher.c - the thread that replays the journal to the host.
 *
 * It takes the oldest live journal row, waits until the change is
 * writeback_delay old (files: since their last write; a file still open for
 * writing waits until closed or 30 s old), sends it on the flush connection
 * and deletes the row in the same transaction that records the effect on
 * the host (the inode's host path and host version).  Order is strict: a row
 * is only sent once every older row is on the host or refused.
 *
 * How each row is sent:
 *   CREATE   the blocks the guest wrote to "<dir>/.hs-tmp.<name>.<random>",
 *            then size, mode and times, then a rename over the final name:
 *            the host never holds a partly written file under a name the
 *            guest gave it.
 *   DATA     a snapshot of the dirty blocks (DIRTY->WRITING) as runs of
 *            whole 4 KiB blocks (the last one cut at end of file), preceded
 *            by a truncate to the smallest size seen since the last send
 *            (unless the runs overwrite all it would cut) and by a setattr
 *            of the final size, and followed by one setattr of size and
 *            times.  A send cut short leaves the host copy at one of two
 *            sizes, noted on the row before it starts: see send_data().
 *   Either way a file's blocks go as pieces of up to CHUNK bytes over every
 *   flush connection at once, each with its own handle (send_blocks()).
 *   others   one transport call each.  Replays are idempotent: a row cut
 *            short by a crash is sent again, and "already done" answers
 *            (mkdir: exists; unlink: no such file) count as success.
 * Each transport call gets its own deadline of op_timeout, so a big upload
 * is never cut for being big, only for stalling.
 *
 * Failures: a link failure puts the row (and the dirty blocks) back and the
 * flusher waits for the link thread to reconnect; a refusal by the host
 * (EACCES, ENOSPC, ...) marks the row FAILED with the reason, logs it once
 * and goes on; the guest keeps its data.
 *
 * Batches: up to HS_FLUSH_POOL_MAX consecutive rows that do not depend
 * on each other (new files and folders, or attribute changes; joins())
 * go up as one batch: all at once on one connection where the wire
 * pipelines, else one per flush connection at a time; their claims and
 * their outcomes are each committed once for the batch (run_batch()).
 * Where the wire makes many changes in order in one exchange (the agent:
 * HS_TR_CAP_SEQ), a batch is up to HS_FLUSH_BATCH_MAX new files and
 * folders, those inside its own new folders too, sent as one exchange by
 * the flusher thread itself (send_seq()).
 *
 * Thread model: one flusher thread per cache, plus helpers kept for
 * batches (pool_main()); none holds a lock while talking to the host.
 */
#include "cache_i.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (4U << 20)
#define OPEN_FILE_MAX_WAIT_NS (30 * HS_NSEC_PER_SEC)
/* A new file written behind while open (staged) is finished under its name
 * at its close, or once it was not written for OPEN_FILE_MAX_WAIT_NS, or
 * at the latest this long after its creation (the rows after it wait). */
#define STAGED_MAX_NS (600 * HS_NSEC_PER_SEC)

static hs_deadline_t call_dl(struct hs_cache *c)
{
	return hs_deadline_in_ms(c->cfg.op_timeout_ms);
}

/* Runs @sql binding (?1 text @a, ?2 int @n); db_lock held. */
static int exec_tn(struct hs_cache *c, const char *sql, const char *a, int64_t n)
{
	sqlite3_stmt *st = hs_meta_prepare(c, sql);

	if (!st)
		return -EIO;
	if (a)
		sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, n);
	return hs_meta_step(c, st);
}

/* @len bytes of a row went to the host (progress and rate in status). */
static void note_sent(struct hs_cache *c, uint64_t len, uint64_t *ret_bytes)
{
	*ret_bytes += len;
	atomic_fetch_add(&c->sent_bytes, len);
	atomic_fetch_add(&c->inflight_sent, len);
	hs_cache_progress(c); /* a writer waiting for room goes on waiting */
}

/* One piece of a file to send: at most CHUNK bytes of one run. */
struct piece {
	uint64_t off, len;
};

/* A file's pieces, sent by the flusher thread and helpers at once. */
struct par_send {
	struct hs_cache *c;
	const char *path;       /* on the host, for the helpers' opens */
	int fd;                 /* the cache file */
	const struct piece *pc;
	size_t n;
	atomic_size_t next;     /* the next piece to take */
	atomic_int err;         /* the first failure */
	atomic_uint_fast64_t bytes;
	struct hs_transport *t; /* the caller's connection (pipelined wires
				 * share it, and its handle) */
	struct hs_tr_file *rf;
};

struct piece_helper_arg {
	struct par_send *p;
	int slot;               /* the helper's flush connection */
};

/* Sends pieces of @p on @t / @rf until none is left or one failed. */
static void send_pieces(struct par_send *p, struct hs_transport *t,
			struct hs_tr_file *rf)
{
	char *buf = malloc(CHUNK);
	size_t k;
	int r = 0;

	if (!buf)
		r = -ENOMEM;
	while (r == 0 && !atomic_load(&p->err) &&
	       (k = atomic_fetch_add(&p->next, 1)) < p->n) {
		uint64_t off = p->pc[k].off, len = p->pc[k].len;
		ssize_t n = pread(p->fd, buf, len, (off_t)off);

		if (n < 0) {
			r = -errno;
			break;
		}
		if ((uint64_t)n < len)
			memset(buf + n, 0, len - (uint64_t)n);
		n = hs_tr_pwrite(t, rf, buf, len, off, call_dl(p->c));
		if (n < 0) {
			r = (int)n;
			break;
		}
		atomic_fetch_add(&p->bytes, len);
		atomic_fetch_add(&p->c->sent_bytes, len);
		atomic_fetch_add(&p->c->inflight_sent, len);
		hs_cache_progress(p->c);
	}
	if (r < 0) {
		int zero = 0;

		atomic_compare_exchange_strong(&p->err, &zero, r);
	}
	free(buf);
}

/* A helper: pieces on a flush connection of its own and a handle of its
 * own, or on the caller's where the wire pipelines. */
static void *piece_helper(void *arg)
{
	struct piece_helper_arg *a = arg;
	struct par_send *p = a->p;
	struct hs_transport *t = p->t;
	struct hs_tr_file *rf = p->rf;
	int r = 0;

	if (!(t->caps & HS_TR_CAP_PIPELINE)) {
		rf = NULL;
		r = hs_link_get(p->c->link, a->slot, 0, HS_DEADLINE_NEVER, &t);
		if (r < 0)
			return NULL; /* the others go on without it */
		r = hs_tr_fopen(t, p->path, O_WRONLY, 0, &rf, call_dl(p->c));
	}
	if (r == 0)
		send_pieces(p, t, rf);
	if (t != p->t) {
		if (rf)
			r = hs_tr_fclose(t, rf, call_dl(p->c));
		if (r < 0) {
			int zero = 0;

			atomic_compare_exchange_strong(&p->err, &zero, r);
		}
		hs_link_put(p->c->link, t, atomic_load(&p->err));
	}
	return NULL;
}

/* Sends the runs of blocks set in @runs (cut at @size) from the cache file
 * to @rf (@path on the host), in calls of up to CHUNK bytes.  A file of
 * many pieces (a big file, many scattered changes) goes over every flush
 * connection at once, each with its own handle (on a pipelining wire, as
 * many calls in flight on @t): one call at a time per connection, each a
 * round trip, was what made a big upload or 4,096 small changes slow. */
static int send_blocks(struct hs_cache *c, struct hs_transport *t,
		       struct hs_tr_file *rf, const char *path, int fd,
		       const struct hs_bitmap *runs, uint64_t size,
		       uint64_t *ret_bytes)
{
	uint64_t nblocks = (size + HS_BLOCK - 1) / HS_BLOCK, b = 0, e;
	int conns = HS_MAX(1, HS_MIN(c->cfg.flush_connections,
				     HS_FLUSH_CONNECTIONS_MAX));
	pthread_t thr[HS_FLUSH_CONNECTIONS_MAX];
	struct piece_helper_arg ha[HS_FLUSH_CONNECTIONS_MAX];
	struct par_send p;
	struct piece *pc = NULL;
	size_t n = 0, cap = 0;
	int k, started = 0, r;

	while (b < nblocks) {
		b = hs_bitmap_next_set(runs, b, nblocks);
		if (b == HS_BITMAP_NONE)
			break;
		e = hs_bitmap_next_clear(runs, b, nblocks);
		if (e == HS_BITMAP_NONE)
			e = nblocks;
		while (b < e) {
			uint64_t off = b * HS_BLOCK;
			uint64_t len = HS_MIN((e - b) * HS_BLOCK, (uint64_t)CHUNK);

			if (off + len > size)
				len = size - off;
			if (n == cap) {
				struct piece *np;

				cap = cap ? 2 * cap : 64;
				np = realloc(pc, cap * sizeof(*pc));
				if (!np) {
					free(pc);
					return -ENOMEM;
				}
				pc = np;
			}
			pc[n++] = (struct piece){ off, len };
			b += (len + HS_BLOCK - 1) / HS_BLOCK;
		}
	}
	memset(&p, 0, sizeof(p));
	p.c = c;
	p.path = path;
	p.fd = fd;
	p.pc = pc;
	p.n = n;
	p.t = t;
	p.rf = rf;
	for (k = 1; k < conns && (size_t)k < n; k++) {
		ha[started] = (struct piece_helper_arg){ &p, HS_SLOT_FLUSH + k };
		if (pthread_create(&thr[started], NULL, piece_helper,
				   &ha[started]))
			break;
		started++;
	}
	send_pieces(&p, t, rf);
	for (k = 0; k < started; k++)
		pthread_join(thr[k], NULL);
	r = atomic_load(&p.err);
	*ret_bytes += atomic_load(&p.bytes);
	free(pc);
	return r;
}

struct snap {
	int64_t seq;            /* the row being sent */
	unsigned rename_flags;  /* HS_RENAME_RESEND when the row is sent again */
	struct hs_file *f;
	uint64_t size;
	int64_t trunc;          /* the cut the send carries (-1: none) */
	int snapped;            /* hs_blocks_snapshot() was taken */
	int64_t mtime, atime;
	uint32_t mode, uid, gid;
	char *hpath;
	uint32_t nlink;
	int64_t host_size, host_mtime; /* the host version the changes are based on */
	int conflict;           /* the host copy had changed: see send_data() */
	char *conflict_copy;    /* the name the guest's version went up as */
	int kept_host;          /* an unlink left a newer host version alone */
	int conflict_gone;      /* ... because the host copy was deleted */
	int host_valid;         /* @host was read after a setattr of times */
	struct hs_attr host;    /* what the host copy is now */
	int staged;             /* create: the host holds what earlier staged
				 * sends sent, under the temporary name */
	int partial;            /* create: a staged send (the file is still
				 * written): no rename, the row stays */
	char *tmp;              /* a partial send's temporary name */
};

/* Write-behind: may @e's file (@f, f->lock held), still open for writing,
 * be sent now?  Once it holds HS_WB_BYTES of unsent data, or any while a
 * writer waits for room (evict.c). */
static int wb_due(struct hs_cache *c, const struct hs_file *f)
{
	return f->writers > 0 && f->blk.ndirty > 0 &&
	       (f->blk.ndirty * HS_BLOCK >= HS_WB_BYTES || hs_cache_pressed(c));
}

/* Is a send of create row @e a staged one (f->lock held): its file is
 * still being written and either was staged before or is due for
 * write-behind. */
static int staged_send(struct hs_cache *c, const struct hs_file *f,
		       const struct hs_jentry *e)
{
	int64_t now = hs_now_ns();

	return e->op == HS_J_CREATE && f->writers > 0 &&
	       ((e->flags & HS_JF_STAGED) || wb_due(c, f)) &&
	       now - f->last_write_ns < OPEN_FILE_MAX_WAIT_NS &&
	       (!e->created_ns || now - e->created_ns < STAGED_MAX_NS);
}

/* DIRTY -> WRITING for every dirty block (hs_blocks_snapshot()); reads
 * what the send needs.  The send reads s->f->blk.writing without the lock:
 * only the end of the snapshot changes it. */
static int take_snapshot(struct hs_cache *c, const struct hs_jentry *e,
			 struct snap *s)
{
	uint64_t ino = e->ino;
	struct hs_inode x;
	int r;

	memset(s, 0, sizeof(*s));
	s->staged = e->op == HS_J_CREATE && (e->flags & HS_JF_STAGED);
	s->f = hs_file_get(c, ino);
	if (!s->f)
		return -ENOMEM;
	pthread_mutex_lock(&s->f->lock);
	r = hs_file_load(c, s->f);
	if (r == 0)
		r = hs_file_open_fd(c, s->f);
	if (r == 0) {
		s->partial = staged_send(c, s->f, e); /* (before the snapshot
						       * empties the dirty set) */
		s->size = s->f->size;
		/* a staged send takes the first HS_WB_BYTES: the writer
		 * waiting for room gets them back as soon as they land */
		s->trunc = hs_blocks_snapshot_first(
			&s->f->blk, s->size, s->partial ? HS_WB_BYTES / HS_BLOCK : 0);
		s->snapped = 1;
		s->mtime = s->f->mtime;
	}
	pthread_mutex_unlock(&s->f->lock);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_get_inode(c, ino, &x);
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		return r;
	s->atime = x.atime;
	s->mode = x.mode;
	s->uid = x.uid;
	s->gid = x.gid;
	s->nlink = x.nlink;
	s->hpath = x.hpath;
	s->host_size = x.host_size;
	s->host_mtime = x.host_mtime;
	return 0;
}

static void end_snapshot(struct hs_cache *c, struct snap *s, int ok)
{
	struct hs_file *f = s->f;

	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	if (!s->snapped) {
		f->blk.changed = 1; /* (as a send always did) */
	} else if (ok) {
		hs_blocks_sent(&f->blk, f->size);
		hs_cache_acked(c);
	} else {
		hs_blocks_send_failed(&f->blk, f->size, s->trunc);
	}
	hs_file_persist(c, f);
	pthread_mutex_unlock(&f->lock);
	hs_file_put(c, f);
	free(s->hpath);
	free(s->conflict_copy);
	free(s->tmp);
	s->conflict_copy = s->tmp = NULL;
	s->f = NULL;
}

/* A fresh temporary name beside @path.  The random part comes from the
 * kernel: names must not repeat across restarts of the daemon, or a send
 * cut short by a crash would collide with its own leftover. */
/* A new file whose guest owner is not the login user's: ask the host for
 * that owner too.  A host that may not give files away (a non-root login)
 * keeps its owner; that is logged, not a failure of the upload. */
static int send_owner(struct hs_cache *c, struct hs_transport *t,
		      const char *path, const struct snap *s)
{
	struct hs_attr a = { 0 };
	int r;

	a.uid = hs_cache_id_out(c, s->uid, 0);
	a.gid = hs_cache_id_out(c, s->gid, 1);
	if (a.uid == c->remote_uid && a.gid == c->remote_gid)
		return 0;
	a.valid = HS_ATTR_UID | HS_ATTR_GID;
	r = hs_tr_setattr(t, path, &a, call_dl(c));
	if (r == -EPERM || r == -EACCES) {
		hs_info("host kept the owner of '%s': %s", path, strerror(-r));
		r = 0;
	}
	return r;
}

static int set_size(struct hs_cache *c, struct hs_transport *t,
		    const char *path, uint64_t size)
{
	struct hs_attr a = { 0 };

	a.valid = HS_ATTR_SIZE;
	a.size = size;
	return hs_tr_setattr(t, path, &a, call_dl(c));
}

/* Uploads the blocks @runs of the snapshot's file to a temporary name
 * beside @path, sets size, mode, times and owner, and renames it over
 * @path: the host never holds a partly written file under @path.  A
 * staged send (s->partial) stops after the blocks; once staged, the
 * temporary file holds blocks the cache may have evicted, so it is
 * written into, cut to the guest's truncate first, and never removed. */
static int upload_file(struct hs_cache *c, struct hs_transport *t,
		       const char *path, struct snap *s,
		       const struct hs_bitmap *runs, uint64_t *bytes)
{
	struct hs_tr_file *rf = NULL;
	struct hs_attr a = { 0 };
	char *tmp;
	int r;

	tmp = hs_journal_temp_name(c, path, s->seq);
	if (!tmp)
		return -ENOMEM;
	if (s->staged && s->trunc >= 0) {
		r = set_size(c, t, tmp, (uint64_t)s->trunc);
		if (r < 0)
			goto out;
	}
	/* not O_EXCL: what a cut attempt of this row left is overwritten */
	r = hs_tr_fopen(t, tmp, O_WRONLY | O_CREAT | (s->staged ? 0 : O_TRUNC),
			0600, &rf, call_dl(c));
	if (r < 0)
		goto out;
	r = send_blocks(c, t, rf, tmp, s->f->fd, runs, s->size, bytes);
	if (r < 0) {
		hs_tr_fclose(t, rf, call_dl(c));
		goto out_unlink;
	}
	r = hs_tr_fclose(t, rf, call_dl(c));
	if (r < 0)
		goto out_unlink;
	if (s->partial) {
		s->tmp = tmp;
		return 0;
	}
	a.valid = HS_ATTR_MODE | HS_ATTR_ATIME | HS_ATTR_MTIME;
	/* the size only if the file ends in blocks never written (a hole):
	 * otherwise the writes made it, and the host saves a truncate */
	if (s->staged || (s->size && !hs_bitmap_test(runs, (s->size - 1) / HS_BLOCK)))
		a.valid |= HS_ATTR_SIZE;
	a.size = s->size;
	a.mode = s->mode & 07777;
	a.atime_ns = s->atime;
	a.mtime_ns = s->mtime;
	r = hs_tr_setattr(t, tmp, &a, call_dl(c));
	if (r < 0)
		goto out_unlink;
	r = send_owner(c, t, tmp, s);
	if (r < 0)
		goto out_unlink;
	r = hs_tr_rename(t, tmp, path, s->rename_flags, call_dl(c));
	if (r == 0)
		goto out;
out_unlink:
	if (!t->broken && !s->staged)
		hs_tr_unlink(t, tmp, call_dl(c));
out:
	free(tmp);
	return r;
}

/* New files up to this size go in one exchange where the wire offers
 * put_file (the agent): create, data, mode, times and rename at once. */
#define PUT_MAX (1u << 20)

/* The whole snapshot as one buffer in *@ret (blocks the guest never wrote
 * are zeros; free() it).  0 or -errno. */
static int read_whole(const struct snap *s, char **ret)
{
	uint64_t nblocks = (s->size + HS_BLOCK - 1) / HS_BLOCK, b = 0, e;
	char *buf = calloc(1, s->size ? s->size : 1);

	*ret = NULL;
	if (!buf)
		return -ENOMEM;
	while (b < nblocks) {
		uint64_t off, len;
		ssize_t n;

		b = hs_bitmap_next_set(&s->f->blk.writing, b, nblocks);
		if (b == HS_BITMAP_NONE)
			break;
		e = hs_bitmap_next_clear(&s->f->blk.writing, b, nblocks);
		if (e == HS_BITMAP_NONE)
			e = nblocks;
		off = b * HS_BLOCK;
		len = HS_MIN(e * HS_BLOCK, s->size) - off;
		n = pread(s->f->fd, buf + off, len, (off_t)off);
		if (n < 0) {
			int r = -errno;

			free(buf);
			return r;
		}
		b = e;
	}
	*ret = buf;
	return 0;
}

/* The whole snapshot through hs_tr_put_file().  -ENOTSUP: the wire
 * cannot. */
static int put_whole(struct hs_cache *c, struct hs_transport *t,
		     const char *path, struct snap *s, uint64_t *bytes)
{
	char *buf;
	int r = read_whole(s, &buf);

	if (r < 0)
		return r;
	r = hs_tr_put_file(t, path, s->mode & 07777, s->atime, s->mtime, 0, buf,
			   s->size, NULL, call_dl(c));
	if (r == 0) {
		note_sent(c, s->size, bytes);
		r = send_owner(c, t, path, s);
	}
	free(buf);
	return r;
}

static int send_create(struct hs_cache *c, struct hs_transport *t,
		       const struct hs_jentry *e, struct snap *s, uint64_t *bytes)
{
	int r;

	if (s->nlink == 0 && s->staged && !s->partial) {
		/* written behind, then deleted: only its temporary file goes
		 * (its cached data went at its last close) */
		char *tmp = hs_journal_temp_name(c, e->path, s->seq);

		r = tmp ? hs_tr_unlink(t, tmp, call_dl(c)) : -ENOMEM;
		free(tmp);
		return r == -ENOENT ? 0 : r;
	}
	if (s->nlink == 0)
		return 0;
	if (t->ops->put_file && s->size <= PUT_MAX && !s->staged && !s->partial) {
		r = put_whole(c, t, e->path, s, bytes);
		if (r != -ENOTSUP && r != -EFBIG)
			return r;
	}
	/* only what the guest wrote: the rest of a new file is holes, which
	 * the final size leaves as zeros (a 10 GiB sparse file costs nothing) */
	return upload_file(c, t, e->path, s, &s->f->blk.writing, bytes);
}

/* "dir/NAME.conflict-<guest host>-<YYYYmmdd-HHMMSS>[.ext]" for @path. */
static char *conflict_name(const char *path)
{
	const char *slash = strrchr(path, '/'), *base = slash + 1;
	const char *dot = strrchr(base, '.');
	char host[64] = "guest", stamp[32];
	struct tm tm;
	time_t now = time(NULL);
	char *p;

	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = 0;
	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
	if (!dot || dot == base)
		dot = base + strlen(base);
	if (asprintf(&p, "%.*s.conflict-%s-%s%s", (int)(dot - path), path, host,
		     stamp, dot) < 0)
		return NULL;
	return p;
}

/* The host copy changed (or vanished) since the guest's changes began: the
 * host's version stays, the guest's whole version goes up beside it under
 * a conflict name (DESIGN.md: no silent overwrite).  Blocks the guest
 * never had are taken from the host's current copy where it still exists
 * (the version they belonged to is gone). */
static int send_conflict(struct hs_cache *c, struct hs_transport *t,
			 struct snap *s, int host_gone, uint64_t *bytes)
{
	uint64_t nblocks = (s->size + HS_BLOCK - 1) / HS_BLOCK;
	struct hs_bitmap all;
	char *name;
	int r;

	if (!host_gone)
		hs_file_fetch(c, s->f, 0, nblocks, call_dl(c));
	name = conflict_name(s->hpath);
	if (!name)
		return -ENOMEM;
	hs_bitmap_init(&all);
	r = hs_bitmap_set(&all, 0, nblocks);
	if (r == 0)
		r = upload_file(c, t, name, s, &all, bytes);
	hs_bitmap_release(&all);
	if (r == 0)
		hs_warn("conflict: '%s' %s on the host while the guest "
			"changed it; %sthe guest's version is saved as '%s'",
			s->hpath, host_gone ? "was deleted" : "changed",
			host_gone ? "" : "the host's version stays, ", name);
	s->conflict = r == 0;
	s->conflict_gone = host_gone;
	if (r == 0)
		s->conflict_copy = name;
	else
		free(name);
	return r;
}

/* True if the send writes every block of [@from, @to): a truncate to @from
 * would change nothing the send leaves there. */
static int writes_all(const struct snap *s, uint64_t from, uint64_t to)
{
	uint64_t b = from / HS_BLOCK, e = (to + HS_BLOCK - 1) / HS_BLOCK;

	return b >= e || hs_bitmap_next_clear(&s->f->blk.writing, b, e) == HS_BITMAP_NONE;
}

/* True if host copy @h is what an earlier send of DATA row @e left when it
 * was cut short (a link failure, a kill of the daemon): the sizes it noted
 * in mark_sending().  Its times are the host's clock then, which nothing
 * tells apart from a later edit; its size is one of two, pinned before any
 * data went. */
static int left_by_cut_send(const struct hs_jentry *e, const struct hs_attr *h)
{
	if (!(e->flags & HS_JF_SENDING) || !S_ISREG(h->mode))
		return 0;
	return h->size == e->attr.size ||
	       (e->attr.atime_ns >= 0 && h->size == (uint64_t)e->attr.atime_ns);
}

/* Before the send of DATA row @e changes the host copy: notes on the row
 * the sizes the copy may have until the send is done (@trunc after the
 * truncate, -1: none; then @size), committed so that a kill of the daemon
 * keeps them.  With @left, the host copy is what an earlier send of the
 * row left: it becomes the version the guest's changes are based on, so
 * that a send cut short again, before it changed anything, is known too. */
static int mark_sending(struct hs_cache *c, const struct hs_jentry *e,
			uint64_t size, int64_t trunc, const struct hs_attr *left)
{
	static const char row[] =
		"UPDATE journal SET flags=flags|16, size=?, atime=? WHERE seq=?";
	static const char base[] =
		"UPDATE inode SET host_size=?, host_mtime=? WHERE ino=?";
	sqlite3_stmt *st;
	int r;

	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_begin(c);
	if (r == 0 && !(st = hs_meta_prepare(c, row)))
		r = -EIO;
	if (r == 0) {
		sqlite3_bind_int64(st, 1, (int64_t)size);
		sqlite3_bind_int64(st, 2, trunc);
		sqlite3_bind_int64(st, 3, e->seq);
		r = hs_meta_step(c, st);
	}
	if (r == 0 && left && !(st = hs_meta_prepare(c, base)))
		r = -EIO;
	if (r == 0 && left) {
		sqlite3_bind_int64(st, 1, (int64_t)left->size);
		sqlite3_bind_int64(st, 2, left->mtime_ns);
		sqlite3_bind_int64(st, 3, (int64_t)e->ino);
		r = hs_meta_step(c, st);
	}
	if (r == 0)
		r = hs_meta_commit(c);
	else
		hs_meta_rollback(c);
	pthread_mutex_unlock(&c->db_lock);
	return r;
}

static int send_data(struct hs_cache *c, struct hs_transport *t,
		     const struct hs_jentry *e, struct snap *s, uint64_t *bytes)
{
	struct hs_tr_file *rf = NULL;
	struct hs_attr a = { 0 };
	int r;

	if (!s->hpath || s->nlink == 0)
		return 0; /* not on the host (any more): nothing to send */
	if (s->host_size >= 0) {
		const struct hs_attr *left = NULL;
		uint64_t cur;
		int64_t trunc = -1;

		/* the changes are based on a host version: is it still there? */
		r = hs_tr_lstat(t, s->hpath, &s->host, call_dl(c));
		if (r == -ENOENT)
			return send_conflict(c, t, s, 1, bytes);
		if (r < 0)
			return r;
		if ((int64_t)s->host.size != s->host_size ||
		    s->host.mtime_ns / HS_NSEC_PER_SEC != s->host_mtime / HS_NSEC_PER_SEC) {
			hs_info("'%s' on the host: size %llu, mtime %lld; the guest's "
				"changes are based on size %lld, mtime %lld",
				s->hpath, (unsigned long long)s->host.size,
				(long long)s->host.mtime_ns, (long long)s->host_size,
				(long long)s->host_mtime);
			if (!left_by_cut_send(e, &s->host))
				return send_conflict(c, t, s, 0, bytes);
			/* no one else's change: the send goes on from there */
			hs_info("'%s': finishing a send of it that was cut short",
				s->hpath);
			left = &s->host;
		}
		/* Until the final setattr, the host copy's times are the host's
		 * clock: only its size says what this send did.  So the size
		 * goes first (the truncate, unless the runs overwrite all it
		 * would cut, then the final size), and both are noted before
		 * anything changes on the host. */
		if ((e->flags & HS_JF_SENDING) && e->attr.atime_ns >= 0 &&
		    (s->trunc < 0 || e->attr.atime_ns < s->trunc))
			s->trunc = e->attr.atime_ns; /* (the file's own note of
						      * it may be lost in a kill) */
		cur = s->host.size;
		if (s->trunc >= 0 && (uint64_t)s->trunc < cur &&
		    !writes_all(s, (uint64_t)s->trunc, HS_MIN(cur, s->size)))
			trunc = s->trunc;
		r = mark_sending(c, e, s->size, trunc, left);
		if (r < 0)
			return r;
		if (trunc >= 0) {
			r = set_size(c, t, s->hpath, (uint64_t)trunc);
			if (r < 0)
				return r;
			cur = (uint64_t)trunc;
		}
		if (cur != s->size) {
			r = set_size(c, t, s->hpath, s->size);
			if (r < 0)
				return r;
		}
	} else if (s->trunc >= 0) {
		r = set_size(c, t, s->hpath, (uint64_t)s->trunc);
		if (r < 0)
			return r;
	}
	if (!hs_bitmap_empty(&s->f->blk.writing)) {
		r = hs_tr_fopen(t, s->hpath, O_WRONLY, 0, &rf, call_dl(c));
		if (r < 0)
			return r;
		r = send_blocks(c, t, rf, s->hpath, s->f->fd, &s->f->blk.writing,
				s->size, bytes);
		if (r < 0) {
			hs_tr_fclose(t, rf, call_dl(c));
			return r;
		}
		r = hs_tr_fclose(t, rf, call_dl(c));
		if (r < 0)
			return r;
	}
	a.valid = HS_ATTR_SIZE | HS_ATTR_ATIME | HS_ATTR_MTIME;
	a.size = s->size;
	a.atime_ns = s->atime;
	a.mtime_ns = s->mtime;
	return hs_tr_setattr(t, s->hpath, &a, call_dl(c));
}

static int send_setattr(struct hs_cache *c, struct hs_transport *t,
			const struct hs_jentry *e, struct snap *s)
{
	struct hs_attr a = e->attr;
	struct hs_inode x;
	int r;

	if (a.valid & (HS_ATTR_ATIME | HS_ATTR_MTIME)) {
		/* times go as a pair, as the guest has them now */
		pthread_mutex_lock(&c->db_lock);
		r = hs_meta_get_inode(c, e->ino, &x);
		pthread_mutex_unlock(&c->db_lock);
		if (r < 0)
			return r == -ENOENT ? 0 : r;
		a.atime_ns = x.atime;
		a.mtime_ns = x.mtime;
		hs_inode_release(&x);
		if (S_ISREG(x.mode)) {
			struct stat st = { 0 };

			hs_file_overlay(c, e->ino, &st);
			if (st.st_mtim.tv_sec || st.st_mtim.tv_nsec)
				a.mtime_ns = st.st_mtim.tv_sec * HS_NSEC_PER_SEC +
					     st.st_mtim.tv_nsec;
		}
		a.valid |= HS_ATTR_ATIME | HS_ATTR_MTIME;
	}
	r = hs_tr_setattr(t, e->path, &a, call_dl(c));
	if (r == 0 && (a.valid & HS_ATTR_MTIME) &&
	    hs_tr_lstat(t, e->path, &s->host, call_dl(c)) == 0)
		s->host_valid = 1; /* the new host version, for record() */
	return r == -ENOENT ? 0 : r;
}

/* Non-zero when the guest holds no name of @ino any more.  A file created
 * and linked, whose every name is then removed, is not uploaded (see
 * send_create()): its LINK row then finds no source on the host. */
static int guest_gone(struct hs_cache *c, uint64_t ino)
{
	struct hs_inode x;
	int gone, r;

	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_get_inode(c, ino, &x);
	if (r < 0) {
		gone = r == -ENOENT;
	} else {
		gone = x.nlink == 0;
		hs_inode_release(&x);
	}
	pthread_mutex_unlock(&c->db_lock);
	return gone;
}

/* The outcome of a mkdir of @path that answered @r: a folder that is
 * there already is one made before (a replay). */
static int mkdir_done(struct hs_cache *c, struct hs_transport *t,
		      const char *path, int r)
{
	struct hs_attr a;

	if (r == -EEXIST && hs_tr_lstat(t, path, &a, call_dl(c)) == 0 &&
	    S_ISDIR(a.mode))
		r = 0;
	return r;
}

/* A row an earlier claim sent (a link failure or a crash cut it) may have
 * left a rename half done: its renames say so (transport.h). */
static unsigned resend_flag(const struct hs_jentry *e)
{
	return (e->flags & HS_JF_STARTED) ? HS_RENAME_RESEND : 0;
}

static int send_simple(struct hs_cache *c, struct hs_transport *t,
		       const struct hs_jentry *e, struct snap *s)
{
	struct hs_attr a;
	char buf[4096];
	int r;

	switch (e->op) {
	case HS_J_MKDIR:
		r = hs_tr_mkdir(t, e->path, e->attr.mode & 07777, call_dl(c));
		return mkdir_done(c, t, e->path, r);
	case HS_J_SYMLINK:
		if (e->flags & HS_JF_REPLACED) {
			/* replaces a name: make it aside, rename it over */
			char *tmp = hs_journal_temp_name(c, e->path, e->seq);

			if (!tmp)
				return -ENOMEM;
			r = hs_tr_symlink(t, e->path2, tmp, call_dl(c));
			if (r == 0) {
				r = hs_tr_rename(t, tmp, e->path, resend_flag(e),
						 call_dl(c));
				if (r < 0 && !t->broken)
					hs_tr_unlink(t, tmp, call_dl(c));
			}
			free(tmp);
			return r;
		}
		r = hs_tr_symlink(t, e->path2, e->path, call_dl(c));
		if (r == -EEXIST &&
		    hs_tr_readlink(t, e->path, buf, sizeof(buf), call_dl(c)) >= 0 &&
		    !strcmp(buf, e->path2))
			r = 0;
		return r;
	case HS_J_UNLINK:
		if (e->flags & HS_JF_VERSIONED) {
			/* the host changed it since the guest saw it: the
			 * edit stays (DESIGN.md: no silent overwrite) */
			r = hs_tr_lstat(t, e->path, &a, call_dl(c));
			if (r == -ENOENT)
				return 0;
			if (r < 0)
				return r;
			if (S_ISREG(a.mode) &&
			    (a.size != e->attr.size ||
			     a.mtime_ns / HS_NSEC_PER_SEC !=
			     e->attr.mtime_ns / HS_NSEC_PER_SEC)) {
				hs_warn("conflict: '%s' changed on the host while "
					"the guest deleted it; the host's version stays",
					e->path);
				s->kept_host = 1;
				return 0;
			}
		}
		r = hs_tr_unlink(t, e->path, call_dl(c));
		return r == -ENOENT ? 0 : r;
	case HS_J_RMDIR:
		r = hs_tr_rmdir(t, e->path, call_dl(c));
		return r == -ENOENT ? 0 : r;
	case HS_J_RENAME:
		r = hs_tr_rename(t, e->path, e->path2,
				 ((e->flags & HS_JF_NOREPLACE) ? HS_RENAME_NOREPLACE : 0) |
				 resend_flag(e), call_dl(c));
		if (r == -ENOENT && guest_gone(c, e->ino)) {
			/* the file never reached the host (its upload was
			 * skipped: the guest deleted it meanwhile) or went
			 * there and then away (a crash after the rename):
			 * either way only what the rename replaced must go,
			 * and later rows set what the guest has there now */
			r = 0;
			if (e->flags & HS_JF_REPLACED) {
				r = hs_tr_unlink(t, e->path2, call_dl(c));
				if (r == -EISDIR || r == -EPERM)
					r = hs_tr_rmdir(t, e->path2, call_dl(c));
				if (r == -ENOENT)
					r = 0;
			}
		} else if (r == -ENOENT &&
			   hs_tr_lstat(t, e->path2, &a, call_dl(c)) == 0) {
			r = 0; /* done before a crash */
		}
		return r;
	case HS_J_LINK:
		r = hs_tr_link(t, e->path, e->path2, call_dl(c));
		if (r == -ENOENT && guest_gone(c, e->ino))
			r = 0; /* never sent: every guest name went meanwhile */
		return r == -EEXIST ? 0 : r;
	case HS_J_SETATTR:
		return send_setattr(c, t, e, s);
	}
	return -EINVAL;
}

/* Updates the host version of @ino to @size/@mtime; db_lock held. */
static int set_version(struct hs_cache *c, uint64_t ino, uint64_t size,
		       int64_t mtime)
{
	static const char sql[] =
		"UPDATE inode SET host_size=?, host_mtime=?, checked_at=? WHERE ino=?";
	/* a delete the guest made after this change was queued deletes what
	 * the change put there, not an edit of someone else's */
	static const char unlink_sql[] =
		"UPDATE journal SET size=?, mtime=? WHERE ino=? AND op=5 AND"
		" (flags & 4) AND state=0";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int r;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, (int64_t)size);
	sqlite3_bind_int64(st, 2, mtime);
	sqlite3_bind_int64(st, 3, hs_now_ns());
	sqlite3_bind_int64(st, 4, (int64_t)ino);
	r = hs_meta_step(c, st);
	if (r == 0 && !(st = hs_meta_prepare(c, unlink_sql)))
		r = -EIO;
	if (r == 0) {
		sqlite3_bind_int64(st, 1, (int64_t)size);
		sqlite3_bind_int64(st, 2, mtime);
		sqlite3_bind_int64(st, 3, (int64_t)ino);
		r = hs_meta_step(c, st);
	}
	return r;
}

/* Records on success what the host now holds: 0 or -errno (the caller
 * rolls back and sends the row again); db_lock held, in a transaction. */
static int record(struct hs_cache *c, const struct hs_jentry *e,
		  const struct snap *s)
{
	static const char clear[] = "UPDATE inode SET hpath=NULL WHERE hpath=?1 AND ?2=?2";
	static const char clear_below[] =
		"UPDATE inode SET hpath=NULL WHERE hpath >= ?1 || '/' AND hpath < ?1 || '0' AND ?2=?2";
	static const char listed[] = "UPDATE inode SET listed=1, listed_at=?2 WHERE hpath=?1";
	int r = 0;

	switch (e->op) {
	case HS_J_MKDIR:
		r = hs_meta_set_hpath(c, e->ino, e->path);
		if (r == 0)
			r = exec_tn(c, listed, e->path, hs_now_ns());
		break;
	case HS_J_SYMLINK:
		r = hs_meta_set_hpath(c, e->ino, e->path);
		break;
	case HS_J_CREATE:
		if (s->partial) {
			/* on the host under its temporary name for now: fetches
			 * of what the cache evicts read it from there */
			r = hs_meta_set_hpath(c, e->ino, s->tmp);
			if (r == 0)
				r = set_version(c, e->ino, s->size, 0);
			break;
		}
		r = hs_meta_set_hpath(c, e->ino, s->nlink ? e->path : NULL);
		__attribute__((fallthrough));
	case HS_J_DATA:
		if (r == 0 && s->f && !s->conflict)
			r = set_version(c, e->ino, s->size, s->mtime);
		break;
	case HS_J_SETATTR:
		/* new times are a new host version the guest's own changes
		 * are based on (not a change by someone else) */
		if (s->host_valid)
			r = set_version(c, e->ino, s->host.size, s->host.mtime_ns);
		break;
	case HS_J_UNLINK:
		r = exec_tn(c, clear, e->path, 0);
		break;
	case HS_J_RMDIR:
		r = exec_tn(c, clear, e->path, 0);
		if (r == 0)
			r = exec_tn(c, clear_below, e->path, 0);
		break;
	case HS_J_RENAME:
		r = exec_tn(c, clear, e->path2, 0);
		if (r == 0)
			r = exec_tn(c, clear_below, e->path2, 0);
		if (r == 0)
			r = hs_meta_move_hpaths(c, e->path, e->path2);
		break;
	}
	return r;
}

/* A burst of changes (a tree copy, a checkout, a build) goes up after it:
 * a row also waits for a pause of QUIET_NS (at most writeback_delay) in
 * the guest's changes, but never longer than BURST_FACTOR times
 * writeback_delay after it was made.  The guest's requests then do not
 * compete with the uploads for the CPU and the database while it works
 * (on a small machine that slows both down far more than it overlaps),
 * and a flush --wait sends everything at once anyway. */
#define QUIET_NS (200 * HS_NSEC_PER_MSEC)
#define BURST_FACTOR 10

/* When @e may be sent, monotonic ns (0: now); *@hold (may be NULL): not
 * even a forced flush sends it before then (a staged file still being
 * written, with nothing new to send). */
static int64_t ready_at(struct hs_cache *c, const struct hs_jentry *e, int *hold)
{
	int64_t delay = (int64_t)c->cfg.writeback_delay_ms * HS_NSEC_PER_MSEC;
	int64_t at = e->created_ns ? e->created_ns + delay : 0;
	int64_t quiet = HS_MIN(delay, QUIET_NS);
	struct hs_file *f;
	unsigned b;

	if (hold)
		*hold = 0;
	if (quiet > 0 && e->created_ns)
		at = HS_MAX(at, HS_MIN(atomic_load(&c->last_change_ns) + quiet,
				       e->created_ns + BURST_FACTOR * delay));
	if (e->op != HS_J_CREATE && e->op != HS_J_DATA)
		return at;
	b = (unsigned)(e->ino % HS_ARRAY_SIZE(c->files));
	pthread_mutex_lock(&c->files_lock);
	for (f = c->files[b]; f; f = f->next)
		if (f->ino == e->ino)
			break;
	if (f) {
		pthread_mutex_lock(&f->lock);
		if (f->last_write_ns)
			at = HS_MAX(at, f->last_write_ns + delay);
		if (wb_due(c, f)) {
			at = 0; /* write-behind: while it is written */
		} else if ((e->flags & HS_JF_STAGED) && staged_send(c, f, e)) {
			/* finished at its close (which wakes us) */
			at = HS_MIN(f->last_write_ns + OPEN_FILE_MAX_WAIT_NS,
				    e->created_ns + STAGED_MAX_NS);
			if (hold)
				*hold = 1;
		} else if (f->writers > 0 && e->created_ns &&
			   hs_now_ns() - e->created_ns < OPEN_FILE_MAX_WAIT_NS) {
			at = HS_MAX(at, HS_MIN(e->created_ns + OPEN_FILE_MAX_WAIT_NS,
					       hs_now_ns() + HS_NSEC_PER_SEC));
		}
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&c->files_lock);
	return at;
}

static void wait_until(struct hs_cache *c, int64_t at)
{
	struct timespec ts;
	int open;

	/* ... and keeps the cache below cache_size when idle */
	if (c->cfg.cache_size)
		hs_cache_trim(c);
	/* the flusher also closes groups of changes nobody closed */
	pthread_mutex_lock(&c->db_lock);
	hs_meta_flush_if_old(c);
	open = c->txn_open;
	pthread_mutex_unlock(&c->db_lock);
	if (open)
		at = HS_MIN(at, hs_now_ns() + 25 * HS_NSEC_PER_MSEC);
	ts = hs_deadline_ts(at);

	pthread_mutex_lock(&c->flush_lock);
	if (!c->stop && !(c->force && at > hs_now_ns() + HS_NSEC_PER_SEC / 2))
		pthread_cond_clockwait(&c->flush_cond, &c->flush_lock,
				       CLOCK_MONOTONIC, &ts);
	pthread_mutex_unlock(&c->flush_lock);
}

static int stopping(struct hs_cache *c)
{
	int s;

	pthread_mutex_lock(&c->flush_lock);
	s = c->stop;
	pthread_mutex_unlock(&c->flush_lock);
	return s;
}

/* After a conflict: the guest's file becomes the host's current version
 * (its own version was saved beside it). */
static void adopt_host_version(struct hs_cache *c, uint64_t ino,
			       const struct hs_attr *h)
{
	static const char sql[] =
		"UPDATE inode SET size=?1, mtime=?2, ctime=?2, host_size=?1,"
		" host_mtime=?2, dver=dver+1, hpath=CASE WHEN ?3 THEN hpath ELSE NULL END,"
		" nlink=CASE WHEN ?3 THEN nlink ELSE 0 END WHERE ino=?4";
	sqlite3_stmt *st;
	int exists = h->mode != 0;

	pthread_mutex_lock(&c->db_lock);
	st = hs_meta_prepare(c, sql);
	if (st) {
		sqlite3_bind_int64(st, 1, (int64_t)h->size);
		sqlite3_bind_int64(st, 2, h->mtime_ns);
		sqlite3_bind_int(st, 3, exists);
		sqlite3_bind_int64(st, 4, (int64_t)ino);
		hs_meta_step(c, st);
	}
	if (!exists) {
		/* deleted on the host: the name goes in the guest too */
		static const char del[] = "DELETE FROM dentry WHERE ino=?";

		if ((st = hs_meta_prepare(c, del))) {
			sqlite3_bind_int64(st, 1, (int64_t)ino);
			hs_meta_step(c, st);
		}
		hs_dir_changed(c, 0);
	}
	hs_meta_flush(c);
	pthread_mutex_unlock(&c->db_lock);
	if (exists)
		hs_file_invalidate(c, ino);
}

/* Adds a conflict to the list `hostsharectl conflicts` shows; db_lock held,
 * in the transaction that records the row. */
static int note_conflict(struct hs_cache *c, const char *path,
			 const char *copy, const char *reason)
{
	static const char sql[] =
		"INSERT INTO conflict(at, path, copy, reason) VALUES(?,?,?,?)";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, hs_wall_ns());
	sqlite3_bind_text(st, 2, path ? path : "?", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, copy, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC);
	return hs_meta_step(c, st);
}

/* Makes the listing of the folder holding host path @path stale, so a
 * name the host kept comes back in the guest at the next look. */
static int relist_parent(struct hs_cache *c, const char *path)
{
	static const char sql[] = "UPDATE inode SET listed_at=0 WHERE hpath=?1"
				  " AND listed_at>0 AND ?2=?2";
	const char *slash = strrchr(path, '/');
	char *dir = !slash || slash == path ? strdup("/") :
					     strndup(path, (size_t)(slash - path));
	int r;

	if (!dir)
		return -ENOMEM;
	r = exec_tn(c, sql, dir, 0);
	free(dir);
	return r;
}

/* One row being sent: claimed and recorded by the flusher thread (for a
 * whole batch in one transaction each), sent by send_job(). */
struct flush_job {
	struct hs_cache *c;
	struct hs_transport *t; /* lent by the link for this row */
	struct hs_jentry e;
	struct snap s;
	int mark;               /* hs_dir_host_begin() */
	int r;
	int broken;             /* the connection broke during the send */
	int link_failed;        /* r means the link, not the host, failed */
	int skipped;            /* the row changed before it was claimed */
	uint64_t bytes;
};

/* Claims @j's row; db_lock held, inside a transaction. */
static void claim_job(struct flush_job *j)
{
	struct hs_cache *c = j->c;
	struct hs_jentry *e = &j->e;

	j->mark = -1;
	if (hs_journal_claim(c, e) < 0) {
		/* changed by the guest since it was read: look again */
		j->skipped = 1;
		return;
	}
	j->mark = hs_dir_host_begin(c, e->path,
				    e->op == HS_J_SYMLINK ? NULL : e->path2);
}

static void set_current(struct hs_cache *c, const char *path)
{
	pthread_mutex_lock(&c->flush_lock);
	snprintf(c->current, sizeof(c->current), "%s", path ? path : "");
	pthread_mutex_unlock(&c->flush_lock);
}

/* Sends @j's claimed row on its connection, sets j->r; no lock held. */
static void send_row(struct flush_job *j)
{
	struct hs_cache *c = j->c;
	struct hs_transport *t = j->t;
	struct hs_jentry *e = &j->e;
	struct snap *s = &j->s;
	int r;

	set_current(c, e->path);
	if (e->op == HS_J_CREATE || e->op == HS_J_DATA) {
		r = take_snapshot(c, e, s);
		s->seq = e->seq;
		s->rename_flags = resend_flag(e);
		if (r == 0 && s->hpath && !e->path)
			set_current(c, s->hpath);
		if (r == 0 && s->hpath && e->op == HS_J_DATA) {
			pthread_mutex_lock(&c->db_lock);
			hs_dir_host_end(c, j->mark);
			j->mark = hs_dir_host_begin(c, s->hpath, NULL);
			pthread_mutex_unlock(&c->db_lock);
		}
		if (r == 0)
			r = e->op == HS_J_CREATE ? send_create(c, t, e, s, &j->bytes) :
						   send_data(c, t, e, s, &j->bytes);
		if (r == -ENOENT && e->op == HS_J_DATA)
			r = 0; /* the host lost it; its listing will tell */
	} else {
		r = send_simple(c, t, e, s);
	}
	j->r = r;
}

/* Gives @j's connection back after its send. */
static void put_conn(struct flush_job *j)
{
	/* read before the connection goes back: it may be closed then */
	j->broken = j->t->broken;
	hs_link_put(j->c->link, j->t, j->r);
	j->t = NULL;
}

static void send_job(struct flush_job *j)
{
	send_row(j);
	put_conn(j);
}

/* Records the outcome of @j's send; db_lock held.  What the host now holds
 * joins the open transaction, which the caller commits. */
static void record_job(struct flush_job *j)
{
	struct hs_cache *c = j->c;
	struct hs_jentry *e = &j->e;
	struct snap *s = &j->s;
	int r = j->r;

	hs_dir_host_end(c, j->mark);
	if (r == 0) {
		int rr = hs_meta_begin(c);

		if (rr == 0)
			rr = record(c, e, s);
		if (rr == 0 && s->conflict)
			rr = note_conflict(c, s->hpath, s->conflict_copy,
					   s->conflict_gone ?
					   "deleted on the host while changed in the guest" :
					   "changed on both sides");
		if (rr == 0 && s->kept_host)
			rr = note_conflict(c, e->path, NULL,
					   "changed on the host while deleted in the guest");
		if (rr == 0 && s->kept_host)
			rr = relist_parent(c, e->path);
		if (rr == 0)
			rr = s->partial ? hs_journal_staged(c, e->seq) :
					  hs_journal_done(c, e);
		if (rr == 0)
			rr = hs_meta_commit_deferred(c);
		if (rr < 0) {
			/* the host has it but the cache could not note it
			 * (cache disk full?): send it again later */
			hs_meta_rollback(c);
			hs_journal_set_state(c, e->seq, HS_JS_PENDING, NULL);
			hs_warn("cannot record the %s of '%s' in the cache "
				"database: %s (it will be sent again)",
				hs_jop_name(e->op), e->path ? e->path : "?",
				strerror(-rr));
			r = rr;
			j->link_failed = 1; /* retried with backoff */
		}
	} else if (hs_tr_err_is_link(r) || j->broken) {
		hs_journal_set_state(c, e->seq, HS_JS_PENDING, NULL);
		j->link_failed = 1;
	} else {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", strerror(-r));
		hs_journal_set_state(c, e->seq, HS_JS_FAILED, msg);
		hs_warn("host refused %s of '%s': %s (kept in the cache)",
			hs_jop_name(e->op), e->path ? e->path : s->hpath ? s->hpath : "?",
			msg);
	}
	/* even a failed send may have changed the host (an answer lost) */
	hs_dir_host_changed(c, e->op == HS_J_DATA || !e->path ? s->hpath : e->path);
	if (e->path2 && e->op != HS_J_SYMLINK)
		hs_dir_host_changed(c, e->path2);
	j->r = r;
}

/* After the batch is committed; no lock held. */
static void finish_job(struct flush_job *j)
{
	struct snap *s = &j->s;
	int ok = j->r == 0;

	if (j->skipped)
		return;
	end_snapshot(j->c, s, ok);
	if (ok && s->conflict)
		adopt_host_version(j->c, j->e.ino, &s->host);
}

/* The flusher works in the background: the guest's own work (FUSE
 * requests) comes first when the CPU is short. */
static void lower_priority(void)
{
	setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
}

/* Takes the next job of the batch to send, or NULL; pool_lock held. */
static struct flush_job *pool_take(struct hs_cache *c)
{
	if (c->pool_busy >= c->pool_par)
		return NULL;
	while (c->pool_next < c->pool_n) {
		struct flush_job *j = &c->pool_jobs[c->pool_next++];

		if (!j->skipped)
			return j;
	}
	return NULL;
}

/* Sends @j; pool_lock held, dropped meanwhile. */
static void pool_run(struct hs_cache *c, struct flush_job *j)
{
	c->pool_busy++;
	pthread_mutex_unlock(&c->pool_lock);
	send_job(j);
	pthread_mutex_lock(&c->pool_lock);
	c->pool_busy--;
	c->pool_left--;
	pthread_cond_broadcast(&c->pool_done);
	if (c->pool_next < c->pool_n)
		pthread_cond_broadcast(&c->pool_cond);
}

/* A helper of the flusher: sends jobs of the current batch. */
static void *pool_main(void *arg)
{
	struct hs_cache *c = arg;
	struct flush_job *j;

	lower_priority();
	pthread_mutex_lock(&c->pool_lock);
	while (!c->pool_stop) {
		j = pool_take(c);
		if (j)
			pool_run(c, j);
		else
			pthread_cond_wait(&c->pool_cond, &c->pool_lock);
	}
	pthread_mutex_unlock(&c->pool_lock);
	return NULL;
}

/* Sends the @sent claimed jobs of @jobs[0..n), @par at a time: this
 * thread and up to @par-1 helpers (started when first needed, kept for
 * later batches) each take the next one. */
static void send_batch(struct hs_cache *c, struct flush_job *jobs, int n,
		       int sent, int par)
{
	struct flush_job *j;

	pthread_mutex_lock(&c->pool_lock);
	par = HS_MAX(1, HS_MIN(par, sent));
	while (c->pool_nthr < par - 1 &&
	       pthread_create(&c->pool_thr[c->pool_nthr], NULL, pool_main, c) == 0)
		c->pool_nthr++;
	c->pool_jobs = jobs;
	c->pool_n = n;
	c->pool_next = 0;
	c->pool_left = sent;
	c->pool_par = par;
	if (par > 1)
		pthread_cond_broadcast(&c->pool_cond);
	while (c->pool_left > 0) {
		if ((j = pool_take(c)))
			pool_run(c, j);
		else
			pthread_cond_wait(&c->pool_done, &c->pool_lock);
	}
	c->pool_jobs = NULL;
	c->pool_n = c->pool_next = 0;
	pthread_mutex_unlock(&c->pool_lock);
}

/* May row @e join the batch @jobs[0..n)?  The rows of a batch are sent
 * at once, so none may depend on another: new files and folders (none
 * below a folder the batch makes), or attribute changes (a tree copy sets
 * its folders' times after filling them), each of its own path.  All
 * older rows are done, so a batch never overtakes what it depends on. */
static int joins(const struct flush_job *jobs, int n, const struct hs_jentry *e,
		 int seq)
{
	int k;

	if (!e->path || e->state != HS_JS_PENDING || (e->flags & HS_JF_STAGED))
		return 0;
	if (jobs[0].e.op == HS_J_SETATTR ? e->op != HS_J_SETATTR :
	    e->op != HS_J_CREATE && e->op != HS_J_MKDIR)
		return 0;
	for (k = 0; k < n; k++) {
		const char *o = jobs[k].e.path;
		size_t len = strlen(o);

		if (!strcmp(o, e->path))
			return 0;
		/* in order on the host, a folder comes before its contents */
		if (!seq && jobs[k].e.op == HS_J_MKDIR &&
		    !strncmp(o, e->path, len) && e->path[len] == '/')
			return 0;
	}
	return 1;
}

/* Whether a batch may start with @e. */
static int starts_batch(const struct hs_jentry *e)
{
	/* a staged file's rest goes into its temporary file, on its own */
	return e->path && !(e->flags & HS_JF_STAGED) &&
	       (e->op == HS_J_CREATE || e->op == HS_J_MKDIR ||
		e->op == HS_J_SETATTR);
}

/* Extends @jobs[0] with the rows right after it that may join it (see
 * joins()) while they are ready: where the wire pipelines they are all in
 * flight at once on @jobs[0]'s connection; else one per flush connection
 * at a time, in turn.  Returns the number of jobs; *@par: how many to
 * send at once. */
static int gather(struct hs_cache *c, struct flush_job *jobs, int force,
		  int *par)
{
	int pipe = (jobs[0].t->caps & HS_TR_CAP_PIPELINE) != 0;
	int seq = (jobs[0].t->caps & HS_TR_CAP_SEQ) && jobs[0].e.op != HS_J_SETATTR;
	int conns = HS_MAX(1, HS_MIN(c->cfg.flush_connections,
				     HS_FLUSH_CONNECTIONS_MAX));
	int64_t after = jobs[0].e.seq;
	int n = 1;

	while (n < (seq ? HS_FLUSH_BATCH_MAX : HS_FLUSH_POOL_MAX)) {
		struct hs_jentry e;
		int r;

		pthread_mutex_lock(&c->db_lock);
		r = hs_journal_next(c, after, &e);
		pthread_mutex_unlock(&c->db_lock);
		if (r < 0)
			break;
		if (!joins(jobs, n, &e, seq) || hs_file_writing(c, e.ino) ||
		    (!force && ready_at(c, &e, NULL) > hs_now_ns()) ||
		    hs_link_get(c->link, pipe ? HS_SLOT_FLUSH :
				HS_SLOT_FLUSH + n % conns,
				0, HS_DEADLINE_NEVER, &jobs[n].t) < 0) {
			hs_jentry_release(&e);
			break;
		}
		jobs[n].e = e;
		after = e.seq;
		n++;
	}
	*par = seq ? 0 : pipe ? n : HS_MIN(n, conns);
	return n;
}

/* File data in one ordered exchange at most, and the biggest file that
 * goes in one. */
#define SEQ_BYTES (1u << 20)
#define SEQ_FILE_MAX (256u << 10)

/* Makes @j's row one change of an ordered exchange in @o (the data read
 * into *@buf, which the caller frees): 1; 0 when it is done without one
 * (j->r set: a file deleted meanwhile); -1 when it must go on its own (a
 * bigger file, an owner to set, a snapshot that failed: j->r set then). */
static int seq_op(struct flush_job *j, struct hs_tr_op *o, char **buf)
{
	struct hs_cache *c = j->c;
	struct hs_jentry *e = &j->e;
	struct snap *s = &j->s;
	int r;

	*buf = NULL;
	memset(o, 0, sizeof(*o));
	o->path = e->path;
	if (e->op == HS_J_MKDIR) {
		o->kind = HS_TROP_MKDIR;
		o->mode = e->attr.mode & 07777;
		return 1;
	}
	r = take_snapshot(c, e, s);
	s->seq = e->seq;
	if (r < 0) {
		j->r = r;
		return -1;
	}
	if (s->nlink == 0) {
		j->r = 0; /* see send_create() */
		return 0;
	}
	if (s->size > SEQ_FILE_MAX ||
	    hs_cache_id_out(c, s->uid, 0) != c->remote_uid ||
	    hs_cache_id_out(c, s->gid, 1) != c->remote_gid)
		return -1;
	r = read_whole(s, buf);
	if (r < 0) {
		j->r = r;
		return -1;
	}
	o->kind = HS_TROP_PUT;
	o->mode = s->mode & 07777;
	o->atime_ns = s->atime;
	o->mtime_ns = s->mtime;
	o->data = *buf;
	o->len = s->size;
	return 1;
}

/* The rows @idx[0..@m) of @jobs as one ordered exchange on @t. */
static void seq_send(struct hs_cache *c, struct hs_transport *t,
		     struct flush_job *jobs, const int *idx,
		     struct hs_tr_op *ops, int m)
{
	int i, r;

	set_current(c, ops[0].path);
	r = hs_tr_batch(t, ops, m, call_dl(c));
	for (i = 0; i < m; i++) {
		struct flush_job *j = &jobs[idx[i]];

		if (r < 0 && !hs_tr_err_is_link(r) && !t->broken) {
			/* the wire took no batch after all: one by one */
			ops[i].r = ops[i].kind == HS_TROP_MKDIR ?
				hs_tr_mkdir(t, ops[i].path, ops[i].mode, call_dl(c)) :
				hs_tr_put_file(t, ops[i].path, ops[i].mode,
					       ops[i].atime_ns, ops[i].mtime_ns, 0,
					       ops[i].data, ops[i].len, NULL,
					       call_dl(c));
		} else if (r < 0) {
			ops[i].r = r;
		}
		if (ops[i].kind == HS_TROP_MKDIR)
			ops[i].r = mkdir_done(c, t, ops[i].path, ops[i].r);
		else if (ops[i].r == 0)
			note_sent(c, ops[i].len, &j->bytes);
		j->r = ops[i].r;
	}
}

/*
 * A batch where the wire makes changes in order (HS_TR_CAP_SEQ): its rows
 * in their journal order, as few exchanges as SEQ_BYTES allows; a row that
 * cannot be one change of such an exchange goes on its own in its turn,
 * so the host sees every folder before its contents.  No helper thread:
 * the flusher thread waits for one answer per exchange.
 */
static void send_seq(struct hs_cache *c, struct flush_job *jobs, int n)
{
	struct hs_tr_op ops[HS_FLUSH_BATCH_MAX];
	char *bufs[HS_FLUSH_BATCH_MAX];
	int idx[HS_FLUSH_BATCH_MAX];
	struct hs_transport *t = NULL;
	int k = 0, i, m;

	for (i = 0; i < n && !t; i++)
		if (!jobs[i].skipped)
			t = jobs[i].t;
	while (k < n) {
		size_t bytes = 0;
		int alone = -1;

		for (m = 0; k < n && bytes < SEQ_BYTES; k++) {
			struct flush_job *j = &jobs[k];
			int r;

			if (j->skipped)
				continue;
			r = j->t == t ? seq_op(j, &ops[m], &bufs[m]) : -1;
			if (r < 0) {
				alone = k++;
				break;
			}
			if (r > 0) {
				bytes += ops[m].len;
				idx[m++] = k;
			}
		}
		if (m)
			seq_send(c, t, jobs, idx, ops, m);
		for (i = 0; i < m; i++)
			free(bufs[i]);
		if (alone >= 0) {
			struct flush_job *j = &jobs[alone];

			if (j->r == 0 && j->e.op == HS_J_CREATE && j->s.f) {
				set_current(c, j->e.path);
				j->r = send_create(c, j->t, &j->e, &j->s,
						   &j->bytes);
			}
			else if (j->r == 0)
				send_row(j);
		}
	}
	for (k = 0; k < n; k++)
		if (!jobs[k].skipped)
			put_conn(&jobs[k]);
}

/*
 * One batch: the claims of all its rows in one transaction, committed
 * before anything goes to the host (a claimed create may leave its
 * upload on the host, which the journal must know); the sends at once;
 * then the outcomes in one transaction, committed at once: until it is,
 * the cache does not know what the host now holds (a crash in between
 * sends those rows again, which is idempotent).  Two commits a batch,
 * not two a row.
 */
static void run_batch(struct hs_cache *c, struct flush_job *jobs, int n,
		      int par)
{
	int k, r, sent = 0;

	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_begin(c);
	for (k = 0; k < n; k++) {
		if (r == 0)
			claim_job(&jobs[k]);
		else
			jobs[k].skipped = 1;
	}
	if (r == 0 && hs_meta_commit(c) < 0) {
		/* nothing claimed: the rows stay as they were */
		for (k = 0; k < n; k++) {
			hs_dir_host_end(c, jobs[k].mark);
			jobs[k].skipped = 1;
		}
	}
	if (r < 0)
		hs_meta_rollback(c);
	pthread_mutex_unlock(&c->db_lock);
	for (k = 0; k < n; k++) {
		if (jobs[k].skipped && jobs[k].t) {
			hs_link_put(c->link, jobs[k].t, 0);
			jobs[k].t = NULL;
		}
		sent += !jobs[k].skipped;
	}
	if (sent && par == 0)
		send_seq(c, jobs, n);
	else if (sent)
		send_batch(c, jobs, n, sent, par);

	pthread_mutex_lock(&c->db_lock);
	for (k = 0; k < n; k++)
		if (!jobs[k].skipped)
			record_job(&jobs[k]);
	if (sent && hs_meta_flush(c) < 0) {
		/* the outcomes are lost: every row goes again */
		for (k = 0; k < n; k++) {
			if (jobs[k].skipped)
				continue;
			hs_journal_set_state(c, jobs[k].e.seq, HS_JS_PENDING, NULL);
			if (jobs[k].r == 0) {
				jobs[k].r = -EIO;
				jobs[k].link_failed = 1;
			}
		}
	}
	pthread_mutex_unlock(&c->db_lock);
	for (k = 0; k < n; k++)
		finish_job(&jobs[k]);
}

static void *flusher_thread(void *arg)
{
	struct hs_cache *c = arg;
	int64_t backoff = HS_NSEC_PER_SEC / 4;

	lower_priority();
	while (!stopping(c)) {
		struct flush_job jobs[HS_FLUSH_BATCH_MAX];
		int64_t at;
		int r, force, n, k, par = 1, link_failed = 0, hold, progress = 0;

		memset(jobs, 0, sizeof(jobs));
		for (k = 0; k < HS_FLUSH_BATCH_MAX; k++) {
			jobs[k].c = c;
			jobs[k].mark = -1;
		}
		pthread_mutex_lock(&c->db_lock);
		r = hs_journal_next(c, 0, &jobs[0].e);
		pthread_mutex_unlock(&c->db_lock);
		if (r < 0) {
			wait_until(c, hs_now_ns() + HS_NSEC_PER_SEC);
			continue;
		}
		pthread_mutex_lock(&c->flush_lock);
		force = c->force;
		pthread_mutex_unlock(&c->flush_lock);
		/* a writer waiting for room: everything goes now (evict.c) */
		force = force || hs_cache_pressed(c);
		at = ready_at(c, &jobs[0].e, &hold);
		if ((!force || hold) && at > hs_now_ns()) {
			/* newer rows are due later still: only this file's
			 * close or new rows of it wake us before @at */
			pthread_mutex_lock(&c->flush_lock);
			c->flush_wait_ino = jobs[0].e.ino;
			pthread_mutex_unlock(&c->flush_lock);
			hs_jentry_release(&jobs[0].e);
			wait_until(c, at);
			pthread_mutex_lock(&c->flush_lock);
			c->flush_wait_ino = 0;
			pthread_mutex_unlock(&c->flush_lock);
			continue;
		}
		if (hs_link_get(c->link, HS_SLOT_FLUSH, 0, HS_DEADLINE_NEVER,
				&jobs[0].t) < 0) {
			hs_jentry_release(&jobs[0].e);
			wait_until(c, hs_now_ns() + HS_NSEC_PER_SEC);
			continue;
		}
		/* a file still open for writing goes on its own (write-behind) */
		n = starts_batch(&jobs[0].e) && !hs_file_writing(c, jobs[0].e.ino) ?
			    gather(c, jobs, force, &par) : 1;
		run_batch(c, jobs, n, par);

		pthread_mutex_lock(&c->flush_lock);
		for (k = 0; k < n; k++) {
			atomic_fetch_sub(&c->inflight_sent, jobs[k].bytes);
			if (jobs[k].skipped) {
				/* nothing sent */
			} else if (jobs[k].r == 0) {
				c->flushed_ops += !jobs[k].s.partial;
				c->flushed_bytes += jobs[k].bytes;
				progress = 1;
			} else if (jobs[k].link_failed) {
				link_failed = 1;
			} else {
				c->failed_ops++;
			}
			hs_jentry_release(&jobs[k].e);
		}
		c->current[0] = '\0';
		if (!link_failed)
			backoff = HS_NSEC_PER_SEC / 4;
		if (progress)
			hs_cache_progress(c); /* a row done, even one of no data */
		pthread_cond_broadcast(&c->done_cond);
		pthread_mutex_unlock(&c->flush_lock);
		if (link_failed) {
			wait_until(c, hs_now_ns() + backoff);
			backoff = HS_MIN(backoff * 2, 8 * HS_NSEC_PER_SEC);
		}
	}
	return NULL;
}

int hs_flusher_start(struct hs_cache *c)
{
	int r = -pthread_create(&c->flusher, NULL, flusher_thread, c);

	if (r == 0)
		c->flusher_started = 1;
	return r;
}

void hs_flusher_stop(struct hs_cache *c)
{
	int k;

	if (!c->flusher_started)
		return;
	pthread_mutex_lock(&c->flush_lock);
	c->stop = 1;
	pthread_cond_broadcast(&c->flush_cond);
	pthread_mutex_unlock(&c->flush_lock);
	pthread_join(c->flusher, NULL);
	c->flusher_started = 0;
	pthread_mutex_lock(&c->pool_lock);
	c->pool_stop = 1;
	pthread_cond_broadcast(&c->pool_cond);
	pthread_mutex_unlock(&c->pool_lock);
	for (k = 0; k < c->pool_nthr; k++)
		pthread_join(c->pool_thr[k], NULL);
	c->pool_nthr = 0;
	c->pool_stop = 0;
}
