/* SPDX-License-Identifier: MIT
 * common/ctl_path.c - naming of control sockets (see ctl.h).  Pure string
 * work plus realpath(3); no sockets here.
 */
#include "ctl.h"
#include "common.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

int hs_ctl_rundir(uid_t uid, char *buf, size_t size)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (uid == 0)
		n = snprintf(buf, size, "/run/hostshare");
	else if (xdg && *xdg)
		n = snprintf(buf, size, "%s/hostshare", xdg);
	else
		n = snprintf(buf, size, "/tmp/hostshare-%u", (unsigned)uid);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int hs_ctl_socket_path(const char *mountpoint, uid_t uid, char *buf,
		       size_t size)
{
	char real[PATH_MAX];
	char dir[PATH_MAX];
	int n, r;

	if (!realpath(mountpoint, real))
		return -errno;
	r = hs_ctl_rundir(uid, dir, sizeof(dir));
	if (r < 0)
		return r;
	n = snprintf(buf, size, "%s/%016" PRIx64 ".sock", dir,
		     hs_fnv1a64(real));
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}
