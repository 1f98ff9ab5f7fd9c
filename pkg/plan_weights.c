/* SPDX-License-Identifier: Apache-2.0 */
/* plan_weights.c: which of the project's files are weights: the manifest's globs, else Cog's rule. */
#include "pkg/plan_walk.h"

#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"

int plan_classify_globs(struct plan_walk *w, const struct kiln_manifest *m, struct kiln_error **err)
{
	for (size_t g = 0; g < m->weights.n; g++) {
		bool any = false;
		for (size_t i = 0; i < w->n; i++) {
			struct plan_item *it = &w->v[i];
			if (it->type != KILN_TAR_FILE || !kiln_glob_match(m->weights.v[g], it->rel))
				continue;
			it->weight = true;
			any = true;
		}
		if (!any) {
			struct kiln_pos pos = m->weights.pos ? m->weights.pos[g] : (struct kiln_pos){0, 0};
			return kiln_error_set(
			    err, KILN_EINVAL, "%s:%d:%d: weights[%zu]: '%s' matches no file",
			    m->path ? m->path : "kiln.yaml", pos.line, pos.column, g, m->weights.v[g]);
		}
	}
	return 0;
}

/*
 * Cog's rule for finding weights without being told (replicate/cog, pkg/weights/weights.go, FindWeights;
 * used by `cog build --separate-weights`):
 *  - code files are those whose extension (Go's filepath.Ext) is ".py" or ".ipynb";
 *  - a candidate is a file that is not code, of at least sizeThreshold = 10 * 1024 * 1024 bytes, whose
 *    path does not start with ".cog", ".git" or "__pycache__" (plain string prefixes, as Cog does) and
 *    does not end with one of suffixesToIgnore below (case-sensitive);
 *  - candidates at the top of the project are weights themselves; for the others Cog takes their
 *    directories, keeps the top-most ones (a directory under another one is dropped), then drops every
 *    directory that has a code file under it, and copies each remaining directory whole into the
 *    weights image. So every file under a kept directory is a weight here.
 * One deliberate difference: Cog tests "has a code file under it" with a plain string prefix ("model"
 * would be dropped for "models/x.py"); kiln compares whole components. Cog walks ignored files too; kiln
 * looks only at files that go into the image.
 */
static const char *const cog_suffixes[] = {
    ".py",  ".ipynb", ".whl",                                             /* Python projects */
    ".jpg", ".jpeg",  ".png", ".webp", ".svg", ".gif",  ".avif", ".heic", /* images */
    ".mp4", ".mov",   ".avi", ".wmv",  ".mkv", ".webm",                   /* videos */
    ".mp3", ".wav",   ".ogg", ".flac", ".aac", ".m4a",                    /* audio files */
    ".log",                                                               /* logs */
};
static const char *const cog_prefixes[] = {".cog", ".git", "__pycache__"};

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* Cog's isCodeFile: Go's filepath.Ext of the path is ".py" or ".ipynb". */
static bool cog_is_code(const char *rel)
{
	const char *base = strrchr(rel, '/');
	base = base ? base + 1 : rel;
	const char *dot = strrchr(base, '.');
	return dot && (strcmp(dot, ".py") == 0 || strcmp(dot, ".ipynb") == 0);
}

/* Cog's isNonModelFiles */
static bool cog_is_non_model(const char *rel)
{
	for (size_t i = 0; i < sizeof(cog_prefixes) / sizeof(cog_prefixes[0]); i++)
		if (strncmp(rel, cog_prefixes[i], strlen(cog_prefixes[i])) == 0)
			return true;
	for (size_t i = 0; i < sizeof(cog_suffixes) / sizeof(cog_suffixes[0]); i++)
		if (has_suffix(rel, cog_suffixes[i]))
			return true;
	return false;
}

/* true when REL is DIR (of length N) or under it */
static bool is_under(const char *rel, const char *dir, size_t n)
{
	return strncmp(rel, dir, n) == 0 && (rel[n] == '/' || rel[n] == '\0');
}

int plan_classify_cog(struct plan_walk *w, uint64_t threshold, struct kiln_error **err)
{
	/* the directories of the candidates below the top: indices of items, compared by dir_len */
	_cleanup_free_ size_t *dirs = calloc(w->n ? w->n : 1, sizeof(*dirs));
	if (dirs == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	size_t ndirs = 0;
	for (size_t i = 0; i < w->n; i++) {
		struct plan_item *it = &w->v[i];
		if (it->type != KILN_TAR_FILE || cog_is_code(it->rel) ||
		    (uint64_t)it->st.st_size < threshold || cog_is_non_model(it->rel))
			continue;
		if (plan_dir_len(it->rel) == 0)
			it->weight = true;
		else
			dirs[ndirs++] = i;
	}
	for (size_t a = 0; a < ndirs; a++) {
		const char *da = w->v[dirs[a]].rel;
		size_t la = plan_dir_len(da);
		bool keep = true;
		/* dropped when another candidate's directory is above it (or the same one, seen earlier) */
		for (size_t b = 0; b < ndirs && keep; b++) {
			const char *db = w->v[dirs[b]].rel;
			size_t lb = plan_dir_len(db);
			if (b == a || lb > la || !is_under(da, db, lb))
				continue;
			if (lb < la || b < a)
				keep = false;
		}
		/* dropped when a code file is under it */
		for (size_t i = 0; i < w->n && keep; i++)
			if (w->v[i].type == KILN_TAR_FILE && cog_is_code(w->v[i].rel) &&
			    is_under(w->v[i].rel, da, la))
				keep = false;
		if (!keep)
			continue;
		for (size_t i = 0; i < w->n; i++)
			if (w->v[i].type == KILN_TAR_FILE && is_under(w->v[i].rel, da, la) &&
			    w->v[i].rel[la] == '/')
				w->v[i].weight = true;
	}
	return 0;
}
