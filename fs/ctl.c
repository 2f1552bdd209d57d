/* SPDX-License-Identifier: MIT
 * fs/ctl.c - the control socket of one mount: the server side of the
 * protocol in common/ctl.h, spoken by hostsharectl.
 *
 * One accept thread polls the listening socket and a wake pipe.  Each
 * accepted client gets its own detached thread (at most CTL_MAX_CLIENTS at
 * once; more are told "busy") that reads one request line, answers with
 * JSON lines and closes:
 *   "status"            -> one object from hs_cache_get_status()
 *   "flush <timeout_ms>" -> a progress object every 500 ms, then "done"
 *   "conflicts"         -> one object per conflict, then "done" with a count
 *   "conflicts clear"   -> "done" with the count cleared
 *   "pending"           -> one object per journal row, then "done"
 *   "evict [PATH]"      -> "done" with the files/bytes dropped
 * The objects' fields are documented in docs/control.md.
 * Only the daemon's own uid and root may talk (SO_PEERCRED), and the uid=
 * user of a mount root made for a desktop user; the socket is 0600 (owned
 * by that user then) in a 0700 folder (0711 then) as well.
 *
 * Locking: ctl->lock guards stopping, nclients and client_fd[].  It is held
 * only for bookkeeping, never across a cache call or socket I/O.
 * Stopping: hs_ctl_stop() wakes and joins the accept thread, shuts down
 * every client socket (so a blocked send/recv returns) and waits until the
 * client count is zero.  A flush client calls hs_cache_sync() with
 * deadlines at most 500 ms away and checks `stopping` in between, and every
 * socket has a 5 s send/receive timeout, so that wait is bounded.
 *
 * Not done here: authentication beyond the peer uid, more than one request
 * per connection.
 */
#include "fs_i.h"
#include "reply.h"
#include "ctl_doctor.h"
#include "common/json.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CTL_MAX_CLIENTS 8
#define CTL_IO_TIMEOUT_S 5
#define CTL_PROGRESS_MS 500
#define CTL_MAX_LINE 4200 /* "evict " + a path */

struct hs_ctl {
	struct hs_fs *fs;
	int listen_fd;
	int wake[2];      /* written once by hs_ctl_stop() */
	pthread_t thread; /* the accept thread */
	pthread_mutex_t lock;
	pthread_cond_t idle;  /* signalled when nclients drops */
	int stopping;         /* protected by lock */
	int nclients;         /* protected by lock */
	int client_fd[CTL_MAX_CLIENTS]; /* -1: free; protected by lock */
};

struct ctl_client {
	struct hs_ctl *ctl;
	int slot;
	int fd;
};

/* ---- output ---- */

