/* SPDX-License-Identifier: Apache-2.0 */
/* store.c: the local OCI layout under $KILN_HOME, its recipes and its layer cache. */
#include "pkg/store.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "layers/extract.h"
#include "layers/reader.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#define INDEX_MAX      (64 << 20)
#define REF_ANNOTATION "org.opencontainers.image.ref.name"

struct kiln_store {
	char *home;
	int use_lock; /* gc.lock, held shared while the store is open (exclusive for kiln prune), or -1 */
};

char *kiln_store_default_home(void)
{
	const char *h = getenv("KILN_HOME");
	if (h && *h)
		return strdup(h);
	const char *xdg = getenv("XDG_CACHE_HOME");
	if (xdg && *xdg)
		return kiln_path_join(xdg, "kiln");
	const char *home = getenv("HOME");
	char *out = NULL;
	if (asprintf(&out, "%s/.cache/kiln", home && *home ? home : "/tmp") < 0)
		return NULL;
	return out;
}

static char *store_path(const struct kiln_store *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *store_path(const struct kiln_store *s, const char *fmt, ...)
{
	va_list ap;
	_cleanup_free_ char *rel = NULL;
	va_start(ap, fmt);
	int n = vasprintf(&rel, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	return kiln_path_join(s->home, rel);
}

/* Remove tmp/<pid>-* files whose process is gone (an interrupted or killed build). */
static void remove_stale_tmp(struct kiln_store *s)
{
	_cleanup_free_ char *dir = store_path(s, "tmp");
	_cleanup_closedir_ DIR *d = dir ? opendir(dir) : NULL;
	if (d == NULL)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (!kiln_tmp_name_stale(de->d_name))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 && (errno == EISDIR || errno == EPERM)) {
			_cleanup_free_ char *path = store_path(s, "tmp/%s", de->d_name);
			if (path) /* a build step's root (pkg/rootfs.h) */
				kiln_extract_remove(path, NULL);
		}
	}
}

