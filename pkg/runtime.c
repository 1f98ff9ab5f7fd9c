/* SPDX-License-Identifier: Apache-2.0 */
/* runtime.c: locating the shim and the runner, and making the runtime layer's entries. */
#include "pkg/runtime.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "kiln_version.h"
#include "layers/digest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef KILN_SOURCE_PYTHON_DIR
#define KILN_SOURCE_PYTHON_DIR ""
#endif

/* The runtime layer built with kiln: its record's format and name, and its blob's name prefix. */
#define PREBUILT_FORMAT "kiln-runtime-v1"
#define PREBUILT_RECORD "runtime.json"
#define PREBUILT_BLOB   "sha256-"

/* The directory of this executable ("/usr/local/bin"), or NULL. */
static char *exe_dir(void)
{
	char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	if (n <= 0)
		return NULL;
	path[n] = '\0';
	return strdup(dirname(path));
}

static bool is_file(const char *p)
{
	struct stat st;
	return p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_runner_dir(const char *p)
{
	_cleanup_free_ char *f = p ? kiln_path_join(p, "kiln_runner.py") : NULL;
	return is_file(f);
}

/* The runtime layer built with kiln, beside the executable in DIR: kiln-runtime/ (the build tree), else
 * ../share/kiln/runtime (installed). A record of another format is not one. */
static void find_prebuilt(struct kiln_runtime *rt, const char *dir)
{
	char *candidates[2] = {dir ? kiln_path_join(dir, "kiln-runtime") : NULL,
	                       dir ? kiln_path_join(dir, "../share/kiln/runtime") : NULL};
	for (size_t i = 0; i < 2; i++) {
		_cleanup_free_ char *file =
		    candidates[i] ? kiln_path_join(candidates[i], PREBUILT_RECORD) : NULL;
		json_t *rec = rt->record == NULL && file ? json_load_file(file, 0, NULL) : NULL;
		const char *format = json_string_value(json_object_get(rec, "format"));
		if (format && strcmp(format, PREBUILT_FORMAT) == 0 &&
		    (rt->prebuilt = realpath(candidates[i], NULL)))
			rt->record = rec;
		else
			json_decref(rec);
		free(candidates[i]);
	}
}

int kiln_runtime_locate(struct kiln_runtime *out, struct kiln_error **err)
{
	memset(out, 0, sizeof(*out));
	_cleanup_free_ char *dir = exe_dir();
	const char *env = getenv("KILN_SHIM");
	if (env && *env)
		out->shim = strdup(env);
	else if (dir)
		out->shim = kiln_path_join(dir, "kiln-shim");
	if (!is_file(out->shim)) {
		int rc =
		    kiln_error_set(err, KILN_ENOTFOUND, "cannot find the predictor shim '%s' (set KILN_SHIM)",
		                   out->shim ? out->shim : "kiln-shim");
		kiln_runtime_release(out);
		return rc;
	}
	const char *penv = getenv("KILN_PYTHON_DIR");
	char *candidates[3] = {penv && *penv ? strdup(penv) : NULL,
	                       dir ? kiln_path_join(dir, "../share/kiln/python") : NULL,
	                       *KILN_SOURCE_PYTHON_DIR ? strdup(KILN_SOURCE_PYTHON_DIR) : NULL};
	for (size_t i = 0; i < 3; i++) {
		if (out->python_dir == NULL && is_runner_dir(candidates[i]))
			out->python_dir = realpath(candidates[i], NULL);
		free(candidates[i]);
	}
	if (out->python_dir == NULL) {
		kiln_runtime_release(out);
		return kiln_error_set(err, KILN_ENOTFOUND,
		                      "cannot find the Python runner (kiln_runner.py; set KILN_PYTHON_DIR)");
	}
	find_prebuilt(out, dir);
	return 0;
}

void kiln_runtime_release(struct kiln_runtime *rt)
{
	free(rt->shim);
	free(rt->python_dir);
	free(rt->prebuilt);
	json_decref(rt->record);
	memset(rt, 0, sizeof(*rt));
}

/* Append a regular file entry NAME (inside the image) read from SOURCE, following symlinks. */
static int add_file(struct kiln_plan_layer *l, size_t *cap, const char *name, const char *source, mode_t mode,
                    struct kiln_error **err)
{
	_cleanup_free_ char *real = realpath(source, NULL);
	struct stat st;
	if (real == NULL || stat(real, &st) < 0)
		return kiln_error_errno(err, errno, "cannot read '%s'", source);
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->entries[i].name, name) == 0)
			return 0; /* the same soname twice */
	if (l->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 32;
		struct kiln_tar_entry *e = realloc(l->entries, ncap * sizeof(*e));
		if (e == NULL)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		l->entries = e;
		*cap = ncap;
	}
	struct kiln_tar_entry *e = &l->entries[l->n];
	memset(e, 0, sizeof(*e));
	e->type = KILN_TAR_FILE;
	e->mode = mode;
	e->name = strdup(name);
	e->source = steal_pointer(&real);
	e->size = (uint64_t)st.st_size;
	kiln_stat_fp_from(&e->fp, &st);
	if (e->name == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	l->n++;
	l->bytes += e->size;
	return 0;
}

