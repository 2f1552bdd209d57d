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

/* The doctor's usage lines, for hostsharectl --help. */
void hs_doctor_usage(FILE *f);

#endif
