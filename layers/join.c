/* SPDX-License-Identifier: Apache-2.0 */
/*
 * join.c: a gzip layer from tar fragments, copied as they are. The diff_id needs their decompressed
 * bytes: the parts are decompressed on a few threads, a window of them at a time, and hashed in order.
 */
#include "layers/join.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "layers/digest.h"

#define CHUNK       (1u << 20)
#define MAX_THREADS 4

/* One part, decompressed. */
struct piece {
	unsigned char *data;
	size_t len;
	bool done;
	struct kiln_error *err;
};

struct join {
	const struct kiln_layer_part *parts;
	size_t n;
	volatile sig_atomic_t *cancel;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t next;     /* the next part a thread takes */
	size_t consumed; /* parts hashed so far */
	size_t window;   /* at most this many parts decompressed ahead of the hashing */
	bool stop;
	struct piece *pieces;
};

/* Decompress part I (whole gzip members) into P. */
static int inflate_part(const struct kiln_layer_part *part, size_t i, struct piece *p,
                        volatile sig_atomic_t *cancel, struct kiln_error **err)
{
	z_stream z = {0};
	if (inflateInit2(&z, 15 + 16) != Z_OK)
		return kiln_error_set(err, KILN_EFAIL, "cannot start gzip decompression");
	_cleanup_free_ unsigned char *in = malloc(CHUNK);
	size_t cap = 0;
	bool end = false;
	int rc = in ? 0 : kiln_error_set(err, KILN_EFAIL, "out of memory");
	for (uint64_t done = 0; rc == 0 && done < part->length;) {
		if (cancel && *cancel) {
			rc = kiln_error_set(err, KILN_EINTR, "interrupted");
			break;
		}
		size_t want = part->length - done < CHUNK ? (size_t)(part->length - done) : CHUNK;
		ssize_t got = pread(part->fd, in, want, (off_t)(part->offset + done));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			rc = got < 0 ? kiln_error_errno(err, errno, "cannot read part %zu of the layer", i)
			             : kiln_error_set(err, KILN_EIO, "part %zu of the layer is short", i);
			break;
		}
		done += (uint64_t)got;
		z.next_in = in;
		z.avail_in = (uInt)got;
		while (rc == 0 && z.avail_in > 0) {
			if (cap - p->len < CHUNK) {
				size_t ncap = cap ? 2 * cap : 4 * CHUNK;
				unsigned char *d = realloc(p->data, ncap);
				if (d == NULL) {
					rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
					break;
				}
				p->data = d;
				cap = ncap;
			}
			z.next_out = p->data + p->len;
			z.avail_out = (uInt)(cap - p->len);
			int zr = inflate(&z, Z_NO_FLUSH);
			p->len = cap - z.avail_out;
			if (zr == Z_STREAM_END) {
				end = true;
				if (inflateReset(&z) != Z_OK)
					rc = kiln_error_set(err, KILN_EFAIL, "gzip decompression failed");
			} else if (zr != Z_OK) { /* Z_BUF_ERROR too: with input and room, zlib always moves */
				rc = kiln_error_set(err, KILN_EIO, "part %zu of the layer is not gzip: %s", i,
				                    z.msg ? z.msg : "zlib failed");
			} else {
				end = false;
			}
		}
	}
	inflateEnd(&z);
	if (rc == 0 && !end && part->length > 0)
		rc = kiln_error_set(err, KILN_EIO, "part %zu of the layer ends inside a gzip member", i);
	return rc;
}

