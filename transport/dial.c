/* SPDX-License-Identifier: MIT
 * transport/dial.c - TCP connect with a deadline (see dial.h).
 *
 * Steps: resolve (numeric literals at once, names on a helper thread the
 * caller waits for until its deadline), then for each address a
 * non-blocking connect() plus poll() for writability and SO_ERROR.  With
 * several addresses each attempt gets an equal share of the time left, so
 * one black-holed address cannot eat the whole budget; the last one gets
 * all that remains.
 *
 * The resolver thread owns half of a refcounted struct lookup: whoever
 * drops the last reference (the caller after a result, or the thread after
 * the caller gave up) frees it.  Nothing else is shared.
 *
 * Not handled: happy-eyeballs parallel attempts, source address binding,
 * proxies.
 */
#include "dial.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/vm_sockets.h>
#include <unistd.h>

void hs_dial_hostport(char *buf, size_t size, const char *host, int port)
{
	if (strchr(host, ':'))
		snprintf(buf, size, "[%s]:%d", host, port);
	else
		snprintf(buf, size, "%s:%d", host, port);
}

/* strerror() with a lowercase first letter, as messages want it. */
static void errtext(char *buf, size_t size, int e)
{
	char tmp[128];
	const char *s = strerror_r(e, tmp, sizeof(tmp));

	snprintf(buf, size, "%s", s);
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)(buf[0] - 'A' + 'a');
}

/* ---- name resolution on a helper thread ---- */

struct lookup {
	pthread_mutex_t lock;
	pthread_cond_t cond;  /* signalled when @done is set */
	int refs;             /* protected by @lock; 2 while both sides live */
	int done;             /* protected by @lock */
	int gai;              /* getaddrinfo() result, valid once @done */
	struct addrinfo *res; /* owned by whoever frees the lookup */
	char *host;
	char service[16];
};

static void lookup_put(struct lookup *lk)
{
	int last;

	pthread_mutex_lock(&lk->lock);
	last = --lk->refs == 0;
	pthread_mutex_unlock(&lk->lock);
	if (!last)
		return;
	if (lk->res)
		freeaddrinfo(lk->res);
	pthread_cond_destroy(&lk->cond);
	pthread_mutex_destroy(&lk->lock);
	free(lk->host);
	free(lk);
}

static const struct addrinfo tcp_hints = {
	.ai_family = AF_UNSPEC,
	.ai_socktype = SOCK_STREAM,
	.ai_protocol = IPPROTO_TCP,
	.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV,
};

static void *lookup_thread(void *arg)
{
	struct lookup *lk = arg;
	struct addrinfo *res = NULL;
	int gai = getaddrinfo(lk->host, lk->service, &tcp_hints, &res);

	pthread_mutex_lock(&lk->lock);
	lk->gai = gai;
	lk->res = res;
	lk->done = 1;
	pthread_cond_signal(&lk->cond);
	pthread_mutex_unlock(&lk->lock);
	lookup_put(lk);
	return NULL;
}

/* Resolves @host:@port into *@ret (caller frees with freeaddrinfo()).
 * Returns 0, a getaddrinfo() EAI_* code, or EAI_AGAIN/EAI_MEMORY/EAI_SYSTEM
 * when @dl passed or the helper could not start. */
static int resolve(const char *host, int port, hs_deadline_t dl,
		   struct addrinfo **ret, int *timed_out)
{
	struct addrinfo hints = tcp_hints;
	struct lookup *lk;
	struct timespec ts;
	pthread_attr_t attr;
	pthread_t tid;
	char service[16];
	int r;

	*timed_out = 0;
	snprintf(service, sizeof(service), "%d", port);
	hints.ai_flags |= AI_NUMERICHOST;
	hints.ai_flags &= ~AI_ADDRCONFIG;
	r = getaddrinfo(host, service, &hints, ret);
	if (r != EAI_NONAME)
		return r; /* a literal address, or a hard error */

	lk = calloc(1, sizeof(*lk));
	if (!lk)
		return EAI_MEMORY;
	lk->host = strdup(host);
	if (!lk->host) {
		free(lk);
		return EAI_MEMORY;
	}
	memcpy(lk->service, service, sizeof(service));
	pthread_mutex_init(&lk->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&lk->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	lk->refs = 2;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&tid, &attr, lookup_thread, lk);
	pthread_attr_destroy(&attr);
	if (r) {
		lk->refs = 1;
		lookup_put(lk);
		return EAI_SYSTEM;
	}

	ts = hs_deadline_ts(dl);
	pthread_mutex_lock(&lk->lock);
	while (!lk->done) {
		if (pthread_cond_timedwait(&lk->cond, &lk->lock, &ts) ==
		    ETIMEDOUT && !lk->done)
			break;
	}
	if (lk->done) {
		r = lk->gai;
		*ret = lk->res;
		lk->res = NULL;
	} else {
		*timed_out = 1;
		r = EAI_AGAIN;
	}
	pthread_mutex_unlock(&lk->lock);
	lookup_put(lk);
	return r;
}

