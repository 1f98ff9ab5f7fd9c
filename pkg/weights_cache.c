/* SPDX-License-Identifier: Apache-2.0 */
/* weights_cache.c: a node's cache of weight blobs, filled from a registry (weights_cache.h). */
#include "pkg/weights_cache.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/pool.h"
#include "layers/digest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int kiln_weights_progress_init(struct kiln_weights_progress *p, size_t n, struct kiln_error **err)
{
	memset(p, 0, sizeof(*p));
	p->state = calloc(n + 1, sizeof(*p->state));
	p->done = calloc(n + 1, sizeof(*p->done));
	if (p->state == NULL || p->done == NULL) {
		kiln_weights_progress_release(p);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	p->n = n;
	return 0;
}

void kiln_weights_progress_release(struct kiln_weights_progress *p)
{
	free((void *)p->state);
	free((void *)p->done);
	memset(p, 0, sizeof(*p));
}

char *kiln_weights_cache_path(const char *dir, const char *digest)
{
	char *path = NULL;
	if (!kiln_digest_valid(digest) || asprintf(&path, "%s/sha256/%s", dir, kiln_digest_hex(digest)) < 0)
		return NULL;
	return path;
}

/* Whether PATH is absolute, names a file (no trailing '/') and has no '..' part. */
static bool path_in_image(const char *path)
{
	if (path[0] != '/' || path[strlen(path) - 1] == '/')
		return false;
	for (const char *c = path; (c = strstr(c, "..")) != NULL; c += 2) {
		if (c[-1] == '/' && (c[2] == '/' || c[2] == '\0'))
			return false;
	}
	return true;
}

int kiln_weights_list_blobs(const json_t *list, const char *where, struct kiln_weight_blob **out, size_t *n,
                            uint64_t *bytes, struct kiln_error **err)
{
	*out = NULL;
	*n = 0;
	*bytes = 0;
	if (!json_is_array(list))
		return kiln_error_set(err, KILN_EINVAL, "%s: not a list of weights", where);
	size_t count = json_array_size(list);
	struct kiln_weight_blob *b = calloc(count + 1, sizeof(*b));
	if (b == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	uint64_t total = 0;
	for (size_t i = 0; i < count; i++) {
		const json_t *e = json_array_get(list, i);
		const char *path = json_string_value(json_object_get(e, "path"));
		const char *digest = json_string_value(json_object_get(e, "digest"));
		const json_t *size = json_object_get(e, "size");
		const char *bad =
		    !json_is_object(e)                             ? "is not an object"
		    : path == NULL || !path_in_image(path)         ? "has no absolute 'path' without '..'"
		    : digest == NULL || !kiln_digest_valid(digest) ? "has no valid sha256 'digest'"
		    : !json_is_integer(size) || json_integer_value(size) < 0
		        ? "has no 'size' of 0 or more bytes"
		        : NULL;
		if (bad == NULL && total + (uint64_t)json_integer_value(size) < total)
			bad = "makes the weights' size overflow";
		if (bad) {
			free(b);
			return kiln_error_set(err, KILN_EINVAL, "%s: entry %zu %s", where, i, bad);
		}
		b[i] = (struct kiln_weight_blob){
		    .digest = digest, .size = (uint64_t)json_integer_value(size), .name = path};
		total += b[i].size;
	}
	*out = b;
	*n = count;
	*bytes = total;
	return 0;
}

/* Remove DIR/tmp/<pid>-* files whose process is gone (a fetch killed midway). */
static void remove_stale_tmp(const char *dir)
{
	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%s/tmp", dir) < 0)
		return;
	_cleanup_closedir_ DIR *d = opendir(tmp);
	if (d == NULL)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (kiln_tmp_name_stale(de->d_name))
			unlinkat(dirfd(d), de->d_name, 0);
	}
}

/* The work of one kiln_weights_fill, shared by its threads. */
struct fill {
	const char *dir;
	struct kiln_registry *r;
	const char *repo;
	const struct kiln_weight_blob *b;
	struct kiln_weights_progress *p;
	volatile sig_atomic_t stop;
};

/* Blob I's progress, as kiln_registry_blob_fetch reports it (bytes written so far, from several threads:
 * the largest count is kept). */
struct blob_progress {
	struct kiln_weights_progress *p;
	size_t i;
	_Atomic uint64_t last;
};

static void on_progress(void *ctx, uint64_t done)
{
	struct blob_progress *bp = ctx;
	uint64_t last = atomic_load(&bp->last);
	while (done > last && !atomic_compare_exchange_weak(&bp->last, &last, done))
		;
	if (done > last) {
		atomic_store(&bp->p->done[bp->i], done);
		atomic_fetch_add(&bp->p->fetched, done - last);
	}
}

static void set_state(struct kiln_weights_progress *p, size_t i, enum kiln_weight_state st, uint64_t done)
{
	if (p == NULL)
		return;
	atomic_store(&p->state[i], (int)st);
	atomic_store(&p->done[i], done);
}

/* true when PATH is a regular file of SIZE bytes (a blob written whole). */
static bool cached(const char *path, uint64_t size)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size;
}

