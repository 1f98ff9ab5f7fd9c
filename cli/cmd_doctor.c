/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cmd_doctor.c: `kiln doctor`: check a project without building it, as `cog doctor` does, and say what to
 * fix: the manifest, the predictor, python_version against the base, the requirements, the weights, the
 * ignore file and the tools kiln runs on this machine. One line per finding; exit 1 when one is an error.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "pkg/base.h"
#include "pkg/build.h"
#include "pkg/manifest.h"
#include "pkg/pip_req.h"
#include "pkg/plan.h"
#include "pkg/runtime.h"
#include "pkg/sandbox.h"
#include "pkg/schema.h"

enum { OPT_FORMAT = 2000, OPT_FIX };

struct finding {
	bool error; /* else a warning */
	const char *check;
	char *file; /* where, when the message said it ("DIR/kiln.yaml"), or NULL */
	int line, column;
	char *message;
	char *fix;
};

struct report {
	struct finding *v;
	size_t n;
	size_t errors;
	json_t *fixed; /* what --fix changed: [{"check", "message"}] */
};

/* Split TEXT's leading "FILE:LINE[:COLUMN]: " into F (none: F->file NULL); F->message the rest on one
 * line (a message of several lines has them joined by "; "). */
static void locate(struct finding *f, const char *text)
{
	size_t flen = strcspn(text, ": \n");
	const char *p = text + flen, *rest = text;
	if (flen && *p == ':' && p[1] >= '0' && p[1] <= '9') {
		char *end;
		long line = strtol(p + 1, &end, 10), col = 0;
		if (*end == ':' && end[1] >= '0' && end[1] <= '9')
			col = strtol(end + 1, &end, 10);
		if (end[0] == ':' && end[1] == ' ') {
			f->file = strndup(text, flen);
			f->line = (int)line;
			f->column = (int)col;
			rest = end + 2;
		}
	}
	struct kiln_buf b = KILN_BUF_INIT;
	for (const char *s = rest; *s;) {
		size_t len = strcspn(s, "\n");
		if (len)
			kiln_buf_printf(&b, "%s%.*s", b.len ? "; " : "", (int)len, s);
		s += len + (s[len] == '\n');
	}
	f->message = kiln_buf_detach(&b);
}

/* Add a finding of CHECK: TEXT (may start with its location), and what to do about it. */
static void add(struct report *r, bool error, const char *check, const char *text, const char *fix, ...)
    __attribute__((format(printf, 5, 6)));
static void add(struct report *r, bool error, const char *check, const char *text, const char *fix, ...)
{
	struct finding *v = realloc(r->v, (r->n + 1) * sizeof(*v));
	if (!v)
		return;
	r->v = v;
	struct finding *f = &r->v[r->n++];
	memset(f, 0, sizeof(*f));
	f->error = error;
	f->check = check;
	locate(f, text);
	va_list ap;
	va_start(ap, fix);
	if (vasprintf(&f->fix, fix, ap) < 0)
		f->fix = NULL;
	va_end(ap);
	r->errors += error;
}

/* The last finding's file, named from the project DIR (as the schema generator and pip name them), named
 * from here as the others are; a message "FILE: ..." without a line names FILE too. */
static void from_here(struct report *r, const char *dir, const char *file)
{
	struct finding *f = r->n ? &r->v[r->n - 1] : NULL;
	size_t len = file ? strlen(file) : 0;
	if (f && !f->file && len && strncmp(f->message, file, len) == 0 && f->message[len] == ':' &&
	    f->message[len + 1] == ' ') {
		memmove(f->message, f->message + len + 2, strlen(f->message + len + 2) + 1);
		f->file = strdup(file);
	}
	char *joined = f && f->file && f->file[0] != '/' ? kiln_path_join(dir, f->file) : NULL;
	if (joined) {
		free(f->file);
		f->file = joined;
	}
}

