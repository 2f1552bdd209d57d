/* SPDX-License-Identifier: MIT
 * tests/lib/check.h - typed assertions for the C unit tests.  A failed
 * check prints both values with file:line and aborts the test (exit 1).
 */
#ifndef HS_CHECK_H
#define HS_CHECK_H

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_FAIL(fmt, ...)                                                \
	do {                                                                \
		fprintf(stderr, "%s:%d: check failed: " fmt "\n", __FILE__, \
			__LINE__, __VA_ARGS__);                             \
		exit(1);                                                    \
	} while (0)

#define CHECK(cond)                                         \
	do {                                                \
		if (!(cond))                                \
			CHECK_FAIL("%s", #cond);            \
	} while (0)

#define CHECK_EQ(a, b)                                                       \
	do {                                                                 \
		int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                \
		if (a_ != b_)                                                \
			CHECK_FAIL("%s == %s (%" PRId64 " vs %" PRId64 ")", #a, \
				   #b, a_, b_);                              \
	} while (0)

#define CHECK_OK(expr)                                                     \
	do {                                                               \
		int64_t r_ = (int64_t)(expr);                              \
		if (r_ < 0)                                                \
			CHECK_FAIL("%s returned %" PRId64 " (%s)", #expr, r_, \
				   strerror((int)-r_));                    \
	} while (0)

#define CHECK_STR_EQ(a, b)                                                  \
	do {                                                                \
		const char *a_ = (a), *b_ = (b);                            \
		if (strcmp(a_, b_) != 0)                                    \
			CHECK_FAIL("%s == %s (\"%s\" vs \"%s\")", #a, #b, a_, b_); \
	} while (0)

#endif
