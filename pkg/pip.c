/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pip.c: python_requirements and python_packages installed by the base's own pip under bubblewrap. pip
 * resolves first (--dry-run --report); what it resolved is installed with --no-deps into a staging
 * directory, split by each distribution's RECORD: a distribution of 64 MiB or more gets a layer of its
 * own (cached on its name, version and archive hash), the rest one bundle (cached on the set).
 */
#include "pkg/pip.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/pool.h"
#include "layers/join.h"
#include "layers/tar.h"
#include "pkg/pip_req.h"
#include "pkg/sandbox.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define PIP_BIG       (64ull << 20)
#define PIP_WORK      "/tmp/kiln"
#define MAX_REPORT    (64u << 20)
#define MAX_DIST_FILE (1u << 20)

bool kiln_pip_wanted(const struct kiln_manifest *m)
{
	return (m->python_requirements && *m->python_requirements) || m->python_packages.n > 0;
}

static void hex_of(char out[65], const void *data, size_t len)
{
	char d[KILN_DIGEST_LEN];
	kiln_digest_buffer(d, data, len);
	snprintf(out, 65, "%s", kiln_digest_hex(d));
}

int kiln_pip_inputs_key(char out[65], const struct kiln_manifest *m, struct kiln_error **err)
{
	struct kiln_pip_reqs r;
	if (kiln_pip_reqs_scan(&r, m, err) < 0)
		return -1;
	hex_of(out, r.text.ptr ? r.text.ptr : "", r.text.len);
	kiln_pip_reqs_release(&r);
	return 0;
}

/* One distribution pip resolved. */
struct dist {
	char *name, *version;
	char *url;  /* the archive (or directory) pip took it from, as a requirement after "name @ " */
	char *hash; /* "sha256:..." or NULL */
	char key[65];
	/* after installing */
	struct kiln_tar_entry *entries;
	size_t n;
	uint64_t bytes;
	bool cached;                   /* a layer of its own (from the cache or just written) */
	struct kiln_built_layer layer; /* that layer */
	/* a small one: its fragment of the bundle, from an earlier bundle's blob or just written */
	char mkey[65];
	bool member; /* found in the cache (not installed again) */
	char mblob[KILN_DIGEST_LEN];
	uint64_t moff, mlen; /* where in that blob (or in ftmp, just written) */
	size_t files;
	char *ftmp; /* the fragment just written, in the store's tmp/ */
};

struct run {
	const struct kiln_pip_context *c;
	struct kiln_pip_reqs reqs;
	char *work;     /* on this machine; PIP_WORK in the sandbox */
	char *pipcache; /* pip's cache, kept in the store */
	/* the installing pip, started while the first one resolves: it waits for "install" on its stdin */
	struct kiln_sandbox isb;
	struct kiln_sandbox_proc *installer;
	int go;         /* our end of its stdin (a socket: a dead reader is EPIPE, not SIGPIPE) */
	char **created; /* mount points made in the root, removed afterwards */
	size_t ncreated;
	struct kiln_sandbox_bind *binds;
	size_t nbinds;
	char **env;
	struct dist *d;
	size_t nd;
};

static int oom(struct kiln_error **err)
{
	return kiln_error_set(err, KILN_EFAIL, "out of memory");
}

/* Make DEST (and the directories above it) in the root when missing, so bubblewrap can mount there. */
static int mountpoint(struct run *r, const char *dest, bool dir, struct kiln_error **err)
{
	_cleanup_free_ char *p = NULL;
	if (asprintf(&p, "%s%s", r->c->root, dest) < 0)
		return oom(err);
	for (char *s = p + strlen(r->c->root) + 1;; s++) {
		bool last = *s == '\0';
		if (*s != '/' && !last)
			continue;
		*s = '\0';
		struct stat st;
		if (lstat(p, &st) < 0) {
			int fd = last && !dir ? open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644) : -1;
			bool keep = r->c->keep_mountpoints;
			if ((last && !dir ? fd < 0 : mkdir(p, 0755) < 0) && !(keep && errno == EEXIST))
				return kiln_error_errno(err, errno, "cannot make the mount point '%s'", dest);
			if (fd >= 0)
				close(fd);
			char **v = keep ? r->created : realloc(r->created, (r->ncreated + 1) * sizeof(*v));
			if (!keep && (v == NULL || (v[r->ncreated] = strdup(p)) == NULL)) {
				r->created = v ? v : r->created;
				return oom(err);
			}
			r->created = v;
			r->ncreated += !keep; /* in a view it stays (or another kiln made it meanwhile) */
		}
		if (last)
			return 0;
		*s = '/';
	}
}

static int bind_add(struct run *r, const char *src, const char *dest, bool writable, struct kiln_error **err)
{
	struct stat st;
	if (stat(src, &st) < 0)
		return kiln_error_errno(err, errno, "cannot open '%s'", src);
	if (strncmp(dest, PIP_WORK, strlen(PIP_WORK)) != 0 &&
	    mountpoint(r, dest, S_ISDIR(st.st_mode), err) < 0)
		return -1;
	struct kiln_sandbox_bind *b = realloc(r->binds, (r->nbinds + 1) * sizeof(*b));
	if (b == NULL)
		return oom(err);
	r->binds = b;
	b[r->nbinds++] = (struct kiln_sandbox_bind){.src = src, .dest = dest, .writable = writable};
	return 0;
}

static int env_add(struct run *r, size_t *n, const char *fmt, const char *v)
{
	char **e = realloc(r->env, (*n + 2) * sizeof(*e));
	if (e == NULL)
		return -1;
	r->env = e;
	if (asprintf(&e[*n], fmt, v) < 0)
		return -1;
	e[++*n] = NULL;
	return 0;
}

extern char **environ;

/* The sandbox's environment: pip's own variables from kiln's, and what makes the result reproducible. */
static int make_env(struct run *r, struct kiln_error **err)
{
	size_t n = 0;
	char epoch[32];
	snprintf(epoch, sizeof(epoch), "%lld", (long long)(r->c->mtime > 0 ? r->c->mtime : 315532800));
	const char *fixed[] = {
	    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	    "LANG=C.UTF-8",
	    "HOME=" PIP_WORK "/home",
	    "XDG_CONFIG_HOME=" PIP_WORK "/home/.config",
	    "XDG_CONFIG_DIRS=" PIP_WORK "/xdg0:" PIP_WORK "/xdg1",
	    "XDG_CACHE_HOME=" PIP_WORK "/cache",
	    NULL,
	};
	for (size_t i = 0; fixed[i]; i++)
		if (env_add(r, &n, "%s", fixed[i]) < 0)
			return oom(err);
	for (char **e = environ; *e; e++) {
		bool proxy = strncasecmp(*e, "http_proxy=", 11) == 0 ||
		             strncasecmp(*e, "https_proxy=", 12) == 0 || strncasecmp(*e, "no_proxy=", 9) == 0;
		if ((strncmp(*e, "PIP_", 4) == 0 && strncmp(*e, "PIP_CONFIG_FILE=", 16) != 0 &&
		     strncmp(*e, "PIP_CACHE_DIR=", 14) != 0 && strncmp(*e, "PIP_TARGET=", 11) != 0 &&
		     strncmp(*e, "PIP_PREFIX=", 11) != 0 && strncmp(*e, "PIP_ROOT=", 9) != 0) ||
		    proxy)
			if (env_add(r, &n, "%s", *e) < 0)
				return oom(err);
	}
	const char *cf = getenv("PIP_CONFIG_FILE");
	if (env_add(r, &n, "SOURCE_DATE_EPOCH=%s", epoch) < 0 ||
	    env_add(r, &n, "%s", "PIP_BREAK_SYSTEM_PACKAGES=1") < 0 ||
	    env_add(r, &n, "%s", "PIP_DISABLE_PIP_VERSION_CHECK=1") < 0 ||
	    env_add(r, &n, "%s", "PIP_ROOT_USER_ACTION=ignore") < 0 ||
	    env_add(r, &n, "%s", "PIP_NO_INPUT=1") < 0 ||
	    env_add(r, &n, "%s", "PIP_CACHE_DIR=" PIP_WORK "/cache/pip") < 0 ||
	    env_add(r, &n, "%s", "PYTHONHASHSEED=0") < 0 ||
	    (cf && strcmp(cf, "/dev/null") == 0 && env_add(r, &n, "%s", "PIP_CONFIG_FILE=/dev/null") < 0) ||
	    (r->reqs.conf[4] && env_add(r, &n, "%s", "PIP_CONFIG_FILE=" PIP_WORK "/pip.conf") < 0))
		return oom(err);
	return 0;
}