/* The manifest: its errors and its warnings, where they are. NULL when it cannot be read. */
static struct kiln_manifest *check_manifest(struct report *r, const char *dir, const char *file)
{
	struct kiln_manifest *m = NULL;
	_cleanup_error_ struct kiln_error *e = NULL;
	if (kiln_manifest_load(&m, dir, file, &e) < 0) {
		bool none = strstr(e->message, "no kiln.yaml or cog.yaml") != NULL;
		add(r, true, "manifest", e->message, "%s",
		    none ? "write one with 'kiln init', or give the project's directory"
		         : "correct the manifest where the message says (see kiln.yaml(5)); the other checks "
		           "need it");
		return NULL;
	}
	for (size_t i = 0; i < m->warnings.n; i++)
		add(r, false, "manifest", m->warnings.v[i], "%s",
		    "kiln builds the project anyway, as the message says; remove the key to silence it");
	return m;
}

/* The predictor (and the trainer): described by the schema generator kiln build runs, from the source,
 * without importing the user's packages. */
static void check_predictor(struct report *r, const struct kiln_manifest *m, const struct kiln_runtime *rt)
{
	if (!rt || !m->predict || strncmp(m->predict, "native:", 7) == 0)
		return;
	json_t *schema = NULL;
	_cleanup_error_ struct kiln_error *e = NULL;
	json_t *warnings = NULL;
	int rc = kiln_schema_generate(&schema, rt->python_dir, m->dir, m->predict, m->train, &warnings, &e);
	json_decref(schema);
	size_t i;
	json_t *w;
	json_array_foreach(warnings, i, w)
	{
		_cleanup_free_ char *full = kiln_path_join(m->dir, json_string_value(w));
		add(r, false, "predictor", full ? full : json_string_value(w), "%s",
		    "derive from cog.BaseRunner and name the method run() (kiln doctor --fix does it for "
		    "predict.py:Predictor); the old names still work");
	}
	json_decref(warnings);
	if (rc == KILN_ENOTFOUND) {
		add(r, false, "predictor", e->message,
		    "install python3 (or set KILN_PYTHON): kiln build describes the predictor with it");
		return;
	}
	if (rc >= 0)
		return;
	/* the generator's message starts with the file it is about: the trainer's, or the predictor's */
	_cleanup_free_ char *pfile = strndup(m->predict, strcspn(m->predict, ":"));
	_cleanup_free_ char *tfile = m->train ? strndup(m->train, strcspn(m->train, ":")) : NULL;
	size_t tlen = tfile ? strlen(tfile) : 0;
	bool trainer = tfile && strcmp(tfile, pfile ? pfile : "") != 0 &&
	               strncmp(e->message, tfile, tlen) == 0 && e->message[tlen] == ':';
	add(r, true, "predictor", e->message,
	    "make '%s' (%s:) importable, with inputs and outputs of Cog's types; kiln build fails on it",
	    trainer ? m->train : m->predict, trainer ? "train" : "run");
	from_here(r, m->dir, trainer ? tfile : pfile);
}

/* python_version: a version Cog accepts, and the Python of a base on this machine (an OCI layout, or
 * scratch) is that one; a registry base is not fetched. */
