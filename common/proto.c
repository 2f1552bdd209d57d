/* SPDX-License-Identifier: MIT
 * common/proto.c - frame and payload codec of the agent protocol.  See
 * proto.h and docs/protocol.md.
 */
#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return get16(p) | (uint32_t)get16(p + 2) << 16;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

void hs_proto_hdr_encode(const struct hs_proto_hdr *h, uint8_t *out)
{
	put32(out, h->len);
	put32(out + 4, h->raw_len);
	put32(out + 8, h->id);
	out[12] = h->op;
	out[13] = h->flags;
	put16(out + 14, h->status);
}

int hs_proto_hdr_decode(const uint8_t *in, struct hs_proto_hdr *ret,
			const char **why)
{
	struct hs_proto_hdr h;

	h.len = get32(in);
	h.raw_len = get32(in + 4);
	h.id = get32(in + 8);
	h.op = in[12];
	h.flags = in[13];
	h.status = get16(in + 14);
	*why = NULL;
	if (h.len > HS_PROTO_MAX_PAYLOAD || h.raw_len > HS_PROTO_MAX_PAYLOAD)
		*why = "frame longer than the limit";
	else if (h.flags & ~HS_PF_ALL_)
		*why = "unknown frame flag";
	else if (h.op < 1 || h.op > HS_OP_MAX_)
		*why = "unknown operation";
	else if (!(h.flags & HS_PF_LZ4) && h.len != h.raw_len)
		*why = "uncompressed frame with two lengths";
	else if ((h.flags & HS_PF_LZ4) && (h.len == 0 || h.raw_len == 0))
		*why = "empty compressed frame";
	if (*why)
		return -EPROTO;
	*ret = h;
	return 0;
}

int hs_proto_payload_decode(const struct hs_proto_hdr *h, const uint8_t *wire,
			    uint8_t *out, const char **why)
{
	int n;

	*why = NULL;
	if (!(h->flags & HS_PF_LZ4)) {
		if (h->len)
			memcpy(out, wire, h->len);
		return 0;
	}
	n = LZ4_decompress_safe((const char *)wire, (char *)out, (int)h->len,
				(int)h->raw_len);
	if (n < 0) {
		*why = "corrupt compressed payload";
		return -EPROTO;
	}
	if ((uint32_t)n != h->raw_len) {
		*why = "decompressed size differs from the header";
		return -EPROTO;
	}
	return 0;
}

size_t hs_proto_compress_bound(size_t n)
{
	return n > HS_PROTO_MAX_PAYLOAD ? 0 : (size_t)LZ4_compressBound((int)n);
}

/* Payloads from PROBE_MIN bytes on are first judged by two PROBE-byte
 * samples (the middle and the end, where a PWRITE's or PUT's data is):
 * when neither shrinks by a sixteenth, the payload goes as it is.
 * Incompressible data (media, archives, encrypted files) then costs 2x
 * PROBE bytes of LZ4 per payload instead of all of it. */
#define PROBE (8u << 10)
#define PROBE_MIN (128u << 10)

static int sample_shrinks(const uint8_t *in)
{
	char z[LZ4_COMPRESSBOUND(PROBE)];
	int r = LZ4_compress_default((const char *)in, z, (int)PROBE,
				     (int)sizeof(z));

	return r > 0 && (unsigned)r < PROBE - PROBE / 16;
}

int hs_proto_compressible(const uint8_t *in, size_t n)
{
	if (n < HS_PROTO_MIN_COMPRESS || n > HS_PROTO_MAX_PAYLOAD)
		return 0;
	return n < PROBE_MIN || sample_shrinks(in + n / 2) ||
	       sample_shrinks(in + n - PROBE);
}

size_t hs_proto_compress(const uint8_t *in, size_t n, uint8_t *out,
			 size_t cap)
{
	int r;

	if (cap > INT32_MAX || !hs_proto_compressible(in, n))
		return 0;
	r = LZ4_compress_default((const char *)in, (char *)out, (int)n,
				 (int)cap);
	return r > 0 && (size_t)r < n ? (size_t)r : 0;
}

