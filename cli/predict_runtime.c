/* SPDX-License-Identifier: Apache-2.0 */
/*
 * predict_runtime.c: where `kiln predict` runs an image's shim. native: the image's own layers (those
 * above its base) unpacked into a cache directory, the shim started from there by its bundled loader with
 * this machine's Python. bwrap: the image's whole root filesystem, base included, under bubblewrap with
 * its own PID, IPC and UTS namespaces, sharing the network so that the port is on this machine's loopback.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <glob.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/predict.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "layers/extract.h"
#include "pkg/image.h"
#include "pkg/weights_cache.h"
#include "pkg/weights_registry.h"
#include "pkg/pull.h"
#include "pkg/store.h"
#include "pkg/unpack.h"

extern char **environ;

/* A strv: a NULL-terminated, growable array of strings (owned). */
struct strv {
	char **v;
	size_t n, cap;
};

static int strv_add(struct strv *a, const char *s)
{
	if (a->n + 2 > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 32;
		char **v = realloc(a->v, cap * sizeof(*v));
		if (!v)
			return -1;
		a->v = v;
		a->cap = cap;
	}
	if (!(a->v[a->n] = strdup(s)))
		return -1;
	a->v[++a->n] = NULL;
	return 0;
}

static int strv_addf(struct strv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int strv_addf(struct strv *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	int rc = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return -1;
	rc = strv_add(a, s);
	free(s);
	return rc;
}

static void strv_free(struct strv *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
}

/* Set NAME=VALUE in the environment list A (replacing NAME's earlier entry). */
static int env_set(struct strv *a, const char *kv)
{
	size_t len = strcspn(kv, "=");
	for (size_t i = 0; i < a->n; i++)
		if (strncmp(a->v[i], kv, len) == 0 && a->v[i][len] == '=') {
			char *copy = strdup(kv);
			if (!copy)
				return -1;
			free(a->v[i]);
			a->v[i] = copy;
			return 0;
		}
	return strv_add(a, kv);
}

/* A free TCP port on 127.0.0.1 (the kernel's choice), or -1. */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int port = -1;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* Run ARGV (no shell) with its output discarded; its exit status, or -1. */
static int run_quietly(char *const *argv)
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return -1;
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Whether bubblewrap is installed and may make namespaces here (not every container lets it). */
static bool bwrap_works(void)
{
	char *const argv[] = {"bwrap", "--ro-bind", "/", "/", "--unshare-pid", "--dev", "/dev", "true", NULL};
	return run_quietly(argv) == 0;
}

/* ---- weight layers, unpacked once ----
 * The native runtime's root is made per image, and an image differs from the last as soon as its code
 * does: its weight layers (files only, the largest part) are unpacked once each into run/layers/HEX and
 * hard-linked into every root that has them, each in its place among the image's layers, by
 * kiln_layer_link: a lower layer's symbolic link in the way is replaced, never followed, so a hostile
 * image reaches nothing outside the root. A code change unpacks kilobytes, not the weights again. */

static bool is_weights(const json_t *layer)
{
	const char *kind =
	    json_string_value(json_object_get(json_object_get(layer, "annotations"), KILN_ANNOTATION_KIND));
	return kind && strcmp(kind, "weights") == 0;
}

/*
 * run/layers/HEX for LAYER into *out, unpacked there (aside, then renamed) unless it already is. *out is
 * NULL when the layer has whiteouts: they hide what lower layers hold, which a directory of the layer's
 * own has not, so such a layer is unpacked in each root instead.
 */
static int weights_dir(char **out, struct kiln_store *s, const json_t *layer, struct kiln_error **err)
{
	const char *digest = json_string_value(json_object_get(layer, "digest"));
	const char *hex = digest && strchr(digest, ':') ? strchr(digest, ':') + 1 : "";
	_cleanup_free_ char *parent = NULL, *dir = NULL, *tmp = NULL;
	*out = NULL;
	if (kiln_store_private_dir(&parent, s, "run/layers", err) < 0)
		return -1;
	if (asprintf(&dir, "%s/%s", parent, hex) < 0 ||
	    asprintf(&tmp, "%s/.%s.%d", parent, hex, (int)getpid()) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct stat st;
	if (stat(dir, &st) == 0) {
		*out = steal_pointer(&dir);
		return 0;
	}
	struct kiln_unpack_options uo = {.cancel = &cli_interrupted};
	struct kiln_unpack_stats us = {0};
	kiln_extract_remove(tmp, NULL); /* left by a dead process that had this pid */
	int rc = mkdir(tmp, 0700) < 0 ? kiln_error_errno(err, errno, "cannot make '%s'", tmp) : 0;
	if (rc == 0)
		rc = kiln_unpack_layer(s, digest, json_string_value(json_object_get(layer, "mediaType")), tmp,
		                       &uo, &us, err);
	bool cached = rc == 0 && us.sum.whiteouts == 0;
	if (cached && rename(tmp, dir) < 0 && stat(dir, &st) < 0) /* another kiln may have made it first */
		rc = kiln_error_errno(err, errno, "cannot make '%s'", dir);
	if (access(tmp, F_OK) == 0)
		kiln_extract_remove(tmp, NULL);
	if (rc == 0 && cached)
		*out = steal_pointer(&dir);
	return rc;
}

/* kiln_unpack_image's PLACE: a weight layer's cached tree linked into the new root TMPDIR. */
static int place_weights(void *ctx, size_t index, const json_t *layer, const char *tmpdir,
                         struct kiln_error **err)
{
	(void)index;
	if (!is_weights(layer))
		return 0;
	_cleanup_free_ char *dir = NULL;
	if (weights_dir(&dir, ctx, layer, err) < 0 || (dir && kiln_layer_link(dir, tmpdir, NULL, err) < 0))
		return kiln_error_wrap(err, "cannot put the weights of layer %s in place",
		                       json_string_value(json_object_get(layer, "digest")));
	return dir ? 1 : 0;
}

/* The index of the image's first own layer (the first with kiln's kind annotation; the base's have none). */
static size_t first_own_layer(const json_t *layers)
{
	size_t i;
	json_t *l;
	json_array_foreach(layers, i, l) if (json_object_get(json_object_get(l, "annotations"),
	                                                     KILN_ANNOTATION_KIND)) return i;
	return json_array_size(layers);
}

/* Download the base's layers the store lacks from the registry they came from (a registry base whose
 * layers `kiln build` did not need). */
static int fetch_base(struct kiln_store *s, const json_t *layers, size_t first,
                      const struct kiln_registry_options *ropt, struct kiln_error **err)
{
	for (size_t i = 0; i < first; i++) {
		const json_t *layer = json_array_get(layers, i);
		const char *digest = json_string_value(json_object_get(layer, "digest"));
		if (!digest || kiln_store_blob_exists(s, digest))
			continue;
		infof("fetching the base's layer %.19s", digest);
		uint64_t got = 0;
		if (kiln_fetch_blob(s, digest, (uint64_t)json_integer_value(json_object_get(layer, "size")),
		                    ropt, &got, err) < 0)
			return kiln_error_wrap(err, "cannot fetch the base's layer %s", digest);
	}
	return 0;
}

/* The image's Env with every value under /.kiln or the WorkingDir moved under ROOT (native: no chroot). */
static int native_env(struct strv *env, const json_t *config, const char *root)
{
	for (char **e = environ; *e; e++)
		if (strv_add(env, *e) < 0)
			return -1;
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(json_object_get(config, "config"), "Env"), i, v)
	{
		const char *kv = json_string_value(v);
		if (!kv || strncmp(kv, "PATH=", 5) == 0 || strncmp(kv, "HOME=", 5) == 0)
			continue; /* this machine's Python and tools run it */
		const char *eq = strchr(kv, '=');
		if (!eq)
			continue;
		struct kiln_buf b = KILN_BUF_INIT;
		kiln_buf_put(&b, kv, (size_t)(eq - kv) + 1);
		/* each line of the value that is an absolute path in the image gets ROOT in front */
		for (const char *p = eq + 1; *p;) {
			size_t len = strcspn(p, "\n");
			if (*p == '/')
				kiln_buf_puts(&b, root);
			kiln_buf_put(&b, p, len);
			p += len;
			if (*p == '\n')
				kiln_buf_put(&b, p++, 1);
		}
		int rc = env_set(env, b.ptr ? b.ptr : kv);
		kiln_buf_release(&b);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* bubblewrap's arguments up to the command: ROOT as /, read-only, with /proc, /dev, a /tmp, NVIDIA's
 * devices when this machine has them, the working directory and the image's Env only. */
static int bwrap_args(struct strv *a, const json_t *config, const char *root, const char *workdir)
{
	const char *const fixed[] = {
	    "bwrap",         "--ro-bind",  root,      "/",    "--proc",        "/proc",
	    "--dev",         "/dev",       "--tmpfs", "/tmp", "--unshare-pid", "--unshare-ipc",
	    "--unshare-uts", "--clearenv", NULL};
	for (size_t i = 0; fixed[i]; i++)
		if (strv_add(a, fixed[i]) < 0)
			return -1;
	glob_t g = {0};
	if (glob("/dev/nvidia*", 0, NULL, &g) == 0)
		for (size_t i = 0; i < g.gl_pathc; i++)
			if (strv_add(a, "--dev-bind") < 0 || strv_add(a, g.gl_pathv[i]) < 0 ||
			    strv_add(a, g.gl_pathv[i]) < 0) {
				globfree(&g);
				return -1;
			}
	globfree(&g);
	if (strv_add(a, "--chdir") < 0 || strv_add(a, workdir) < 0)
		return -1;
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(json_object_get(config, "config"), "Env"), i, v)
	{
		const char *kv = json_string_value(v);
		const char *eq = kv ? strchr(kv, '=') : NULL;
		if (!eq)
			continue;
		if (strv_add(a, "--setenv") < 0 || strv_addf(a, "%.*s", (int)(eq - kv), kv) < 0 ||
		    strv_add(a, eq + 1) < 0)
			return -1;
	}
	return 0;
}

/* Add NAME=VALUE to the command's environment: to ENV (native) or as bwrap --setenv arguments (ARGS). */
static int add_env(const struct predict_runtime *rt, struct strv *env, struct strv *args, const char *kv)
{
	if (rt->kind == RUNTIME_NATIVE)
		return env_set(env, kv);
	const char *eq = strchr(kv, '=');
	if (!eq)
		return 0;
	if (strv_add(args, "--setenv") < 0 || strv_addf(args, "%.*s", (int)(eq - kv), kv) < 0 ||
	    strv_add(args, eq + 1) < 0)
		return -1;
	return 0;
}

int predict_runtime_option(enum predict_runtime_kind *out, const char *arg)
{
	static const char *const names[] = {
	    [RUNTIME_AUTO] = "auto", [RUNTIME_NATIVE] = "native", [RUNTIME_BWRAP] = "bwrap"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(arg, names[i]) == 0) {
			*out = (enum predict_runtime_kind)i;
			return 0;
		}
	return cli_usage_error("--runtime: '%s' is not auto, native or bwrap", arg);
}

/*
 * serve.weights: registry: the weights cache (KILN_WEIGHTS_DIR, else the store's weights/) into rt->weights,
 * with the blobs the store holds put there; the shim fetches the others from the image's repository.
 * Only under bubblewrap, where the cache is mounted where the image's links point.
 */
static int registry_weights(struct predict_runtime *rt, struct kiln_store *s, const json_t *config,
                            struct kiln_error **err)
{
	json_auto_t *list = NULL;
	if (kiln_weights_registry_of(&list, config, err) < 0)
		return -1;
	if (list == NULL)
		return 0;
	if (rt->kind != RUNTIME_BWRAP)
		return kiln_error_set(
		    err, KILN_EINVAL,
		    "the image's weights are in the registry (serve.weights: registry): it runs "
		    "only under bubblewrap (--runtime bwrap), which mounts the weights cache where "
		    "its links point");
	const char *dir = getenv("KILN_WEIGHTS_DIR");
	if (dir && *dir) {
		if ((rt->weights = strdup(dir)) == NULL)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
	} else if (kiln_store_private_dir(&rt->weights, s, "weights", err) < 0) {
		return -1;
	}
	size_t n = json_array_size(list), placed = 0;
	struct kiln_weight_blob *b = calloc(n + 1, sizeof(*b));
	if (b == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const json_t *w = json_array_get(list, i);
		b[i] = (struct kiln_weight_blob){.digest = json_string_value(json_object_get(w, "digest")),
		                                 .size =
		                                     (uint64_t)json_integer_value(json_object_get(w, "size")),
		                                 .name = json_string_value(json_object_get(w, "path"))};
	}
	int rc = kiln_weights_from_store(rt->weights, s, b, n, &placed, err);
	free(b);
	if (rc < 0)
		return kiln_error_wrap(err, "the weights cache '%s'", rt->weights);
	if (placed)
		infof("weights: %zu of %zu files put in the cache %s from the store", placed, n, rt->weights);
	return 0;
}

int predict_runtime_prepare(struct predict_runtime *rt, struct kiln_store *s, const char *manifest_digest,
                            const json_t *config, enum predict_runtime_kind kind,
                            const struct kiln_registry_options *ropt, struct kiln_error **err)
{
	memset(rt, 0, sizeof(*rt));
	rt->pid = -1;
	json_auto_t *manifest = NULL;
	if (kiln_store_json_read(s, manifest_digest, 4 << 20, &manifest, err) < 0)
		return -1;
	json_t *layers = json_object_get(manifest, "layers");
	if (!json_is_array(layers))
		return kiln_error_set(err, KILN_EINVAL, "image %s: its manifest has no layers",
		                      manifest_digest);
	size_t own = first_own_layer(layers);
	const json_t *ep = json_object_get(json_object_get(config, "config"), "Entrypoint");
	if (json_array_size(ep) == 0 || own == json_array_size(layers))
		return kiln_error_set(err, KILN_EINVAL,
		                      "image %s was not built by kiln with its shim (no runtime layer)",
		                      manifest_digest);
	if (kind == RUNTIME_AUTO) {
		/* a base of no layers (scratch) has no Python to run the model with: native */
		const char *why = own == 0 ? "the image is on scratch: its layers with this machine's Python"
		                  : !bwrap_works() ? "bubblewrap cannot make namespaces here: the image's "
		                                     "own layers with this machine's Python"
		                                   : NULL;
		struct kiln_error *e = NULL;
		if (!why && fetch_base(s, layers, own, ropt, &e) < 0)
			why = "the base's layers cannot be had: the image's own layers with this machine's "
			      "Python";
		if (e)
			infof("%s", e->message);
		kiln_error_free(e);
		kind = why ? RUNTIME_NATIVE : RUNTIME_BWRAP;
		infof("runtime: %s (%s)", why ? "native" : "bwrap",
		      why ? why : "the whole image under bubblewrap");
	} else if (kind == RUNTIME_BWRAP) {
		if (!bwrap_works())
			return kiln_error_set(
			    err, KILN_EFAIL,
			    "--runtime bwrap: bubblewrap is missing or cannot make namespaces here");
		if (fetch_base(s, layers, own, ropt, err) < 0)
			return -1;
	}
	rt->kind = kind;
	if (registry_weights(rt, s, config, err) < 0)
		return -1;

	/* the cache: HOME/run/<digest>-<native|full>, made once (unpacked aside, renamed into place) */
	const char *hex = strchr(manifest_digest, ':') ? strchr(manifest_digest, ':') + 1 : manifest_digest;
	if (asprintf(&rt->root, "%s/run/%.32s-%s", kiln_store_home(s), hex,
	             kind == RUNTIME_BWRAP ? "full" : "native") < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	/* run/ is this user's alone: the roots hold whatever the images hold (an older kiln made it 0755) */
	_cleanup_free_ char *runs = NULL;
	if (kiln_store_private_dir(&runs, s, "run", err) < 0)
		return -1;
	struct stat st;
	if (stat(rt->root, &st) != 0) {
		struct kiln_unpack_options uo = {.cancel = &cli_interrupted};
		if (kind == RUNTIME_NATIVE) { /* the weights from their cache, linked */
			uo.place = place_weights;
			uo.ctx = s;
		}
		struct kiln_unpack_stats us = {0};
		if (kiln_unpack_image(s, manifest_digest, kind == RUNTIME_BWRAP ? 0 : own, rt->root, &uo, &us,
		                      err) < 0)
			return kiln_error_wrap(err, "cannot unpack the image");
		if (us.sum.skipped)
			warnf("%" PRIu64
			      " device node%s or socket%s of the image %s not made in its root (kiln "
			      "unpacks without privileges; the sandbox has a /dev of its own)",
			      us.sum.skipped, us.sum.skipped == 1 ? "" : "s", us.sum.skipped == 1 ? "" : "s",
			      us.sum.skipped == 1 ? "was" : "were");
	}
	/* bubblewrap mounts /proc, /dev and /tmp on the read-only root: their mount points must be there
	 * (made in the root by name: an image's link there is left for bubblewrap, in its own namespace) */
	static const char *const mounts[] = {
	    "proc", "dev", "tmp", "var", "var/lib", "var/lib/kiln", "var/lib/kiln/weights"};
	_cleanup_close_ int rootfd =
	    kind == RUNTIME_BWRAP ? open(rt->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (kind == RUNTIME_BWRAP && rootfd < 0)
		return kiln_error_errno(err, errno, "cannot open '%s'", rt->root);
	for (size_t k = 0; kind == RUNTIME_BWRAP && k < sizeof(mounts) / sizeof(mounts[0]); k++)
		if (mkdirat(rootfd, mounts[k], 0755) < 0 && errno != EEXIST)
			return kiln_error_errno(err, errno, "cannot make '%s/%s'", rt->root, mounts[k]);
	return 0;
}

const char *predict_runtime_workdir(const json_t *config)
{
	const char *w = json_string_value(json_object_get(json_object_get(config, "config"), "WorkingDir"));
	return w && *w == '/' ? w : "/src";
}

int predict_runtime_command(struct predict_command *out, const struct predict_runtime *rt,
                            const json_t *config, const char *project, bool attached, char *const *envs,
                            size_t n, char *const *cmd, struct kiln_error **err)
{
	memset(out, 0, sizeof(*out));
	const char *workdir = predict_runtime_workdir(config);
	struct strv args = {0}, env = {0};
	int rc = 0;
	if (rt->kind == RUNTIME_NATIVE) {
		rc = native_env(&env, config, rt->root);
		if (rc == 0 && !(out->cwd = project ? strdup(project) : kiln_path_join(rt->root, workdir)))
			rc = -1;
	} else {
		rc = bwrap_args(&args, config, rt->root, workdir);
		if (rc == 0 && !attached)
			rc = strv_add(&args, "--die-with-parent");
		/* the weights cache where the image's links point (the shim fills what it lacks) */
		if (rc == 0 && rt->weights)
			rc = strv_add(&args, "--bind") < 0 || strv_add(&args, rt->weights) < 0 ||
			             strv_add(&args, KILN_WEIGHTS_IMAGE_DIR) < 0
			         ? -1
			         : 0;
		/* the project over the image's copy of it, as cog exec mounts it at /src */
		if (rc == 0 && project)
			rc = strv_add(&args, "--bind") < 0 || strv_add(&args, project) < 0 ||
			             strv_add(&args, workdir) < 0
			         ? -1
			         : 0;
	}
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = add_env(rt, &env, &args, envs[i]);
	if (rc == 0 && rt->kind == RUNTIME_BWRAP)
		rc = strv_add(&args, "--");
	for (size_t i = 0; rc == 0 && cmd[i]; i++)
		rc = strv_add(&args, cmd[i]);
	if (rc == 0 && rt->kind == RUNTIME_BWRAP)
		for (char **e = environ; rc == 0 && *e; e++)
			rc = strv_add(&env, *e);
	if (rc < 0 || !args.v || !env.v) {
		strv_free(&args);
		strv_free(&env);
		free(out->cwd);
		out->cwd = NULL;
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	out->argv = args.v;
	out->envp = env.v;
	return 0;
}

void predict_command_release(struct predict_command *c)
{
	for (char **p = c->argv; p && *p; p++)
		free(*p);
	for (char **p = c->envp; p && *p; p++)
		free(*p);
	free(c->argv);
	free(c->envp);
	free(c->cwd);
	memset(c, 0, sizeof(*c));
}

int predict_runtime_shim_command(struct predict_command *out, const struct predict_runtime *rt,
                                 const json_t *config, const char *host, const char *port, bool attached,
                                 char *const *envs, size_t n, char *const *args, size_t nargs,
                                 struct kiln_error **err)
{
	/* the image's Entrypoint (native: its files under the root), on the image's own code */
	const json_t *ep = json_object_get(json_object_get(config, "config"), "Entrypoint");
	bool native = rt->kind == RUNTIME_NATIVE;
	const char *workdir = predict_runtime_workdir(config);
	struct strv cmd = {0};
	int rc = 0;
	size_t i;
	json_t *v;
	json_array_foreach(ep, i, v)
	{
		const char *a = json_string_value(v);
		if (rc == 0)
			rc = native && a && strncmp(a, "/.kiln/", 7) == 0
			         ? strv_addf(&cmd, "%s%s", rt->root, a)
			         : strv_add(&cmd, a ? a : "");
	}
	if (rc == 0)
		rc = strv_addf(&cmd, "--project=%s%s", native ? rt->root : "", workdir);
	if (rc == 0 && host)
		rc = strv_addf(&cmd, "--host=%s", host);
	if (rc == 0 && port)
		rc = strv_addf(&cmd, "--port=%s", port);
	for (size_t k = 0; rc == 0 && k < nargs; k++)
		rc = strv_add(&cmd, args[k]);
	if (rc < 0) {
		strv_free(&cmd);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	rc = predict_runtime_command(out, rt, config, NULL, attached, envs, n, cmd.v, err);
	strv_free(&cmd);
	return rc;
}

int predict_runtime_start(struct predict_runtime *rt, struct kiln_store *s, const char *manifest_digest,
                          const json_t *config, enum predict_runtime_kind kind, char *const *envs, size_t n,
                          const char *setup_timeout, const struct kiln_registry_options *ropt,
                          struct kiln_error **err)
{
	if (predict_runtime_prepare(rt, s, manifest_digest, config, kind, ropt, err) < 0)
		return -1;
	if (asprintf(&rt->log, "%s.%d.log", rt->root, (int)getpid()) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	int port = free_port();
	if (port < 0)
		return kiln_error_errno(err, errno, "cannot find a free port on 127.0.0.1");
	snprintf(rt->url, sizeof(rt->url), "http://127.0.0.1:%d", port);

	struct strv env = {0};
	int rc = 0;
	for (size_t k = 0; rc == 0 && k < n; k++)
		rc = strv_add(&env, envs[k]);
	if (rc == 0 && setup_timeout)
		rc = strv_addf(&env, "COG_SETUP_TIMEOUT=%s", setup_timeout);
	char portarg[16];
	snprintf(portarg, sizeof(portarg), "%d", port);
	struct predict_command c = {0};
	if (rc < 0)
		rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
	else
		rc = predict_runtime_shim_command(&c, rt, config, "127.0.0.1", portarg, false, env.v, env.n,
		                                  NULL, 0, err);
	strv_free(&env);
	if (rc < 0)
		return -1;

	/* its own process group: Ctrl-C reaches kiln, which cancels the prediction and then stops the shim */
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, rt->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (c.cwd)
		posix_spawn_file_actions_addchdir_np(&fa, c.cwd);
	rc = posix_spawnp(&rt->pid, c.argv[0], &fa, &attr, c.argv, c.envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rc != 0) {
		rt->pid = -1;
		kiln_error_errno(err, rc, "cannot start '%s'", c.argv[0]);
	}
	predict_command_release(&c);
	return rc != 0 ? -1 : 0;
}

bool predict_runtime_alive(struct predict_runtime *rt)
{
	if (rt->pid <= 0)
		return false;
	int status;
	pid_t r = waitpid(rt->pid, &status, WNOHANG);
	if (r == rt->pid || (r < 0 && errno == ECHILD)) {
		rt->pid = -1;
		return false;
	}
	return true;
}

void predict_runtime_stop(struct predict_runtime *rt, bool keep_log)
{
	if (rt->pid > 0) {
		kill(rt->pid, SIGTERM);
		for (int i = 0; i < 100 && predict_runtime_alive(rt); i++) {
			struct timespec t = {0, 100 * 1000 * 1000};
			nanosleep(&t, NULL);
		}
		if (rt->pid > 0) {
			kill(rt->pid, SIGKILL);
			waitpid(rt->pid, NULL, 0);
		}
		rt->pid = -1;
	}
	if (rt->log && !keep_log)
		unlink(rt->log);
	free(rt->log);
	free(rt->root);
	free(rt->weights);
	rt->log = rt->root = rt->weights = NULL;
}
