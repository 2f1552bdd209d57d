/* SPDX-License-Identifier: MIT
 * common/proto.h - the agent protocol (docs/protocol.md) as C: frame header
 * codec, payload compression, a payload writer and reader, and the request
 * decoder the agent uses.
 *
 * Pure code: no I/O, no global state.  Every decoder is bounds-checked and
 * reports a malformed input as -EPROTO with a static reason string; none
 * allocates more than the sizes the header announced, and those are checked
 * against HS_PROTO_MAX_PAYLOAD first.  Shared by transport/agent.c and
 * tools/agent/, and fuzzed by tests/fuzz/.
 *
 * Thread model: any thread; a struct hs_pbuf / hs_prd belongs to its user.
 */
#ifndef HS_PROTO_H
#define HS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "../transport/transport.h"

#define HS_PROTO_MAGIC 0x47415348u /* "HSAG" */
#define HS_PROTO_VERSION 1
#define HS_PROTO_HDR_SIZE 16
#define HS_PROTO_MAX_PAYLOAD ((4u << 20) + (64u << 10))
#define HS_PROTO_MAX_IO (4u << 20)  /* PREAD len, PWRITE data */
#define HS_PROTO_MAX_STR 4096
#define HS_PROTO_ATTR_SIZE 44
#define HS_PROTO_MIN_COMPRESS 64

enum hs_proto_op {
	HS_OP_HELLO = 1,
	HS_OP_PING = 2,
	HS_OP_LSTAT = 3,
	HS_OP_READDIR = 4,
	HS_OP_OPEN = 5,
	HS_OP_PREAD = 6,
	HS_OP_PWRITE = 7,
	HS_OP_FSYNC = 8,
	HS_OP_CLOSE = 9,
	HS_OP_SETATTR = 10,
	HS_OP_MKDIR = 11,
	HS_OP_RMDIR = 12,
	HS_OP_UNLINK = 13,
	HS_OP_RENAME = 14,
	HS_OP_SYMLINK = 15,
	HS_OP_READLINK = 16,
	HS_OP_LINK = 17,
	HS_OP_STATVFS = 18,
	HS_OP_LOOKUP_LIST = 19,
	HS_OP_PUT_FILE = 20,
	HS_OP_SUBSCRIBE = 21,
	HS_OP_NOTIFY = 22,
	HS_OP_BATCH = 23,
	HS_OP_MAX_ = 23,
};

enum hs_proto_flags {
	HS_PF_LZ4 = 1 << 0,
	HS_PF_MORE = 1 << 1,
	HS_PF_REPLY = 1 << 2,
	HS_PF_ALL_ = 7,
};

enum hs_proto_features {
	HS_FEAT_LZ4 = 1 << 0,
	HS_FEAT_NOTIFY = 1 << 1,
	HS_FEAT_BATCH = 1 << 2,
	HS_FEAT_READONLY = 1 << 3,
	HS_FEAT_SEQ = 1 << 4,   /* BATCH */
};

/* Sub-requests of one BATCH at most. */
#define HS_PROTO_MAX_BATCH 256

/* OPEN flags on the wire (not open(2) values). */
enum hs_proto_open_flags {
	HS_POPEN_READ = 1 << 0,
	HS_POPEN_WRITE = 1 << 1,
	HS_POPEN_CREAT = 1 << 2,
	HS_POPEN_EXCL = 1 << 3,
	HS_POPEN_TRUNC = 1 << 4,
	HS_POPEN_APPEND = 1 << 5,
	HS_POPEN_ALL_ = 63,
};

enum hs_proto_notify_kind {
	HS_NOTIFY_CHANGED = 1,
	HS_NOTIFY_CREATED = 2,
	HS_NOTIFY_REMOVED = 3,
	HS_NOTIFY_OVERFLOW = 4,
	HS_NOTIFY_MOVED = 5,    /* path moved to a second string */
};

struct hs_proto_hdr {
	uint32_t len;     /* payload bytes on the wire */
	uint32_t raw_len; /* payload bytes decompressed */
	uint32_t id;
	uint8_t op;       /* enum hs_proto_op */
	uint8_t flags;    /* enum hs_proto_flags */
	uint16_t status;  /* replies: 0 or a positive Linux errno */
};

/* Writes @h into 16 bytes. */
void hs_proto_hdr_encode(const struct hs_proto_hdr *h, uint8_t *out);

/* Reads and checks a header: limits, flag bits, op range, len == raw_len
 * unless LZ4.  0, or -EPROTO with *why set. */
int hs_proto_hdr_decode(const uint8_t *in, struct hs_proto_hdr *ret,
			const char **why);

/* Turns the @h->len wire bytes at @wire into @h->raw_len bytes at @out
 * (copy, or LZ4 decompression that must give exactly raw_len bytes).
 * 0 or -EPROTO with *why set. */
int hs_proto_payload_decode(const struct hs_proto_hdr *h, const uint8_t *wire,
			    uint8_t *out, const char **why);

/* Compresses @n bytes of @in into @out (@cap bytes, at least
 * hs_proto_compress_bound(n)).  Returns the compressed size when it is
 * worth sending (n >= HS_PROTO_MIN_COMPRESS and strictly shorter), else 0;
 * a payload of 128 KiB or more is not compressed at all when two 8 KiB
 * samples of it do not shrink. */
