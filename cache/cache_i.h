/* SPDX-License-Identifier: MIT
 * cache/cache_i.h - what the files of cache/ share.  Not for fs/.
 *
 * Lock order (outer first), written once here:
 *     files_lock  ->  hs_file.lock  ->  db_lock  ->  flush_lock
 * (a journal append wakes the flusher under db_lock: hs_journal_wake*()).
 * Leaves, under which no other lock is taken: flush_lock, pool_lock (the
 * flusher's batch pool, dropped while a job is sent), stat_lock (statfs
 * cache and open listings), kver_lock, stream_lock, nq_lock, bg_lock and
 * link->lock.  flush_lock and pool_lock are never held together.
 * No lock is held across transport I/O.
 */
#ifndef HS_CACHE_I_H
#define HS_CACHE_I_H

#include <pthread.h>
#include <semaphore.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <string.h>

#include "bitmap.h"
#include "blocks.h"
#include "cache.h"

#define HS_BLOCK 4096ULL
#define HS_ROOT_INO 1ULL

enum { HS_BG_LIST = 0, HS_BG_REVALIDATE = 1 };
#define HS_BG_MAX 16 /* background refreshes queued or running at once */
#define HS_BG_WORKERS 3 /* threads that run them */

/* True for the names hostshare's own temporary host files have (uploads
 * in progress, replaced files set aside, the doctor's probe, the agent's
 * PUT_FILE): never shown in the guest. */
static inline int hs_internal_name(const char *name)
{
	return !strncmp(name, ".hs-tmp.", 8) || !strncmp(name, ".hs-replaced.", 13) ||
	       !strncmp(name, ".hs-doctor.", 11) || !strncmp(name, ".hs-put-", 8);
}

/* ---- meta.c: the sqlite database ---- */

/* Journal operations, states and flags.  The numbers are stored in the
 * database: never renumber.  They are macros, not enums, so that SQL text
 * spells them by name: "... WHERE state<>" HS_SQL(HS_JS_FAILED) (sqlite
 * reads the "(1 << 3)" of a flag as C does). */
#define HS_SQL_(x) #x
#define HS_SQL(x) HS_SQL_(x)

/* Write-behind: a file open for writing is sent while it is written once
 * it holds this much unsent data (flusher.c). */
#define HS_WB_BYTES (32ULL << 20)

#define HS_J_MKDIR 1   /* path, mode */
#define HS_J_CREATE 2  /* new file: upload whole content to a temp name, rename to path */
#define HS_J_DATA 3    /* dirty blocks (and size, times) of a file on the host */
#define HS_J_SETATTR 4 /* path, valid + fields */
#define HS_J_UNLINK 5  /* path */
#define HS_J_RMDIR 6   /* path */
#define HS_J_RENAME 7  /* path -> path2, flags */
#define HS_J_SYMLINK 8 /* path, path2 = target */
#define HS_J_LINK 9    /* path (existing) -> path2 (new name) */

/* Journal entry states (column "state"). */
#define HS_JS_PENDING 0 /* waiting; may still be coalesced */
#define HS_JS_RUNNING 1 /* being sent by the flusher; never coalesced */
#define HS_JS_FAILED 2  /* the host refused it; kept for the user, skipped */

/* Journal entry flags (column "flags"). */
#define HS_JF_REPLACED (1 << 0)  /* a rename that replaced an existing name */
#define HS_JF_NOREPLACE (1 << 1)
#define HS_JF_VERSIONED (1 << 2) /* unlink: attr.size/mtime_ns are the host
				  * version the guest deleted */
#define HS_JF_STARTED (1 << 3)   /* the row was claimed for sending before
				  * (create: its upload may be on the host,
				  * half done under its temporary name, or
				  * done with the answer lost) */
#define HS_JF_SENDING (1 << 4)   /* data: a send began changing the host copy;
				  * until it is done the copy has size
				  * attr.size, or attr.atime_ns after its
				  * truncate (-1: none) (cache/flusher.c) */
#define HS_JF_STAGED (1 << 5)    /* create: written behind while open; the
				  * host holds the blocks sent so far under
				  * the row's temporary name, which is the
				  * inode's hpath until the row is done (the
				  * row never moves or folds then) */

struct hs_jentry {
	int64_t seq;
	int op, state;
	unsigned flags;
	uint64_t ino;
	char *path, *path2;
	struct hs_attr attr; /* SETATTR: attr.valid selects; MKDIR: attr.mode */
	int64_t created_ns;  /* when appended, on the monotonic clock (stored as wall clock) */
};