/* Copy the host's pip.conf files into the work directory (pip reads them there, each in its place). */
static int copy_conf(struct run *r, struct kiln_error **err)
{
	for (int i = 0; i < KILN_PIP_CONF_SLOTS; i++) {
		if (r->reqs.conf[i] == NULL)
			continue;
		_cleanup_free_ char *data = NULL, *dst = kiln_path_join(r->work, kiln_pip_conf_slot[i]);
		size_t len;
		if (dst == NULL)
			return oom(err);
		char *slash = strrchr(dst, '/');
		*slash = '\0';
		int rc = kiln_mkdir_p(dst, err);
		*slash = '/';
		if (rc < 0 || kiln_read_file(&data, &len, r->reqs.conf[i], MAX_DIST_FILE, err) < 0 ||
		    kiln_write_file_atomic(dst, data, len, err) < 0)
			return -1;
	}
	return 0;
}

static int prepare(struct run *r, struct kiln_error **err)
{
	const struct kiln_pip_context *c = r->c;
	if (kiln_pip_reqs_scan(&r->reqs, c->m, err) < 0)
		return -1;
	if (asprintf(&r->work, "%s/tmp/%d-pip-XXXXXX", kiln_store_home(c->store), (int)getpid()) < 0)
		return oom(err);
	if (mkdtemp(r->work) == NULL)
		return kiln_error_errno(err, errno, "cannot make a directory in '%s/tmp'",
		                        kiln_store_home(c->store));
	_cleanup_free_ char *home = kiln_path_join(r->work, "home"),
	                    *cache = kiln_path_join(r->work, "cache");
	if (home == NULL || cache == NULL || kiln_mkdir_p(home, err) < 0 || kiln_mkdir_p(cache, err) < 0 ||
	    copy_conf(r, err) < 0 || make_env(r, err) < 0)
		return -1;
	/* the python_packages, as a requirements file (as Cog writes them) */
	struct kiln_buf b = KILN_BUF_INIT;
	for (size_t i = 0; i < c->m->python_packages.n; i++)
		kiln_buf_printf(&b, "%s\n", c->m->python_packages.v[i]);
	_cleanup_free_ char *pk = kiln_path_join(r->work, "packages.txt");
	int rc = pk ? kiln_write_file_atomic(pk, b.ptr ? b.ptr : "", b.len, err) : oom(err);
	kiln_buf_release(&b);
	if (rc < 0)
		return -1;
	/* build.python_overrides' requirements, as pip_req.c read them */
	if (c->m->python_overrides) {
		_cleanup_free_ char *ov = kiln_path_join(r->work, "overrides.txt");
		const struct kiln_buf *o = &r->reqs.overrides;
		if (ov == NULL || kiln_write_file_atomic(ov, o->ptr ? o->ptr : "", o->len, err) < 0)
			return ov ? -1 : oom(err);
	}
	/* pip's cache (index pages, downloads, wheels built from sdists) is kept in the store, so that a
	 * changed requirement does not download the unchanged ones again */
	if (kiln_store_private_dir(&r->pipcache, c->store, "pip-cache", err) < 0)
		return -1;
	if (bind_add(r, r->work, PIP_WORK, true, err) < 0 ||
	    bind_add(r, r->pipcache, PIP_WORK "/cache/pip", true, err) < 0 ||
	    bind_add(r, r->reqs.project, KILN_PIP_SRC, false, err) < 0)
		return -1;
	for (size_t i = 0; i < r->reqs.nbinds; i++)
		if (bind_add(r, r->reqs.binds[i], r->reqs.binds[i], false, err) < 0)
			return -1;
	return 0;
}

static void output_line(void *ctx, const char *line)
{
	const struct kiln_pip_context *c = ctx;
	if (c->on_output)
		c->on_output(c->ctx, line);
}

/* Run pip's ARGV in the base's root; RES has its status and the tail of its output. */
static int run_pip(struct run *r, char *const *argv, struct kiln_sandbox_result *res, struct kiln_error **err)
{
	struct kiln_sandbox sb = {
	    .root = r->c->root,
	    .binds = r->binds,
	    .nbinds = r->nbinds,
	    .env = r->env,
	    .workdir = KILN_PIP_SRC,
	    .on_output = output_line,
	    .ctx = (void *)r->c,
	    .cancel = r->c->cancel,
	};
	return kiln_sandbox_run(&sb, argv, res, err);
}

static int fail_tail(struct kiln_error **err, const struct kiln_sandbox_result *res, const char *what)
{
	return kiln_error_set(err, KILN_EFAIL, "%s (pip exited with status %d):\n%s", what, res->status,
	                      res->tail ? res->tail : "");
}

/* When pip's run failed because the base has no python3 or pip, or a pip older than 22.2 (no --report):
 * the error that says so, and 1; else 0. */
static int no_pip(struct kiln_error **err, const struct kiln_sandbox_result *res)
{
	const char *t = res->tail ? res->tail : "";
	if (res->status == 127 || strstr(t, "python3: not found") ||
	    strstr(t, "No such file or directory: 'python3'") ||
	    (strstr(t, "python3") && strstr(t, "No such file") && !strstr(t, "Traceback")))
		return kiln_error_set(err, KILN_EINVAL,
		                      "the base has no python3 (pip installs python_packages with the "
		                      "base's own Python): use a base with python3 and pip"),
		       1;
	if (strstr(t, "No module named pip") || strstr(t, "No module named 'pip'"))
		return kiln_error_set(err, KILN_EINVAL,
		                      "the base's python3 has no pip: add python3-pip to system_packages (or "
		                      "use a base with pip)"),
		       1;
	if (strstr(t, "no such option: --report") || strstr(t, "no such option: --dry-run"))
		return kiln_error_set(err, KILN_EINVAL,
		                      "the base's pip is older than 22.2; kiln needs pip 22.2 or later (for "
		                      "--report): add a newer pip to the base (build.pre_install: python3 -m "
		                      "pip install -U pip)"),
		       1;
	return 0;
}

/* The base's pip is new enough for --report (22.2), as its pip/__init__.py says (read, not run: a pip
 * that is not found is left to pip's own run to report). */
