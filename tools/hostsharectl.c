/* SPDX-License-Identifier: MIT
 * tools/hostsharectl.c - the control client of a hostshare mount:
 *   hostsharectl status [--json] MOUNTPOINT
 *   hostsharectl flush --wait [--timeout SECONDS] [--json] MOUNTPOINT
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
 * Single-threaded.  Links only common/.  Not done here: conflicts (no
 * protocol request yet), talking to mounts of other users (the daemon
 * refuses them by design).
 */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/common.h"
#include "common/ctl.h"
#include "common/version.h"
#include "doctor.h"

#ifndef HS_VERSION
#define HS_VERSION "unknown"
#endif

#define IDLE_TIMEOUT_MS (60 * 1000) /* silence from the daemon = stuck */
#define NO_TIMEOUT_MS 315360000000ULL /* ten years: "wait for ever" */

static void usage(FILE *f)
{
	fputs("usage: hostsharectl status [--json] MOUNTPOINT\n"
	      "       hostsharectl flush --wait [--timeout SECONDS] [--json] MOUNTPOINT\n"
	      "       hostsharectl doctor [--json] [--no-write] MOUNTPOINT | SOURCE\n"
	      "       hostsharectl --help | --version\n"
	      "\n"
	      "  status   show the link, pending and flushed work of a mount\n"
	      "  flush    send every pending change to the host now and wait\n"
	      "           until all of it is there (exit 0) or it fails (exit 1)\n"
	      "  doctor   check link, host, clocks, disks and memory: a verdict\n"
	      "           and a fix each (see hostsharectl(1))\n"
	      "\n"
	      "  --json          print the daemon's JSON lines\n"
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

/* ---- a tiny reader of flat JSON objects ---- */

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	return p;
}

/* Reads the string at @p (just after the opening quote) into @out (may be
 * NULL); returns the position after the closing quote, or NULL. */
static const char *read_string(const char *p, char *out, size_t outlen)
{
	size_t n = 0;
	char ch;

	for (; *p && *p != '"'; p++) {
		ch = *p;
		if (ch == '\\') {
			p++;
			switch (*p) {
			case 'n': ch = '\n'; break;
			case 't': ch = '\t'; break;
			case 'r': ch = '\r'; break;
			case 'b': ch = '\b'; break;
			case 'f': ch = '\f'; break;
			case 'u': {
				unsigned v = 0;
				int i;

				for (i = 1; i <= 4; i++) {
					char h = p[i];

					if (h >= '0' && h <= '9')
						v = v * 16 + (unsigned)(h - '0');
					else if (h >= 'a' && h <= 'f')
						v = v * 16 + (unsigned)(h - 'a' + 10);
					else if (h >= 'A' && h <= 'F')
						v = v * 16 + (unsigned)(h - 'A' + 10);
					else
						return NULL;
				}
				ch = v < 0x80 ? (char)v : '?';
				p += 4;
				break;
			}
			case '\0':
				return NULL;
			default:
				ch = *p; /* \" \\ \/ */
			}
		}
		if (out && n + 1 < outlen)
			out[n++] = ch;
	}
	if (out && outlen)
		out[n] = '\0';
	return *p == '"' ? p + 1 : NULL;
}

/* Finds @key in the flat object @obj; copies its value (strings unescaped,
 * other values as written, null as "") into @out.  1 found, 0 not. */
static int jget(const char *obj, const char *key, char *out, size_t outlen)
{
	char k[64];
	const char *p = skip_ws(obj), *v;
	size_t n;

	if (*p++ != '{')
		return 0;
	for (;;) {
		p = skip_ws(p);
		if (*p != '"')
			return 0;
		p = read_string(p + 1, k, sizeof(k));
		if (!p)
			return 0;
		p = skip_ws(p);
		if (*p++ != ':')
			return 0;
		p = skip_ws(p);
		if (*p == '"') {
			if (!strcmp(k, key))
				return read_string(p + 1, out, outlen) != NULL;
			p = read_string(p + 1, NULL, 0);
			if (!p)
				return 0;
		} else {
			v = p;
			while (*p && *p != ',' && *p != '}')
				p++;
			if (!strcmp(k, key)) {
				if (!out || !outlen)
					return 1;
				n = (size_t)(p - v);
				while (n && (v[n - 1] == ' ' || v[n - 1] == '\n'))
					n--;
				if (n == 4 && !strncmp(v, "null", 4))
					n = 0;
				if (n >= outlen)
					n = outlen - 1;
				memcpy(out, v, n);
				out[n] = '\0';
				return 1;
			}
		}
		p = skip_ws(p);
		if (*p++ != ',')
			return 0;
	}
}

static uint64_t jget_u64(const char *obj, const char *key)
{
	char v[32];

	if (!jget(obj, key, v, sizeof(v)))
		return 0;
	return strtoull(v, NULL, 10);
}

/* ---- formatting ---- */

static const char *human_bytes(uint64_t b, char *buf, size_t size)
{
	static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB",
					    "PiB" };
	double v = (double)b;
	int i = -1;

	if (b < 1024) {
		snprintf(buf, size, "%" PRIu64 " B", b);
		return buf;
	}
	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(buf, size, "%.1f %s", v, unit[i]);
	return buf;
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
	char buf[8192];
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

static int cmd_status(const char *mp, int json)
{
	struct reader rd = { .fd = connect_mount(mp) };
	char v[600], b1[32], since[64];
	const char *line;

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
	ROW("Pending", "%" PRIu64 " ops, %s", jget_u64(line, "pending_ops"),
	    human_bytes(jget_u64(line, "pending_bytes"), b1, sizeof(b1)));
	ROW("Flushed", "%" PRIu64 " ops, %s", jget_u64(line, "flushed_ops"),
	    human_bytes(jget_u64(line, "flushed_bytes"), b1, sizeof(b1)));
	ROW("Failed", "%" PRIu64 " ops", jget_u64(line, "failed_ops"));
	jget(line, "cache_dir", v, sizeof(v));
	ROW("Cache", "%s in %s",
	    human_bytes(jget_u64(line, "cache_bytes"), b1, sizeof(b1)), v);
	if (!jget(line, "last_error", v, sizeof(v)) || !v[0])
		snprintf(v, sizeof(v), "none");
	ROW("Last error", "%s", v);
	ROW("Daemon", "pid %" PRIu64, jget_u64(line, "pid"));
#undef ROW
	close(rd.fd);
	return 0;
}

static int cmd_flush(const char *mp, uint64_t timeout_ms, int json)
{
	struct reader rd = { .fd = connect_mount(mp) };
	int tty = !json && isatty(STDERR_FILENO), shown = 0;
	int64_t t_prev = hs_now_ns(), t_now;
	uint64_t prev_flushed = 0, flushed;
	double rate = 0, inst;
	char req[64], v[512], b1[32], b2[32], link[32];
	const char *line;
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
			t_now = hs_now_ns();
			flushed = jget_u64(line, "flushed_bytes");
			if (!first && t_now > t_prev && flushed >= prev_flushed) {
				inst = (double)(flushed - prev_flushed) * 1e9 /
				       (double)(t_now - t_prev);
				rate = rate ? 0.7 * rate + 0.3 * inst : inst;
			}
			first = 0;
			prev_flushed = flushed;
			t_prev = t_now;
			if (!tty)
				continue;
			if (!jget(line, "link", link, sizeof(link)))
				link[0] = '\0';
			fprintf(stderr, "\rflushing: %" PRIu64 " ops, %s pending, %s/s%s\033[K",
				jget_u64(line, "pending_ops"),
				human_bytes(jget_u64(line, "pending_bytes"), b1,
					    sizeof(b1)),
				human_bytes((uint64_t)(rate + 0.5), b2,
					    sizeof(b2)),
				link[0] && strcmp(link, "connected") ?
				" (waiting for the host)" : "");
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

int main(int argc, char **argv)
{
	const char *cmd = NULL, *mp = NULL;
	int json = 0, wait = 0, i;
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
		} else if (a[0] == '-' && a[1]) {
			die(2, "unknown option '%s' (see 'hostsharectl --help')",
			    a);
		} else if (!cmd) {
			cmd = a;
		} else if (!mp) {
			mp = a;
		} else {
			die(2, "unexpected argument '%s'", a);
		}
	}
	if (!cmd) {
		usage(stderr);
		return 2;
	}
	if (strcmp(cmd, "status") && strcmp(cmd, "flush"))
		die(2, "unknown command '%s' (see 'hostsharectl --help')", cmd);
	if (!mp)
		die(2, "%s: missing MOUNTPOINT", cmd);
	if (!strcmp(cmd, "status")) {
		if (wait)
			die(2, "status takes no '--wait'");
		return cmd_status(mp, json);
	}
	if (!wait)
		die(2, "flush needs '--wait' (the only mode so far)");
	return cmd_flush(mp, timeout_ms, json);
}