/* A cache key (64 hex digits) for TAG and the stat fingerprints of the files named in PATHS (NULL-ended). */
void kiln_cache_key(char out[65], const char *tag, const char *const *paths)
{
	struct kiln_buf b = KILN_BUF_INIT;
	kiln_buf_printf(&b, "%s\n", tag);
	for (size_t i = 0; paths[i]; i++) {
		struct stat st;
		struct kiln_stat_fp fp = {0};
		if (stat(paths[i], &st) == 0)
			kiln_stat_fp_from(&fp, &st);
		kiln_buf_printf(&b, "%s %llu %llu %llu %lld %lld\n", paths[i], (unsigned long long)fp.dev,
		                (unsigned long long)fp.ino, (unsigned long long)fp.size,
		                (long long)fp.mtime_ns, (long long)fp.ctime_ns);
	}
	char d[KILN_DIGEST_LEN];
	kiln_digest_buffer(d, b.ptr ? b.ptr : "", b.len);
	kiln_buf_release(&b);
	memcpy(out, kiln_digest_hex(d), 65);
}

/* The closure the runtime layer built with kiln recorded, when its shim is this one (the same content). */
static json_t *recorded_closure(const struct kiln_runtime *rt)
{
	const char *shim = json_string_value(json_object_get(rt->record, "shim"));
	json_t *list = json_object_get(rt->record, "closure");
	char d[KILN_DIGEST_LEN];
	if (shim == NULL || !json_is_array(list) || json_array_size(list) == 0 ||
	    kiln_digest_file(d, rt->shim, NULL) < 0 || strcmp(d, shim) != 0)
		return NULL;
	return json_deep_copy(list);
}

/* The shim's libraries from `ldd`, as [[name in the image, path here], ...]: each "soname => /path"
 * line, and the loader. Cached in the store by the shim's fingerprint, so a rebuild runs no ldd; a fresh
 * store takes the list the runtime layer built with kiln recorded for the same shim. */
static json_t *closure(const struct kiln_runtime *rt, struct kiln_store *s, struct kiln_error **err)
{
	const char *shim = rt->shim;
	char key[65];
	const char *paths[] = {shim, NULL};
	kiln_cache_key(key, "ldd-v1", paths);
	json_t *list = s ? kiln_store_cache_get(s, key) : NULL;
	if (json_is_array(list) && json_array_size(list) > 0)
		return list;
	json_decref(list);
	if ((list = recorded_closure(rt)) != NULL)
		return list;
	list = json_array();
	_cleanup_free_ char *cmd = NULL;
	if (asprintf(&cmd, "ldd '%s' 2>&1", shim) < 0) {
		json_decref(list);
		kiln_error_set(err, KILN_EFAIL, "out of memory");
		return NULL;
	}
	FILE *f = popen(cmd, "r");
	if (f == NULL) {
		json_decref(list);
		kiln_error_errno(err, errno, "cannot run ldd on '%s'", shim);
		return NULL;
	}
	char line[1024];
	int rc = 0;
	bool loader = false;
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		char soname[256], path[768];
		if (strstr(line, "not found")) {
			rc = kiln_error_set(err, KILN_ENOTFOUND,
			                    "the shim needs a library this machine lacks: %s", line);
		} else if (sscanf(line, " %255s => %767s", soname, path) == 2 && path[0] == '/') {
			json_array_append_new(list, json_pack("[s+,s]", ".kiln/lib/", soname, path));
		} else if (sscanf(line, " %767s (", path) == 1 && path[0] == '/' &&
		           strstr(path, "ld-linux")) {
			json_array_append_new(list,
			                      json_pack("[s,s]", ".kiln/lib/ld-linux-x86-64.so.2", path));
			loader = true;
		}
	}
	bool partial = ferror(f) != 0; /* a read cut short: never cache a partial list */
	int status = pclose(f);
	if (rc == 0 && (partial || status != 0 || !loader))
		rc = kiln_error_set(err, KILN_EFAIL, "ldd could not list the libraries of '%s'", shim);
	if (rc < 0) {
		json_decref(list);
		return NULL;
	}
	if (s)
		kiln_store_cache_put(s, key, list, NULL); /* a cache: failing to keep it is not an error */
	return list;
}

