/* SPDX-License-Identifier: Apache-2.0 */
/* prune.c: the store's garbage collection: remove what no tag reaches, stale run/ roots and tmp/ files. */
#include "pkg/prune.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "layers/extract.h"
#include "pkg/weights_registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MANIFEST_MAX (4 << 20)
#define CONFIG_MAX   (16 << 20)
#define DEPTH_MAX    4
#define RUN_PREFIX   32 /* hex digits of the manifest digest in a run/ directory's name */

struct prune {
	struct kiln_store *s;
	const struct kiln_prune_options *opt;
	struct kiln_prune_result *r;
	json_t *reachable; /* digest → true */
	json_t *run_gone;  /* run/ directory name → true: removed (or that would be) */
	json_t *removed;   /* digest → true: blobs and recipes removed (or that would be) */
	time_t now;
	int tmp_seq;
};

static char *home_path(struct kiln_store *s, const char *rel)
{
	return kiln_path_join(kiln_store_home(s), rel);
}

static bool is_index(const char *media_type)
{
	return media_type &&
	       (strcmp(media_type, "application/vnd.oci.image.index.v1+json") == 0 ||
	        strcmp(media_type, "application/vnd.docker.distribution.manifest.list.v2+json") == 0);
}

static void mark(json_t *set, const json_t *descriptor)
{
	const char *d = json_string_value(json_object_get(descriptor, "digest"));
	if (d && kiln_digest_valid(d))
		json_object_set_new(set, d, json_true());
}

/* Mark the manifest or index DESC names, and everything it reaches. */
static int walk(json_t *set, struct kiln_store *s, const json_t *desc, int depth, struct kiln_error **err)
{
	const char *digest = json_string_value(json_object_get(desc, "digest"));
	if (digest == NULL || !kiln_digest_valid(digest))
		return kiln_error_set(err, KILN_EINVAL, "the store index names an invalid digest '%s'",
		                      digest ? digest : "");
	if (depth > DEPTH_MAX)
		return kiln_error_set(err, KILN_EINVAL, "image index %s nests too deeply", digest);
	mark(set, desc);
	json_t *doc = NULL;
	if (kiln_store_json_read(s, digest, MANIFEST_MAX, &doc, err) < 0)
		return -1;
	const char *mt = json_string_value(json_object_get(doc, "mediaType"));
	if (mt == NULL)
		mt = json_string_value(json_object_get(desc, "mediaType"));
	int rc = 0;
	json_t *list = json_object_get(doc, "manifests");
	size_t i;
	json_t *v;
	if (is_index(mt) || (json_is_array(list) && !json_object_get(doc, "layers"))) {
		/* an index: its manifests are reached, but only those the store holds are walked further */
		json_array_foreach(list, i, v)
		{
			const char *d = json_string_value(json_object_get(v, "digest"));
			_cleanup_free_ char *held =
			    d && kiln_digest_valid(d) ? kiln_store_blob_path(s, d) : NULL;
			if (held == NULL) {
				mark(set, v);
				continue;
			}
			if (walk(set, s, v, depth + 1, err) < 0) {
				rc = -1;
				break;
			}
		}
	} else {
		json_t *cd = json_object_get(doc, "config");
		mark(set, cd);
		json_array_foreach(json_object_get(doc, "layers"), i, v) mark(set, v);
		/* serve.weights: registry: the weight blobs its config lists are the image's too */
		const char *cdigest = json_string_value(json_object_get(cd, "digest"));
		json_t *config = NULL;
		struct kiln_error *e = NULL;
		if (cdigest && kiln_store_blob_exists(s, cdigest) &&
		    kiln_store_json_read(s, cdigest, CONFIG_MAX, &config, &e) == 0) {
			/* a label that is no list marks nothing: such an image cannot find its weights */
			json_t *remote = NULL;
			kiln_weights_registry_of(&remote, config, NULL);
			json_array_foreach(remote, i, v) mark(set, v);
			json_decref(remote);
			json_decref(config);
		}
		kiln_error_free(e);
	}
	json_decref(doc);
	return rc;
}

int kiln_prune_reachable(json_t **out, struct kiln_store *s, struct kiln_error **err)
{
	_cleanup_free_ char *path = home_path(s, "index.json");
	json_t *set = json_object();
	if (path == NULL || set == NULL) {
		json_decref(set);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	if (access(path, F_OK) < 0) {
		*out = set;
		return 0;
	}
	json_error_t je;
	json_t *index = json_load_file(path, 0, &je);
	json_t *list = json_object_get(index, "manifests");
	if (!json_is_array(list)) {
		json_decref(index);
		json_decref(set);
		return kiln_error_set(err, KILN_EIO, "the store index '%s' is not valid: %s", path,
		                      index ? "no 'manifests' array" : je.text);
	}
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v)
	{
		if (walk(set, s, v, 0, err) < 0) {
			const char *ref = json_string_value(json_object_get(
			    json_object_get(v, "annotations"), "org.opencontainers.image.ref.name"));
			kiln_error_wrap(err, "cannot tell what '%s' reaches", ref ? ref : "(untagged)");
			json_decref(index);
			json_decref(set);
			return -1;
		}
	}
	json_decref(index);
	*out = set;
	return 0;
}