static int check_pip(struct run *r, struct kiln_error **err)
{
	_cleanup_free_ char *pat = NULL;
	if (asprintf(
	        &pat,
	        "%s/usr/{lib/python3,lib/python3*,local/lib/python3*}/{dist,site}-packages/pip/__init__.py",
	        r->c->root) < 0)
		return oom(err);
	glob_t g = {0};
	int rc = 0;
	if (glob(pat, GLOB_BRACE, NULL, &g) == 0) {
		_cleanup_free_ char *text = NULL;
		size_t len = 0;
		struct kiln_error *e = NULL;
		const char *v = NULL;
		int major = 0, minor = 0;
		if (kiln_read_file(&text, &len, g.gl_pathv[0], MAX_DIST_FILE, &e) == 0 &&
		    (v = strstr(text, "__version__ = ")) != NULL && (v[14] == '"' || v[14] == '\'') &&
		    sscanf(v + 15, "%d.%d", &major, &minor) == 2 &&
		    (major < 22 || (major == 22 && minor < 2)))
			rc = kiln_error_set(
			    err, KILN_EINVAL,
			    "the base's pip is %d.%d; kiln needs pip 22.2 or later (for --report): "
			    "add a newer pip to the base (build.pre_install: python3 -m pip install "
			    "-U pip)",
			    major, minor);
		kiln_error_free(e);
	}
	globfree(&g);
	return rc;
}

/* The name pip could not find, from its tail ("No matching distribution found for NAME"), or NULL. */
static char *missing_name(const char *tail)
{
	const char *p = tail ? strstr(tail, "No matching distribution found for ") : NULL;
	if (p == NULL)
		return NULL;
	p += strlen("No matching distribution found for ");
	return strndup(p, strcspn(p, " \n\r"));
}

/* Where the manifest's file Q (the requirements, the overrides) is in the sandbox. */
static char *file_in_sandbox(struct run *r, const char *q)
{
	_cleanup_free_ char *full =
	    q[0] == '/' ? strdup(q) : kiln_path_join(r->c->m->dir ? r->c->m->dir : ".", q);
	_cleanup_free_ char *real = full ? realpath(full, NULL) : NULL;
	if (real == NULL)
		return NULL;
	size_t n = strlen(r->reqs.project);
	char *out = NULL;
	if (strncmp(real, r->reqs.project, n) == 0 && real[n] == '/')
		return asprintf(&out, "%s%s", KILN_PIP_SRC, real + n) < 0 ? NULL : out;
	return steal_pointer(&real);
}

static const char *jstr(json_t *o, const char *path)
{
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", path);
	char *save = NULL;
	for (char *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save))
		o = json_object_get(o, k);
	return json_string_value(o);
}

static int dist_cmp(const void *a, const void *b)
{
	const struct dist *x = a, *y = b;
	return strcasecmp(x->name, y->name);
}

/* pip's report: what it would install (a distribution the base already has is not there). */
static int read_report(struct run *r, struct kiln_error **err)
{
	_cleanup_free_ char *path = kiln_path_join(r->work, "report.json");
	json_error_t je;
	json_t *rep = path ? json_load_file(path, 0, &je) : NULL;
	if (rep == NULL)
		return kiln_error_set(err, KILN_EFAIL, "cannot read pip's report: %s",
		                      path ? je.text : "out of memory");
	json_t *inst = json_object_get(rep, "install");
	size_t n = json_array_size(inst);
	r->d = calloc(n + 1, sizeof(*r->d));
	if (r->d == NULL) {
		json_decref(rep);
		return oom(err);
	}
	size_t i;
	json_t *it;
	json_array_foreach(inst, i, it)
	{
		const char *name = jstr(it, "metadata.name"), *version = jstr(it, "metadata.version");
		const char *url = jstr(it, "download_info.url");
		if (!name || !version || !url) {
			json_decref(rep);
			return kiln_error_set(err, KILN_EFAIL,
			                      "pip's report has an entry without name, version or url");
		}
		struct dist *d = &r->d[r->nd++];
		const char *h = jstr(it, "download_info.archive_info.hashes.sha256");
		const char *h1 = jstr(it, "download_info.archive_info.hash");
		const char *vcs = jstr(it, "download_info.vcs_info.vcs"),
		           *commit = jstr(it, "download_info.vcs_info.commit_id");
		d->name = strdup(name);
		d->version = strdup(version);
		if (vcs && commit)
			(void)!asprintf(&d->url, "%s+%s@%s", vcs, url, commit);
		else
			d->url = strdup(url);
		if (h)
			(void)!asprintf(&d->hash, "sha256:%s", h);
		else if (h1 && strncmp(h1, "sha256=", 7) == 0)
			(void)!asprintf(&d->hash, "sha256:%s", h1 + 7);
		if (!d->name || !d->version || !d->url) {
			json_decref(rep);
			return oom(err);
		}
		/* a layer of its own is cached on the layers under it, the name, version and archive */
		struct kiln_buf k = KILN_BUF_INIT;
		kiln_buf_printf(&k, "kiln-pip-dist 1\n%s\n%lld\n%s\n%s\n%s\n", r->c->chain_key,
		                (long long)r->c->mtime, d->name, d->version, d->hash ? d->hash : d->url);
		hex_of(d->key, k.ptr, k.len);
		kiln_buf_release(&k);
		/* and its fragment of a bundle, on the same */
		k = (struct kiln_buf)KILN_BUF_INIT;
		kiln_buf_printf(&k, "kiln-pip-member 1\n%s\n%lld\n%s\n%s\n%s\n", r->c->chain_key,
		                (long long)r->c->mtime, d->name, d->version, d->hash ? d->hash : d->url);
		hex_of(d->mkey, k.ptr, k.len);
		kiln_buf_release(&k);
	}
	json_decref(rep);
	qsort(r->d, r->nd, sizeof(*r->d), dist_cmp);
	return 0;
}

/* pip install, exactly as resolved (install.txt), started now to wait for its go: Python and pip's
 * modules load while the first pip resolves, on another CPU. cwd and the project are off sys.path, as
 * `python3 -m pip` has them. */
static const char installer_py[] =
    "import sys\n"
    "sys.path = [p for p in sys.path if p not in ('', '" KILN_PIP_SRC "')]\n"
    "from pip._internal.cli.main import main\n"
    "import pip._internal.commands.install\n"
    "if sys.stdin.readline().strip() != 'install':\n"
    "    sys.exit(0)\n"
    "sys.exit(main(['install', '--root', '" PIP_WORK "/stage', '--ignore-installed', '--no-deps',\n"
    "               '--no-warn-script-location', '-r', '" PIP_WORK "/install.txt']))\n";

static int start_installer(struct run *r, struct kiln_error **err)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return kiln_error_errno(err, errno, "cannot make a socket pair");
	r->isb = (struct kiln_sandbox){
	    .root = r->c->root,
	    .binds = r->binds,
	    .nbinds = r->nbinds,
	    .env = r->env,
	    .workdir = KILN_PIP_SRC,
	    .on_output = output_line,
	    .ctx = (void *)r->c,
	    .cancel = r->c->cancel,
	    .stdin_fd = sv[1],
	};
	char *argv[] = {"python3", "-c", (char *)installer_py, NULL};
	int rc = kiln_sandbox_start(&r->installer, &r->isb, argv, err);
	close(sv[1]);
	if (rc < 0) {
		close(sv[0]);
		return kiln_error_wrap(err, "cannot run pip");
	}
	r->go = sv[0];
	return 0;
}

/* The installer, when it is not needed after all. */
static void stop_installer(struct run *r)
{
	if (r->go > 0)
		close(r->go);
	r->go = -1;
	kiln_sandbox_stop(r->installer);
	r->installer = NULL;
}

