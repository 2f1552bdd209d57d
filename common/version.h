/* SPDX-License-Identifier: MIT
 * common/version.h - what every program prints for --version: its own
 * version and the versions of the libraries it runs with (the shared
 * libraries actually loaded, not the headers it was built against).
 */
#ifndef HS_VERSION_H
#define HS_VERSION_H

#include <stdio.h>

/* The version of this build of hostshare ("0.1.0"). */
const char *hs_version(void);

/* Writes "@prog VERSION" and one "library VERSION" line for libssh2,
 * sqlite and lz4 to @f; @fuse is the libfuse version for programs that
 * link it (fuse_pkgversion()), NULL for the others. */
void hs_print_versions(FILE *f, const char *prog, const char *fuse);

#endif