/* An inode row. */
struct hs_inode {
	uint64_t ino;
	uint32_t mode, uid, gid, nlink; /* guest-visible ids */
	uint64_t size;
	int64_t atime, mtime, ctime; /* ns */
	char *hpath;                 /* where it is on the host, NULL: not there */
	int64_t host_size, host_mtime; /* host version last seen; -1 unknown */
	int64_t listed_at;           /* dirs: monotonic ns of the last listing; -1: complete forever (new local dir) */
	int64_t checked_at;          /* files: monotonic ns of the last host check */
	int64_t local;               /* journal entries naming this inode */
	uint64_t dver;               /* data version: bumped when the host copy changed */
};

void hs_inode_release(struct hs_inode *i);
void hs_jentry_release(struct hs_jentry *e);

/* ---- link.c: connections to the host ---- */

enum hs_slot {
	HS_SLOT_FETCH = 0, /* lookups, listings, cold reads (FUSE workers) */
	HS_SLOT_FLUSH = 1, /* the flusher; HS_SLOT_FLUSH + k for batches */
	HS_NSLOTS = 1 + HS_FLUSH_CONNECTIONS_MAX,
};

/* Consecutive independent rows (new files and folders, or attribute
 * changes) the flusher takes as one batch (flusher.c): sent all at once
 * where the wire pipelines (HS_TR_CAP_PIPELINE), else one per flush
 * connection at a time: at most HS_FLUSH_POOL_MAX.  Where the wire makes
 * changes in order in one exchange (HS_TR_CAP_SEQ), up to
 * HS_FLUSH_BATCH_MAX new files and folders. */
#define HS_FLUSH_POOL_MAX 16
#define HS_FLUSH_BATCH_MAX 64
struct flush_job;

struct hs_link;

/* @nslots: how many of the slots are used (1 + flush connections). */
/* @retry_min_ms: the wait before dialing again after a failed dial, doubled
 * after each failure up to 30 s (0: 1 s). */
int hs_link_new(hs_dial_fn dial, void *dial_arg, int connect_timeout_ms,
		int retry_min_ms, int keepalive_s, int nslots,
		struct hs_link **ret);
void hs_link_free(struct hs_link *l);
/* Dials @slot now (mount time).  0 or -errno with a line in @err. */
int hs_link_connect(struct hs_link *l, int slot, char *err, size_t errlen);
/* Called with each new connection before it is lent to anyone (on the
 * dialing thread; may make calls on @t until @dl). */
typedef void (*hs_link_connect_fn)(void *arg, int slot, struct hs_transport *t,
				   hs_deadline_t dl);
void hs_link_on_connect(struct hs_link *l, hs_link_connect_fn fn, void *arg);
/* Starts the background reconnect/keepalive thread. */
int hs_link_start(struct hs_link *l, int (*on_ping)(void *arg, struct hs_transport *t), void *arg);
/* A usable connection for @slot.  With @wait, waits for a reconnect until
 * @dl; without, answers -ENOTCONN at once when the slot is down. */
int hs_link_get(struct hs_link *l, int slot, int wait, hs_deadline_t dl,
		struct hs_transport **ret);
/* Returns a connection taken with hs_link_get(); @result is what the last
 * call on it returned (a link-class error schedules a reconnect). */
void hs_link_put(struct hs_link *l, struct hs_transport *t, int result);
/* Someone waits for the host (a flush --wait): dial now rather than at the
 * end of the reconnect backoff (at most every 2 s). */
void hs_link_kick(struct hs_link *l);
enum hs_link_state hs_link_get_state(struct hs_link *l, int64_t *ret_since);
void hs_link_last_error(struct hs_link *l, char *buf, size_t size);
/* Remote login ids (from the first connection); (uint32_t)-1 unknown. */
void hs_link_remote_ids(struct hs_link *l, uint32_t *uid, uint32_t *gid);
unsigned hs_link_caps(struct hs_link *l);
/* Name of the wire ("sftp"), "?" before the first connection. */
const char *hs_link_wire(struct hs_link *l);

/* ---- file.c: in-memory state of a file's data ---- */

/* The block states of a file's data (present/dirty/writing) and every
 * transition between them are cache/blocks.c's (table there). */
