/* SPDX-License-Identifier: MIT
 * transport/agent.c - the agent wire: struct hs_transport speaking the
 * hostshare agent protocol (docs/protocol.md, codec in common/proto.c) over
 * a TCP, unix or vsock stream.
 *
 * Pipelining.  Any number of threads may call in at once.  Each call
 * registers a struct pending under a fresh request id (lock), sends its
 * frame (wlock, taken against the caller's deadline: a caller that cannot
 * get it in time gets -ETIMEDOUT and the connection stays healthy), and
 * waits on its own condition variable.  One reader thread reads every
 * frame, finds the pending request by id and hands it the decompressed
 * payload (the frames of a multi-frame reply are appended).  Replies may
 * come in any order.  pwrite splits big buffers into HS_AG_CHUNK requests
 * that are all in flight together.
 *
 * Broken.  A deadline passing while a frame is half sent or a reply is
 * awaited, a read or write error, end of stream, or a frame that breaks the
 * protocol sets base.broken with a reason in last_error; waiters are woken
 * with -ECONNRESET / -EPROTO / -ETIMEDOUT and every later call gets
 * -ENOTCONN.  A host refusal (a non-zero status) leaves it usable.
 *
 * Lock order: wlock before lock.  lock guards the pending list, next_id,
 * the file list and the counters; never held across I/O.
 */
#include "agent_i.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/proto.h"
#include "dial.h"
#include "sftp_i.h"

#define HS_AG_CHUNK (1u << 20)  /* bytes per PWRITE/PREAD request */
#define HS_AG_WINDOW 8          /* PWRITE requests in flight per call */
#define CLOSE_GRACE_MS 200

struct pending {
	struct pending *next;
	uint32_t id;
	int done;             /* protected by lock */
	int status;           /* 0 or -errno, valid once done */
	struct hs_pbuf reply; /* concatenated decompressed payloads */
	pthread_cond_t cv;
};

struct hs_tr_file {
	struct hs_tr_file *prev, *next;
	uint64_t fh;
};

struct agent_tr {
	struct hs_transport base;
	int fd;
	char *root;              /* "" or "/dir" (no trailing '/') */
	uint32_t features;       /* negotiated */
	int compress;            /* send compressed payloads */
	pthread_mutex_t wlock;   /* one frame on the wire at a time */
	pthread_mutex_t lock;
	struct pending *pending; /* protected by lock */
	uint32_t next_id;        /* protected by lock */
	struct hs_tr_file files; /* open files; protected by lock */
	int reader_started;
	pthread_t reader;
	uint64_t bytes_out, bytes_in; /* on the wire; protected by lock */
	struct hs_ssh_stream *ssh;    /* HS_TR_AGENT_SSH: the channel pump */
	hs_tr_notify_fn notify;    /* set by ag_subscribe(); protected by lock */
	void *notify_arg;
};

static struct agent_tr *to_ag(struct hs_transport *t)
{
	return container_of(t, struct agent_tr, base);
}

/* Marks the connection broken (first reason wins) and wakes every waiter
 * with @r.  Returns @r. */
