/* SPDX-License-Identifier: MIT
 * cache/cache.h - the guest's source of truth, and the only interface fs/
 * uses.  (fs/ never includes transport/transport.h for anything but the
 * connection settings in struct hs_tr_config.)
 *
 * Inode numbers are the cache's own, stable across mounts of the same
 * cache folder; 1 is the root.  Every function returns 0 (or a count where
 * said) or -errno.  -ETIMEDOUT / -ENOTCONN mean "the host was needed and
 * could not be reached in time"; fs/ turns those into EIO.
 *
 * Functions that take a deadline may need the host (a lookup of a name the
 * cache has never seen, a cold read, a listing older than attr_timeout);
 * they answer from the cache when the link is down and the answer is
 * cached, and otherwise give up at @dl.  Functions without a deadline never
 * touch the network.
 *
 * Thread model: every function may be called from any thread at once
 * (FUSE workers, the control socket thread).  Handles (struct hs_handle,
 * struct hs_dir) may be used by several threads, but must not be used after
 * release.
 */
#ifndef HS_CACHE_H
#define HS_CACHE_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include "../common/common.h"
#include "../transport/transport.h" /* struct hs_tr_config only */

struct hs_cache;
struct hs_handle; /* one open file description */
struct hs_dir;    /* one open directory: a snapshot of its entries */

enum hs_fsync_mode {
	HS_FSYNC_LOCAL = 0, /* fsync returns once durable in the guest cache */
	HS_FSYNC_HOST = 1,  /* ... once on the host */
};

/* Opens one connection to the host (default: hs_tr_open() of cfg->tr).
 * Tests pass their own to run the cache over a local folder or a faulty
 * wrapper. */
typedef int (*hs_dial_fn)(void *arg, hs_deadline_t dl,
			  struct hs_transport **ret, char *err, size_t errlen);

#define HS_FLUSH_CONNECTIONS_MAX 8

/* A change made on the host that the cache learned of (the agent's change
 * notifications) and has applied, told in the guest's terms so the owner
 * can update the kernel's caches and inotify watchers.  Strings are
 * borrowed for the call. */
enum hs_host_change_kind {
	HS_HC_CREATED = 1, /* parent/name now names ino */
	HS_HC_REMOVED = 2, /* parent/name no longer names ino */
	HS_HC_CHANGED = 3, /* ino's content or attributes changed */
	HS_HC_MOVED = 4,   /* parent/name moved to newparent/newname */
	HS_HC_ATTRIB = 5,  /* ino's mode, owner or times changed, not its data */
};
struct hs_host_change {
	int kind;
	uint64_t parent;
	const char *name;
	uint64_t ino;
	mode_t mode;         /* type and permission bits of ino */
	uint64_t newparent;  /* MOVED */
	const char *newname; /* MOVED */
	uint64_t replaced;   /* MOVED: what newname named before, 0 none */
};
typedef void (*hs_host_change_fn)(void *arg, const struct hs_host_change *hc);

struct hs_cache_config {
	hs_dial_fn dial;               /* NULL: hs_tr_open(tr, ...) */
	void *dial_arg;
	const char *dir;               /* per-source cache folder (created 0700) */
	const char *source;            /* the SOURCE as the user wrote it */
	const struct hs_tr_config *tr; /* how to reach the host; borrowed for the
					* lifetime of the cache */
	int op_timeout_ms;      /* deadline of an operation that needs the host */
	int attr_timeout_ms;    /* how long host attributes/listings are trusted */
	int writeback_delay_ms; /* age of a change before the flusher sends it */
	int flush_connections;  /* connections the flusher sends new files on
				 * in parallel, 1..HS_FLUSH_CONNECTIONS_MAX
				 * (0: 1) */
	int connect_timeout_ms; /* first connect and each reconnect attempt */
	int retry_min_ms;       /* wait before redialing after a failed dial,
				 * doubling up to 30 s (0: 1 s) */
	uint64_t cache_size;    /* most the cached data may take (0: no limit):
				 * clean data is dropped to stay below it, and
				 * writes fail with ENOSPC when nothing is left
				 * to drop */
	uint64_t min_free;      /* bytes the cache leaves free on its disk, when
				 * min_free_pct is 0 */
	unsigned min_free_pct;  /* ... or this share of the disk, in percent;
				 * both 0: 10 %, at most 2 GiB */
	int allow_offline;      /* start offline when the host is unreachable
				 * and this cache already holds the folder */
	enum hs_fsync_mode fsync_mode;

	/* Ownership as the guest sees it.  With idmap_user, files the host
	 * gives the login user appear owned by local_uid/local_gid.
	 * force_uid/force_gid >= 0 make every file appear owned by them. */
	int idmap_user;
	uint32_t local_uid, local_gid;
	int64_t force_uid, force_gid;