struct hs_file {
	uint64_t ino;
	int refs;              /* protected by c->files_lock */
	struct hs_file *next;  /* hash chain, protected by c->files_lock */

	pthread_mutex_t lock;  /* protects everything below */
	int loaded;
	int fd;                /* cache file, -1 until needed */
	struct hs_blocks blk;  /* block states (blocks.c; the only code that
				* changes them) */
	uint64_t size;         /* guest size */
	int64_t mtime, ctime;  /* guest times (ns), newer than the row while attr_dirty */
	int attr_dirty;        /* size/times differ from the row */
	int writers;           /* open handles that may write */
	int64_t last_write_ns; /* monotonic */
	uint64_t jgen;         /* hs_jgen() when jpending was computed */
	int jpending;          /* a PENDING CREATE/DATA entry exists */
	uint64_t dver;         /* data version the bitmaps belong to */
	uint64_t kernel_dver;  /* data version the kernel's page cache holds */
	int fetching;          /* a reader is fetching for this file */
	pthread_cond_t fetched; /* signalled when that fetch ended */
	uint64_t ra_next;      /* readahead: where the last fetch ended */
	uint64_t ra_size;      /* readahead: current window, bytes */
	/* A stream (stream.c): a thread reading the host copy sequentially
	 * ahead of the readers, on one remote handle. */
	int streaming;         /* a stream runs for this file */
	uint64_t st_next;      /* the next block it fetches */
	uint64_t st_until;     /* it fetches while st_next < st_until */
	uint64_t st_gen;       /* bumped when a stream starts */
	int st_err;            /* how the last stream ended: 0 or -errno */
	int64_t st_fail_at;    /* monotonic ns a stream could not start */
	pthread_cond_t st_more; /* a reader moved st_until */
	uint64_t *use;         /* evict.c: use clock per extent of 1 MiB */
	uint64_t nuse;         /* entries in use[] */
};

struct hs_handle {
	struct hs_file *f;
	int flags; /* open(2) flags */
};

/* ---- the cache ---- */

struct hs_cache {
	uint32_t instance; /* random, per cache: part of temporary host names */
	struct hs_cache_config cfg;
	char *dir;        /* cache folder */
	char *datadir;    /* dir/data */
	char *source;
	int lockfd;

	pthread_mutex_t db_lock; /* protects db, the prepared statements and: */
	sqlite3 *db;
	int txn_open;     /* a group-commit transaction is open */
	int in_op;        /* an operation's savepoint is open */
	int64_t txn_start; /* monotonic ns the group began */

	pthread_mutex_t files_lock; /* protects files[] chains and refs */
	struct hs_file *files[1024];
	/* The data version the kernel's page cache holds, remembered past
	 * the last close of a file so the next open keeps that cache
	 * (keep_cache) when nothing changed; a leaf lock guards it. */
	pthread_mutex_t kver_lock;
	struct {
		uint64_t ino, dver;
	} kver[4096];
	/* Folders whose entries the cache changed on its own (a merged
	 * listing, a conflict), so the readdir copy the kernel keeps of them
	 * (cache_readdir) is stale: a version per hash bucket (dirgen_all
	 * counts for every folder), and per bucket the folder and version
	 * the kernel's copy was read at (kver_lock).  Changes the guest made
	 * went through the kernel, which drops its copy itself. */
	atomic_uint_fast32_t dirgen[1024];
	atomic_uint_fast32_t dirgen_all;
	struct {
		uint64_t ino;
		uint32_t gen;
	} kdir[1024];

	struct hs_link *link;
	uint32_t remote_uid, remote_gid;

	/* Bumped whenever a PENDING entry goes away or starts (hs_jgen):
	 * per hash bucket of the entry's inode, or for all at once. */
	atomic_uint_fast64_t jgen;
	atomic_uint_fast64_t jgen_ino[256];
	atomic_uint_fast64_t jgen_total; /* every bump, of any inode */
	atomic_uint_fast64_t hgen;  /* bumped whenever the flusher changed the host */
	/* The host folders the last flushes changed, so a listing taken
	 * before such a change is not merged after it; protected by db_lock. */
	struct {
		uint64_t gen;
		char *dir;
	} hchanges[256];
	/* The host paths of the rows being sent right now (db_lock): the host
	 * may already show such a change while the cache does not record it
	 * yet, so no listing near them is merged meanwhile. */
	struct {
		int used;
		char *path[2];
	} hbusy[HS_FLUSH_BATCH_MAX];