static bool pid_alive(long pid)
{
	return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno != ESRCH);
}

static bool is_hex(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

/* Whether the prune was asked to stop: then KILN_EINTR in *ERR. */
static bool cancelled(const struct prune *p, struct kiln_error **err)
{
	if (!p->opt->cancel || !*p->opt->cancel)
		return false;
	kiln_error_set(err, KILN_EINTR, "interrupted");
	return true;
}

/* Unlink NAME in D unless dry-running; false when it could not be removed (it is then not counted). */
static bool unlink_entry(struct prune *p, DIR *d, const char *name, int flags)
{
	return p->opt->dry_run || unlinkat(dirfd(d), name, flags) == 0 || errno == ENOENT;
}

/* blobs/sha256/<hex> and recipes/sha256/<hex>.json that no tag reaches. */
static int prune_blobs(struct prune *p, const char *rel, const char *suffix, size_t *count, uint64_t *bytes,
                       struct kiln_error **err)
{
	_cleanup_free_ char *dir = home_path(p->s, rel);
	_cleanup_closedir_ DIR *d = dir ? opendir(dir) : NULL;
	if (d == NULL)
		return errno == ENOENT ? 0 : kiln_error_errno(err, errno, "cannot read '%s'", dir);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (cancelled(p, err))
			return -1;
		size_t n = strlen(de->d_name);
		if (n != 64 + strlen(suffix) || !is_hex(de->d_name, 64) ||
		    strcmp(de->d_name + 64, suffix) != 0)
			continue;
		char digest[KILN_DIGEST_LEN];
		snprintf(digest, sizeof(digest), "sha256:%.64s", de->d_name);
		if (json_object_get(p->reachable, digest))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (!p->opt->all && p->now - st.st_mtime < KILN_PRUNE_GRACE_SECONDS) {
			p->r->kept_recent++;
			continue;
		}
		if (!unlink_entry(p, d, de->d_name, 0))
			return kiln_error_errno(err, errno, "cannot remove '%s/%s'", dir, de->d_name);
		json_object_set_new(p->removed, digest, json_true());
		(*count)++;
		*bytes += (uint64_t)st.st_size;
	}
	return 0;
}

/* Layer-cache entries ({"digest": ...}) that name a blob removed now: they could only miss. */
static void prune_cache(struct prune *p)
{
	_cleanup_free_ char *dir = home_path(p->s, "cache/layers");
	_cleanup_closedir_ DIR *d = dir ? opendir(dir) : NULL;
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *path = kiln_path_join(dir, de->d_name);
		json_t *c = path ? json_load_file(path, 0, NULL) : NULL;
		const char *digest = json_string_value(json_object_get(c, "digest"));
		bool stale = digest && json_object_get(p->removed, digest) != NULL;
		json_decref(c);
		struct stat st;
		if (!stale || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (unlink_entry(p, d, de->d_name, 0)) {
			p->r->cache++;
			p->r->other_bytes += (uint64_t)st.st_size;
		}
	}
}

static uint64_t tree_bytes;
static int add_size(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)path, (void)ftw;
	if (type == FTW_F && S_ISREG(st->st_mode))
		tree_bytes += (uint64_t)st->st_size;
	return 0;
}

/* The bytes of the regular files under PATH (not thread-safe). */
static uint64_t tree_size(const char *path)
{
	tree_bytes = 0;
	nftw(path, add_size, 16, FTW_PHYS);
	return tree_bytes;
}

/* Rename PATH into tmp/ first, so no half-removed directory is ever taken for a complete one, then
 * remove it. A prune killed meanwhile leaves tmp/<pid>-prune-* for the next prune. */
