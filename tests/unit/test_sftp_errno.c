/* SPDX-License-Identifier: MIT
 * tests/unit/test_sftp_errno.c - the SFTP/libssh2 -> errno mapping of
 * transport/sftp_errno.c, without a server: every status code, the
 * context-dependent SSH_FX_FAILURE cases with and without a probe, which
 * failures want a probe, and which break the link.
 */
#include <errno.h>
#include <sys/stat.h>

#include <libssh2.h>
#include <libssh2_sftp.h>

#include "../lib/check.h"
#include "../../transport/sftp_i.h"

#define P LIBSSH2_ERROR_SFTP_PROTOCOL

static const struct hs_sftp_probe is_dir = { .err = 0, .mode = S_IFDIR | 0755 };
static const struct hs_sftp_probe is_file = { .err = 0, .mode = S_IFREG | 0644 };
static const struct hs_sftp_probe missing = { .err = -ENOENT };

static void test_status_codes(void)
{
	static const struct {
		unsigned long fx;
		int e;
	} t[] = {
		{ LIBSSH2_FX_NO_SUCH_FILE, -ENOENT },
		{ LIBSSH2_FX_NO_SUCH_PATH, -ENOENT },
		{ LIBSSH2_FX_PERMISSION_DENIED, -EACCES },
		{ LIBSSH2_FX_FILE_ALREADY_EXISTS, -EEXIST },
		{ LIBSSH2_FX_DIR_NOT_EMPTY, -ENOTEMPTY },
		{ LIBSSH2_FX_NOT_A_DIRECTORY, -ENOTDIR },
		{ LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM, -ENOSPC },
		{ LIBSSH2_FX_QUOTA_EXCEEDED, -EDQUOT },
		{ LIBSSH2_FX_OP_UNSUPPORTED, -ENOTSUP },
		{ LIBSSH2_FX_BAD_MESSAGE, -EINVAL },
		{ LIBSSH2_FX_INVALID_HANDLE, -EBADF },
		{ LIBSSH2_FX_WRITE_PROTECT, -EROFS },
		{ LIBSSH2_FX_LINK_LOOP, -ELOOP },
		{ LIBSSH2_FX_INVALID_FILENAME, -EINVAL },
		{ LIBSSH2_FX_LOCK_CONFLICT, -EBUSY },
		{ LIBSSH2_FX_NO_MEDIA, -ENOMEDIUM },
		{ LIBSSH2_FX_CONNECTION_LOST, -ECONNRESET },
		{ LIBSSH2_FX_NO_CONNECTION, -ECONNRESET },
		{ LIBSSH2_FX_FAILURE, -EIO },
		{ LIBSSH2_FX_EOF, -EIO },
		{ LIBSSH2_FX_OK, -EIO },
		{ 999, -EIO },
	};
	size_t i;

	for (i = 0; i < HS_ARRAY_SIZE(t); i++) {
		int e = hs_sftp_errno(HS_SOP_LSTAT, P, t[i].fx, NULL);

		if (e != t[i].e)
			CHECK_FAIL("fx %lu -> %d, want %d", t[i].fx, e, t[i].e);
		CHECK(hs_sftp_fx_name(t[i].fx) != NULL);
	}
}