/* ---- writer ---- */

void hs_pbuf_init(struct hs_pbuf *b)
{
	memset(b, 0, sizeof(*b));
}

void hs_pbuf_release(struct hs_pbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void hs_pbuf_reset(struct hs_pbuf *b)
{
	b->len = 0;
	b->err = 0;
}

uint8_t *hs_pbuf_grow(struct hs_pbuf *b, size_t n)
{
	uint8_t *p;
	size_t cap;

	if (b->err)
		return NULL;
	if (b->unbounded ? n > SIZE_MAX / 4 - b->len :
			   n > HS_PROTO_MAX_PAYLOAD - b->len) {
		b->err = -E2BIG;
		return NULL;
	}
	if (b->len + n > b->cap) {
		cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return NULL;
		}
		b->p = p;
		b->cap = cap;
	}
	p = b->p + b->len;
	b->len += n;
	return p;
}

void hs_pbuf_u8(struct hs_pbuf *b, uint8_t v)
{
	uint8_t *p = hs_pbuf_grow(b, 1);

	if (p)
		*p = v;
}

void hs_pbuf_u16(struct hs_pbuf *b, uint16_t v)
{
	uint8_t *p = hs_pbuf_grow(b, 2);

	if (p)
		put16(p, v);
}

void hs_pbuf_u32(struct hs_pbuf *b, uint32_t v)
{
	uint8_t *p = hs_pbuf_grow(b, 4);

	if (p)
		put32(p, v);
}

void hs_pbuf_u32_at(struct hs_pbuf *b, size_t at, uint32_t v)
{
	if (!b->err && at + 4 <= b->len)
		put32(b->p + at, v);
}

void hs_pbuf_u64(struct hs_pbuf *b, uint64_t v)
{
	uint8_t *p = hs_pbuf_grow(b, 8);

	if (p)
		put64(p, v);
}

void hs_pbuf_str(struct hs_pbuf *b, const char *s)
{
	size_t n = strlen(s);

	if (n > HS_PROTO_MAX_STR) {
		if (!b->err)
			b->err = -E2BIG;
		return;
	}
	hs_pbuf_u16(b, (uint16_t)n);
	hs_pbuf_bytes(b, s, n);
}

void hs_pbuf_bytes(struct hs_pbuf *b, const void *src, size_t n)
{
	uint8_t *p = hs_pbuf_grow(b, n);

	if (p && n)
		memcpy(p, src, n);
}

void hs_pbuf_attr(struct hs_pbuf *b, const struct hs_attr *a)
{
	hs_pbuf_u32(b, a->valid);
	hs_pbuf_u32(b, a->mode);
	hs_pbuf_u32(b, a->uid);
	hs_pbuf_u32(b, a->gid);
	hs_pbuf_u32(b, a->nlink);
	hs_pbuf_u64(b, a->size);
	hs_pbuf_u64(b, (uint64_t)a->atime_ns);
	hs_pbuf_u64(b, (uint64_t)a->mtime_ns);
}

/* ---- reader ---- */

void hs_prd_init(struct hs_prd *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->pos = 0;
	r->err = 0;
	r->why = NULL;
}

static const uint8_t *take(struct hs_prd *r, size_t n, const char *why)
{
	const uint8_t *p;

	if (r->err)
		return NULL;
	if (n > r->len - r->pos) {
		r->err = -EPROTO;
		r->why = why;
		return NULL;
	}
	p = r->p + r->pos;
	r->pos += n;
	return p;
}

uint8_t hs_prd_u8(struct hs_prd *r)
{
	const uint8_t *p = take(r, 1, "payload too short");

	return p ? *p : 0;
}

uint16_t hs_prd_u16(struct hs_prd *r)
{
	const uint8_t *p = take(r, 2, "payload too short");

	return p ? get16(p) : 0;
}

uint32_t hs_prd_u32(struct hs_prd *r)
{
	const uint8_t *p = take(r, 4, "payload too short");

	return p ? get32(p) : 0;
}

