/* SPDX-License-Identifier: MIT
 * tools/agent/serve.c - one client connection of hostshare-agent: reads
 * frames, answers requests (docs/protocol.md), closes the connection with a
 * logged reason on any protocol error.
 *
 * Threads: per connection, one reader (the thread that called
 * hs_agent_serve()) decodes frames and queues requests; WORKERS threads
 * answer them, so replies leave in any order and a slow request (fsync, a
 * big read) does not hold up the others.  Each worker builds its reply in
 * thread-local buffers (tl); whole frames go out under wlock.  Open
 * handles live in a per-connection table (fhlock) and are closed with the
 * connection.  Every path goes through beneath.c.
 */
#include "agent_i.h"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "beneath.h"
#include "common/proto.h"

#define MAX_HANDLES 4096
#define WORKERS 4       /* requests of one connection answered at once */
#define MAX_QUEUED 64   /* decoded requests waiting; the reader waits then */
#define DIR_FRAME 65536 /* READDIR frames are cut near this size */
/* A socket subscriber that takes no NOTIFY frame for this long (its link
 * stalls, its socket buffers are full) is cut off, so that the watcher
 * thread, which serves every subscriber, never waits on one for longer. */
#define NOTIFY_STALL_MS 5000

struct conn {
	struct hs_agent_sink sink; /* NOTIFY frames (watch.c) */
	int subscribed;
	pthread_mutex_t wlock;  /* one frame on the wire at a time */
	const struct hs_agent *a;
	int rfd, wfd;
	const char *label;
	uint32_t features;      /* negotiated */
	int hello_done;
	int fds[MAX_HANDLES];   /* -1: free */
	uint32_t gen[MAX_HANDLES];
	uint8_t *wire;          /* receive buffer, HS_PROTO_MAX_PAYLOAD */
	const char *why;        /* reason to close (reader thread) */
	pthread_mutex_t fhlock; /* guards fds and gen */
	/* requests waiting for a worker */
	pthread_mutex_t qlock;
	pthread_cond_t qcond;   /* a job came, or stop */
	pthread_cond_t qspace;  /* a job was taken */
	struct job *head, *tail; /* protected by qlock */
	int queued;             /* protected by qlock */
	int stop;               /* protected by qlock: no more jobs come */
	volatile int dead;      /* a reply could not be written */
	int is_sock;            /* wfd is a socket (not stdio's pipes) */
	volatile int cut;       /* notify_send() cut the connection off */
};

/* One decoded request waiting for (or being answered by) a worker. */
struct job {
	struct job *next;
	struct hs_proto_hdr h;
	uint8_t *raw;           /* decompressed payload; q.data points here */
	struct hs_proto_req q;
};

/* Per worker thread: the reply being built and the compression buffer. */
static __thread struct {
	struct hs_pbuf out;
	uint8_t *zbuf;
	size_t zcap;
} tl;

/* ---- I/O ---- */

