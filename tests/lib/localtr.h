/* SPDX-License-Identifier: MIT
 * tests/lib/localtr.h - a transport over a local directory, for tests.
 *
 * "localtr" implements every slot of struct hs_transport_ops with plain
 * POSIX calls relative to a directory fd of @root, so the cache, the flusher
 * and the tools can be exercised without sshd.  Paths follow transport.h:
 * "/" is @root itself, "/a/b" is @root/a/b.
 *
 * Caps: POSIX_RENAME | HARDLINK | FSYNC | STATVFS | NS_TIMES | PIPELINE |
 * SEQ (batch: mkdir and whole-file puts in order, as the agent's BATCH).
 * remote_uid/remote_gid are getuid()/getgid().
 *
 * Thread model: any thread, any number at once (each call is a stateless
 * syscall on the root fd; no lock).  hs_tr_close() only once no other thread
 * uses it.  Never marks itself broken: a wire failure is simulated with the
 * faulty wrapper (tests/lib/faulty.h).
 */
#ifndef HS_TESTS_LOCALTR_H
#define HS_TESTS_LOCALTR_H

#include <stddef.h>

#include "../../common/common.h"
#include "../../transport/transport.h"

/* Opens a transport serving the directory @root (borrowed; a relative path
 * is resolved now).  On failure returns -errno (-ENOENT: @root missing,
 * -ENOTDIR: not a directory) and writes one lowercase line into @err. */
int hs_localtr_open(const char *root, struct hs_transport **ret, char *err,
		    size_t errlen);

/* hs_dial_fn (cache/cache.h) for struct hs_cache_config.dial: @root_path is
 * the root directory as a const char *.  -ETIMEDOUT if @dl already passed. */
int hs_localtr_dial(void *root_path, hs_deadline_t dl,
		    struct hs_transport **ret, char *err, size_t errlen);

/* Makes every later call on @t (a localtr transport, not a wrapper) sleep
 * @delay_us microseconds before doing its work, as a slow link would.  The
 * sleep never passes the call's deadline: a call whose delay would end after
 * its deadline sleeps until the deadline and returns -ETIMEDOUT without doing
 * anything (without marking the transport broken; fclose still releases the
 * file).  0 turns the delay off.  Callable from any thread at any time. */
void hs_localtr_set_delay(struct hs_transport *t, int delay_us);

#endif
