/* SPDX-License-Identifier: Apache-2.0 */
/* env.c: system_packages, pre_install, pip and build.run in the base's root, one cached layer a group. */
#include "pkg/env.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "layers/digest.h"
#include "layers/tar.h"
#include "pkg/pip.h"
#include "pkg/rootfs.h"
#include "pkg/sandbox.h"
#include "pkg/unpack.h"

#define SECRET_MAX (64 * 1024)

enum group_kind { GROUP_SYSTEM, GROUP_PRE, GROUP_PIP, GROUP_RUN };

struct mount {
	const char *id;
	const char *target;
	const char *src; /* the secret's file */
};

/* One step group: what it runs, where the manifest says so, and its layers once built. */
struct group {
	enum group_kind kind;
	size_t index;  /* in pre_install or build.run */
	char *what;    /* "build.run[2]" */
	char *text;    /* the command (system_packages: the packages) */
	char *command; /* the shell command run */
	struct kiln_pos pos;
	struct mount *mounts;
	size_t nmounts;
	char key[65];
	json_t *cached; /* the cache's value when every layer is still in the store */
};

struct env_state {
	struct kiln_store *s;
	const struct kiln_manifest *m;
	const struct kiln_base *base;
	const struct kiln_env_options *opt;
	struct group *g;
	size_t n;
	char **env; /* the steps' environment, NULL-ended */
	size_t nenv;
	char *work; /* the private root, once one is needed */
};

static const char *kind_name(enum group_kind k)
{
	return k == GROUP_SYSTEM ? "system_packages"
	       : k == GROUP_PRE  ? "pre_install"
	       : k == GROUP_PIP  ? "pip"
	                         : "run";
}

static int oom(struct kiln_error **err)
{
	return kiln_error_set(err, KILN_EFAIL, "out of memory");
}

/* ---- the step groups, from the manifest ---- */

static struct group *group_add(struct env_state *st, enum group_kind kind, struct kiln_error **err)
{
	struct group *g = realloc(st->g, (st->n + 1) * sizeof(*g));
	if (g == NULL)
		return oom(err), NULL;
	st->g = g;
	g = &st->g[st->n++];
	*g = (struct group){.kind = kind};
	return g;
}

static const struct kiln_secret *secret_find(const struct kiln_env_options *opt, const char *id)
{
	for (size_t i = 0; i < opt->nsecrets; i++)
		if (strcmp(opt->secrets[i].id, id) == 0)
			return &opt->secrets[i];
	return NULL;
}

/* build.run[I]'s mounts (Cog: [{type: secret, id, target}]), each matched to a secret given. */
static int read_mounts(struct env_state *st, struct group *g, struct kiln_error **err)
{
	json_t *item =
	    json_array_get(json_object_get(json_object_get(st->m->json, "build"), "run"), g->index);
	json_t *mounts = json_object_get(item, "mounts");
	if (mounts == NULL || json_is_null(mounts))
		return 0;
	const char *at = st->m->path;
	if (!json_is_array(mounts))
		return kiln_error_set(err, KILN_EINVAL, "%s:%d:%d: %s: mounts must be a list", at,
		                      g->pos.line, g->pos.column, g->what);
	g->mounts = calloc(json_array_size(mounts) + 1, sizeof(*g->mounts));
	if (g->mounts == NULL)
		return oom(err);
	size_t i;
	json_t *mo;
	json_array_foreach(mounts, i, mo)
	{
		const char *type = json_string_value(json_object_get(mo, "type"));
		const char *id = json_string_value(json_object_get(mo, "id"));
		const char *target = json_string_value(json_object_get(mo, "target"));
		if (!type || strcmp(type, "secret") != 0)
			return kiln_error_set(
			    err, KILN_EINVAL,
			    "%s:%d:%d: %s: mounts[%zu]: type must be 'secret' (the only kind of "
			    "mount Cog has)",
			    at, g->pos.line, g->pos.column, g->what, i);
		if (!id || !*id || !target || target[0] != '/' || strstr(target, "/../") ||
		    strcmp(target, "/") == 0)
			return kiln_error_set(
			    err, KILN_EINVAL,
			    "%s:%d:%d: %s: mounts[%zu]: a secret needs an id and an absolute target", at,
			    g->pos.line, g->pos.column, g->what, i);
		const struct kiln_secret *sec = secret_find(st->opt, id);
		if (sec == NULL)
			return kiln_error_set(
			    err, KILN_EINVAL,
			    "%s:%d:%d: %s: the secret '%s' was not given (kiln build --secret "
			    "id=%s,src=FILE)",
			    at, g->pos.line, g->pos.column, g->what, id, id);
		g->mounts[g->nmounts++] = (struct mount){id, target, sec->src};
	}
	return 0;
}

