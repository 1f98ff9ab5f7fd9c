/* SPDX-License-Identifier: Apache-2.0 */
/*
 * doctor_fix.c: what `kiln doctor --fix` changes, as `cog doctor --fix` does: a starter project's
 * deprecated predict interface (predict: predict.py:Predictor, BasePredictor, predict()) migrated to the
 * run interface (run: run.py:Runner, BaseRunner, run()), and the import of what Cog 0.17 removed from
 * cog.types taken out with what uses it. Files are replaced whole (kiln_write_file_atomic_mode), so an
 * interrupted fix leaves each file as it was or as it is meant to be.
 */
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
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

/* SRC with every match of RE replaced by REPL, in which "\1" is the match's first group. NULL: out of
 * memory. */
static char *replace_all(const char *src, const regex_t *re, const char *repl)
{
	struct kiln_buf b = {0};
	regmatch_t m[2];
	const char *p = src;
	int flags = 0;
	while (*p && regexec(re, p, 2, m, flags) == 0) {
		kiln_buf_put(&b, p, (size_t)m[0].rm_so);
		for (const char *r = repl; *r; r++) {
			if (r[0] == '\\' && r[1] == '1' && m[1].rm_so >= 0) {
				kiln_buf_put(&b, p + m[1].rm_so, (size_t)(m[1].rm_eo - m[1].rm_so));
				r++;
			} else {
				kiln_buf_put(&b, r, 1);
			}
		}
		size_t step = m[0].rm_eo > 0 ? (size_t)m[0].rm_eo : 1;
		if (m[0].rm_eo == 0)
			kiln_buf_put(&b, p, 1);
		p += step;
		flags = REG_NOTBOL * (p[-1] != '\n');
	}
	kiln_buf_put(&b, p, strlen(p));
	kiln_buf_put(&b, "", 1);
	return b.ptr;
}

/* How many times RE matches in SRC. */
static size_t count_matches(const char *src, const regex_t *re)
{
	size_t n = 0;
	regmatch_t m;
	int flags = 0;
	for (const char *p = src; *p && regexec(re, p, 1, &m, flags) == 0; n++) {
		p += m.rm_eo > 0 ? (size_t)m.rm_eo : 1;
		flags = REG_NOTBOL * (p[-1] != '\n');
	}
	return n;
}

/* Replace PATH's content with TEXT, whole (kiln_write_file_atomic), keeping its mode (a new file: 0644).
 * 0, or -1 with *why saying why. */
static int replace_file(const char *path, const char *text, char **why)
{
	struct stat st;
	mode_t mode = stat(path, &st) == 0 ? st.st_mode & 07777 : 0644;
	_cleanup_error_ struct kiln_error *err = NULL;
	if (kiln_write_file_atomic_mode(path, text, strlen(text), mode, &err) == 0)
		return 0;
	*why = strdup(err->message);
	return -1;
}

/* *OUT = the message FMT makes (NULL when memory runs out). */
static void say(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(char **out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(out, fmt, ap) < 0)
		*out = NULL;
	va_end(ap);
}