/* ---- connecting ---- */

/* Connects the non-blocking socket @fd to @sa before @dl.  0 or -errno. */
static int connect_addr(int fd, const struct sockaddr *sa, socklen_t salen,
			hs_deadline_t dl)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	socklen_t len = sizeof(int);
	int e = 0, r;

	if (connect(fd, sa, salen) == 0)
		return 0;
	if (errno != EINPROGRESS && errno != EINTR)
		return -errno;
	for (;;) {
		r = poll(&pfd, 1, hs_deadline_ms_left(dl));
		if (r > 0)
			break;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r == 0 && hs_deadline_passed(dl))
			return -ETIMEDOUT;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		return -errno;
	return e ? -e : 0;
}

static void tune_tcp(int fd)
{
	int one = 1;

	/* Both are best effort: a failure costs latency, not correctness. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

int hs_dial_tcp(const char *host, int port, hs_deadline_t dl, char *err,
		size_t errlen)
{
	struct addrinfo *res = NULL, *ai;
	char hp[300], why[128];
	int gai, timed_out, n = 0, r = -EHOSTUNREACH, fd;

	if (!host || !*host || port <= 0 || port > 65535) {
		snprintf(err, errlen, "invalid address '%s:%d'",
			 host ? host : "", port);
		return -EINVAL;
	}
	hs_dial_hostport(hp, sizeof(hp), host, port);

	gai = resolve(host, port, dl, &res, &timed_out);
	if (gai) {
		if (timed_out)
			snprintf(err, errlen,
				 "cannot resolve host '%s': timed out", host);
		else if (gai == EAI_SYSTEM)
			snprintf(err, errlen, "cannot resolve host '%s': %s",
				 host, strerror(errno));
		else {
			snprintf(why, sizeof(why), "%s", gai_strerror(gai));
			if (why[0] >= 'A' && why[0] <= 'Z')
				why[0] = (char)(why[0] - 'A' + 'a');
			snprintf(err, errlen, "cannot resolve host '%s': %s",
				 host, why);
		}
		return gai == EAI_MEMORY ? -ENOMEM :
		       timed_out	 ? -ETIMEDOUT :
					   -EHOSTUNREACH;
	}

	for (ai = res; ai; ai = ai->ai_next)
		n++;
	for (ai = res; ai; ai = ai->ai_next, n--) {
		hs_deadline_t adl = dl;
		int64_t now = hs_now_ns();

		if (n > 1 && dl != HS_DEADLINE_NEVER && dl > now)
			adl = now + (dl - now) / n;
		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		r = connect_addr(fd, ai->ai_addr, ai->ai_addrlen, adl);
		if (r == 0) {
			tune_tcp(fd);
			freeaddrinfo(res);
			return fd;
		}
		close(fd);
		if (hs_deadline_passed(dl))
			break;
	}
	freeaddrinfo(res);
	errtext(why, sizeof(why), -r);
	snprintf(err, errlen, "cannot connect to '%s': %s", hp, why);
	return r;
}

/* Connects a fresh non-blocking socket of @family to @sa; shared by the
 * unix and vsock dialers. */
static int dial_sockaddr(int family, const struct sockaddr *sa,
			 socklen_t salen, const char *what, hs_deadline_t dl,
			 char *err, size_t errlen)
{
	char why[128];
	int fd, r;

	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		errtext(why, sizeof(why), -r);
		snprintf(err, errlen, "cannot connect to '%s': %s", what, why);
		return r;
	}
	r = connect_addr(fd, sa, salen, dl);
	if (r == 0)
		return fd;
	close(fd);
	errtext(why, sizeof(why), -r);
	snprintf(err, errlen, "cannot connect to '%s': %s", what, why);
	/* a missing socket file is "nobody listens there" */
	return r == -ENOENT ? -ECONNREFUSED : r;
}

int hs_dial_unix(const char *path, hs_deadline_t dl, char *err,
		 size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char what[sizeof(sa.sun_path) + 8];

	if (!path || !*path || strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "invalid unix socket path '%s'",
			 path ? path : "");
		return -EINVAL;
	}
	strcpy(sa.sun_path, path);
	snprintf(what, sizeof(what), "unix:%s", path);
	return dial_sockaddr(AF_UNIX, (const struct sockaddr *)&sa, sizeof(sa),
			     what, dl, err, errlen);
}

int hs_dial_vsock(unsigned cid, unsigned port, hs_deadline_t dl, char *err,
		  size_t errlen)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = cid,
				  .svm_port = port };
	char what[64];

	snprintf(what, sizeof(what), "vsock:%u:%u", cid, port);
	return dial_sockaddr(AF_VSOCK, (const struct sockaddr *)&sa, sizeof(sa),
			     what, dl, err, errlen);
}
