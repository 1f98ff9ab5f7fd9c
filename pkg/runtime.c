/* SPDX-License-Identifier: Apache-2.0 */
/* runtime.c: locating the shim and the runner, and making the runtime layer's entries. */
#include "pkg/runtime.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "layers/digest.h"

#include <dirent.h>
#include <errno.h>
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
	return 0;
}

void kiln_runtime_release(struct kiln_runtime *rt)
{
	free(rt->shim);
	free(rt->python_dir);
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

/* The shim's libraries from `ldd`, as [[name in the image, path here], ...]: each "soname => /path"
 * line, and the loader. Cached in the store by the shim's fingerprint, so a rebuild runs no ldd. */
static json_t *closure(const char *shim, struct kiln_store *s, struct kiln_error **err)
{
	char key[65];
	const char *paths[] = {shim, NULL};
	kiln_cache_key(key, "ldd-v1", paths);
	json_t *list = s ? kiln_store_cache_get(s, key) : NULL;
	if (json_is_array(list) && json_array_size(list) > 0)
		return list;
	json_decref(list);
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

static int add_closure(struct kiln_plan_layer *l, size_t *cap, const char *shim, struct kiln_store *s,
                       struct kiln_error **err)
{
	json_t *list = closure(shim, s, err);
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
		rc = add_closure(out, &cap, rt->shim, s, err);
	if (rc == 0)
		rc = add_tree(out, &cap, rt->python_dir, "", err);
	if (rc < 0) {
		for (size_t i = 0; i < out->n; i++)
			kiln_tar_entry_release(&out->entries[i]);
		free(out->entries);
		free(out->title);
		memset(out, 0, sizeof(*out));
		return kiln_error_wrap(err, "cannot make the runtime layer");
	}
	return 0;
}

json_t *kiln_runtime_entrypoint(void)
{
	return json_pack("[s,s,s,s]", KILN_RUNTIME_LOADER, "--library-path", KILN_RUNTIME_LIBDIR,
	                 KILN_RUNTIME_SHIM);
}