/*
 * pip install --dry-run --report, as `python3 -m pip` runs it, with one thing kept between builds: pip
 * hashes each local archive it considers for its report (hundreds of MiB of wheels in a --find-links
 * directory, on every change of a requirement). Its hash_file is wrapped to remember each file's hash
 * on its path and stat fingerprint (size, mtime, inode, ctime) in pip's kept cache; a pip without that
 * function runs unwrapped.
 *
 * With --kiln-overrides FILE SHOWN (build.python_overrides, Cog's overrides as uv takes them; FILE its
 * requirements as pip_req.c read them, "LINE<TAB>REQUIREMENT" each), each
 * requirement of a name the file lists, the project's own and every distribution's dependency alike, is
 * replaced by the file's (its extras added, its own environment marker kept): the resolver sees only the
 * override. A line whose marker does not match the base's Python is left out; two lines for one name,
 * a line that is no requirement, or a pip without the resolver's hook are errors naming SHOWN:LINE.
 */
static const char resolver_py[] =
    "import json, os, sys\n"
    "sys.path = [p for p in sys.path if p not in ('', '" KILN_PIP_SRC "')]\n"
    "from pip._internal.cli.main import main\n"
    "db, path = None, '" PIP_WORK "/cache/pip/kiln-hashes.json'\n"
    "try:\n"
    "    from pip._internal.operations import prepare\n"
    "    plain = prepare.hash_file\n"
    "    try:\n"
    "        with open(path) as f:\n"
    "            db = json.load(f)\n"
    "    except (OSError, ValueError):\n"
    "        db = {}\n"
    "    class Known:\n"
    "        def __init__(self, h):\n"
    "            self.h = h\n"
    "        def hexdigest(self):\n"
    "            return self.h\n"
    "    def hash_file(p, *args, **kwargs):\n"
    "        st = os.stat(p)\n"
    "        key = '%s %d %d %d %d' % (os.path.realpath(p), st.st_size, st.st_mtime_ns, st.st_ino, "
    "st.st_ctime_ns)\n"
    "        if key in db:\n"
    "            return Known(db[key]), st.st_size\n"
    "        h, n = plain(p, *args, **kwargs)\n"
    "        if h.name == 'sha256':\n"
    "            db[key] = h.hexdigest()\n"
    "        return h, n\n"
    "    prepare.hash_file = hash_file\n"
    "except (ImportError, AttributeError):\n"
    "    pass\n"
    "if sys.argv[1:2] == ['--kiln-overrides']:\n"
    "    opath, oname = sys.argv[2], sys.argv[3]\n"
    "    del sys.argv[1:4]\n"
    "    from pip._vendor.packaging.requirements import Requirement\n"
    "    from pip._vendor.packaging.utils import canonicalize_name\n"
    "    def refuse(n, msg):\n"
    "        at = '%s:%d' % (oname, n) if n else oname\n"
    "        sys.stderr.write('kiln-overrides: %s: build.python_overrides: %s\\n' % (at, msg))\n"
    "        sys.exit(2)\n"
    "    over, where = {}, {}\n"
    "    with open(opath) as f:\n"
    "        lines = [l.split('\\t', 1) for l in f.read().splitlines()]\n"
    "    for n, line in ((int(n), line) for n, line in lines):\n"
    "        try:\n"
    "            o = Requirement(line)\n"
    "        except Exception as e:\n"
    "            refuse(n, str(e))\n"
    "        if o.marker is not None and not o.marker.evaluate():\n"
    "            continue\n"
    "        key = canonicalize_name(o.name)\n"
    "        if key in over:\n"
    "            refuse(n, 'a second override of %s (the first is line %d)' % (o.name, where[key]))\n"
    "        o.marker = None\n"
    "        over[key], where[key] = o, n\n"
    "    from pip._internal.resolution.resolvelib import factory\n"
    "    hook = '_make_requirement_from_install_req'\n"
    "    if not hasattr(factory.Factory, hook):\n"
    "        hook = '_make_requirements_from_install_req'\n"
    "    if not hasattr(factory.Factory, hook):\n"
    "        refuse(0, \"the base's pip has no resolver hook kiln applies overrides with\")\n"
    "    plain_make = getattr(factory.Factory, hook)\n"
    "    def make(self, ireq, requested_extras):\n"
    "        o = over.get(canonicalize_name(ireq.name)) if ireq.name and not ireq.constraint else None\n"
    "        if o is not None and ireq.req is not None:\n"
    "            r = Requirement(str(o))\n"
    "            r.extras = set(r.extras) | set(ireq.req.extras)\n"
    "            r.marker = ireq.req.marker\n"
    "            cf = ireq.comes_from\n"
    "            new = self._make_install_req_from_spec(str(r), None if isinstance(cf, str) else cf)\n"
    "            new.comes_from, new.user_supplied = cf, ireq.user_supplied\n"
    "            ireq = new\n"
    "        return plain_make(self, ireq, requested_extras)\n"
    "    setattr(factory.Factory, hook, make)\n"
    "rc = main(sys.argv[1:])\n"
    "if db is not None:\n"
    "    try:\n"
    "        with open(path + '.%d' % os.getpid(), 'w') as f:\n"
    "            json.dump(db, f)\n"
    "        os.replace(path + '.%d' % os.getpid(), path)\n"
    "    except OSError:\n"
    "        pass\n"
    "sys.exit(rc)\n";

static int resolve(struct run *r, struct kiln_error **err)
{
	const struct kiln_manifest *m = r->c->m;
	_cleanup_free_ char *req = m->python_requirements ? file_in_sandbox(r, m->python_requirements) : NULL;
	if (m->python_requirements && req == NULL)
		return kiln_error_errno(err, errno, "python_requirements: cannot open '%s'",
		                        m->python_requirements);
	char *argv[20];
	size_t a = 0;
	argv[a++] = "python3";
	argv[a++] = "-c";
	argv[a++] = (char *)resolver_py;
	if (m->python_overrides) {
		argv[a++] = "--kiln-overrides";
		argv[a++] = PIP_WORK "/overrides.txt";
		argv[a++] = m->python_overrides;
	}
	const char *const head[] = {"install", "--dry-run", "--report", PIP_WORK "/report.json", NULL};
	for (size_t i = 0; head[i]; i++)
		argv[a++] = (char *)head[i];
	if (req) {
		argv[a++] = "-r";
		argv[a++] = req;
	}
	if (r->c->m->python_packages.n) {
		argv[a++] = "-r";
		argv[a++] = PIP_WORK "/packages.txt";
	}
	argv[a] = NULL;
	struct kiln_sandbox_result res = {0};
	if (run_pip(r, argv, &res, err) < 0)
		return kiln_error_wrap(err, "cannot run pip");
	int rc = 0;
	const char *refused = res.tail ? strstr(res.tail, "kiln-overrides: ") : NULL;
	if (res.status != 0 && no_pip(err, &res)) {
		rc = KILN_EINVAL;
	} else if (res.status != 0 && refused) {
		refused += strlen("kiln-overrides: ");
		rc = kiln_error_set(err, KILN_EINVAL, "%.*s", (int)strcspn(refused, "\n"), refused);
	} else if (res.status != 0) {
		_cleanup_free_ char *name = missing_name(res.tail);
		if (name) {
			_cleanup_free_ char *what = NULL;
			rc = asprintf(&what, "no distribution of '%s' in the package index", name) < 0
			         ? oom(err)
			         : fail_tail(err, &res, what);
		} else {
			rc = fail_tail(err, &res, "pip cannot resolve the requirements");
		}
	}
	kiln_sandbox_result_release(&res);
	return rc < 0 ? rc : read_report(r, err);
}

