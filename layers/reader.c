/* SPDX-License-Identifier: Apache-2.0 */
/* reader.c: seekable, pull-style reading of blobs stored whole or produced from recipes. */
#include "layers/reader.h"
#include "common/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct kiln_blob_reader {
	const struct kiln_recipe *recipe; /* NULL for a whole file */
	struct kiln_segment whole;        /* the whole file as one segment, when recipe is NULL */
	uint64_t size;
	uint64_t pos;             /* offset of the next byte */
	size_t seg;               /* current segment */
	uint64_t seg_pos;         /* offset inside it */
	int fd;                   /* open source file of the current segment, or -1 */
	struct kiln_sha256 *hash; /* set while reading sequentially from 0 */
	bool check_fp;            /* recipe sources are checked against their fingerprints */
};

static const struct kiln_segment *segment(const struct kiln_blob_reader *rd, size_t i)
{
	return rd->recipe ? &rd->recipe->segs[i] : &rd->whole;
}

static size_t nsegments(const struct kiln_blob_reader *rd)
{
	return rd->recipe ? rd->recipe->nsegs : 1;
}

static uint64_t segment_len(const struct kiln_segment *s)
{
	return s->source ? s->size : s->len;
}

static int changed(struct kiln_error **err, const char *path)
{
	return kiln_error_set(err, KILN_ECHANGED,
	                      "'%s' changed since the image was built (run 'kiln build' again)", path);
}

static void close_source(struct kiln_blob_reader *rd)
{
	if (rd->fd >= 0)
		close(rd->fd);
	rd->fd = -1;
}

