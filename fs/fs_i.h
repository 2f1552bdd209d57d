/* SPDX-License-Identifier: MIT
 * fs/fs_i.h - private declarations shared by the files of fs/ (the FUSE
 * front end): the per-mount struct hs_fs, the operations table and the
 * control socket server.
 *
 * Thread model: struct hs_fs is filled by main() before the FUSE session
 * and the control thread start, and is read-only afterwards (the cache it
 * points to is thread-safe on its own).  Nothing in fs/ takes a lock across
 * a fuse_reply_*() or a cache call that may wait on the host.
 */
#ifndef HS_FS_I_H
#define HS_FS_I_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <limits.h>

#include "cache/cache.h"
#include "opts.h"

struct hs_ctl;

struct hs_fs {
	struct hs_cache *cache;       /* owned by main() */
	const struct hs_opts *opts;   /* borrowed from main() */
	struct fuse_session *se;      /* NULL until fuse_session_new() */
	struct hs_ctl *ctl;           /* control socket server, or NULL */
	char mountpoint[PATH_MAX];    /* canonical (realpath before mounting) */
	char ctl_path[PATH_MAX];      /* control socket, "" when none */
	int op_timeout_ms;            /* deadline of each op that may need
				       * the host */
	mode_t umask;                 /* cleared from reported modes */
	struct hs_hostev *hostev;     /* host changes into the kernel, or NULL */
};

/* The FUSE low-level operations (ops.c). */
extern const struct fuse_lowlevel_ops hs_fs_ops;

/* Starts the control socket of @fs (ctl.c): binds fs->ctl_path, which
 * main() computed before mounting (a realpath() of a mountpoint that this
 * very process serves would wait on itself).  Refuses a socket another live
 * daemon answers on.  On failure returns -errno and one line in @err. */
int hs_ctl_start(struct hs_fs *fs, char *err, size_t errlen);
/* Stops serving, waits for connection threads (bounded: each checks for
 * stop at least every 500 ms) and removes the socket.  No-op if not
 * started.  Call before hs_cache_close(). */
void hs_ctl_stop(struct hs_fs *fs);

/* Host changes into the kernel's caches and inotify (hostev.c). */
struct hs_hostev;
struct hs_hostev *hs_hostev_new(struct hs_fs *fs);
/* Starts the replayer; call once mounted. */
int hs_hostev_start(struct hs_hostev *h);
/* Stops it; @fuse_fd is the session's device descriptor, cut if a replay
 * is stuck on a mount nobody serves any more.  Accepts NULL. */
void hs_hostev_stop(struct hs_hostev *h, int fuse_fd);
void hs_hostev_free(struct hs_hostev *h);
/* hs_host_change_fn for the cache */
void hs_hostev_push(void *arg, const struct hs_host_change *hc);
/* ops.c: 1 if @req was made by the replayer */
int hs_hostev_mine(struct hs_fs *fs, fuse_req_t req);
/* ops.c, for the replayer's requests: a lookup of a name the replay
 * touches (1: *@ret, with a reference taken; -ENOENT: no such name yet;
 * 0: look it up as usual), and the inode a replayed creation names (0 or
 * -errno; a reference is taken). */
int hs_hostev_lookup(struct hs_fs *fs, uint64_t parent, const char *name,
		     struct stat *ret);
int hs_hostev_target(struct hs_fs *fs, struct stat *ret);

#endif
