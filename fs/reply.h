/* SPDX-License-Identifier: MIT
 * fs/reply.h - the one mapping from an internal -errno to the error a FUSE
 * reply carries.
 */
#ifndef HS_FS_REPLY_H
#define HS_FS_REPLY_H

/* Turns @r (a negative errno from the cache) into the positive errno for
 * fuse_reply_err().  "The host could not be reached" errors become EIO
 * (DESIGN.md, contract 1); everything else passes through negated.
 * Returns 0 for @r == 0, and EIO for a positive (buggy) @r. */
int hs_reply_errno(int r);

#endif