static void check_python(struct report *r, const struct kiln_manifest *m)
{
	if (!kiln_manifest_is_python(m))
		return;
	_cleanup_error_ struct kiln_error *e = NULL;
	int minor;
	bool deprecated = false;
	if (m->python_version && kiln_python_version_check(&minor, &deprecated, m->python_version, &e) < 0) {
		_cleanup_free_ char *where = NULL;
		if (asprintf(&where, "%s:%d:%d: python_version: %s", m->path, m->python_version_pos.line,
		             m->python_version_pos.column, e->message) >= 0)
			add(r, true, "python", where, "give a python_version from 3.%d to 3.%d",
			    KILN_PYTHON_OLDEST_MINOR, KILN_PYTHON_MAX_MINOR);
		return;
	}
	_cleanup_free_ char *name = NULL, *reason = NULL;
	if (kiln_base_choose(&name, &reason, m, getenv("KILN_PYTHON_BASE"), &e) < 0) {
		add(r, true, "python", e->message, "correct base:");
		return;
	}
	if (strcmp(name, "scratch") != 0 && strncmp(name, "oci:", 4) != 0) {
		/* a base on this machine says so itself, below */
		_cleanup_free_ char *text = NULL;
		if (deprecated && asprintf(&text, "%s:%d:%d: python_version: %s is deprecated in Cog",
		                           m->path, m->python_version_pos.line, m->python_version_pos.column,
		                           m->python_version) >= 0)
			add(r, false, "python", text, "move to Python 3.%d or later", KILN_PYTHON_MIN_MINOR);
		return;
	}
	struct kiln_store *s = NULL;
	struct kiln_base b = {0};
	if (kiln_store_open(&s, NULL, &e) == 0 && kiln_base_load(&b, m, s, NULL, NULL, &e) == 0) {
		for (size_t i = 0; i < b.nwarnings; i++) {
			if (strstr(b.warnings[i], "deprecated"))
				add(r, false, "python", b.warnings[i], "move to Python 3.%d or later",
				    KILN_PYTHON_MIN_MINOR);
			else
				add(r, false, "python", b.warnings[i],
				    "give base: an image with Python %s (kiln predict --runtime native runs "
				    "it "
				    "with this machine's Python meanwhile)",
				    m->python_version ? m->python_version : KILN_PYTHON_DEFAULT);
		}
		kiln_base_release(&b);
	} else if (e) {
		add(r, true, "python", e->message, "give python_version the base's Python, or another base:");
	}
	kiln_store_free(s);
}

/* The requirements file and what it includes, read as pip will read them. */
static void check_requirements(struct report *r, const struct kiln_manifest *m)
{
	if (!m->python_requirements && m->python_packages.n == 0)
		return;
	struct kiln_pip_reqs reqs = {0};
	_cleanup_error_ struct kiln_error *e = NULL;
	if (kiln_pip_reqs_scan(&reqs, m, &e) < 0) {
		add(r, true, "requirements", e->message,
		    "correct the requirements where the message says (pip's requirements format)");
		from_here(r, m->dir, m->python_requirements);
	}
	kiln_pip_reqs_release(&reqs);
}

/* The weights: the plan kiln build makes (its globs match, links stay in the project). */
static void check_weights(struct report *r, const struct kiln_manifest *m)
{
	struct kiln_plan *plan = NULL;
	struct kiln_plan_options po;
	kiln_plan_options_init(&po);
	_cleanup_error_ struct kiln_error *e = NULL;
	if (kiln_plan_make(&plan, m, &po, &e) < 0) {
		add(r, true, "weights", e->message,
		    "correct weights: (globs relative to the project) or put the files there");
		return;
	}
	/* with weights: globs, a big file they miss is gzipped into the code layer at every change of code */
	for (size_t i = 0; m->weights.n && i < plan->n; i++) {
		const struct kiln_plan_layer *l = &plan->layers[i];
		for (size_t k = 0; l->kind == KILN_LAYER_CODE && k < l->n; k++) {
			const struct kiln_tar_entry *t = &l->entries[k];
			const char *rel = strchr(t->name, '/') ? strchr(t->name, '/') + 1 : t->name;
			char size[32];
			_cleanup_free_ char *text = NULL;
			if (t->type != KILN_TAR_FILE || t->size < po.cog_weight_threshold)
				continue;
			cli_human_size(size, t->size);
			if (asprintf(&text, "'%s' (%s) goes into the code layer: no weights glob matches it",
			             rel, size) >= 0)
				add(r, false, "weights", text,
				    "add it to weights: (its own layer, pushed once) or to .kilnignore");
		}
	}
	for (size_t i = 0; i < plan->nskipped; i++) {
		_cleanup_free_ char *text = NULL;
		if (asprintf(&text, "'%s' is left out of the image: not a regular file, link or directory",
		             plan->skipped[i]) >= 0)
			add(r, false, "weights", text, "add '%s' to .kilnignore", plan->skipped[i]);
	}
	kiln_plan_free(plan);
}