static int list_groups(struct env_state *st, struct kiln_error **err)
{
	const struct kiln_manifest *m = st->m;
	struct group *g;
	if (m->system_packages.n > 0) {
		if ((g = group_add(st, GROUP_SYSTEM, err)) == NULL)
			return KILN_EFAIL;
		struct kiln_buf b = KILN_BUF_INIT;
		for (size_t i = 0; i < m->system_packages.n; i++)
			kiln_buf_printf(&b, "%s%s", i ? " " : "", m->system_packages.v[i]);
		g->text = kiln_buf_detach(&b);
		g->pos = m->system_packages.pos[0];
		g->what = strdup("system_packages");
		if (!g->text || !g->what ||
		    asprintf(
		        &g->command,
		        "apt-get update -qq%s && apt-get install -qqy --no-install-recommends%s %s && rm -rf "
		        "/var/lib/apt/lists/* /var/cache/apt/*.bin",
		        geteuid() ? " -o APT::Sandbox::User=root" : "",
		        geteuid() ? " -o APT::Sandbox::User=root" : "", g->text) < 0)
			return oom(err);
	}
	for (size_t i = 0; i < m->pre_install.n; i++) {
		if ((g = group_add(st, GROUP_PRE, err)) == NULL)
			return KILN_EFAIL;
		g->index = i;
		g->pos = m->pre_install.pos[i];
		if (!(g->text = strdup(m->pre_install.v[i])) || !(g->command = strdup(g->text)) ||
		    asprintf(&g->what, "build.pre_install[%zu]", i) < 0)
			return oom(err);
	}
	if (kiln_pip_wanted(m)) {
		if ((g = group_add(st, GROUP_PIP, err)) == NULL)
			return KILN_EFAIL;
		if (!(g->what = strdup("python packages")))
			return oom(err);
		if (kiln_pip_inputs_key(g->key, m, err) < 0)
			return KILN_EFAIL;
		g->text = strdup(g->key);
		if (!g->text)
			return oom(err);
	}
	for (size_t i = 0; i < m->run_commands.n; i++) {
		if ((g = group_add(st, GROUP_RUN, err)) == NULL)
			return KILN_EFAIL;
		g->index = i;
		g->pos = m->run_commands.pos[i];
		if (!(g->text = strdup(m->run_commands.v[i])) || !(g->command = strdup(g->text)) ||
		    asprintf(&g->what, "build.run[%zu]", i) < 0)
			return oom(err);
		if (read_mounts(st, g, err) < 0)
			return KILN_EFAIL;
	}
	return 0;
}

