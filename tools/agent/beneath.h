/* SPDX-License-Identifier: MIT
 * tools/agent/beneath.h - resolve request paths strictly beneath the
 * agent's root folder.
 *
 * A request path ("/a/b") is first checked lexically (must start with '/',
 * no ".." component), then resolved from the root's descriptor with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), so that no symlink can
 * lead outside.  Where openat2 is missing (ENOSYS; or HS_AGENT_NO_OPENAT2=1
 * in the environment, for tests) the components are walked one by one with
 * O_NOFOLLOW and any symlink on the way is refused.  An escape attempt is
 * -EACCES.
 *
 * Thread model: any thread; the only shared state is the "openat2 works"
 * flag, written once.
 */
#ifndef HS_AGENT_BENEATH_H
#define HS_AGENT_BENEATH_H

#include <stddef.h>

/* Checks @path and writes the root-relative form into @rel ("." for the
 * root itself, else "a/b").  0 or -EACCES / -EINVAL / -ENAMETOOLONG. */
int hs_bn_rel(const char *path, char *rel, size_t size);

/* Opens root-relative @rel (from hs_bn_rel) with open(2) @flags and
 * @mode.  A final symlink is followed only if it stays beneath.  Returns a
 * descriptor or -errno. */
int hs_bn_open(int rootfd, const char *rel, int flags, unsigned mode);

/* Opens the folder holding @rel (O_PATH) and points *ret_name at its last
 * component (inside @rel; "." for the root).  Returns a descriptor or
 * -errno. */
int hs_bn_parent(int rootfd, char *rel, const char **ret_name);

#endif
