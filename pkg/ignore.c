/* SPDX-License-Identifier: Apache-2.0 */
/* ignore.c: globs with "**" and the project's ignore rules (.kilnignore, else .dockerignore). */
#include "pkg/plan.h"

#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"

/* The ignore file is read whole; a larger one is refused. */
#define IGNORE_FILE_MAX (1024 * 1024)

struct ignore_rule {
	char *pattern;  /* cleaned, no leading '!' or '/' */
	bool exception; /* the line started with '!' */
};

struct kiln_ignore {
	struct ignore_rule *rules;
	size_t n;
};

/*
 * Lexically clean PATH as Go's filepath.Clean does (the rules Docker applies to .dockerignore lines):
 * repeated slashes become one, "." components go, ".." removes the component before it (at the root it
 * is dropped, in a relative path with nothing left to remove it stays), trailing slashes go. An empty
 * result is "." ("/" when PATH was rooted). Returns a new string, NULL when memory runs out.
 */
char *kiln_path_clean(const char *path)
{
	size_t len = strlen(path);
	bool rooted = len > 0 && path[0] == '/';
	char *out = malloc(len + 2);
	if (out == NULL)
		return NULL;
	size_t o = 0;
	if (rooted)
		out[o++] = '/';
	size_t floor = o; /* ".." never removes what is before this */
	const char *s = path;
	while (*s) {
		while (*s == '/')
			s++;
		if (*s == '\0')
			break;
		const char *e = strchrnul(s, '/');
		size_t n = (size_t)(e - s);
		if (n == 1 && s[0] == '.') {
			/* skip */
		} else if (n == 2 && s[0] == '.' && s[1] == '.') {
			if (o > floor) {
				/* remove the last component */
				while (o > floor && out[o - 1] != '/')
					o--;
				if (o > floor)
					o--; /* the slash before it */
			} else if (!rooted) {
				/* nothing left to remove: keep ".." and never remove it later */
				if (o > 0)
					out[o++] = '/';
				out[o++] = '.';
				out[o++] = '.';
				floor = o;
			}
		} else {
			if (o > 0 && out[o - 1] != '/')
				out[o++] = '/';
			memcpy(out + o, s, n);
			o += n;
		}
		s = e;
	}
	if (o == 0)
		out[o++] = '.';
	out[o] = '\0';
	return out;
}

/* Copy the component [s, e) into BUF of SIZE bytes; false when it does not fit. */
static bool copy_component(char *buf, size_t size, const char *s, const char *e)
{
	size_t n = (size_t)(e - s);
	if (n >= size)
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return true;
}

/* Skip slashes and "." components: the start of the next real component of a path, or its end. */
static const char *next_component(const char *s)
{
	for (;;) {
		while (*s == '/')
			s++;
		if (s[0] == '.' && (s[1] == '/' || s[1] == '\0'))
			s++;
		else
			return s;
	}
}

/*
 * Match the pattern components from P against the path components from S (both at a component start or
 * at their end). "**" matches zero or more whole components; as the last component it matches one or
 * more (everything under a directory, as in Docker and git). Other components go to fnmatch(3).
 */
static bool match_components(const char *p, const char *s)
{
	char pc[NAME_MAX * 4 + 1], sc[NAME_MAX * 4 + 1];
	for (;;) {
		p = next_component(p);
		s = next_component(s);
		if (*p == '\0')
			return *s == '\0';
		const char *pe = strchrnul(p, '/');
		if (pe - p == 2 && p[0] == '*' && p[1] == '*') {
			const char *rest = next_component(pe);
			if (*rest == '\0')
				return *s != '\0';
			/* zero directories, else eat one and try again */
			for (;;) {
				if (match_components(rest, s))
					return true;
				if (*s == '\0')
					return false;
				s = next_component(strchrnul(s, '/'));
			}
		}
		if (*s == '\0')
			return false;
		const char *se = strchrnul(s, '/');
		if (!copy_component(pc, sizeof(pc), p, pe) || !copy_component(sc, sizeof(sc), s, se))
			return false;
		if (fnmatch(pc, sc, FNM_PATHNAME) != 0)
			return false;
		p = pe;
		s = se;
	}
}

bool kiln_glob_match(const char *pattern, const char *path)
{
	if (pattern == NULL || path == NULL)
		return false;
	/* a leading "./" or "/" means the project root, which is where matching starts anyway */
	while (pattern[0] == '/' || (pattern[0] == '.' && pattern[1] == '/'))
		pattern += pattern[0] == '/' ? 1 : 2;
	if (*pattern == '\0')
		return false;
	return match_components(pattern, path);
}

/* true when some component of the project-relative PATH is ".git" */
static bool in_git_dir(const char *path)
{
	const char *s = path;
	while (*s) {
		const char *e = strchrnul(s, '/');
		if (e - s == 4 && memcmp(s, ".git", 4) == 0)
			return true;
		s = *e ? e + 1 : e;
	}
	return false;
}

/*
 * Docker's test for one rule: the pattern matches PATH itself or one of its parent directories
 * ("foo" matches "foo/bar/baz" through "foo").
 */
static bool rule_matches(const struct ignore_rule *r, const char *path)
{
	if (kiln_glob_match(r->pattern, path))
		return true;
	size_t len = strlen(path);
	char buf[PATH_MAX];
	if (len >= sizeof(buf))
		return false;
	memcpy(buf, path, len + 1);
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '/')
			continue;
		buf[i] = '\0';
		bool m = i > 0 && kiln_glob_match(r->pattern, buf);
		buf[i] = '/';
		if (m)
			return true;
	}
	return false;
}

