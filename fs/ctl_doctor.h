/* SPDX-License-Identifier: MIT
 * fs/ctl_doctor.h - the "doctor" request of the control socket (see
 * ctl_doctor.c), dispatched from fs/ctl.c.
 */
#ifndef HS_FS_CTL_DOCTOR_H
#define HS_FS_CTL_DOCTOR_H

#include "fs_i.h"

/* Answers the "doctor" request on @fd with the connection settings of the
 * mount (one JSON line).  Never blocks on the host. */
void hs_ctl_doctor(struct hs_fs *fs, int fd);

#endif
