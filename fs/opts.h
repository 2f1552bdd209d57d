/* SPDX-License-Identifier: MIT
 * fs/opts.h - the command line of the mount program, parsed into one
 * struct hs_opts.  See hs_opts_print_help() for the options table.
 *
 * Ownership: every string in struct hs_opts is owned by it and freed by
 * hs_opts_release().  Thread model: parse once in main() before any thread
 * starts; read-only afterwards.
 */
#ifndef HS_FS_OPTS_H
#define HS_FS_OPTS_H

#include <stdint.h>
#include <stdio.h>

#include "cache/cache.h"

struct hs_opts {
	/* ---- what to mount where ---- */
	char *source;      /* SOURCE exactly as written: "[user@]host:[dir]",
			    * "tcp://HOST:PORT/dir", "unix:/sock:/dir" or
			    * "vsock://CID:PORT/dir" */
	enum hs_tr_kind kind; /* HS_TR_SFTP, or HS_TR_AGENT_* by SOURCE */
	char *mountpoint;  /* MOUNTPOINT as written */
	char *user;        /* from SOURCE; NULL: the local user name */
	char *host;        /* from SOURCE, brackets of "[::1]" removed; the
			    * socket path for unix:, the CID for vsock:// */
	char *dir;         /* from SOURCE; "": the login folder */
	int port;          /* -p / port=; 22; agent sources: from SOURCE */

	/* ---- agent ---- */
	char *token_file;  /* token_file= (absolute) or NULL */
	int compression;   /* compression=yes|no; yes (agent sources) */
	int agent_ssh;     /* -o agent: start hostshare-agent over ssh */
	char *agent_command; /* agent_command=; NULL: "hostshare-agent" */

	/* ---- program ---- */
	int foreground;    /* -f or -d: stay attached, log to stderr */
	int debug;         /* -d: FUSE request trace + loglevel debug */
	int show_help;     /* -h / --help */
	int show_version;  /* -V / --version */
	enum hs_log_level loglevel; /* loglevel=; notice (debug with -d) */

	/* ---- SSH ---- */
	char **identity_files; /* IdentityFile= (absolute), NULL-terminated;
				* NULL when none was given */
	size_t n_identity_files;
	char *known_hosts;     /* UserKnownHostsFile= (absolute) or NULL */
	enum hs_tr_hostkey_policy hostkey_policy; /* StrictHostKeyChecking= */
	int keepalive_s;        /* ServerAliveInterval=; 15, 0: off */
	int connect_timeout_ms; /* ConnectTimeout= (s); 10 s */

	/* ---- cache ---- */
	char *cache_root;       /* cache_dir= (absolute) or NULL: the default
				 * root; the per-source folder goes below it */
	int op_timeout_ms;      /* op_timeout= (s); 10 s */
	int attr_timeout_ms;    /* attr_timeout= (s, fractional); 20 s */
	double attr_timeout_s;  /* the same, as FUSE wants it */
	int writeback_delay_ms; /* writeback_delay= (ms); 500 */
	uint64_t cache_size;    /* cache_size= (bytes); 0: no limit */
	uint64_t min_free;      /* min_free=SIZE (bytes) ... */
	unsigned min_free_pct;  /* ... or min_free=N% ; both 0: 10 %, <= 2 GiB */
	int flush_connections;  /* flush_connections=; 1 */
	enum hs_fsync_mode fsync_mode; /* fsync=local|host; local */
	int allow_offline;      /* offline=yes|no; yes */

	/* ---- ownership and permissions ---- */
	int idmap_user;         /* idmap=user|none; user */
	int64_t uid, gid;       /* uid= / gid=; -1 when not given */
	int umask;              /* umask= (octal) applied to reported modes;
				 * -1 when not given */
	int allow_other, allow_root, default_permissions, ro;
	int no_default_permissions; /* no_default_permissions: allow_other
				     * without the kernel's checks */

	/* ---- FUSE ---- */
	int max_threads;        /* max_threads=; 10 */
	char *fsname;           /* fsname=; NULL: SOURCE */
	char *subtype;          /* subtype=; NULL: "hostshare" */
};

/* Parses argv into @o (which it initialises first).  On failure returns
 * -EINVAL (or -ENOMEM) and one lowercase line in @err, e.g. "unknown option
 * 'foo'", "invalid value 'abc' for option 'op_timeout'".  -h/-V only set
 * show_help/show_version; SOURCE and MOUNTPOINT are then not required.
 * Does not look at the filesystem (see hs_opts_check_mountpoint()). */
int hs_opts_parse(int argc, char **argv, struct hs_opts *o, char *err,
		  size_t errlen);

/* Checks that the mountpoint exists and is a folder, and writes its
 * canonical absolute path into @buf.  0 or -errno with a line in @err. */
int hs_opts_check_mountpoint(const struct hs_opts *o, char *buf, size_t size,
			     char *err, size_t errlen);

/* Writes the per-source cache folder into @buf:
 * <root>/<user@host-port>-<16 hex of fnv1a64("user@host:port:dir")>, with
 * <root> = cache_dir=, or /var/cache/hostshare for root, or
 * $XDG_CACHE_HOME/hostshare, or ~/.cache/hostshare.  Creates the missing
 * folders of <root> with mode 0700 (not the per-source folder itself: the
 * cache does that).  0 or -errno with a line in @err. */
int hs_opts_cache_folder(const struct hs_opts *o, char *buf, size_t size,
			 char *err, size_t errlen);

/* The login name SOURCE names, or the local user's.  Never NULL. */
const char *hs_opts_effective_user(const struct hs_opts *o);

/* Usage and the options table. */
void hs_opts_print_help(FILE *f);

/* Frees the strings of @o.  Safe on a zeroed or half-parsed struct. */
void hs_opts_release(struct hs_opts *o);

#endif