static int add_closure(struct kiln_plan_layer *l, size_t *cap, const struct kiln_runtime *rt,
                       struct kiln_store *s, struct kiln_error **err)
{
	json_t *list = closure(rt, s, err);
	if (list == NULL)
		return -1;
	int rc = 0;
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e)
	{
		const char *name = json_string_value(json_array_get(e, 0));
		const char *path = json_string_value(json_array_get(e, 1));
		if (name && path && (rc = add_file(l, cap, name, path, 0755, err)) < 0)
			break;
	}
	json_decref(list);
	return rc;
}

/* Add every file under DIR (skipping __pycache__) as .kiln/python/<relative path>. */
static int add_tree(struct kiln_plan_layer *l, size_t *cap, const char *dir, const char *rel,
                    struct kiln_error **err)
{
	_cleanup_free_ char *path = rel[0] ? kiln_path_join(dir, rel) : strdup(dir);
	_cleanup_closedir_ DIR *d = path ? opendir(path) : NULL;
	if (d == NULL)
		return kiln_error_errno(err, errno, "cannot read '%s'", path ? path : dir);
	struct dirent *de;
	int rc = 0;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || strcmp(de->d_name, "__pycache__") == 0)
			continue;
		_cleanup_free_ char *sub = rel[0] ? kiln_path_join(rel, de->d_name) : strdup(de->d_name);
		_cleanup_free_ char *full = kiln_path_join(dir, sub);
		_cleanup_free_ char *name = kiln_path_join(".kiln/python", sub);
		struct stat st;
		if (sub == NULL || full == NULL || name == NULL)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		if (stat(full, &st) < 0)
			return kiln_error_errno(err, errno, "cannot read '%s'", full);
		if (S_ISDIR(st.st_mode))
			rc = add_tree(l, cap, dir, sub, err);
		else if (S_ISREG(st.st_mode))
			rc = add_file(l, cap, name, full, 0644, err);
	}
	return rc;
}

static void layer_release(struct kiln_plan_layer *l)
{
	for (size_t i = 0; i < l->n; i++)
		kiln_tar_entry_release(&l->entries[i]);
	free(l->entries);
	free(l->title);
	memset(l, 0, sizeof(*l));
}

int kiln_runtime_layer(struct kiln_plan_layer *out, const struct kiln_runtime *rt, struct kiln_store *s,
                       struct kiln_error **err)
{
	memset(out, 0, sizeof(*out));
	out->kind = KILN_LAYER_RUNTIME;
	out->compression = KILN_COMPRESS_GZIP;
	out->fixed_mtime = true;
	out->title = strdup("runtime");
	size_t cap = 0;
	int rc = out->title ? 0 : kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (rc == 0)
		rc = add_file(out, &cap, ".kiln/bin/kiln-shim", rt->shim, 0755, err);
	if (rc == 0)
		rc = add_closure(out, &cap, rt, s, err);
	if (rc == 0)
		rc = add_tree(out, &cap, rt->python_dir, "", err);
	if (rc < 0) {
		layer_release(out);
		return kiln_error_wrap(err, "cannot make the runtime layer");
	}
	return 0;
}

/* In the image, the closure's libraries (system files: their stat fingerprints identify them) are under
 * .kiln/lib; the rest is kiln's own (the shim, the runner: identified by content, so that the installed
 * copies match the build tree's). */
