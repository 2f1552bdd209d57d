/* SPDX-License-Identifier: MIT
 * tools/hostsharectl.c - the control client of a hostshare mount:
 *   hostsharectl status [--json] [MOUNTPOINT]
 *   hostsharectl flush --wait [--timeout SECONDS] [--json] MOUNTPOINT
 *   hostsharectl conflicts [--clear] [--json] MOUNTPOINT
 *   hostsharectl pending [--json] [-p PORT] [-o OPTS] MOUNTPOINT|CACHE_FOLDER|SOURCE
 *   hostsharectl evict [--json] MOUNTPOINT [PATH]
 *
 * Talks the line protocol of common/ctl.h to the daemon's control socket:
 * the socket of the caller's uid first, then root's (a mount made from
 * fstab).  The daemon answers in JSON lines; a tiny parser below reads the
 * flat objects it sends (no nesting, no arrays).
 *
 * Output: human "key: value" lines, or the daemon's JSON as is with --json.
 * flush shows a live progress line on stderr when stderr is a terminal and
 * is silent otherwise unless it fails.  Exit status: 0 done, 1 failed
 * (one line "hostsharectl: <what>" on stderr), 2 usage error.
 *
 * pending of a mount that is not running (no control socket answers):
 * the cache folder given, or the one of a SOURCE (-o/-p as the doctor
 * takes them) or of a mountpoint in /etc/fstab, is read by libhs
 * (hs_cache_folder_pending(), meta.db opened read-only) and each row
 * goes through the daemon's own encoding (hs_pending_json()) and the same
 * printing as the daemon's lines; one line on stderr says so.
 *
 * Single-threaded.  Links libhs (the doctor, pending of a folder).  Not
 * done here: talking to mounts of other users (the daemon refuses them by
 * design).
 */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <mntent.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cache/cache.h"
#include "common/common.h"
#include "common/ctl.h"
#include "common/json.h"
#include "ctljson.h"
#include "common/version.h"
#include "doctor.h"

#ifndef HS_VERSION
#define HS_VERSION "unknown"
#endif

#define IDLE_TIMEOUT_MS (60 * 1000) /* silence from the daemon = stuck */
#define NO_TIMEOUT_MS 315360000000ULL /* ten years: "wait for ever" */

static void usage(FILE *f)
{
	fputs("usage: hostsharectl status [--json] [MOUNTPOINT]\n"
	      "       hostsharectl flush --wait [--timeout SECONDS] [--json] MOUNTPOINT\n"
	      "       hostsharectl conflicts [--clear] [--json] MOUNTPOINT\n"
	      "       hostsharectl pending [--json] [-p PORT] [-o OPTIONS]\n"
	      "                            MOUNTPOINT | CACHE_FOLDER | SOURCE\n"
	      "       hostsharectl evict [--json] MOUNTPOINT [PATH]\n"
	      "       hostsharectl doctor [--json] [--no-write] MOUNTPOINT | SOURCE\n"
	      "       hostsharectl --help | --version\n"
	      "\n"
	      "  status     link, pending work, flush rate, cache and conflicts of\n"
	      "             a mount (of every hostshare mount when none is given)\n"
	      "  flush      send every pending change to the host now and wait\n"
	      "             until all of it is there (exit 0) or it fails (exit 1)\n"
	      "  conflicts  files changed on both sides, and where the guest's\n"
	      "             version went; --clear empties the list once handled\n"
	      "  pending    the changes not on the host yet, oldest first (also of\n"
	      "             a mount not running: from its cache folder)\n"
	      "  evict      drop cached data that is on the host (of PATH, or of\n"
	      "             the whole mount); changes not sent yet are kept\n"
	      "  doctor     check link, host, clocks, disks and memory: a verdict\n"
	      "             and a fix each (see hostsharectl(1))\n"
	      "\n"
	      "  --json          machine-readable output (see docs/control.md)\n"
	      "  --timeout SECS  give up after SECS seconds (default: no limit)\n",
	      f);
}