static int read_full(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;
	ssize_t r;

	while (n) {
		r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -ECONNRESET;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int write_full(int fd, struct iovec *iov, int cnt)
{
	ssize_t r;

	while (cnt) {
		r = writev(fd, iov, cnt);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		hs_iov_advance(&iov, &cnt, (size_t)r);
	}
	return 0;
}

/* Sends tl.out as the reply to @id (status 0), compressed when that
 * shrinks it. */
static int send_frame(struct conn *c, uint32_t id, uint8_t op, uint8_t flags,
		      int status, const uint8_t *p, size_t n)
{
	struct hs_proto_hdr h = { .len = (uint32_t)n, .raw_len = (uint32_t)n,
				  .id = id, .op = op,
				  .flags = (uint8_t)(flags | HS_PF_REPLY),
				  .status = (uint16_t)status };
	uint8_t hb[HS_PROTO_HDR_SIZE];
	struct iovec iov[2];
	size_t z;
	int r;

	if ((c->features & HS_FEAT_LZ4) && n >= HS_PROTO_MIN_COMPRESS) {
		size_t need = hs_proto_compress_bound(n);

		if (need > tl.zcap) {
			uint8_t *nb = realloc(tl.zbuf, need);

			if (!nb)
				return -ENOMEM;
			tl.zbuf = nb;
			tl.zcap = need;
		}
		z = hs_proto_compress(p, n, tl.zbuf, tl.zcap);
		if (z) {
			h.len = (uint32_t)z;
			h.flags |= HS_PF_LZ4;
			p = tl.zbuf;
			n = z;
		}
	}
	hs_proto_hdr_encode(&h, hb);
	iov[0] = (struct iovec){ hb, sizeof(hb) };
	iov[1] = (struct iovec){ (void *)p, n };
	pthread_mutex_lock(&c->wlock);
	r = write_full(c->wfd, iov, n ? 2 : 1);
	pthread_mutex_unlock(&c->wlock);
	return r;
}

/* watch.c's thread: one NOTIFY frame (id 0, never compressed).  A write
 * error here is left to the connection's own thread to notice.  The
 * watcher serves every subscriber, so on a socket it waits at most
 * NOTIFY_STALL_MS (for the write lock and the write); a subscriber that
 * took nothing for that long is cut off: the socket is shut down (its
 * threads end, the client reconnects and drops what it cached, as after
 * an overflow) and gets no frame any more.  Stdio serves one client per
 * process, whose stall holds up no one else: it blocks as before. */
static void notify_send(struct hs_agent_sink *sink, const uint8_t *p,
			size_t n)
{
	struct conn *c = container_of(sink, struct conn, sink);
	struct hs_proto_hdr h = { .len = (uint32_t)n, .raw_len = (uint32_t)n,
				  .op = HS_OP_NOTIFY, .flags = HS_PF_REPLY };
	hs_deadline_t dl = hs_deadline_in_ms(NOTIFY_STALL_MS);
	struct timespec ts = hs_deadline_ts(dl);
	uint8_t hb[HS_PROTO_HDR_SIZE];
	struct iovec iov[2];
	int r;

	if (c->cut || c->dead)
		return;
	hs_proto_hdr_encode(&h, hb);
	iov[0] = (struct iovec){ hb, sizeof(hb) };
	iov[1] = (struct iovec){ (void *)p, n };
	if (!c->is_sock) {
		pthread_mutex_lock(&c->wlock);
		write_full(c->wfd, iov, 2);
		pthread_mutex_unlock(&c->wlock);
		return;
	}
	r = pthread_mutex_clocklock(&c->wlock, CLOCK_MONOTONIC, &ts);
	if (r == 0) {
		r = hs_send_by(c->wfd, iov, 2, dl, NULL);
		pthread_mutex_unlock(&c->wlock);
		if (r != -ETIMEDOUT)
			return; /* sent, or an error the connection sees too */
	}
	c->cut = 1;
	hs_warn("%s: took no notification for %d s (a stalled link?): "
		"closing the connection", c->label, NOTIFY_STALL_MS / 1000);
	shutdown(c->wfd, SHUT_RDWR);
}

static int reply(struct conn *c, const struct hs_proto_hdr *q, int status)
{
	if (status < 0)
		status = -status;
	if (status)
		return send_frame(c, q->id, q->op, 0, status, NULL, 0);
	if (tl.out.err)
		return send_frame(c, q->id, q->op, 0, EIO, NULL, 0);
	return send_frame(c, q->id, q->op, 0, 0, tl.out.p, tl.out.len);
}

/* ---- attributes ---- */

/* The permission bits a guest may set: never set-user-ID or set-group-ID
 * (a guest could plant a setuid program a host user then runs) unless the
 * agent was started with --allow-setid. */
static unsigned mode_bits(const struct conn *c, uint32_t mode)
{
	return mode & (c->a->allow_setid ? 07777u : 01777u);
}

static void attr_from_stat(const struct stat *st, struct hs_attr *a)
{
	a->valid = HS_ATTR_SIZE | HS_ATTR_MODE | HS_ATTR_UID | HS_ATTR_GID |
		   HS_ATTR_ATIME | HS_ATTR_MTIME;
	a->mode = st->st_mode;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->nlink = (uint32_t)st->st_nlink;
	a->size = (uint64_t)st->st_size;
	a->atime_ns = (int64_t)st->st_atim.tv_sec * 1000000000LL +
		      st->st_atim.tv_nsec;
	a->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000LL +
		      st->st_mtim.tv_nsec;
}

static struct timespec ts_of(int64_t ns)
{
	struct timespec ts;

	ts.tv_sec = ns / 1000000000LL;
	ts.tv_nsec = ns % 1000000000LL;
	if (ts.tv_nsec < 0) {
		ts.tv_sec--;
		ts.tv_nsec += 1000000000LL;
	}
	return ts;
}

/* ---- handles ---- */

static int fh_add(struct conn *c, int fd, uint64_t *ret)
{
	int i;

	pthread_mutex_lock(&c->fhlock);
	for (i = 0; i < MAX_HANDLES; i++)
		if (c->fds[i] < 0) {
			c->fds[i] = fd;
			c->gen[i]++;
			*ret = (uint64_t)c->gen[i] << 32 | (uint32_t)(i + 1);
			pthread_mutex_unlock(&c->fhlock);
			return 0;
		}
	pthread_mutex_unlock(&c->fhlock);
	return -EMFILE;
}

/* The descriptor of @fh; with @take the handle is removed.  A handle's
 * requests are not in flight together with its CLOSE (the client waits),
 * so the descriptor stays valid while a worker uses it. */
static int fh_get(struct conn *c, uint64_t fh, int take)
{
	uint32_t i = (uint32_t)fh;
	int fd = -EBADF;

	pthread_mutex_lock(&c->fhlock);
	if (i >= 1 && i <= MAX_HANDLES && c->fds[i - 1] >= 0 &&
	    c->gen[i - 1] == (uint32_t)(fh >> 32)) {
		fd = c->fds[i - 1];
		if (take)
			c->fds[i - 1] = -1;
	}
	pthread_mutex_unlock(&c->fhlock);
	return fd;
}

/* ---- operations ---- */

/* Resolves @path to its parent folder and last name. */
struct target {
	char rel[HS_PROTO_MAX_STR + 2];
	const char *name;
	int dfd;
};

static int target_open(struct conn *c, const char *path, struct target *t)
{
	int r = hs_bn_rel(path, t->rel, sizeof(t->rel));

	t->dfd = -1;
	if (r < 0)
		return r;
	r = hs_bn_parent(c->a->rootfd, t->rel, &t->name);
	if (r < 0)
		return r;
	t->dfd = r;
	return 0;
}

static void target_close(struct target *t)
{
	if (t->dfd >= 0)
		close(t->dfd);
	t->dfd = -1;
}

static int open_rel(struct conn *c, const char *path, int flags,
		    unsigned mode)
{
	char rel[HS_PROTO_MAX_STR + 2];
	int r = hs_bn_rel(path, rel, sizeof(rel));

	return r < 0 ? r : hs_bn_open(c->a->rootfd, rel, flags, mode);
}

static int op_lstat(struct conn *c, const char *path, struct hs_attr *a)
{
	struct target t;
	struct stat st;
	int r = target_open(c, path, &t);

	if (r == 0 && fstatat(t.dfd, t.name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		r = -errno;
	target_close(&t);
	if (r == 0)
		attr_from_stat(&st, a);
	return r;
}

/* Lists @path into tl.out after what is there already, sending full
 * frames with MORE on the way.  The caller sends the last frame. */
static int list_dir(struct conn *c, const struct hs_proto_hdr *q,
		    const char *path)
{
	size_t count_at = tl.out.len;
	uint32_t n = 0;
	struct dirent *de;
	struct hs_attr a;
	struct stat st;
	DIR *d;
	int fd, r = 0;

	fd = open_rel(c, path, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		close(fd);
		return r;
	}
	hs_pbuf_u32(&tl.out, 0);
	while ((errno = 0, de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* gone meanwhile */
		if (strlen(de->d_name) > HS_PROTO_MAX_STR)
			continue;
		attr_from_stat(&st, &a);
		hs_pbuf_str(&tl.out, de->d_name);
		hs_pbuf_attr(&tl.out, &a);
		n++;
		if (tl.out.len >= DIR_FRAME && !tl.out.err) {
			uint8_t *cp = tl.out.p + count_at;

			cp[0] = (uint8_t)n;
			cp[1] = (uint8_t)(n >> 8);
			cp[2] = (uint8_t)(n >> 16);
			cp[3] = (uint8_t)(n >> 24);
			r = send_frame(c, q->id, q->op, HS_PF_MORE, 0,
				       tl.out.p, tl.out.len);
			if (r < 0) {
				closedir(d);
				return r == -ENOMEM ? r : 1; /* wire error */
			}
			hs_pbuf_reset(&tl.out);
			count_at = 0;
			n = 0;
			hs_pbuf_u32(&tl.out, 0);
		}
	}
	if (errno)
		r = -errno;
	closedir(d);
	if (r == 0 && !tl.out.err) {
		uint8_t *cp = tl.out.p + count_at;

		cp[0] = (uint8_t)n;
		cp[1] = (uint8_t)(n >> 8);
		cp[2] = (uint8_t)(n >> 16);
		cp[3] = (uint8_t)(n >> 24);
	}
	return r;
}

static int oflags_of(uint32_t f)
{
	int o;

	if ((f & HS_POPEN_READ) && (f & HS_POPEN_WRITE))
		o = O_RDWR;
	else if (f & HS_POPEN_WRITE)
		o = O_WRONLY;
	else
		o = O_RDONLY;
	if (f & HS_POPEN_CREAT)
		o |= O_CREAT;
	if (f & HS_POPEN_EXCL)
		o |= O_EXCL;
	if (f & HS_POPEN_TRUNC)
		o |= O_TRUNC;
	if (f & HS_POPEN_APPEND)
		o |= O_APPEND;
	return o;
}

static int op_setattr(struct conn *c, const char *path,
		      const struct hs_attr *a)
{
	struct target t;
	int r = target_open(c, path, &t);

	if (r < 0)
		goto out;
	if (a->valid & HS_ATTR_SIZE) {
		int fd = open_rel(c, path, O_WRONLY | O_NONBLOCK | O_NOCTTY,
				  0);

		if (fd < 0) {
			r = fd;
			goto out;
		}
		if (ftruncate(fd, (off_t)a->size) < 0)
			r = -errno;
		close(fd);
		if (r < 0)
			goto out;
	}
	if ((a->valid & (HS_ATTR_UID | HS_ATTR_GID)) &&
	    fchownat(t.dfd, t.name,
		     (a->valid & HS_ATTR_UID) ? a->uid : (uid_t)-1,
		     (a->valid & HS_ATTR_GID) ? a->gid : (gid_t)-1,
		     AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
		goto out;
	}
	if ((a->valid & HS_ATTR_MODE) &&
	    fchmodat(t.dfd, t.name, mode_bits(c, a->mode), AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
		goto out;
	}
	if (a->valid & (HS_ATTR_ATIME | HS_ATTR_MTIME)) {
		struct timespec ts[2];

		ts[0] = (a->valid & HS_ATTR_ATIME) ? ts_of(a->atime_ns) :
			(struct timespec){ .tv_nsec = UTIME_OMIT };
		ts[1] = (a->valid & HS_ATTR_MTIME) ? ts_of(a->mtime_ns) :
			(struct timespec){ .tv_nsec = UTIME_OMIT };
		if (utimensat(t.dfd, t.name, ts, AT_SYMLINK_NOFOLLOW) < 0)
			r = -errno;
	}
out:
	target_close(&t);
	return r;
}

static int op_two(struct conn *c, const struct hs_proto_req *q)
{
	struct target a, b;
	int r = target_open(c, q->path, &a);

	b.dfd = -1;
	if (r == 0)
		r = target_open(c, q->path2, &b);
	if (r == 0) {
		if (q->op == HS_OP_RENAME)
			r = renameat2(a.dfd, a.name, b.dfd, b.name,
				      (q->flags & HS_RENAME_NOREPLACE) ?
				      RENAME_NOREPLACE : 0);
		else
			r = linkat(a.dfd, a.name, b.dfd, b.name, 0);
		if (r < 0)
			r = -errno;
	}
	target_close(&a);
	target_close(&b);
	return r;
}

static int op_put(struct conn *c, const struct hs_proto_req *q,
		  struct hs_attr *ret)
{
	struct target t;
	char tmp[64];
	uint8_t rnd[8];
	struct timespec ts[2];
	struct stat st;
	size_t off = 0;
	ssize_t w;
	int fd, r = target_open(c, q->path, &t);

	if (r < 0)
		return r;
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		memset(rnd, 0, sizeof(rnd));
	snprintf(tmp, sizeof(tmp), ".hs-put-%02x%02x%02x%02x%02x%02x%02x%02x",
		 rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	fd = openat(t.dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		target_close(&t);
		return r;
	}
	while (off < q->data_len) {
		w = write(fd, q->data + off, q->data_len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			r = w < 0 ? -errno : -EIO;
			break;
		}
		off += (size_t)w;
	}
	ts[0] = ts_of(q->atime_ns);
	ts[1] = ts_of(q->mtime_ns);
	if (r == 0 && fchmod(fd, mode_bits(c, q->mode)) < 0)
		r = -errno;
	if (r == 0 && futimens(fd, ts) < 0)
		r = -errno;
	if (r == 0 && fstat(fd, &st) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && renameat2(t.dfd, tmp, t.dfd, t.name,
				(q->flags & HS_RENAME_NOREPLACE) ?
				RENAME_NOREPLACE : 0) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(t.dfd, tmp, 0);
	else
		attr_from_stat(&st, ret);
	target_close(&t);
	return r;
}

static int is_change(const struct hs_proto_req *q)
{
	switch (q->op) {
	case HS_OP_PWRITE: case HS_OP_SETATTR: case HS_OP_MKDIR:
	case HS_OP_RMDIR: case HS_OP_UNLINK: case HS_OP_RENAME:
	case HS_OP_SYMLINK: case HS_OP_LINK: case HS_OP_PUT_FILE:
		return 1;
	case HS_OP_OPEN:
		return (q->flags & (HS_POPEN_WRITE | HS_POPEN_CREAT |
				    HS_POPEN_TRUNC | HS_POPEN_APPEND)) != 0;
	}
	return 0;
}

static int answer_batch(struct conn *c, const struct hs_proto_hdr *h,
			const struct hs_proto_req *q);

/* Works out the answer to one request: the reply payload in tl.out and
 * the status returned (0 or -errno); 1 when a reply could not be written
 * (the connection is then closed), 2 when the reply has gone already. */
static int answer(struct conn *c, const struct hs_proto_hdr *h,
		  const struct hs_proto_req *q)
{
	struct hs_attr attr;
	struct target t;
	struct stat st;
	int r = 0, fd;

	hs_pbuf_reset(&tl.out);
	if (c->a->read_only && is_change(q))
		return -EROFS;
	switch (q->op) {
	case HS_OP_PING:
		break;
	case HS_OP_LSTAT:
		r = op_lstat(c, q->path, &attr);
		if (r == 0)
			hs_pbuf_attr(&tl.out, &attr);
		break;
	case HS_OP_READDIR:
		r = list_dir(c, h, q->path);
		break;
	case HS_OP_LOOKUP_LIST:
		if (!(c->features & HS_FEAT_BATCH)) {
			r = -ENOSYS;
			break;
		}
		r = op_lstat(c, q->path, &attr);
		if (r < 0)
			break;
		hs_pbuf_attr(&tl.out, &attr);
		if (S_ISDIR(attr.mode))
			r = list_dir(c, h, q->path);
		else
			hs_pbuf_u32(&tl.out, 0);
		break;
	case HS_OP_OPEN: {
		uint64_t fh;

		/* O_NONBLOCK: a FIFO in the share must not hold a worker
		 * (issue 16, finding 14); only files and folders are served */
		fd = open_rel(c, q->path, oflags_of(q->flags) | O_NONBLOCK |
			      O_NOCTTY, mode_bits(c, q->mode));
		if (fd < 0) {
			r = fd;
			break;
		}
		if (fstat(fd, &st) < 0 ||
		    (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))) {
			close(fd);
			r = -ENXIO;
			break;
		}
		if (S_ISDIR(st.st_mode) && (q->flags & HS_POPEN_WRITE)) {
			close(fd);
			r = -EISDIR;
			break;
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		r = fh_add(c, fd, &fh);
		if (r < 0)
			close(fd);
		else
			hs_pbuf_u64(&tl.out, fh);
		break;
	}
	case HS_OP_PREAD: {
		uint8_t *p;
		ssize_t n;

		fd = fh_get(c, q->fh, 0);
		if (fd < 0 || !(p = hs_pbuf_grow(&tl.out, q->len))) {
			r = fd < 0 ? fd : -ENOMEM;
			break;
		}
		do
			n = pread(fd, p, q->len, (off_t)q->off);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			r = -errno;
		else
			tl.out.len = (size_t)n;
		break;
	}
	case HS_OP_PWRITE: {
		size_t done = 0;
		ssize_t n;

		fd = fh_get(c, q->fh, 0);
		if (fd < 0) {
			r = fd;
			break;
		}
		while (done < q->data_len) {
			n = pwrite(fd, q->data + done, q->data_len - done,
				   (off_t)(q->off + done));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				r = n < 0 ? -errno : -EIO;
				break;
			}
			done += (size_t)n;
		}
		if (r == 0)
			hs_pbuf_u32(&tl.out, (uint32_t)done);
		break;
	}
	case HS_OP_FSYNC:
		fd = fh_get(c, q->fh, 0);
		r = fd < 0 ? fd : fsync(fd) < 0 ? -errno : 0;
		break;
	case HS_OP_CLOSE:
		fd = fh_get(c, q->fh, 1);
		if (fd < 0) {
			r = fd;
			break;
		}
		r = close(fd) < 0 ? -errno : 0;
		break;
	case HS_OP_SETATTR:
		r = op_setattr(c, q->path, &q->attr);
		break;
	case HS_OP_MKDIR:
	case HS_OP_RMDIR:
	case HS_OP_UNLINK:
	case HS_OP_READLINK:
	case HS_OP_SYMLINK: {
		const char *p = q->op == HS_OP_SYMLINK ? q->path2 : q->path;
		char buf[HS_PROTO_MAX_STR + 1];
		ssize_t n;

		r = target_open(c, p, &t);
		if (r < 0)
			break;
		if (q->op == HS_OP_MKDIR)
			r = mkdirat(t.dfd, t.name, mode_bits(c, q->mode));
		else if (q->op == HS_OP_RMDIR)
			r = unlinkat(t.dfd, t.name, AT_REMOVEDIR);
		else if (q->op == HS_OP_UNLINK)
			r = unlinkat(t.dfd, t.name, 0);
		else if (q->op == HS_OP_SYMLINK)
			r = symlinkat(q->path, t.dfd, t.name);
		else {
			n = readlinkat(t.dfd, t.name, buf, sizeof(buf) - 1);
			if (n >= 0) {
				buf[n] = '\0';
				hs_pbuf_str(&tl.out, buf);
				r = 0;
			} else {
				r = -1;
			}
		}
		if (r < 0)
			r = -errno;
		target_close(&t);
		break;
	}
	case HS_OP_RENAME:
	case HS_OP_LINK:
		r = op_two(c, q);
		break;
	case HS_OP_STATVFS: {
		struct statvfs sv;

		fd = open_rel(c, q->path, O_PATH, 0);
		if (fd < 0) {
			r = fd;
			break;
		}
		if (fstatvfs(fd, &sv) < 0)
			r = -errno;
		close(fd);
		if (r == 0) {
			hs_pbuf_u64(&tl.out, sv.f_bsize);
			hs_pbuf_u64(&tl.out, sv.f_frsize);
			hs_pbuf_u64(&tl.out, sv.f_blocks);
			hs_pbuf_u64(&tl.out, sv.f_bfree);
			hs_pbuf_u64(&tl.out, sv.f_bavail);
			hs_pbuf_u64(&tl.out, sv.f_files);
			hs_pbuf_u64(&tl.out, sv.f_ffree);
			hs_pbuf_u64(&tl.out, sv.f_favail);
			hs_pbuf_u64(&tl.out, sv.f_namemax);
		}
		break;
	}
	case HS_OP_PUT_FILE:
		if (!(c->features & HS_FEAT_BATCH)) {
			r = -ENOSYS;
			break;
		}
		r = op_put(c, q, &attr);
		if (r == 0)
			hs_pbuf_attr(&tl.out, &attr);
		break;
	case HS_OP_SUBSCRIBE:
		if (!(c->features & HS_FEAT_NOTIFY)) {
			r = -ENOSYS;
			break;
		}
		if (!c->subscribed) {
			char rel[HS_PROTO_MAX_STR + 2];

			/* the folder must be one beneath the root */
			r = hs_bn_rel(q->path, rel, sizeof(rel));
			fd = r < 0 ? r : hs_bn_open(c->a->rootfd, rel,
						    O_PATH | O_DIRECTORY, 0);
			if (fd < 0) {
				r = fd;
				break;
			}
			close(fd);
			/* the reply goes first: take the write lock so that
			 * no event overtakes it */
			pthread_mutex_lock(&c->wlock);
			r = hs_agent_subscribe(&c->sink, strcmp(rel, ".") ? rel : "");
			c->subscribed = r == 0;
			if (r == 0) {
				struct hs_proto_hdr rh = { .id = h->id,
							   .op = h->op,
							   .flags = HS_PF_REPLY };
				uint8_t hb[HS_PROTO_HDR_SIZE];
				struct iovec iov = { hb, sizeof(hb) };

				hs_proto_hdr_encode(&rh, hb);
				r = write_full(c->wfd, &iov, 1) < 0 ? 1 : 2;
			}
			pthread_mutex_unlock(&c->wlock);
		}
		break;
	case HS_OP_BATCH:
		r = answer_batch(c, h, q);
		break;
	default: /* hs_proto_req_decode() let nothing else through */
		r = -ENOSYS;
		break;
	}
	return r;
}

/* BATCH: the sub-requests one after the other, in order, each answered
 * as on its own; a refused one does not stop the rest.  Their answers go
 * back as one reply.  Sub-requests are ops with a one-frame reply
 * (hs_proto_batch_op()), so answer() never sends anything for them. */
static int answer_batch(struct conn *c, const struct hs_proto_hdr *h,
			const struct hs_proto_req *q)
{
	struct hs_proto_batch_it it;
	struct hs_proto_req *sq;
	struct hs_proto_hdr sh = *h;
	struct hs_pbuf acc, tmp;
	const uint8_t *sub;
	const char *why;
	size_t len;
	int r;

	if (!(c->features & HS_FEAT_SEQ))
		return -ENOSYS;
	sq = malloc(sizeof(*sq));
	if (!sq)
		return -ENOMEM;
	hs_pbuf_init(&acc);
	hs_proto_batch_begin(&it, q->data, q->data_len);
	while (hs_proto_batch_next(&it, &sh.op, &sub, &len, &why) > 0) {
		/* decoded once already by the reader: cannot fail here */
		r = hs_proto_req_decode(sh.op, sub, len, sq, &why) < 0 ?
			    -EPROTO : answer(c, &sh, sq);
		if (r == 0 && tl.out.err)
			r = -EIO;
		hs_pbuf_u16(&acc, (uint16_t)(r < 0 ? -r : 0));
		hs_pbuf_u32(&acc, r ? 0 : (uint32_t)tl.out.len);
		if (r == 0)
			hs_pbuf_bytes(&acc, tl.out.p, tl.out.len);
	}
	free(sq);
	r = acc.err ? -EIO : 0;
	tmp = tl.out;
	tl.out = acc;
	hs_pbuf_release(&tmp);
	return r;
}

/* Answers one request.  Returns 0 to go on, -1 when the reply could not
 * be written (the connection is then closed). */
static int handle(struct conn *c, const struct hs_proto_hdr *h,
		  const struct hs_proto_req *q)
{
	int r = answer(c, h, q);

	if (r == 1)
		return -1;
	if (r == 2)
		return 0;
	return reply(c, h, r) < 0 ? -1 : 0;
}

static int do_hello(struct conn *c, const struct hs_proto_hdr *h,
		    const struct hs_proto_req *q, int need_token)
{
	const char *tok = c->a->token;
	size_t i, n1, n2;
	unsigned diff = 0;

	hs_pbuf_reset(&tl.out);
	if (q->magic != HS_PROTO_MAGIC) {
		c->why = "bad magic in hello";
		return -1;
	}
	if (q->min_version > HS_PROTO_VERSION || q->version < 1) {
		reply(c, h, EPROTONOSUPPORT);
		c->why = "no common protocol version";
		return -1;
	}
	if (need_token) {
		n1 = strlen(q->token);
		n2 = strlen(tok);
		diff = n1 != n2;
		for (i = 0; i < n2; i++)
			diff |= (unsigned)(tok[i] ^ (i < n1 ? q->token[i] : 0));
		if (diff) {
			reply(c, h, EACCES);
			c->why = "wrong token";
			return -1;
		}
	}
	c->features = q->features & c->a->features & ~(uint32_t)HS_FEAT_READONLY;
	if (c->a->read_only)
		c->features |= HS_FEAT_READONLY;
	hs_pbuf_u32(&tl.out, HS_PROTO_MAGIC);
	hs_pbuf_u16(&tl.out, HS_PROTO_VERSION);
	hs_pbuf_u16(&tl.out, 0);
	hs_pbuf_u32(&tl.out, c->features);
	hs_pbuf_u32(&tl.out, HS_PROTO_MAX_PAYLOAD);
	hs_pbuf_u32(&tl.out, (uint32_t)getuid());
	hs_pbuf_u32(&tl.out, (uint32_t)getgid());
	/* the handshake is never compressed */
	if (send_frame(c, h->id, h->op, 0, 0, tl.out.p, tl.out.len) < 0) {
		c->why = "write failed";
		return -1;
	}
	c->hello_done = 1;
	return 0;
}

/* Takes jobs off the queue until the reader stops and the queue is empty.
 * A reply that cannot be written marks the connection dead and shuts the
 * socket down, which ends the reader too. */
static void *worker_main(void *arg)
{
	struct conn *c = arg;
	struct job *j;

	hs_pbuf_init(&tl.out);
	for (;;) {
		pthread_mutex_lock(&c->qlock);
		while (!c->head && !c->stop)
			pthread_cond_wait(&c->qcond, &c->qlock);
		j = c->head;
		if (j) {
			c->head = j->next;
			if (!c->head)
				c->tail = NULL;
			c->queued--;
			pthread_cond_signal(&c->qspace);
		}
		pthread_mutex_unlock(&c->qlock);
		if (!j)
			break;
		if (!c->dead && handle(c, &j->h, &j->q) < 0 && !c->dead) {
			c->dead = 1;
			shutdown(c->rfd, SHUT_RDWR);
			if (c->wfd != c->rfd)
				close(c->wfd); /* stdio: ends the peer */
		}
		free(j->raw);
		free(j);
	}
	hs_pbuf_release(&tl.out);
	free(tl.zbuf);
	tl.zbuf = NULL;
	tl.zcap = 0;
	return NULL;
}

/* Queues @j, waiting while MAX_QUEUED jobs wait already. */
static void enqueue(struct conn *c, struct job *j)
{
	pthread_mutex_lock(&c->qlock);
	while (c->queued >= MAX_QUEUED && !c->dead)
		pthread_cond_wait(&c->qspace, &c->qlock);
	j->next = NULL;
	if (c->tail)
		c->tail->next = j;
	else
		c->head = j;
	c->tail = j;
	c->queued++;
	pthread_cond_signal(&c->qcond);
	pthread_mutex_unlock(&c->qlock);
}

void hs_agent_serve(const struct hs_agent *a, int rfd, int wfd,
		    const char *label, int need_token)
{
	struct conn *c = calloc(1, sizeof(*c));
	pthread_t workers[WORKERS];
	int n_workers = 0;
	uint8_t hb[HS_PROTO_HDR_SIZE];
	struct hs_proto_hdr h;
	const char *why;
	struct job *j;
	int i, r;

	if (!c || !(c->wire = malloc(HS_PROTO_MAX_PAYLOAD))) {
		hs_err("%s: out of memory", label);
		goto out;
	}
	c->a = a;
	c->rfd = rfd;
	c->wfd = wfd;
	c->label = label;
	for (i = 0; i < MAX_HANDLES; i++)
		c->fds[i] = -1;
	hs_pbuf_init(&tl.out);
	pthread_mutex_init(&c->wlock, NULL);
	pthread_mutex_init(&c->fhlock, NULL);
	pthread_mutex_init(&c->qlock, NULL);
	pthread_cond_init(&c->qcond, NULL);
	pthread_cond_init(&c->qspace, NULL);
	c->sink.send = notify_send;
	{
		int type;
		socklen_t len = sizeof(type);

		c->is_sock = getsockopt(wfd, SOL_SOCKET, SO_TYPE, &type,
					&len) == 0;
	}
	hs_info("%s: connected", label);
	for (;;) {
		r = read_full(rfd, hb, sizeof(hb));
		if (r < 0) {
			c->why = r == -ECONNRESET || c->dead ? NULL :
							       "read failed";
			break;
		}
		if (hs_proto_hdr_decode(hb, &h, &why) < 0) {
			c->why = why;
			break;
		}
		if (h.flags & (HS_PF_REPLY | HS_PF_MORE)) {
			c->why = "reply flags on a request";
			break;
		}
		if (h.id == 0) {
			c->why = "request id 0";
			break;
		}
		if ((h.flags & HS_PF_LZ4) &&
		    (!c->hello_done || !(c->features & HS_FEAT_LZ4))) {
			c->why = "compressed frame without lz4 negotiated";
			break;
		}
		j = malloc(sizeof(*j));
		if (j)
			j->raw = malloc(h.raw_len ? h.raw_len : 1);
		if (!j || !j->raw) {
			if (j)
				free(j);
			c->why = "out of memory";
			break;
		}
		j->h = h;
		/* a plain payload goes straight where the worker reads it; a
		 * compressed one is decompressed there (a copy less for the
		 * data of a big upload) */
		if (read_full(rfd, (h.flags & HS_PF_LZ4) ? c->wire : j->raw,
			      h.len) < 0) {
			free(j->raw);
			free(j);
			c->why = "connection lost inside a frame";
			break;
		}
		if (((h.flags & HS_PF_LZ4) &&
		     hs_proto_payload_decode(&h, c->wire, j->raw, &why) < 0) ||
		    hs_proto_req_decode(h.op, j->raw, h.raw_len, &j->q,
					&why) < 0) {
			free(j->raw);
			free(j);
			c->why = why;
			break;
		}
		if (!c->hello_done) {
			r = h.op != HS_OP_HELLO ? -1 :
					do_hello(c, &h, &j->q, need_token);
			if (h.op != HS_OP_HELLO)
				c->why = "request before hello";
			free(j->raw);
			free(j);
			if (r < 0)
				break;
			for (; n_workers < WORKERS; n_workers++)
				if (pthread_create(&workers[n_workers], NULL,
						   worker_main, c))
					break;
			if (!n_workers) {
				c->why = "cannot start a thread";
				break;
			}
			continue;
		}
		if (h.op == HS_OP_HELLO) {
			free(j->raw);
			free(j);
			c->why = "second hello";
			break;
		}
		enqueue(c, j);
	}
	/* the workers answer what is queued, then end */
	pthread_mutex_lock(&c->qlock);
	c->stop = 1;
	pthread_cond_broadcast(&c->qcond);
	pthread_mutex_unlock(&c->qlock);
	for (i = 0; i < n_workers; i++)
		pthread_join(workers[i], NULL);
	if (c->subscribed)
		hs_agent_unsubscribe(&c->sink);
	if (c->cut)
		; /* notify_send() said why */
	else if (c->why)
		hs_warn("%s: closing connection: %s", label, c->why);
	else if (c->dead)
		hs_warn("%s: closing connection: write failed", label);
	else
		hs_info("%s: disconnected", label);
	for (i = 0; i < MAX_HANDLES; i++)
		if (c->fds[i] >= 0)
			close(c->fds[i]);
	pthread_mutex_destroy(&c->wlock);
	pthread_mutex_destroy(&c->fhlock);
	pthread_mutex_destroy(&c->qlock);
	pthread_cond_destroy(&c->qcond);
	pthread_cond_destroy(&c->qspace);
out:
	if (c)
		free(c->wire);
	hs_pbuf_release(&tl.out);
	free(tl.zbuf);
	tl.zbuf = NULL;
	tl.zcap = 0;
	free(c);
	close(rfd);
	if (wfd != rfd)
		close(wfd);
}