static bool is_library(const struct kiln_tar_entry *e)
{
	return strncmp(e->name, ".kiln/lib/", 10) == 0;
}

static int by_name(const void *a, const void *b)
{
	const struct kiln_tar_entry *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

/* The key of the runtime layer's inputs (see kiln_runtime_import), over its entries in name order. */
static int inputs_key(char out[65], const struct kiln_plan_layer *l, struct kiln_error **err)
{
	_cleanup_free_ const struct kiln_tar_entry **sorted = calloc(l->n ? l->n : 1, sizeof(*sorted));
	if (sorted == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	for (size_t i = 0; i < l->n; i++)
		sorted[i] = &l->entries[i];
	qsort(sorted, l->n, sizeof(*sorted), by_name);
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	kiln_buf_printf(&b, "%s %s %d\n", PREBUILT_FORMAT, KILN_VERSION, (int)l->compression);
	for (size_t i = 0; i < l->n; i++) {
		const struct kiln_tar_entry *e = sorted[i];
		kiln_buf_printf(&b, "%d %o %llu %s", (int)e->type, (unsigned)e->mode,
		                (unsigned long long)e->size, e->name);
		kiln_buf_put(&b, "", 1);
		if (is_library(e)) {
			kiln_buf_printf(&b, "%s %llu %llu %lld %lld\n", e->source,
			                (unsigned long long)e->fp.dev, (unsigned long long)e->fp.ino,
			                (long long)e->fp.mtime_ns, (long long)e->fp.ctime_ns);
		} else {
			char d[KILN_DIGEST_LEN];
			if (kiln_digest_file(d, e->source, err) < 0)
				return -1;
			kiln_buf_printf(&b, "%s\n", d);
		}
	}
	char d[KILN_DIGEST_LEN];
	kiln_digest_buffer(d, b.ptr, b.len);
	memcpy(out, kiln_digest_hex(d), 65);
	return 0;
}

/* Put the file PATH into S as the blob DIGEST: a hard link through the store's tmp/, else a copy; either
 * way its content is digested first, so a damaged file never becomes a blob. */
static int put_blob(struct kiln_store *s, const char *path, const char *digest)
{
	int fd = -1;
	_cleanup_free_ char *tmp = NULL;
	if (kiln_store_tmpfile(s, &fd, &tmp, NULL) < 0)
		return -1;
	close(fd);
	fd = -1;
	if (unlink(tmp) == 0 && link(path, tmp) == 0) {
		fd = open(tmp, O_RDONLY | O_CLOEXEC);
	} else {
		_cleanup_close_ int in = open(path, O_RDONLY | O_CLOEXEC);
		fd = in < 0 ? -1 : open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		char buf[1 << 16];
		ssize_t n = 0;
		while (fd >= 0 && (n = read(in, buf, sizeof(buf))) != 0)
			if ((n < 0 && errno != EINTR) || (n > 0 && kiln_write_all(fd, buf, (size_t)n) < 0))
				break;
		if (n != 0 && fd >= 0) {
			close(fd);
			fd = -1;
		}
	}
	char got[KILN_DIGEST_LEN];
	if (fd < 0 || kiln_digest_file(got, tmp, NULL) < 0 || strcmp(got, digest) != 0) {
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return -1;
	}
	return kiln_store_blob_commit(s, fd, tmp, digest, NULL);
}

json_t *kiln_runtime_import(const struct kiln_runtime *rt, const struct kiln_plan_layer *l,
                            struct kiln_store *s)
{
	const char *key = json_string_value(json_object_get(rt->record, "key"));
	const char *digest = json_string_value(json_object_get(rt->record, "digest"));
	const char *diff_id = json_string_value(json_object_get(rt->record, "diff_id"));
	const char *blob = json_string_value(json_object_get(rt->record, "blob"));
	json_t *size = json_object_get(rt->record, "size");
	char mine[65];
	if (!key || !kiln_digest_valid(digest ? digest : "") || !kiln_digest_valid(diff_id ? diff_id : "") ||
	    !blob || strchr(blob, '/') || !json_is_integer(size) || inputs_key(mine, l, NULL) < 0 ||
	    strcmp(mine, key) != 0)
		return NULL;
	_cleanup_free_ char *path = kiln_path_join(rt->prebuilt, blob);
	if (!kiln_store_blob_exists(s, digest) && (path == NULL || put_blob(s, path, digest) < 0))
		return NULL;
	return json_pack("{s:s,s:s,s:O}", "digest", digest, "diff_id", diff_id, "size", size);
}

/* Remove the blobs in DIR other than KEEP (the layers of earlier builds of kiln). */
static void remove_other_blobs(const char *dir, const char *keep)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, PREBUILT_BLOB, strlen(PREBUILT_BLOB)) != 0 ||
		    strcmp(de->d_name, keep) == 0)
			continue;
		_cleanup_free_ char *p = kiln_path_join(dir, de->d_name);
		if (p)
			unlink(p);
	}
}