/* Ends the JSON line @j (common/json.h) and sends it.  0 or -errno. */
static int jsend(int fd, struct hs_json *j)
{
	const char *line = hs_json_end(j);
	size_t off = 0;
	ssize_t w;

	while (off < j->n) {
		w = send(fd, line + off, j->n - off, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (size_t)w;
	}
	return 0;
}

static int send_error(int fd, const char *msg)
{
	struct hs_json j;

	hs_json_open(&j);
	hs_json_str(&j, "error", msg);
	return jsend(fd, &j);
}

/* ---- requests ---- */

static void iso8601(int64_t wall_ns, char *buf, size_t size)
{
	time_t t = (time_t)(wall_ns / HS_NSEC_PER_SEC);
	struct tm tm;

	if (wall_ns <= 0 || !gmtime_r(&t, &tm) ||
	    !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
		buf[0] = '\0';
}

/* Seconds until what is owed is on the host at the recent rate (0: idle
 * or no rate yet). */
static uint64_t eta_s(const struct hs_cache_status *st)
{
	if (!st->rate_bps || !st->pending_bytes)
		return 0;
	return (st->pending_bytes + st->rate_bps - 1) / st->rate_bps;
}

static void do_status(struct hs_ctl *ctl, int fd)
{
	struct hs_cache_status st;
	struct hs_json j;
	char since[32];
	int r;

	memset(&st, 0, sizeof(st));
	r = hs_cache_get_status(ctl->fs->cache, &st);
	if (r < 0) {
		char msg[128];

		snprintf(msg, sizeof(msg), "cannot read the status: %s",
			 strerror(-r));
		send_error(fd, msg);
		return;
	}
	st.source[sizeof(st.source) - 1] = '\0';
	st.transport[sizeof(st.transport) - 1] = '\0';
	st.cache_dir[sizeof(st.cache_dir) - 1] = '\0';
	st.last_error[sizeof(st.last_error) - 1] = '\0';
	iso8601(st.link_since_ns, since, sizeof(since));

	hs_json_open(&j);
	hs_json_str(&j, "mountpoint", ctl->fs->mountpoint);
	hs_json_str(&j, "source", st.source);
	hs_json_str(&j, "transport", st.transport);
	hs_json_str(&j, "link", hs_link_state_name(st.link));
	hs_json_str(&j, "link_since", since);
	hs_json_num(&j, "pending_ops", st.pending_ops);
	hs_json_num(&j, "pending_bytes", st.pending_bytes);
	hs_json_num(&j, "flushed_ops", st.flushed_ops);
	hs_json_num(&j, "flushed_bytes", st.flushed_bytes);
	hs_json_num(&j, "failed_ops", st.failed_ops);
	hs_json_num(&j, "cache_bytes", st.cache_bytes);
	hs_json_str(&j, "cache_dir", st.cache_dir);
	hs_json_str(&j, "last_error", st.last_error);
	hs_json_num(&j, "pid", (uint64_t)getpid());
	hs_json_num(&j, "sent_bytes", st.sent_bytes);
	hs_json_num(&j, "inflight_bytes", st.inflight_bytes);
	hs_json_num(&j, "rate_bps", st.rate_bps);
	hs_json_num(&j, "eta_s", eta_s(&st));
	hs_json_num(&j, "cache_limit", st.cache_limit);
	hs_json_num(&j, "disk_free", st.disk_free);
	hs_json_num(&j, "disk_min_free", st.disk_min_free);
	hs_json_num(&j, "conflicts", st.conflicts);
	hs_json_num(&j, "oldest_pending_s", st.oldest_pending_ms < 0 ? 0 :
		 (uint64_t)st.oldest_pending_ms / 1000);
	st.current[sizeof(st.current) - 1] = '\0';
	hs_json_str(&j, "current", st.current);
	jsend(fd, &j);
}

/* One line per conflict, then {"event":"done","count":N}. */
static int send_conflict(void *arg, const struct hs_conflict *k)
{
	char at[32];
	struct hs_json j;

	iso8601(k->at_ns, at, sizeof(at));
	hs_json_open(&j);
	hs_json_num(&j, "id", (uint64_t)k->id);
	hs_json_str(&j, "at", at);
	hs_json_str(&j, "path", k->path);
	hs_json_str(&j, "copy", k->copy ? k->copy : "");
	hs_json_str(&j, "reason", k->reason);
	return jsend(*(int *)arg, &j);
}

static void send_done(int fd, int r, uint64_t count, const char *what)
{
	char msg[160];
	struct hs_json j;

	if (r < 0) {
		snprintf(msg, sizeof(msg), "cannot %s: %s", what, strerror(-r));
		send_error(fd, msg);
		return;
	}
	hs_json_open(&j);
	hs_json_str(&j, "event", "done");
	hs_json_num(&j, "count", count);
	jsend(fd, &j);
}

struct lister {
	int fd;
	uint64_t n;
};

static int count_conflict(void *arg, const struct hs_conflict *k)
{
	struct lister *l = arg;

	l->n++;
	return send_conflict(&l->fd, k);
}

static void do_conflicts(struct hs_ctl *ctl, int fd, int clear)
{
	struct lister l = { .fd = fd };
	int r;

	if (clear) {
		r = hs_cache_conflicts_clear(ctl->fs->cache, &l.n);
		if (r == 0 && l.n)
			hs_notice("%" PRIu64 " conflicts cleared from the list", l.n);
		send_done(fd, r, l.n, "clear the conflicts");
		return;
	}
	r = hs_cache_conflicts(ctl->fs->cache, count_conflict, &l);
	send_done(fd, r, l.n, "list the conflicts");
}

static int send_pending(void *arg, const struct hs_pending *p)
{
	struct lister *l = arg;
	struct hs_json j;

	l->n++;
	hs_pending_json(p, &j);
	return jsend(l->fd, &j);
}

static void do_pending(struct hs_ctl *ctl, int fd)
{
	struct lister l = { .fd = fd };
	int r = hs_cache_pending(ctl->fs->cache, send_pending, &l);

	send_done(fd, r, l.n, "list the journal");
}

static void do_evict(struct hs_ctl *ctl, int fd, const char *path)
{
	struct hs_evict_result res;
	struct hs_json j;
	char msg[160];
	int r = hs_cache_evict(ctl->fs->cache, path, &res);

	if (r < 0) {
		snprintf(msg, sizeof(msg), "cannot evict '%.100s': %s", path,
			 r == -ENOENT ? "not in the mount" : strerror(-r));
		send_error(fd, msg);
		return;
	}
	hs_json_open(&j);
	hs_json_str(&j, "event", "done");
	hs_json_num(&j, "files", res.files);
	hs_json_num(&j, "bytes", res.bytes);
	hs_json_num(&j, "kept", res.kept);
	jsend(fd, &j);
}

static int stopping(struct hs_ctl *ctl)
{
	int s;

	pthread_mutex_lock(&ctl->lock);
	s = ctl->stopping;
	pthread_mutex_unlock(&ctl->lock);
	return s;
}

static int send_progress(int fd, const struct hs_cache_status *st)
{
	struct hs_json j;

	hs_json_open(&j);
	hs_json_str(&j, "event", "progress");
	hs_json_num(&j, "pending_ops", st->pending_ops);
	hs_json_num(&j, "pending_bytes", st->pending_bytes);
	hs_json_num(&j, "flushed_bytes", st->flushed_bytes);
	hs_json_num(&j, "sent_bytes", st->sent_bytes);
	hs_json_num(&j, "inflight_bytes", st->inflight_bytes);
	hs_json_num(&j, "rate_bps", st->rate_bps);
	hs_json_num(&j, "eta_s", eta_s(st));
	hs_json_str(&j, "current", st->current);
	hs_json_str(&j, "link", hs_link_state_name(st->link));
	return jsend(fd, &j);
}

/* "The host could not be reached" (not a plain timeout). */
static int link_error(int r)
{
	return r != -ETIMEDOUT && hs_reply_errno(r) == EIO && r != -EIO;
}

/* Runs hs_cache_sync() in steps of at most 500 ms so progress can be sent
 * in between (a repeated sync only kicks the flusher again). */
static void do_flush(struct hs_ctl *ctl, int fd, uint64_t timeout_ms)
{
	struct hs_cache *c = ctl->fs->cache;
	struct hs_cache_status st;
	hs_deadline_t dl, step;
	char msg[160];
	struct hs_json j;
	int r;

	/* Beyond ~30 years is "no timeout" (and would overflow ns). */
	dl = timeout_ms > 1000000000000ULL ? HS_DEADLINE_NEVER :
	     hs_deadline_in_ms((int64_t)timeout_ms);
	for (;;) {
		step = hs_deadline_in_ms(CTL_PROGRESS_MS);
		if (dl != HS_DEADLINE_NEVER && dl < step)
			step = dl;
		r = hs_cache_sync(c, step);
		if (r == 0 || hs_deadline_passed(dl) ||
		    (r != -ETIMEDOUT && !link_error(r)))
			break;
		if (stopping(ctl)) {
			r = -ESHUTDOWN;
			break;
		}
		/* Link errors and step timeouts: keep waiting for the link
		 * until the caller's deadline; never spin. */
		while (!hs_deadline_passed(step))
			poll(NULL, 0, hs_deadline_ms_left(step));
		memset(&st, 0, sizeof(st));
		if (hs_cache_get_status(c, &st) == 0 &&
		    send_progress(fd, &st) < 0)
			return; /* the client went away */
	}

	memset(&st, 0, sizeof(st));
	hs_cache_get_status(c, &st);
	hs_json_open(&j);
	hs_json_str(&j, "event", "done");
	hs_json_bool(&j, "ok", r == 0);
	if (r != 0) {
		if (r == -EIO)
			snprintf(msg, sizeof(msg),
				 "the host refused %" PRIu64
				 " operations; see the log", st.failed_ops);
		else if (r == -ESHUTDOWN)
			snprintf(msg, sizeof(msg),
				 "the mount is shutting down with %" PRIu64
				 " operations still pending (they stay queued)",
				 st.pending_ops);
		else if (st.link != HS_LINK_CONNECTED || link_error(r))
			snprintf(msg, sizeof(msg),
				 "host unreachable (%" PRIu64
				 " operations still pending)", st.pending_ops);
		else if (r == -ETIMEDOUT)
			snprintf(msg, sizeof(msg),
				 "timed out with %" PRIu64
				 " operations still pending", st.pending_ops);
		else
			snprintf(msg, sizeof(msg), "flush failed: %s",
				 strerror(-r));
		hs_json_str(&j, "error", msg);
	}
	jsend(fd, &j);
}

/* Reads one request line (without the newline).  0 or -errno. */
static int read_line(int fd, char *buf, size_t size)
{
	size_t n = 0;
	ssize_t r;

	while (n + 1 < size) {
		r = recv(fd, buf + n, size - 1 - n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		n += (size_t)r;
		if (memchr(buf, '\n', n))
			break;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	return n ? 0 : -ENODATA;
}

static void serve(struct hs_ctl *ctl, int fd)
{
	char line[CTL_MAX_LINE], *end;
	unsigned long long ms;

	if (read_line(fd, line, sizeof(line)) < 0)
		return;
	if (!strcmp(line, "status")) {
		do_status(ctl, fd);
	} else if (!strcmp(line, "doctor")) {
		hs_ctl_doctor(ctl->fs, fd);
	} else if (!strncmp(line, "flush", 5) &&
		   (line[5] == ' ' || line[5] == '\0')) {
		errno = 0;
		ms = strtoull(line + 5, &end, 10);
		if (line[5] == '\0' || errno || *end || line[6] == '-')
			send_error(fd, "usage: flush <timeout_ms>");
		else
			do_flush(ctl, fd, ms);
	} else if (!strcmp(line, "conflicts") || !strcmp(line, "conflicts clear")) {
		do_conflicts(ctl, fd, line[9] != '\0');
	} else if (!strcmp(line, "pending")) {
		do_pending(ctl, fd);
	} else if (!strcmp(line, "evict") || !strncmp(line, "evict ", 6)) {
		do_evict(ctl, fd, line[5] ? line + 6 : "/");
	} else {
		char msg[CTL_MAX_LINE + 32];

		snprintf(msg, sizeof(msg), "unknown request '%.64s'", line);
		send_error(fd, msg);
	}
}

static void *client_main(void *arg)
{
	struct ctl_client *cl = arg;
	struct hs_ctl *ctl = cl->ctl;
	int fd = cl->fd;

	serve(ctl, fd);
	pthread_mutex_lock(&ctl->lock);
	ctl->client_fd[cl->slot] = -1;
	ctl->nclients--;
	pthread_cond_broadcast(&ctl->idle);
	pthread_mutex_unlock(&ctl->lock);
	close(fd);
	free(cl);
	return NULL;
}

/* ---- accepting ---- */

/* The uid= user of a mount root made for a desktop user, or -1. */
static int64_t desktop_uid(const struct hs_fs *fs)
{
	if (geteuid() != 0 || !fs->opts || fs->opts->uid < 0)
		return -1;
	return fs->opts->uid;
}

static int peer_allowed(const struct hs_fs *fs, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return 0;
	return cred.uid == geteuid() || cred.uid == 0 ||
	       (int64_t)cred.uid == desktop_uid(fs);
}

static void accept_one(struct hs_ctl *ctl)
{
	struct timeval tv = { .tv_sec = CTL_IO_TIMEOUT_S };
	struct ctl_client *cl;
	pthread_attr_t attr;
	pthread_t t;
	int fd, slot = -1, i;

	fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (!peer_allowed(ctl->fs, fd)) {
		send_error(fd, "permission denied");
		close(fd);
		return;
	}

	pthread_mutex_lock(&ctl->lock);
	if (!ctl->stopping)
		for (i = 0; i < CTL_MAX_CLIENTS && slot < 0; i++)
			if (ctl->client_fd[i] < 0)
				slot = i;
	if (slot >= 0) {
		ctl->client_fd[slot] = fd;
		ctl->nclients++;
	}
	pthread_mutex_unlock(&ctl->lock);
	if (slot < 0) {
		send_error(fd, "busy: too many control connections");
		close(fd);
		return;
	}

	cl = malloc(sizeof(*cl));
	if (cl) {
		cl->ctl = ctl;
		cl->slot = slot;
		cl->fd = fd;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, client_main, cl) == 0) {
			pthread_attr_destroy(&attr);
			return;
		}
		pthread_attr_destroy(&attr);
		free(cl);
	}
	send_error(fd, "out of resources");
	pthread_mutex_lock(&ctl->lock);
	ctl->client_fd[slot] = -1;
	ctl->nclients--;
	pthread_cond_broadcast(&ctl->idle);
	pthread_mutex_unlock(&ctl->lock);
	close(fd);
}

static void *accept_main(void *arg)
{
	struct hs_ctl *ctl = arg;
	struct pollfd p[2] = {
		{ .fd = ctl->listen_fd, .events = POLLIN },
		{ .fd = ctl->wake[0], .events = POLLIN },
	};

	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			hs_err("control socket: poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		if (p[0].revents & POLLIN)
			accept_one(ctl);
	}
	return NULL;
}

/* ---- start / stop ---- */

/* Creates the run folder (0700) if needed and checks it is private: a
 * folder in /tmp someone else made must not hold our socket. */
static int make_rundir(const char *sock_path, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	char *slash;
	struct stat st;

	snprintf(dir, sizeof(dir), "%s", sock_path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return -EINVAL;
	*slash = '\0';
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		int e = errno;

		snprintf(err, errlen, "cannot create control folder '%s': %s",
			 dir, strerror(e));
		return -e;
	}
	/* 0711 is fine: the sockets in it are 0600 (see hs_ctl_start()) */
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode) ||
	    st.st_uid != geteuid() || (st.st_mode & 066)) {
		snprintf(err, errlen,
			 "control folder '%s' is not a private folder of this user",
			 dir);
		return -EPERM;
	}
	return 0;
}