	/* the flusher's helpers for a batch (flusher.c); protected by
	 * pool_lock */
	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;   /* jobs handed out, or stop */
	pthread_cond_t pool_done;   /* a job of the batch finished */
	pthread_t pool_thr[HS_FLUSH_POOL_MAX];
	int pool_nthr;
	struct flush_job *pool_jobs; /* the batch being sent */
	int pool_n, pool_next, pool_left, pool_stop;
	int pool_par, pool_busy;    /* jobs sent at once: at most, now */

	/* flusher; protected by flush_lock */
	pthread_mutex_t flush_lock;
	pthread_cond_t flush_cond;  /* work appended, sync requested, stop */
	pthread_cond_t done_cond;   /* an entry finished */
	pthread_t flusher;
	int flusher_started;
	int stop;
	int force;                  /* sync waiters present: ignore delays */
	uint64_t flush_wait_ino;    /* the flusher sleeps until the row of this
				     * inode is old enough (0: not that) */
	atomic_int_fast64_t last_change_ns; /* monotonic ns of the guest's last
				     * change (a journal row or a write) */
	uint64_t flushed_ops, flushed_bytes, failed_ops;
	char current[512];          /* path of the row being sent, "" idle */
	int64_t rate_at;            /* monotonic ns of the last rate sample */
	uint64_t rate_sent;         /* sent_bytes at that sample */
	double rate;                /* bytes/s, smoothed */
	atomic_uint_fast64_t sent_bytes; /* written to the host, as it goes */
	atomic_uint_fast64_t inflight_sent; /* ... by rows still being sent */
	int64_t busy_seq;           /* entry being sent, 0 none */

	sem_t fetch_sem;            /* bounds FUSE workers waiting on the host */

	/* streams (stream.c); stream_lock is a leaf */
	pthread_mutex_t stream_lock;
	pthread_cond_t stream_cond; /* a stream ended */
	int nstreams, stream_stop;

	atomic_uint_fast64_t added; /* bytes cached since that walk, less
				     * those evicted (mod 2^64) */
	atomic_uint_fast64_t use_clock; /* evict.c: the extents' use clock */
	atomic_int_fast64_t pressed_at; /* a writer waited for room (mono ns) */
	atomic_int_fast64_t progress_at; /* the host last took data (mono ns) */
	atomic_uint_fast64_t unacked; /* evict.c: hs_file_unacked() when */
	atomic_int_fast64_t unacked_at; /* last counted (mono ns) */
	int punch_warned;           /* a hole could not be punched: said once */
	uint64_t cache_bytes;       /* last walk of the data folder, and */
	int64_t cache_bytes_at;     /* when (monotonic ns); see cache_bytes() */

	pthread_mutex_t stat_lock;  /* protects the statfs cache and dirs */
	struct statvfs statfs;
	int have_statfs;
	struct hs_dir *dirs;        /* open directory snapshots */

	/* host change notifications (notify.c); nq_lock is a leaf */
	pthread_mutex_t nq_lock;
	pthread_cond_t nq_cond;     /* queued, or stop */
	struct hs_nev *nq;          /* queued events */
	size_t nq_n, nq_cap;
	int nq_overflow;            /* events were lost */
	int nq_subscribed;          /* a connection subscribed before */
	int nq_stop, nq_started;
	pthread_t nq_thread;
	atomic_int notify_live;     /* the host reports its changes */

	/* refreshes done in the background (bg.c); bg_lock is a leaf */
	pthread_mutex_t bg_lock;
	pthread_cond_t bg_cond;     /* one finished */
	pthread_cond_t bg_work;     /* one was queued, or stop */
	int bg_stop, bg_nworkers;
	pthread_t bg_thread[HS_BG_WORKERS];
	struct {
		uint64_t ino;
		int kind;           /* HS_BG_* */
		int state;          /* free, queued, running */
	} bg[HS_BG_MAX];
};