int kiln_blob_reader_open(struct kiln_blob_reader **out, const char *path, const struct kiln_recipe *r,
                          struct kiln_error **err)
{
	struct kiln_blob_reader *rd = calloc(1, sizeof(*rd));
	if (rd == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	rd->fd = -1;
	if (r) {
		rd->recipe = r;
		rd->size = r->size;
		rd->check_fp = true;
	} else {
		struct stat st;
		if (stat(path, &st) < 0) {
			free(rd);
			return kiln_error_errno(err, errno, "cannot open '%s'", path);
		}
		rd->whole.source = (char *)path;
		rd->whole.size = (uint64_t)st.st_size;
		rd->size = (uint64_t)st.st_size;
	}
	int rc = kiln_blob_reader_seek(rd, 0, err);
	if (rc < 0) {
		kiln_blob_reader_free(rd);
		return rc;
	}
	*out = rd;
	return 0;
}

int kiln_blob_reader_seek(struct kiln_blob_reader *rd, uint64_t offset, struct kiln_error **err)
{
	if (offset > rd->size)
		return kiln_error_set(err, KILN_EINVAL,
		                      "offset %llu is past the end of the blob (%llu bytes)",
		                      (unsigned long long)offset, (unsigned long long)rd->size);
	close_source(rd);
	kiln_sha256_free(rd->hash);
	rd->hash = NULL;
	int rc = offset == 0 && rd->recipe ? kiln_sha256_new(&rd->hash, err) : 0;
	if (rc < 0)
		return rc;
	rd->pos = offset;
	rd->seg = 0;
	uint64_t base = 0;
	while (rd->seg < nsegments(rd) && base + segment_len(segment(rd, rd->seg)) <= offset) {
		base += segment_len(segment(rd, rd->seg));
		rd->seg++;
	}
	rd->seg_pos = offset - base;
	return 0;
}

/* Open the current segment's source file and position it, checking its fingerprint. */
static int open_source(struct kiln_blob_reader *rd, const struct kiln_segment *s, struct kiln_error **err)
{
	rd->fd = open(s->source, O_RDONLY | O_CLOEXEC);
	if (rd->fd < 0)
		return kiln_error_errno(err, errno, "cannot open '%s'", s->source);
	struct stat st;
	struct kiln_stat_fp fp;
	if (fstat(rd->fd, &st) < 0)
		return kiln_error_errno(err, errno, "cannot stat '%s'", s->source);
	kiln_stat_fp_from(&fp, &st);
	if (rd->check_fp && !kiln_stat_fp_equal(&fp, &s->fp))
		return changed(err, s->source);
	if (lseek(rd->fd, (off_t)rd->seg_pos, SEEK_SET) < 0)
		return kiln_error_errno(err, errno, "cannot seek in '%s'", s->source);
	(void)posix_fadvise(rd->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	return 0;
}

/* Done with a source file: it must still be what the recipe recorded. */
static int finish_source(struct kiln_blob_reader *rd, const struct kiln_segment *s, struct kiln_error **err)
{
	struct stat st;
	struct kiln_stat_fp fp;
	int rc = 0;
	if (rd->check_fp) {
		if (fstat(rd->fd, &st) < 0)
			rc = kiln_error_errno(err, errno, "cannot stat '%s'", s->source);
		else if (kiln_stat_fp_from(&fp, &st), !kiln_stat_fp_equal(&fp, &s->fp))
			rc = changed(err, s->source);
	}
	close_source(rd);
	return rc;
}

ssize_t kiln_blob_reader_read(struct kiln_blob_reader *rd, void *buf, size_t len, struct kiln_error **err)
{
	while (rd->seg < nsegments(rd)) {
		const struct kiln_segment *s = segment(rd, rd->seg);
		uint64_t left = segment_len(s) - rd->seg_pos;
		if (left == 0) {
			if (s->source && rd->fd >= 0 && finish_source(rd, s, err) < 0)
				return KILN_ECHANGED;
			rd->seg++;
			rd->seg_pos = 0;
			continue;
		}
		size_t want = len < left ? len : (size_t)left;
		ssize_t n;
		if (s->source) {
			if (rd->fd < 0 && open_source(rd, s, err) < 0)
				return err && *err ? (*err)->code : KILN_EIO;
			do
				n = read(rd->fd, buf, want);
			while (n < 0 && errno == EINTR);
			if (n < 0)
				return kiln_error_errno(err, errno, "cannot read '%s'", s->source);
			if (n == 0)
				return changed(err, s->source);
		} else {
			memcpy(buf, s->data + rd->seg_pos, want);
			n = (ssize_t)want;
		}
		rd->seg_pos += (uint64_t)n;
		rd->pos += (uint64_t)n;
		if (rd->hash)
			kiln_sha256_update(rd->hash, buf, (size_t)n);
		return n;
	}
	if (rd->hash) {
		char got[KILN_DIGEST_LEN];
		kiln_sha256_final(rd->hash, got);
		kiln_sha256_free(rd->hash);
		rd->hash = NULL;
		if (strcmp(got, rd->recipe->digest) != 0)
			return kiln_error_set(
			    err, KILN_ECHANGED,
			    "blob %s: content does not match its digest (a source file changed)",
			    rd->recipe->digest);
	}
	return 0;
}

int kiln_blob_reader_pump(struct kiln_blob_reader *rd, kiln_write_fn write, void *ctx,
                          struct kiln_error **err)
{
	_cleanup_free_ char *buf = malloc(1 << 20);
	if (buf == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	for (;;) {
		ssize_t n = kiln_blob_reader_read(rd, buf, 1 << 20, err);
		if (n <= 0)
			return (int)n;
		int rc = write(ctx, buf, (size_t)n, err);
		if (rc < 0)
			return err && *err ? (*err)->code : kiln_error_set(err, rc, "cannot write the blob");
	}
}

uint64_t kiln_blob_reader_size(const struct kiln_blob_reader *rd)
{
	return rd->size;
}

void kiln_blob_reader_free(struct kiln_blob_reader *rd)
{
	if (rd == NULL)
		return;
	close_source(rd);
	kiln_sha256_free(rd->hash);
	free(rd);
}