uint64_t hs_prd_u64(struct hs_prd *r)
{
	const uint8_t *p = take(r, 8, "payload too short");

	return p ? get64(p) : 0;
}

void hs_prd_str(struct hs_prd *r, char *buf, size_t size)
{
	uint16_t n = hs_prd_u16(r);
	const uint8_t *p;

	buf[0] = '\0';
	if (r->err)
		return;
	if (n > HS_PROTO_MAX_STR || n >= size) {
		r->err = -EPROTO;
		r->why = "string longer than the limit";
		return;
	}
	p = take(r, n, "string beyond the payload");
	if (!p)
		return;
	if (memchr(p, '\0', n)) {
		r->err = -EPROTO;
		r->why = "NUL inside a string";
		return;
	}
	memcpy(buf, p, n);
	buf[n] = '\0';
}

void hs_prd_attr(struct hs_prd *r, struct hs_attr *a)
{
	a->valid = hs_prd_u32(r);
	a->mode = hs_prd_u32(r);
	a->uid = hs_prd_u32(r);
	a->gid = hs_prd_u32(r);
	a->nlink = hs_prd_u32(r);
	a->size = hs_prd_u64(r);
	a->atime_ns = (int64_t)hs_prd_u64(r);
	a->mtime_ns = (int64_t)hs_prd_u64(r);
}

const uint8_t *hs_prd_rest(struct hs_prd *r, size_t *ret_len)
{
	const uint8_t *p;

	*ret_len = 0;
	if (r->err)
		return NULL;
	p = r->p + r->pos;
	*ret_len = r->len - r->pos;
	r->pos = r->len;
	return p;
}

int hs_prd_end(struct hs_prd *r)
{
	if (!r->err && r->pos != r->len) {
		r->err = -EPROTO;
		r->why = "trailing bytes in payload";
	}
	return r->err;
}

/* ---- requests ---- */

static int is_path_op(uint8_t op)
{
	switch (op) {
	case HS_OP_LSTAT: case HS_OP_READDIR: case HS_OP_RMDIR:
	case HS_OP_UNLINK: case HS_OP_READLINK: case HS_OP_STATVFS:
	case HS_OP_LOOKUP_LIST: case HS_OP_SUBSCRIBE:
		return 1;
	}
	return 0;
}

int hs_proto_batch_op(uint8_t op)
{
	switch (op) {
	case HS_OP_LSTAT: case HS_OP_SETATTR: case HS_OP_MKDIR:
	case HS_OP_RMDIR: case HS_OP_UNLINK: case HS_OP_RENAME:
	case HS_OP_SYMLINK: case HS_OP_LINK: case HS_OP_PUT_FILE:
		return 1;
	}
	return 0;
}

void hs_proto_batch_begin(struct hs_proto_batch_it *it, const uint8_t *p,
			  size_t n)
{
	hs_prd_init(&it->r, p, n);
	it->left = hs_prd_u32(&it->r);
}

int hs_proto_batch_next(struct hs_proto_batch_it *it, uint8_t *op,
			const uint8_t **sub, size_t *len, const char **why)
{
	struct hs_prd *r = &it->r;
	uint32_t n;

	*why = NULL;
	if (!r->err && it->left > HS_PROTO_MAX_BATCH)
		r->err = -EPROTO, r->why = "batch longer than the limit";
	if (!r->err && it->left == 0)
		return hs_prd_end(r) < 0 ? (*why = r->why, -EPROTO) : 0;
	*op = hs_prd_u8(r);
	n = hs_prd_u32(r);
	if (!r->err && !hs_proto_batch_op(*op))
		r->err = -EPROTO, r->why = "op not allowed in a batch";
	if (!r->err && n > r->len - r->pos)
		r->err = -EPROTO, r->why = "sub-request beyond the batch";
	if (r->err) {
		*why = r->why ? r->why : "truncated batch";
		return -EPROTO;
	}
	*sub = r->p + r->pos;
	*len = n;
	r->pos += n;
	it->left--;
	return 1;
}