bool kiln_ignore_match(const struct kiln_ignore *ig, const char *path, bool is_dir)
{
	(void)is_dir; /* Docker makes no difference between files and directories */
	if (in_git_dir(path))
		return true;
	if (ig == NULL)
		return false;
	/* The last rule that matches decides; as in Docker, skip rules that could not change the answer. */
	bool excluded = false;
	for (size_t i = 0; i < ig->n; i++) {
		const struct ignore_rule *r = &ig->rules[i];
		if (r->exception != excluded)
			continue;
		if (rule_matches(r, path))
			excluded = !r->exception;
	}
	return excluded;
}

bool kiln_ignore_has_exceptions(const struct kiln_ignore *ig)
{
	for (size_t i = 0; ig && i < ig->n; i++)
		if (ig->rules[i].exception)
			return true;
	return false;
}

/*
 * What Go's filepath.Match reports as ErrBadPattern, which Docker refuses: an unterminated "[...]" or a
 * trailing backslash. Returns NULL when PATTERN is fine, else the reason.
 */
static const char *pattern_problem(const char *pattern)
{
	for (const char *s = pattern; *s; s++) {
		if (*s == '\\') {
			if (s[1] == '\0')
				return "trailing backslash";
			s++;
		} else if (*s == '[') {
			const char *c = s + 1;
			if (*c == '!' || *c == '^')
				c++;
			if (*c == ']')
				c++; /* a leading ']' is a member */
			while (*c && *c != ']') {
				if (*c == '\\' && c[1])
					c++;
				c++;
			}
			if (*c != ']')
				return "unterminated character class";
			s = c;
		}
	}
	return NULL;
}

/* Add one line's pattern (already trimmed, without '!') to IG. */
static int add_rule(struct kiln_ignore *ig, size_t *cap, const char *text, bool exception, const char *file,
                    int line, struct kiln_error **err)
{
	if (*text == '\0')
		return kiln_error_set(err, KILN_EINVAL, "%s:%d: illegal exclusion pattern '!'", file, line);
	_cleanup_free_ char *clean = kiln_path_clean(text);
	if (clean == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	/* the project root is both the working and the root directory */
	if (clean[0] == '/' && clean[1] != '\0')
		memmove(clean, clean + 1, strlen(clean));
	const char *why = pattern_problem(clean);
	if (why)
		return kiln_error_set(err, KILN_EINVAL, "%s:%d: bad pattern '%s': %s", file, line, text, why);
	if (ig->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct ignore_rule *v = realloc(ig->rules, ncap * sizeof(*v));
		if (v == NULL)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		ig->rules = v;
		*cap = ncap;
	}
	ig->rules[ig->n].pattern = steal_pointer(&clean);
	ig->rules[ig->n].exception = exception;
	ig->n++;
	return 0;
}

/* Trim ASCII white space at both ends of S in place; returns the new start. */
static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\v' || *s == '\f')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\v' ||
	                 s[n - 1] == '\f'))
		s[--n] = '\0';
	return s;
}

/*
 * Parse TEXT, the contents of the ignore file NAME, as Docker reads .dockerignore: a UTF-8 BOM goes, a
 * line starting with '#' is a comment, lines are trimmed, blank ones skipped, a leading '!' marks an
 * exception, the pattern is cleaned and a leading '/' dropped.
 */
static int parse_rules(struct kiln_ignore *ig, char *text, const char *name, struct kiln_error **err)
{
	size_t cap = 0;
	char *s = text;
	if ((unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB && (unsigned char)s[2] == 0xBF)
		s += 3;
	int line = 0;
	while (*s) {
		char *e = strchrnul(s, '\n');
		bool last = *e == '\0';
		*e = '\0';
		line++;
		if (s[0] != '#') {
			char *t = trim(s);
			if (*t) {
				bool exception = t[0] == '!';
				if (exception)
					t = trim(t + 1);
				int r = add_rule(ig, &cap, t, exception, name, line, err);
				if (r < 0)
					return r;
			}
		}
		if (last)
			break;
		s = e + 1;
	}
	return 0;
}

int kiln_ignore_load(struct kiln_ignore **out, const char *dir, struct kiln_error **err)
{
	static const char *const names[] = {".kilnignore", ".dockerignore"};
	struct kiln_ignore *ig = calloc(1, sizeof(*ig));
	if (ig == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		_cleanup_free_ char *path = kiln_path_join(dir, names[i]);
		if (path == NULL) {
			kiln_ignore_free(ig);
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		}
		struct stat st;
		if (lstat(path, &st) < 0) {
			if (errno == ENOENT)
				continue;
			int e = errno;
			kiln_ignore_free(ig);
			return kiln_error_errno(err, e, "cannot read '%s'", path);
		}
		_cleanup_free_ char *text = NULL;
		int r = kiln_read_file(&text, NULL, path, IGNORE_FILE_MAX, err);
		if (r == 0)
			r = parse_rules(ig, text, path, err);
		if (r < 0) {
			kiln_ignore_free(ig);
			return r;
		}
		break;
	}
	*out = ig;
	return 0;
}

void kiln_ignore_free(struct kiln_ignore *ig)
{
	if (ig == NULL)
		return;
	for (size_t i = 0; i < ig->n; i++)
		free(ig->rules[i].pattern);
	free(ig->rules);
	free(ig);
}