	/* Host changes applied from notifications; called on the cache's
	 * notification thread, which it may block briefly.  NULL: none. */
	hs_host_change_fn on_host_change;
	void *on_host_change_arg;
};

/* Opens the cache folder (creating it and its database), takes its lock
 * (one daemon per cache folder), connects to the host and starts the
 * background threads.  On failure returns -errno and one line for the user
 * in @err ("cache folder '/x' is in use by another hostshare (pid 123)",
 * a transport error, "cache database '/x/meta.db' is corrupt: ..."). */
int hs_cache_open(const struct hs_cache_config *cfg, struct hs_cache **ret,
		  char *err, size_t errlen);

/* Stops the threads and closes everything.  Pending host work stays in the
 * journal for the next mount of the same folder.  Accepts NULL. */
void hs_cache_close(struct hs_cache *c);

/* ---- names and attributes ---- */

/* Finds @name in directory @parent; fills @ret (st_ino is the inode) and
 * takes one lookup reference on it.  -ENOENT, -ENOTDIR, -ENAMETOOLONG. */
int hs_cache_lookup(struct hs_cache *c, uint64_t parent, const char *name,
		    struct stat *ret, hs_deadline_t dl);
/* Takes one more lookup reference on @ino (readdirplus entries). */
void hs_cache_ref(struct hs_cache *c, uint64_t ino);
/* Drops @nlookup lookup references (FUSE forget). */
void hs_cache_forget(struct hs_cache *c, uint64_t ino, uint64_t nlookup);

int hs_cache_getattr(struct hs_cache *c, uint64_t ino, struct stat *ret);

enum hs_setattr_flags {
	HS_SET_MODE = 1 << 0,
	HS_SET_UID = 1 << 1,
	HS_SET_GID = 1 << 2,
	HS_SET_SIZE = 1 << 3,
	HS_SET_ATIME = 1 << 4,
	HS_SET_MTIME = 1 << 5,
	HS_SET_ATIME_NOW = 1 << 6,
	HS_SET_MTIME_NOW = 1 << 7,
	HS_SET_CTIME = 1 << 8,
};
/* Changes what @to_set selects from @attr; @h is the handle for ftruncate
 * (may be NULL).  Fills @ret with the new attributes.  A size change of a
 * file whose data is not cached may need the host (the kept part). */
int hs_cache_setattr(struct hs_cache *c, uint64_t ino, const struct stat *attr,
		     unsigned to_set, struct hs_handle *h, struct stat *ret,
		     hs_deadline_t dl);

/* Target of symlink @ino into @buf, NUL-terminated.  -EINVAL if not a link. */
int hs_cache_readlink(struct hs_cache *c, uint64_t ino, char *buf, size_t size,
		      hs_deadline_t dl);

/* Each of these takes one lookup reference on the new inode (@ret). */
int hs_cache_mknod(struct hs_cache *c, uint64_t parent, const char *name,
		   mode_t mode, dev_t rdev, struct stat *ret, hs_deadline_t dl);
int hs_cache_mkdir(struct hs_cache *c, uint64_t parent, const char *name,
		   mode_t mode, struct stat *ret, hs_deadline_t dl);
int hs_cache_symlink(struct hs_cache *c, uint64_t parent, const char *name,
		     const char *target, struct stat *ret, hs_deadline_t dl);
int hs_cache_link(struct hs_cache *c, uint64_t ino, uint64_t newparent,
		  const char *newname, struct stat *ret, hs_deadline_t dl);

int hs_cache_unlink(struct hs_cache *c, uint64_t parent, const char *name,
		    hs_deadline_t dl);
int hs_cache_rmdir(struct hs_cache *c, uint64_t parent, const char *name,
		   hs_deadline_t dl);

/* @flags: RENAME_NOREPLACE (others: -EINVAL). */
int hs_cache_rename(struct hs_cache *c, uint64_t parent, const char *name,
		    uint64_t newparent, const char *newname, unsigned flags,
		    hs_deadline_t dl);

/* ---- file data ---- */

/* Opens file @ino with open(2) @flags (O_TRUNC honoured).  Close-to-open:
 * if the host copy changed and the guest holds no changes, the cached data
 * is dropped and *ret_keep_cache is 0 (the kernel must drop its pages). */
int hs_cache_open_file(struct hs_cache *c, uint64_t ino, int flags,
		       struct hs_handle **ret_h, int *ret_keep_cache,
		       hs_deadline_t dl);
/* Creates and opens @name (-EEXIST with O_EXCL if it exists). Takes one
 * lookup reference. */
int hs_cache_create(struct hs_cache *c, uint64_t parent, const char *name,
		    mode_t mode, int flags, struct stat *ret,
		    struct hs_handle **ret_h, hs_deadline_t dl);

/* Reads up to @size bytes at @off into @buf; returns the count (short only
 * at end of file).  Missing blocks are fetched from the host. */