/* meta.c */
int hs_meta_open(struct hs_cache *c, char *err, size_t errlen);
void hs_meta_close(struct hs_cache *c);
/* Runs @sql (no results) under the caller's db_lock. */
int hs_meta_exec(struct hs_cache *c, const char *sql);
int hs_meta_begin(struct hs_cache *c);
int hs_meta_commit(struct hs_cache *c);
/* For changes to open files: committed by their close or soon after. */
int hs_meta_commit_deferred(struct hs_cache *c);
void hs_meta_rollback(struct hs_cache *c);
/* Commits the open group now / if it is old enough; db_lock held. */
int hs_meta_flush(struct hs_cache *c);
int hs_meta_flush_if_old(struct hs_cache *c);
int hs_meta_errno(struct hs_cache *c, int rc);
int hs_meta_get_inode(struct hs_cache *c, uint64_t ino, struct hs_inode *ret);
int hs_meta_lookup(struct hs_cache *c, uint64_t parent, const char *name,
		   uint64_t *ret_ino);
int hs_meta_put_inode(struct hs_cache *c, const struct hs_inode *i);
int hs_meta_new_inode(struct hs_cache *c, struct hs_inode *i); /* sets i->ino */
int hs_meta_add_dentry(struct hs_cache *c, uint64_t parent, const char *name,
		       uint64_t ino);
int hs_meta_del_dentry(struct hs_cache *c, uint64_t parent, const char *name);
/* Guest path of @ino ("/a/b"), malloc'ed; -ENOENT when unlinked. */
int hs_meta_path(struct hs_cache *c, uint64_t ino, char **ret);
int hs_meta_dir_empty(struct hs_cache *c, uint64_t ino);
/* Inode whose host path is @hpath, 0 if none. */
uint64_t hs_meta_by_hpath(struct hs_cache *c, const char *hpath);
int hs_meta_set_hpath(struct hs_cache *c, uint64_t ino, const char *hpath);
/* Moves host paths @from and everything below it to @to. */
int hs_meta_move_hpaths(struct hs_cache *c, const char *from, const char *to);
int hs_meta_load_maps(struct hs_cache *c, uint64_t ino, struct hs_bitmap *present,
		      struct hs_bitmap *dirty, int64_t *ret_trunc_min);
int hs_meta_save_maps(struct hs_cache *c, uint64_t ino,
		      const struct hs_bitmap *present, const struct hs_bitmap *dirty,
		      int64_t trunc_min);
/* Calls @fn for each file with a pending create or data row whose stored
 * dirty map is not empty, with the number of blocks it marks; 0 or -errno.
 * Caller holds db_lock (and so must not take file locks in @fn). */
int hs_meta_each_dirty(struct hs_cache *c,
		       void (*fn)(void *arg, uint64_t ino, uint64_t blocks),
		       void *arg);
sqlite3_stmt *hs_meta_prepare(struct hs_cache *c, const char *sql);
/* Steps a bound statement that returns nothing (or one row to ignore)
 * and resets it: 0 or -errno. */
int hs_meta_step(struct hs_cache *c, sqlite3_stmt *st);
/* 1 if @sql with ?1 = @id returns a row, 0 if not, or -errno. */
int hs_meta_exists(struct hs_cache *c, const char *sql, int64_t id);
/* Makes every committed change durable against a power cut. */
int hs_meta_sync(struct hs_cache *c);

/* The journal generation of @ino: changes whenever a PENDING entry of
 * @ino (or of any inode) went away or started. */
static inline uint64_t hs_jgen(struct hs_cache *c, uint64_t ino)
{
	return atomic_load(&c->jgen) + atomic_load(&c->jgen_ino[ino % 256]);
}

static inline void hs_jgen_bump(struct hs_cache *c, uint64_t ino)
{
	atomic_fetch_add(&c->jgen_ino[ino % 256], 1);
	atomic_fetch_add(&c->jgen_total, 1);
}

static inline void hs_jgen_bump_all(struct hs_cache *c)
{
	atomic_fetch_add(&c->jgen, 1);
	atomic_fetch_add(&c->jgen_total, 1);
}

/* journal.c (caller holds db_lock, inside a transaction) */
int hs_journal_append(struct hs_cache *c, const struct hs_jentry *e);
/* True when a PENDING CREATE or DATA entry exists for @ino. */
int hs_journal_has_data(struct hs_cache *c, uint64_t ino);
int hs_journal_has_pending_create(struct hs_cache *c, uint64_t ino);
/* Coalescing, see journal.c. */
int hs_journal_unlinked(struct hs_cache *c, uint64_t ino, int *ret_dropped);
/* The guest deleted the last name of @ino, a file on the host: drops its
 * pending data rows (not one whose send began changing the host copy);
 * *ret_n says how many went.  db_lock held, in a transaction. */
