/* SPDX-License-Identifier: MIT
 * common/common.h - small helpers every layer uses: monotonic deadlines,
 * container_of, logging.
 *
 * Deadlines are absolute CLOCK_MONOTONIC times in nanoseconds, so one
 * deadline passes unchanged through layers and retries.  A deadline of
 * HS_DEADLINE_NEVER is only for code paths that cannot touch the network.
 *
 * Logging: library code (transport/, cache/) logs through hs_log(); the mount
 * program decides where it goes (stderr with -f, syslog when daemonised).
 * Thread model: everything here is callable from any thread.
 */
#ifndef HS_COMMON_H
#define HS_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef int64_t hs_deadline_t; /* absolute CLOCK_MONOTONIC, ns */

#define HS_DEADLINE_NEVER INT64_MAX
#define HS_NSEC_PER_MSEC 1000000LL
#define HS_NSEC_PER_SEC 1000000000LL

#ifndef container_of
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#endif

#define HS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define HS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define HS_MAX(a, b) ((a) > (b) ? (a) : (b))

static inline int64_t hs_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * HS_NSEC_PER_SEC + ts.tv_nsec;
}

/* Wall clock, ns since the epoch (for mtimes and journal timestamps). */
static inline int64_t hs_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * HS_NSEC_PER_SEC + ts.tv_nsec;
}

static inline hs_deadline_t hs_deadline_in_ms(int64_t ms)
{
	if (ms < 0)
		return HS_DEADLINE_NEVER;
	return hs_now_ns() + ms * HS_NSEC_PER_MSEC;
}

static inline int hs_deadline_passed(hs_deadline_t dl)
{
	return dl != HS_DEADLINE_NEVER && hs_now_ns() >= dl;
}

/* Milliseconds left before @dl, clamped to [0, INT32_MAX]; for poll(). */
static inline int hs_deadline_ms_left(hs_deadline_t dl)
{
	int64_t left;

	if (dl == HS_DEADLINE_NEVER)
		return INT32_MAX;
	left = (dl - hs_now_ns() + HS_NSEC_PER_MSEC - 1) / HS_NSEC_PER_MSEC;
	if (left < 0)
		return 0;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Converts @dl to a struct timespec for pthread_*_clock*(CLOCK_MONOTONIC). */
static inline struct timespec hs_deadline_ts(hs_deadline_t dl)
{
	struct timespec ts;

	if (dl == HS_DEADLINE_NEVER)
		dl = INT64_MAX / 2;
	ts.tv_sec = dl / HS_NSEC_PER_SEC;
	ts.tv_nsec = dl % HS_NSEC_PER_SEC;
	return ts;
}

/* Initialises @cv to time out against CLOCK_MONOTONIC (deadlines). */
#include <pthread.h>
static inline void hs_cond_init_monotonic(pthread_cond_t *cv)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

/* Moves *@iov / *@cnt past @n bytes a writev() took. */
#include <sys/uio.h>
static inline void hs_iov_advance(struct iovec **iov, int *cnt, size_t n)
{
	while (*cnt && n >= (*iov)->iov_len) {
		n -= (*iov)->iov_len;
		(*iov)++;
		(*cnt)--;
	}
	if (*cnt) {
		(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + n;
		(*iov)->iov_len -= n;
	}
}

/* Writes all of @iov to the stream socket @fd, never waiting past @dl
 * (the socket may be blocking or not).  0, -ETIMEDOUT, or -errno;
 * *@ret_started (if given): whether any byte went out. */
int hs_send_by(int fd, struct iovec *iov, int cnt, hs_deadline_t dl,
	       int *ret_started);

enum hs_log_level {
	HS_LOG_ERR = 3,
	HS_LOG_WARNING = 4,
	HS_LOG_NOTICE = 5,
	HS_LOG_INFO = 6,
	HS_LOG_DEBUG = 7,
};

/* Where log lines go: stderr (default) or syslog. Set once by the program. */
void hs_log_set_syslog(int on);
void hs_log_set_level(enum hs_log_level level);
enum hs_log_level hs_log_get_level(void);
void hs_log(enum hs_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define hs_err(...) hs_log(HS_LOG_ERR, __VA_ARGS__)
#define hs_warn(...) hs_log(HS_LOG_WARNING, __VA_ARGS__)
#define hs_notice(...) hs_log(HS_LOG_NOTICE, __VA_ARGS__)
#define hs_info(...) hs_log(HS_LOG_INFO, __VA_ARGS__)
#define hs_debug(...) hs_log(HS_LOG_DEBUG, __VA_ARGS__)

/* common/names.c: 1 if @name is one a folder can hold (not empty, not
 * "." or "..", no '/', at most 255 bytes), else 0. */
int hs_name_ok(const char *name);
/* 1 if every component of @path (an optional leading '/', then names
 * joined by single '/') passes hs_name_ok(); "" and "/" are the root. */
int hs_path_ok(const char *path);

/* 64-bit FNV-1a of a NUL-terminated string; stable across versions (names
 * of cache folders and control sockets are derived from it). */
uint64_t hs_fnv1a64(const char *s);

/* The one list of "the link failed" errors: the connection is not usable
 * and a reconnect is needed (transport/: hs_tr_err_is_link()); fs/reply.c
 * answers these with EIO. */
#include <errno.h>
static inline int hs_errno_is_link(int r)
{
	return r == -ENOTCONN || r == -ETIMEDOUT || r == -ECONNRESET ||
	       r == -EPROTO || r == -EPIPE || r == -ECONNREFUSED ||
	       r == -EHOSTUNREACH || r == -ENETUNREACH;
}

#endif
