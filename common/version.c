/* SPDX-License-Identifier: MIT
 * common/version.c - --version output shared by hostshare, hostsharectl
 * and the agent.  Asks each library for its run-time version, so the
 * output names what the dynamic linker actually loaded.
 */
#include "version.h"

#include <string.h>

#include "common/build_id.h"

#include <libssh2.h>
#include <lz4.h>
#include <sqlite3.h>

#ifndef HS_VERSION
#define HS_VERSION "unknown"
#endif

const char *hs_version(void)
{
	return HS_VERSION;
}

void hs_print_versions(FILE *f, const char *prog, const char *fuse)
{
	const char *ssh2 = libssh2_version(0);

	fprintf(f, "%s %s\n", prog, HS_VERSION);
	/* where the build came from, when it was built from a git checkout */
	if (strcmp(HS_BUILD_ID, HS_VERSION))
		fprintf(f, "build %s\n", HS_BUILD_ID);
	if (fuse)
		fprintf(f, "libfuse %s\n", fuse);
	fprintf(f, "libssh2 %s\n", ssh2 ? ssh2 : LIBSSH2_VERSION);
	fprintf(f, "sqlite %s\n", sqlite3_libversion());
	fprintf(f, "lz4 %s\n", LZ4_versionString());
}