/* The ignore file: the one kiln reads, and directories that the code layer would hold for nothing. */
static void check_ignore(struct report *r, const char *dir)
{
	static const char *const clutter[] = {"__pycache__",  ".venv",        "venv",
	                                      "node_modules", ".cog",         ".ipynb_checkpoints",
	                                      ".mypy_cache",  ".pytest_cache"};
	_cleanup_free_ char *k = kiln_path_join(dir, ".kilnignore"),
	                    *d = kiln_path_join(dir, ".dockerignore");
	bool has_k = k && access(k, F_OK) == 0;
	if (has_k && d && access(d, F_OK) == 0)
		add(r, false, "ignore", ".dockerignore is not read: .kilnignore is",
		    "put the rules of .dockerignore that kiln should follow in .kilnignore");
	struct kiln_ignore *ig = NULL;
	_cleanup_error_ struct kiln_error *e = NULL;
	if (kiln_ignore_load(&ig, dir, &e) < 0) {
		add(r, true, "ignore", e->message, "correct the ignore file (Docker's .dockerignore rules)");
		return;
	}
	for (size_t i = 0; i < sizeof(clutter) / sizeof(clutter[0]); i++) {
		_cleanup_free_ char *p = kiln_path_join(dir, clutter[i]);
		struct stat st;
		if (!p || lstat(p, &st) < 0 || !S_ISDIR(st.st_mode) ||
		    kiln_ignore_match(ig, clutter[i], true))
			continue;
		_cleanup_free_ char *text = NULL;
		if (asprintf(&text, "'%s/' goes into the image's code layer", clutter[i]) >= 0)
			add(r, false, "ignore", text, "add '%s/' to %s", clutter[i],
			    has_k || !d || access(d, F_OK) != 0 ? ".kilnignore" : ".dockerignore");
	}
	kiln_ignore_free(ig);
}

/* Whether NAME is an executable on PATH. */
static bool on_path(const char *name)
{
	const char *path = getenv("PATH");
	for (const char *p = path ? path : ""; *p;) {
		size_t len = strcspn(p, ":");
		_cleanup_free_ char *f = NULL;
		if (len && asprintf(&f, "%.*s/%s", (int)len, p, name) >= 0 && access(f, X_OK) == 0)
			return true;
		p += len + (p[len] == ':');
	}
	return false;
}

/* The tools kiln runs here: the shim (RT_ERR when it is not found), Python, bubblewrap. */
static void check_tools(struct report *r, const struct kiln_manifest *m, const struct kiln_error *rt_err)
{
	if (rt_err)
		add(r, true, "tools", rt_err->message,
		    "install kiln with its runtime (kiln-shim beside kiln, or set KILN_SHIM): images without "
		    "it "
		    "cannot serve");
	const char *python = getenv("KILN_PYTHON");
	if (python && *python ? access(python, X_OK) != 0 && !on_path(python) : !on_path("python3"))
		add(r, false, "tools",
		    python && *python ? "KILN_PYTHON is not an executable"
		                      : "no python3 on this machine's PATH",
		    "install python3: kiln build describes predictors with it, and --runtime native runs "
		    "models with it");
	_cleanup_error_ struct kiln_error *e = NULL;
	if (kiln_sandbox_available(&e) < 0) {
		bool steps = m && (m->system_packages.n || m->run_commands.n || m->pre_install.n ||
		                   m->python_packages.n || m->python_requirements);
		add(r, steps, "tools", e->message, "%s",
		    steps ? "install bubblewrap (apt-get install bubblewrap) where it may make namespaces: "
		            "kiln build runs system_packages, build.run and pip under it"
		          : "install bubblewrap for --runtime bwrap; kiln predict and exec run natively "
		            "meanwhile");
	}
}

struct doctor_args {
	const char *file;
	bool json;
	bool fix; /* --fix */
};