size_t hs_proto_compress(const uint8_t *in, size_t n, uint8_t *out,
			 size_t cap);
/* Whether hs_proto_compress() would try @n bytes of @in (cheap: at most two
 * 8 KiB samples): a sender asks before it allocates the output. */
int hs_proto_compressible(const uint8_t *in, size_t n);
size_t hs_proto_compress_bound(size_t n);

/* ---- payload writer: a growing buffer; errors stick (err) ---- */
struct hs_pbuf {
	uint8_t *p;
	size_t len, cap;
	int err; /* 0, -ENOMEM, or -E2BIG (beyond HS_PROTO_MAX_PAYLOAD or a
		  * string beyond HS_PROTO_MAX_STR) */
	int unbounded; /* set after init: no HS_PROTO_MAX_PAYLOAD cap (for
			* collecting multi-frame replies) */
};

void hs_pbuf_init(struct hs_pbuf *b);
void hs_pbuf_release(struct hs_pbuf *b);
void hs_pbuf_reset(struct hs_pbuf *b);
/* Reserves @n bytes at the end and returns them (NULL on error). */
uint8_t *hs_pbuf_grow(struct hs_pbuf *b, size_t n);
void hs_pbuf_u8(struct hs_pbuf *b, uint8_t v);
void hs_pbuf_u16(struct hs_pbuf *b, uint16_t v);
void hs_pbuf_u32(struct hs_pbuf *b, uint32_t v);
/* Overwrites the u32 written at offset @at (a length known only later). */
void hs_pbuf_u32_at(struct hs_pbuf *b, size_t at, uint32_t v);
void hs_pbuf_u64(struct hs_pbuf *b, uint64_t v);
void hs_pbuf_str(struct hs_pbuf *b, const char *s);
void hs_pbuf_bytes(struct hs_pbuf *b, const void *p, size_t n);
void hs_pbuf_attr(struct hs_pbuf *b, const struct hs_attr *a);

/* ---- payload reader: errors stick (err = -EPROTO) ---- */
struct hs_prd {
	const uint8_t *p;
	size_t len, pos;
	int err;
	const char *why;
};

void hs_prd_init(struct hs_prd *r, const uint8_t *p, size_t len);
uint8_t hs_prd_u8(struct hs_prd *r);
uint16_t hs_prd_u16(struct hs_prd *r);
uint32_t hs_prd_u32(struct hs_prd *r);
uint64_t hs_prd_u64(struct hs_prd *r);
/* Copies a str into @buf (NUL-terminated; @size > HS_PROTO_MAX_STR). */
void hs_prd_str(struct hs_prd *r, char *buf, size_t size);
void hs_prd_attr(struct hs_prd *r, struct hs_attr *ret);
/* The rest of the payload (borrowed). */
const uint8_t *hs_prd_rest(struct hs_prd *r, size_t *ret_len);
/* -EPROTO if an error stuck or bytes remain unread; else 0. */
int hs_prd_end(struct hs_prd *r);

/* ---- requests, as the agent sees them ---- */
struct hs_proto_req {
	uint8_t op;
	char path[HS_PROTO_MAX_STR + 1];  /* path, from, target, oldpath */
	char path2[HS_PROTO_MAX_STR + 1]; /* to, newpath, SYMLINK's path */
	uint32_t flags, mode, len;
	uint64_t fh, off;
	int64_t atime_ns, mtime_ns;
	struct hs_attr attr;
	const uint8_t *data; /* PWRITE / PUT_FILE bytes, borrowed */
	size_t data_len;
	/* HELLO */
	uint32_t magic, features;
	uint16_t version, min_version;
	char token[HS_PROTO_MAX_STR + 1];
};

/* Parses the decompressed request payload of op @op.  0, or -EPROTO with
 * *why set (unknown op, wrong layout, bad flag bits, oversized I/O). */
int hs_proto_req_decode(uint8_t op, const uint8_t *p, size_t n,
			struct hs_proto_req *ret, const char **why);

/* A BATCH payload: u32 n, then n sub-requests, each u8 op, u32 len and
 * that op's own request payload.  Its reply: for each, u16 status, u32
 * len and that op's reply payload. */
struct hs_proto_batch_it {
	struct hs_prd r;
	uint32_t left;
};

/* Whether @op may be a sub-request of a BATCH: the ops whose reply is one
 * frame and that hold no handle. */
int hs_proto_batch_op(uint8_t op);
void hs_proto_batch_begin(struct hs_proto_batch_it *it, const uint8_t *p,
			  size_t n);
/* The next sub-request: 1 (*op, *sub, *len set), 0 at the end, or -EPROTO
 * (with *why) for a payload hs_proto_req_decode() would refuse. */
int hs_proto_batch_next(struct hs_proto_batch_it *it, uint8_t *op,
			const uint8_t **sub, size_t *len, const char **why);

/* Encodes a request (the client side); the fields used are those
 * hs_proto_req_decode() fills for @req->op.  0 or the pbuf error. */
int hs_proto_req_encode(const struct hs_proto_req *req, struct hs_pbuf *b);

/* Short name of an op for messages ("lstat", ...; "?" if unknown). */
const char *hs_proto_op_name(unsigned op);

#endif
