/* SPDX-License-Identifier: Apache-2.0 */
/* base.c: the base a build starts from: chosen (Cog's Python default), read from an OCI layout or a
 * registry, and its Python checked against python_version. */
#include "pkg/base.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "layers/archive.h"
#include "pkg/pull.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define JSON_MAX (16 << 20)

/* Read a blob of the layout DIR, checking its digest. */
static json_t *read_layout_json(const char *dir, const char *digest, struct kiln_error **err)
{
	if (!kiln_digest_valid(digest)) {
		kiln_error_set(err, KILN_EINVAL, "bad digest '%s'", digest);
		return NULL;
	}
	_cleanup_free_ char *path = NULL;
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	if (asprintf(&path, "%s/blobs/sha256/%s", dir, kiln_digest_hex(digest)) < 0 ||
	    kiln_read_file(&data, &len, path, JSON_MAX, err) < 0)
		return NULL;
	char got[KILN_DIGEST_LEN];
	kiln_digest_buffer(got, data, len);
	if (strcmp(got, digest) != 0) {
		kiln_error_set(err, KILN_EIO, "'%s' does not match its digest", path);
		return NULL;
	}
	json_error_t je;
	json_t *j = json_loadb(data, len, 0, &je);
	if (j == NULL)
		kiln_error_set(err, KILN_EINVAL, "'%s' is not valid JSON: %s", path, je.text);
	return j;
}

/* Pick the manifest descriptor tagged TAG (or the only one when TAG is NULL) from an index. */
static json_t *pick(json_t *index, const char *tag, const char *what, struct kiln_error **err)
{
	json_t *list = json_object_get(index, "manifests");
	if (tag == NULL && json_array_size(list) == 1)
		return json_array_get(list, 0);
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *d = json_array_get(list, i);
		json_t *ann = json_object_get(d, "annotations");
		const char *name =
		    json_string_value(json_object_get(ann, "org.opencontainers.image.ref.name"));
		json_t *plat = json_object_get(d, "platform");
		if (tag && name && strcmp(name, tag) == 0)
			return d;
		if (tag == NULL && plat &&
		    strcmp(json_string_value(json_object_get(plat, "os")) ?: "", "linux") == 0 &&
		    strcmp(json_string_value(json_object_get(plat, "architecture")) ?: "", "amd64") == 0)
			return d;
	}
	kiln_error_set(err, KILN_ENOTFOUND,
	               tag ? "%s has no image tagged '%s'" : "%s has no linux/amd64 image%s", what,
	               tag ? tag : "");
	return NULL;
}

