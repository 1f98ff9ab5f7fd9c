/* SPDX-License-Identifier: Apache-2.0 */
/* sink.c: hashing, gzip compression, output and recipe recording of a layer's tar stream. */
#include "layers/sink.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define WBUF_SIZE (256 * 1024)
#define ZBUF_SIZE (256 * 1024)

/* The gzip header: no name, no comment, mtime 0 and OS "unknown", so the blob is the same on any OS. */
static gz_header gzip_header = {.os = 255};

int kiln_sink_init(struct kiln_sink *s, int fd, enum kiln_compression compression, struct kiln_error **err)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->compression = compression;
	s->record = compression != KILN_COMPRESS_GZIP;
	int r = kiln_sha256_new(&s->tar_hash, err);
	if (r < 0)
		return r;
	if (fd >= 0 && (s->wbuf = malloc(WBUF_SIZE)) == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (compression != KILN_COMPRESS_GZIP)
		return 0;
	r = kiln_sha256_new(&s->blob_hash, err);
	if (r < 0)
		return r;
	if ((s->zbuf = malloc(ZBUF_SIZE)) == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	/* windowBits 15 + 16: a gzip wrapper; memLevel 8 and the default strategy, as gzip(1) does. */
	if (deflateInit2(&s->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return kiln_error_set(err, KILN_EFAIL, "cannot start gzip compression: %s",
		                      s->z.msg ? s->z.msg : "zlib failed");
	s->z_ready = true;
	if (deflateSetHeader(&s->z, &gzip_header) != Z_OK)
		return kiln_error_set(err, KILN_EFAIL, "cannot set the gzip header");
	return 0;
}

/* Record a failed write to fd. */
static int write_failed(struct kiln_sink *s, int errnum)
{
	s->write_errno = errnum;
	return kiln_error_errno(&s->err, errnum, "cannot write the layer");
}

/* Write the gathered small writes to fd. */
static int flush_wbuf(struct kiln_sink *s)
{
	if (s->wlen == 0)
		return 0;
	if (kiln_write_all(s->fd, s->wbuf, s->wlen) < 0)
		return write_failed(s, errno);
	s->wlen = 0;
	return 0;
}

/* Send LEN bytes of the blob to fd (if any): small pieces are gathered, large ones written directly. */
static int output(struct kiln_sink *s, const void *data, size_t len)
{
	if (s->fd < 0)
		return 0;
	if (s->wlen + len <= WBUF_SIZE) {
		memcpy(s->wbuf + s->wlen, data, len);
		s->wlen += len;
		return 0;
	}
	if (flush_wbuf(s) < 0)
		return s->err->code;
	if (len < WBUF_SIZE) {
		memcpy(s->wbuf, data, len);
		s->wlen = len;
		return 0;
	}
	if (kiln_write_all(s->fd, data, len) < 0)
		return write_failed(s, errno);
	return 0;
}

/* Compress LEN bytes (FLUSH is Z_NO_FLUSH or Z_FINISH), hashing and writing what zlib produces. */
static int deflate_some(struct kiln_sink *s, const void *data, size_t len, int flush)
{
	s->z.next_in = (Bytef *)data;
	s->z.avail_in = 0;
	for (;;) {
		/* avail_in is an unsigned int: feed very large pieces in parts */
		if (s->z.avail_in == 0 && len > 0) {
			uInt part = len > (1u << 30) ? (1u << 30) : (uInt)len;
			s->z.avail_in = part;
			len -= part;
		}
		s->z.next_out = s->zbuf;
		s->z.avail_out = ZBUF_SIZE;
		int zr = deflate(&s->z, len > 0 ? Z_NO_FLUSH : flush);
		if (zr == Z_STREAM_ERROR)
			return kiln_error_set(&s->err, KILN_EFAIL, "gzip compression failed: %s",
			                      s->z.msg ? s->z.msg : "zlib stream error");
		size_t have = ZBUF_SIZE - s->z.avail_out;
		if (have > 0) {
			kiln_sha256_update(s->blob_hash, s->zbuf, have);
			s->blob_size += have;
			int r = output(s, s->zbuf, have);
			if (r < 0)
				return r;
		}
		if (flush == Z_FINISH ? zr == Z_STREAM_END
		                      : (s->z.avail_in == 0 && len == 0 && s->z.avail_out > 0))
			return 0;
	}
}

/* Add LEN literal bytes to the pending literal segment. */
static int record_literal(struct kiln_sink *s, const void *data, size_t len)
{
	if (s->lit_len + len > s->lit_cap) {
		size_t cap = s->lit_cap ? s->lit_cap : 4096;
		while (cap < s->lit_len + len)
			cap *= 2;
		unsigned char *p = realloc(s->lit, cap);
		if (p == NULL)
			return kiln_error_set(&s->err, KILN_EFAIL, "out of memory");
		s->lit = p;
		s->lit_cap = cap;
	}
	if (len > 0)
		memcpy(s->lit + s->lit_len, data, len);
	s->lit_len += len;
	return 0;
}

static int take(struct kiln_sink *s, const void *data, size_t len);

/* A fragment's bytes: all but the last sizeof(hold), which wait in hold until more arrive. */
static int take_fragment(struct kiln_sink *s, const unsigned char *data, size_t len)
{
	const size_t cap = sizeof(s->hold);
	if (s->hold_len + len <= cap) {
		memcpy(s->hold + s->hold_len, data, len);
		s->hold_len += len;
		return 0;
	}
	size_t emit = s->hold_len + len - cap; /* bytes that can no longer be the end */
	size_t from_hold = emit < s->hold_len ? emit : s->hold_len;
	int r = take(s, s->hold, from_hold);
	if (r < 0)
		return r;
	memmove(s->hold, s->hold + from_hold, s->hold_len - from_hold);
	s->hold_len -= from_hold;
	emit -= from_hold;
	if (emit > 0 && (r = take(s, data, emit)) < 0)
		return r;
	memcpy(s->hold + s->hold_len, data + emit, len - emit);
	s->hold_len += len - emit;
	return 0;
}

int kiln_sink_write(struct kiln_sink *s, const void *data, size_t len)
{
	if (s->discard)
		return 0;
	if (s->err)
		return s->err->code;
	return s->fragment ? take_fragment(s, data, len) : take(s, data, len);
}

static int take(struct kiln_sink *s, const void *data, size_t len)
{
	kiln_sha256_update(s->tar_hash, data, len);
	s->tar_size += len;
	if (s->record) {
		if (s->in_file) {
			if (len > s->file_left)
				return kiln_error_set(&s->err, KILN_EFAIL,
				                      "internal error: more file content than its size");
			s->file_left -= len;
		} else if (record_literal(s, data, len) < 0) {
			return s->err->code;
		}
	}
	if (s->compression == KILN_COMPRESS_GZIP)
		return deflate_some(s, data, len, Z_NO_FLUSH);
	return output(s, data, len);
}

/* Make room for one more segment. */
static struct kiln_segment *new_segment(struct kiln_sink *s, struct kiln_error **err)
{
	if (s->nsegs == s->segs_cap) {
		size_t cap = s->segs_cap ? 2 * s->segs_cap : 16;
		struct kiln_segment *p = realloc(s->segs, cap * sizeof(*p));
		if (p == NULL) {
			kiln_error_set(err, KILN_EFAIL, "out of memory");
			return NULL;
		}
		s->segs = p;
		s->segs_cap = cap;
	}
	struct kiln_segment *seg = &s->segs[s->nsegs];
	memset(seg, 0, sizeof(*seg));
	return seg;
}

/* Turn the pending literal bytes into a segment (ownership of the bytes moves to it). */
static int close_literal(struct kiln_sink *s, struct kiln_error **err)
{
	if (s->lit_len == 0)
		return 0;
	struct kiln_segment *seg = new_segment(s, err);
	if (seg == NULL)
		return KILN_EFAIL;
	unsigned char *shrunk = realloc(s->lit, s->lit_len);
	seg->data = shrunk ? shrunk : s->lit;
	seg->len = s->lit_len;
	s->nsegs++;
	s->lit = NULL;
	s->lit_len = s->lit_cap = 0;
	return 0;
}

int kiln_sink_begin_file(struct kiln_sink *s, const struct kiln_tar_entry *e, struct kiln_error **err)
{
	if (!s->record || e->size == 0)
		return 0;
	if (close_literal(s, err) < 0)
		return KILN_EFAIL;
	struct kiln_segment *seg = new_segment(s, err);
	if (seg == NULL)
		return KILN_EFAIL;
	if ((seg->source = strdup(e->source)) == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	seg->size = e->size;
	seg->fp = e->fp;
	s->nsegs++;
	s->in_file = true;
	s->file_left = e->size;
	return 0;
}

int kiln_sink_end_file(struct kiln_sink *s, struct kiln_error **err)
{
	if (!s->in_file)
		return 0;
	s->in_file = false;
	if (s->file_left != 0)
		return kiln_error_set(err, KILN_EFAIL,
		                      "internal error: %llu bytes of file content did not arrive",
		                      (unsigned long long)s->file_left);
	return 0;
}

/* The failure kept in S, handed to ERR. */
static int pass_error(struct kiln_sink *s, struct kiln_error **err)
{
	int code = s->err->code;
	if (err) {
		kiln_error_free(*err);
		*err = s->err;
		s->err = NULL;
	}
	return code;
}

int kiln_sink_finish(struct kiln_sink *s, struct kiln_layer_out *out, struct kiln_error **err)
{
	if (s->fragment) {
		static const unsigned char zero[sizeof(s->hold)];
		if (s->hold_len != sizeof(s->hold) || memcmp(s->hold, zero, sizeof(zero)) != 0)
			return kiln_error_set(
			    err, KILN_EFAIL,
			    "internal error: the tar stream does not end with two zero blocks");
	}
	if ((s->compression == KILN_COMPRESS_GZIP && deflate_some(s, NULL, 0, Z_FINISH) < 0) ||
	    (s->fd >= 0 && flush_wbuf(s) < 0))
		return pass_error(s, err);
	kiln_sha256_final(s->tar_hash, out->diff_id);
	if (s->compression == KILN_COMPRESS_GZIP) {
		kiln_sha256_final(s->blob_hash, out->digest);
		out->size = s->blob_size;
		return 0;
	}
	memcpy(out->digest, out->diff_id, KILN_DIGEST_LEN);
	out->size = s->tar_size;
	if (close_literal(s, err) < 0)
		return KILN_EFAIL;
	struct kiln_recipe *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	memcpy(r->digest, out->digest, KILN_DIGEST_LEN);
	r->size = s->tar_size;
	r->segs = s->segs;
	r->nsegs = s->nsegs;
	s->segs = NULL;
	s->nsegs = s->segs_cap = 0;
	out->recipe = r;
	return 0;
}

void kiln_sink_release(struct kiln_sink *s)
{
	kiln_sha256_free(s->tar_hash);
	kiln_sha256_free(s->blob_hash);
	if (s->z_ready)
		deflateEnd(&s->z);
	free(s->zbuf);
	free(s->wbuf);
	free(s->lit);
	for (size_t i = 0; i < s->nsegs; i++) {
		free(s->segs[i].data);
		free(s->segs[i].source);
	}
	free(s->segs);
	kiln_error_free(s->err);
	memset(s, 0, sizeof(*s));
	s->fd = -1;
}