static void test_failure_in_context(void)
{
	const unsigned long F = LIBSSH2_FX_FAILURE;

	/* mkdir / symlink / exclusive create: exists -> EEXIST */
	CHECK_EQ(hs_sftp_errno(HS_SOP_MKDIR, P, F, &is_dir), -EEXIST);
	CHECK_EQ(hs_sftp_errno(HS_SOP_MKDIR, P, F, &is_file), -EEXIST);
	CHECK_EQ(hs_sftp_errno(HS_SOP_MKDIR, P, F, &missing), -EIO);
	CHECK_EQ(hs_sftp_errno(HS_SOP_MKDIR, P, F, NULL), -EIO);
	CHECK_EQ(hs_sftp_errno(HS_SOP_SYMLINK, P, F, &is_file), -EEXIST);
	CHECK_EQ(hs_sftp_errno(HS_SOP_OPEN_EXCL, P, F, &is_file), -EEXIST);
	CHECK_EQ(hs_sftp_errno(HS_SOP_OPEN_EXCL, P, F, &missing), -EIO);
	/* plain open of a directory for writing */
	CHECK_EQ(hs_sftp_errno(HS_SOP_OPEN, P, F, &is_dir), -EISDIR);
	CHECK_EQ(hs_sftp_errno(HS_SOP_OPEN, P, F, &is_file), -EIO);
	/* rmdir */
	CHECK_EQ(hs_sftp_errno(HS_SOP_RMDIR, P, F, &is_dir), -ENOTEMPTY);
	CHECK_EQ(hs_sftp_errno(HS_SOP_RMDIR, P, F, &is_file), -ENOTDIR);
	CHECK_EQ(hs_sftp_errno(HS_SOP_RMDIR, P, F, &missing), -EIO);
	CHECK_EQ(hs_sftp_errno(HS_SOP_RMDIR, P, LIBSSH2_FX_NO_SUCH_FILE,
			       &is_file), -ENOTDIR);
	CHECK_EQ(hs_sftp_errno(HS_SOP_RMDIR, P, LIBSSH2_FX_NO_SUCH_FILE,
			       &missing), -ENOENT);
	CHECK_EQ(hs_sftp_errno(HS_SOP_RMDIR, P, LIBSSH2_FX_NO_SUCH_FILE,
			       &is_dir), -ENOENT);
	CHECK_EQ(hs_sftp_errno(HS_SOP_OPENDIR, P, LIBSSH2_FX_NO_SUCH_FILE,
			       &is_file), -ENOTDIR);
	CHECK_EQ(hs_sftp_errno(HS_SOP_OPENDIR, P, LIBSSH2_FX_NO_SUCH_FILE,
			       &missing), -ENOENT);
	/* unlink of a directory */
	CHECK_EQ(hs_sftp_errno(HS_SOP_UNLINK, P, F, &is_dir), -EISDIR);
	CHECK_EQ(hs_sftp_errno(HS_SOP_UNLINK, P, F, &is_file), -EIO);
	/* rename: target exists */
	CHECK_EQ(hs_sftp_errno(HS_SOP_RENAME, P, F, &is_file), -EEXIST);
	CHECK_EQ(hs_sftp_errno(HS_SOP_RENAME, P, F, &missing), -EIO);
	/* libssh2 1.10 garbles the status of symlink/readlink/realpath:
	 * whatever @fx says, the probe decides */
	{
		static const struct hs_sftp_probe is_link = {
			.err = 0, .mode = S_IFLNK | 0777 };
		static const struct hs_sftp_probe denied = { .err = -EACCES };

		CHECK(hs_sftp_wants_probe(HS_SOP_READLINK, P, 37));
		CHECK(hs_sftp_wants_probe(HS_SOP_REALPATH, P, 2));
		CHECK(hs_sftp_wants_probe(HS_SOP_SYMLINK, P, 0));
		CHECK_EQ(hs_sftp_errno(HS_SOP_READLINK, P, 37, &is_file), -EINVAL);
		CHECK_EQ(hs_sftp_errno(HS_SOP_READLINK, P, 3, &missing), -ENOENT);
		CHECK_EQ(hs_sftp_errno(HS_SOP_READLINK, P, 3, &is_link), -EIO);
		CHECK_EQ(hs_sftp_errno(HS_SOP_READLINK, P, F, NULL), -EIO);
		CHECK_EQ(hs_sftp_errno(HS_SOP_SYMLINK, P, 12, &is_link), -EEXIST);
		CHECK_EQ(hs_sftp_errno(HS_SOP_SYMLINK, P, 0, &missing), -ENOENT);
		CHECK_EQ(hs_sftp_errno(HS_SOP_SYMLINK, P, 0, &denied), -EACCES);
		CHECK_EQ(hs_sftp_errno(HS_SOP_REALPATH, P, 9, &missing), -ENOENT);
		CHECK_EQ(hs_sftp_errno(HS_SOP_REALPATH, P, 9, &is_dir), -EIO);
	}
	/* the rest */
	CHECK_EQ(hs_sftp_errno(HS_SOP_WRITE, P, F, NULL), -EIO);
	CHECK_EQ(hs_sftp_errno(HS_SOP_SETSTAT, P, F, NULL), -EIO);
	CHECK_EQ(hs_sftp_errno(HS_SOP_FSYNC, P, LIBSSH2_FX_OP_UNSUPPORTED, NULL),
		 -ENOTSUP);
}