/* The steps' environment: the base's Env, then build.environment, then the top-level environment. */
static int make_env(struct env_state *st, struct kiln_error **err)
{
	json_t *base_env = json_object_get(json_object_get(st->base->config, "config"), "Env");
	json_t *build_env = json_object_get(json_object_get(st->m->json, "build"), "environment");
	size_t cap = json_array_size(base_env) + json_array_size(build_env) + st->m->environment.n + 3;
	st->env = calloc(cap, sizeof(*st->env));
	if (st->env == NULL)
		return oom(err);
	const char *all[cap];
	size_t n = 0;
	size_t i;
	json_t *v;
	bool path = false;
	json_array_foreach(base_env, i, v) if (json_string_value(v)) all[n++] = json_string_value(v);
	json_array_foreach(build_env, i, v) if (json_string_value(v)) all[n++] = json_string_value(v);
	for (i = 0; i < st->m->environment.n; i++)
		all[n++] = st->m->environment.v[i];
	for (i = 0; i < n; i++) {
		const char *eq = strchr(all[i], '=');
		if (eq == NULL)
			continue;
		size_t len = (size_t)(eq - all[i]) + 1;
		path = path || strncmp(all[i], "PATH=", 5) == 0;
		size_t j = 0;
		while (j < st->nenv && strncmp(st->env[j], all[i], len) != 0)
			j++;
		char *copy = strdup(all[i]);
		if (copy == NULL)
			return oom(err);
		if (j < st->nenv) {
			free(st->env[j]);
			st->env[j] = copy;
		} else {
			st->env[st->nenv++] = copy;
		}
	}
	if (!path && !(st->env[st->nenv++] =
	                   strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")))
		return oom(err);
	return 0;
}

/* ---- the cache ---- */

/* KEY = sha256(format, the key under it, the group's kind, text and inputs); no secret value enters. */
static int group_key(struct env_state *st, struct group *g, const char *below, struct kiln_error **err)
{
	struct kiln_sha256 *h = NULL;
	if (kiln_sha256_new(&h, err) < 0)
		return KILN_EFAIL;
	struct kiln_buf b = KILN_BUF_INIT;
	kiln_buf_printf(&b, "kiln-env-v1\n%s\n%s\n%zu:%s\nmtime %lld\n", below, kind_name(g->kind),
	                strlen(g->text), g->text, (long long)st->opt->mtime);
	if (g->kind != GROUP_PIP)
		for (size_t i = 0; i < st->nenv; i++)
			kiln_buf_printf(&b, "env %s\n", st->env[i]);
	for (size_t i = 0; i < g->nmounts; i++)
		kiln_buf_printf(&b, "secret %s %s\n", g->mounts[i].id, g->mounts[i].target);
	kiln_buf_printf(&b, "root %s\n", geteuid() ? "user" : "root");
	if (b.ptr == NULL) {
		kiln_sha256_free(h);
		return oom(err);
	}
	kiln_sha256_update(h, b.ptr, b.len);
	kiln_buf_release(&b);
	char d[KILN_DIGEST_LEN];
	kiln_sha256_final(h, d);
	kiln_sha256_free(h);
	memcpy(g->key, kiln_digest_hex(d), 65);
	return 0;
}

/* The cache's value for G when all its layers are still in the store, else NULL. */
static json_t *cache_lookup(struct kiln_store *s, const char *key)
{
	json_t *c = kiln_store_cache_get(s, key);
	json_t *layers = json_object_get(c, "layers");
	bool ok = json_is_array(layers);
	size_t i;
	json_t *l;
	json_array_foreach(layers, i, l)
	{
		const char *digest = json_string_value(json_object_get(l, "digest"));
		const char *diff_id = json_string_value(json_object_get(l, "diff_id"));
		ok = ok && digest && diff_id && kiln_digest_valid(digest) && kiln_digest_valid(diff_id) &&
		     json_is_integer(json_object_get(l, "size")) &&
		     json_string_value(json_object_get(l, "created_by")) && kiln_store_blob_exists(s, digest);
	}
	if (!ok) {
		json_decref(c);
		return NULL;
	}
	return c;
}

/* Add the layers of the cache value C to OUT. */
static int result_add(struct kiln_env_result *out, json_t *c, bool hit, struct kiln_error **err)
{
	json_t *layers = json_object_get(c, "layers");
	size_t n = json_array_size(layers);
	struct kiln_built_layer *v = realloc(out->layers, (out->n + n + 1) * sizeof(*v));
	if (v)
		out->layers = v;
	char **cb = realloc(out->created_by, (out->n + n + 1) * sizeof(*cb));
	if (cb)
		out->created_by = cb;
	if (!v || !cb)
		return oom(err);
	size_t i;
	json_t *l;
	json_array_foreach(layers, i, l)
	{
		struct kiln_built_layer *b = &out->layers[out->n];
		*b = (struct kiln_built_layer){
		    .kind = KILN_LAYER_DEPS, .media_type = KILN_MEDIA_LAYER_GZIP, .cached = hit};
		snprintf(b->digest, KILN_DIGEST_LEN, "%s", json_string_value(json_object_get(l, "digest")));
		snprintf(b->diff_id, KILN_DIGEST_LEN, "%s", json_string_value(json_object_get(l, "diff_id")));
		b->size = (uint64_t)json_integer_value(json_object_get(l, "size"));
		b->files = (size_t)json_integer_value(json_object_get(l, "files"));
		const char *title = json_string_value(json_object_get(l, "title"));
		b->title = title ? strdup(title) : NULL;
		if ((out->created_by[out->n] = strdup(json_string_value(json_object_get(l, "created_by")))) ==
		    NULL)
			return oom(err);
		out->n++;
	}
	const char *freeze = json_string_value(json_object_get(c, "freeze"));
	if (freeze && *freeze && !out->pip_freeze && !(out->pip_freeze = strdup(freeze)))
		return oom(err);
	json_t *deps = json_object_get(c, "deps");
	if (deps && !json_is_null(deps) && !out->deps)
		out->deps = json_incref(deps);
	return 0;
}

/* ---- running a step ---- */

/* Unpack the cache value C's layers into the working root. */
static int unpack_into(struct env_state *st, json_t *c, struct kiln_error **err)
{
	size_t i;
	json_t *l;
	struct kiln_unpack_options uo = {.cancel = st->opt->cancel};
	json_array_foreach(json_object_get(c, "layers"), i, l)
	{
		const char *digest = json_string_value(json_object_get(l, "digest"));
		if (kiln_unpack_layer(st->s, digest, KILN_MEDIA_LAYER_GZIP, st->work, &uo, NULL, err) < 0)
			return kiln_error_wrap(err, "cannot put the environment's layer %s in place", digest);
	}
	return 0;
}

/* Write ENTRIES as a gzip layer in the store: its digest, diff_id and size into L. */
static int write_layer(struct env_state *st, const struct kiln_tar_entry *entries, size_t n, json_t **l,
                       uint64_t *written, struct kiln_error **err)
{
	_cleanup_free_ char *tmp = NULL;
	struct kiln_layer_options lo = {
	    .mtime = st->opt->mtime, .compression = KILN_COMPRESS_GZIP, .cancel = st->opt->cancel};
	if (kiln_store_tmpfile(st->s, &lo.fd, &tmp, err) < 0)
		return KILN_EFAIL;
	struct kiln_layer_out out = {0};
	if (kiln_layer_write(&out, entries, n, &lo, err) < 0) {
		close(lo.fd);
		unlink(tmp);
		return KILN_EFAIL;
	}
	if (kiln_store_blob_commit(st->s, lo.fd, tmp, out.digest, err) < 0) {
		kiln_layer_out_release(&out);
		return KILN_EFAIL;
	}
	size_t files = 0;
	for (size_t i = 0; i < n; i++)
		files += entries[i].type == KILN_TAR_FILE && entries[i].source != NULL;
	*l = json_pack("{s:s,s:s,s:I,s:I}", "digest", out.digest, "diff_id", out.diff_id, "size",
	               (json_int_t)out.size, "files", (json_int_t)files);
	*written += out.size;
	kiln_layer_out_release(&out);
	return *l ? 0 : oom(err);
}

/* The paths a step's sandbox may make in the root for its mounts: absent before, removed after. */
struct made {
	char *v[64];
	size_t n;
};

static void note_absent(struct made *md, const char *root, const char *path)
{
	_cleanup_free_ char *p = strdup(path);
	if (p == NULL)
		return;
	/* the path and each directory above it that is not there */
	for (char *s = p + strlen(p); s > p && md->n < 64;) {
		_cleanup_free_ char *full = NULL;
		struct stat sb;
		if (asprintf(&full, "%s%s", root, p) < 0 || lstat(full, &sb) == 0)
			break;
		md->v[md->n++] = steal_pointer(&full);
		s = strrchr(p, '/');
		if (s == NULL || s == p)
			break;
		*s = '\0';
	}
}

static void remove_made(struct made *md)
{
	for (size_t i = 0; i < md->n; i++) { /* deepest first: they were noted that way, per path */
		if (rmdir(md->v[i]) < 0) {
			struct stat sb;
			if (lstat(md->v[i], &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size == 0)
				unlink(md->v[i]);
		}
		free(md->v[i]);
	}
	md->n = 0;
}

static void on_line(void *ctx, const char *line)
{
	const struct kiln_env_options *opt = ctx;
	if (opt->on_output)
		opt->on_output(opt->ctx, line);
}

/* Run G's command in the working root and make its layer: the cache value into *out. */
static int run_step(struct env_state *st, struct group *g, json_t **out, uint64_t *written,
                    struct kiln_error **err)
{
	const char *at = st->m->path;
	struct kiln_sandbox_bind binds[64];
	/* and the logs that only say when a step ran (apt's and dpkg's), so that the same packages give
	 * the same layer on any run */
	const char *exclude[64 + 12] = {"/tmp",
	                                "/proc",
	                                "/dev",
	                                "/etc/resolv.conf",
	                                "/var/log/apt/history.log",
	                                "/var/log/apt/term.log",
	                                "/var/log/apt/eipp.log.xz",
	                                "/var/log/dpkg.log",
	                                "/var/log/alternatives.log"};
	size_t nex = 9;
	char *secrets[2 * 64 + 1] = {0};
	size_t nsec = 0;
	struct made md = {0};
	note_absent(&md, st->work, "/tmp");
	note_absent(&md, st->work, "/proc");
	note_absent(&md, st->work, "/dev");
	note_absent(&md, st->work, "/etc/resolv.conf");
	int rc = 0;
	if (g->nmounts > 64)
		return kiln_error_set(err, KILN_EINVAL, "%s:%d:%d: %s: more than 64 mounts", at, g->pos.line,
		                      g->pos.column, g->what);
	for (size_t i = 0; i < g->nmounts; i++) {
		binds[i] = (struct kiln_sandbox_bind){g->mounts[i].src, g->mounts[i].target, false};
		exclude[nex++] = g->mounts[i].target;
		note_absent(&md, st->work, g->mounts[i].target);
		char *value = NULL;
		size_t len = 0;
		if (kiln_read_file(&value, &len, g->mounts[i].src, SECRET_MAX, err) < 0) {
			rc = kiln_error_wrap(err, "cannot read the secret '%s'", g->mounts[i].id);
			goto done;
		}
		while (len > 0 && (value[len - 1] == '\n' || value[len - 1] == '\r'))
			value[--len] = '\0';
		if (len > 0)
			secrets[nsec++] = value;
		else
			free(value);
	}
	exclude[nex] = NULL;
	struct kiln_rootfs_snapshot *snap = NULL;
	if ((rc = kiln_rootfs_snapshot(&snap, st->work, err)) < 0)
		goto done;
	struct kiln_sandbox sb = {
	    .root = st->work,
	    .root_writable = true,
	    .binds = binds,
	    .nbinds = g->nmounts,
	    .env = st->env,
	    .workdir = "/",
	    .redact = (const char *const *)secrets,
	    .on_output = on_line,
	    .ctx = (void *)st->opt,
	    .cancel = st->opt->cancel,
	};
	char *argv[] = {"/bin/sh", "-c", g->command, NULL};
	struct kiln_sandbox_result res = {0};
	rc = kiln_sandbox_run(&sb, argv, &res, err);
	remove_made(&md);
	if (rc == 0 && res.status != 0) {
		size_t tl = res.tail ? strlen(res.tail) : 0;
		rc = kiln_error_set(err, KILN_EFAIL, "%s:%d:%d: %s: '%s' exited with status %d%s%.*s", at,
		                    g->pos.line, g->pos.column, g->what, g->command, res.status,
		                    tl ? "\n" : "", (int)(tl && res.tail[tl - 1] == '\n' ? tl - 1 : tl),
		                    res.tail ? res.tail : "");
	} else if (rc < 0) {
		kiln_error_wrap(err, "%s:%d:%d: %s", at, g->pos.line, g->pos.column, g->what);
	}
	kiln_sandbox_result_release(&res);
	struct kiln_tar_entry *entries = NULL;
	size_t n = 0;
	if (rc == 0)
		rc = kiln_rootfs_diff(&entries, &n, snap, st->work, exclude, err);
	kiln_rootfs_snapshot_free(snap);
	json_t *layer = NULL;
	if (rc == 0)
		rc = write_layer(st, entries, n, &layer, written, err);
	for (size_t i = 0; i < n; i++)
		kiln_tar_entry_release(&entries[i]);
	free(entries);
	if (rc == 0) {
		_cleanup_free_ char *cb = NULL;
		if (asprintf(&cb, "RUN %s", g->kind == GROUP_SYSTEM ? g->command : g->text) < 0) {
			json_decref(layer);
			rc = oom(err);
			goto done;
		}
		json_object_set_new(layer, "created_by", json_string(cb));
		*out = json_pack("{s:[o]}", "layers", layer);
		if (*out == NULL)
			rc = oom(err);
	}
done:
	remove_made(&md);
	for (size_t i = 0; i < nsec; i++) {
		memset(secrets[i], 0, strlen(secrets[i]));
		free(secrets[i]);
	}
	return rc;
}

/* pip in the working root (H2's pkg/pip.h); its layers unpacked there when steps follow. */
static int run_pip(struct env_state *st, const char *root, bool view, const char *below, json_t **out,
                   uint64_t *written, struct kiln_error **err)
{
	struct kiln_pip_context c = {
	    .store = st->s,
	    .m = st->m,
	    .root = root,
	    .keep_mountpoints = view,
	    .chain_key = below,
	    .mtime = st->opt->mtime,
	    .on_output = st->opt->on_output,
	    .ctx = st->opt->ctx,
	    .cancel = st->opt->cancel,
	};
	struct kiln_pip_result r = {0};
	if (kiln_pip_install(&r, &c, err) < 0)
		return KILN_EFAIL;
	json_t *layers = json_array();
	for (size_t i = 0; i < r.n; i++) {
		json_t *l = json_pack("{s:s,s:s,s:I,s:I,s:s}", "digest", r.layers[i].digest, "diff_id",
		                      r.layers[i].diff_id, "size", (json_int_t)r.layers[i].size, "files",
		                      (json_int_t)r.layers[i].files, "created_by",
		                      r.created_by[i] ? r.created_by[i] : "RUN pip install");
		if (l && r.layers[i].title)
			json_object_set_new(l, "title", json_string(r.layers[i].title));
		json_array_append_new(layers, l);
	}
	*out = json_pack("{s:o,s:s,s:O}", "layers", layers, "freeze", r.freeze ? r.freeze : "", "deps",
	                 r.deps ? r.deps : json_null());
	*written += r.bytes_written;
	kiln_pip_result_release(&r);
	return *out ? 0 : oom(err);
}

/* Whether the working root has apt-get (system_packages needs a Debian or Ubuntu base). */
static int check_apt(struct env_state *st, struct group *g, struct kiln_error **err)
{
	const char *const where[] = {"/usr/bin/apt-get", "/bin/apt-get", "/usr/local/bin/apt-get", NULL};
	for (size_t i = 0; where[i]; i++) {
		_cleanup_free_ char *p = NULL;
		struct stat sb;
		if (asprintf(&p, "%s%s", st->work, where[i]) >= 0 && lstat(p, &sb) == 0)
			return 0;
	}
	return kiln_error_set(err, KILN_EINVAL,
	                      "%s:%d:%d: system_packages: base '%s' has no apt-get: system_packages needs a "
	                      "Debian or Ubuntu base",
	                      st->m->path, g->pos.line, g->pos.column, st->base->name);
}

static void state_release(struct env_state *st)
{
	for (size_t i = 0; i < st->n; i++) {
		free(st->g[i].what);
		free(st->g[i].text);
		free(st->g[i].command);
		free(st->g[i].mounts);
		json_decref(st->g[i].cached);
	}
	free(st->g);
	for (size_t i = 0; i < st->nenv; i++)
		free(st->env[i]);
	free(st->env);
	if (st->work)
		kiln_rootfs_discard(st->work);
	free(st->work);
}

static void step_event(struct env_state *st, struct group *g, bool cached)
{
	if (!st->opt->on_step)
		return;
	_cleanup_free_ char *line = NULL;
	const char *shown = g->kind == GROUP_SYSTEM ? g->command
	                    : g->kind == GROUP_PIP  ? "pip install"
	                                            : g->text;
	if (asprintf(&line, "%s: %s%s", g->what, shown, cached ? " (cached)" : "") >= 0)
		st->opt->on_step(st->opt->ctx, line);
}

int kiln_env_build(struct kiln_env_result *out, struct kiln_store *s, const struct kiln_manifest *m,
                   const struct kiln_base *base, const struct kiln_env_options *opt, struct kiln_error **err)
{
	*out = (struct kiln_env_result){0};
	double t0 = kiln_monotonic();
	struct env_state st = {.s = s, .m = m, .base = base, .opt = opt};
	/* before any goto: their cleanup runs at every exit */
	_cleanup_free_ char *base_dir = NULL, *pip_root = NULL;
	int rc = list_groups(&st, err);
	if (rc < 0 || st.n == 0)
		goto done;
	if (base->config == NULL) {
		rc = kiln_error_set(
		    err, KILN_EINVAL,
		    "%s:%d:%d: %s: steps run in the base's root, and base '%s' has none: set base: to "
		    "a Debian or Ubuntu image",
		    m->path, st.g[0].pos.line, st.g[0].pos.column, st.g[0].what, base->name);
		goto done;
	}
	if ((rc = make_env(&st, err)) < 0)
		goto done;
	char below[65];
	kiln_rootfs_key(below, base);
	size_t last_miss = st.n;
	for (size_t i = 0; i < st.n; i++) {
		struct group *g = &st.g[i];
		char here[65];
		memcpy(here, below, 65);
		if ((rc = group_key(&st, g, here, err)) < 0)
			goto done;
		memcpy(below, g->key, 65);
		g->cached = cache_lookup(s, g->key);
		if (!g->cached)
			last_miss = i;
	}
	if (last_miss < st.n && (rc = kiln_sandbox_available(err)) < 0) {
		kiln_error_wrap(err, "cannot run the build steps");
		goto done;
	}
	/*
	 * pip only reads its root. When it is the last step and the only one to run, it runs in a view
	 * (hard links) of the root the steps before it left, kept in the store from an earlier build (the
	 * base's own root when there are none): no copy of the root, whatever changed in the requirements.
	 * Otherwise the steps run in a private copy, kept for the next build when pip comes last.
	 */
	bool pip_last = last_miss == st.n - 1 && st.g[last_miss].kind == GROUP_PIP;
	size_t first_miss = st.n;
	for (size_t i = st.n; i-- > 0;)
		if (st.g[i].cached == NULL)
			first_miss = i;
	if (last_miss < st.n && (rc = kiln_rootfs_base(&base_dir, s, base, opt->registry, err)) < 0)
		goto done;
	if (pip_last && first_miss == last_miss) {
		if (st.n == 1)
			pip_root = strdup(base_dir);
		else if ((rc = kiln_rootfs_chain(&pip_root, s, st.g[st.n - 2].key, err)) < 0)
			goto done;
	}
	if (last_miss < st.n && pip_root == NULL && (rc = kiln_rootfs_copy(&st.work, s, base_dir, err)) < 0)
		goto done;
	kiln_rootfs_key(below, base);
	for (size_t i = 0; i < st.n; i++) {
		struct group *g = &st.g[i];
		bool hit = g->cached != NULL;
		if (hit) {
			step_event(&st, g, true);
			if (i < last_miss && st.work && (rc = unpack_into(&st, g->cached, err)) < 0)
				goto done;
		} else {
			step_event(&st, g, false);
			json_t *c = NULL;
			if (g->kind == GROUP_SYSTEM && (rc = check_apt(&st, g, err)) < 0)
				goto done;
			if (g->kind == GROUP_PIP && pip_last && pip_root == NULL) {
				/* i > 0: with pip alone, pip_root is the base's root */
				if ((rc = kiln_rootfs_keep(&pip_root, s, st.work, st.g[i - 1].key, err)) < 0)
					goto done;
				free(st.work);
				st.work = NULL;
			}
			if (g->kind == GROUP_PIP && pip_last) {
				_cleanup_free_ char *view = NULL;
				rc = kiln_rootfs_view(&view, s, pip_root, err);
				if (rc == 0)
					rc = run_pip(&st, view, true, below, &c, &out->bytes_written, err);
			} else if (g->kind == GROUP_PIP) {
				rc = run_pip(&st, st.work, false, below, &c, &out->bytes_written, err);
			} else {
				rc = run_step(&st, g, &c, &out->bytes_written, err);
			}
			if (rc < 0)
				goto done;
			if (g->kind == GROUP_PIP && i < last_miss && (rc = unpack_into(&st, c, err)) < 0) {
				json_decref(c);
				goto done;
			}
			if ((rc = kiln_store_cache_put(s, g->key, c, err)) < 0) {
				json_decref(c);
				goto done;
			}
			g->cached = c;
		}
		if ((rc = result_add(out, g->cached, hit, err)) < 0)
			goto done;
		memcpy(below, g->key, 65);
	}
done:
	state_release(&st);
	if (rc < 0)
		kiln_env_result_release(out);
	else
		out->seconds = kiln_monotonic() - t0;
	return rc;
}

void kiln_env_result_release(struct kiln_env_result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free(r->layers[i].title);
		free(r->created_by[i]);
	}
	free(r->layers);
	free(r->created_by);
	free(r->pip_freeze);
	json_decref(r->deps);
	*r = (struct kiln_env_result){0};
}
