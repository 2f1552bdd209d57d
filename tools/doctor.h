/* SPDX-License-Identifier: MIT
 * tools/doctor.h - `hostsharectl doctor` (doctor.c), called from
 * hostsharectl's main().
 */
#ifndef HS_TOOLS_DOCTOR_H
#define HS_TOOLS_DOCTOR_H

#include <stdio.h>

/* Runs the doctor with argv[0] = "doctor"; returns the exit status
 * (0 no check failed, 1 a check failed; usage errors exit 2). */
int hs_doctor_main(int argc, char **argv);

/* The cache folder the mount program uses for @source with the mount
 * options @opts (an -o list, may be NULL: cache_dir= and port= count, the
 * rest is ignored), named as fs/opts.c's hs_opts_cache_folder() names it;
 * nothing is created.  An SSH source without a port (a dead mount's line
 * in the mount table has none) takes 22, or else the folder of this
 * source for another port that holds a database.  A @source that is not one exits 2 with its line
 * ("hostsharectl: pending: ...").  0 or -ENOMEM. */
int hs_doctor_cache_folder(const char *source, const char *opts, char *buf,
			   size_t size);

/* The doctor's usage lines, for hostsharectl --help. */
void hs_doctor_usage(FILE *f);

#endif