/* Every sub-request of a BATCH must parse: a malformed one closes the
 * connection before any of them runs. */
static int batch_check(const uint8_t *p, size_t n, uint32_t *count,
		       const char **why)
{
	struct hs_proto_batch_it it;
	struct hs_proto_req *q = malloc(sizeof(*q));
	const uint8_t *sub;
	size_t len;
	uint8_t op;
	int r;

	if (!q) {
		*why = "out of memory";
		return -EPROTO;
	}
	*count = 0;
	hs_proto_batch_begin(&it, p, n);
	while ((r = hs_proto_batch_next(&it, &op, &sub, &len, why)) > 0) {
		(*count)++;
		if (hs_proto_req_decode(op, sub, len, q, why) < 0) {
			r = -EPROTO;
			break;
		}
	}
	free(q);
	return r;
}

int hs_proto_req_decode(uint8_t op, const uint8_t *p, size_t n,
			struct hs_proto_req *q, const char **why)
{
	struct hs_prd r;

	q->path[0] = q->path2[0] = q->token[0] = '\0';
	q->flags = q->mode = q->len = 0;
	q->fh = q->off = 0;
	q->atime_ns = q->mtime_ns = 0;
	memset(&q->attr, 0, sizeof(q->attr));
	q->data = NULL;
	q->data_len = 0;
	q->magic = q->features = 0;
	q->version = q->min_version = 0;
	q->op = op;
	hs_prd_init(&r, p, n);
	*why = NULL;
	if (is_path_op(op)) {
		hs_prd_str(&r, q->path, sizeof(q->path));
		goto end;
	}
	switch (op) {
	case HS_OP_HELLO:
		q->magic = hs_prd_u32(&r);
		q->version = hs_prd_u16(&r);
		q->min_version = hs_prd_u16(&r);
		q->features = hs_prd_u32(&r);
		hs_prd_str(&r, q->token, sizeof(q->token));
		break;
	case HS_OP_PING:
		break;
	case HS_OP_OPEN:
		hs_prd_str(&r, q->path, sizeof(q->path));
		q->flags = hs_prd_u32(&r);
		q->mode = hs_prd_u32(&r);
		if (!r.err && (q->flags & ~(uint32_t)HS_POPEN_ALL_)) {
			*why = "unknown open flag";
			return -EPROTO;
		}
		break;
	case HS_OP_PREAD:
		q->fh = hs_prd_u64(&r);
		q->off = hs_prd_u64(&r);
		q->len = hs_prd_u32(&r);
		if (!r.err && q->len > HS_PROTO_MAX_IO) {
			*why = "read longer than the limit";
			return -EPROTO;
		}
		break;
	case HS_OP_PWRITE:
		q->fh = hs_prd_u64(&r);
		q->off = hs_prd_u64(&r);
		q->data = hs_prd_rest(&r, &q->data_len);
		break;
	case HS_OP_FSYNC:
	case HS_OP_CLOSE:
		q->fh = hs_prd_u64(&r);
		break;
	case HS_OP_SETATTR:
		hs_prd_str(&r, q->path, sizeof(q->path));
		hs_prd_attr(&r, &q->attr);
		break;
	case HS_OP_MKDIR:
		hs_prd_str(&r, q->path, sizeof(q->path));
		q->mode = hs_prd_u32(&r);
		break;
	case HS_OP_RENAME:
		hs_prd_str(&r, q->path, sizeof(q->path));
		hs_prd_str(&r, q->path2, sizeof(q->path2));
		q->flags = hs_prd_u32(&r);
		if (!r.err && (q->flags & ~(uint32_t)HS_RENAME_NOREPLACE)) {
			*why = "unknown rename flag";
			return -EPROTO;
		}
		break;
	case HS_OP_SYMLINK:
	case HS_OP_LINK:
		hs_prd_str(&r, q->path, sizeof(q->path));
		hs_prd_str(&r, q->path2, sizeof(q->path2));
		break;
	case HS_OP_PUT_FILE:
		hs_prd_str(&r, q->path, sizeof(q->path));
		q->mode = hs_prd_u32(&r);
		q->atime_ns = (int64_t)hs_prd_u64(&r);
		q->mtime_ns = (int64_t)hs_prd_u64(&r);
		q->flags = hs_prd_u32(&r);
		q->data = hs_prd_rest(&r, &q->data_len);
		if (!r.err && (q->flags & ~(uint32_t)HS_RENAME_NOREPLACE)) {
			*why = "unknown put flag";
			return -EPROTO;
		}
		break;
	case HS_OP_BATCH:
		/* checked whole here; the agent walks it again to answer */
		if (batch_check(p, n, &q->len, why) < 0)
			return -EPROTO;
		q->data = p;
		q->data_len = n;
		return 0;
	default:
		*why = "not a request";
		return -EPROTO;
	}
end:
	if (hs_prd_end(&r) < 0) {
		*why = r.why;
		return -EPROTO;
	}
	return 0;
}

