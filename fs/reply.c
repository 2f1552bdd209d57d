/* SPDX-License-Identifier: MIT
 * fs/reply.c - the only place an internal -errno is turned into the error of
 * a FUSE reply (STYLE.md section 4).  Every op in ops.c replies through
 * hs_reply_errno(); nothing else in fs/ negates an errno for the kernel.
 *
 * Why EIO: a guest process that gets ETIMEDOUT or ECONNRESET from read(2)
 * or stat(2) has no idea what to do with it (and some tools print nonsense
 * for it); EIO is the error a local disk gives when it cannot deliver, which
 * is what happened.  The cache's log line says which host failed and why.
 *
 * Threads: pure function, any thread.  Deliberately not done here: logging
 * (the cache already logged the cause once, not once per request).
 */
#include "reply.h"

#include <errno.h>

#include "../common/common.h"

int hs_reply_errno(int r)
{
	if (hs_errno_is_link(r))
		return EIO; /* host unreachable or the wire broke (DESIGN.md) */
	if (r > 0)
		return EIO; /* a bug: internal codes are never positive */
	return -r;
}