/* Fetch blob B into the cache's file DST, through a temporary file in DIR/tmp. */
static int fetch_into(struct fill *f, size_t i, const char *dst, struct kiln_error **err)
{
	const struct kiln_weight_blob *b = &f->b[i];
	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%s/tmp/%d-%.16s-XXXXXX", f->dir, (int)getpid(), kiln_digest_hex(b->digest)) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot create a file in '%s/tmp'", f->dir);
	/* the whole size first: a cache disk without room fails here, before anything is fetched */
	int rc = b->size ? posix_fallocate(fd, 0, (off_t)b->size) : 0;
	if (rc != 0 && rc != EOPNOTSUPP && rc != EINVAL) {
		rc = kiln_error_errno(err, rc, "cannot make room for %s (%llu bytes) in '%s'", b->name,
		                      (unsigned long long)b->size, f->dir);
		goto fail;
	}
	struct blob_progress bp = {.p = f->p, .i = i};
	for (int attempt = 0;; attempt++) {
		rc = kiln_registry_blob_fetch(f->r, f->repo, b->digest, b->size, fd,
		                              f->p ? on_progress : NULL, &bp, err);
		if (rc != KILN_EIO || attempt == 1 || strstr((*err)->message, "with digest") == NULL)
			break;
		/* bytes that are not the blob: thrown away, and the blob fetched once more */
		kiln_error_free(*err);
		*err = NULL;
		if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
			rc = kiln_error_errno(err, errno, "cannot write %s into '%s'", b->name, f->dir);
			goto fail;
		}
	}
	if (rc < 0) {
		kiln_error_wrap(err, "cannot fetch the weights %s", b->name);
		goto fail;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		fd = -1;
		rc = kiln_error_errno(err, errno, "cannot write %s into '%s'", b->name, f->dir);
		goto fail;
	}
	fd = -1;
	if (rename(tmp, dst) < 0) {
		rc = kiln_error_errno(err, errno, "cannot write %s into '%s'", b->name, f->dir);
		goto fail;
	}
	return kiln_fsync_parent(dst, err);
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return rc;
}