int hs_journal_drop_data(struct hs_cache *c, uint64_t ino, int *ret_n);
/* 1 if a row still needs the cached data of @ino (a create or a data row,
 * in any state), 0 if not, -errno.  db_lock held. */
int hs_journal_needs_data(struct hs_cache *c, uint64_t ino);
int hs_journal_renamed(struct hs_cache *c, uint64_t ino, const char *to,
		       int replaced, int *ret_folded);
int hs_journal_next(struct hs_cache *c, int64_t after, struct hs_jentry *ret);
int hs_journal_set_state(struct hs_cache *c, int64_t seq, int state, const char *error);
/* PENDING -> RUNNING for the flusher, re-reading the row; -ESTALE if it was
 * coalesced away or started since @e was read.  In @e, HS_JF_STARTED then
 * says whether an earlier claim sent it (this send is a replay). */
int hs_journal_claim(struct hs_cache *c, struct hs_jentry *e);
int hs_journal_done(struct hs_cache *c, const struct hs_jentry *e);
/* A staged send of @seq's CREATE is on the host: the row is PENDING again,
 * STAGED (db_lock held, in a transaction). */
int hs_journal_staged(struct hs_cache *c, int64_t seq);
/* True if @ino's create was written behind (its hpath is the temporary
 * name): deleting it drops the row, as for a file not on the host, and
 * leaves the removal of that name (hs_journal_unlinked()); db_lock held. */
int hs_journal_has_staged(struct hs_cache *c, uint64_t ino);
const char *hs_jop_name(int op); /* "create", "write", ... */
/* At open: rows whose dirty blocks are holes in their cache file (the data
 * never reached the cache disk before a power cut) are marked refused
 * instead of sending zeros under the file's name. */
int hs_journal_check_data(struct hs_cache *c);
/* The host name a row @seq uploads @path under before renaming it into
 * place: the same for every attempt of the row, so a retry overwrites
 * what a cut attempt left. */
char *hs_journal_temp_name(struct hs_cache *c, const char *path, int64_t seq);
int hs_journal_counts(struct hs_cache *c, uint64_t *ret_pending,
		      uint64_t *ret_bytes, uint64_t *ret_failed);
void hs_journal_wake(struct hs_cache *c);
/* A row of @ino was appended, or a file @ino was closed: wakes the flusher
 * unless it sleeps until an older row of another file is due (which
 * neither changes). */
void hs_journal_wake_for(struct hs_cache *c, uint64_t ino);
/* 1 while rows wait to be sent (cheap), else 0 with the refused count. */
int hs_journal_busy(struct hs_cache *c, uint64_t *ret_failed);
/* The facts of struct hs_cache_journal_info from database @db, which is
 * the cache's own (db_lock held) or one opened read-only by the doctor:
 * statements prepared for this call only.  0, or -EIO with the message in
 * @err. */
int hs_journal_info(sqlite3 *db, struct hs_cache_journal_info *ret,
		    char *err, size_t errlen);
/* The journal rows of database @db oldest first, as hs_cache_pending()
 * gives them (cache/doctor.c; statements prepared for this call only).
 * 0, @fn's non-zero return, or -EIO with the message in @err. */
int hs_journal_pending(sqlite3 *db, hs_pending_fn fn, void *arg, char *err,
		       size_t errlen);
/* Age of the oldest pending entry in ms, -1 when none; db_lock held. */
int64_t hs_journal_oldest_ms(struct hs_cache *c);

/* file.c */
struct hs_file *hs_file_get(struct hs_cache *c, uint64_t ino);
void hs_file_put(struct hs_cache *c, struct hs_file *f);
/* Deletes inode @ino (row and data) if it is unlinked and unused. */
void hs_file_reclaim(struct hs_cache *c, uint64_t ino);
/* Loads @f from the database if needed; caller holds f->lock. */
int hs_file_load(struct hs_cache *c, struct hs_file *f);
int hs_file_open_fd(struct hs_cache *c, struct hs_file *f);
/* Persists size/times/bitmaps if changed; caller holds f->lock. */
int hs_file_persist(struct hs_cache *c, struct hs_file *f);
/* Drops cached data of @ino (host copy changed); caller holds nothing. */
int hs_file_invalidate(struct hs_cache *c, uint64_t ino);
/* Notes a data change (journal entry if needed); caller holds f->lock. */
int hs_file_note_dirty(struct hs_cache *c, struct hs_file *f);
int hs_file_truncate(struct hs_cache *c, struct hs_file *f, uint64_t size);
char *hs_file_data_path(struct hs_cache *c, uint64_t ino);
void hs_file_remove_data(struct hs_cache *c, uint64_t ino);
/* Drops the clean cached data of @ino (it is read from the host again when
 * needed); -EBUSY while it holds changes not on the host yet. */