static void *worker(void *arg)
{
	struct join *j = arg;
	pthread_mutex_lock(&j->mu);
	for (;;) {
		while (!j->stop && j->next < j->n && j->next >= j->consumed + j->window)
			pthread_cond_wait(&j->cv, &j->mu);
		if (j->stop || j->next >= j->n)
			break;
		size_t i = j->next++;
		pthread_mutex_unlock(&j->mu);
		struct piece *p = &j->pieces[i];
		struct kiln_error *e = NULL;
		inflate_part(&j->parts[i], i, p, j->cancel, &e);
		pthread_mutex_lock(&j->mu);
		p->err = e;
		p->done = true;
		pthread_cond_broadcast(&j->cv);
	}
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

/* Copy part I's bytes to FD, hashing them into BLOB. */
static int copy_part(int fd, const struct kiln_layer_part *part, size_t i, unsigned char *buf,
                     struct kiln_sha256 *blob, uint64_t *size, struct kiln_error **err)
{
	for (uint64_t done = 0; done < part->length;) {
		size_t want = part->length - done < CHUNK ? (size_t)(part->length - done) : CHUNK;
		ssize_t got = pread(part->fd, buf, want, (off_t)(part->offset + done));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return got < 0 ? kiln_error_errno(err, errno, "cannot read part %zu of the layer", i)
			               : kiln_error_set(err, KILN_EIO, "part %zu of the layer is short", i);
		if (kiln_write_all(fd, buf, (size_t)got) < 0)
			return kiln_error_errno(err, errno, "cannot write the layer");
		kiln_sha256_update(blob, buf, (size_t)got);
		done += (uint64_t)got;
		*size += (uint64_t)got;
	}
	return 0;
}

/* The end of the archive (two zero blocks), as a gzip member like the sink's, to FD. */
static int trailer(int fd, struct kiln_sha256 *blob, struct kiln_sha256 *tar, uint64_t *size,
                   struct kiln_error **err)
{
	static const unsigned char zero[1024];
	gz_header h = {.os = 255};
	z_stream z = {0};
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return kiln_error_set(err, KILN_EFAIL, "cannot start gzip compression");
	unsigned char buf[256];
	z.next_in = (Bytef *)zero;
	z.avail_in = sizeof(zero);
	z.next_out = buf;
	z.avail_out = sizeof(buf);
	int zr = deflateSetHeader(&z, &h) == Z_OK ? deflate(&z, Z_FINISH) : Z_STREAM_ERROR;
	size_t have = sizeof(buf) - z.avail_out;
	deflateEnd(&z);
	if (zr != Z_STREAM_END)
		return kiln_error_set(err, KILN_EFAIL, "gzip compression failed");
	if (kiln_write_all(fd, buf, have) < 0)
		return kiln_error_errno(err, errno, "cannot write the layer");
	kiln_sha256_update(blob, buf, have);
	kiln_sha256_update(tar, zero, sizeof(zero));
	*size += have;
	return 0;
}

/* Copy and hash the parts in order while the threads decompress them. */
static int run(struct join *j, int fd, struct kiln_layer_out *out, struct kiln_sha256 *blob,
               struct kiln_sha256 *tar, struct kiln_error **err)
{
	_cleanup_free_ unsigned char *buf = malloc(CHUNK);
	if (buf == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	uint64_t size = 0;
	for (size_t i = 0; i < j->n; i++) {
		int r = copy_part(fd, &j->parts[i], i, buf, blob, &size, err);
		if (r < 0)
			return r;
		struct piece *p = &j->pieces[i];
		pthread_mutex_lock(&j->mu);
		while (!p->done)
			pthread_cond_wait(&j->cv, &j->mu);
		pthread_mutex_unlock(&j->mu);
		if (p->err) {
			kiln_error_free(*err);
			*err = p->err;
			p->err = NULL;
			return (*err)->code;
		}
		kiln_sha256_update(tar, p->data, p->len);
		free(p->data);
		p->data = NULL;
		pthread_mutex_lock(&j->mu);
		j->consumed = i + 1;
		pthread_cond_broadcast(&j->cv);
		pthread_mutex_unlock(&j->mu);
	}
	int r = trailer(fd, blob, tar, &size, err);
	if (r < 0)
		return r;
	kiln_sha256_final(blob, out->digest);
	kiln_sha256_final(tar, out->diff_id);
	out->size = size;
	return 0;
}

int kiln_layer_join(struct kiln_layer_out *out, int fd, const struct kiln_layer_part *parts, size_t n,
                    volatile sig_atomic_t *cancel, struct kiln_error **err)
{
	memset(out, 0, sizeof(*out));
	struct kiln_sha256 *blob = NULL, *tar = NULL;
	int r;
	if ((r = kiln_sha256_new(&blob, err)) < 0 || (r = kiln_sha256_new(&tar, err)) < 0) {
		kiln_sha256_free(blob);
		return r;
	}
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t nthreads = cpus < 1 ? 1 : cpus > MAX_THREADS ? MAX_THREADS : (size_t)cpus;
	if (nthreads > n)
		nthreads = n;
	struct join j = {.parts = parts, .n = n, .cancel = cancel, .window = nthreads + 1};
	pthread_t tids[MAX_THREADS];
	size_t started = 0;
	j.pieces = calloc(n + 1, sizeof(*j.pieces));
	if (j.pieces == NULL) {
		r = kiln_error_set(err, KILN_EFAIL, "out of memory");
		goto out;
	}
	pthread_mutex_init(&j.mu, NULL);
	pthread_cond_init(&j.cv, NULL);
	for (; started < nthreads; started++)
		if (pthread_create(&tids[started], NULL, worker, &j) != 0)
			break;
	if (started == 0 && n > 0) {
		r = kiln_error_set(err, KILN_EFAIL, "cannot start a thread");
	} else {
		r = run(&j, fd, out, blob, tar, err);
	}
	pthread_mutex_lock(&j.mu);
	j.stop = true;
	pthread_cond_broadcast(&j.cv);
	pthread_mutex_unlock(&j.mu);
	for (size_t t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	for (size_t i = 0; i < n; i++) {
		free(j.pieces[i].data);
		kiln_error_free(j.pieces[i].err);
	}
	pthread_cond_destroy(&j.cv);
	pthread_mutex_destroy(&j.mu);
out:
	free(j.pieces);
	kiln_sha256_free(blob);
	kiln_sha256_free(tar);
	if (r < 0)
		memset(out, 0, sizeof(*out));
	return r;
}