int doctor_fix_predict_to_run(const char *dir, const char *manifest, char **done, char **why)
{
	*done = *why = NULL;
	_cleanup_free_ char *yaml = NULL, *source = NULL, *s1 = NULL, *s2 = NULL, *s3 = NULL, *y = NULL;
	size_t len;
	if (kiln_read_file(&yaml, &len, manifest, 1 << 20, NULL) < 0)
		return 0; /* the manifest's check says why */
	regex_t ref, run, base, cls, method;
	regcomp(&ref, "^predict:[[:blank:]]*([\"']?)predict\\.py:Predictor\\1[[:blank:]]*$",
	        REG_EXTENDED | REG_NEWLINE);
	regcomp(&run, "^run:", REG_EXTENDED | REG_NEWLINE);
	regcomp(&base, "\\bBasePredictor\\b", REG_EXTENDED | REG_NEWLINE);
	regcomp(&cls, "\\bclass[[:space:]]+Predictor([[:space:]]*[(:])", REG_EXTENDED | REG_NEWLINE);
	regcomp(&method, "\\bdef[[:space:]]+predict[[:space:]]*\\(", REG_EXTENDED | REG_NEWLINE);
	int rc = 0;
	_cleanup_free_ char *py = kiln_path_join(dir, "predict.py");
	_cleanup_free_ char *runpy = kiln_path_join(dir, "run.py");
	if (!py || !runpy || count_matches(yaml, &ref) == 0)
		goto out; /* not the starter project's shape: the schema's warnings say what to change */
	rc = -1;
	if (count_matches(yaml, &run) > 0) {
		*why = strdup("automatic migration cannot run when run is already set");
		goto out;
	}
	if (access(runpy, F_OK) == 0) {
		*why = strdup("cannot migrate predict.py to run.py because run.py already exists");
		goto out;
	}
	if (kiln_read_file(&source, &len, py, 16 << 20, NULL) < 0) {
		*why = strdup("cannot migrate predict.py to run.py because predict.py was not found");
		goto out;
	}
	if (count_matches(source, &cls) != 1 || count_matches(source, &method) != 1) {
		*why =
		    strdup("Manual migration required: automatic migration only supports a single Predictor "
		           "class with a single predict method");
		goto out;
	}
	s1 = replace_all(source, &base, "BaseRunner");
	s2 = s1 ? replace_all(s1, &cls, "class Runner\\1") : NULL;
	s3 = s2 ? replace_all(s2, &method, "def run(") : NULL;
	y = s3 ? replace_all(yaml, &ref, "run: \"run.py:Runner\"") : NULL;
	if (!y) {
		*why = strdup("out of memory");
		goto out;
	}
	if (replace_file(runpy, s3, why) < 0)
		goto out;
	if (replace_file(manifest, y, why) < 0) {
		unlink(runpy);
		goto out;
	}
	if (unlink(py) < 0) {
		say(why, "cannot remove %s: %s", py, strerror(errno));
		goto out;
	}
	rc = 1;
	say(done,
	    "migrated predict.py:Predictor to run.py:Runner (BaseRunner, run()), and %s's predict: to run:",
	    manifest);
out:
	regfree(&ref);
	regfree(&run);
	regfree(&base);
	regfree(&cls);
	regfree(&method);
	return rc;
}

/* ---- python-deprecated-imports: `from cog.types import ExperimentalFeatureWarning` (removed in Cog 0.17) */

/* A file's text as lines (each without its newline). */
struct lines {
	char **v;
	size_t n;
	bool final_newline;
};

static void lines_free(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

static int lines_split(struct lines *l, const char *text)
{
	*l = (struct lines){0};
	size_t len = strlen(text);
	l->final_newline = len > 0 && text[len - 1] == '\n';
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char **v = realloc(l->v, (l->n + 1) * sizeof(*v));
		if (!v)
			return -1;
		l->v = v;
		if (!(l->v[l->n] = strndup(p, n)))
			return -1;
		l->n++;
		p += n + (nl != NULL);
	}
	return 0;
}

static bool ident_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Whether LINE has the identifier WORD (not inside a longer name). */
static bool has_word(const char *line, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = strstr(line, word); p; p = strstr(p + 1, word))
		if ((p == line || !ident_char(p[-1])) && !ident_char(p[n]))
			return true;
	return false;
}

/* The end (exclusive) of the top-level unit starting at line I: the lines after it that are indented,
 * blank, or close a bracket at the margin, up to the last that is not blank. */
static size_t unit_end(const struct lines *l, size_t i)
{
	size_t end = i + 1;
	for (size_t j = i + 1; j < l->n; j++) {
		char c = l->v[j][0];
		if (c == '\0' || c == ' ' || c == '\t') {
			if (strspn(l->v[j], " \t") != strlen(l->v[j]))
				end = j + 1;
			continue;
		}
		if (c == ')' || c == ']' || c == '}') {
			end = j + 1;
			continue;
		}
		break;
	}
	return end;
}