static int __attribute__((format(printf, 3, 4)))
broke(struct agent_tr *s, int r, const char *fmt, ...)
{
	struct pending *p;
	va_list ap;

	pthread_mutex_lock(&s->lock);
	if (!s->base.broken) {
		va_start(ap, fmt);
		vsnprintf(s->base.last_error, sizeof(s->base.last_error), fmt,
			  ap);
		va_end(ap);
		s->base.broken = 1;
		hs_info("agent: %s", s->base.last_error);
	}
	for (p = s->pending; p; p = p->next)
		if (!p->done) {
			p->done = 1;
			p->status = r;
			pthread_cond_signal(&p->cv);
		}
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* ---- raw I/O ---- */

/* Reads exactly @n bytes (reader thread; no deadline: close() shuts the
 * socket down to end it).  0 or -errno. */
static int read_full(struct agent_tr *s, void *buf, size_t n)
{
	struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
	uint8_t *p = buf;
	ssize_t r;

	while (n) {
		r = read(s->fd, p, n);
		if (r > 0) {
			p += r;
			n -= (size_t)r;
			continue;
		}
		if (r == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
			return -errno;
	}
	return 0;
}

/* ---- requests ---- */

static struct pending *pending_new(struct agent_tr *s)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	hs_cond_init_monotonic(&p->cv);
	hs_pbuf_init(&p->reply);
	p->reply.unbounded = 1; /* listings span many frames */
	pthread_mutex_lock(&s->lock);
	if (++s->next_id == 0)
		s->next_id = 1;
	p->id = s->next_id;
	p->next = s->pending;
	s->pending = p;
	if (s->base.broken) {
		p->done = 1;
		p->status = -ENOTCONN;
	}
	pthread_mutex_unlock(&s->lock);
	return p;
}

static void pending_free(struct agent_tr *s, struct pending *p)
{
	struct pending **pp;

	if (!p)
		return;
	pthread_mutex_lock(&s->lock);
	for (pp = &s->pending; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	pthread_mutex_unlock(&s->lock);
	pthread_cond_destroy(&p->cv);
	hs_pbuf_release(&p->reply);
	free(p);
}

/* Sends @op with payload @b under @p's id.  0 or -errno (broken unless
 * the wire lock was not had in time). */
static int send_req(struct agent_tr *s, struct pending *p, uint8_t op,
		    const struct hs_pbuf *b, hs_deadline_t dl)
{
	struct hs_proto_hdr h = { .len = (uint32_t)b->len,
				  .raw_len = (uint32_t)b->len, .id = p->id,
				  .op = op };
	uint8_t hb[HS_PROTO_HDR_SIZE], *z = NULL;
	const uint8_t *body = b->p;
	struct timespec ts = hs_deadline_ts(dl);
	struct iovec iov[2];
	int r, started;

	if (b->err)
		return b->err == -E2BIG ? -ENAMETOOLONG : b->err;
	if (s->compress && hs_proto_compressible(b->p, b->len)) {
		size_t cap = hs_proto_compress_bound(b->len), n;

		z = malloc(cap);
		if (z && (n = hs_proto_compress(b->p, b->len, z, cap))) {
			h.len = (uint32_t)n;
			h.flags = HS_PF_LZ4;
			body = z;
		}
	}
	hs_proto_hdr_encode(&h, hb);
	iov[0] = (struct iovec){ hb, sizeof(hb) };
	iov[1] = (struct iovec){ (void *)body, h.len };
	r = pthread_mutex_clocklock(&s->wlock, CLOCK_MONOTONIC, &ts);
	if (r) {
		free(z);
		return -ETIMEDOUT;
	}
	if (s->base.broken) {
		pthread_mutex_unlock(&s->wlock);
		free(z);
		return -ENOTCONN;
	}
	r = hs_send_by(s->fd, iov, h.len ? 2 : 1, dl, &started);
	pthread_mutex_unlock(&s->wlock);
	free(z);
	if (r == 0) {
		pthread_mutex_lock(&s->lock);
		s->bytes_out += HS_PROTO_HDR_SIZE + h.len;
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	if (r == -ETIMEDOUT && !started)
		return r;
	if (r == -ETIMEDOUT)
		return broke(s, r, "sending a %s request timed out",
			     hs_proto_op_name(op));
	return broke(s, r == -EPIPE ? -ECONNRESET : r,
		     "cannot send to the agent: %s", strerror(-r));
}

/* Waits for @p's reply until @dl.  0 or -errno. */
static int wait_reply(struct agent_tr *s, struct pending *p, uint8_t op,
		      hs_deadline_t dl)
{
	struct timespec ts = hs_deadline_ts(dl);
	int r = 0;

	pthread_mutex_lock(&s->lock);
	while (!p->done && r != ETIMEDOUT)
		r = pthread_cond_timedwait(&p->cv, &s->lock, &ts);
	if (p->done) {
		r = p->status;
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	pthread_mutex_unlock(&s->lock);
	return broke(s, -ETIMEDOUT, "no answer to a %s request in time",
		     hs_proto_op_name(op));
}

/* One request, one reply: sends @b as @op and waits.  On success the
 * reply payload is in (*ret)->reply; the caller frees *ret with
 * pending_free().  The status of the reply is returned (-errno). */
static int call(struct agent_tr *s, uint8_t op, const struct hs_pbuf *b,
		hs_deadline_t dl, struct pending **ret)
{
	struct pending *p = pending_new(s);
	int r;

	*ret = NULL;
	if (!p)
		return -ENOMEM;
	r = send_req(s, p, op, b, dl);
	if (r == 0)
		r = wait_reply(s, p, op, dl);
	if (r < 0 && r != -ENOMEM) {
		pending_free(s, p);
		return r;
	}
	*ret = p;
	return r;
}

/* A call whose reply carries nothing the caller needs. */
static int call0(struct agent_tr *s, uint8_t op, struct hs_pbuf *b,
		 hs_deadline_t dl)
{
	struct pending *p;
	int r = call(s, op, b, dl, &p);

	pending_free(s, p);
	hs_pbuf_release(b);
	return r;
}

/* ---- the reader thread ---- */

static int status_errno(uint16_t st)
{
	/* Linux errno numbers; anything outside the known range is EIO */
	return st > 0 && st < 134 ? -(int)st : -EIO;
}

/* Makes host path @path relative to the mounted folder: NULL when it is
 * outside. */
static const char *below_root(const struct agent_tr *s, const char *path)
{
	size_t n = strlen(s->root);

	if (n && (strncmp(path, s->root, n) || (path[n] && path[n] != '/')))
		return NULL;
	return path[n] ? path + n : "/";
}

/* Decodes a NOTIFY frame's payload and hands the event to the subscriber,
 * with paths made relative to the mounted folder.  A move from outside the
 * folder is a creation, a move out of it a removal; other events outside
 * it are dropped. */
static void deliver(struct agent_tr *s, const struct hs_proto_hdr *h,
		    const uint8_t *wire)
{
	char path[HS_PROTO_MAX_STR + 1], to[HS_PROTO_MAX_STR + 1];
	uint8_t *raw = malloc(h->raw_len + 1);
	const char *p, *q = NULL, *why;
	hs_tr_notify_fn fn;
	struct hs_prd rd;
	uint32_t kind;
	void *arg;

	pthread_mutex_lock(&s->lock);
	fn = s->notify;
	arg = s->notify_arg;
	pthread_mutex_unlock(&s->lock);
	if (!raw || !fn || hs_proto_payload_decode(h, wire, raw, &why) < 0)
		goto out;
	hs_prd_init(&rd, raw, h->raw_len);
	kind = hs_prd_u32(&rd);
	hs_prd_str(&rd, path, sizeof(path));
	if (kind == HS_NOTIFY_MOVED)
		hs_prd_str(&rd, to, sizeof(to));
	if (hs_prd_end(&rd) < 0)
		goto out;
	if (kind == HS_NOTIFY_OVERFLOW) {
		fn(arg, kind, "/", NULL);
		goto out;
	}
	p = below_root(s, path);
	if (kind == HS_NOTIFY_MOVED) {
		q = below_root(s, to);
		if (!p && !q)
			goto out;
		if (!p || !q) {
			kind = p ? HS_NOTIFY_REMOVED : HS_NOTIFY_CREATED;
			p = p ? p : q;
			q = NULL;
		}
	}
	if (p)
		fn(arg, kind, p, q);
out:
	free(raw);
}

static void *reader_main(void *arg)
{
	struct agent_tr *s = arg;
	uint8_t hb[HS_PROTO_HDR_SIZE];
	uint8_t *wire = malloc(HS_PROTO_MAX_PAYLOAD);
	struct hs_proto_hdr h;
	struct pending *p;
	const char *why;
	uint8_t *dst;
	int r;

	if (!wire) {
		broke(s, -ENOMEM, "out of memory");
		return NULL;
	}
	for (;;) {
		r = read_full(s, hb, sizeof(hb));
		if (r < 0) {
			broke(s, -ECONNRESET, "connection to the agent lost: %s",
			      r == -ECONNRESET ? "closed by the host" :
						 strerror(-r));
			break;
		}
		if (hs_proto_hdr_decode(hb, &h, &why) < 0 ||
		    (why = "frame without the reply flag",
		     !(h.flags & HS_PF_REPLY)) ||
		    (why = "compressed frame without lz4 negotiated",
		     (h.flags & HS_PF_LZ4) && !(s->features & HS_FEAT_LZ4))) {
			broke(s, -EPROTO, "protocol error from the agent: %s",
			      why);
			break;
		}
		r = read_full(s, wire, h.len);
		if (r < 0) {
			broke(s, -ECONNRESET, "connection to the agent lost "
					      "inside a frame");
			break;
		}
		pthread_mutex_lock(&s->lock);
		s->bytes_in += HS_PROTO_HDR_SIZE + h.len;
		for (p = s->pending; p && p->id != h.id; p = p->next)
			;
		if (!p || p->done) {
			/* a notification, or the answer to a request whose
			 * caller gave up (the link is broken then) */
			pthread_mutex_unlock(&s->lock);
			if (h.id == 0 && h.op == HS_OP_NOTIFY)
				deliver(s, &h, wire);
			continue;
		}
		/* p stays registered while not done; its owner frees it
		 * only after taking lock, so the payload is decoded under
		 * lock */
		dst = h.raw_len ? hs_pbuf_grow(&p->reply, h.raw_len) : wire;
		if (!dst || (h.raw_len &&
			     hs_proto_payload_decode(&h, wire, dst, &why) < 0)) {
			pthread_mutex_unlock(&s->lock);
			if (!dst)
				why = "reply too long";
			broke(s, -EPROTO, "protocol error from the agent: %s",
			      why);
			break;
		}
		if (h.flags & HS_PF_MORE) {
			pthread_mutex_unlock(&s->lock);
			continue;
		}
		{
			p->done = 1;
			p->status = h.status ? status_errno(h.status) : 0;
			pthread_cond_signal(&p->cv);
		}
		pthread_mutex_unlock(&s->lock);
	}
	free(wire);
	return NULL;
}

/* ---- paths ---- */

/* Writes root + @path into @buf.  0 or -ENAMETOOLONG / -EINVAL. */
static int full_path(struct agent_tr *s, const char *path, char *buf,
		     size_t size)
{
	int n;

	if (!path || path[0] != '/')
		return -EINVAL;
	if (!s->root[0])
		n = snprintf(buf, size, "%s", path);
	else if (!strcmp(path, "/"))
		n = snprintf(buf, size, "%s", s->root);
	else
		n = snprintf(buf, size, "%s%s", s->root, path);
	return n < 0 || (size_t)n >= size || n > HS_PROTO_MAX_STR ?
		       -ENAMETOOLONG : 0;
}

/* A request whose payload is one path. */
static int path_req(struct agent_tr *s, uint8_t op, const char *path,
		    struct hs_pbuf *b)
{
	char full[HS_PROTO_MAX_STR + 1];
	int r = full_path(s, path, full, sizeof(full));

	hs_pbuf_init(b);
	if (r < 0)
		return r;
	hs_pbuf_str(b, full);
	return 0;
}

/* ---- slots ---- */

static int ag_lstat(struct hs_transport *t, const char *path,
		    struct hs_attr *ret, hs_deadline_t dl)
{
	struct agent_tr *s = to_ag(t);
	struct pending *p = NULL;
	struct hs_pbuf b;
	struct hs_prd rd;
	int r = path_req(s, HS_OP_LSTAT, path, &b);

	if (r == 0)
		r = call(s, HS_OP_LSTAT, &b, dl, &p);
	hs_pbuf_release(&b);
	if (r == 0) {
		hs_prd_init(&rd, p->reply.p, p->reply.len);
		hs_prd_attr(&rd, ret);
		if (hs_prd_end(&rd) < 0)
			r = broke(s, -EPROTO, "malformed lstat reply");
	}
	pending_free(s, p);
	return r;
}

struct dirent_list {
	uint8_t *buf;
	size_t len;
};

static int ag_readdir(struct hs_transport *t, const char *path,
		      hs_tr_dirent_fn fn, void *arg, hs_deadline_t dl)
{
	struct agent_tr *s = to_ag(t);
	struct pending *p = NULL;
	char name[HS_PROTO_MAX_STR + 1];
	struct hs_attr a;
	struct hs_pbuf b;
	struct hs_prd rd;
	uint32_t n;
	int r = path_req(s, HS_OP_READDIR, path, &b);

	if (r == 0)
		r = call(s, HS_OP_READDIR, &b, dl, &p);
	hs_pbuf_release(&b);
	if (r < 0) {
		pending_free(s, p);
		return r;
	}
	/* the whole listing is here: the callback may call back in */
	hs_prd_init(&rd, p->reply.p, p->reply.len);
	while (r == 0 && rd.pos < rd.len && !rd.err) {
		n = hs_prd_u32(&rd);
		while (n-- && !rd.err && r == 0) {
			hs_prd_str(&rd, name, sizeof(name));
			hs_prd_attr(&rd, &a);
			if (rd.err)
				break;
			if (!name[0] || strchr(name, '/') ||
			    !strcmp(name, ".") || !strcmp(name, "..")) {
				rd.err = -EPROTO;
				break;
			}
			r = fn(arg, name, &a);
		}
	}
	if (r == 0 && rd.err)
		r = broke(s, -EPROTO, "malformed listing from the agent");
	pending_free(s, p);
	return r;
}

static uint32_t wire_open_flags(int flags)
{
	uint32_t f = 0;

	switch (flags & O_ACCMODE) {
	case O_RDONLY: f = HS_POPEN_READ; break;
	case O_WRONLY: f = HS_POPEN_WRITE; break;
	default: f = HS_POPEN_READ | HS_POPEN_WRITE; break;
	}
	if (flags & O_CREAT)
		f |= HS_POPEN_CREAT;
	if (flags & O_EXCL)
		f |= HS_POPEN_EXCL;
	if (flags & O_TRUNC)
		f |= HS_POPEN_TRUNC;
	if (flags & O_APPEND)
		f |= HS_POPEN_APPEND;
	return f;
}

static int ag_open(struct hs_transport *t, const char *path, int flags,
		   uint32_t mode, struct hs_tr_file **ret, hs_deadline_t dl)
{
	struct agent_tr *s = to_ag(t);
	struct pending *p = NULL;
	struct hs_tr_file *f;
	struct hs_pbuf b;
	struct hs_prd rd;
	uint64_t fh;
	int r = path_req(s, HS_OP_OPEN, path, &b);

	*ret = NULL;
	hs_pbuf_u32(&b, wire_open_flags(flags));
	hs_pbuf_u32(&b, mode & 07777);
	if (r == 0)
		r = call(s, HS_OP_OPEN, &b, dl, &p);
	hs_pbuf_release(&b);
	if (r < 0) {
		pending_free(s, p);
		return r;
	}
	hs_prd_init(&rd, p->reply.p, p->reply.len);
	fh = hs_prd_u64(&rd);
	r = hs_prd_end(&rd);
	pending_free(s, p);
	if (r < 0)
		return broke(s, -EPROTO, "malformed open reply");
	f = calloc(1, sizeof(*f));
	if (!f) {
		/* the handle dies with the connection */
		return -ENOMEM;
	}
	f->fh = fh;
	pthread_mutex_lock(&s->lock);
	f->next = s->files.next;
	f->prev = &s->files;
	f->next->prev = f;
	s->files.next = f;
	pthread_mutex_unlock(&s->lock);
	*ret = f;
	return 0;
}

static ssize_t ag_pread(struct hs_transport *t, struct hs_tr_file *f,
			void *buf, size_t len, uint64_t off, hs_deadline_t dl)
{
	struct agent_tr *s = to_ag(t);
	struct pending *p[HS_AG_WINDOW] = { 0 };
	size_t done = 0, want, i, n = 0;
	struct hs_pbuf b;
	ssize_t r = 0;
	int err, stop = 0;

	/* up to HS_AG_WINDOW chunks in flight; stop at the first short one */
	while (done < len && n < HS_AG_WINDOW) {
		want = HS_MIN(len - done, HS_AG_CHUNK);
		hs_pbuf_init(&b);
		hs_pbuf_u64(&b, f->fh);
		hs_pbuf_u64(&b, off + done);
		hs_pbuf_u32(&b, (uint32_t)want);
		p[n] = pending_new(s);
		if (!p[n]) {
			hs_pbuf_release(&b);
			r = -ENOMEM;
			break;
		}
		r = send_req(s, p[n], HS_OP_PREAD, &b, dl);
		hs_pbuf_release(&b);
		n++;
		if (r < 0)
			break;
		done += want;
	}
	err = (int)r;
	done = 0;
	for (i = 0; i < n; i++) {
		if (!err && !stop) {
			int e = wait_reply(s, p[i], HS_OP_PREAD, dl);

			want = HS_MIN(len - done, HS_AG_CHUNK);
			if (e < 0) {
				err = e;
			} else if (p[i]->reply.len > want) {
				err = broke(s, -EPROTO, "read reply too long");
			} else {
				if (p[i]->reply.len)
					memcpy((uint8_t *)buf + done,
					       p[i]->reply.p, p[i]->reply.len);
				done += p[i]->reply.len;
				stop = p[i]->reply.len < want;
			}
		}
		pending_free(s, p[i]);
	}
	if (err && (hs_tr_err_is_link(err) || !done))
		return err;
	return (ssize_t)done;
}

static ssize_t ag_pwrite(struct hs_transport *t, struct hs_tr_file *f,
			 const void *buf, size_t len, uint64_t off,
			 hs_deadline_t dl)
{
	struct agent_tr *s = to_ag(t);
	struct pending *p[HS_AG_WINDOW];
	size_t sent_len[HS_AG_WINDOW];
	size_t sent = 0, acked = 0, head = 0, tail = 0;
	struct hs_pbuf b;
	struct hs_prd rd;
	int err = 0;

	/* a sliding window of HS_AG_WINDOW chunks in flight */
	while (!err && (acked < len || len == 0)) {
		while (!err && sent < len && head - tail < HS_AG_WINDOW) {
			size_t n = HS_MIN(len - sent, HS_AG_CHUNK);
			struct pending *q = pending_new(s);

			if (!q) {
				err = -ENOMEM;
				break;
			}
			hs_pbuf_init(&b);
			hs_pbuf_u64(&b, f->fh);
			hs_pbuf_u64(&b, off + sent);
			hs_pbuf_bytes(&b, (const uint8_t *)buf + sent, n);
			err = send_req(s, q, HS_OP_PWRITE, &b, dl);
			hs_pbuf_release(&b);
			p[head % HS_AG_WINDOW] = q;
			sent_len[head % HS_AG_WINDOW] = n;
			head++;
			if (!err)
				sent += n;
		}
		if (head == tail)
			break;
		if (!err) {
			struct pending *q = p[tail % HS_AG_WINDOW];

			err = wait_reply(s, q, HS_OP_PWRITE, dl);
			if (!err) {
				hs_prd_init(&rd, q->reply.p, q->reply.len);
				if (hs_prd_u32(&rd) !=
					    sent_len[tail % HS_AG_WINDOW] ||
				    hs_prd_end(&rd) < 0)
					err = broke(s, -EPROTO,
						    "malformed write reply");
				else
					acked += sent_len[tail % HS_AG_WINDOW];
			}
		}
		pending_free(s, p[tail % HS_AG_WINDOW]);
		tail++;
		if (err)
			while (tail < head) {
				pending_free(s, p[tail % HS_AG_WINDOW]);
				tail++;
			}
	}
	return err ? err : (ssize_t)len;
}

static int fh_call(struct hs_transport *t, struct hs_tr_file *f, uint8_t op,
		   hs_deadline_t dl)
{
	struct hs_pbuf b;

	hs_pbuf_init(&b);
	hs_pbuf_u64(&b, f->fh);
	return call0(to_ag(t), op, &b, dl);
}

static int ag_fsync(struct hs_transport *t, struct hs_tr_file *f,
		    hs_deadline_t dl)
{
	return fh_call(t, f, HS_OP_FSYNC, dl);
}

static int ag_fclose(struct hs_transport *t, struct hs_tr_file *f,
		     hs_deadline_t dl)
{
	struct agent_tr *s = to_ag(t);
	int r = 0;

	if (!s->base.broken && !hs_deadline_passed(dl))
		r = fh_call(t, f, HS_OP_CLOSE, dl);
	else if (s->base.broken)
		r = -ENOTCONN;
	else
		r = -ETIMEDOUT;
	pthread_mutex_lock(&s->lock);
	f->prev->next = f->next;
	f->next->prev = f->prev;
	pthread_mutex_unlock(&s->lock);
	free(f);
	return r;
}

static int ag_setattr(struct hs_transport *t, const char *path,
		      const struct hs_attr *attr, hs_deadline_t dl)
{
	struct agent_tr *s = to_ag(t);
	struct hs_pbuf b;
	int r = path_req(s, HS_OP_SETATTR, path, &b);

	hs_pbuf_attr(&b, attr);
	if (r < 0) {
		hs_pbuf_release(&b);
		return r;
	}
	return call0(s, HS_OP_SETATTR, &b, dl);
}

static int ag_mkdir(struct hs_transport *t, const char *path, uint32_t mode,
		    hs_deadline_t dl)
{
	struct agent_tr *s = to_ag(t);
	struct hs_pbuf b;
	int r = path_req(s, HS_OP_MKDIR, path, &b);

	hs_pbuf_u32(&b, mode & 07777);
	if (r < 0) {
		hs_pbuf_release(&b);
		return r;
	}
	return call0(s, HS_OP_MKDIR, &b, dl);
}

static int simple_path(struct hs_transport *t, uint8_t op, const char *path,
		       hs_deadline_t dl)
{
	struct agent_tr *s = to_ag(t);
	struct hs_pbuf b;
	int r = path_req(s, op, path, &b);

	if (r < 0) {
		hs_pbuf_release(&b);
		return r;
	}
	return call0(s, op, &b, dl);
}

static int ag_rmdir(struct hs_transport *t, const char *path,
		    hs_deadline_t dl)
{
	return simple_path(t, HS_OP_RMDIR, path, dl);
}

static int ag_unlink(struct hs_transport *t, const char *path,
		     hs_deadline_t dl)
{
	return simple_path(t, HS_OP_UNLINK, path, dl);
}

/* A request with two strings (the first a path unless @raw_first) and an
 * optional trailing u32. */
static int two_paths(struct hs_transport *t, uint8_t op, const char *a,
		     int raw_first, const char *bpath, int with_flags,
		     uint32_t flags, hs_deadline_t dl)
{
	struct agent_tr *s = to_ag(t);
	char fa[HS_PROTO_MAX_STR + 1], fb[HS_PROTO_MAX_STR + 1];
	struct hs_pbuf b;
	int r;

	if (raw_first) {
		if (strlen(a) > HS_PROTO_MAX_STR)
			return -ENAMETOOLONG;
		snprintf(fa, sizeof(fa), "%s", a);
		r = 0;
	} else {
		r = full_path(s, a, fa, sizeof(fa));
	}
	if (r == 0)
		r = full_path(s, bpath, fb, sizeof(fb));
	if (r < 0)
		return r;
	hs_pbuf_init(&b);
	hs_pbuf_str(&b, fa);
	hs_pbuf_str(&b, fb);
	if (with_flags)
		hs_pbuf_u32(&b, flags);
	return call0(s, op, &b, dl);
}

static int ag_rename(struct hs_transport *t, const char *from, const char *to,
		     unsigned flags, hs_deadline_t dl)
{
	return two_paths(t, HS_OP_RENAME, from, 0, to, 1,
			 flags & HS_RENAME_NOREPLACE, dl);
}

static int ag_symlink(struct hs_transport *t, const char *target,
		      const char *path, hs_deadline_t dl)
{
	return two_paths(t, HS_OP_SYMLINK, target, 1, path, 0, 0, dl);
}

static int ag_link(struct hs_transport *t, const char *oldpath,
		   const char *newpath, hs_deadline_t dl)
{
	return two_paths(t, HS_OP_LINK, oldpath, 0, newpath, 0, 0, dl);
}

static int ag_readlink(struct hs_transport *t, const char *path, char *buf,
		       size_t size, hs_deadline_t dl)
{
	struct agent_tr *s = to_ag(t);
	char target[HS_PROTO_MAX_STR + 1];
	struct pending *p = NULL;
	struct hs_pbuf b;
	struct hs_prd rd;
	int r = path_req(s, HS_OP_READLINK, path, &b);

	if (r == 0)
		r = call(s, HS_OP_READLINK, &b, dl, &p);
	hs_pbuf_release(&b);
	if (r == 0) {
		hs_prd_init(&rd, p->reply.p, p->reply.len);
		hs_prd_str(&rd, target, sizeof(target));
		if (hs_prd_end(&rd) < 0) {
			r = broke(s, -EPROTO, "malformed readlink reply");
		} else {
			if (size)
				snprintf(buf, size, "%s", target);
			r = (int)strlen(target);
		}
	}
	pending_free(s, p);
	return r;
}

static int ag_statvfs(struct hs_transport *t, const char *path,
		      struct hs_statvfs *ret, hs_deadline_t dl)
{
	struct agent_tr *s = to_ag(t);
	struct pending *p = NULL;
	struct hs_pbuf b;
	struct hs_prd rd;
	int r = path_req(s, HS_OP_STATVFS, path, &b);

	if (r == 0)
		r = call(s, HS_OP_STATVFS, &b, dl, &p);
	hs_pbuf_release(&b);
	if (r == 0) {
		hs_prd_init(&rd, p->reply.p, p->reply.len);
		ret->bsize = hs_prd_u64(&rd);
		ret->frsize = hs_prd_u64(&rd);
		ret->blocks = hs_prd_u64(&rd);
		ret->bfree = hs_prd_u64(&rd);
		ret->bavail = hs_prd_u64(&rd);
		ret->files = hs_prd_u64(&rd);
		ret->ffree = hs_prd_u64(&rd);
		ret->favail = hs_prd_u64(&rd);
		ret->namemax = hs_prd_u64(&rd);
		if (hs_prd_end(&rd) < 0)
			r = broke(s, -EPROTO, "malformed statvfs reply");
	}
	pending_free(s, p);
	return r;
}

static int ag_ping(struct hs_transport *t, hs_deadline_t dl)
{
	struct hs_pbuf b;

	hs_pbuf_init(&b);
	return call0(to_ag(t), HS_OP_PING, &b, dl);
}

static int ag_put_file(struct hs_transport *t, const char *path,
		       uint32_t mode, int64_t atime_ns, int64_t mtime_ns,
		       unsigned flags, const void *data, size_t len,
		       struct hs_attr *ret, hs_deadline_t dl)
{
	struct agent_tr *s = to_ag(t);
	struct pending *p = NULL;
	struct hs_pbuf b;
	struct hs_prd rd;
	int r;

	if (!(s->features & HS_FEAT_BATCH))
		return -ENOTSUP;
	if (len > HS_PROTO_MAX_IO)
		return -EFBIG;
	r = path_req(s, HS_OP_PUT_FILE, path, &b);
	hs_pbuf_u32(&b, mode & 07777);
	hs_pbuf_u64(&b, (uint64_t)atime_ns);
	hs_pbuf_u64(&b, (uint64_t)mtime_ns);
	hs_pbuf_u32(&b, flags & HS_RENAME_NOREPLACE);
	hs_pbuf_bytes(&b, data, len);
	if (r == 0)
		r = call(s, HS_OP_PUT_FILE, &b, dl, &p);
	hs_pbuf_release(&b);
	if (r == 0) {
		struct hs_attr a;

		hs_prd_init(&rd, p->reply.p, p->reply.len);
		hs_prd_attr(&rd, &a);
		if (hs_prd_end(&rd) < 0)
			r = broke(s, -EPROTO, "malformed put reply");
		else if (ret)
			*ret = a;
	}
	pending_free(s, p);
	return r;
}

/* The sub-requests of @ops as one BATCH payload in @b. */
static int batch_encode(struct agent_tr *s, const struct hs_tr_op *ops,
			int n, struct hs_pbuf *b)
{
	char full[HS_PROTO_MAX_STR + 1];
	int k, r;

	hs_pbuf_u32(b, (uint32_t)n);
	for (k = 0; k < n; k++) {
		const struct hs_tr_op *o = &ops[k];
		size_t at;

		r = full_path(s, o->path, full, sizeof(full));
		if (r < 0)
			return r;
		hs_pbuf_u8(b, o->kind == HS_TROP_PUT ? HS_OP_PUT_FILE :
						       HS_OP_MKDIR);
		hs_pbuf_u32(b, 0); /* its length, once known */
		at = b->len;
		hs_pbuf_str(b, full);
		hs_pbuf_u32(b, o->mode & 07777);
		if (o->kind == HS_TROP_PUT) {
			hs_pbuf_u64(b, (uint64_t)o->atime_ns);
			hs_pbuf_u64(b, (uint64_t)o->mtime_ns);
			hs_pbuf_u32(b, 0);
			hs_pbuf_bytes(b, o->data, o->len);
		}
		if (b->err)
			return b->err;
		hs_pbuf_u32_at(b, at - 4, (uint32_t)(b->len - at));
	}
	return b->err;
}

static int ag_batch(struct hs_transport *t, struct hs_tr_op *ops, int n,
		    hs_deadline_t dl)
{
	struct agent_tr *s = to_ag(t);
	struct pending *p = NULL;
	struct hs_pbuf b;
	struct hs_prd rd;
	int k, r;

	if (!(s->features & HS_FEAT_SEQ))
		return -ENOTSUP;
	if (n < 1 || n > HS_PROTO_MAX_BATCH)
		return -EINVAL;
	hs_pbuf_init(&b);
	r = batch_encode(s, ops, n, &b);
	if (r == 0)
		r = call(s, HS_OP_BATCH, &b, dl, &p);
	hs_pbuf_release(&b);
	if (r < 0) {
		pending_free(s, p);
		return r;
	}
	hs_prd_init(&rd, p->reply.p, p->reply.len);
	for (k = 0; k < n; k++) {
		uint16_t st = hs_prd_u16(&rd);
		uint32_t len = hs_prd_u32(&rd);

		/* a reply payload (the attributes of a put) is not needed */
		if (!rd.err && len > rd.len - rd.pos)
			break;
		rd.pos += len;
		ops[k].r = st ? status_errno(st) : 0;
	}
	if (k < n || hs_prd_end(&rd) < 0)
		r = broke(s, -EPROTO, "malformed batch reply");
	pending_free(s, p);
	return r;
}

static void ag_close(struct hs_transport *t)
{
	struct agent_tr *s = to_ag(t);
	struct hs_tr_file *f;

	/* no other thread uses @t any more (transport.h); no polite close
	 * is needed: the agent frees the handles with the connection */
	if (s->fd >= 0)
		shutdown(s->fd, SHUT_RDWR);
	if (s->reader_started)
		pthread_join(s->reader, NULL);
	hs_ssh_stream_free(s->ssh); /* ends the ssh session */
	hs_info("agent: closed (%llu bytes sent, %llu received)",
		(unsigned long long)s->bytes_out,
		(unsigned long long)s->bytes_in);
	if (s->fd >= 0)
		close(s->fd);
	while ((f = s->files.next) != &s->files) {
		f->prev->next = f->next;
		f->next->prev = f->prev;
		free(f);
	}
	while (s->pending)
		pending_free(s, s->pending);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->wlock);
	free(s->root);
	free(s);
}

static int ag_subscribe(struct hs_transport *t, hs_tr_notify_fn fn, void *arg,
			hs_deadline_t dl)
{
	struct agent_tr *s = to_ag(t);
	struct hs_pbuf b;
	int r;

	if (!(s->features & HS_FEAT_NOTIFY))
		return -ENOTSUP;
	pthread_mutex_lock(&s->lock);
	s->notify = fn;
	s->notify_arg = arg;
	pthread_mutex_unlock(&s->lock);
	r = path_req(s, HS_OP_SUBSCRIBE, "/", &b);
	if (r == 0)
		r = call0(s, HS_OP_SUBSCRIBE, &b, dl);
	else
		hs_pbuf_release(&b);
	if (r < 0) {
		pthread_mutex_lock(&s->lock);
		s->notify = NULL;
		pthread_mutex_unlock(&s->lock);
	}
	return r;
}

static const struct hs_transport_ops agent_ops = {
	.name = "agent",
	.close = ag_close,
	.lstat = ag_lstat,
	.readdir = ag_readdir,
	.open = ag_open,
	.pread = ag_pread,
	.pwrite = ag_pwrite,
	.fsync = ag_fsync,
	.fclose = ag_fclose,
	.setattr = ag_setattr,
	.mkdir = ag_mkdir,
	.rmdir = ag_rmdir,
	.unlink = ag_unlink,
	.rename = ag_rename,
	.symlink = ag_symlink,
	.readlink = ag_readlink,
	.link = ag_link,
	.statvfs = ag_statvfs,
	.ping = ag_ping,
	.put_file = ag_put_file,
	.batch = ag_batch,
	.subscribe = ag_subscribe,
};

int hs_agent_bytes(struct hs_transport *t, uint64_t *ret_out,
		   uint64_t *ret_in)
{
	struct agent_tr *s;

	if (t->ops != &agent_ops)
		return -EINVAL;
	s = to_ag(t);
	pthread_mutex_lock(&s->lock);
	*ret_out = s->bytes_out;
	*ret_in = s->bytes_in;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* ---- connecting ---- */

static int read_token(const char *path, char *buf, size_t size, char *err,
		      size_t errlen)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f) {
		int e = errno;

		snprintf(err, errlen, "cannot read token file '%s': %s", path,
			 strerror(e));
		return -e;
	}
	n = fread(buf, 1, size - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n && strchr(" \t\r\n", buf[n - 1]))
		buf[--n] = '\0';
	if (!n || strlen(buf) != n || n > HS_PROTO_MAX_STR) {
		snprintf(err, errlen, "token file '%s' is empty or malformed",
			 path);
		return -EINVAL;
	}
	return 0;
}

static int hello(struct agent_tr *s, const struct hs_tr_config *cfg,
		 hs_deadline_t dl, char *err, size_t errlen)
{
	char token[HS_PROTO_MAX_STR + 2] = "";
	struct pending *p = NULL;
	struct hs_pbuf b;
	struct hs_prd rd;
	uint32_t magic, feat;
	uint16_t ver;
	int r;

	if (cfg->token_file && (r = read_token(cfg->token_file, token,
					       sizeof(token), err, errlen)) < 0)
		return r;
	hs_pbuf_init(&b);
	hs_pbuf_u32(&b, HS_PROTO_MAGIC);
	hs_pbuf_u16(&b, HS_PROTO_VERSION);
	hs_pbuf_u16(&b, HS_PROTO_VERSION);
	hs_pbuf_u32(&b, (cfg->no_compression ? 0 : HS_FEAT_LZ4) |
				HS_FEAT_BATCH | HS_FEAT_NOTIFY | HS_FEAT_SEQ);
	hs_pbuf_str(&b, token);
	r = call(s, HS_OP_HELLO, &b, dl, &p);
	hs_pbuf_release(&b);
	explicit_bzero(token, sizeof(token));
	if (r == -EACCES) {
		snprintf(err, errlen, "the agent refused the token");
		return r;
	}
	if (r == -EPROTONOSUPPORT) {
		snprintf(err, errlen, "the agent speaks no common protocol "
				      "version");
		return -EPROTO;
	}
	if (r < 0) {
		snprintf(err, errlen, "agent handshake failed: %s",
			 s->base.broken ? s->base.last_error : strerror(-r));
		pending_free(s, p);
		return r == -ENOTCONN ? -ECONNRESET : r;
	}
	hs_prd_init(&rd, p->reply.p, p->reply.len);
	magic = hs_prd_u32(&rd);
	ver = hs_prd_u16(&rd);
	hs_prd_u16(&rd);
	feat = hs_prd_u32(&rd);
	hs_prd_u32(&rd); /* max payload: always the protocol's limit in v1 */
	s->base.remote_uid = hs_prd_u32(&rd);
	s->base.remote_gid = hs_prd_u32(&rd);
	r = hs_prd_end(&rd);
	pending_free(s, p);
	if (r < 0 || magic != HS_PROTO_MAGIC || ver != HS_PROTO_VERSION) {
		snprintf(err, errlen, "malformed handshake reply from the "
				      "agent");
		return -EPROTO;
	}
	s->features = feat;
	s->compress = (feat & HS_FEAT_LZ4) != 0;
	return 0;
}

static int set_root(struct agent_tr *s, const char *root)
{
	size_t n;

	if (!root)
		root = "";
	while (*root == '/')
		root++;
	n = strlen(root);
	while (n && root[n - 1] == '/')
		n--;
	if (!n)
		s->root = strdup("");
	else if (asprintf(&s->root, "/%.*s", (int)n, root) < 0)
		s->root = NULL;
	return s->root ? 0 : -ENOMEM;
}

/* Appends @s to @b quoted for a POSIX shell. */
static void shell_quote(struct hs_pbuf *b, const char *s)
{
	hs_pbuf_u8(b, '\'');
	for (; *s; s++) {
		if (*s == '\'')
			hs_pbuf_bytes(b, "'\\''", 4);
		else
			hs_pbuf_u8(b, (uint8_t)*s);
	}
	hs_pbuf_u8(b, '\'');
}

/* "hostshare-agent --stdio --root 'DIR'" (DIR "." for the login folder). */
static char *ssh_command(const struct hs_tr_config *cfg)
{
	struct hs_pbuf b;
	char *cmd = NULL;

	hs_pbuf_init(&b);
	b.unbounded = 1;
	shell_quote(&b, cfg->agent_command && *cfg->agent_command ?
				cfg->agent_command : "hostshare-agent");
	hs_pbuf_bytes(&b, " --stdio --root ", 16);
	shell_quote(&b, cfg->root && *cfg->root ? cfg->root : ".");
	hs_pbuf_u8(&b, 0);
	if (!b.err)
		cmd = strdup((const char *)b.p);
	hs_pbuf_release(&b);
	return cmd;
}

int hs_agent_open(const struct hs_tr_config *cfg, hs_deadline_t dl,
		  struct hs_transport **ret, char *err, size_t errlen)
{
	const char *root = cfg->root;
	struct hs_ssh_stream *ssh = NULL;
	struct agent_tr *s;
	struct hs_attr a;
	hs_deadline_t cdl = dl;
	int r, fd;

	if (cfg->connect_timeout_ms > 0) {
		hs_deadline_t c = hs_deadline_in_ms(cfg->connect_timeout_ms);

		if (c < cdl)
			cdl = c;
	}
	switch (cfg->kind) {
	case HS_TR_AGENT_TCP:
		fd = hs_dial_tcp(cfg->host, cfg->port, cdl, err, errlen);
		break;
	case HS_TR_AGENT_UNIX:
		fd = hs_dial_unix(cfg->host, cdl, err, errlen);
		break;
	case HS_TR_AGENT_VSOCK: {
		char *end;
		unsigned long cid = strtoul(cfg->host ? cfg->host : "", &end,
					    10);

		if (!cfg->host || !*cfg->host || *end || cid > UINT32_MAX) {
			snprintf(err, errlen, "invalid vsock cid '%s'",
				 cfg->host ? cfg->host : "");
			return -EINVAL;
		}
		fd = hs_dial_vsock((unsigned)cid, (unsigned)cfg->port, cdl, err,
				   errlen);
		break;
	}
	case HS_TR_AGENT_SSH: {
		char *cmd = ssh_command(cfg);

		if (!cmd) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		fd = hs_ssh_exec_stream(cfg, cmd, cdl, err, errlen, &ssh);
		free(cmd);
		root = ""; /* the agent's --root is the folder itself */
		break;
	}
	default:
		snprintf(err, errlen, "not an agent transport");
		return -EINVAL;
	}
	if (fd < 0)
		return fd;
	s = calloc(1, sizeof(*s));
	if (!s || set_root(s, root) < 0) {
		shutdown(fd, SHUT_RDWR);
		hs_ssh_stream_free(ssh);
		close(fd);
		free(s);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->base.ops = &agent_ops;
	s->base.remote_uid = s->base.remote_gid = (uint32_t)-1;
	s->fd = fd;
	s->ssh = ssh;
	s->files.next = s->files.prev = &s->files;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->wlock, NULL);
	if (pthread_create(&s->reader, NULL, reader_main, s)) {
		snprintf(err, errlen, "cannot start a thread");
		ag_close(&s->base);
		return -ENOMEM;
	}
	s->reader_started = 1;
	r = hello(s, cfg, cdl, err, errlen);
	if (r == 0) {
		s->base.caps = HS_TR_CAP_POSIX_RENAME | HS_TR_CAP_HARDLINK |
			       HS_TR_CAP_FSYNC | HS_TR_CAP_STATVFS |
			       HS_TR_CAP_NS_TIMES | HS_TR_CAP_PIPELINE;
		if (s->features & HS_FEAT_SEQ)
			s->base.caps |= HS_TR_CAP_SEQ;
		r = ag_lstat(&s->base, "/", &a, dl);
		if (r == 0 && !S_ISDIR(a.mode))
			r = -ENOTDIR;
		if (r < 0)
			snprintf(err, errlen, "remote folder '%s' %s",
				 s->root[0] ? s->root : "/",
				 r == -ENOENT ? "does not exist" :
				 r == -ENOTDIR ? "is not a folder" :
				 s->base.broken ? s->base.last_error :
				 strerror(-r));
	}
	if (r < 0) {
		ag_close(&s->base);
		return r;
	}
	*ret = &s->base;
	return 0;
}