static int doctor_option(int c, const char *arg, void *ctx)
{
	struct doctor_args *a = ctx;
	switch (c) {
	case 'f':
		a->file = arg;
		return 0;
	case CLI_OPT_JSON:
		a->json = true;
		return 0;
	case OPT_FIX:
		a->fix = true;
		return 0;
	case OPT_FORMAT:
		return cli_format_option(&a->json, arg);
	default:
		return -1;
	}
}

/* The Python file of REF ("FILE.py:NAME", from the project's directory; not native:), or NULL. */
static char *python_file(const struct kiln_manifest *m, const char *ref)
{
	if (!ref || strncmp(ref, "native:", 7) == 0)
		return NULL;
	_cleanup_free_ char *file = strndup(ref, strcspn(ref, ":"));
	return file ? kiln_path_join(m->dir, file) : NULL;
}

/* The predictor's and the trainer's Python files into PATHS (NULL where none, or the trainer's when it is
 * the predictor's); the caller frees both. */
static void python_files(const struct kiln_manifest *m, char *paths[2])
{
	paths[0] = python_file(m, m->predict);
	paths[1] = python_file(m, m->train);
	if (paths[0] && paths[1] && strcmp(paths[0], paths[1]) == 0) {
		free(paths[1]);
		paths[1] = NULL;
	}
}

/* Imports of what Cog removed: `from cog.types import ExperimentalFeatureWarning` fails when the model
 * starts. */
static void check_imports(struct report *r, const struct kiln_manifest *m)
{
	char *paths[2];
	python_files(m, paths);
	for (size_t i = 0; i < 2; i++) {
		_cleanup_free_ char *path = paths[i];
		int line = path ? doctor_deprecated_import_line(path) : 0;
		if (!line)
			continue;
		_cleanup_free_ char *text = NULL;
		if (asprintf(&text,
		             "%s:%d: " DOCTOR_REMOVED_NAME
		             " was removed in cog 0.17; current_scope().record_metric() "
		             "is no longer experimental",
		             path, line) < 0)
			continue;
		add(r, true, "python-deprecated-imports", text, "%s",
		    "Remove the import of " DOCTOR_REMOVED_NAME
		    " from cog.types (kiln doctor --fix does it)");
	}
}

/* --fix: what can be changed for the user, changed before the checks run (which then see the result). */
static void fix(struct report *r, const char *dir, const char *file)
{
	struct kiln_manifest *m = NULL;
	if (kiln_manifest_load(&m, dir, file, NULL) < 0)
		return; /* the manifest's check says why */
	char *why = NULL, *done = NULL;
	int rc = doctor_fix_predict_to_run(dir, m->path, &done, &why);
	if (rc < 0)
		add(r, true, "predict-to-run", why ? why : "out of memory", "%s",
		    "migrate by hand: derive the class from cog.BaseRunner, name its method run() and the "
		    "manifest's key run:");
	else if (rc > 0)
		json_array_append_new(r->fixed,
		                      json_pack("{s:s, s:s?}", "check", "predict-to-run", "message", done));
	free(why);
	free(done);
	if (rc > 0) { /* the migrated project's manifest */
		kiln_manifest_free(m);
		m = NULL;
		if (kiln_manifest_load(&m, dir, file, NULL) < 0)
			return;
	}
	char *paths[2];
	python_files(m, paths);
	for (size_t i = 0; i < 2; i++) {
		_cleanup_free_ char *path = paths[i];
		if (!path || (rc = doctor_fix_deprecated_import(path, &why)) == 0)
			continue;
		if (rc < 0)
			add(r, true, "python-deprecated-imports", why ? why : "out of memory", "%s",
			    "remove the import of " DOCTOR_REMOVED_NAME
			    " from cog.types and what uses it by hand");
		else
			json_array_append_new(r->fixed, json_pack("{s:s, s:s+}", "check",
			                                          "python-deprecated-imports", "message",
			                                          "removed the import of " DOCTOR_REMOVED_NAME
			                                          " from cog.types and its uses in ",
			                                          path));
		free(why);
		why = NULL;
	}
	kiln_manifest_free(m);
}