int hs_ctl_start(struct hs_fs *fs, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct hs_ctl *ctl;
	int fd, r, i;

	if (strlen(fs->ctl_path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control socket path '%s' is too long",
			 fs->ctl_path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, fs->ctl_path);
	r = make_rundir(fs->ctl_path, err, errlen);
	if (r < 0)
		return r;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail_errno;
	/* A socket that still answers belongs to a live daemon serving this
	 * mountpoint; one that does not is left over from a killed one. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		snprintf(err, errlen,
			 "'%s' is already served by another hostshare (control socket '%s')",
			 fs->mountpoint, fs->ctl_path);
		return -EBUSY;
	}
	close(fd);
	if (unlink(fs->ctl_path) < 0 && errno != ENOENT)
		goto fail_errno;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail_errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(fs->ctl_path, 0600) < 0 || listen(fd, 8) < 0) {
		r = -errno;
		close(fd);
		unlink(fs->ctl_path);
		goto fail;
	}
	/* A mount root made for a desktop user (uid=): that user may talk
	 * too, so the socket is theirs and the run folder lets them reach it
	 * (0711: no listing; the other sockets stay 0600 root's). */
	if (desktop_uid(fs) >= 0) {
		char dir[PATH_MAX], *slash;

		snprintf(dir, sizeof(dir), "%s", fs->ctl_path);
		slash = strrchr(dir, '/');
		if (slash)
			*slash = '\0';
		if (chown(fs->ctl_path, (uid_t)desktop_uid(fs), (gid_t)-1) < 0 ||
		    (slash && chmod(dir, 0711) < 0))
			hs_warn("control socket: cannot open it to uid %lld: %s",
				   (long long)desktop_uid(fs), strerror(errno));
	}

	ctl = calloc(1, sizeof(*ctl));
	if (!ctl) {
		r = -ENOMEM;
		goto out_close;
	}
	ctl->fs = fs;
	ctl->listen_fd = fd;
	for (i = 0; i < CTL_MAX_CLIENTS; i++)
		ctl->client_fd[i] = -1;
	pthread_mutex_init(&ctl->lock, NULL);
	pthread_cond_init(&ctl->idle, NULL);
	if (pipe2(ctl->wake, O_CLOEXEC) < 0) {
		r = -errno;
		goto out_free;
	}
	r = -pthread_create(&ctl->thread, NULL, accept_main, ctl);
	if (r < 0)
		goto out_pipe;
	fs->ctl = ctl;
	hs_debug("control socket at %s", fs->ctl_path);
	return 0;

out_pipe:
	close(ctl->wake[0]);
	close(ctl->wake[1]);
out_free:
	pthread_cond_destroy(&ctl->idle);
	pthread_mutex_destroy(&ctl->lock);
	free(ctl);
out_close:
	close(fd);
	unlink(fs->ctl_path);
	goto fail;
fail_errno:
	r = -errno;
fail:
	snprintf(err, errlen, "cannot create control socket '%s': %s",
		 fs->ctl_path, strerror(-r));
	return r;
}

void hs_ctl_stop(struct hs_fs *fs)
{
	struct hs_ctl *ctl = fs->ctl;
	int i;

	if (!ctl)
		return;
	pthread_mutex_lock(&ctl->lock);
	ctl->stopping = 1;
	pthread_mutex_unlock(&ctl->lock);
	if (write(ctl->wake[1], "x", 1) < 0) {
		/* the pipe is empty and ours: cannot fail */
	}
	pthread_join(ctl->thread, NULL);
	close(ctl->listen_fd);
	unlink(fs->ctl_path);

	pthread_mutex_lock(&ctl->lock);
	for (i = 0; i < CTL_MAX_CLIENTS; i++)
		if (ctl->client_fd[i] >= 0)
			shutdown(ctl->client_fd[i], SHUT_RDWR);
	while (ctl->nclients > 0)
		pthread_cond_wait(&ctl->idle, &ctl->lock);
	pthread_mutex_unlock(&ctl->lock);

	close(ctl->wake[0]);
	close(ctl->wake[1]);
	pthread_cond_destroy(&ctl->idle);
	pthread_mutex_destroy(&ctl->lock);
	free(ctl);
	fs->ctl = NULL;
}
