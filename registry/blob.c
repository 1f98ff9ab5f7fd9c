/* SPDX-License-Identifier: Apache-2.0 */
/* blob.c: blobs in a registry: whether one exists, cross-repository mounts, and downloads (redirects too). */
#include "common/cleanup.h"
#include "common/pool.h"
#include "layers/digest.h"
#include "registry/client_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_REDIRECTS 5

int kiln_registry_blob_exists(struct kiln_registry *r, const char *repo, const char *digest, bool *exists,
                              struct kiln_error **err)
{
	*exists = false;
	_cleanup_free_ char *url = kiln_reg_url(r, "%s/blobs/%s", repo, digest);
	_cleanup_free_ char *scope = NULL;
	if (url == NULL || asprintf(&scope, "repository:%s:pull", repo) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct kiln_http_request req = {.method = "HEAD", .url = url};
	struct kiln_http_response resp = {0};
	int rc = kiln_reg_request(r, scope, true, &req, &resp, err);
	if (rc == 0) {
		if (resp.status == 200)
			*exists = true;
		else if (resp.status != 404)
			rc = kiln_reg_status_error(r, &resp, repo, err);
	}
	kiln_http_response_release(&resp);
	if (rc < 0)
		return kiln_error_wrap(err, "cannot check blob %s in %s/%s", kiln_reg_short(digest).s,
		                       r->host, repo);
	return 0;
}

int kiln_registry_blob_mount(struct kiln_registry *r, const char *repo, const char *from_repo,
                             const char *digest, bool *mounted, struct kiln_error **err)
{
	*mounted = false;
	_cleanup_free_ char *base = kiln_reg_url(r, "%s/blobs/uploads/", repo);
	_cleanup_free_ char *u1 = base ? kiln_http_add_query(base, "mount", digest) : NULL;
	_cleanup_free_ char *url = u1 ? kiln_http_add_query(u1, "from", from_repo) : NULL;
	_cleanup_free_ char *scope = NULL;
	if (url == NULL ||
	    asprintf(&scope, "repository:%s:pull,push repository:%s:pull", repo, from_repo) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct kiln_http_request req = {.method = "POST", .url = url};
	struct kiln_http_response resp = {0};
	int rc = kiln_reg_request(r, scope, true, &req, &resp, err);
	if (rc == 0) {
		if (resp.status == 201) {
			*mounted = true;
		} else if (resp.status == 202) {
			/* The registry started an upload instead: cancel it (a failure here is harmless). */
			if (resp.location) {
				_cleanup_free_ char *loc = strdup(resp.location);
				struct kiln_http_request del = {.method = "DELETE", .url = loc};
				struct kiln_error *ignored = NULL;
				if (loc)
					kiln_reg_request(r, scope, false, &del, &resp, &ignored);
				kiln_error_free(ignored);
			}
		} else {
			rc = kiln_reg_status_error(r, &resp, repo, err);
		}
	}
	kiln_http_response_release(&resp);
	if (rc < 0)
		return kiln_error_wrap(err, "cannot mount blob %s from %s into %s/%s",
		                       kiln_reg_short(digest).s, from_repo, r->host, repo);
	return 0;
}

/* Hashes what goes to the caller's writer, to check the digest at the end, and counts it: where a cut-off
 * download resumes. */
struct hashing_writer {
	struct kiln_sha256 *sha;
	kiln_write_fn write;
	void *ctx;
	uint64_t written;
};

static int hashing_write(void *ctx, const void *data, size_t len, struct kiln_error **err)
{
	struct hashing_writer *h = ctx;
	kiln_sha256_update(h->sha, data, len);
	h->written += len;
	return h->write(h->ctx, data, len, err);
}

static bool is_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Follow a blob GET's redirects (object storage); the Authorization header goes only to the registry's
 * own origin. RESP holds the redirect on entry and the final answer on return. No retries here: the
 * caller starts again from the registry, which gives a fresh redirect. */
static int follow_redirects(struct kiln_registry *r, const char *scope, struct kiln_http_request *req,
                            struct kiln_http_response *resp, struct kiln_error **err)
{
	_cleanup_free_ char *origin = kiln_http_origin(r->base);
	for (int hops = 0; is_redirect(resp->status); hops++) {
		if (hops == MAX_REDIRECTS || resp->location == NULL)
			return kiln_error_set(err, KILN_EFAIL,
			                      "%s: too many redirects or a redirect without Location",
			                      r->host);
		_cleanup_free_ char *next = steal_pointer(&resp->location);
		_cleanup_free_ char *next_origin = kiln_http_origin(next);
		req->url = next;
		int rc = origin && next_origin && strcmp(origin, next_origin) == 0
		             ? kiln_reg_request(r, scope, false, req, resp, err)
		             : kiln_http_perform(r->http, req, resp, err);
		req->url = NULL;
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* After a failed GET (RC, or RESP's status when RC is 0): 0 to try again, after the backoff, when the failure
 * is transient and retries are left; else the error. */
static int retry_or_fail(struct kiln_registry *r, const char *repo, int *retries, int rc,
                         struct kiln_http_response *resp, struct kiln_error **err)
{
	if (!kiln_reg_transient(rc, resp))
		return rc == 0 ? kiln_reg_status_error(r, resp, repo, err) : rc;
	return kiln_reg_retry_after_failure(r, retries, repo, rc, resp, err);
}

/*
 * GET the blob into HW, following redirects. A transfer cut off mid-body goes on with a Range request from
 * the bytes HW has (a registry that answers 416 to it, or the whole blob with 200, sends it whole again and
 * the bytes HW has are dropped); failures and 408/429/5xx answers are retried with backoff, all attempts
 * sharing one budget of opt.max_retries.
 */
static int get_resuming(struct kiln_registry *r, const char *repo, const char *scope, const char *url,
                        struct hashing_writer *hw, struct kiln_error **err)
{
	struct kiln_http_request req = {.method = "GET", .write = hashing_write, .write_ctx = hw};
	struct kiln_http_response resp = {0};
	int retries = 0;
	int rc;
	for (;;) {
		req.url = url;
		req.resume_offset = hw->written;
		rc = kiln_reg_request(r, scope, false, &req, &resp, err);
		if (rc == 0 && is_redirect(resp.status))
			rc = follow_redirects(r, scope, &req, &resp, err);
		if (rc == 0 && (resp.status == 200 || resp.status == 206))
			break;
		if (rc == 0 && resp.status == 416 && req.resume_offset && !req.resume_whole) {
			req.resume_whole = true;
			continue;
		}
		if ((rc = retry_or_fail(r, repo, &retries, rc, &resp, err)) < 0)
			break;
	}
	kiln_http_response_release(&resp);
	return rc;
}

int kiln_registry_blob_get(struct kiln_registry *r, const char *repo, const char *digest, kiln_write_fn write,
                           void *ctx, struct kiln_error **err)
{
	_cleanup_free_ char *url = kiln_reg_url(r, "%s/blobs/%s", repo, digest);
	_cleanup_free_ char *scope = NULL;
	if (url == NULL || asprintf(&scope, "repository:%s:pull", repo) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct hashing_writer hw = {.write = write, .ctx = ctx};
	if (kiln_sha256_new(&hw.sha, err) < 0)
		return (*err)->code;
	int rc = get_resuming(r, repo, scope, url, &hw, err);
	char got[KILN_DIGEST_LEN];
	kiln_sha256_final(hw.sha, got);
	kiln_sha256_free(hw.sha);
	if (rc == 0 && strcmp(got, digest) != 0)
		rc = kiln_error_set(err, KILN_EIO, "the registry sent content with digest %s", got);
	if (rc < 0)
		return kiln_error_wrap(err, "cannot get blob %s from %s/%s", kiln_reg_short(digest).s,
		                       r->host, repo);
	return 0;
}

/* ---- a large blob in parts, several at once ---- */

struct parted;
struct part_writer;
static void hash_arrived_at(struct part_writer *w);

/* Writes a part's bytes at their place in the file FD: OFFSET is where the next byte goes. */
struct part_writer {
	int fd;
	uint64_t offset;
	uint64_t written; /* of this part, in all attempts */
	_Atomic uint64_t *total;
	void (*progress)(void *ctx, uint64_t done);
	void *progress_ctx;
	struct parted *f; /* whose digest follows the bytes as they arrive */
	size_t index;     /* of this part */
};

static int part_write(void *ctx, const void *data, size_t len, struct kiln_error **err)
{
	struct part_writer *w = ctx;
	const char *p = data;
	while (len > 0) {
		ssize_t n = pwrite(w->fd, p, len, (off_t)w->offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kiln_error_errno(err, errno, "cannot write the blob");
		p += n;
		len -= (size_t)n;
		w->offset += (uint64_t)n;
		w->written += (uint64_t)n;
		uint64_t total = atomic_fetch_add(w->total, (uint64_t)n) + (uint64_t)n;
		if (w->progress)
			w->progress(w->progress_ctx, total);
		if (w->f)
			hash_arrived_at(w);
	}
	return 0;
}

/*
 * GET bytes FIRST..LAST of the blob at URL into W, following redirects. A transfer cut off goes on from the
 * bytes W has with a new range; failures and 408/429/5xx answers are retried with backoff (the part's own
 * budget of opt.max_retries). KILN_ENOTSUP when the registry answers without a range.
 */
static int get_range(struct kiln_registry *r, const char *repo, const char *scope, const char *url,
                     uint64_t first, uint64_t last, struct part_writer *w, struct kiln_error **err)
{
	struct kiln_http_request req = {.method = "GET", .write = part_write, .write_ctx = w, .ranged = true};
	struct kiln_http_response resp = {0};
	int retries = 0;
	int rc;
	for (;;) {
		req.url = url;
		req.range_first = first + w->written;
		req.range_last = last;
		rc = kiln_reg_request(r, scope, false, &req, &resp, err);
		if (rc == 0 && is_redirect(resp.status))
			rc = follow_redirects(r, scope, &req, &resp, err);
		if (rc == KILN_ENOTSUP)
			break;
		if (rc == 0 && resp.status == 200) {
			/* a registry that ignores Range and sends nothing (HEAD-like) or the whole */
			rc = kiln_error_set(err, KILN_ENOTSUP, "%s answered 200 to a Range request", r->host);
			break;
		}
		if (rc == 0 && resp.status == 206 && w->written == last - first + 1)
			break;
		if (rc == 0 && resp.status == 206) /* short: asked again for the rest */
			rc = kiln_reg_retry_after_failure(
			    r, &retries, repo,
			    kiln_error_set(err, KILN_EIO, "the registry sent %llu of bytes %llu-%llu",
			                   (unsigned long long)w->written, (unsigned long long)first,
			                   (unsigned long long)last),
			    &resp, err);
		else
			rc = retry_or_fail(r, repo, &retries, rc, &resp, err);
		if (rc < 0)
			break;
	}
	kiln_http_response_release(&resp);
	return rc;
}

struct parted {
	struct kiln_registry *r;
	const char *repo, *scope, *url;
	int fd;
	uint64_t size, part;
	_Atomic uint64_t total;
	void (*progress)(void *ctx, uint64_t done);
	void *progress_ctx;
	volatile sig_atomic_t stop;
	/* the digest, over the bytes written from the start without a gap, by whichever writer takes the lock
	 * (read back from the page cache, so that little is left to hash once the last part is in) */
	pthread_mutex_t hash_lock;
	struct kiln_sha256 *sha;
	uint64_t hashed;
	_Atomic uint64_t *written; /* of each part */
	size_t nparts;
	unsigned char *buf;
	bool hash_failed; /* a read back failed: the digest is made again at the end */
};

/* Hash the bytes from f->hashed that have arrived without a gap (f->hash_lock held). */
static void hash_locked(struct parted *f)
{
	while (!f->hash_failed && f->hashed < f->size) {
		size_t p = (size_t)(f->hashed / f->part);
		uint64_t end = (uint64_t)p * f->part + atomic_load(&f->written[p]);
		if (end <= f->hashed)
			return;
		while (f->hashed < end) {
			size_t want =
			    end - f->hashed < (1 << 20) ? (size_t)(end - f->hashed) : (size_t)(1 << 20);
			ssize_t n = pread(f->fd, f->buf, want, (off_t)f->hashed);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				f->hash_failed = true;
				return;
			}
			kiln_sha256_update(f->sha, f->buf, (size_t)n);
			f->hashed += (uint64_t)n;
		}
	}
}

static void hash_arrived(struct parted *f, bool wait)
{
	if (wait)
		pthread_mutex_lock(&f->hash_lock);
	else if (pthread_mutex_trylock(&f->hash_lock) != 0)
		return; /* another writer is hashing */
	hash_locked(f);
	pthread_mutex_unlock(&f->hash_lock);
}

/* W's part has more bytes: they count for the digest once the bytes before them are there. */
static void hash_arrived_at(struct part_writer *w)
{
	atomic_store(&w->f->written[w->index], w->written);
	hash_arrived(w->f, false);
}

static int fetch_part(void *ctx, size_t i, struct kiln_error **err)
{
	struct parted *f = ctx;
	uint64_t first = (uint64_t)i * f->part;
	uint64_t last = first + f->part < f->size ? first + f->part - 1 : f->size - 1;
	struct part_writer w = {.fd = f->fd,
	                        .offset = first,
	                        .total = &f->total,
	                        .progress = f->progress,
	                        .progress_ctx = f->progress_ctx,
	                        .f = f,
	                        .index = i};
	return get_range(f->r, f->repo, f->scope, f->url, first, last, &w, err);
}

/* The digest of the first SIZE bytes of FD, read back, into OUT. */
static int digest_of_fd(int fd, uint64_t size, char out[KILN_DIGEST_LEN], struct kiln_error **err)
{
	struct kiln_sha256 *sha = NULL;
	if (kiln_sha256_new(&sha, err) < 0)
		return (*err)->code;
	_cleanup_free_ char *buf = malloc(1 << 20);
	uint64_t at = 0;
	while (buf && at < size) {
		size_t want = size - at < (1 << 20) ? (size_t)(size - at) : (size_t)(1 << 20);
		ssize_t n = pread(fd, buf, want, (off_t)at);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			kiln_sha256_free(sha);
			return n < 0 ? kiln_error_errno(err, errno, "cannot read the blob back")
			             : kiln_error_set(err, KILN_EIO, "the blob ended after %llu bytes",
			                              (unsigned long long)at);
		}
		kiln_sha256_update(sha, buf, (size_t)n);
		at += (uint64_t)n;
	}
	kiln_sha256_final(sha, out);
	kiln_sha256_free(sha);
	return buf ? 0 : kiln_error_set(err, KILN_EFAIL, "out of memory");
}

/* KILN_FETCH_PART_SIZE / KILN_FETCH_PARALLEL into *OUT: unset or empty, DEF; else a positive whole number
 * up to MAX (a value that is not one is an error naming the variable, never passed over). */
int kiln_env_count(const char *name, uint64_t def, uint64_t max, uint64_t *out, struct kiln_error **err)
{
	const char *v = getenv(name);
	char *end = NULL;
	*out = def;
	if (v == NULL || *v == '\0')
		return 0;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno || *end || n == 0 || *v == '-' || *v == '+')
		return kiln_error_set(err, KILN_EINVAL, "%s=%s: not a positive whole number", name, v);
	if (n > max)
		return kiln_error_set(err, KILN_EINVAL, "%s=%s: at most %llu", name, v,
		                      (unsigned long long)max);
	*out = (uint64_t)n;
	return 0;
}

/* The whole blob to a file, its progress reported. */
struct whole_writer {
	int fd;
	uint64_t done;
	void (*progress)(void *ctx, uint64_t done);
	void *progress_ctx;
};

static int whole_write(void *ctx, const void *data, size_t len, struct kiln_error **err)
{
	struct whole_writer *w = ctx;
	int rc = kiln_write_to_fd(&w->fd, data, len, err);
	if (rc < 0)
		return rc;
	w->done += len;
	if (w->progress)
		w->progress(w->progress_ctx, w->done);
	return 0;
}

int kiln_registry_blob_fetch(struct kiln_registry *r, const char *repo, const char *digest, uint64_t size,
                             int fd, void (*progress)(void *ctx, uint64_t done), void *progress_ctx,
                             struct kiln_error **err)
{
	uint64_t part, parallel;
	if (kiln_env_count("KILN_FETCH_PART_SIZE", KILN_FETCH_PART_SIZE_DEFAULT, UINT64_MAX, &part, err) <
	        0 ||
	    kiln_env_count("KILN_FETCH_PARALLEL", KILN_FETCH_PARALLEL_DEFAULT, KILN_FETCH_PARALLEL_MAX,
	                   &parallel, err) < 0)
		return (*err)->code;
	if (size > part && parallel > 1) {
		_cleanup_free_ char *url = kiln_reg_url(r, "%s/blobs/%s", repo, digest);
		_cleanup_free_ char *scope = NULL;
		if (url == NULL || asprintf(&scope, "repository:%s:pull", repo) < 0)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		struct parted f = {.r = r,
		                   .repo = repo,
		                   .scope = scope,
		                   .url = url,
		                   .fd = fd,
		                   .size = size,
		                   .part = part,
		                   .progress = progress,
		                   .progress_ctx = progress_ctx};
		size_t nparts = (size_t)((size + part - 1) / part);
		f.nparts = nparts;
		f.written = calloc(nparts, sizeof(*f.written));
		f.buf = malloc(1 << 20);
		pthread_mutex_init(&f.hash_lock, NULL);
		int rc = !f.written || !f.buf ? kiln_error_set(err, KILN_EFAIL, "out of memory")
		                              : kiln_sha256_new(&f.sha, err);
		if (rc == 0)
			rc = kiln_pool_run(nparts, (size_t)parallel, fetch_part, &f, &f.stop, err);
		char got[KILN_DIGEST_LEN];
		if (rc == 0) {
			hash_arrived(&f, true); /* what is left */
			if (!f.hash_failed && f.hashed == size)
				kiln_sha256_final(f.sha, got);
			else
				rc = digest_of_fd(fd, size, got, err);
		}
		if (rc == 0 && strcmp(got, digest) != 0)
			rc = kiln_error_set(err, KILN_EIO, "the registry sent content with digest %s", got);
		kiln_sha256_free(f.sha);
		pthread_mutex_destroy(&f.hash_lock);
		free((void *)f.written);
		free(f.buf);
		if (rc != KILN_ENOTSUP) {
			if (rc < 0)
				return kiln_error_wrap(err, "cannot get blob %s from %s/%s",
				                       kiln_reg_short(digest).s, r->host, repo);
			return 0;
		}
		/* no ranges here: the whole blob in one GET */
		kiln_error_free(*err);
		*err = NULL;
		if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
			return kiln_error_errno(err, errno, "cannot write the blob");
	}
	struct whole_writer w = {.fd = fd, .progress = progress, .progress_ctx = progress_ctx};
	return kiln_registry_blob_get(r, repo, digest, whole_write, &w, err);
}
