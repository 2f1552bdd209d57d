/* SPDX-License-Identifier: MIT
 * tests/unit/test_proto.c - the agent protocol codec (common/proto.c):
 * header and request round trips, compression, and malformed input (bad
 * lengths, flags, ops, truncated and trailing payloads, strings with NUL or
 * beyond the limit, lying decompressed sizes).
 */
#include <stdlib.h>
#include <string.h>

#include "../lib/check.h"
#include "../../common/proto.h"

static void test_header(void)
{
	struct hs_proto_hdr h = { .len = 100, .raw_len = 300, .id = 0xdeadbeef,
				  .op = HS_OP_PWRITE, .flags = HS_PF_LZ4,
				  .status = 0 }, g;
	uint8_t b[HS_PROTO_HDR_SIZE];
	const char *why;

	hs_proto_hdr_encode(&h, b);
	CHECK_EQ(b[0], 100);
	CHECK_EQ(b[8], 0xef);
	CHECK_OK(hs_proto_hdr_decode(b, &g, &why));
	CHECK_EQ(g.len, 100);
	CHECK_EQ(g.raw_len, 300);
	CHECK_EQ(g.id, 0xdeadbeef);
	CHECK_EQ(g.op, HS_OP_PWRITE);
	CHECK_EQ(g.flags, HS_PF_LZ4);

	/* a reply with a status */
	h = (struct hs_proto_hdr){ .id = 7, .op = HS_OP_LSTAT,
				   .flags = HS_PF_REPLY, .status = ENOENT };
	hs_proto_hdr_encode(&h, b);
	CHECK_OK(hs_proto_hdr_decode(b, &g, &why));
	CHECK_EQ(g.status, ENOENT);

	/* too long */
	h = (struct hs_proto_hdr){ .len = HS_PROTO_MAX_PAYLOAD + 1,
				   .raw_len = HS_PROTO_MAX_PAYLOAD + 1,
				   .op = HS_OP_PING };
	hs_proto_hdr_encode(&h, b);
	CHECK_EQ(hs_proto_hdr_decode(b, &g, &why), -EPROTO);
	CHECK(why && strstr(why, "limit"));
	h.len = 10;
	hs_proto_hdr_encode(&h, b);
	CHECK_EQ(hs_proto_hdr_decode(b, &g, &why), -EPROTO);
	/* exactly the limit is fine */
	h.len = h.raw_len = HS_PROTO_MAX_PAYLOAD;
	hs_proto_hdr_encode(&h, b);
	CHECK_OK(hs_proto_hdr_decode(b, &g, &why));
	/* two lengths without LZ4 */
	h.len = 10;
	h.raw_len = 20;
	hs_proto_hdr_encode(&h, b);
	CHECK_EQ(hs_proto_hdr_decode(b, &g, &why), -EPROTO);
	/* unknown flag, op 0, op beyond the table */
	h = (struct hs_proto_hdr){ .op = HS_OP_PING, .flags = 0x80 };
	hs_proto_hdr_encode(&h, b);
	CHECK_EQ(hs_proto_hdr_decode(b, &g, &why), -EPROTO);
	h = (struct hs_proto_hdr){ .op = 0 };
	hs_proto_hdr_encode(&h, b);
	CHECK_EQ(hs_proto_hdr_decode(b, &g, &why), -EPROTO);
	h = (struct hs_proto_hdr){ .op = HS_OP_MAX_ + 1 };
	hs_proto_hdr_encode(&h, b);
	CHECK_EQ(hs_proto_hdr_decode(b, &g, &why), -EPROTO);
	/* empty compressed frame */
	h = (struct hs_proto_hdr){ .op = HS_OP_PING, .flags = HS_PF_LZ4 };
	hs_proto_hdr_encode(&h, b);
	CHECK_EQ(hs_proto_hdr_decode(b, &g, &why), -EPROTO);
}