static int remove_dir(struct prune *p, const char *path, struct kiln_error **err)
{
	_cleanup_free_ char *aside = NULL;
	if (asprintf(&aside, "%s/tmp/%d-prune-%d", kiln_store_home(p->s), (int)getpid(), p->tmp_seq++) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (rename(path, aside) < 0)
		return errno == ENOENT ? 0 : kiln_error_errno(err, errno, "cannot move '%s' aside", path);
	return kiln_extract_remove(aside, err);
}

/* Parse "<32 hex>-native" / "<32 hex>-full" at NAME; the length of that part, or 0. */
static size_t run_name(const char *name)
{
	if (strlen(name) < RUN_PREFIX + 1 || !is_hex(name, RUN_PREFIX) || name[RUN_PREFIX] != '-')
		return 0;
	const char *k = name + RUN_PREFIX + 1;
	if (strncmp(k, "native", 6) == 0)
		return RUN_PREFIX + 1 + 6;
	if (strncmp(k, "full", 4) == 0)
		return RUN_PREFIX + 1 + 4;
	return 0;
}

/* true when a tag reaches a manifest whose digest begins with the run/ directory NAME's prefix. */
static bool run_reachable(struct prune *p, const char *name)
{
	const char *key;
	json_t *v;
	json_object_foreach(p->reachable, key, v)
	{
		if (strncmp(key, "sha256:", 7) == 0 && strncmp(key + 7, name, RUN_PREFIX) == 0)
			return true;
	}
	return false;
}

/* Is a live `kiln predict` using the run/ directory NAME (LEN chars)? Its log "NAME.<pid>.log" says so. */
static bool run_busy(DIR *d, const char *name, size_t len)
{
	rewinddir(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, name, len) != 0 || de->d_name[len] != '.')
			continue;
		char *end;
		long pid = strtol(de->d_name + len + 1, &end, 10);
		if (strcmp(end, ".log") == 0 && pid_alive(pid))
			return true;
	}
	return false;
}

/* The names in the directory D, read whole first: removing while reading it may skip entries. */
static json_t *entry_names(DIR *d)
{
	json_t *names = json_array();
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		json_array_append_new(names, json_string(de->d_name));
	return names;
}

