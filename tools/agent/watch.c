/* SPDX-License-Identifier: MIT
 * tools/agent/watch.c - host change notifications: one inotify instance
 * watching every folder beneath the root, and the list of connections that
 * subscribed.  Events become NOTIFY frames (docs/protocol.md) written to
 * each subscriber under its write lock.
 *
 * The watcher thread starts with the first subscription.  New folders
 * (created or moved in) get watches as they appear; a watch queue overflow
 * or a failure to add a watch is sent as an OVERFLOW event, after which
 * clients should revalidate everything.  inotify is not recursive and
 * misses changes made through other mounts of the same files: events are
 * advisory.
 *
 * The thread reads events in bursts: after each read it waits
 * GATHER_MS, so a burst of changes (a tree copied in: each new file is a
 * handful of events) is read and sent in a few reads, not woken for one
 * event at a time; on this kind of guest the wake-ups were most of the
 * agent's time during an upload.  A change still reaches subscribers
 * within milliseconds.
 *
 * Lock: wlock (agent-wide) guards the subscriber list and the watch table;
 * a subscriber's own write lock is taken inside it, never the reverse.
 */
#include "agent_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/proto.h"

#define GATHER_MS 5
#define WATCH_MASK (IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | \
		    IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | \
		    IN_DELETE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)

struct sub {
	struct sub *next;
	struct hs_agent_sink *sink;
	char prefix[PATH_MAX];  /* "/rel/dir", "" for the root */
};

static pthread_mutex_t wlock = PTHREAD_MUTEX_INITIALIZER;
static struct sub *subs;        /* protected by wlock */
static char **wd_path;          /* wd -> "/rel/dir" ("" for root) */
static int wd_cap;
static int ifd = -1;
static int started;
static char root_path[PATH_MAX];

static void set_wd(int wd, const char *rel)
{
	if (wd >= wd_cap) {
		int n = wd_cap ? wd_cap : 64;
		char **v;

		while (n <= wd)
			n *= 2;
		v = realloc(wd_path, (size_t)n * sizeof(*v));
		if (!v)
			return;
		memset(v + wd_cap, 0, (size_t)(n - wd_cap) * sizeof(*v));
		wd_path = v;
		wd_cap = n;
	}
	free(wd_path[wd]);
	wd_path[wd] = strdup(rel);
}

/* @p ("/a/b", "" for the root) is @prefix or below it. */
static int below(const char *p, const char *prefix)
{
	size_t n = strlen(prefix);

	return !strncmp(p, prefix, n) && (p[n] == '\0' || p[n] == '/');
}

/* Sends one event to every subscriber whose folder it concerns; @to only
 * with HS_NOTIFY_MOVED (a move out of or into a subscriber's folder is a
 * removal or a creation for it). */
static void send_all(unsigned kind, const char *path, const char *to)
{
	struct hs_pbuf b[3];
	struct sub *s;
	int i;

	for (i = 0; i < 3; i++)
		hs_pbuf_init(&b[i]);
	hs_pbuf_u32(&b[0], kind);
	hs_pbuf_str(&b[0], path[0] ? path : "/");
	if (kind == HS_NOTIFY_MOVED) {
		hs_pbuf_str(&b[0], to[0] ? to : "/");
		hs_pbuf_u32(&b[1], HS_NOTIFY_REMOVED);
		hs_pbuf_str(&b[1], path[0] ? path : "/");
		hs_pbuf_u32(&b[2], HS_NOTIFY_CREATED);
		hs_pbuf_str(&b[2], to[0] ? to : "/");
	}
	for (s = subs; s; s = s->next) {
		int from_in = kind == HS_NOTIFY_OVERFLOW || below(path, s->prefix);
		int to_in = kind == HS_NOTIFY_MOVED && below(to, s->prefix);
		struct hs_pbuf *m = NULL;

		if (kind != HS_NOTIFY_MOVED)
			m = from_in ? &b[0] : NULL;
		else
			m = from_in && to_in ? &b[0] : from_in ? &b[1] :
			    to_in ? &b[2] : NULL;
		if (m && !m->err)
			s->sink->send(s->sink, m->p, m->len);
	}
	for (i = 0; i < 3; i++)
		hs_pbuf_release(&b[i]);
}

/* Adds watches for @rel (relative to the root, "" for the root) and every
 * folder below it.  Returns -1 when a watch could not be added. */
static int watch_tree(const char *rel)
{
	char full[PATH_MAX * 2], sub[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int wd, r = 0;

	snprintf(full, sizeof(full), "%s%s", root_path, rel);
	wd = inotify_add_watch(ifd, full, WATCH_MASK);
	if (wd < 0)
		return errno == ENOENT || errno == ENOTDIR ? 0 : -1;
	set_wd(wd, rel);
	d = opendir(full);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (de->d_type != DT_DIR || !strcmp(de->d_name, ".") ||
		    !strcmp(de->d_name, ".."))
			continue;
		if (snprintf(sub, sizeof(sub), "%s/%s", rel, de->d_name) >=
		    (int)sizeof(sub))
			continue;
		if (watch_tree(sub) < 0)
			r = -1;
	}
	closedir(d);
	return r;
}