ssize_t hs_cache_read(struct hs_cache *c, struct hs_handle *h, void *buf,
		      size_t size, off_t off, hs_deadline_t dl);
/* Writes into the cache and returns @size.  Touches the network only to
 * complete a partly overwritten 4 KiB block of host data that is not cached
 * yet (read-modify-write of at most two blocks, bounded by @dl). */
ssize_t hs_cache_write(struct hs_cache *c, struct hs_handle *h,
		       const void *buf, size_t size, off_t off,
		       hs_deadline_t dl);
/* close(2) of one descriptor: once this returns the data written through
 * @h and its journal entry survive a kill of the daemon. */
int hs_cache_flush(struct hs_cache *c, struct hs_handle *h);
/* fsync(2): durable in the guest cache against a power cut; with
 * fsync=host, also on the host (may then wait until @dl). */
int hs_cache_fsync(struct hs_cache *c, struct hs_handle *h, int datasync,
		   hs_deadline_t dl);
/* Frees @h. */
void hs_cache_release(struct hs_cache *c, struct hs_handle *h);

/* ---- directories ---- */

struct hs_dir_entry {
	const char *name;
	struct stat st; /* st_ino is the inode */
};

/* Opens directory @ino (refreshing its listing as a lookup would).  The
 * entries are read at the first hs_cache_dir_load(), so an open the
 * kernel answers from its own readdir cache costs no snapshot. */
int hs_cache_opendir(struct hs_cache *c, uint64_t ino, struct hs_dir **ret,
		     hs_deadline_t dl);
/* Snapshots the entries ("." and ".." not included) unless done already. */
int hs_cache_dir_load(struct hs_cache *c, struct hs_dir *d);
size_t hs_dir_count(const struct hs_dir *d);
/* Entry @i (< hs_dir_count) of the snapshot; valid until release. */
const struct hs_dir_entry *hs_dir_entry(const struct hs_dir *d, size_t i);
/* How long the kernel may keep the entries (hs_cache_dir_ttl_ms() at
 * open), and whether the readdir copy the kernel kept from an earlier
 * open of this folder is still what the cache holds. */
int64_t hs_dir_ttl_ms(const struct hs_dir *d);
int hs_dir_keep_cache(const struct hs_dir *d);
void hs_cache_releasedir(struct hs_cache *c, struct hs_dir *d);

/* The guest path of @ino ("/a/b", malloc'ed into *@ret); -ENOENT when it
 * has no name.  Never touches the network. */
int hs_cache_path(struct hs_cache *c, uint64_t ino, char **ret);

/* ---- how long the kernel may keep an answer ---- */

/* Milliseconds the kernel may keep what the cache told it about the names
 * in folder @dir (lookups, negative ones too, readdirplus) and their
 * attributes before asking again: what is left of attr_timeout since @dir
 * was last listed from the host (all of attr_timeout for a folder only the
 * guest holds).  So a host change shows in the guest within attr_timeout
 * whether the cache or the kernel holds the older answer.  Never touches
 * the network. */
int64_t hs_cache_dir_ttl_ms(struct hs_cache *c, uint64_t dir);
/* The same for the attributes of @ino (getattr, setattr): the trust of the
 * folder that holds it; all of attr_timeout for the root. */
int64_t hs_cache_attr_ttl_ms(struct hs_cache *c, uint64_t ino);

/* Host free space from a recent answer; never waits on the network. */
int hs_cache_statfs(struct hs_cache *c, struct statvfs *ret);

/* ---- control ---- */

enum hs_link_state {
	HS_LINK_CONNECTED = 0,
	HS_LINK_RECONNECTING = 1,
	HS_LINK_OFFLINE = 2,
};
const char *hs_link_state_name(enum hs_link_state s);

struct hs_cache_status {
	char source[512];
	char transport[16];       /* "sftp" */
	enum hs_link_state link;
	int64_t link_since_ns;    /* wall clock of the last state change */
	uint64_t pending_ops;     /* journal entries not yet on the host */
	uint64_t pending_bytes;   /* dirty data not yet on the host */
	uint64_t flushed_ops;     /* since mount */
	uint64_t flushed_bytes;   /* since mount */
	uint64_t failed_ops;      /* entries the host refused (kept, see log) */
	uint64_t cache_bytes;     /* data held in the cache folder */
	char cache_dir[512];
	char last_error[256];     /* "" when none */
	uint64_t sent_bytes;      /* data written to the host since mount, as it goes */
	uint64_t inflight_bytes;  /* ... of it by the rows being sent now (not
				   * in pending_bytes any more) */
	uint64_t rate_bps;        /* recent flush rate, bytes/s (0: idle) */
	uint64_t cache_limit;     /* cache_size=, 0 for none */
	uint64_t disk_free;       /* free space on the cache's disk */
	uint64_t disk_min_free;   /* what the cache leaves free there (min_free=) */
	uint64_t conflicts;       /* conflicts listed, until cleared */
	int64_t oldest_pending_ms; /* age of the oldest row still owed, -1 none */
	char current[512];        /* the path being sent now, "" when idle */
};
int hs_cache_get_status(struct hs_cache *c, struct hs_cache_status *ret);

