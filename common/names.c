/* SPDX-License-Identifier: MIT
 * common/names.c - what a name and a path from a peer may be.
 *
 * Names reach the guest from the host side in listings (SFTP readdir, the
 * agent's LIST) and in the agent's change notifications.  A peer that is
 * broken or hostile may send names a folder cannot hold: an empty one, "."
 * or "..", one with a '/' (a path in disguise).  Stored as a dentry, ".."
 * would make the guest name the folder above (the replayer of host changes
 * once changed the folder above the mountpoint through it), and "" or "."
 * would make a listing fail.  Every such name is checked here, on the way
 * in, by the layer that receives it.  Pure functions, no state.
 */
#include "common.h"

#include <string.h>

int hs_name_ok(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n <= 255 && strcmp(name, ".") && strcmp(name, "..") &&
	       !memchr(name, '/', n);
}

int hs_path_ok(const char *path)
{
	const char *p = path, *e;
	char comp[256];

	if (*p == '/')
		p++;
	if (!*p)
		return 1; /* the root */
	for (;;) {
		e = strchr(p, '/');
		if (!e)
			e = p + strlen(p);
		if ((size_t)(e - p) >= sizeof(comp))
			return 0;
		memcpy(comp, p, (size_t)(e - p));
		comp[e - p] = 0;
		if (!hs_name_ok(comp))
			return 0;
		if (!*e)
			return 1;
		p = e + 1;
	}
}