/* Remove the directory NAME of run/ (DIR), or only count it with --dry-run, as a run/ directory. */
static int remove_run_dir(struct prune *p, const char *dir, const char *name, struct kiln_error **err)
{
	_cleanup_free_ char *path = kiln_path_join(dir, name);
	if (path == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	uint64_t bytes = tree_size(path);
	if (!p->opt->dry_run && remove_dir(p, path, err) < 0)
		return -1;
	p->r->run++;
	p->r->run_bytes += bytes;
	return 0;
}

/* run/: the unpacked roots of images no tag reaches (all of them with --all), and their logs. */
static int prune_run(struct prune *p, struct kiln_error **err)
{
	_cleanup_free_ char *dir = home_path(p->s, "run");
	_cleanup_closedir_ DIR *d = dir ? opendir(dir) : NULL;
	if (d == NULL)
		return errno == ENOENT ? 0 : kiln_error_errno(err, errno, "cannot read '%s'", dir);
	json_t *names = entry_names(d);
	int rc = 0;
	size_t i;
	json_t *v;
	json_array_foreach(names, i, v)
	{
		const char *name = json_string_value(v);
		size_t len = run_name(name);
		struct stat st;
		if (len == 0 || name[len] != '\0' || fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue;
		if (!p->opt->all && run_reachable(p, name))
			continue;
		if (run_busy(d, name, len)) {
			p->r->kept_busy++;
			continue;
		}
		if (cancelled(p, err) || (rc = remove_run_dir(p, dir, name, err)) < 0) {
			rc = -1;
			break;
		}
		json_object_set_new(p->run_gone, name, json_true());
	}
	/* then the logs NAME.<pid>.log of processes gone: they go with their directory */
	json_array_foreach(names, i, v)
	{
		const char *name = json_string_value(v);
		size_t len = rc == 0 ? run_name(name) : 0;
		struct stat st;
		if (len == 0 || name[len] != '.' || fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		char *end;
		long pid = strtol(name + len + 1, &end, 10);
		if (strcmp(end, ".log") != 0 || pid_alive(pid))
			continue;
		_cleanup_free_ char *root = strndup(name, len);
		struct stat rs;
		bool gone =
		    root && (json_object_get(p->run_gone, root) || fstatat(dirfd(d), root, &rs, 0) < 0);
		if (gone && unlink_entry(p, d, name, 0)) {
			p->r->logs++;
			p->r->other_bytes += (uint64_t)st.st_size;
		}
	}
	json_decref(names);
	return rc;
}

/* run/layers/: the weight layers kiln predict unpacked once to link into its roots (the roots keep their
 * links when the cache goes); those no tag reaches go (all with --all), with the leftovers of an unpack
 * that died. */
static int prune_run_layers(struct prune *p, struct kiln_error **err)
{
	_cleanup_free_ char *dir = home_path(p->s, "run/layers");
	_cleanup_closedir_ DIR *d = dir ? opendir(dir) : NULL;
	if (d == NULL)
		return errno == ENOENT ? 0 : kiln_error_errno(err, errno, "cannot read '%s'", dir);
	json_t *names = entry_names(d);
	int rc = 0;
	size_t i;
	json_t *v;
	json_array_foreach(names, i, v)
	{
		const char *name = json_string_value(v);
		char digest[80];
		bool cache = strlen(name) == 64 && is_hex(name, 64);
		bool leftover = name[0] == '.' && strlen(name) > 66 && is_hex(name + 1, 64) &&
		                name[65] == '.' && !pid_alive(strtol(name + 66, NULL, 10));
		snprintf(digest, sizeof(digest), "sha256:%s", name);
		if (!leftover && (!cache || (!p->opt->all && json_object_get(p->reachable, digest))))
			continue;
		if ((rc = remove_run_dir(p, dir, name, err)) < 0)
			break;
	}
	json_decref(names);
	if (rc == 0 && !p->opt->dry_run)
		rmdir(dir); /* when it is empty now */
	return rc;
}

/* --all: roots/ (the unpacked roots the build steps run in, and their views) and pip's cache/. */
static int prune_roots(struct prune *p, struct kiln_error **err)
{
	_cleanup_free_ char *dir = home_path(p->s, "roots"), *pip = home_path(p->s, "pip-cache");
	if (dir == NULL || pip == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		_cleanup_free_ char *path = kiln_path_join(dir, de->d_name);
		if (path == NULL)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		uint64_t bytes = tree_size(path);
		if (!p->opt->dry_run && remove_dir(p, path, err) < 0)
			return -1;
		p->r->roots++;
		p->r->roots_bytes += bytes;
	}
	struct stat st;
	if (stat(pip, &st) == 0) {
		uint64_t bytes = tree_size(pip);
		if (!p->opt->dry_run && remove_dir(p, pip, err) < 0)
			return -1;
		p->r->roots++;
		p->r->roots_bytes += bytes;
	}
	return 0;
}

/* tmp/: files untouched for an hour whose process is gone, and directories a killed prune left. */
static void prune_tmp(struct prune *p)
{
	_cleanup_free_ char *dir = home_path(p->s, "tmp");
	_cleanup_closedir_ DIR *d = dir ? opendir(dir) : NULL;
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char *end = NULL;
		long pid = strtol(de->d_name, &end, 10);
		if (end != de->d_name && *end == '-' && pid_alive(pid))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		bool ours = end != de->d_name && strncmp(end, "-prune-", 7) == 0;
		if (!ours && p->now - st.st_mtime < KILN_PRUNE_TMP_AGE_SECONDS)
			continue;
		if (S_ISDIR(st.st_mode)) {
			_cleanup_free_ char *path = kiln_path_join(dir, de->d_name);
			uint64_t bytes = path ? tree_size(path) : 0;
			if (path && (p->opt->dry_run || kiln_extract_remove(path, NULL) == 0)) {
				p->r->tmp++;
				p->r->other_bytes += bytes;
			}
		} else if (unlink_entry(p, d, de->d_name, 0)) {
			p->r->tmp++;
			p->r->other_bytes += (uint64_t)st.st_size;
		}
	}
}

int kiln_prune(struct kiln_prune_result *out, struct kiln_store *s, const struct kiln_prune_options *opt,
               struct kiln_error **err)
{
	memset(out, 0, sizeof(*out));
	_cleanup_close_ int lock = kiln_store_lock_index(s, err); /* nothing is tagged meanwhile */
	if (lock < 0)
		return -1;
	struct prune p = {.s = s,
	                  .opt = opt,
	                  .r = out,
	                  .removed = json_object(),
	                  .run_gone = json_object(),
	                  .now = time(NULL)};
	if (p.removed == NULL || p.run_gone == NULL) {
		json_decref(p.removed);
		json_decref(p.run_gone);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	int rc = kiln_prune_reachable(&p.reachable, s, err);
	if (rc == 0)
		prune_tmp(&p); /* first: a directory a killed prune left is not counted twice */
	if (rc == 0)
		rc = prune_blobs(&p, "blobs/sha256", "", &out->blobs, &out->blob_bytes, err);
	if (rc == 0)
		rc = prune_blobs(&p, "recipes/sha256", ".json", &out->recipes, &out->recipe_bytes, err);
	if (rc == 0)
		rc = prune_run(&p, err);
	if (rc == 0)
		rc = cancelled(&p, err) ? -1 : prune_run_layers(&p, err);
	if (rc == 0 && opt->all)
		rc = cancelled(&p, err) ? -1 : prune_roots(&p, err);
	if (rc == 0)
		prune_cache(&p);
	json_decref(p.reachable);
	json_decref(p.removed);
	json_decref(p.run_gone);
	if (rc < 0 && err && *err && (*err)->code == KILN_EINTR)
		return -1;
	return rc < 0 ? kiln_error_wrap(err, "cannot prune the store '%s'", kiln_store_home(s)) : 0;
}