static void print_text(const struct report *r, const char *dir)
{
	size_t i;
	json_t *f;
	json_array_foreach(r->fixed, i, f)
	    printf("fixed: %s: %s\n", json_string_value(json_object_get(f, "check")),
	           json_string_value(json_object_get(f, "message")));
	for (size_t i = 0; i < r->n; i++) {
		const struct finding *f = &r->v[i];
		printf("%s: %s: ", f->error ? "error" : "warning", f->check);
		if (f->file && f->column)
			printf("%s:%d:%d: ", f->file, f->line, f->column);
		else if (f->file && f->line)
			printf("%s:%d: ", f->file, f->line);
		else if (f->file)
			printf("%s: ", f->file);
		printf("%s (fix: %s)\n", f->message, f->fix ? f->fix : "");
	}
	size_t warnings = r->n - r->errors;
	if (r->n == 0)
		printf("no problems found in '%s'\n", dir);
	else
		printf("%zu error%s, %zu warning%s in '%s'\n", r->errors, r->errors == 1 ? "" : "s", warnings,
		       warnings == 1 ? "" : "s", dir);
}

static void print_json(const struct report *r, const char *dir)
{
	json_auto_t *findings = json_array();
	for (size_t i = 0; i < r->n; i++) {
		const struct finding *f = &r->v[i];
		json_array_append_new(findings,
		                      json_pack("{s:s, s:s, s:o, s:o, s:o, s:s, s:s}", "severity",
		                                f->error ? "error" : "warning", "check", f->check, "file",
		                                f->file ? json_string(f->file) : json_null(), "line",
		                                f->file ? json_integer(f->line) : json_null(), "column",
		                                f->column ? json_integer(f->column) : json_null(), "message",
		                                f->message ? f->message : "", "fix", f->fix ? f->fix : ""));
	}
	json_auto_t *doc = json_pack("{s:s, s:b, s:I, s:I, s:O, s:O}", "project", dir, "ok", r->errors == 0,
	                             "errors", (json_int_t)r->errors, "warnings",
	                             (json_int_t)(r->n - r->errors), "findings", findings, "fixed", r->fixed);
	kiln_json_dumpf(doc, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
}

int cmd_doctor(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"file", required_argument, NULL, 'f'},
	    {"fix", no_argument, NULL, OPT_FIX},
	    {"format", required_argument, NULL, OPT_FORMAT},
	    {"json", no_argument, NULL, CLI_OPT_JSON},
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	struct doctor_args a = {0};
	int first, status = cli_parse(argc, argv, ":f:" CLI_COMMON_SHORT, longopts, NULL, doctor_option, &a,
	                              0, 1, &first);
	if (status >= 0)
		return status;
	const char *dir = cli_project_dir(first < argc ? argv[first] : NULL, a.file);
	struct report r = {.fixed = json_array()};
	struct kiln_runtime rt;
	struct kiln_error *rt_err = NULL;
	bool have_rt = kiln_runtime_locate(&rt, &rt_err) == 0;
	if (a.fix)
		fix(&r, dir, a.file);
	struct kiln_manifest *m = check_manifest(&r, dir, a.file);
	if (m) {
		check_predictor(&r, m, have_rt ? &rt : NULL);
		check_imports(&r, m);
		check_python(&r, m);
		check_requirements(&r, m);
		check_weights(&r, m);
	}
	check_ignore(&r, dir);
	check_tools(&r, m, rt_err);
	if (a.json)
		print_json(&r, dir);
	else
		print_text(&r, dir);
	status = r.errors ? EXIT_FAIL : EXIT_OK;
	for (size_t i = 0; i < r.n; i++) {
		free(r.v[i].file);
		free(r.v[i].message);
		free(r.v[i].fix);
	}
	free(r.v);
	json_decref(r.fixed);
	kiln_error_free(rt_err);
	if (have_rt)
		kiln_runtime_release(&rt);
	kiln_manifest_free(m);
	return status;
}