/* A move inside the tree is two inotify events with one cookie, one after
 * the other: IN_MOVED_FROM is held until the next event, and sent as a
 * MOVED when that is its IN_MOVED_TO, else as a removal (the name went
 * out of the tree). */
struct held_move {
	uint32_t cookie; /* 0: none held */
	char path[PATH_MAX * 2];
};

static void flush_held(struct held_move *m)
{
	if (m->cookie)
		send_all(HS_NOTIFY_REMOVED, m->path, NULL);
	m->cookie = 0;
}

static void *watch_main(void *arg)
{
	char buf[64 * 1024] __attribute__((aligned(8)));
	static struct held_move held;
	char path[PATH_MAX * 2];
	ssize_t n;
	(void)arg;

	for (;;) {
		char *p;

		n = read(ifd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			hs_err("inotify: read failed: %s", strerror(errno));
			return NULL;
		}
		pthread_mutex_lock(&wlock);
		for (p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			const char *dir;
			unsigned kind;

			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				flush_held(&held);
				send_all(HS_NOTIFY_OVERFLOW, "/", NULL);
				continue;
			}
			if (ev->wd < 0 || ev->wd >= wd_cap || !wd_path[ev->wd])
				continue;
			dir = wd_path[ev->wd];
			if (ev->mask & IN_IGNORED) {
				free(wd_path[ev->wd]);
				wd_path[ev->wd] = NULL;
				continue;
			}
			if (ev->mask & IN_DELETE_SELF)
				continue; /* the parent reports IN_DELETE */
			if (ev->len)
				snprintf(path, sizeof(path), "%s/%s", dir,
					 ev->name);
			else
				snprintf(path, sizeof(path), "%s", dir);
			if (strstr(path, "/.hs-put-"))
				continue; /* PUT_FILE's temporary names */
			if ((ev->mask & IN_MOVED_TO) && held.cookie &&
			    held.cookie == ev->cookie) {
				held.cookie = 0;
				send_all(HS_NOTIFY_MOVED, held.path, path);
				if ((ev->mask & IN_ISDIR) &&
				    strlen(path) < PATH_MAX && watch_tree(path) < 0)
					send_all(HS_NOTIFY_OVERFLOW, "/", NULL);
				continue;
			}
			flush_held(&held);
			if ((ev->mask & IN_MOVED_FROM) && ev->cookie) {
				held.cookie = ev->cookie;
				snprintf(held.path, sizeof(held.path), "%s", path);
				continue;
			}
			if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
				kind = HS_NOTIFY_CREATED;
				if ((ev->mask & IN_ISDIR) &&
				    strlen(path) < PATH_MAX && watch_tree(path) < 0)
					send_all(HS_NOTIFY_OVERFLOW, "/", NULL);
			} else if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) {
				kind = HS_NOTIFY_REMOVED;
			} else {
				kind = HS_NOTIFY_CHANGED;
			}
			send_all(kind, path, NULL);
		}
		/* the IN_MOVED_TO of a move comes in the same read */
		flush_held(&held);
		pthread_mutex_unlock(&wlock);
		usleep(GATHER_MS * 1000);
	}
}

int hs_agent_watch_init(const char *root)
{
	if (!realpath(root, root_path))
		return -errno;
	if (!strcmp(root_path, "/"))
		root_path[0] = '\0';
	return 0;
}

int hs_agent_subscribe(struct hs_agent_sink *sink, const char *rel)
{
	struct sub *s = calloc(1, sizeof(*s));
	pthread_t th;
	int r = 0;

	if (!s)
		return -ENOMEM;
	if (rel[0] && snprintf(s->prefix, sizeof(s->prefix), "/%s", rel) >=
			      (int)sizeof(s->prefix)) {
		free(s);
		return -ENAMETOOLONG;
	}
	pthread_mutex_lock(&wlock);
	if (!started) {
		ifd = inotify_init1(IN_CLOEXEC);
		if (ifd < 0) {
			r = -errno;
		} else if (pthread_create(&th, NULL, watch_main, NULL)) {
			r = -EAGAIN;
		} else {
			pthread_detach(th);
			started = 1;
		}
	}
	/* only the subscriber's folder is watched (again: a folder watched
	 * before keeps its watch) */
	if (r == 0 && watch_tree(s->prefix) < 0)
		hs_warn("inotify: not every folder is watched "
			"(raise fs.inotify.max_user_watches)");
	if (r == 0) {
		s->sink = sink;
		s->next = subs;
		subs = s;
	}
	pthread_mutex_unlock(&wlock);
	if (r < 0)
		free(s);
	return r;
}

void hs_agent_unsubscribe(struct hs_agent_sink *sink)
{
	struct sub **pp, *s;

	pthread_mutex_lock(&wlock);
	for (pp = &subs; (s = *pp); pp = &s->next)
		if (s->sink == sink) {
			*pp = s->next;
			free(s);
			break;
		}
	pthread_mutex_unlock(&wlock);
}