/* Install the distributions not cached into the work directory's stage/, exactly as resolved. */
static int install(struct run *r, struct kiln_error **err)
{
	struct kiln_buf b = KILN_BUF_INIT;
	bool hashes = true;
	size_t todo = 0;
	for (size_t i = 0; i < r->nd; i++)
		if (!r->d[i].cached && !r->d[i].member) {
			hashes = hashes && r->d[i].hash;
			todo++;
		}
	if (todo == 0) {
		stop_installer(r);
		return 0;
	}
	for (size_t i = 0; i < r->reqs.nopts; i++) /* for the build dependencies of sdists */
		kiln_buf_printf(&b, "%s\n", r->reqs.opts[i]);
	for (size_t i = 0; i < r->nd; i++)
		if (!r->d[i].cached && !r->d[i].member) {
			kiln_buf_printf(&b, "%s @ %s", r->d[i].name, r->d[i].url);
			if (hashes)
				kiln_buf_printf(&b, " --hash=%s", r->d[i].hash);
			kiln_buf_puts(&b, "\n");
		}
	_cleanup_free_ char *path = kiln_path_join(r->work, "install.txt");
	int rc = path ? kiln_write_file_atomic(path, b.ptr, b.len, err) : oom(err);
	kiln_buf_release(&b);
	if (rc < 0)
		return -1;
	/* a dead installer (EPIPE) tells why on its output, read by the wait */
	(void)!send(r->go, "install\n", 8, MSG_NOSIGNAL);
	close(r->go);
	r->go = -1;
	struct kiln_sandbox_result res = {0};
	struct kiln_sandbox_proc *p = r->installer;
	r->installer = NULL;
	if (kiln_sandbox_wait(p, &res, err) < 0)
		return kiln_error_wrap(err, "cannot run pip");
	if (res.status != 0) {
		const char *t = res.tail ? res.tail : "";
		const char *f = strstr(t, "Failed to build ");
		_cleanup_free_ char *name = f ? strndup(f + 16, strcspn(f + 16, " \n")) : NULL;
		bool nocc = (strstr(t, "gcc") || strstr(t, "cc")) &&
		            (strstr(t, "No such file or directory") || strstr(t, "not found")) &&
		            !strstr(t, "Python.h");
		if (strstr(t, "Python.h: No such file"))
			rc = fail_tail(
			    err, &res,
			    "cannot build a distribution from source: the base lacks Python's headers (add "
			    "python3-dev to system_packages)");
		else if (nocc)
			rc = kiln_error_set(
			    err, KILN_EFAIL,
			    "cannot build '%s' from source: the base has no C compiler (add build-essential "
			    "or gcc to system_packages) (pip exited with status %d):\n%s",
			    name ? name : "an sdist", res.status, t);
		else
			rc = fail_tail(err, &res, "pip cannot install the requirements");
	}
	kiln_sandbox_result_release(&res);
	return rc;
}

/* What the stage holds: every file and link, sorted by path, with the distribution it belongs to. */
struct staged {
	struct kiln_tar_entry *e;
	size_t n, cap;
	long *owner;  /* index into run.d, or -1 */
	char **infos; /* *.dist-info directories (stage-relative) */
	size_t ninfos;
};

static int walk(struct staged *s, const char *top, const char *rel, struct kiln_error **err)
{
	_cleanup_free_ char *dir = rel[0] ? kiln_path_join(top, rel) : strdup(top);
	_cleanup_closedir_ DIR *d = dir ? opendir(dir) : NULL;
	if (d == NULL)
		return kiln_error_errno(err, errno, "cannot read '%s'", dir ? dir : top);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		_cleanup_free_ char *r = rel[0] ? kiln_path_join(rel, de->d_name) : strdup(de->d_name);
		_cleanup_free_ char *full = r ? kiln_path_join(top, r) : NULL;
		struct stat st;
		if (full == NULL)
			return oom(err);
		if (lstat(full, &st) < 0)
			return kiln_error_errno(err, errno, "cannot stat '%s'", full);
		if (S_ISDIR(st.st_mode)) {
			size_t l = strlen(r);
			if (l > 10 && strcmp(r + l - 10, ".dist-info") == 0) {
				char **v = realloc(s->infos, (s->ninfos + 1) * sizeof(*v));
				if (v == NULL)
					return oom(err);
				s->infos = v;
				v[s->ninfos++] = strdup(r);
			}
			if (walk(s, top, r, err) < 0)
				return -1;
			continue;
		}
		if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
			continue;
		if (s->n == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 256;
			struct kiln_tar_entry *e = realloc(s->e, cap * sizeof(*e));
			if (e == NULL)
				return oom(err);
			s->e = e;
			s->cap = cap;
		}
		struct kiln_tar_entry *e = &s->e[s->n];
		*e = (struct kiln_tar_entry){.name = steal_pointer(&r)};
		if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX];
			ssize_t tl = readlink(full, target, sizeof(target) - 1);
			if (tl < 0)
				return kiln_error_errno(err, errno, "cannot read the link '%s'", full);
			target[tl] = '\0';
			e->type = KILN_TAR_SYMLINK;
			e->mode = 0777;
			e->link_target = strdup(target);
		} else {
			e->type = KILN_TAR_FILE;
			e->mode = (st.st_mode & 0111) ? 0755 : 0644;
			e->size = (uint64_t)st.st_size;
			kiln_stat_fp_from(&e->fp, &st);
			e->source = steal_pointer(&full);
		}
		s->n++;
	}
	return 0;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct kiln_tar_entry *)a)->name, ((const struct kiln_tar_entry *)b)->name);
}

/* "Foo.Bar-baz" → "foo_bar_baz": a distribution name as dist-info directories spell it, compared. */
static void norm_name(char *out, size_t cap, const char *s, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 1 < cap; i++) {
		char ch = s[i];
		if (ch == '-' || ch == '.' || ch == '_') {
			if (o == 0 || out[o - 1] != '_')
				out[o++] = '_';
		} else {
			out[o++] = (char)tolower((unsigned char)ch);
		}
	}
	out[o] = '\0';
}

/* RECORD's first field (CSV, maybe quoted) of the line at S; the line's end in *next. */
static char *record_path(const char *s, const char **next)
{
	struct kiln_buf b = KILN_BUF_INIT;
	if (*s == '"') {
		for (s++; *s && !(*s == '"' && s[1] != '"'); s++) {
			if (*s == '"')
				s++;
			kiln_buf_put(&b, s, 1);
		}
	} else {
		size_t n = strcspn(s, ",\n");
		kiln_buf_put(&b, s, n);
	}
	s += strcspn(s, "\n");
	*next = *s ? s + 1 : s;
	return kiln_buf_detach(&b);
}