/* Whether the unit at line I opens a block (def, class, if, ...: never removed whole). */
static bool is_block(const char *line)
{
	static const char *const kw[] = {"def",  "class", "if",     "elif",    "else",  "for",   "while",
	                                 "with", "try",   "except", "finally", "async", "match", NULL};
	if (line[0] == '@')
		return true;
	for (size_t k = 0; kw[k]; k++) {
		size_t n = strlen(kw[k]);
		if (strncmp(line, kw[k], n) == 0 && !ident_char(line[n]))
			return true;
	}
	return false;
}

/* The unit's lines joined with spaces (a statement across lines as one), or NULL. */
static char *unit_text(const struct lines *l, size_t i, size_t end)
{
	struct kiln_buf b = {0};
	for (size_t j = i; j < end; j++) {
		kiln_buf_put(&b, l->v[j], strlen(l->v[j]));
		kiln_buf_put(&b, " ", 1);
	}
	kiln_buf_put(&b, "", 1);
	return b.ptr;
}

/* If the unit TEXT is `from cog.types import ...` naming the deprecated name: true, with *kept the other
 * names ("a, b as c", maybe "") and *alias what the file calls it. */
static bool deprecated_import(const char *text, char **kept, char **alias)
{
	const char *p = text;
	static const char *const words[] = {"from", "cog.types", "import"};
	for (size_t k = 0; k < 3; k++) {
		p += strspn(p, " \t");
		size_t n = strlen(words[k]);
		if (strncmp(p, words[k], n) != 0 || (p[n] != ' ' && p[n] != '\t' && p[n] != '('))
			return false;
		p += n;
	}
	struct kiln_buf b = {0};
	bool found = false;
	*alias = NULL;
	char *list = strdup(p);
	for (char *save = NULL, *item = list ? strtok_r(list, ",", &save) : NULL; item;
	     item = strtok_r(NULL, ",", &save)) {
		char *s = item + strspn(item, " \t(\\");
		size_t n = strlen(s);
		while (n > 0 && strchr(" \t)\\", s[n - 1]))
			n--;
		s[n] = '\0';
		if (!*s)
			continue;
		size_t base = strcspn(s, " \t");
		if (base == strlen(DOCTOR_REMOVED_NAME) && strncmp(s, DOCTOR_REMOVED_NAME, base) == 0) {
			const char *as = strstr(s + base, " as ");
			free(*alias);
			*alias = strdup(as ? as + 4 + strspn(as + 4, " \t") : DOCTOR_REMOVED_NAME);
			found = true;
			continue;
		}
		if (b.len)
			kiln_buf_put(&b, ", ", 2);
		kiln_buf_put(&b, s, strlen(s));
	}
	free(list);
	kiln_buf_put(&b, "", 1);
	*kept = b.ptr;
	if (!found || !*alias) {
		free(*kept);
		free(*alias);
		*kept = *alias = NULL;
		return false;
	}
	return true;
}

/* The first top-level `from cog.types import ...` naming DOCTOR_REMOVED_NAME in L: true, with its lines
 * [*at, *end), *kept the other names it imports (maybe "") and *alias what the file calls it (the caller
 * frees both). */
static bool find_import(const struct lines *l, size_t *at, size_t *end, char **kept, char **alias)
{
	for (size_t i = 0; i < l->n; i++) {
		if (!l->v[i][0] || l->v[i][0] == ' ' || l->v[i][0] == '\t')
			continue;
		size_t e = unit_end(l, i);
		_cleanup_free_ char *u = unit_text(l, i, e);
		if (u && deprecated_import(u, kept, alias)) {
			*at = i;
			*end = e;
			return true;
		}
		i = e - 1;
	}
	return false;
}

