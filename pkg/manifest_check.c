/* SPDX-License-Identifier: Apache-2.0 */
/* manifest_check.c: the manifest's checks beyond types: files that must exist, environment names, bounds. */
#include "pkg/manifest_yaml.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "registry/reference.h"

/* The libyaml mark of a position kept in a struct kiln_strv, for messages about one of its items. */
static yaml_mark_t mark_of(struct kiln_pos pos)
{
	return (yaml_mark_t){0, (size_t)pos.line - 1, (size_t)pos.column - 1};
}

static bool is_identifier(const char *s)
{
	if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
		return false;
	for (s++; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		      *s == '_'))
			return false;
	return true;
}

/* Whether REL leaves the project directory: absolute, or with a ".." component. */
static bool escapes(const char *rel)
{
	if (rel[0] == '/')
		return true;
	for (const char *s = rel; (s = strstr(s, "..")) != NULL; s += 2)
		if ((s == rel || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
			return true;
	return false;
}

/* Fail unless FILE (relative to the project directory, or absolute when allowed) is a regular file. */
static int check_file(struct mparser *p, yaml_node_t *val, const char *where, const char *file, bool inside)
{
	if (inside && escapes(file))
		return mfail(p, val, "%s: '%s' is outside the project directory", where, mquote(file).s);
	_cleanup_free_ char *full = file[0] == '/' ? strdup(file) : kiln_path_join(p->m->dir, file);
	if (full == NULL)
		return kiln_error_set(p->err, KILN_EFAIL, "out of memory");
	struct stat st;
	if (stat(full, &st) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return mfail(p, val, "%s: file '%s' does not exist", where, mquote(file).s);
		return mfail(p, val, "%s: cannot access '%s': %s", where, mquote(file).s, strerror(errno));
	}
	if (!S_ISREG(st.st_mode))
		return mfail(p, val, "%s: '%s' is not a regular file", where, mquote(file).s);
	if (inside) {
		/* a symbolic link (of the file or a directory above it) may still lead out of the project */
		_cleanup_free_ char *real = realpath(full, NULL);
		_cleanup_free_ char *top = realpath(p->m->dir, NULL);
		size_t n = top != NULL ? strlen(top) : 0;
		if (real == NULL || top == NULL)
			return mfail(p, val, "%s: cannot resolve '%s': %s", where, mquote(file).s,
			             strerror(errno));
		if (strncmp(real, top, n) != 0 || (real[n] != '/' && !(n == 1 && top[0] == '/')))
			return mfail(p, val,
			             "%s: '%s' is a symbolic link to '%s', outside the project directory",
			             where, mquote(file).s, mquote(real).s);
	}
	return 0;
}

/* A predictor reference: "FILE.py:NAME" or "native:PATH", whose file exists in the project. */
int mcheck_program(struct mparser *p, yaml_node_t *val, const char *where, const char *ref)
{
	if (strncmp(ref, "native:", 7) == 0) {
		if (ref[7] == '\0')
			return mfail(p, val, "%s: expected 'native:PATH', got '%s'", where, mquote(ref).s);
		return check_file(p, val, where, ref + 7, true);
	}
	const char *colon = strrchr(ref, ':');
	if (colon == NULL || colon == ref || !is_identifier(colon + 1))
		return mfail(p, val, "%s: expected 'FILE.py:NAME' or 'native:PATH', got '%s'", where,
		             mquote(ref).s);
	_cleanup_free_ char *file = strndup(ref, (size_t)(colon - ref));
	if (file == NULL)
		return kiln_error_set(p->err, KILN_EFAIL, "out of memory");
	return check_file(p, val, where, file, true);
}

int mcheck_train(struct mparser *p, yaml_node_t *val, const char *where)
{
	return mcheck_program(p, val, where, p->m->train);
}

int mcheck_requirements(struct mparser *p, yaml_node_t *val, const char *where)
{
	return check_file(p, val, where, p->m->python_requirements, false);
}

int mcheck_overrides(struct mparser *p, yaml_node_t *val, const char *where)
{
	p->m->python_overrides_pos = mpos(val);
	return check_file(p, val, where, p->m->python_overrides, false);
}

int mcheck_serve(struct mparser *p, yaml_node_t *val, const char *where)
{
	long lo = p->m->serve.min_instances, hi = p->m->serve.max_instances;
	if (lo >= 0 && hi >= 0 && lo > hi)
		return mfail(p, mmap_get(p, val, "min_instances"),
		             "%s.min_instances: %ld is greater than max_instances (%ld)", where, lo, hi);
	return 0;
}

/* Names the runtime sets itself: Cog's deny list, and kiln's own prefix. */
static const char *const env_reserved[] = {
    "PATH",        "LD_LIBRARY_PATH",           "PYTHONPATH",
    "VIRTUAL_ENV", "PYTHONUNBUFFERED",          "LIBRARY_PATH",
    "HF_ENDPOINT", "HF_HUB_ENABLE_HF_TRANSFER", NULL,
};
static const char *const env_reserved_prefixes[] = {
    "R8_", "REPLICATE_", "CUDA_", "NVIDIA_", "NV_", "PGET_", "KUBERNETES_", "KILN_", NULL,
};

/* Check environment item I (WHERE names the list); SEEN holds the names of the items before it. */
static int check_env_item(struct mparser *p, const struct kiln_strv *env, size_t i, const char *where,
                          json_t *seen)
{
	const char *item = env->v[i];
	const char *eq = strchr(item, '=');
	char sub[MANIFEST_WHERE_MAX];
	mwhere_index(sub, where, i);
	if (eq == NULL || eq == item)
		return mfail_at(p, mark_of(env->pos[i]), "%s: expected 'NAME=value', got '%s'", sub,
		                mquote(item).s);
	_cleanup_free_ char *name = strndup(item, (size_t)(eq - item));
	if (name == NULL)
		return kiln_error_set(p->err, KILN_EFAIL, "out of memory");
	if (!is_identifier(name))
		return mfail_at(p, mark_of(env->pos[i]), "%s: '%s' is not a valid variable name", sub,
		                mquote(name).s);
	for (const char *const *r = env_reserved; *r; r++)
		if (strcmp(name, *r) == 0)
			return mfail_at(p, mark_of(env->pos[i]),
			                "%s: '%s' may not be set (reserved by the runtime)", sub, name);
	for (const char *const *r = env_reserved_prefixes; *r; r++)
		if (strncmp(name, *r, strlen(*r)) == 0)
			return mfail_at(
			    p, mark_of(env->pos[i]),
			    "%s: '%s' may not be set (names starting with '%s' are reserved by the "
			    "runtime)",
			    sub, name, *r);
	if (json_object_get(seen, name))
		return mfail_at(p, mark_of(env->pos[i]), "%s: '%s' is already set", sub, mquote(name).s);
	if (json_object_set_new(seen, name, json_true()) < 0)
		return kiln_error_set(p->err, KILN_EFAIL, "out of memory");
	return 0;
}

static int check_env_list(struct mparser *p, const struct kiln_strv *env, const char *where)
{
	json_t *seen = json_object();
	if (seen == NULL)
		return kiln_error_set(p->err, KILN_EFAIL, "out of memory");
	int rc = 0;
	for (size_t i = 0; i < env->n && rc == 0; i++)
		rc = check_env_item(p, env, i, where, seen);
	json_decref(seen);
	return rc;
}

int mcheck_environment(struct mparser *p, yaml_node_t *val, const char *where)
{
	return check_env_list(p, &p->m->environment, where);
}

int mcheck_build_environment(struct mparser *p, yaml_node_t *val, const char *where)
{
	return check_env_list(p, &p->m->build_environment, where);
}

int mcheck_image(struct mparser *p, yaml_node_t *val, const char *where)
{
	struct kiln_reference *ref = NULL;
	struct kiln_error *e = NULL;
	if (kiln_reference_parse(&ref, p->m->image, &e) < 0) {
		int r = mfail(p, val, "%s: %s", where, e != NULL ? e->message : "invalid reference");
		kiln_error_free(e);
		return r;
	}
	kiln_reference_free(ref);
	return 0;
}

int mcheck_weights_mode(struct mparser *p, yaml_node_t *val, const char *where)
{
	const char *mode = p->m->serve.weights;
	p->m->serve.weights_pos = mpos(val);
	if (strcmp(mode, "image") != 0 && strcmp(mode, "registry") != 0)
		return mfail(p, val, "%s: expected 'image' or 'registry', got '%s'", where, mquote(mode).s);
	return 0;
}

int mcheck_base(struct mparser *p, yaml_node_t *val, const char *where)
{
	const char *base = p->m->base;
	p->m->base_pos = mpos(val);
	if (base[0] == '\0' || strpbrk(base, " \t\r\n") != NULL || strcmp(base, "oci:") == 0)
		return mfail(p, val, "%s: expected 'scratch', 'oci:DIR:TAG' or an image reference, got '%s'",
		             where, mquote(base).s);
	return 0;
}

/* Patterns name files of the project: not empty, not absolute, no "..". */
static int check_globs(struct mparser *p, const struct kiln_strv *globs, const char *where)
{
	char sub[MANIFEST_WHERE_MAX];
	for (size_t i = 0; i < globs->n; i++) {
		mwhere_index(sub, where, i);
		if (globs->v[i][0] == '\0')
			return mfail_at(p, mark_of(globs->pos[i]), "%s: empty pattern", sub);
		if (escapes(globs->v[i]))
			return mfail_at(p, mark_of(globs->pos[i]),
			                "%s: '%s' is outside the project directory", sub,
			                mquote(globs->v[i]).s);
	}
	return 0;
}

int mcheck_weights(struct mparser *p, yaml_node_t *val, const char *where)
{
	return check_globs(p, &p->m->weights, where);
}

int mcheck_prefetch(struct mparser *p, yaml_node_t *val, const char *where)
{
	return check_globs(p, &p->m->serve.prefetch, where);
}