/* Conflicts found by the flusher (DESIGN.md: no silent overwrite), kept
 * until the user clears them.  Strings are borrowed for the call; @fn must
 * not call into the cache; its non-zero return stops the listing. */
struct hs_conflict {
	int64_t id;
	int64_t at_ns;      /* wall clock */
	const char *path;   /* the host path both sides changed */
	const char *copy;   /* where the guest's version went, or NULL */
	const char *reason;
};
typedef int (*hs_conflict_fn)(void *arg, const struct hs_conflict *k);
int hs_cache_conflicts(struct hs_cache *c, hs_conflict_fn fn, void *arg);
int hs_cache_conflicts_clear(struct hs_cache *c, uint64_t *ret_n);

/* The journal, oldest first: what the host is still owed. */
struct hs_pending {
	int64_t seq;
	const char *op;     /* "create", "write", "mkdir", "rename", ... */
	const char *state;  /* "pending", "sending", "refused" */
	const char *path;   /* host path */
	const char *path2;  /* rename/link target, or NULL */
	uint64_t bytes;     /* data to move (create/write: at most the size) */
	int64_t age_ms;
	const char *error;  /* why the host refused it, or NULL */
};
typedef int (*hs_pending_fn)(void *arg, const struct hs_pending *p);
int hs_cache_pending(struct hs_cache *c, hs_pending_fn fn, void *arg);

/* Drops the cached data of the files at or below guest path @path ("/" or
 * NULL: all) whose data is all on the host; they are read from the host
 * again when needed.  Files with changes not on the host are kept. */
struct hs_evict_result {
	uint64_t files, bytes; /* dropped */
	uint64_t kept;         /* files holding changes not on the host yet */
};
int hs_cache_evict(struct hs_cache *c, const char *path,
		   struct hs_evict_result *ret);

/* Sends everything pending now (ignoring writeback_delay) and waits until
 * the journal is empty.  -ETIMEDOUT at @dl; -EIO if the host refused an
 * entry (it stays counted in failed_ops). */
int hs_cache_sync(struct hs_cache *c, hs_deadline_t dl);

/* For `hostsharectl doctor` (cache/doctor.c): what the journal holds,
 * the age of its oldest pending entry, how many pending entries an earlier
 * mount left (appended before the latest mount of the folder opened it:
 * the cache records where each mount's entries begin), and the last
 * entries the host refused ("'path': error; ...").  Read-only; never
 * touches the network. */
struct hs_cache_journal_info {
	uint64_t pending_ops;       /* entries not yet on the host */
	uint64_t failed_ops;        /* entries the host refused */
	int64_t oldest_age_ms;      /* of the oldest pending entry; -1: none */
	uint64_t earlier_mount_ops; /* pending entries of an earlier mount */
	char refused[512];
};
/* From the open cache @c (the mount's daemon); or, with @c NULL, from the
 * cache folder @dir of a source that is not mounted, its meta.db opened
 * read-only.  0 or -errno: -ENOENT no database in @dir, -EBUSY a running
 * hostshare holds it (run the doctor on its mountpoint), else a message
 * in @err. */
int hs_cache_journal_info(struct hs_cache *c, const char *dir,
			  struct hs_cache_journal_info *ret, char *err,
			  size_t errlen);

/* The journal of the cache folder @dir, whose mount is not running, as
 * hs_cache_pending() lists it (oldest first), its meta.db opened
 * read-only (cache/doctor.c).  0 or -errno with one line in @err: -ENOENT
 * no database in @dir, -EBUSY a running hostshare holds it, -EIO it cannot
 * be read (rows before the damage have been given to @fn). */
int hs_cache_folder_pending(const char *dir, hs_pending_fn fn, void *arg,
			    char *err, size_t errlen);
/* @p as the control protocol's JSON object (docs/control.md, "pending"),
 * left open for hs_json_end(): the one encoding of a row, for the daemon's
 * answer and for hostsharectl reading a folder itself. */
struct hs_json;
void hs_pending_json(const struct hs_pending *p, struct hs_json *j);
/* For a message that tells the user to move the cache folder @dir aside:
 * "the folder still holds N changes not on the host (see 'hostsharectl
 * pending DIR')", that it holds none, or that it may hold some when its
 * journal cannot be read.  Opens meta.db read-only: the caller must have
 * closed its own connection to it. */
void hs_cache_owed_note(const char *dir, char *buf, size_t size);

#endif