int doctor_deprecated_import_line(const char *path)
{
	_cleanup_free_ char *text = NULL, *kept = NULL, *alias = NULL;
	size_t len, at = 0, end;
	struct lines l;
	if (kiln_read_file(&text, &len, path, 16 << 20, NULL) < 0 || lines_split(&l, text) < 0)
		return 0;
	int line = find_import(&l, &at, &end, &kept, &alias) ? (int)at + 1 : 0;
	lines_free(&l);
	return line;
}

/* The name a top-level `import X[.Y] [as Z]` line binds (X, or Z), when it imports one module; else NULL. */
static char *import_binding(const char *line)
{
	if (strncmp(line, "import ", 7) != 0 || strchr(line, ',') || strchr(line, '#'))
		return NULL;
	const char *p = line + 7 + strspn(line + 7, " \t");
	const char *as = strstr(p, " as ");
	if (as)
		p = as + 4 + strspn(as + 4, " \t");
	size_t n = 0;
	while (ident_char(p[n]))
		n++;
	return n ? strndup(p, n) : NULL;
}

int doctor_fix_deprecated_import(const char *path, char **why)
{
	*why = NULL;
	_cleanup_free_ char *text = NULL, *alias = NULL, *kept = NULL, *replacement = NULL;
	_cleanup_free_ bool *gone = NULL;
	size_t len, import_line = 0, end = 0;
	struct lines l;
	if (kiln_read_file(&text, &len, path, 16 << 20, NULL) < 0 || lines_split(&l, text) < 0)
		return say(why, "cannot read %s", path), -1;
	int rc = -1;
	struct kiln_buf removed = {0}; /* the statements removed for the name, for the imports they used */
	if (!find_import(&l, &import_line, &end, &kept, &alias)) {
		rc = 0;
		goto out;
	}
	if (!(gone = calloc(l.n + 1, sizeof(*gone))))
		goto out;
	for (size_t j = import_line; j < end; j++)
		gone[j] = true;
	if (*kept && asprintf(&replacement, "from cog.types import %s", kept) < 0)
		replacement = NULL;
	for (size_t i = end; i < l.n; i++) { /* the statements after it that use what it imported */
		char c = l.v[i][0];
		if (!c || c == ' ' || c == '\t' || c == '#')
			continue;
		size_t e = unit_end(&l, i);
		_cleanup_free_ char *u = unit_text(&l, i, e);
		if (u && !is_block(u) && strncmp(u, "import ", 7) != 0 && strncmp(u, "from ", 5) != 0 &&
		    has_word(u, alias)) {
			for (size_t j = i; j < e; j++)
				gone[j] = true;
			kiln_buf_put(&removed, u, strlen(u));
		}
		i = e - 1;
	}
	for (size_t i = 0; i < l.n; i++) {
		const char *t = l.v[i] + strspn(l.v[i], " \t");
		if (!gone[i] && *t != '#' && has_word(t, alias)) {
			say(why, "%s:%zu: %s is used here, not only imported: remove it by hand", path, i + 1,
			    alias);
			goto out;
		}
	}
	kiln_buf_put(&removed, "", 1);
	for (size_t i = 0; i < l.n; i++) { /* the imports only the removed statements used */
		_cleanup_free_ char *bound = gone[i] ? NULL : import_binding(l.v[i]);
		if (!bound || !has_word(removed.ptr, bound))
			continue;
		bool used = false;
		for (size_t j = 0; j < l.n && !used; j++)
			used = j != i && !gone[j] && has_word(l.v[j], bound);
		gone[i] = !used;
	}
	struct kiln_buf out = {0};
	for (size_t i = 0; i < l.n; i++) {
		const char *line = i == import_line && replacement ? replacement : gone[i] ? NULL : l.v[i];
		if (!line)
			continue;
		kiln_buf_put(&out, line, strlen(line));
		if (i + 1 < l.n || l.final_newline)
			kiln_buf_put(&out, "\n", 1);
	}
	kiln_buf_put(&out, "", 1);
	rc = replace_file(path, out.ptr, why) < 0 ? -1 : 1;
	kiln_buf_release(&out);
out:
	kiln_buf_release(&removed);
	lines_free(&l);
	return rc;
}