/* Put the layout's blob DIGEST into the store: a hard link when possible, else a verified copy. */
static int import_blob(struct kiln_store *s, const char *dir, const char *digest, struct kiln_error **err)
{
	/* A recipe is not enough: its source files may have changed since; the layout has the bytes. */
	_cleanup_free_ char *have = kiln_store_blob_path(s, digest);
	if (have)
		return 0;
	_cleanup_free_ char *src = NULL;
	if (asprintf(&src, "%s/blobs/sha256/%s", dir, kiln_digest_hex(digest)) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	char got[KILN_DIGEST_LEN];
	if (kiln_digest_file(got, src, err) < 0)
		return -1;
	if (strcmp(got, digest) != 0)
		return kiln_error_set(err, KILN_EIO, "'%s' does not match its digest", src);
	int fd;
	_cleanup_free_ char *tmp = NULL;
	if (kiln_store_tmpfile(s, &fd, &tmp, err) < 0)
		return -1;
	unlink(tmp);
	close(fd);
	if (link(src, tmp) == 0) {
		_cleanup_free_ char *dst = NULL;
		if (asprintf(&dst, "%s/blobs/sha256/%s", kiln_store_home(s), kiln_digest_hex(digest)) < 0 ||
		    rename(tmp, dst) < 0) {
			unlink(tmp);
			return kiln_error_errno(err, errno, "cannot store blob %s", digest);
		}
		return 0;
	}
	_cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (in < 0 || fd < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return kiln_error_errno(err, e, "cannot copy '%s'", src);
	}
	_cleanup_free_ char *buf = malloc(1 << 20);
	ssize_t n;
	while (buf && (n = read(in, buf, 1 << 20)) > 0)
		if (kiln_write_all(fd, buf, (size_t)n) < 0) {
			n = -1;
			break;
		}
	if (buf == NULL || n < 0) {
		int e = buf ? errno : ENOMEM;
		close(fd);
		unlink(tmp);
		return kiln_error_errno(err, e, "cannot copy '%s'", src);
	}
	return kiln_store_blob_commit(s, fd, tmp, digest, err);
}

/* Docker's layer media types, as OCI's (the bytes are the same format). */
static void oci_media_types(json_t *layers)
{
	static const char *const map[][2] = {
	    {"application/vnd.docker.image.rootfs.diff.tar.gzip", KILN_MEDIA_LAYER_GZIP},
	    {"application/vnd.docker.image.rootfs.diff.tar", KILN_MEDIA_LAYER},
	};
	size_t i;
	json_t *l;
	json_array_foreach(layers, i, l)
	{
		const char *mt = json_string_value(json_object_get(l, "mediaType"));
		for (size_t k = 0; mt && k < sizeof(map) / sizeof(map[0]); k++)
			if (strcmp(mt, map[k][0]) == 0)
				json_object_set_new(l, "mediaType", json_string(map[k][1]));
	}
}

static int load_layout(struct kiln_base *out, const char *spec, struct kiln_store *s, struct kiln_error **err)
{
	_cleanup_free_ char *dir = strdup(spec);
	if (dir == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	char *tag = NULL;
	char *colon = strrchr(dir, ':');
	if (colon && !strchr(colon, '/')) {
		*colon = '\0';
		tag = colon + 1;
	}
	_cleanup_free_ char *index_path = kiln_path_join(dir, "index.json");
	json_error_t je;
	json_t *index = json_load_file(index_path, 0, &je);
	if (index == NULL)
		return kiln_error_set(err, access(index_path, F_OK) ? KILN_ENOTFOUND : KILN_EINVAL,
		                      "cannot read OCI layout '%s': %s", dir, je.text);
	int rc = -1;
	json_t *manifest = NULL, *sub = NULL;
	json_t *d = pick(index, tag, dir, err);
	const char *mt = json_string_value(json_object_get(d, "mediaType"));
	const char *digest = json_string_value(json_object_get(d, "digest"));
	if (d == NULL)
		goto cleanup;
	manifest = read_layout_json(dir, digest ?: "", err);
	out->digest = digest ? strdup(digest) : NULL;
	if (manifest && mt &&
	    (strcmp(mt, KILN_MEDIA_INDEX) == 0 || strcmp(mt, KILN_MEDIA_DOCKER_LIST) == 0)) {
		json_t *pd = pick(manifest, NULL, "the base index", err);
		const char *pdigest = json_string_value(json_object_get(pd, "digest"));
		sub = pd ? read_layout_json(dir, pdigest ?: "", err) : NULL;
		free(out->digest);
		out->digest = pdigest ? strdup(pdigest) : NULL;
		json_decref(manifest);
		manifest = sub;
		sub = NULL;
	}
	if (manifest == NULL)
		goto cleanup;
	const char *cdigest =
	    json_string_value(json_object_get(json_object_get(manifest, "config"), "digest"));
	out->config = read_layout_json(dir, cdigest ?: "", err);
	if (out->config == NULL)
		goto cleanup;
	out->layers = json_deep_copy(json_object_get(manifest, "layers"));
	oci_media_types(out->layers);
	if (!json_is_array(out->layers)) {
		kiln_error_set(err, KILN_EINVAL, "the base manifest has no layers");
		goto cleanup;
	}
	for (size_t i = 0; i < json_array_size(out->layers); i++) {
		const char *ld = json_string_value(json_object_get(json_array_get(out->layers, i), "digest"));
		if (ld == NULL || !kiln_digest_valid(ld)) {
			kiln_error_set(err, KILN_EINVAL, "the base manifest's layer %zu has no valid digest",
			               i);
			goto cleanup;
		}
		if (import_blob(s, dir, ld, err) < 0)
			goto cleanup;
	}
	rc = 0;
cleanup:
	json_decref(manifest);
	json_decref(index);
	return rc;
}

int kiln_python_version_check(int *minor, bool *deprecated, const char *version, struct kiln_error **err)
{
	*deprecated = false;
	const char *v = version;
	while (*v == ' ' || *v == '\t')
		v++;
	char *end = NULL;
	long maj = -1, min = -1;
	if (*v >= '0' && *v <= '9')
		maj = strtol(v, &end, 10);
	if (end && *end == '.' && end[1] >= '0' && end[1] <= '9')
		min = strtol(end + 1, &end, 10);
	if (min < 0 || (end && *end != '\0' && *end != '.' && *end != ' '))
		return kiln_error_set(err, KILN_EINVAL,
		                      "'%s' must include major and minor version (e.g. '%s')", version,
		                      KILN_PYTHON_DEFAULT);
	if (maj < 3 || (maj == 3 && min < KILN_PYTHON_OLDEST_MINOR))
		return kiln_error_set(
		    err, KILN_EINVAL,
		    "'%s': minimum supported Python version is 3.%d (Cog supports 3.%d to 3.%d)", version,
		    KILN_PYTHON_OLDEST_MINOR, KILN_PYTHON_MIN_MINOR, KILN_PYTHON_MAX_MINOR);
	if (maj > 3 || min > KILN_PYTHON_MAX_MINOR)
		return kiln_error_set(err, KILN_EINVAL,
		                      "'%s': Python %ld.%ld is not supported yet (Cog supports 3.%d to 3.%d)",
		                      version, maj, min, KILN_PYTHON_MIN_MINOR, KILN_PYTHON_MAX_MINOR);
	*deprecated = min < KILN_PYTHON_MIN_MINOR;
	*minor = (int)min;
	return 0;
}

bool kiln_manifest_is_python(const struct kiln_manifest *m)
{
	return m->predict && strncmp(m->predict, "native:", 7) != 0;
}

/* TEMPLATE with each "{python_version}" replaced by VERSION. */
static char *expand_version(const char *template, const char *version)
{
	static const char key[] = "{python_version}";
	struct kiln_buf b = KILN_BUF_INIT;
	const char *p = template, *hit;
	while ((hit = strstr(p, key)) != NULL) {
		kiln_buf_printf(&b, "%.*s%s", (int)(hit - p), p, version);
		p = hit + strlen(key);
	}
	kiln_buf_puts(&b, p);
	return b.ptr ? b.ptr : strdup("");
}

int kiln_base_choose(char **name, char **reason, const struct kiln_manifest *m, const char *env_default,
                     struct kiln_error **err)
{
	const char *why;
	*name = NULL;
	if (m->base) {
		*name = strdup(m->base);
		why = "set by base:";
	} else if (!kiln_manifest_is_python(m)) {
		*name = strdup("scratch");
		why = m->predict ? "a native predictor" : "no Python predictor";
	} else {
		/* as written, as Cog does: "3.11.4" gives python:3.11.4-slim */
		const char *v = m->python_version ? m->python_version : KILN_PYTHON_DEFAULT;
		if (env_default && *env_default) {
			*name = expand_version(env_default, v);
			why = "a Python predictor without base:, KILN_PYTHON_BASE";
		} else {
			*name = expand_version("python:{python_version}-slim", v);
			why = "a Python predictor without base:, Cog's default";
		}
	}
	*reason = strdup(why);
	if (*name == NULL || *reason == NULL) {
		free(*name);
		free(*reason);
		*name = *reason = NULL;
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	return 0;
}

/* What the layer listings show: the versions of usr/local/bin/python3.X, then of usr/bin/python3.X. */
struct python_scan {
	char local[8][8], system[8][8];
	size_t nlocal, nsystem;
	bool bare; /* a python3 without version */
};

static void scan_entry(void *ctx, const char *name, char type, uint64_t size)
{
	(void)size;
	struct python_scan *ps = ctx;
	if (type == 'd')
		return;
	while (*name == '.' && name[1] == '/')
		name += 2;
	while (*name == '/')
		name++;
	const char *file;
	bool local = strncmp(name, "usr/local/bin/", 14) == 0;
	if (local)
		file = name + 14;
	else if (strncmp(name, "usr/bin/", 8) == 0)
		file = name + 8;
	else
		return;
	if (strcmp(file, "python3") == 0) {
		ps->bare = true;
		return;
	}
	if (strncmp(file, "python3.", 8) != 0 || file[8] == '\0' || strlen(file) > 10 ||
	    strspn(file + 8, "0123456789") != strlen(file + 8))
		return;
	char(*list)[8] = local ? ps->local : ps->system;
	size_t *n = local ? &ps->nlocal : &ps->nsystem;
	for (size_t i = 0; i < *n; i++)
		if (strcmp(list[i], file + 6) == 0)
			return;
	if (*n < 8)
		snprintf(list[(*n)++], 8, "%s", file + 6);
}

/* The major.minor of a PYTHON_VERSION value ("3.11.9" → "3.11"), or NULL. */
static char *major_minor(const char *v)
{
	int minor;
	bool old;
	struct kiln_error *e = NULL;
	if (kiln_python_version_check(&minor, &old, v, &e) < 0) {
		kiln_error_free(e);
		return NULL;
	}
	char *out = NULL;
	return asprintf(&out, "3.%d", minor) < 0 ? NULL : out;
}

/*
 * The base's Python into b->python (NULL: none): its config's PYTHON_VERSION (python:*-slim set it), else
 * what its layers hold (listed from the store, a registry base's fetched first unless LOCAL_ONLY), cached
 * in the store on the base's digest. *versions: every version seen ("3.11, 3.9"), for messages.
 */
static int find_python(struct kiln_base *b, char **versions, struct kiln_store *s, bool local_only,
                       const struct kiln_registry_options *ropt, struct kiln_error **err)
{
	*versions = NULL;
	json_t *env = json_object_get(json_object_get(b->config, "config"), "Env");
	size_t i;
	json_t *e;
	json_array_foreach(env, i, e)
	{
		const char *kv = json_string_value(e);
		if (kv && strncmp(kv, "PYTHON_VERSION=", 15) == 0 && (b->python = major_minor(kv + 15)))
			return (*versions = strdup(b->python))
			           ? 0
			           : kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	_cleanup_free_ char *keytext = NULL;
	char key[KILN_DIGEST_LEN];
	if (asprintf(&keytext, "kiln base python 1 %s", b->digest ? b->digest : "") < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	kiln_digest_buffer(key, keytext, strlen(keytext));
	json_t *cached = b->digest ? kiln_store_cache_get(s, kiln_digest_hex(key)) : NULL;
	if (json_is_string(json_object_get(cached, "versions"))) {
		const char *py = json_string_value(json_object_get(cached, "python"));
		b->python = py ? strdup(py) : NULL;
		*versions = strdup(json_string_value(json_object_get(cached, "versions")));
		json_decref(cached);
		return 0;
	}
	json_decref(cached);
	struct python_scan ps = {0};
	bool complete = true;
	for (i = 0; i < json_array_size(b->layers); i++) {
		const char *ld = json_string_value(json_object_get(json_array_get(b->layers, i), "digest"));
		_cleanup_free_ char *path = ld ? kiln_store_blob_path(s, ld) : NULL;
		if (path == NULL && ld && !local_only) {
			uint64_t size = (uint64_t)json_integer_value(
			    json_object_get(json_array_get(b->layers, i), "size"));
			if (kiln_fetch_blob(s, ld, size, ropt, NULL, err) < 0)
				return kiln_error_wrap(
				    err, "cannot fetch the base's layer %s to look for Python", ld);
			path = kiln_store_blob_path(s, ld);
		}
		if (path == NULL) {
			complete = false;
			continue;
		}
		if (kiln_archive_list(path, scan_entry, &ps, err) < 0)
			return kiln_error_wrap(err, "cannot list the base's layer %s", ld);
	}
	struct kiln_buf all = KILN_BUF_INIT;
	for (i = 0; i < ps.nlocal + ps.nsystem; i++)
		kiln_buf_printf(&all, "%s%s", i ? ", " : "",
		                i < ps.nlocal ? ps.local[i] : ps.system[i - ps.nlocal]);
	if (ps.nlocal + ps.nsystem == 0 && ps.bare)
		kiln_buf_puts(&all, "python3");
	*versions = all.ptr ? all.ptr : strdup("");
	/* usr/local first (python:*-slim's own build), else the newest of usr/bin */
	const char *best = ps.nlocal ? ps.local[0] : NULL;
	for (i = 0; ps.nlocal == 0 && i < ps.nsystem; i++)
		if (best == NULL || atoi(ps.system[i] + 2) > atoi(best + 2))
			best = ps.system[i];
	b->python = best ? strdup(best) : ps.bare ? strdup("3") : NULL;
	if (complete && b->digest) {
		json_t *v = json_pack("{s:s,s:s?}", "versions", *versions, "python", b->python);
		struct kiln_error *ce = NULL;
		kiln_store_cache_put(s, kiln_digest_hex(key), v, &ce); /* only a cache */
		kiln_error_free(ce);
		json_decref(v);
	}
	return 0;
}

/* Whether the base's layers show Python VERSION ("3.11") among VERSIONS ("3.11, 3.9"). */
static bool has_version(const char *versions, const char *version)
{
	size_t n = strlen(version);
	for (const char *p = versions; (p = strstr(p, version)) != NULL; p += n)
		if ((p == versions || p[-1] == ' ') && (p[n] == '\0' || p[n] == ','))
			return true;
	return false;
}

static int add_warning(struct kiln_base *b, struct kiln_error **err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int add_warning(struct kiln_base *b, struct kiln_error **err, const char *fmt, ...)
{
	if (b->nwarnings == sizeof(b->warnings) / sizeof(b->warnings[0]))
		return 0;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&b->warnings[b->nwarnings], fmt, ap);
	va_end(ap);
	if (n < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	b->nwarnings++;
	return 0;
}

static int check_version(const struct kiln_base *out, const struct kiln_manifest *m, const char *versions,
                         const char *who, struct kiln_error **err);

/* Check a Python predictor's python_version and base. */
static int check_python(struct kiln_base *out, const struct kiln_manifest *m, struct kiln_store *s,
                        const struct kiln_registry_options *ropt, struct kiln_error **err)
{
	bool explicit_base = m->base != NULL,
	     allow = getenv("KILN_ALLOW_NO_PYTHON") && strcmp(getenv("KILN_ALLOW_NO_PYTHON"), "1") == 0;
	const char *key = explicit_base ? "base: scratch" : "KILN_PYTHON_BASE=scratch";
	if (strcmp(out->name, "scratch") == 0)
		return add_warning(out, err,
		                   "%s: the image has no Python: it runs only with `kiln predict --runtime "
		                   "native` (this machine's Python); use a base with Python %s",
		                   key, m->python_version ? m->python_version : KILN_PYTHON_DEFAULT);
	_cleanup_free_ char *versions = NULL;
	if (find_python(out, &versions, s, allow, ropt, err) < 0)
		return kiln_error_wrap(err, "%s:%d:%d: base '%s'", m->path, m->base_pos.line,
		                       m->base_pos.column, out->name);
	if (out->python == NULL && (m->system_packages.n || m->pre_install.n || m->run_commands.n)) {
		out->python_from_steps = true; /* system_packages: [python3] on debian:bookworm */
		return 0;
	}
	if (out->python == NULL) {
		if (allow)
			return add_warning(
			    out, err,
			    "the base '%s' has no Python (KILN_ALLOW_NO_PYTHON=1): the image runs "
			    "only with `kiln predict --runtime native`",
			    out->name);
		if (explicit_base)
			return kiln_error_set(
			    err, KILN_EINVAL,
			    "%s:%d:%d: base '%s' has no Python (no PYTHON_VERSION in its config, no "
			    "usr/local/bin/python3.X or usr/bin/python3.X in its layers): a Python "
			    "predictor needs one",
			    m->path, m->base_pos.line, m->base_pos.column, out->name);
		return kiln_error_set(
		    err, KILN_EINVAL,
		    "%s: the base '%s' (%s) has no Python (no PYTHON_VERSION in its config, no "
		    "usr/local/bin/python3.X or usr/bin/python3.X in its layers): a Python "
		    "predictor needs one",
		    m->path, out->name, out->reason);
	}
	return check_version(out, m, versions, "the base '%s' has", err);
}

/* BASE's Python (seen as VERSIONS) against python_version; WHO: "the base '%s' has" or the like. */
static int check_version(const struct kiln_base *out, const struct kiln_manifest *m, const char *versions,
                         const char *who, struct kiln_error **err)
{
	if (m->python_version == NULL || strcmp(out->python, "3") == 0)
		return 0;
	_cleanup_free_ char *want = major_minor(m->python_version), *whom = NULL;
	if (want && !has_version(versions, want) && asprintf(&whom, who, out->name) >= 0)
		return kiln_error_set(err, KILN_EINVAL,
		                      "%s:%d:%d: build.python_version: '%s', but %s Python %s: set "
		                      "python_version to \"%s\" or use a base with Python %s",
		                      m->path, m->python_version_pos.line, m->python_version_pos.column,
		                      m->python_version, whom, versions, out->python, want);
	return 0;
}

int kiln_base_python_after_steps(struct kiln_base *b, const struct kiln_manifest *m, struct kiln_store *s,
                                 const struct kiln_built_layer *layers, size_t n, struct kiln_error **err)
{
	if (!b->python_from_steps)
		return 0;
	struct python_scan ps = {0};
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *path = kiln_store_blob_path(s, layers[i].digest);
		if (path == NULL || kiln_archive_list(path, scan_entry, &ps, err) < 0)
			return path ? kiln_error_wrap(err, "cannot list the environment's layer %s",
			                              layers[i].digest)
			            : kiln_error_set(err, KILN_EFAIL,
			                             "the environment's layer %s is not in the store",
			                             layers[i].digest);
	}
	struct kiln_buf all = KILN_BUF_INIT;
	for (size_t i = 0; i < ps.nlocal + ps.nsystem; i++)
		kiln_buf_printf(&all, "%s%s", i ? ", " : "",
		                i < ps.nlocal ? ps.local[i] : ps.system[i - ps.nlocal]);
	_cleanup_free_ char *versions = all.ptr ? all.ptr : strdup(ps.bare ? "python3" : "");
	const char *best = ps.nlocal ? ps.local[0] : NULL;
	for (size_t i = 0; ps.nlocal == 0 && i < ps.nsystem; i++)
		if (best == NULL || atoi(ps.system[i] + 2) > atoi(best + 2))
			best = ps.system[i];
	free(b->python);
	b->python = best ? strdup(best) : ps.bare ? strdup("3") : NULL;
	const char *allow = getenv("KILN_ALLOW_NO_PYTHON");
	if (b->python == NULL && allow && strcmp(allow, "1") == 0)
		return add_warning(
		    b, err,
		    "the base '%s' has no Python, and the build steps installed none "
		    "(KILN_ALLOW_NO_PYTHON=1): the image runs only with `kiln predict --runtime "
		    "native`",
		    b->name);
	if (b->python == NULL)
		return kiln_error_set(
		    err, KILN_EINVAL,
		    "%s:%d:%d: base '%s' has no Python, and the build steps installed none "
		    "(no usr/local/bin/python3.X or usr/bin/python3.X in their layers): a Python "
		    "predictor needs one (system_packages: [python3, python3-pip], or a base "
		    "with Python)",
		    m->path, m->base_pos.line, m->base_pos.column, b->name);
	return check_version(b, m, versions, "the base '%s' with the build steps has", err);
}

/* The message of a base that cannot be fetched, with the way out. */
static int unreachable(struct kiln_base *out, const struct kiln_manifest *m, struct kiln_error **err)
{
	if (m->base)
		return kiln_error_wrap(
		    err,
		    "%s:%d:%d: base '%s' cannot be fetched (offline, or an air-gapped network? "
		    "set base: to an OCI layout, oci:DIR:TAG, for example one made by "
		    "scripts/debian-base.sh, or to an image in a registry you can reach)",
		    m->path, m->base_pos.line, m->base_pos.column, out->name);
	return kiln_error_wrap(
	    err,
	    "%s: base '%s' (%s) cannot be fetched (offline, or an air-gapped network? set "
	    "base: in the manifest, or KILN_PYTHON_BASE, to an OCI layout, "
	    "oci:DIR:TAG, for example one made by scripts/debian-base.sh, or to an image in a "
	    "registry you can reach; {python_version} in KILN_PYTHON_BASE is replaced)",
	    m->path, out->name, out->reason);
}

int kiln_base_load(struct kiln_base *out, const struct kiln_manifest *m, struct kiln_store *s,
                   const char *platform, const struct kiln_registry_options *ropt, struct kiln_error **err)
{
	memset(out, 0, sizeof(*out));
	bool python = kiln_manifest_is_python(m);
	if (m->python_version) {
		int minor;
		bool old;
		if (kiln_python_version_check(&minor, &old, m->python_version, err) < 0)
			return kiln_error_wrap(err, "%s:%d:%d: build.python_version", m->path,
			                       m->python_version_pos.line, m->python_version_pos.column);
		if (old && add_warning(out, err,
		                       "%s:%d:%d: build.python_version: Python %s is deprecated (Cog: "
		                       "\"minimum supported Python version is 3.%d. requested %s\"); kiln "
		                       "still builds it: use 3.%d to 3.%d",
		                       m->path, m->python_version_pos.line, m->python_version_pos.column,
		                       m->python_version, KILN_PYTHON_MIN_MINOR, m->python_version,
		                       KILN_PYTHON_MIN_MINOR, KILN_PYTHON_MAX_MINOR) < 0)
			goto fail;
	}
	if (kiln_base_choose(&out->name, &out->reason, m, getenv("KILN_PYTHON_BASE"), err) < 0)
		goto fail;
	const char *base = out->name;
	if (strcmp(base, "scratch") == 0) {
		if (python && check_python(out, m, s, ropt, err) < 0)
			goto fail;
		return 0;
	}
	if (strncmp(base, "oci:", 4) == 0) {
		if (load_layout(out, base + 4, s, err) < 0) {
			if (m->base)
				kiln_error_wrap(err, "%s:%d:%d: base '%s'", m->path, m->base_pos.line,
				                m->base_pos.column, base);
			else
				kiln_error_wrap(err, "%s: base '%s' (%s)", m->path, base, out->reason);
			goto fail;
		}
	} else {
		struct kiln_remote_image img;
		if (kiln_remote_resolve(&img, s, base, platform, ropt, err) < 0) {
			unreachable(out, m, err);
			goto fail;
		}
		out->config = json_incref(img.config);
		out->layers = json_deep_copy(json_object_get(img.manifest, "layers"));
		out->digest = strdup(img.manifest_digest);
		kiln_remote_image_release(&img);
		oci_media_types(out->layers);
	}
	if (python && check_python(out, m, s, ropt, err) < 0)
		goto fail;
	return 0;
fail:
	kiln_base_release(out);
	return -1;
}

void kiln_base_release(struct kiln_base *b)
{
	free(b->name);
	free(b->reason);
	free(b->digest);
	free(b->python);
	for (size_t i = 0; i < b->nwarnings; i++)
		free(b->warnings[i]);
	json_decref(b->config);
	json_decref(b->layers);
	memset(b, 0, sizeof(*b));
}
