/* SPDX-License-Identifier: Apache-2.0 */
/*
 * doctor_fix.c: what `kiln doctor --fix` changes, as `cog doctor --fix` does: a starter project's
 * deprecated predict interface (predict: predict.py:Predictor, BasePredictor, predict()) migrated to the
 * run interface (run: run.py:Runner, BaseRunner, run()). Files are replaced whole (a new file renamed over
 * the old), so an interrupted fix leaves each file as it was or as it is meant to be.
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

/* Write TEXT to PATH through a new file beside it renamed over it (EXCL: PATH must not exist; the mode
 * of what it replaces, else 0644). 0, or -1 with errno set. */
static int replace_file(const char *path, const char *text, bool excl)
{
	struct stat st;
	mode_t mode = stat(path, &st) == 0 ? st.st_mode & 07777 : 0644;
	if (excl && access(path, F_OK) == 0)
		return errno = EEXIST, -1;
	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%s.kiln-fix-XXXXXX", path) < 0)
		return errno = ENOMEM, -1;
	int fd = mkstemp(tmp);
	if (fd < 0)
		return -1;
	int rc = kiln_write_all(fd, text, strlen(text)) < 0 || fchmod(fd, mode) < 0 || fsync(fd) < 0 ? -1 : 0;
	int saved = errno;
	close(fd);
	if (rc == 0 && excl)
		rc = link(tmp, path); /* never over a file that appeared meanwhile */
	else if (rc == 0)
		rc = rename(tmp, path);
	saved = rc < 0 ? errno : saved;
	if (excl || rc < 0)
		unlink(tmp);
	errno = saved;
	return rc;
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
	if (replace_file(runpy, s3, true) < 0) {
		say(why, "cannot write %s: %s", runpy, strerror(errno));
		goto out;
	}
	if (replace_file(manifest, y, false) < 0) {
		say(why, "cannot write %s: %s", manifest, strerror(errno));
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