static void test_compress(void)
{
	size_t n = 64 * 1024, c;
	uint8_t *in = malloc(n), *out, *back;
	struct hs_proto_hdr h = { .op = HS_OP_PWRITE };
	const char *why;
	size_t i;

	CHECK(in);
	for (i = 0; i < n; i++)
		in[i] = (uint8_t)("hello world "[i % 12]);
	out = malloc(hs_proto_compress_bound(n));
	back = malloc(n);
	CHECK(out && back);
	c = hs_proto_compress(in, n, out, hs_proto_compress_bound(n));
	CHECK(c > 0 && c < n / 10);
	h.flags = HS_PF_LZ4;
	h.len = (uint32_t)c;
	h.raw_len = (uint32_t)n;
	CHECK_OK(hs_proto_payload_decode(&h, out, back, &why));
	CHECK(memcmp(in, back, n) == 0);

	/* lying raw_len: the block decompresses to n bytes, not n - 1 ... */
	h.raw_len = (uint32_t)n - 1;
	CHECK_EQ(hs_proto_payload_decode(&h, out, back, &why), -EPROTO);
	/* ... nor to more */
	{
		uint8_t *big = malloc(n + 100);

		CHECK(big);
		h.raw_len = (uint32_t)n + 100;
		CHECK_EQ(hs_proto_payload_decode(&h, out, big, &why), -EPROTO);
		CHECK(why && strstr(why, "size"));
		free(big);
	}
	/* garbage as a block */
	memset(out, 0xff, 32);
	h.len = 32;
	h.raw_len = (uint32_t)n;
	CHECK_EQ(hs_proto_payload_decode(&h, out, back, &why), -EPROTO);

	/* random bytes do not shrink: not compressed */
	srand(1);
	for (i = 0; i < n; i++)
		in[i] = (uint8_t)rand();
	CHECK_EQ(hs_proto_compress(in, n, out, hs_proto_compress_bound(n)), 0);
	/* a big payload is judged by samples: random data costs two
	 * samples, not the whole payload; text anywhere in the samples'
	 * places still compresses the whole */
	{
		size_t m = 1 << 20;
		uint8_t *r = malloc(m), *z = malloc(hs_proto_compress_bound(m));
		struct timespec t0, t1;

		CHECK(r && z);
		for (i = 0; i < m; i++)
			r[i] = (uint8_t)rand();
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (i = 0; i < 64; i++)
			CHECK_EQ(hs_proto_compress(r, m, z, hs_proto_compress_bound(m)), 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		printf("64 incompressible MiB judged in %.1f ms\n",
		       (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
		       (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
		for (i = m / 2; i < m / 2 + 8192; i++)
			r[i] = (uint8_t)("hello world "[i % 12]);
		c = hs_proto_compress(r, m, z, hs_proto_compress_bound(m));
		CHECK(c > 0 && c < m);
		memset(r + m / 2, 0, 8192);
		for (i = 0; i < m / 2; i++)
			r[i] = 'x'; /* compressible, but not where the samples are */
		for (i = m / 2; i < m / 2 + 8192; i++)
			r[i] = (uint8_t)rand();
		CHECK_EQ(hs_proto_compress(r, m, z, hs_proto_compress_bound(m)), 0);
		free(r);
		free(z);
	}
	/* short payloads are never compressed */
	memset(in, 'a', 63);
	CHECK_EQ(hs_proto_compress(in, 63, out, hs_proto_compress_bound(63)), 0);

	/* plain copy */
	h = (struct hs_proto_hdr){ .op = HS_OP_PWRITE, .len = 5, .raw_len = 5 };
	CHECK_OK(hs_proto_payload_decode(&h, (const uint8_t *)"abcde", back,
					 &why));
	CHECK(memcmp(back, "abcde", 5) == 0);
	free(in);
	free(out);
	free(back);
}

static struct hs_proto_req *roundtrip(const struct hs_proto_req *q)
{
	static struct hs_proto_req g;
	struct hs_pbuf b;
	const char *why;
	size_t cut;

	hs_pbuf_init(&b);
	CHECK_OK(hs_proto_req_encode(q, &b));
	CHECK_OK(hs_proto_req_decode(q->op, b.p, b.len, &g, &why));
	CHECK_EQ(g.op, q->op);
	/* every strict prefix is malformed (payloads with a trailing
	 * "bytes" part accept any prefix that keeps the fixed fields) */
	for (cut = 0; cut < b.len; cut++) {
		struct hs_proto_req tmp;
		int r = hs_proto_req_decode(q->op, b.p, cut, &tmp, &why);

		if (q->op == HS_OP_PWRITE || q->op == HS_OP_PUT_FILE) {
			if (cut < b.len - q->data_len)
				CHECK_EQ(r, -EPROTO);
		} else {
			CHECK_EQ(r, -EPROTO);
			CHECK(why != NULL);
		}
	}
	/* a trailing byte is malformed, except after "bytes" */
	if (q->op != HS_OP_PWRITE && q->op != HS_OP_PUT_FILE) {
		struct hs_proto_req tmp;

		hs_pbuf_u8(&b, 0);
		CHECK_EQ(hs_proto_req_decode(q->op, b.p, b.len, &tmp, &why),
			 -EPROTO);
	}
	/* the data part points into @b: keep a copy past its release */
	if (g.data_len) {
		static uint8_t copy[64];

		CHECK(g.data_len <= sizeof(copy));
		memcpy(copy, g.data, g.data_len);
		g.data = copy;
	}
	hs_pbuf_release(&b);
	return &g;
}

static void test_requests(void)
{
	static struct hs_proto_req q;
	struct hs_proto_req *g;

	memset(&q, 0, sizeof(q));
	q.op = HS_OP_HELLO;
	q.magic = HS_PROTO_MAGIC;
	q.version = 1;
	q.min_version = 1;
	q.features = HS_FEAT_LZ4 | HS_FEAT_BATCH;
	strcpy(q.token, "s3cret");
	g = roundtrip(&q);
	CHECK_EQ(g->magic, HS_PROTO_MAGIC);
	CHECK_EQ(g->features, HS_FEAT_LZ4 | HS_FEAT_BATCH);
	CHECK_STR_EQ(g->token, "s3cret");

	memset(&q, 0, sizeof(q));
	q.op = HS_OP_LSTAT;
	strcpy(q.path, "/a/b c");
	g = roundtrip(&q);
	CHECK_STR_EQ(g->path, "/a/b c");

	q.op = HS_OP_OPEN;
	q.flags = HS_POPEN_WRITE | HS_POPEN_CREAT;
	q.mode = 0640;
	g = roundtrip(&q);
	CHECK_EQ(g->flags, HS_POPEN_WRITE | HS_POPEN_CREAT);
	CHECK_EQ(g->mode, 0640);

	q.op = HS_OP_PREAD;
	q.fh = 0x123456789aULL;
	q.off = 1ULL << 40;
	q.len = 1 << 20;
	g = roundtrip(&q);
	CHECK_EQ(g->fh, 0x123456789aULL);
	CHECK_EQ(g->off, 1ULL << 40);
	CHECK_EQ(g->len, 1 << 20);

	q.op = HS_OP_PWRITE;
	q.data = (const uint8_t *)"xyz";
	q.data_len = 3;
	g = roundtrip(&q);
	CHECK_EQ(g->data_len, 3);
	CHECK(memcmp(g->data, "xyz", 3) == 0);

	q.op = HS_OP_SETATTR;
	q.attr = (struct hs_attr){ .valid = HS_ATTR_MODE | HS_ATTR_MTIME,
				   .mode = 0100644, .mtime_ns = -5,
				   .size = 1ULL << 50 };
	g = roundtrip(&q);
	CHECK_EQ(g->attr.valid, HS_ATTR_MODE | HS_ATTR_MTIME);
	CHECK_EQ(g->attr.mtime_ns, -5);
	CHECK_EQ(g->attr.size, 1ULL << 50);

	q.op = HS_OP_RENAME;
	strcpy(q.path2, "/z");
	q.flags = HS_RENAME_NOREPLACE;
	g = roundtrip(&q);
	CHECK_STR_EQ(g->path2, "/z");
	CHECK_EQ(g->flags, HS_RENAME_NOREPLACE);

	q.op = HS_OP_PUT_FILE;
	q.mode = 0600;
	q.atime_ns = 1;
	q.mtime_ns = 2;
	q.flags = 0;
	g = roundtrip(&q);
	CHECK_EQ(g->mtime_ns, 2);
	CHECK_EQ(g->data_len, 3);

	q.op = HS_OP_PING;
	roundtrip(&q);
	q.op = HS_OP_CLOSE;
	roundtrip(&q);
}

static void test_malformed(void)
{
	static struct hs_proto_req q;
	struct hs_pbuf b;
	const char *why;
	char big[HS_PROTO_MAX_STR + 2];
	uint8_t raw[16];

	/* a NUL inside a path */
	memcpy(raw, "\x03\x00" "a\0b", 5);
	CHECK_EQ(hs_proto_req_decode(HS_OP_LSTAT, raw, 5, &q, &why), -EPROTO);
	CHECK(strstr(why, "NUL"));
	/* a string length beyond the payload */
	memcpy(raw, "\x09\x00" "abc", 5);
	CHECK_EQ(hs_proto_req_decode(HS_OP_LSTAT, raw, 5, &q, &why), -EPROTO);
	/* a string length beyond the limit */
	raw[0] = 0xff;
	raw[1] = 0xff;
	CHECK_EQ(hs_proto_req_decode(HS_OP_LSTAT, raw, 5, &q, &why), -EPROTO);
	CHECK(strstr(why, "limit"));
	/* replies and unknown ops are not requests */
	CHECK_EQ(hs_proto_req_decode(HS_OP_NOTIFY, raw, 0, &q, &why), -EPROTO);
	CHECK_EQ(hs_proto_req_decode(99, raw, 0, &q, &why), -EPROTO);
	/* bad open flags, oversized read */
	hs_pbuf_init(&b);
	memset(&q, 0, sizeof(q));
	q.op = HS_OP_OPEN;
	strcpy(q.path, "/x");
	q.flags = 1 << 9;
	CHECK_OK(hs_proto_req_encode(&q, &b));
	CHECK_EQ(hs_proto_req_decode(HS_OP_OPEN, b.p, b.len, &q, &why),
		 -EPROTO);
	hs_pbuf_reset(&b);
	memset(&q, 0, sizeof(q));
	q.op = HS_OP_PREAD;
	q.len = HS_PROTO_MAX_IO + 1;
	CHECK_OK(hs_proto_req_encode(&q, &b));
	CHECK_EQ(hs_proto_req_decode(HS_OP_PREAD, b.p, b.len, &q, &why),
		 -EPROTO);
	/* the writer refuses a string beyond the limit and sticks to it */
	hs_pbuf_reset(&b);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	hs_pbuf_str(&b, big);
	hs_pbuf_u32(&b, 1);
	CHECK_EQ(b.err, -E2BIG);
	/* ... and a payload beyond the frame limit */
	hs_pbuf_reset(&b);
	CHECK(hs_pbuf_grow(&b, HS_PROTO_MAX_PAYLOAD) != NULL);
	CHECK(hs_pbuf_grow(&b, 1) == NULL);
	CHECK_EQ(b.err, -E2BIG);
	hs_pbuf_release(&b);
	CHECK_STR_EQ(hs_proto_op_name(HS_OP_LSTAT), "lstat");
	CHECK_STR_EQ(hs_proto_op_name(200), "?");
}

/* Appends sub-request @q to the batch in @b. */
static void batch_add(struct hs_pbuf *b, const struct hs_proto_req *q)
{
	size_t at;

	hs_pbuf_u8(b, q->op);
	hs_pbuf_u32(b, 0);
	at = b->len;
	CHECK_OK(hs_proto_req_encode(q, b));
	hs_pbuf_u32_at(b, at - 4, (uint32_t)(b->len - at));
}

static void test_batch(void)
{
	static struct hs_proto_req q, g, sq;
	struct hs_proto_batch_it it;
	struct hs_pbuf b;
	const uint8_t *sub;
	const char *why;
	size_t len, cut;
	uint8_t op;
	int n = 0;

	hs_pbuf_init(&b);
	hs_pbuf_u32(&b, 3);
	memset(&q, 0, sizeof(q));
	q.op = HS_OP_MKDIR;
	strcpy(q.path, "/d");
	q.mode = 0755;
	batch_add(&b, &q);
	q.op = HS_OP_PUT_FILE;
	strcpy(q.path, "/d/f");
	q.data = (const uint8_t *)"data";
	q.data_len = 4;
	batch_add(&b, &q);
	q.op = HS_OP_RENAME;
	strcpy(q.path2, "/d/g");
	q.data = NULL;
	q.data_len = 0;
	batch_add(&b, &q);
	CHECK_OK(hs_proto_req_decode(HS_OP_BATCH, b.p, b.len, &g, &why));
	CHECK_EQ(g.len, 3);
	hs_proto_batch_begin(&it, g.data, g.data_len);
	while (hs_proto_batch_next(&it, &op, &sub, &len, &why) > 0) {
		CHECK_OK(hs_proto_req_decode(op, sub, len, &sq, &why));
		if (n == 0)
			CHECK(op == HS_OP_MKDIR && sq.mode == 0755);
		if (n == 1)
			CHECK(op == HS_OP_PUT_FILE && sq.data_len == 4 &&
			      !memcmp(sq.data, "data", 4));
		if (n == 2)
			CHECK(op == HS_OP_RENAME && !strcmp(sq.path2, "/d/g"));
		n++;
	}
	CHECK_EQ(n, 3);
	/* every strict prefix and a trailing byte are malformed */
	for (cut = 0; cut < b.len; cut++)
		CHECK_EQ(hs_proto_req_decode(HS_OP_BATCH, b.p, cut, &g, &why),
			 -EPROTO);
	hs_pbuf_u8(&b, 0);
	CHECK_EQ(hs_proto_req_decode(HS_OP_BATCH, b.p, b.len, &g, &why), -EPROTO);
	/* empty: fine */
	hs_pbuf_reset(&b);
	hs_pbuf_u32(&b, 0);
	CHECK_OK(hs_proto_req_decode(HS_OP_BATCH, b.p, b.len, &g, &why));
	/* no batch inside a batch, no handle ops, no listing */
	hs_pbuf_reset(&b);
	hs_pbuf_u32(&b, 1);
	hs_pbuf_u8(&b, HS_OP_BATCH);
	hs_pbuf_u32(&b, 4);
	hs_pbuf_u32(&b, 0);
	CHECK_EQ(hs_proto_req_decode(HS_OP_BATCH, b.p, b.len, &g, &why), -EPROTO);
	CHECK(strstr(why, "not allowed"));
	CHECK(!hs_proto_batch_op(HS_OP_READDIR) && !hs_proto_batch_op(HS_OP_PWRITE) &&
	      !hs_proto_batch_op(HS_OP_SUBSCRIBE) && !hs_proto_batch_op(HS_OP_HELLO));
	/* a sub-request that does not parse (bad flags) spoils the batch */
	hs_pbuf_reset(&b);
	hs_pbuf_u32(&b, 1);
	memset(&q, 0, sizeof(q));
	q.op = HS_OP_RENAME;
	strcpy(q.path, "/a");
	strcpy(q.path2, "/b");
	q.flags = 1 << 5;
	batch_add(&b, &q);
	CHECK_EQ(hs_proto_req_decode(HS_OP_BATCH, b.p, b.len, &g, &why), -EPROTO);
	/* a count beyond the limit, a length beyond the payload */
	hs_pbuf_reset(&b);
	hs_pbuf_u32(&b, HS_PROTO_MAX_BATCH + 1);
	CHECK_EQ(hs_proto_req_decode(HS_OP_BATCH, b.p, b.len, &g, &why), -EPROTO);
	CHECK(strstr(why, "limit"));
	hs_pbuf_reset(&b);
	hs_pbuf_u32(&b, 1);
	hs_pbuf_u8(&b, HS_OP_LSTAT);
	hs_pbuf_u32(&b, 1000);
	hs_pbuf_str(&b, "/x");
	CHECK_EQ(hs_proto_req_decode(HS_OP_BATCH, b.p, b.len, &g, &why), -EPROTO);
	hs_pbuf_release(&b);
	CHECK_STR_EQ(hs_proto_op_name(HS_OP_BATCH), "batch");
}

int main(void)
{
	test_header();
	test_compress();
	test_requests();
	test_malformed();
	test_batch();
	printf("test_proto: ok\n");
	return 0;
}