static void test_wants_probe(void)
{
	const unsigned long F = LIBSSH2_FX_FAILURE;

	CHECK(hs_sftp_wants_probe(HS_SOP_MKDIR, P, F));
	CHECK(hs_sftp_wants_probe(HS_SOP_RMDIR, P, F));
	CHECK(hs_sftp_wants_probe(HS_SOP_RMDIR, P, LIBSSH2_FX_NO_SUCH_FILE));
	CHECK(hs_sftp_wants_probe(HS_SOP_UNLINK, P, F));
	CHECK(hs_sftp_wants_probe(HS_SOP_OPENDIR, P, LIBSSH2_FX_NO_SUCH_FILE));
	CHECK(hs_sftp_wants_probe(HS_SOP_RENAME, P, F));
	CHECK(hs_sftp_wants_probe(HS_SOP_SYMLINK, P, F));
	CHECK(hs_sftp_wants_probe(HS_SOP_OPEN_EXCL, P, F));
	CHECK(!hs_sftp_wants_probe(HS_SOP_MKDIR, P, LIBSSH2_FX_NO_SUCH_FILE));
	CHECK(!hs_sftp_wants_probe(HS_SOP_LSTAT, P, F));
	CHECK(!hs_sftp_wants_probe(HS_SOP_WRITE, P, F));
	CHECK(!hs_sftp_wants_probe(HS_SOP_MKDIR, LIBSSH2_ERROR_SOCKET_RECV, F));
}

static void test_session_errors(void)
{
	static const struct {
		int rc;
		int e;
		int breaks;
	} t[] = {
		{ LIBSSH2_ERROR_SOCKET_SEND, -EPIPE, 1 },
		{ LIBSSH2_ERROR_SOCKET_RECV, -ECONNRESET, 1 },
		{ LIBSSH2_ERROR_SOCKET_DISCONNECT, -ECONNRESET, 1 },
		{ LIBSSH2_ERROR_CHANNEL_CLOSED, -ECONNRESET, 1 },
		{ LIBSSH2_ERROR_TIMEOUT, -ETIMEDOUT, 1 },
		{ LIBSSH2_ERROR_SOCKET_TIMEOUT, -ETIMEDOUT, 1 },
		{ LIBSSH2_ERROR_PROTO, -EPROTO, 1 },
		{ LIBSSH2_ERROR_INVALID_MAC, -EPROTO, 1 },
		{ LIBSSH2_ERROR_DECRYPT, -EPROTO, 1 },
		{ LIBSSH2_ERROR_KEX_FAILURE, -EPROTO, 1 },
		{ LIBSSH2_ERROR_ALLOC, -ENOMEM, 1 },
		{ LIBSSH2_ERROR_AUTHENTICATION_FAILED, -EACCES, 0 },
		{ LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED, -EACCES, 0 },
		{ LIBSSH2_ERROR_FILE, -ENOENT, 0 },
		{ LIBSSH2_ERROR_BUFFER_TOO_SMALL, -ERANGE, 0 },
		{ LIBSSH2_ERROR_SFTP_PROTOCOL, -ENOENT, 0 }, /* with NO_SUCH_FILE */
	};
	size_t i;

	for (i = 0; i < HS_ARRAY_SIZE(t); i++) {
		int e = hs_sftp_errno(HS_SOP_LSTAT, t[i].rc,
				      LIBSSH2_FX_NO_SUCH_FILE, NULL);

		if (e != t[i].e)
			CHECK_FAIL("rc %d -> %d, want %d", t[i].rc, e, t[i].e);
		if (!!hs_sftp_breaks_link(t[i].rc) != t[i].breaks)
			CHECK_FAIL("rc %d breaks=%d", t[i].rc,
				   hs_sftp_breaks_link(t[i].rc));
		/* link-class results must be what the cache retries on */
		if (t[i].breaks && e != -ENOMEM)
			CHECK(hs_tr_err_is_link(e));
	}
	CHECK_EQ(hs_sftp_errno(HS_SOP_READLINK, LIBSSH2_ERROR_BUFFER_TOO_SMALL,
			       0, NULL), -ENAMETOOLONG);
	CHECK(!hs_sftp_breaks_link(0));
}

int main(void)
{
	test_status_codes();
	test_failure_in_context();
	test_wants_probe();
	test_session_errors();
	CHECK_STR_EQ(hs_sftp_op_name(HS_SOP_RENAME), "rename");
	printf("test_sftp_errno: ok\n");
	return 0;
}