static int die(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("hostsharectl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

/* ---- the connection ---- */

static char sock_path[PATH_MAX];

/* hs_ctl_socket_path(), but also for a mountpoint we may not stat (a mount
 * of another user without allow_other): the parent's real path plus the
 * last component names the same socket. */
static int socket_path_for(const char *mp, uid_t uid, char *buf, size_t size)
{
	char tmp[PATH_MAX], parent[PATH_MAX], full[PATH_MAX * 2], dir[PATH_MAX];
	char *base, *pdir;
	int r = hs_ctl_socket_path(mp, uid, buf, size), n;

	if (r != -EACCES)
		return r;
	snprintf(tmp, sizeof(tmp), "%s", mp);
	base = basename(tmp);
	snprintf(parent, sizeof(parent), "%s", mp);
	pdir = dirname(parent);
	if (!realpath(pdir, dir) || !strcmp(base, "/") || !strcmp(base, ".") ||
	    !strcmp(base, ".."))
		return r;
	snprintf(full, sizeof(full), "%s/%s", strcmp(dir, "/") ? dir : "", base);
	if (hs_ctl_rundir(uid, tmp, sizeof(tmp)) < 0)
		return r;
	n = snprintf(buf, size, "%s/%016" PRIx64 ".sock", tmp,
		     hs_fnv1a64(full));
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int try_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

/* Connects to the daemon serving @mp: own uid's socket, then root's. */
static int connect_mount(const char *mp)
{
	uid_t uids[2] = { geteuid(), 0 };
	int i, r, fd = -ENOENT, denied = 0;

	for (i = 0; i < (uids[0] == 0 ? 1 : 2); i++) {
		r = socket_path_for(mp, uids[i], sock_path, sizeof(sock_path));
		if (r == -ENOENT && i == 0)
			die(1, "'%s' does not exist", mp);
		if (r == -ENOTDIR && i == 0)
			die(1, "'%s' is not a hostshare mount (no control socket)",
			    mp);
		if (r == -EACCES || r == -EPERM)
			denied = 1; /* cannot even look at it */
		if (r < 0)
			continue;
		fd = try_connect(sock_path);
		if (fd >= 0)
			return fd;
		if (fd == -EACCES || fd == -EPERM)
			denied = 1;
	}
	if (denied)
		die(1, "permission denied: the mount at '%s' belongs to another user",
		    mp);
	die(1, "'%s' is not a hostshare mount (no control socket)", mp);
	return -1;
}

static void send_line(int fd, const char *line)
{
	size_t off = 0, len = strlen(line);
	ssize_t w;

	while (off < len) {
		w = send(fd, line + off, len - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die(1, "cannot talk to the daemon (%s): %s", sock_path,
			    strerror(errno));
		off += (size_t)w;
	}
}

/* Line reader over the socket.  Returns a pointer to the next line (no
 * newline) or NULL at end of stream. */
struct reader {
	int fd;
	char buf[20480];
	size_t len;  /* bytes in buf */
	size_t used; /* bytes of buf already returned */
};

static char *next_line(struct reader *rd)
{
	struct pollfd p = { .fd = rd->fd, .events = POLLIN };
	char *nl;
	ssize_t r;

	if (rd->used) {
		memmove(rd->buf, rd->buf + rd->used, rd->len - rd->used);
		rd->len -= rd->used;
		rd->used = 0;
	}
	for (;;) {
		nl = memchr(rd->buf, '\n', rd->len);
		if (nl) {
			*nl = '\0';
			rd->used = (size_t)(nl - rd->buf) + 1;
			return rd->buf;
		}
		if (rd->len + 1 >= sizeof(rd->buf))
			die(1, "the daemon sent a line that is too long");
		r = poll(&p, 1, IDLE_TIMEOUT_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			die(1, "no answer from the daemon for %d s",
			    IDLE_TIMEOUT_MS / 1000);
		r = read(rd->fd, rd->buf + rd->len, sizeof(rd->buf) - 1 - rd->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die(1, "cannot read from the daemon: %s", strerror(errno));
		if (r == 0) {
			if (rd->len == 0)
				return NULL;
			rd->buf[rd->len] = '\0'; /* last line without newline */
			rd->used = rd->len;
			return rd->buf;
		}
		rd->len += (size_t)r;
	}
}

/* The daemon's {"error":...} answer, if @line is one. */
static void check_error(const char *line, const char *mp)
{
	char msg[512];

	if (!jget(line, "error", msg, sizeof(msg)) || jget(line, "event", NULL, 0))
		return;
	if (!strcmp(msg, "permission denied"))
		die(1, "permission denied: the mount at '%s' belongs to another user",
		    mp);
	die(1, "%s", msg);
}

/* ---- commands ---- */

static const char *human_duration(uint64_t s, char *buf, size_t size)
{
	if (s >= 3600)
		snprintf(buf, size, "%" PRIu64 ":%02" PRIu64 ":%02" PRIu64, s / 3600,
			 s / 60 % 60, s % 60);
	else
		snprintf(buf, size, "%" PRIu64 ":%02" PRIu64, s / 60, s % 60);
	return buf;
}

static int cmd_status(const char *mp, int json)
{
	struct reader rd = { .fd = connect_mount(mp) };
	char v[600], b1[32], b2[32], since[64];
	const char *line;
	uint64_t n;

	send_line(rd.fd, "status\n");
	line = next_line(&rd);
	if (!line)
		die(1, "the daemon closed the connection without an answer");
	check_error(line, mp);
	if (json) {
		printf("%s\n", line);
		close(rd.fd);
		return 0;
	}

#define ROW(label, fmt, ...) printf("%-12s " fmt "\n", label ":", __VA_ARGS__)
	jget(line, "mountpoint", v, sizeof(v));
	ROW("Mountpoint", "%s", v[0] ? v : mp);
	jget(line, "source", v, sizeof(v));
	ROW("Source", "%s", v);
	jget(line, "transport", v, sizeof(v));
	ROW("Transport", "%s", v);
	jget(line, "link", v, sizeof(v));
	if (!jget(line, "link_since", since, sizeof(since)))
		since[0] = '\0';
	ROW("Link", "%s%s%s", v, since[0] ? " since " : "", since);
	n = jget_u64(line, "pending_ops");
	if (n && jget_u64(line, "oldest_pending_s"))
		snprintf(v, sizeof(v), ", oldest %s ago",
			 human_duration(jget_u64(line, "oldest_pending_s"), b2,
					sizeof(b2)));
	else
		v[0] = '\0';
	ROW("Pending", "%" PRIu64 " ops, %s%s", n,
	    human_bytes(jget_u64(line, "pending_bytes"), b1, sizeof(b1)), v);
	if (n && jget_u64(line, "rate_bps")) {
		ROW("Flushing", "%s/s, done in about %s",
		    human_bytes(jget_u64(line, "rate_bps"), b1, sizeof(b1)),
		    human_duration(jget_u64(line, "eta_s"), b2, sizeof(b2)));
	}
	if (jget(line, "current", v, sizeof(v)) && v[0])
		ROW("Sending", "%s", v);
	ROW("Flushed", "%" PRIu64 " ops, %s since mount",
	    jget_u64(line, "flushed_ops"),
	    human_bytes(jget_u64(line, "sent_bytes"), b1, sizeof(b1)));
	ROW("Failed", "%" PRIu64 " ops", jget_u64(line, "failed_ops"));
	n = jget_u64(line, "conflicts");
	ROW("Conflicts", "%" PRIu64 "%s", n,
	    n ? " (see 'hostsharectl conflicts')" : "");
	jget(line, "cache_dir", v, sizeof(v));
	if (jget_u64(line, "cache_limit"))
		ROW("Cache", "%s of %s in %s",
		    human_bytes(jget_u64(line, "cache_bytes"), b1, sizeof(b1)),
		    human_bytes(jget_u64(line, "cache_limit"), b2, sizeof(b2)), v);
	else
		ROW("Cache", "%s in %s (no limit of its own)",
		    human_bytes(jget_u64(line, "cache_bytes"), b1, sizeof(b1)), v);
	ROW("Cache disk", "%s free, %s of it kept free (min_free=)",
	    human_bytes(jget_u64(line, "disk_free"), b1, sizeof(b1)),
	    human_bytes(jget_u64(line, "disk_min_free"), b2, sizeof(b2)));
	if (!jget(line, "last_error", v, sizeof(v)) || !v[0])
		snprintf(v, sizeof(v), "none");
	ROW("Last error", "%s", v);
	ROW("Daemon", "pid %" PRIu64, jget_u64(line, "pid"));
#undef ROW
	close(rd.fd);
	return 0;
}

/* The mountpoints of hostshare mounts in /proc/self/mountinfo (octal
 * escapes decoded), one per call; NULL at the end. */
static char *next_mount(FILE *f, char *buf, size_t size)
{
	char line[8192], *p, *fields[10], *sep;
	int i;

	while (fgets(line, sizeof(line), f)) {
		/* id parent maj:min root mountpoint opts [optional...] - type src */
		p = line;
		for (i = 0; i < 5 && p; i++) {
			fields[i] = p;
			p = strchr(p, ' ');
			if (p)
				*p++ = '\0';
		}
		if (!p || !(sep = strstr(p, " - ")))
			continue;
		sep += 3;
		if (strncmp(sep, "fuse.hostshare ", 15))
			continue;
		/* unescape \040 and friends */
		{
			const char *s = fields[4];
			size_t n = 0;

			while (*s && n + 1 < size) {
				if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
				    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' &&
				    s[3] <= '7') {
					buf[n++] = (char)((s[1] - '0') * 64 +
							  (s[2] - '0') * 8 + (s[3] - '0'));
					s += 4;
				} else {
					buf[n++] = *s++;
				}
			}
			buf[n] = '\0';
		}
		return buf;
	}
	return NULL;
}

/* status of every hostshare mount: blocks separated by a blank line, or
 * one JSON line each.  Mounts of other users are skipped quietly. */
static int cmd_status_all(int json)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char mp[PATH_MAX];
	int n = 0;

	if (!f)
		die(1, "cannot read /proc/self/mountinfo: %s", strerror(errno));
	while (next_mount(f, mp, sizeof(mp))) {
		uid_t uids[2] = { geteuid(), 0 };
		int i, fd = -1;

		for (i = 0; i < (uids[0] == 0 ? 1 : 2) && fd < 0; i++)
			if (socket_path_for(mp, uids[i], sock_path,
					    sizeof(sock_path)) == 0)
				fd = try_connect(sock_path);
		if (fd < 0)
			continue;
		close(fd);
		fflush(stdout);
		if (n++ && !json)
			putchar('\n');
		cmd_status(mp, json);
	}
	fclose(f);
	if (!n && !json)
		printf("no hostshare mounts\n");
	return 0;
}

static int cmd_flush(const char *mp, uint64_t timeout_ms, int json)
{
	struct reader rd = { .fd = connect_mount(mp) };
	int tty = !json && isatty(STDERR_FILENO), shown = 0;
	uint64_t sent0 = 0, done, total;
	char req[64], v[512], b1[32], b2[32], b3[32], b4[32], cur[512];
	const char *line, *base;
	int first = 1;

	snprintf(req, sizeof(req), "flush %" PRIu64 "\n", timeout_ms);
	send_line(rd.fd, req);
	while ((line = next_line(&rd))) {
		if (json) {
			printf("%s\n", line);
			fflush(stdout);
		}
		check_error(line, mp);
		if (!jget(line, "event", v, sizeof(v)))
			continue;
		if (!strcmp(v, "progress")) {
			/* the rows being sent count from their start */
			if (first)
				sent0 = jget_u64(line, "sent_bytes") -
					jget_u64(line, "inflight_bytes");
			first = 0;
			if (!tty)
				continue;
			done = jget_u64(line, "sent_bytes") - sent0;
			total = done + jget_u64(line, "pending_bytes");
			if (!jget(line, "current", cur, sizeof(cur)))
				cur[0] = '\0';
			base = strrchr(cur, '/') ? strrchr(cur, '/') + 1 : cur;
			jget(line, "link", v, sizeof(v));
			if (v[0] && strcmp(v, "connected")) {
				fprintf(stderr, "\rflushing: %s / %s, %" PRIu64
					" ops pending, waiting for the host (%s)\033[K",
					human_bytes(done, b1, sizeof(b1)),
					human_bytes(total, b2, sizeof(b2)),
					jget_u64(line, "pending_ops"), v);
			} else {
				fprintf(stderr, "\rflushing: %s / %s, %s/s, ETA %s, %" PRIu64
					" ops%s%s\033[K",
					human_bytes(done, b1, sizeof(b1)),
					human_bytes(total, b2, sizeof(b2)),
					human_bytes(jget_u64(line, "rate_bps"), b3,
						    sizeof(b3)),
					jget_u64(line, "rate_bps") ?
					human_duration(jget_u64(line, "eta_s"), b4,
						       sizeof(b4)) : "-",
					jget_u64(line, "pending_ops"),
					base[0] ? ", " : "", base);
			}
			shown = 1;
		} else if (!strcmp(v, "done")) {
			if (shown)
				fputs("\r\033[K", stderr);
			close(rd.fd);
			if (jget(line, "ok", v, sizeof(v)) && !strcmp(v, "true")) {
				if (tty)
					fputs("flushed: everything is on the host\n",
					      stderr);
				return 0;
			}
			if (!jget(line, "error", v, sizeof(v)) || !v[0])
				snprintf(v, sizeof(v), "flush failed");
			die(1, "%s", v);
		}
	}
	if (shown)
		fputs("\r\033[K", stderr);
	die(1, "the daemon closed the connection before the flush ended");
	return 1;
}

/* A listing being printed: with @json its objects as one JSON array,
 * otherwise each through @row.  The daemon's lines and the rows read
 * from a cache folder go through the same two calls. */
struct listing {
	int json;
	uint64_t n; /* objects printed */
	void (*row)(const char *line);
};

static void list_row(struct listing *ls, const char *line)
{
	if (ls->json)
		printf("%s\n%s", ls->n ? "," : "[", line);
	else
		ls->row(line);
	ls->n++;
}

static void list_end(struct listing *ls)
{
	if (ls->json)
		fputs(ls->n ? "\n]\n" : "[]\n", stdout);
}

/* Sends @req and collects the object lines up to {"event":"done"}.
 * Returns the done line's count. */
static uint64_t run_list(const char *mp, const char *req, int json,
			 void (*row)(const char *line))
{
	struct reader rd = { .fd = connect_mount(mp) };
	struct listing ls = { .json = json, .row = row };
	char v[32];
	const char *line;

	send_line(rd.fd, req);
	while ((line = next_line(&rd))) {
		check_error(line, mp);
		if (jget(line, "event", v, sizeof(v)) && !strcmp(v, "done")) {
			list_end(&ls);
			close(rd.fd);
			return jget_u64(line, "count");
		}
		list_row(&ls, line);
	}
	die(1, "the daemon closed the connection before the answer ended");
	return 0;
}

static void conflict_row(const char *line)
{
	char at[40], path[4200], copy[4200], reason[200];

	jget(line, "at", at, sizeof(at));
	jget(line, "path", path, sizeof(path));
	jget(line, "copy", copy, sizeof(copy));
	jget(line, "reason", reason, sizeof(reason));
	printf("%s  %s\n      %s%s%s\n", at, path, reason,
	       copy[0] ? "; the guest's version is " : "", copy);
}

static int cmd_conflicts(const char *mp, int clear, int json)
{
	struct reader rd;
	char v[200];
	const char *line;

	if (!clear) {
		if (!run_list(mp, "conflicts\n", json, conflict_row) && !json)
			printf("no conflicts\n");
		return 0;
	}
	rd = (struct reader){ .fd = connect_mount(mp) };
	send_line(rd.fd, "conflicts clear\n");
	line = next_line(&rd);
	if (!line)
		die(1, "the daemon closed the connection without an answer");
	check_error(line, mp);
	if (json)
		printf("%s\n", line);
	else if (jget(line, "count", v, sizeof(v)))
		printf("%s conflicts cleared from the list (the files stay)\n", v);
	close(rd.fd);
	return 0;
}

static void pending_row(const char *line)
{
	char op[16], state[16], path[4200], path2[4200], err[300], b1[32],
		b2[32];

	jget(line, "op", op, sizeof(op));
	jget(line, "state", state, sizeof(state));
	jget(line, "path", path, sizeof(path));
	if (!jget(line, "path2", path2, sizeof(path2)))
		path2[0] = '\0';
	if (!jget(line, "error", err, sizeof(err)))
		err[0] = '\0';
	printf("%-8s %-8s %9s %8s  %s%s%s%s%s\n", op, state,
	       !strcmp(op, "create") || !strcmp(op, "write") ?
	       human_bytes(jget_u64(line, "bytes"), b1, sizeof(b1)) : "",
	       human_duration(jget_u64(line, "age_ms") / 1000, b2, sizeof(b2)),
	       path, path2[0] ? " -> " : "", path2, err[0] ? ": " : "", err);
}

/* ---- pending of a mount that is not running ---- */

/* @p as an absolute path, also when @p itself cannot be resolved (a
 * mountpoint whose daemon died: ENOTCONN): its folder's real path plus
 * its last component. */
static void abs_path(const char *p, char *out, size_t size)
{
	char tmp[PATH_MAX], dir[PATH_MAX], *base;

	if (realpath(p, out))
		return;
	snprintf(tmp, sizeof(tmp), "%s", p);
	base = basename(tmp);
	snprintf(dir, sizeof(dir), "%s", p);
	if (!realpath(dirname(dir), dir))
		snprintf(dir, sizeof(dir), ".");
	if (snprintf(out, size, "%s/%s", strcmp(dir, "/") ? dir : "", base) >=
	    (int)size)
		die(1, "'%s': the path is too long", p);
}

/* The source and options of the hostshare mount at @mp in table @file
 * (/etc/fstab: with its options; /proc/self/mounts: a mount whose daemon
 * died, without them).  1 found, 0 not. */
static int mount_entry(const char *file, const char *mp, char *src,
		       size_t srclen, char *opts, size_t optslen)
{
	FILE *f = setmntent(file, "re");
	struct mntent *m;
	int found = 0;

	if (!f)
		return 0;
	while (!found && (m = getmntent(f))) {
		if (strcmp(m->mnt_type, "fuse.hostshare") &&
		    strcmp(m->mnt_type, "hostshare"))
			continue;
		if (strcmp(m->mnt_dir, mp))
			continue;
		snprintf(src, srclen, "%s", m->mnt_fsname);
		snprintf(opts, optslen, "%s", m->mnt_opts);
		found = 1;
	}
	endmntent(f);
	return found;
}

struct offline {
	struct listing ls;
	char err[512];
};

static void pending_header(void)
{
	printf("%-8s %-8s %9s %8s  %s\n", "OP", "STATE", "BYTES", "AGE",
	       "PATH");
}

static int offline_row(void *arg, const struct hs_pending *p)
{
	struct offline *o = arg;
	struct hs_json j;

	if (!o->ls.json && !o->ls.n)
		pending_header();
	hs_pending_json(p, &j);
	hs_json_end(&j);
	j.s[j.n - 1] = '\0'; /* the line without its newline */
	list_row(&o->ls, j.s);
	return 0;
}

/* `pending` of @target when no running mount answers for it: a cache
 * folder, a SOURCE (with the mount options @opts), or a mountpoint that
 * fstab (or the dead mount's line in mountinfo) names with its source. */
static int pending_offline(const char *target, const char *opts, int json)
{
	struct offline o = { .ls = { .json = json, .row = pending_row } };
	char dir[PATH_MAX], path[PATH_MAX + 16], mp[PATH_MAX], src[PATH_MAX],
		mopts[PATH_MAX], all[PATH_MAX * 2 + 2];
	const char *what;
	struct stat st;
	int r, dead;

	r = stat(target, &st) < 0 ? -errno : 0;
	dead = r == -ENOTCONN;
	snprintf(path, sizeof(path), "%s/meta.db", target);
	if (r == 0 && S_ISDIR(st.st_mode) && access(path, F_OK) == 0) {
		abs_path(target, dir, sizeof(dir));
		what = "the cache folder";
	} else if ((r == 0 && S_ISDIR(st.st_mode)) || dead) {
		abs_path(target, mp, sizeof(mp));
		if (!mount_entry("/etc/fstab", mp, src, sizeof(src), mopts,
				 sizeof(mopts)) &&
		    !mount_entry("/proc/self/mounts", mp, src, sizeof(src),
				 mopts, sizeof(mopts)))
			die(1, "'%s' is neither a running hostshare mount, nor a "
			    "cache folder (no meta.db in it), nor a hostshare "
			    "mountpoint in /etc/fstab: give its source or its cache folder",
			    target);
		snprintf(all, sizeof(all), "%s%s%s", mopts,
			 opts && mopts[0] ? "," : "", opts ? opts : "");
		hs_doctor_cache_folder(src, all, dir, sizeof(dir));
		what = "its cache folder";
	} else if (strchr(target, ':')) {
		hs_doctor_cache_folder(target, opts, dir, sizeof(dir));
		what = "its cache folder";
	} else {
		die(1, "'%s' does not exist", target);
	}
	r = hs_cache_folder_pending(dir, offline_row, &o, o.err, sizeof(o.err));
	if (r == -ENOENT)
		die(1, "no cache of '%s' on this guest (no meta.db in '%s')",
		    target, dir);
	if (r == -EBUSY)
		die(1, "%s", o.err);
	if (r < 0) {
		fflush(stdout);
		die(1, "cannot read the cache database '%s/meta.db': %s%s", dir,
		    o.err, o.ls.n ? " (the rows above were read before it)" : "");
	}
	if (!json && !o.ls.n)
		pending_header();
	list_end(&o.ls);
	fflush(stdout);
	if (o.ls.n)
		fprintf(stderr, "hostsharectl: the mount is not running: read "
			"from %s '%s'; its next mount sends %s %" PRIu64
			" change%s to the host\n", what, dir,
			o.ls.n == 1 ? "this" : "these", o.ls.n,
			o.ls.n == 1 ? "" : "s");
	else
		fprintf(stderr, "hostsharectl: the mount is not running: read "
			"from %s '%s'; it owes the host nothing\n", what, dir);
	return 0;
}

/* A running mount answers for @mp: its daemon's control socket takes a
 * connection. */
static int mount_running(const char *mp)
{
	uid_t uids[2] = { geteuid(), 0 };
	int i, fd = -1;

	for (i = 0; i < (uids[0] == 0 ? 1 : 2) && fd < 0; i++)
		if (socket_path_for(mp, uids[i], sock_path, sizeof(sock_path)) == 0)
			fd = try_connect(sock_path);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

static int cmd_pending(const char *mp, const char *opts, int json)
{
	if (!mount_running(mp))
		return pending_offline(mp, opts, json);
	if (!json)
		pending_header();
	run_list(mp, "pending\n", json, pending_row);
	return 0;
}

/* @path (a file or folder in the mount at @mp) as a path inside the
 * mount, "/" for the mount itself. */
static void mount_relative(const char *mp, const char *path, char *out,
			   size_t size)
{
	char rmp[PATH_MAX], rp[PATH_MAX];
	size_t n;

	if (!realpath(mp, rmp))
		die(1, "'%s': %s", mp, strerror(errno));
	if (!realpath(path, rp))
		die(1, "'%s': %s", path, strerror(errno));
	n = strlen(rmp);
	if (!strcmp(rmp, "/"))
		n = 0;
	if (strncmp(rp, rmp, n) || (rp[n] != '/' && rp[n] != '\0'))
		die(1, "'%s' is not inside the mount at '%s'", path, mp);
	snprintf(out, size, "%s", rp[n] ? rp + n : "/");
}

static int cmd_evict(const char *mp, const char *path, int json)
{
	struct reader rd = { .fd = connect_mount(mp) };
	char rel[PATH_MAX], req[PATH_MAX + 16], b1[32];
	const char *line;

	mount_relative(mp, path ? path : mp, rel, sizeof(rel));
	snprintf(req, sizeof(req), "evict %s\n", rel);
	send_line(rd.fd, req);
	line = next_line(&rd);
	if (!line)
		die(1, "the daemon closed the connection without an answer");
	check_error(line, mp);
	if (json) {
		printf("%s\n", line);
	} else {
		printf("dropped %s of cached data from %" PRIu64 " files",
		       human_bytes(jget_u64(line, "bytes"), b1, sizeof(b1)),
		       jget_u64(line, "files"));
		if (jget_u64(line, "kept"))
			printf("; %" PRIu64 " files with changes not on the host"
			       " yet were kept", jget_u64(line, "kept"));
		printf("\n");
	}
	close(rd.fd);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = NULL, *mp = NULL, *path = NULL;
	char opts[PATH_MAX * 2] = ""; /* -o and -p of pending SOURCE */
	int json = 0, wait = 0, clear = 0, i;
	uint64_t timeout_ms = NO_TIMEOUT_MS;

	if (argc > 1 && !strcmp(argv[1], "doctor"))
		return hs_doctor_main(argc - 1, argv + 1);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			hs_print_versions(stdout, "hostsharectl", NULL);
			return 0;
		} else if (!strcmp(a, "--json")) {
			json = 1;
		} else if (!strcmp(a, "--wait")) {
			wait = 1;
		} else if (!strcmp(a, "--clear")) {
			clear = 1;
		} else if (!strcmp(a, "--timeout") ||
			   !strncmp(a, "--timeout=", 10)) {
			const char *v = a[9] == '=' ? a + 10 : NULL;
			char *end;
			double s;

			if (!v && ++i < argc)
				v = argv[i];
			if (!v)
				die(2, "option '--timeout' needs a value");
			errno = 0;
			s = strtod(v, &end);
			if (!*v || *end || errno || !isfinite(s) || s < 0 ||
			    s > 3.15e8)
				die(2, "invalid value '%s' for option '--timeout'",
				    v);
			timeout_ms = (uint64_t)(s * 1000.0 + 0.5);
		} else if (!strcmp(a, "-o") || !strcmp(a, "-p")) {
			size_t n = strlen(opts);

			if (++i >= argc)
				die(2, "option '%s' needs a value", a);
			if (n + strlen(argv[i]) + 8 >= sizeof(opts))
				die(2, "option '%s' is too long", a);
			snprintf(opts + n, sizeof(opts) - n, "%s%s%s",
				 n ? "," : "", a[1] == 'p' ? "port=" : "",
				 argv[i]);
		} else if (a[0] == '-' && a[1]) {
			die(2, "unknown option '%s' (see 'hostsharectl --help')",
			    a);
		} else if (!cmd) {
			cmd = a;
		} else if (!mp) {
			mp = a;
		} else if (!path && !strcmp(cmd, "evict")) {
			path = a;
		} else {
			die(2, "unexpected argument '%s'", a);
		}
	}
	if (!cmd) {
		usage(stderr);
		return 2;
	}
	if (strcmp(cmd, "status") && strcmp(cmd, "flush") &&
	    strcmp(cmd, "conflicts") && strcmp(cmd, "pending") &&
	    strcmp(cmd, "evict"))
		die(2, "unknown command '%s' (see 'hostsharectl --help')", cmd);
	if (wait && strcmp(cmd, "flush"))
		die(2, "%s takes no '--wait'", cmd);
	if (clear && strcmp(cmd, "conflicts"))
		die(2, "%s takes no '--clear'", cmd);
	if (opts[0] && strcmp(cmd, "pending"))
		die(2, "%s takes no '-o' or '-p'", cmd);
	if (!strcmp(cmd, "status"))
		return mp ? cmd_status(mp, json) : cmd_status_all(json);
	if (!mp)
		die(2, "%s: missing %s", cmd, !strcmp(cmd, "pending") ?
		    "MOUNTPOINT, SOURCE or CACHE_FOLDER" : "MOUNTPOINT");
	if (!strcmp(cmd, "conflicts"))
		return cmd_conflicts(mp, clear, json);
	if (!strcmp(cmd, "pending"))
		return cmd_pending(mp, opts[0] ? opts : NULL, json);
	if (!strcmp(cmd, "evict"))
		return cmd_evict(mp, path, json);
	if (!wait)
		die(2, "flush needs '--wait' (the only mode so far)");
	return cmd_flush(mp, timeout_ms, json);
}