int kiln_runtime_prebuild(const char *dir, struct kiln_error **err)
{
	struct kiln_runtime rt;
	struct kiln_plan_layer l = {0};
	if (kiln_runtime_locate(&rt, err) < 0)
		return -1;
	json_decref(rt.record); /* what ldd says now, never an earlier record */
	rt.record = NULL;
	_cleanup_free_ char *tmp = kiln_path_join(dir, ".runtime-XXXXXX");
	_cleanup_free_ char *blob = NULL, *path = NULL, *record = NULL, *text = NULL;
	struct kiln_layer_out lout = {0};
	struct kiln_layer_options lo = {.mtime = 0, .fd = -1, .compression = KILN_COMPRESS_GZIP};
	json_t *closure = json_array(), *rec = NULL;
	char key[65], shim[KILN_DIGEST_LEN];
	int rc = tmp && closure ? kiln_mkdir_p(dir, err) : kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (rc == 0)
		rc = kiln_runtime_layer(&l, &rt, NULL, err);
	if (rc == 0 && ((lo.fd = mkostemp(tmp, O_CLOEXEC)) < 0 || fchmod(lo.fd, 0644) < 0))
		rc = kiln_error_errno(err, errno, "cannot create a file in '%s'", dir);
	if (rc == 0)
		rc = kiln_layer_write(&lout, l.entries, l.n, &lo, err);
	if (rc == 0 && fsync(lo.fd) < 0)
		rc = kiln_error_errno(err, errno, "cannot write '%s'", tmp);
	if (rc == 0 && (asprintf(&blob, PREBUILT_BLOB "%s.tar.gz", kiln_digest_hex(lout.digest)) < 0 ||
	                (path = kiln_path_join(dir, blob)) == NULL))
		rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (rc == 0 && rename(tmp, path) < 0)
		rc = kiln_error_errno(err, errno, "cannot write '%s'", path);
	if (rc == 0)
		rc = inputs_key(key, &l, err);
	if (rc == 0)
		rc = kiln_digest_file(shim, rt.shim, err);
	for (size_t i = 0; rc == 0 && i < l.n; i++)
		if (is_library(&l.entries[i]))
			json_array_append_new(closure,
			                      json_pack("[s,s]", l.entries[i].name, l.entries[i].source));
	if (rc == 0) {
		rec = json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:O}", "format", PREBUILT_FORMAT, "version",
		                KILN_VERSION, "digest", lout.digest, "diff_id", lout.diff_id, "size",
		                (json_int_t)lout.size, "blob", blob, "key", key, "shim", shim, "closure",
		                closure);
		text = rec ? json_dumps(rec, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
		record = kiln_path_join(dir, PREBUILT_RECORD);
		rc = text && record ? kiln_write_file_atomic(record, text, strlen(text), err)
		                    : kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	if (rc == 0)
		remove_other_blobs(dir, blob);
	if (lo.fd >= 0) {
		close(lo.fd);
		unlink(tmp); /* gone already when renamed */
	}
	json_decref(rec);
	json_decref(closure);
	kiln_layer_out_release(&lout);
	layer_release(&l);
	kiln_runtime_release(&rt);
	return rc < 0 ? kiln_error_wrap(err, "cannot build the runtime layer in '%s'", dir) : 0;
}

json_t *kiln_runtime_entrypoint(void)
{
	return json_pack("[s,s,s,s]", KILN_RUNTIME_LOADER, "--library-path", KILN_RUNTIME_LIBDIR,
	                 KILN_RUNTIME_SHIM);
}
