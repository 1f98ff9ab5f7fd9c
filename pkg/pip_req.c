/* SPDX-License-Identifier: Apache-2.0 */
/* pip_req.c: a manifest's requirements, their includes, pip's configuration and local paths, read once. */
#include "pkg/pip_req.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "layers/digest.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

extern char **environ;

#define MAX_REQ_FILE  (4u << 20)
#define MAX_INCLUDES  64
#define MAX_DIR_FILES 100000

/* pip's order: global (XDG_CONFIG_DIRS, then /etc), user (legacy, then XDG), then PIP_CONFIG_FILE. */
const char *const kiln_pip_conf_slot[KILN_PIP_CONF_SLOTS] = {
    "xdg0/pip/pip.conf", "xdg1/pip/pip.conf", "home/.pip/pip.conf", "home/.config/pip/pip.conf", "pip.conf",
};

struct scan {
	struct kiln_pip_reqs *r;
	int depth;
	size_t nfiles;
	bool overrides; /* scanning build.python_overrides: requirements only */
};

static int push_str(char ***v, size_t *n, const char *s)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*v)[i], s) == 0)
			return 0;
	char **nv = realloc(*v, (*n + 1) * sizeof(**v));
	if (nv == NULL)
		return -1;
	*v = nv;
	if ((nv[*n] = strdup(s)) == NULL)
		return -1;
	(*n)++;
	return 0;
}

/* PATH (absolute, resolved) inside the project: its path relative to it ("" for the project), else NULL. */
static const char *under(const char *path, const char *top)
{
	size_t n = strlen(top);
	if (strncmp(path, top, n) != 0)
		return NULL;
	if (path[n] == '\0')
		return path + n;
	return path[n] == '/' ? path + n + 1 : NULL;
}

/* The fingerprint of a local path (and, for a directory, of each entry in it) into the key's text. */
static int fingerprint(struct kiln_pip_reqs *r, const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		kiln_buf_printf(&r->text, "path %s missing\n", path);
		return 0;
	}
	kiln_buf_printf(&r->text, "path %s %llu %llu %lld %lld.%09ld %lld.%09ld\n", path,
	                (unsigned long long)st.st_dev, (unsigned long long)st.st_ino, (long long)st.st_size,
	                (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec,
	                st.st_ctim.tv_nsec);
	if (!S_ISDIR(st.st_mode))
		return 0;
	struct dirent **names = NULL;
	int n = scandir(path, &names, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.' && i < MAX_DIR_FILES) {
			_cleanup_free_ char *p = kiln_path_join(path, names[i]->d_name);
			struct stat es;
			if (p && stat(p, &es) == 0)
				kiln_buf_printf(&r->text, " %s %lld %lld.%09ld %lld.%09ld %llu\n",
				                names[i]->d_name, (long long)es.st_size,
				                (long long)es.st_mtim.tv_sec, es.st_mtim.tv_nsec,
				                (long long)es.st_ctim.tv_sec, es.st_ctim.tv_nsec,
				                (unsigned long long)es.st_ino);
		}
		free(names[i]);
	}
	free(names);
	return 0;
}

/*
 * A local path named at FILE:LINE (relative to BASE when not absolute): fingerprinted, and bound into the
 * sandbox when it is outside the project. SANDBOX gets the path as pip sees it (may be NULL). MUST: the
 * path has to exist.
 */