/* flock(FD, OP), again after a signal. */
static int flock_retry(int fd, int op)
{
	while (flock(fd, op) < 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

int kiln_store_open(struct kiln_store **out, const char *home, struct kiln_error **err)
{
	struct kiln_store *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	s->use_lock = -1;
	s->home = home ? strdup(home) : kiln_store_default_home();
	if (s->home == NULL) {
		free(s);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	static const char *const dirs[] = {"blobs/sha256", "recipes/sha256", "cache/layers",
	                                   "cache/locations", "tmp"};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		_cleanup_free_ char *p = store_path(s, "%s", dirs[i]);
		if (p == NULL || kiln_mkdir_p_mode(p, 0700, err) < 0) {
			kiln_store_free(s);
			return kiln_error_wrap(err, "cannot open the store");
		}
	}
	_cleanup_free_ char *layout = store_path(s, "oci-layout");
	if (layout && access(layout, F_OK) < 0) {
		static const char text[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
		if (kiln_write_file_atomic(layout, text, sizeof(text) - 1, err) < 0) {
			kiln_store_free(s);
			return kiln_error_wrap(err, "cannot open the store");
		}
	}
	/* Every kiln process that has the store open holds gc.lock shared, so that kiln prune (which takes it
	 * exclusively) never removes a blob that a running build has found in the store and will tag. */
	_cleanup_free_ char *lock = store_path(s, "gc.lock");
	s->use_lock = lock ? open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
	if (s->use_lock < 0 || flock_retry(s->use_lock, LOCK_SH) < 0) {
		kiln_error_errno(err, errno, "cannot lock the store '%s'", s->home);
		kiln_store_free(s);
		return -1;
	}
	remove_stale_tmp(s);
	*out = s;
	return 0;
}

int kiln_store_lock_exclusive(struct kiln_store *s, bool wait, volatile sig_atomic_t *cancel,
                              struct kiln_error **err)
{
	for (;;) {
		if (flock(s->use_lock, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return kiln_error_errno(err, errno, "cannot lock the store '%s'", s->home);
		if (!wait)
			return kiln_error_set(err, KILN_EFAIL, "another kiln process is using the store '%s'",
			                      s->home);
		if (cancel && *cancel)
			return kiln_error_set(err, KILN_EINTR, "interrupted");
		struct timespec t = {0, 100 * 1000 * 1000};
		nanosleep(&t, NULL);
	}
}

void kiln_store_free(struct kiln_store *s)
{
	if (s == NULL)
		return;
	if (s->use_lock >= 0)
		close(s->use_lock);
	free(s->home);
	free(s);
}

const char *kiln_store_home(const struct kiln_store *s)
{
	return s->home;
}

int kiln_store_private_dir(char **out, struct kiln_store *s, const char *rel, struct kiln_error **err)
{
	_cleanup_free_ char *path = store_path(s, "%s", rel);
	if (path == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (kiln_mkdir_p_mode(path, 0700, err) < 0)
		return -1;
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return kiln_error_errno(err, errno, "cannot open '%s'", path);
	if ((st.st_mode & 077) != 0 && fchmod(fd, st.st_mode & 07700) < 0)
		return kiln_error_errno(err, errno, "cannot change the mode of '%s'", path);
	*out = steal_pointer(&path);
	return 0;
}

int kiln_store_tmpfile(struct kiln_store *s, int *fd_out, char **path_out, struct kiln_error **err)
{
	char *path = store_path(s, "tmp/%d-XXXXXX", (int)getpid());
	if (path == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		free(path);
		return kiln_error_errno(err, e, "cannot create a temporary file in '%s/tmp'", s->home);
	}
	*fd_out = fd;
	*path_out = path;
	return 0;
}

/* Write DATA to DST (inside the store) through a file in tmp/, so a killed process leaves nothing but a
 * stale temporary file that the next open removes. */
static int store_write_atomic(struct kiln_store *s, const char *dst, const void *data, size_t len,
                              struct kiln_error **err)
{
	int fd;
	_cleanup_free_ char *tmp = NULL;
	if (kiln_store_tmpfile(s, &fd, &tmp, err) < 0)
		return -1;
	if (kiln_write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		return kiln_error_errno(err, e, "cannot write '%s'", dst);
	}
	if (close(fd) < 0 || rename(tmp, dst) < 0) {
		int e = errno;
		unlink(tmp);
		return kiln_error_errno(err, e, "cannot write '%s'", dst);
	}
	return kiln_fsync_parent(dst, err);
}

/* Write J (compact) to PATH (inside the store) atomically. PATH may be NULL (out of memory). */
static int store_write_json(struct kiln_store *s, const char *path, const json_t *j, struct kiln_error **err)
{
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (text == NULL || path == NULL) {
		free(text);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	int rc = store_write_atomic(s, path, text, strlen(text), err);
	free(text);
	return rc;
}

static char *blob_file(struct kiln_store *s, const char *digest)
{
	return store_path(s, "blobs/sha256/%s", kiln_digest_hex(digest));
}

static char *recipe_file(struct kiln_store *s, const char *digest)
{
	return store_path(s, "recipes/sha256/%s.json", kiln_digest_hex(digest));
}

int kiln_store_blob_commit(struct kiln_store *s, int fd, const char *tmp_path, const char *digest,
                           struct kiln_error **err)
{
	_cleanup_free_ char *dst = blob_file(s, digest);
	if (fsync(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp_path);
		return kiln_error_errno(err, e, "cannot write blob %s", digest);
	}
	if (close(fd) < 0 || dst == NULL || rename(tmp_path, dst) < 0) {
		int e = errno;
		unlink(tmp_path);
		return kiln_error_errno(err, e, "cannot store blob %s", digest);
	}
	return kiln_fsync_parent(dst, err);
}

int kiln_store_blob_put(struct kiln_store *s, const void *data, size_t len, char out[KILN_DIGEST_LEN],
                        struct kiln_error **err)
{
	kiln_digest_buffer(out, data, len);
	if (kiln_store_blob_exists(s, out))
		return 0;
	_cleanup_free_ char *dst = blob_file(s, out);
	if (dst == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	return store_write_atomic(s, dst, data, len, err);
}

int kiln_store_recipe_put(struct kiln_store *s, const struct kiln_recipe *r, struct kiln_error **err)
{
	json_t *j = NULL;
	if (kiln_recipe_to_json(&j, r, err) < 0)
		return -1;
	_cleanup_free_ char *dst = recipe_file(s, r->digest);
	int rc = store_write_json(s, dst, j, err);
	json_decref(j);
	return rc;
}

bool kiln_store_blob_exists(struct kiln_store *s, const char *digest)
{
	_cleanup_free_ char *b = blob_file(s, digest);
	_cleanup_free_ char *r = recipe_file(s, digest);
	return (b && access(b, F_OK) == 0) || (r && access(r, F_OK) == 0);
}

char *kiln_store_blob_path(struct kiln_store *s, const char *digest)
{
	char *b = blob_file(s, digest);
	if (b && access(b, F_OK) < 0) {
		free(b);
		return NULL;
	}
	return b;
}

int kiln_store_blob_read(struct kiln_store *s, const char *digest, char **out, size_t *len, size_t max,
                         struct kiln_error **err)
{
	_cleanup_free_ char *path = blob_file(s, digest);
	_cleanup_free_ char *data = NULL;
	size_t n = 0;
	if (path == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (kiln_read_file(&data, &n, path, max, err) < 0)
		return kiln_error_wrap(err, "cannot read blob %s", digest);
	char got[KILN_DIGEST_LEN];
	kiln_digest_buffer(got, data, n);
	if (strcmp(got, digest) != 0)
		return kiln_error_set(err, KILN_EIO,
		                      "blob %s in the store is corrupt (its content has digest %s)", digest,
		                      got);
	*out = steal_pointer(&data);
	if (len)
		*len = n;
	return 0;
}

int kiln_store_json_read(struct kiln_store *s, const char *digest, size_t max, json_t **out,
                         struct kiln_error **err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	if (kiln_store_blob_read(s, digest, &text, &len, max, err) < 0)
		return -1;
	json_error_t je;
	*out = json_loadb(text, len, 0, &je);
	if (json_is_object(*out))
		return 0;
	json_decref(*out);
	*out = NULL;
	return kiln_error_set(err, KILN_EINVAL, "blob %s in the store is not a JSON object: %s", digest,
	                      je.text);
}

int kiln_store_recipe_get(struct kiln_store *s, const char *digest, struct kiln_recipe **out,
                          struct kiln_error **err)
{
	_cleanup_free_ char *path = recipe_file(s, digest);
	if (path == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	if (j == NULL) {
		if (access(path, F_OK) < 0)
			return kiln_error_set(err, KILN_ENOTFOUND, "blob %s is not in the store", digest);
		return kiln_error_set(err, KILN_EIO, "cannot read '%s': %s (line %d)", path, je.text,
		                      je.line);
	}
	int rc = kiln_recipe_from_json(out, j, err);
	json_decref(j);
	if (rc < 0)
		return kiln_error_wrap(err, "cannot read '%s'", path);
	return 0;
}

int kiln_store_blob_stream(struct kiln_store *s, const char *digest, kiln_write_fn write, void *ctx,
                           struct kiln_error **err)
{
	struct kiln_store_reader r;
	int rc = kiln_store_reader_open(&r, s, digest, err);
	if (rc < 0)
		return rc;
	rc = kiln_blob_reader_pump(r.rd, write, ctx, err);
	kiln_store_reader_release(&r);
	return rc;
}

int kiln_store_lock_index(struct kiln_store *s, struct kiln_error **err)
{
	_cleanup_free_ char *path = store_path(s, "index.lock");
	int fd = path ? open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot lock the store index");
	if (flock_retry(fd, LOCK_EX) < 0) {
		int e = errno;
		close(fd);
		return kiln_error_errno(err, e, "cannot lock the store index");
	}
	return fd;
}

/* Load index.json, or an empty index when there is none yet. */
static json_t *load_index(struct kiln_store *s, struct kiln_error **err)
{
	_cleanup_free_ char *path = store_path(s, "index.json");
	if (access(path, F_OK) < 0)
		return json_pack("{s:i,s:s,s:[]}", "schemaVersion", 2, "mediaType",
		                 "application/vnd.oci.image.index.v1+json", "manifests");
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	if (j == NULL || !json_is_array(json_object_get(j, "manifests"))) {
		json_decref(j);
		kiln_error_set(err, KILN_EIO, "the store index '%s' is not valid: %s", path,
		               j ? "no 'manifests' array" : je.text);
		return NULL;
	}
	return j;
}

int kiln_store_tag(struct kiln_store *s, const char *ref, const char *digest, uint64_t size,
                   const char *media_type, struct kiln_error **err)
{
	_cleanup_close_ int lock = kiln_store_lock_index(s, err);
	if (lock < 0)
		return err && *err ? (*err)->code : KILN_EIO;
	json_t *index = load_index(s, err);
	if (index == NULL)
		return err && *err ? (*err)->code : KILN_EIO;
	json_t *list = json_object_get(index, "manifests");
	for (size_t i = 0; i < json_array_size(list);) {
		json_t *ann = json_object_get(json_array_get(list, i), "annotations");
		const char *name = json_string_value(json_object_get(ann, REF_ANNOTATION));
		if (name && strcmp(name, ref) == 0)
			json_array_remove(list, i);
		else
			i++;
	}
	json_array_append_new(list,
	                      json_pack("{s:s,s:s,s:I,s:{s:s}}", "mediaType", media_type, "digest", digest,
	                                "size", (json_int_t)size, "annotations", REF_ANNOTATION, ref));
	_cleanup_free_ char *path = store_path(s, "index.json");
	int rc = store_write_json(s, path, index, err);
	json_decref(index);
	return rc;
}

int kiln_store_resolve(struct kiln_store *s, const char *ref, char out[KILN_DIGEST_LEN],
                       struct kiln_error **err)
{
	json_t *index = load_index(s, err);
	if (index == NULL)
		return err && *err ? (*err)->code : KILN_EIO;
	json_t *list = json_object_get(index, "manifests");
	int rc = kiln_error_set(err, KILN_ENOTFOUND, "no image '%s' in the store '%s'", ref, s->home);
	/* "host/repo@sha256:..." (a tag before the digest or not) is also an image of host/repo the store
	 * holds under another reference with that digest, as kiln deploy pins images */
	const char *at = strchr(ref, '@'), *slash = strrchr(ref, '/');
	const char *colon =
	    at ? memchr(slash ? slash : ref, ':', (size_t)(at - (slash ? slash : ref))) : NULL;
	size_t repo_len = at ? (size_t)((colon ? colon : at) - ref) : 0;
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *m = json_array_get(list, i);
		const char *name =
		    json_string_value(json_object_get(json_object_get(m, "annotations"), REF_ANNOTATION));
		const char *d = json_string_value(json_object_get(m, "digest"));
		bool same = name && d &&
		            (strcmp(name, ref) == 0 ||
		             (at && strcmp(d, at + 1) == 0 && strncmp(name, ref, repo_len) == 0 &&
		              (name[repo_len] == ':' || name[repo_len] == '@')));
		if (same && kiln_digest_valid(d)) {
			snprintf(out, KILN_DIGEST_LEN, "%s", d);
			kiln_error_free(err ? *err : NULL);
			if (err)
				*err = NULL;
			rc = 0;
			break;
		}
	}
	json_decref(index);
	return rc;
}

json_t *kiln_store_cache_get(struct kiln_store *s, const char *key)
{
	_cleanup_free_ char *path = store_path(s, "cache/layers/%s.json", key);
	return path ? json_load_file(path, 0, NULL) : NULL;
}

int kiln_store_cache_put(struct kiln_store *s, const char *key, json_t *value, struct kiln_error **err)
{
	_cleanup_free_ char *path = store_path(s, "cache/layers/%s.json", key);
	return store_write_json(s, path, value, err);
}

#define MAX_LOCATIONS 8

json_t *kiln_store_locations(struct kiln_store *s, const char *digest)
{
	_cleanup_free_ char *path = store_path(s, "cache/locations/%s.json", kiln_digest_hex(digest));
	json_t *j = path ? json_load_file(path, 0, NULL) : NULL;
	if (!json_is_array(j)) {
		json_decref(j);
		return json_array();
	}
	return j;
}

int kiln_store_location_add(struct kiln_store *s, const char *digest, const char *registry,
                            const char *repository, struct kiln_error **err)
{
	json_t *list = kiln_store_locations(s, digest);
	for (size_t i = 0; i < json_array_size(list);) {
		json_t *l = json_array_get(list, i);
		const char *reg = json_string_value(json_object_get(l, "registry"));
		const char *repo = json_string_value(json_object_get(l, "repository"));
		if (!reg || !repo || (strcmp(reg, registry) == 0 && strcmp(repo, repository) == 0))
			json_array_remove(list, i);
		else
			i++;
	}
	json_array_insert_new(list, 0,
	                      json_pack("{s:s,s:s}", "registry", registry, "repository", repository));
	while (json_array_size(list) > MAX_LOCATIONS)
		json_array_remove(list, MAX_LOCATIONS);
	_cleanup_free_ char *path = store_path(s, "cache/locations/%s.json", kiln_digest_hex(digest));
	int rc = store_write_json(s, path, list, err);
	json_decref(list);
	return rc;
}

int kiln_store_reader_open(struct kiln_store_reader *out, struct kiln_store *s, const char *digest,
                           struct kiln_error **err)
{
	memset(out, 0, sizeof(*out));
	out->path = kiln_store_blob_path(s, digest);
	int rc = out->path ? 0 : kiln_store_recipe_get(s, digest, &out->recipe, err);
	if (rc == 0)
		rc = kiln_blob_reader_open(&out->rd, out->path, out->recipe, err);
	if (rc < 0)
		kiln_store_reader_release(out);
	return rc;
}

void kiln_store_reader_release(struct kiln_store_reader *r)
{
	kiln_blob_reader_free(r->rd);
	kiln_recipe_free(r->recipe);
	free(r->path);
	memset(r, 0, sizeof(*r));
}