/* DIR/PATH with "." and ".." folded; NULL when it leaves the top. */
static char *fold(const char *dir, const char *path)
{
	_cleanup_free_ char *j = kiln_path_join(dir, path);
	if (j == NULL)
		return NULL;
	char *parts[PATH_MAX / 2];
	size_t n = 0;
	char *save = NULL;
	for (char *t = strtok_r(j, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
		if (strcmp(t, ".") == 0)
			continue;
		if (strcmp(t, "..") == 0) {
			if (n == 0)
				return NULL;
			n--;
			continue;
		}
		if (n < PATH_MAX / 2)
			parts[n++] = t;
	}
	struct kiln_buf b = KILN_BUF_INIT;
	for (size_t i = 0; i < n; i++)
		kiln_buf_printf(&b, "%s%s", i ? "/" : "", parts[i]);
	return kiln_buf_detach(&b);
}

/* Give each staged file to the distribution whose RECORD lists it. */
static int assign(struct run *r, struct staged *s, const char *stage, struct kiln_error **err)
{
	qsort(s->e, s->n, sizeof(*s->e), entry_cmp);
	s->owner = malloc((s->n + 1) * sizeof(*s->owner));
	if (s->owner == NULL)
		return oom(err);
	for (size_t i = 0; i < s->n; i++)
		s->owner[i] = -1;
	for (size_t k = 0; k < s->ninfos; k++) {
		const char *info = s->infos[k];
		const char *base = strrchr(info, '/') ? strrchr(info, '/') + 1 : info;
		const char *dash = strchr(base, '-');
		char want[256], have[256];
		norm_name(want, sizeof(want), base, dash ? (size_t)(dash - base) : strlen(base) - 10);
		long who = -1;
		for (size_t i = 0; i < r->nd && who < 0; i++) {
			norm_name(have, sizeof(have), r->d[i].name, strlen(r->d[i].name));
			if (strcmp(want, have) == 0)
				who = (long)i;
		}
		if (who < 0)
			continue;
		_cleanup_free_ char *rec = NULL, *rp = NULL, *full = kiln_path_join(info, "RECORD");
		rp = full ? kiln_path_join(stage, full) : NULL;
		size_t len;
		if (rp == NULL || kiln_read_file(&rec, &len, rp, 64u << 20, err) < 0)
			return rp ? kiln_error_wrap(err, "cannot read '%s' of '%s'", "RECORD", r->d[who].name)
			          : oom(err);
		_cleanup_free_ char *site = strdup(info);
		char *sl = site ? strrchr(site, '/') : NULL;
		if (site == NULL)
			return oom(err);
		if (sl)
			*sl = '\0';
		else
			site[0] = '\0';
		for (const char *p = rec, *next; *p; p = next) {
			_cleanup_free_ char *f = record_path(p, &next);
			_cleanup_free_ char *path = f && f[0] && f[0] != '/' ? fold(site, f) : NULL;
			if (path == NULL)
				continue;
			struct kiln_tar_entry key = {.name = path};
			struct kiln_tar_entry *e = bsearch(&key, s->e, s->n, sizeof(*s->e), entry_cmp);
			if (e)
				s->owner[e - s->e] = who;
		}
	}
	return 0;
}

/* Write ENTRIES as a gzip layer into the store. */
static int write_layer(struct run *r, struct kiln_built_layer *out, const struct kiln_tar_entry *e, size_t n,
                       uint64_t *written, struct kiln_error **err)
{
	struct kiln_layer_options lo = {
	    .mtime = r->c->mtime, .fd = -1, .compression = KILN_COMPRESS_GZIP, .cancel = r->c->cancel};
	_cleanup_free_ char *tmp = NULL;
	struct kiln_layer_out lout = {0};
	if (kiln_store_tmpfile(r->c->store, &lo.fd, &tmp, err) < 0)
		return -1;
	if (kiln_layer_write(&lout, e, n, &lo, err) < 0) {
		close(lo.fd);
		unlink(tmp);
		return kiln_error_wrap(err, "cannot write a dependency layer");
	}
	int rc = kiln_store_blob_commit(r->c->store, lo.fd, tmp, lout.digest, err);
	memcpy(out->digest, lout.digest, KILN_DIGEST_LEN);
	memcpy(out->diff_id, lout.diff_id, KILN_DIGEST_LEN);
	out->size = lout.size;
	out->bytes_read = lout.bytes_read;
	*written += lout.size;
	kiln_layer_out_release(&lout);
	return rc;
}

static json_t *layer_json(const struct kiln_built_layer *l)
{
	return json_pack("{s:s,s:s,s:I,s:I}", "digest", l->digest, "diff_id", l->diff_id, "size",
	                 (json_int_t)l->size, "files", (json_int_t)l->files);
}

/* A cached layer, when its blob is still in the store. */
static bool from_cache(struct run *r, const char *key, struct kiln_built_layer *l)
{
	json_t *c = kiln_store_cache_get(r->c->store, key);
	const char *dg = jstr(c, "digest"), *di = jstr(c, "diff_id");
	bool ok = dg && di && kiln_store_blob_exists(r->c->store, dg);
	if (ok) {
		snprintf(l->digest, KILN_DIGEST_LEN, "%s", dg);
		snprintf(l->diff_id, KILN_DIGEST_LEN, "%s", di);
		l->size = (uint64_t)json_integer_value(json_object_get(c, "size"));
		l->files = (size_t)json_integer_value(json_object_get(c, "files"));
		l->cached = true;
	}
	json_decref(c);
	return ok;
}

/* Add one layer (holding the distributions D[I] for which PICK is true) to OUT. */
static int result_add(struct kiln_pip_result *out, struct kiln_built_layer *l, struct run *r,
                      const bool *pick, struct kiln_error **err)
{
	struct kiln_built_layer *ls = realloc(out->layers, (out->n + 1) * sizeof(*ls));
	if (ls == NULL)
		return oom(err);
	out->layers = ls;
	char **cb = realloc(out->created_by, (out->n + 1) * sizeof(*cb));
	if (cb == NULL)
		return oom(err);
	out->created_by = cb;
	struct kiln_buf b = KILN_BUF_INIT, t = KILN_BUF_INIT;
	json_t *names = json_array();
	kiln_buf_puts(&b, "pip install");
	size_t k = 0;
	for (size_t i = 0; i < r->nd; i++)
		if (pick[i]) {
			kiln_buf_printf(&b, " %s==%s", r->d[i].name, r->d[i].version);
			kiln_buf_printf(&t, "%s%s==%s", k++ ? " " : "python packages: ", r->d[i].name,
			                r->d[i].version);
			char *s = NULL;
			if (asprintf(&s, "%s==%s", r->d[i].name, r->d[i].version) >= 0)
				json_array_append_new(names, json_string(s));
			free(s);
		}
	l->kind = KILN_LAYER_DEPS;
	l->media_type = KILN_MEDIA_LAYER_GZIP;
	l->title = kiln_buf_detach(&t);
	ls[out->n] = *l;
	cb[out->n] = kiln_buf_detach(&b);
	out->n++;
	json_array_append_new(out->deps, json_pack("{s:s,s:I,s:o}", "digest", l->digest, "size",
	                                           (json_int_t)l->size, "distributions", names));
	return 0;
}

/* The layers of the big distributions into OUT, by name (the lowest of the dependency layers). */
static int add_big(struct kiln_pip_result *out, struct run *r, bool *pick, struct kiln_error **err)
{
	for (size_t i = 0; i < r->nd; i++) {
		if (!r->d[i].cached)
			continue;
		memset(pick, 0, r->nd);
		pick[i] = true;
		if (result_add(out, &r->d[i].layer, r, pick, err) < 0)
			return -1;
	}
	return 0;
}

/* A warning for each resolved distribution the base already has another copy of: pip installs over it in
 * its own layer, and the base's files stay in the image under it. */
static void warn_shadowed(struct run *r)
{
	_cleanup_free_ char *pat = NULL;
	if (asprintf(&pat, "%s/usr/{lib/python3,local/lib/python3*}/dist-packages/*.dist-info", r->c->root) <
	    0)
		return;
	glob_t g = {0};
	if (glob(pat, GLOB_BRACE | GLOB_NOSORT, NULL, &g) != 0)
		return;
	for (size_t k = 0; k < g.gl_pathc; k++) {
		const char *base = strrchr(g.gl_pathv[k], '/') + 1;
		const char *dash = strchr(base, '-');
		char have[256], want[256];
		norm_name(have, sizeof(have), base, dash ? (size_t)(dash - base) : strlen(base));
		for (size_t i = 0; i < r->nd; i++) {
			norm_name(want, sizeof(want), r->d[i].name, strlen(r->d[i].name));
			if (strcmp(have, want) != 0)
				continue;
			_cleanup_free_ char *line = NULL;
			if (asprintf(&line,
			             "warning: '%s' %s replaces the base's copy (%s); the base's files stay "
			             "in the image under it",
			             r->d[i].name, r->d[i].version, base) >= 0)
				output_line((void *)r->c, line);
		}
	}
	globfree(&g);
}

/* A small distribution's fragment cached from an earlier bundle, when that bundle is still in the store. */
static bool member_cached(struct run *r, struct dist *d)
{
	json_t *c = kiln_store_cache_get(r->c->store, d->mkey);
	const char *blob = jstr(c, "blob");
	json_t *off = json_object_get(c, "offset"), *len = json_object_get(c, "length");
	_cleanup_free_ char *path = blob ? kiln_store_blob_path(r->c->store, blob) : NULL;
	struct stat st;
	bool ok =
	    path && json_is_integer(off) && json_is_integer(len) && stat(path, &st) == 0 &&
	    json_integer_value(off) >= 0 && json_integer_value(len) > 0 &&
	    (uint64_t)json_integer_value(off) + (uint64_t)json_integer_value(len) <= (uint64_t)st.st_size;
	if (ok) {
		snprintf(d->mblob, sizeof(d->mblob), "%s", blob);
		d->moff = (uint64_t)json_integer_value(off);
		d->mlen = (uint64_t)json_integer_value(len);
		d->files = (size_t)json_integer_value(json_object_get(c, "files"));
		d->bytes = (uint64_t)json_integer_value(json_object_get(c, "bytes"));
	}
	json_decref(c);
	return ok;
}

/* One layer or fragment to write from the stage, run on the build's threads. */
struct job {
	struct run *r;
	struct kiln_tar_entry *e; /* its entries (in the stage's array) */
	size_t n;
	bool fragment;
	struct kiln_built_layer *layer; /* a layer: into the store */
	struct dist *d;                 /* a fragment: into d->ftmp */
	uint64_t written;
};

static int run_job(void *ctx, size_t i, struct kiln_error **err)
{
	struct job *j = &((struct job *)ctx)[i];
	struct run *r = j->r;
	if (!j->fragment)
		return write_layer(r, j->layer, j->e, j->n, &j->written, err);
	struct kiln_layer_options lo = {.mtime = r->c->mtime,
	                                .fd = -1,
	                                .compression = KILN_COMPRESS_GZIP,
	                                .cancel = r->c->cancel,
	                                .fragment = true};
	struct kiln_layer_out lout = {0};
	if (kiln_store_tmpfile(r->c->store, &lo.fd, &j->d->ftmp, err) < 0)
		return -1;
	int rc = kiln_layer_write(&lout, j->e, j->n, &lo, err);
	close(lo.fd);
	j->d->moff = 0;
	j->d->mlen = lout.size;
	j->d->files = j->n;
	kiln_layer_out_release(&lout);
	return rc < 0 ? kiln_error_wrap(err, "cannot write the files of '%s'", j->d->name) : 0;
}

/* The bundle: the small distributions' fragments in name order (cached ones copied from their blobs,
 * the rest from REST when it has entries no RECORD names), joined into one layer in the store. */
static int write_bundle(struct run *r, struct kiln_built_layer *bl, const bool *pick, const char *rest,
                        uint64_t rest_len, bool keep_members, uint64_t *written, struct kiln_error **err)
{
	struct kiln_layer_part *parts = calloc(r->nd + 1, sizeof(*parts));
	size_t np = 0;
	int rc = -1, fd = -1;
	_cleanup_free_ char *tmp = NULL;
	if (parts == NULL)
		return oom(err);
	for (size_t i = 0; i < r->nd; i++) {
		if (!pick[i])
			continue;
		struct dist *d = &r->d[i];
		_cleanup_free_ char *path =
		    d->member ? kiln_store_blob_path(r->c->store, d->mblob) : strdup(d->ftmp);
		int pfd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
		if (pfd < 0) {
			rc = path ? kiln_error_errno(err, errno, "cannot open '%s'", path) : oom(err);
			goto out;
		}
		parts[np++] = (struct kiln_layer_part){.fd = pfd, .offset = d->moff, .length = d->mlen};
		bl->files += d->files;
	}
	if (rest) {
		int pfd = open(rest, O_RDONLY | O_CLOEXEC);
		if (pfd < 0) {
			rc = kiln_error_errno(err, errno, "cannot open '%s'", rest);
			goto out;
		}
		parts[np++] = (struct kiln_layer_part){.fd = pfd, .length = rest_len};
	}
	struct kiln_layer_out lout = {0};
	if (kiln_store_tmpfile(r->c->store, &fd, &tmp, err) < 0)
		goto out;
	if (kiln_layer_join(&lout, fd, parts, np, r->c->cancel, err) < 0) {
		kiln_error_wrap(err, "cannot write a dependency layer");
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (kiln_store_blob_commit(r->c->store, fd, tmp, lout.digest, err) < 0)
		goto out;
	memcpy(bl->digest, lout.digest, KILN_DIGEST_LEN);
	memcpy(bl->diff_id, lout.diff_id, KILN_DIGEST_LEN);
	bl->size = lout.size;
	*written += lout.size;
	/* each fragment is now found in this blob */
	uint64_t at = 0;
	for (size_t i = 0, k = 0; i < r->nd && keep_members; i++) {
		if (!pick[i])
			continue;
		struct dist *d = &r->d[i];
		json_t *c = json_pack("{s:s,s:I,s:I,s:I,s:I}", "blob", lout.digest, "offset", (json_int_t)at,
		                      "length", (json_int_t)d->mlen, "files", (json_int_t)d->files, "bytes",
		                      (json_int_t)d->bytes);
		if (c == NULL || kiln_store_cache_put(r->c->store, d->mkey, c, err) < 0) {
			json_decref(c);
			rc = c ? -1 : oom(err);
			goto out;
		}
		json_decref(c);
		at += parts[k++].length;
	}
	rc = 0;
out:
	for (size_t i = 0; i < np; i++)
		close(parts[i].fd);
	free(parts);
	return rc;
}

static int layers(struct kiln_pip_result *out, struct run *r, struct kiln_error **err)
{
	warn_shadowed(r);
	_cleanup_free_ bool *pick = calloc(r->nd + 1, sizeof(*pick));
	_cleanup_free_ char *stage = kiln_path_join(r->work, "stage");
	if (pick == NULL || stage == NULL)
		return oom(err);
	/* the big distributions cached before: their layers as they are */
	for (size_t i = 0; i < r->nd; i++)
		r->d[i].cached = from_cache(r, r->d[i].key, &r->d[i].layer);
	/* the bundle of the others, when that same set was installed before */
	struct kiln_buf k = KILN_BUF_INIT;
	kiln_buf_printf(&k, "kiln-pip-bundle 2\n%s\n%lld\n", r->c->chain_key, (long long)r->c->mtime);
	size_t rest = 0;
	for (size_t i = 0; i < r->nd; i++)
		if (!r->d[i].cached) {
			kiln_buf_printf(&k, "%s\n%s\n%s\n", r->d[i].name, r->d[i].version,
			                r->d[i].hash ? r->d[i].hash : r->d[i].url);
			rest++;
		}
	char bkey[65];
	hex_of(bkey, k.ptr, k.len);
	kiln_buf_release(&k);
	struct kiln_built_layer bl = {0};
	if (rest == 0)
		return add_big(out, r, pick, err);
	if (from_cache(r, bkey, &bl)) {
		if (add_big(out, r, pick, err) < 0)
			return -1;
		for (size_t i = 0; i < r->nd; i++)
			pick[i] = !r->d[i].cached;
		return result_add(out, &bl, r, pick, err);
	}
	/* small ones whose fragment an earlier bundle holds are not installed again */
	for (size_t i = 0; i < r->nd; i++)
		r->d[i].member = !r->d[i].cached && member_cached(r, &r->d[i]);
	if (install(r, err) < 0)
		return -1;
	struct staged s = {0};
	struct kiln_tar_entry *sub = NULL;
	struct job *jobs = NULL;
	_cleanup_free_ char *rest_tmp = NULL;
	uint64_t rest_len = 0;
	int rc = -1;
	struct stat st;
	if (stat(stage, &st) == 0 && (walk(&s, stage, "", err) < 0 || assign(r, &s, stage, err) < 0))
		goto out;
	for (size_t j = 0; j < s.n; j++)
		if (s.owner[j] >= 0 && s.e[j].type == KILN_TAR_FILE)
			r->d[s.owner[j]].bytes += s.e[j].size;
	/* the entries grouped by owner (the stage is sorted by path: each group stays sorted) */
	if ((sub = malloc((s.n + 1) * sizeof(*sub))) == NULL ||
	    (jobs = calloc(r->nd + 1, sizeof(*jobs))) == NULL) {
		rc = oom(err);
		goto out;
	}
	size_t n = 0, njobs = 0;
	for (size_t i = 0; i < r->nd; i++) {
		struct dist *d = &r->d[i];
		if (d->cached || d->member)
			continue;
		struct job *j = &jobs[njobs];
		*j = (struct job){.r = r, .e = sub + n, .d = d};
		for (size_t x = 0; x < s.n; x++)
			if (s.owner[x] == (long)i)
				sub[n++] = s.e[x];
		j->n = (size_t)(sub + n - j->e);
		if (d->bytes >= PIP_BIG) { /* a layer of its own, cached on its own */
			d->layer = (struct kiln_built_layer){.files = j->n};
			j->layer = &d->layer;
		} else {
			j->fragment = true;
		}
		njobs++;
	}
	/* what no RECORD names (directories aside) goes last in the bundle; then the small ones' fragments
	 * are not kept for later bundles, which would lack it */
	struct kiln_tar_entry *extra = sub + n;
	size_t unowned = 0;
	for (size_t x = 0; x < s.n; x++)
		if (s.owner[x] < 0 && s.e[x].type != KILN_TAR_DIR) {
			sub[n++] = s.e[x];
			unowned++;
		}
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (kiln_pool_run(njobs, cpus > 0 ? (size_t)cpus : 1, run_job, jobs, r->c->cancel, err) < 0)
		goto out;
	for (size_t j = 0; j < njobs; j++)
		out->bytes_written += jobs[j].written;
	for (size_t j = 0; j < njobs; j++) {
		if (jobs[j].fragment)
			continue;
		json_t *cj = layer_json(jobs[j].layer);
		if (cj == NULL || kiln_store_cache_put(r->c->store, jobs[j].d->key, cj, err) < 0) {
			rc = cj ? -1 : oom(err);
			json_decref(cj);
			goto out;
		}
		json_decref(cj);
		jobs[j].d->cached = true;
	}
	if (unowned > 0) {
		struct dist none = {.name = "(files no RECORD names)"};
		struct job j = {.r = r, .e = extra, .n = unowned, .fragment = true, .d = &none};
		if (run_job(&j, 0, err) < 0) {
			free(none.ftmp);
			goto out;
		}
		rest_tmp = none.ftmp;
		rest_len = none.mlen;
	}
	if (add_big(out, r, pick, err) < 0)
		goto out;
	size_t small = 0;
	for (size_t i = 0; i < r->nd; i++)
		small += (pick[i] = !r->d[i].cached);
	if (small > 0) {
		bl = (struct kiln_built_layer){0};
		json_t *cj = NULL;
		if (write_bundle(r, &bl, pick, rest_tmp, rest_len, unowned == 0, &out->bytes_written, err) <
		        0 ||
		    (cj = layer_json(&bl)) == NULL || kiln_store_cache_put(r->c->store, bkey, cj, err) < 0 ||
		    result_add(out, &bl, r, pick, err) < 0) {
			json_decref(cj);
			goto out;
		}
		json_decref(cj);
	}
	rc = 0;
out:
	if (rest_tmp)
		unlink(rest_tmp);
	for (size_t i = 0; i < r->nd; i++)
		if (r->d[i].ftmp) {
			unlink(r->d[i].ftmp);
			free(r->d[i].ftmp);
			r->d[i].ftmp = NULL;
		}
	free(jobs);
	free(sub);
	for (size_t j = 0; j < s.n; j++)
		kiln_tar_entry_release(&s.e[j]);
	free(s.e);
	free(s.owner);
	for (size_t j = 0; j < s.ninfos; j++)
		free(s.infos[j]);
	free(s.infos);
	return rc;
}

static void run_release(struct run *r)
{
	if (r->work)
		kiln_remove_tree(r->work, NULL);
	stop_installer(r);
	free(r->work);
	free(r->pipcache);
	for (size_t i = r->ncreated; i-- > 0;) { /* deepest first */
		if (rmdir(r->created[i]) < 0)
			unlink(r->created[i]);
		free(r->created[i]);
	}
	free(r->created);
	free(r->binds);
	for (char **e = r->env; e && *e; e++)
		free(*e);
	free(r->env);
	for (size_t i = 0; i < r->nd; i++) {
		free(r->d[i].name);
		free(r->d[i].version);
		free(r->d[i].url);
		free(r->d[i].hash);
	}
	free(r->d);
	kiln_pip_reqs_release(&r->reqs);
}

int kiln_pip_install(struct kiln_pip_result *out, const struct kiln_pip_context *c, struct kiln_error **err)
{
	*out = (struct kiln_pip_result){0};
	struct run r = {.c = c, .go = -1};
	int rc = -1;
	if ((out->deps = json_array()) == NULL) {
		rc = oom(err);
		goto fail;
	}
	if (prepare(&r, err) < 0 || check_pip(&r, err) < 0 || start_installer(&r, err) < 0 ||
	    resolve(&r, err) < 0 || layers(out, &r, err) < 0)
		goto fail;
	struct kiln_buf f = KILN_BUF_INIT;
	for (size_t i = 0; i < r.nd; i++)
		kiln_buf_printf(&f, "%s==%s\n", r.d[i].name, r.d[i].version);
	out->freeze = kiln_buf_detach(&f);
	run_release(&r);
	return 0;
fail:
	run_release(&r);
	kiln_pip_result_release(out);
	return rc < 0 ? rc : (err && *err ? (*err)->code : KILN_EFAIL);
}

void kiln_pip_result_release(struct kiln_pip_result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free(r->layers[i].title);
		free(r->created_by[i]);
	}
	free(r->layers);
	free(r->created_by);
	free(r->freeze);
	json_decref(r->deps);
	*r = (struct kiln_pip_result){0};
}