static int local_path(struct scan *sc, const char *file, int line, const char *base, const char *path,
                      bool must, char **sandbox, struct kiln_error **err)
{
	struct kiln_pip_reqs *r = sc->r;
	_cleanup_free_ char *full = path[0] == '/' ? strdup(path) : kiln_path_join(base, path);
	if (full == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	_cleanup_free_ char *real = realpath(full, NULL);
	if (real == NULL) {
		if (must)
			return kiln_error_errno(err, errno, "%s:%d: cannot open '%s'", file, line, path);
		if (sandbox)
			*sandbox = strdup(path);
		return fingerprint(r, full);
	}
	const char *rel = under(real, r->project);
	if (rel == NULL && path[0] != '/')
		return kiln_error_set(
		    err, KILN_EINVAL,
		    "%s:%d: '%s' is outside the project directory (pip runs in the project: "
		    "name it by its absolute path)",
		    file, line, path);
	if (rel == NULL && push_str(&r->binds, &r->nbinds, real) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (sandbox) {
		struct kiln_buf b = KILN_BUF_INIT;
		if (rel)
			kiln_buf_printf(&b, "%s%s%s", KILN_PIP_SRC, rel[0] ? "/" : "", rel);
		else
			kiln_buf_puts(&b, real);
		*sandbox = kiln_buf_detach(&b);
	}
	return fingerprint(r, real);
}

/* The value of option SHORT/LONG at the start of LINE ("-r f", "-rf", "--requirement f",
 * "--requirement=f"), or NULL. */
static const char *opt_value(const char *line, const char *shortopt, const char *longopt)
{
	size_t n;
	if (shortopt && strncmp(line, shortopt, (n = strlen(shortopt))) == 0) {
		const char *v = line + n;
		while (*v == ' ' || *v == '\t')
			v++;
		return *v ? v : NULL;
	}
	if (strncmp(line, longopt, (n = strlen(longopt))) == 0 &&
	    (line[n] == '=' || line[n] == ' ' || line[n] == '\t')) {
		const char *v = line + n + 1;
		while (*v == ' ' || *v == '\t' || *v == '=')
			v++;
		return *v ? v : NULL;
	}
	return NULL;
}

static int scan_file(struct scan *sc, const char *path, const char *shown, struct kiln_error **err);

/* A requirement line that names a local archive or directory: its path, else NULL (caller frees). */
static char *req_local(const char *line)
{
	size_t n = strcspn(line, " \t;");
	_cleanup_free_ char *tok = strndup(line, n);
	if (tok == NULL)
		return NULL;
	const char *at = strstr(line, " @ ");
	const char *url = at ? at + 3 : tok;
	while (*url == ' ')
		url++;
	if (strncmp(url, "file://", 7) == 0) {
		const char *p = url + 7;
		if (strncmp(p, "localhost/", 10) == 0)
			p += 9;
		return strndup(p, strcspn(p, " \t;#"));
	}
	if (at || strstr(tok, "://"))
		return NULL;
	size_t len = strlen(tok);
	bool archive = (len > 4 && strcmp(tok + len - 4, ".whl") == 0) ||
	               (len > 7 && strcmp(tok + len - 7, ".tar.gz") == 0) ||
	               (len > 4 && strcmp(tok + len - 4, ".zip") == 0);
	if (tok[0] == '.' || tok[0] == '/' || strchr(tok, '/') || archive) {
		char *br = strchr(tok, '[');
		if (br && br != tok)
			*br = '\0';
		return strdup(tok);
	}
	return NULL;
}

/* One logical line of a requirements file (comment removed, trimmed). */
static int scan_line(struct scan *sc, const char *file, int lineno, const char *dir, char *line,
                     struct kiln_error **err)
{
	struct kiln_pip_reqs *r = sc->r;
	const char *v;
	if (sc->overrides && line[0] == '-')
		return kiln_error_set(
		    err, KILN_EINVAL,
		    "%s:%d: build.python_overrides: '%s': an overrides file holds requirements "
		    "(a name with a version, or name @ URL), not pip's options",
		    file, lineno, line);
	if (sc->overrides && kiln_buf_printf(&r->overrides, "%d\t%s\n", lineno, line) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if ((v = opt_value(line, "-r", "--requirement")) || (v = opt_value(line, "-c", "--constraint"))) {
		_cleanup_free_ char *inc = v[0] == '/' ? strdup(v) : kiln_path_join(dir, v);
		if (inc == NULL)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		if (strstr(v, "://"))
			return kiln_error_set(err, KILN_EINVAL,
			                      "%s:%d: included requirements '%s' are not a local file", file,
			                      lineno, v);
		_cleanup_free_ char *real = realpath(inc, NULL);
		if (real == NULL)
			return kiln_error_errno(err, errno,
			                        "%s:%d: cannot open included requirements file '%s'", file,
			                        lineno, v);
		if (under(real, r->project) == NULL && v[0] != '/')
			return kiln_error_set(err, KILN_EINVAL,
			                      "%s:%d: '%s' is outside the project directory", file, lineno,
			                      v);
		if (under(real, r->project) == NULL && push_str(&r->binds, &r->nbinds, real) < 0)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		if (sc->depth >= 16 || sc->nfiles >= MAX_INCLUDES)
			return kiln_error_set(err, KILN_EINVAL, "%s:%d: too many nested requirements files",
			                      file, lineno);
		_cleanup_free_ char *shown = strdup(v);
		sc->depth++;
		int rc = scan_file(sc, real, shown, err);
		sc->depth--;
		return rc;
	}
	if ((v = opt_value(line, "-f", "--find-links"))) {
		if (strstr(v, "://") && strncmp(v, "file://", 7) != 0)
			return push_str(&r->opts, &r->nopts, line) < 0
			           ? kiln_error_set(err, KILN_EFAIL, "out of memory")
			           : 0;
		const char *p = strncmp(v, "file://", 7) == 0 ? v + 7 : v;
		/* pip takes a relative find-links against the requirements file when it exists there */
		_cleanup_free_ char *rel = kiln_path_join(dir, p);
		struct stat st;
		const char *base = rel && stat(rel, &st) == 0 ? dir : r->project;
		_cleanup_free_ char *in = NULL;
		if (local_path(sc, file, lineno, base, p, false, &in, err) < 0)
			return -1;
		struct kiln_buf b = KILN_BUF_INIT;
		kiln_buf_printf(&b, "--find-links %s", in);
		char *s = kiln_buf_detach(&b);
		int rc = push_str(&r->opts, &r->nopts, s);
		free(s);
		return rc < 0 ? kiln_error_set(err, KILN_EFAIL, "out of memory") : 0;
	}
	if (opt_value(line, "-i", "--index-url") || opt_value(line, NULL, "--extra-index-url") ||
	    opt_value(line, NULL, "--trusted-host"))
		return push_str(&r->opts, &r->nopts, line) < 0
		           ? kiln_error_set(err, KILN_EFAIL, "out of memory")
		           : 0;
	if (line[0] == '-')
		return 0; /* pip's other options: in the text, for pip to act on */
	_cleanup_free_ char *p = req_local(line);
	if (p == NULL)
		return 0;
	/* pip takes a requirement's relative path against its working directory: the project */
	return local_path(sc, file, lineno, r->project, p, true, NULL, err);
}

static int scan_file(struct scan *sc, const char *path, const char *shown, struct kiln_error **err)
{
	struct kiln_pip_reqs *r = sc->r;
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	if (kiln_read_file(&data, &len, path, MAX_REQ_FILE, err) < 0)
		return kiln_error_wrap(err, "cannot read requirements file '%s'", shown);
	sc->nfiles++;
	kiln_buf_printf(&r->text, "file %s %zu\n", path, len);
	kiln_buf_put(&r->text, data, len);
	kiln_buf_puts(&r->text, "\n");
	_cleanup_free_ char *dircopy = strdup(path);
	if (dircopy == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	char *slash = strrchr(dircopy, '/');
	if (slash)
		*(slash == dircopy ? slash + 1 : slash) = '\0';
	int lineno = 0;
	char *s = data;
	while (*s) {
		int start = ++lineno;
		struct kiln_buf l = KILN_BUF_INIT;
		for (;;) { /* a line ending in a backslash goes on on the next one */
			size_t n = strcspn(s, "\n");
			bool more = n > 0 && s[n - 1] == '\\';
			kiln_buf_put(&l, s, more ? n - 1 : n);
			s += n + (s[n] == '\n');
			if (!more || *s == '\0')
				break;
			lineno++;
		}
		char *t = l.ptr ? l.ptr : "";
		for (char *h = t; (h = strchr(h, '#')) != NULL; h++)
			if (h == t || isspace((unsigned char)h[-1])) {
				*h = '\0';
				break;
			}
		while (isspace((unsigned char)*t))
			t++;
		size_t n = strlen(t);
		while (n > 0 && isspace((unsigned char)t[n - 1]))
			t[--n] = '\0';
		int rc = n ? scan_line(sc, shown, start, dircopy, t, err) : 0;
		kiln_buf_release(&l);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static char *conf_path(const char *dir, const char *rel)
{
	if (dir == NULL || dir[0] == '\0')
		return NULL;
	_cleanup_free_ char *p = kiln_path_join(dir, rel);
	struct stat st;
	return p && stat(p, &st) == 0 && S_ISREG(st.st_mode) ? steal_pointer(&p) : NULL;
}

static int by_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* pip's PIP_* variables (sorted) and configuration files into the key's text. */
static int scan_config(struct kiln_pip_reqs *r, struct kiln_error **err)
{
	size_t n = 0;
	for (char **e = environ; *e; e++)
		n += strncmp(*e, "PIP_", 4) == 0;
	_cleanup_free_ char **vars = calloc(n + 1, sizeof(*vars));
	if (vars == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	n = 0;
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "PIP_", 4) == 0)
			vars[n++] = *e;
	qsort(vars, n, sizeof(*vars), by_str);
	for (size_t i = 0; i < n; i++)
		kiln_buf_printf(&r->text, "env %s\n", vars[i]);
	const char *find = getenv("PIP_FIND_LINKS");
	if (find) { /* local directories pip reads: fingerprinted and bound */
		_cleanup_free_ char *copy = strdup(find);
		char *save = NULL;
		for (char *t = copy ? strtok_r(copy, " \t\n", &save) : NULL; t;
		     t = strtok_r(NULL, " \t\n", &save)) {
			const char *p = strncmp(t, "file://", 7) == 0 ? t + 7 : t;
			if (p[0] == '/') {
				_cleanup_free_ char *real = realpath(p, NULL);
				/* at its own path, also inside the project (pip reads the variable as it is)
				 */
				if (real && push_str(&r->binds, &r->nbinds, real) < 0)
					return kiln_error_set(err, KILN_EFAIL, "out of memory");
				fingerprint(r, real ? real : p);
			}
		}
	}
	const char *home = getenv("HOME"), *xdg = getenv("XDG_CONFIG_HOME");
	_cleanup_free_ char *xdg_home = xdg && xdg[0] ? strdup(xdg)
	                                : home        ? kiln_path_join(home, ".config")
	                                              : NULL;
	const char *file = getenv("PIP_CONFIG_FILE");
	r->conf[0] = conf_path("/etc/xdg", "pip/pip.conf");
	r->conf[1] = conf_path("/etc", "pip.conf");
	r->conf[2] = conf_path(home, ".pip/pip.conf");
	r->conf[3] = conf_path(xdg_home, "pip/pip.conf");
	r->conf[4] =
	    file && strcmp(file, "/dev/null") != 0 ? conf_path(file[0] == '/' ? "/" : ".", file) : NULL;
	for (int i = 0; i < KILN_PIP_CONF_SLOTS; i++) {
		if (r->conf[i] == NULL)
			continue;
		_cleanup_free_ char *data = NULL;
		size_t len = 0;
		if (kiln_read_file(&data, &len, r->conf[i], MAX_REQ_FILE, err) < 0)
			return kiln_error_wrap(err, "cannot read pip's configuration");
		kiln_buf_printf(&r->text, "conf %s %zu\n", kiln_pip_conf_slot[i], len);
		kiln_buf_put(&r->text, data, len);
	}
	return 0;
}

/* A file the manifest names (KEY: FILE, relative to the project or absolute): bound when outside it. */
static int scan_top(struct scan *sc, const struct kiln_manifest *m, const char *file, const char *key,
                    struct kiln_error **err)
{
	_cleanup_free_ char *full =
	    file[0] == '/' ? strdup(file) : kiln_path_join(m->dir ? m->dir : ".", file);
	_cleanup_free_ char *real = full ? realpath(full, NULL) : NULL;
	if (real == NULL)
		return kiln_error_errno(err, errno, "%s: cannot open '%s'", key, file);
	if (under(real, sc->r->project) == NULL && push_str(&sc->r->binds, &sc->r->nbinds, real) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	return scan_file(sc, real, file, err);
}

int kiln_pip_reqs_scan(struct kiln_pip_reqs *out, const struct kiln_manifest *m, struct kiln_error **err)
{
	struct kiln_pip_reqs r = {.text = KILN_BUF_INIT, .overrides = KILN_BUF_INIT};
	struct scan sc = {.r = &r};
	int rc = -1;
	r.project = realpath(m->dir ? m->dir : ".", NULL);
	if (r.project == NULL) {
		rc = kiln_error_errno(err, errno, "cannot resolve '%s'", m->dir ? m->dir : ".");
		goto out;
	}
	kiln_buf_puts(&r.text, "kiln-pip-inputs 1\n");
	if (m->python_requirements &&
	    scan_top(&sc, m, m->python_requirements, "python_requirements", err) < 0)
		goto out;
	for (size_t i = 0; i < m->python_packages.n; i++) {
		kiln_buf_printf(&r.text, "package %s\n", m->python_packages.v[i]);
		char shown[64];
		snprintf(shown, sizeof(shown), "python_packages[%zu]", i);
		_cleanup_free_ char *line = strdup(m->python_packages.v[i]);
		if (line == NULL)
			goto oom;
		if (scan_line(&sc, shown, m->python_packages.pos ? m->python_packages.pos[i].line : 0,
		              r.project, line, err) < 0)
			goto out;
	}
	if (m->python_overrides) {
		kiln_buf_puts(&r.text, "overrides\n");
		sc.overrides = true;
		if (scan_top(&sc, m, m->python_overrides, "build.python_overrides", err) < 0)
			goto out;
	}
	if (scan_config(&r, err) < 0)
		goto out;
	*out = r;
	return 0;
oom:
	rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
out:
	kiln_pip_reqs_release(&r);
	return rc;
}

void kiln_pip_reqs_release(struct kiln_pip_reqs *r)
{
	kiln_buf_release(&r->text);
	kiln_buf_release(&r->overrides);
	free(r->project);
	for (size_t i = 0; i < r->nbinds; i++)
		free(r->binds[i]);
	free(r->binds);
	for (size_t i = 0; i < r->nopts; i++)
		free(r->opts[i]);
	free(r->opts);
	for (int i = 0; i < KILN_PIP_CONF_SLOTS; i++)
		free(r->conf[i]);
	memset(r, 0, sizeof(*r));
}