static int fill_one(void *ctx, size_t i, struct kiln_error **err)
{
	struct fill *f = ctx;
	const struct kiln_weight_blob *b = &f->b[i];
	_cleanup_free_ char *dst = kiln_weights_cache_path(f->dir, b->digest);
	_cleanup_free_ char *lock = NULL;
	if (dst == NULL)
		return kiln_error_set(err, KILN_EINVAL, "%s: '%s' is not a sha256 digest", b->name,
		                      b->digest);
	if (cached(dst, b->size)) {
		set_state(f->p, i, KILN_WEIGHT_CACHED, b->size);
		return 0;
	}
	if (asprintf(&lock, "%s/locks/%s", f->dir, kiln_digest_hex(b->digest)) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	_cleanup_close_ int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (lfd < 0)
		return kiln_error_errno(err, errno, "cannot create '%s'", lock);
	while (flock(lfd, LOCK_EX) < 0)
		if (errno != EINTR)
			return kiln_error_errno(err, errno, "cannot lock '%s'", lock);
	/* another process may have fetched it while this one waited */
	if (cached(dst, b->size)) {
		set_state(f->p, i, KILN_WEIGHT_CACHED, b->size);
		return 0;
	}
	set_state(f->p, i, KILN_WEIGHT_FETCHING, 0);
	unlink(dst); /* of the wrong size: not this blob whole */
	int rc = fetch_into(f, i, dst, err);
	set_state(f->p, i, rc < 0 ? KILN_WEIGHT_FAILED : KILN_WEIGHT_FETCHED, rc < 0 ? 0 : b->size);
	return rc;
}

/* DIR's subdirectories, made when missing; stale temporary files removed. */
static int make_cache(const char *dir, struct kiln_error **err)
{
	static const char *const subdirs[] = {"sha256", "tmp", "locks"};
	for (size_t i = 0; i < sizeof(subdirs) / sizeof(*subdirs); i++) {
		_cleanup_free_ char *sub = NULL;
		if (asprintf(&sub, "%s/%s", dir, subdirs[i]) < 0)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		if (kiln_mkdir_p_mode(sub, 0755, err) < 0)
			return kiln_error_wrap(err, "the weights cache '%s'", dir);
	}
	remove_stale_tmp(dir);
	return 0;
}

int kiln_weights_fill(const char *dir, struct kiln_registry *r, const char *repo,
                      const struct kiln_weight_blob *b, size_t n, size_t at_once,
                      struct kiln_weights_progress *p, struct kiln_error **err)
{
	if (make_cache(dir, err) < 0)
		return -1;
	struct fill f = {.dir = dir, .r = r, .repo = repo, .b = b, .p = p};
	return kiln_pool_run(n, at_once ? at_once : 1, fill_one, &f, &f.stop, err);
}

/* Blob B of the store S into the cache file DST: linked when stored whole, else streamed and renamed. */
static int place_from_store(const char *dir, struct kiln_store *s, const struct kiln_weight_blob *b,
                            const char *dst, struct kiln_error **err)
{
	_cleanup_free_ char *whole = kiln_store_blob_path(s, b->digest);
	if (whole && link(whole, dst) == 0)
		return kiln_fsync_parent(dst, err);
	if (whole && errno == EEXIST)
		return 0;
	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%s/tmp/%d-%.16s-XXXXXX", dir, (int)getpid(), kiln_digest_hex(b->digest)) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot create a file in '%s/tmp'", dir);
	int rc = kiln_store_blob_stream(s, b->digest, kiln_write_to_fd, &fd, err);
	if (rc == 0 && (fsync(fd) < 0 || rename(tmp, dst) < 0))
		rc = kiln_error_errno(err, errno, "cannot write %s into '%s'", b->name, dir);
	close(fd);
	if (rc < 0) {
		unlink(tmp);
		return kiln_error_wrap(err, "cannot put %s in the weights cache", b->name);
	}
	return kiln_fsync_parent(dst, err);
}

int kiln_weights_from_store(const char *dir, struct kiln_store *s, const struct kiln_weight_blob *b, size_t n,
                            size_t *placed, struct kiln_error **err)
{
	if (placed)
		*placed = 0;
	if (make_cache(dir, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *dst = kiln_weights_cache_path(dir, b[i].digest);
		if (dst == NULL)
			return kiln_error_set(err, KILN_EINVAL, "%s: '%s' is not a sha256 digest", b[i].name,
			                      b[i].digest);
		if (cached(dst, b[i].size) || !kiln_store_blob_exists(s, b[i].digest))
			continue;
		unlink(dst); /* of the wrong size */
		if (place_from_store(dir, s, &b[i], dst, err) < 0)
			return -1;
		if (placed)
			(*placed)++;
	}
	return 0;
}