int hs_file_evict(struct hs_cache *c, uint64_t ino, uint64_t *ret_bytes);
/* Bytes of the guest's changes not acknowledged by the host yet: the
 * DIRTY and WRITING blocks of loaded files and the stored dirty maps of
 * the others (evict.c asks under pressure).  Caller holds nothing. */
uint64_t hs_file_unacked(struct hs_cache *c);
/* True while @ino is open for writing; caller holds nothing. */
int hs_file_writing(struct hs_cache *c, uint64_t ino);
/* True if @ino is loaded (open, or being read or sent). */
int hs_file_is_open(struct hs_cache *c, uint64_t ino);
/* If @ino is loaded, overlays its in-memory size/times on @st. */
void hs_file_overlay(struct hs_cache *c, uint64_t ino, struct stat *st);
/* Fetches blocks [first, last) from the host into the cache file. */
int hs_file_fetch(struct hs_cache *c, struct hs_file *f, uint64_t first,
		  uint64_t last, hs_deadline_t dl);
/* Writes the host bytes @buf of blocks [first, last) into the blocks of
 * that range still ABSENT, if the data version is still @dver (else
 * nothing); caller holds f->lock. */
int hs_file_land(struct hs_cache *c, struct hs_file *f, uint64_t dver,
		 const char *buf, uint64_t first, uint64_t last);

/* A refresh the cache could do without (the listing or attributes it
 * holds would do) waits at most a quarter of op_timeout (>= 1 s): on a
 * stalled link the first such refresh gives up soon and breaks the
 * connection, and later ones do not wait at all. */
static inline hs_deadline_t hs_refresh_deadline(const struct hs_cache *c,
						hs_deadline_t dl)
{
	return HS_MIN(dl, hs_deadline_in_ms(HS_MAX(1000, c->cfg.op_timeout_ms / 4)));
}

/* stream.c: sequential reads of the host copy ahead of the readers */
void hs_stream_init(struct hs_cache *c);
/* Stops the streams and waits for them (each bounded by op_timeout). */
void hs_stream_stop(struct hs_cache *c);
void hs_stream_destroy(struct hs_cache *c);
/* Starts a stream of @f from block @from until @until (no lock held).
 * 0 (also when another reader started one meanwhile), or -EAGAIN when none
 * can start (too many, no host copy, stopping). */
int hs_stream_start(struct hs_cache *c, struct hs_file *f, uint64_t from,
		    uint64_t until);

/* bg.c: refreshes the cache can do without, waited for briefly */
void hs_bg_init(struct hs_cache *c);
void hs_bg_stop(struct hs_cache *c);   /* waits for the running ones */
void hs_bg_destroy(struct hs_cache *c);
/* Runs the refresh of kind @kind of @ino on a thread of its own and waits
 * for it at most a few tens of milliseconds.  No locks held. */
void hs_bg_refresh(struct hs_cache *c, uint64_t ino, int kind);

/* notify.c: the host's change notifications */
struct hs_nev;
void hs_notify_init(struct hs_cache *c);
int hs_notify_start(struct hs_cache *c);
void hs_notify_stop(struct hs_cache *c);
void hs_notify_destroy(struct hs_cache *c);
/* hs_link_connect_fn: subscribes the fetch connection */
void hs_notify_on_connect(void *arg, int slot, struct hs_transport *t,
			  hs_deadline_t dl);
/* hs_tr_notify_fn: queues one event */
void hs_notify_push(void *arg, unsigned kind, const char *path,
		    const char *path2);

/* admin.c */
uint64_t hs_cache_conflict_count(struct hs_cache *c);
/* The free-space floor: bytes the cache leaves free on its disk of @total
 * bytes (min_free=). */
uint64_t hs_cache_min_free(const struct hs_cache *c, uint64_t total);

/* reserve.c: room on the cache disk for the database alone */
/* Gives the reserve back (db_lock held, or before the database opens):
 * 1 if that freed space, else 0. */
