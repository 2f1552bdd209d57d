/* SPDX-License-Identifier: MIT
 * common/io.c - writing a frame to a stream socket against a deadline
 * (the agent wire, both ends).
 */
#include "common.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

int hs_send_by(int fd, struct iovec *iov, int cnt, hs_deadline_t dl,
	       int *ret_started)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	struct msghdr mh = { 0 };
	ssize_t r;

	if (ret_started)
		*ret_started = 0;
	while (cnt) {
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)cnt;
		r = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			if (hs_deadline_passed(dl))
				return -ETIMEDOUT;
			/* short slices: any room for the frame will do, not
			 * only the half-empty buffer POLLOUT waits for */
			if (poll(&pfd, 1, HS_MIN(hs_deadline_ms_left(dl), 100)) < 0 &&
			    errno != EINTR)
				return -errno;
			continue;
		}
		if (ret_started)
			*ret_started = 1;
		hs_iov_advance(&iov, &cnt, (size_t)r);
	}
	return 0;
}