int hs_proto_req_encode(const struct hs_proto_req *q, struct hs_pbuf *b)
{
	if (is_path_op(q->op)) {
		hs_pbuf_str(b, q->path);
		return b->err;
	}
	switch (q->op) {
	case HS_OP_HELLO:
		hs_pbuf_u32(b, q->magic);
		hs_pbuf_u16(b, q->version);
		hs_pbuf_u16(b, q->min_version);
		hs_pbuf_u32(b, q->features);
		hs_pbuf_str(b, q->token);
		break;
	case HS_OP_PING:
		break;
	case HS_OP_OPEN:
		hs_pbuf_str(b, q->path);
		hs_pbuf_u32(b, q->flags);
		hs_pbuf_u32(b, q->mode);
		break;
	case HS_OP_PREAD:
		hs_pbuf_u64(b, q->fh);
		hs_pbuf_u64(b, q->off);
		hs_pbuf_u32(b, q->len);
		break;
	case HS_OP_PWRITE:
		hs_pbuf_u64(b, q->fh);
		hs_pbuf_u64(b, q->off);
		hs_pbuf_bytes(b, q->data, q->data_len);
		break;
	case HS_OP_FSYNC:
	case HS_OP_CLOSE:
		hs_pbuf_u64(b, q->fh);
		break;
	case HS_OP_SETATTR:
		hs_pbuf_str(b, q->path);
		hs_pbuf_attr(b, &q->attr);
		break;
	case HS_OP_MKDIR:
		hs_pbuf_str(b, q->path);
		hs_pbuf_u32(b, q->mode);
		break;
	case HS_OP_RENAME:
		hs_pbuf_str(b, q->path);
		hs_pbuf_str(b, q->path2);
		hs_pbuf_u32(b, q->flags);
		break;
	case HS_OP_SYMLINK:
	case HS_OP_LINK:
		hs_pbuf_str(b, q->path);
		hs_pbuf_str(b, q->path2);
		break;
	case HS_OP_PUT_FILE:
		hs_pbuf_str(b, q->path);
		hs_pbuf_u32(b, q->mode);
		hs_pbuf_u64(b, (uint64_t)q->atime_ns);
		hs_pbuf_u64(b, (uint64_t)q->mtime_ns);
		hs_pbuf_u32(b, q->flags);
		hs_pbuf_bytes(b, q->data, q->data_len);
		break;
	case HS_OP_BATCH: /* the payload as it is (hs_proto_batch_*) */
		hs_pbuf_bytes(b, q->data, q->data_len);
		break;
	default:
		return -EINVAL;
	}
	return b->err;
}

const char *hs_proto_op_name(unsigned op)
{
	static const char *const names[] = {
		"?", "hello", "ping", "lstat", "readdir", "open", "pread",
		"pwrite", "fsync", "close", "setattr", "mkdir", "rmdir",
		"unlink", "rename", "symlink", "readlink", "link", "statvfs",
		"lookup_list", "put_file", "subscribe", "notify", "batch",
	};

	return op < HS_ARRAY_SIZE(names) ? names[op] : "?";
}