int hs_reserve_release(struct hs_cache *c);
/* Before the database opens: gives the reserve back if the disk is full. */
void hs_reserve_check(struct hs_cache *c);
/* Makes the reserve again where the disk has room for it above the floor. */
void hs_reserve_refill(struct hs_cache *c);
/* evict.c: the bounded cache */
/* Extents [first, last) of @f (blocks) were used now; @unread: landed by a
 * fetch, not read yet.  f->lock held. */
void hs_evict_touch(struct hs_cache *c, struct hs_file *f, uint64_t first,
		    uint64_t last, int unread);
/* Makes room for @bytes more cached data within cache_size and the disk's
 * floor, evicting clean data (never @ino's whole file; its clean blocks
 * may go); -ENOSPC when what is left is the guest's changes, or for a
 * @write, when they fill half the room.  No locks. */
int hs_cache_room(struct hs_cache *c, uint64_t ino, uint64_t bytes, int write);
/* A writer that found no room waits a moment for the flusher (and marks
 * the cache pressed); -ENOSPC once the host took nothing for op_timeout
 * since @since (monotonic ns the writer began waiting).  No locks. */
int hs_cache_wait_room(struct hs_cache *c, int64_t since);
/* True while a writer waits for room: the flusher sends at once. */
int hs_cache_pressed(struct hs_cache *c);
/* The host acknowledged data (flusher). */
void hs_cache_progress(struct hs_cache *c);
/* Changes became clean (the end of a send): a writer waiting for room
 * counts them again at once (flusher). */
void hs_cache_acked(struct hs_cache *c);
/* How far ahead of its readers a stream may read: a quarter of the room. */
uint64_t hs_cache_ahead_max(struct hs_cache *c);
/* Evicts clean data while the cache is above cache_size (flusher, idle). */
void hs_cache_trim(struct hs_cache *c);
/* cache.c: bytes the cached data takes (@fresh: walk again if the last
 * walk is older than 0.5 s rather than 5 s) */
uint64_t hs_cache_usage(struct hs_cache *c, int fresh);
/* cache.c: note @bytes newly cached (counted until the next walk) */
void hs_cache_added(struct hs_cache *c, int64_t bytes);
/* cache.c: the next status walks the data folder again */
void hs_cache_forget_usage(struct hs_cache *c);

/* dir.c */
/* The cache changed the entries of folder @dir (0: of any folder) without
 * the kernel seeing it: the kernel's readdir copy of it must go. */
void hs_dir_changed(struct hs_cache *c, uint64_t dir);
/* Records that the flusher changed host folder @dir; db_lock held. */
void hs_dir_host_changed(struct hs_cache *c, const char *path);
/* Marks host paths @p1 and @p2 (either may be NULL) as being changed by a
 * row in flight until hs_dir_host_end(); returns the mark.  db_lock held. */
int hs_dir_host_begin(struct hs_cache *c, const char *p1, const char *p2);
void hs_dir_host_end(struct hs_cache *c, int mark);
/* Makes the listing of @dir fresh.  @need: the caller cannot answer without
 * it (waits for the link until @dl); otherwise only refreshes when the link
 * is up and gives up quietly. */
int hs_dir_refresh(struct hs_cache *c, uint64_t dir, int need, hs_deadline_t dl);
/* The same, always on the caller's thread (bg.c). */
int hs_dir_refresh_now(struct hs_cache *c, uint64_t dir, int need,
		       hs_deadline_t dl);
int hs_cache_revalidate(struct hs_cache *c, uint64_t ino, int *ret_changed,
			hs_deadline_t dl);
/* Lists @dir again now though its listing may be fresh (the host reported
 * a change in it).  *@ret_raced: the flusher kept changing the folder, so
 * the listing was not merged (the folder stays stale: the next lookup
 * lists it). */
int hs_dir_relist(struct hs_cache *c, uint64_t dir, hs_deadline_t dl,
		  int *ret_raced);

/* flusher.c */
int hs_flusher_start(struct hs_cache *c);
void hs_flusher_stop(struct hs_cache *c);

/* cache.c */
void hs_cache_fill_stat(struct hs_cache *c, const struct hs_inode *i, struct stat *st);
void hs_cache_attr_in(struct hs_cache *c, const struct hs_attr *a, struct hs_inode *i);
/* Host id of guest uid (@group 0) or gid (@group 1) @id. */
uint32_t hs_cache_id_out(struct hs_cache *c, uint32_t id, int group);
int64_t hs_cache_deadline_fetch(struct hs_cache *c);

#endif
