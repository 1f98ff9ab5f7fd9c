/* SPDX-License-Identifier: Apache-2.0 */
/* plan.c: the build plan: walk the project, honour the ignore rules, classify weights, assign layers. */
#include "pkg/plan.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"

#define MIB (1024ull * 1024ull)

/* One thing found in the project that goes into the image. */
struct item {
	char *rel; /* project-relative path */
	enum kiln_tar_type type;
	struct stat st;
	char *link; /* KILN_TAR_SYMLINK: the target to record */
	bool weight;
	size_t layer;
};

struct walk {
	const struct kiln_ignore *ig;
	const char *root;   /* realpath of the project directory */
	const char *absdir; /* the project directory as given, made absolute and cleaned */
	struct item *v;
	size_t n, cap;
	char **skipped;
	size_t nskipped, capskipped;
};

const char *kiln_layer_kind_name(enum kiln_layer_kind kind)
{
	switch (kind) {
	case KILN_LAYER_BASE:
		return "base";
	case KILN_LAYER_WEIGHTS:
		return "weights";
	case KILN_LAYER_DEPS:
		return "dependencies";
	case KILN_LAYER_RUNTIME:
		return "runtime";
	case KILN_LAYER_CODE:
		return "code";
	}
	return "unknown";
}

void kiln_plan_options_init(struct kiln_plan_options *opt)
{
	opt->prefix = "src";
	opt->single_threshold = 64 * MIB;
	opt->bundle_max = 256 * MIB;
	/* Cog's sizeThreshold is 10 * 1024 * 1024 (replicate/cog pkg/weights/weights.go) */
	opt->cog_weight_threshold = 10 * MIB;
}

static void items_free(struct item *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].rel);
		free(v[i].link);
	}
	free(v);
}

/* Append an item to W; takes REL and LINK (freed on failure too). */
static int walk_add(struct walk *w, char *rel, enum kiln_tar_type type, const struct stat *st, char *link,
                    struct kiln_error **err)
{
	if (w->n == w->cap) {
		size_t ncap = w->cap ? w->cap * 2 : 64;
		struct item *v = realloc(w->v, ncap * sizeof(*v));
		if (v == NULL) {
			free(rel);
			free(link);
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		}
		w->v = v;
		w->cap = ncap;
	}
	w->v[w->n++] = (struct item){.rel = rel, .type = type, .st = *st, .link = link};
	return 0;
}

/* Record REL (taken) as left out because of its file type. */
static int walk_skip(struct walk *w, char *rel, struct kiln_error **err)
{
	if (w->nskipped == w->capskipped) {
		size_t ncap = w->capskipped ? w->capskipped * 2 : 8;
		char **v = realloc(w->skipped, ncap * sizeof(*v));
		if (v == NULL) {
			free(rel);
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		}
		w->skipped = v;
		w->capskipped = ncap;
	}
	w->skipped[w->nskipped++] = rel;
	return 0;
}

/* The directory part of a project-relative path ("" at the top). Returns its length. */
static size_t dir_len(const char *rel)
{
	const char *slash = strrchr(rel, '/');
	return slash ? (size_t)(slash - rel) : 0;
}

/*
 * Relative form of the project-relative TARGET as seen from the symlink REL: "../" for each directory of
 * REL not shared with TARGET, then the rest of TARGET ("." when that is nothing). Returns a new string or
 * NULL (out of memory).
 */
static char *relative_to_link(const char *rel, const char *target)
{
	size_t dl = dir_len(rel), i = 0;
	const char *t = target;
	/* skip the leading components the link's directory and the target share */
	while (i < dl) {
		size_t j = i;
		while (j < dl && rel[j] != '/')
			j++;
		size_t k = strcspn(t, "/");
		if (k != j - i || memcmp(rel + i, t, k) != 0)
			break;
		i = j < dl ? j + 1 : j;
		t += k;
		if (*t == '/')
			t++;
	}
	size_t ups = 0;
	if (i < dl) {
		ups = 1;
		for (size_t k = i; k < dl; k++)
			ups += rel[k] == '/';
	}
	struct kiln_buf b = KILN_BUF_INIT;
	int r = 0;
	for (size_t u = 0; u < ups && r == 0; u++)
		r = kiln_buf_puts(&b, u + 1 < ups || *t ? "../" : "..");
	if (r == 0)
		r = kiln_buf_puts(&b, *t || ups ? t : ".");
	if (r < 0) {
		kiln_buf_release(&b);
		return NULL;
	}
	return kiln_buf_detach(&b);
}

/* If the cleaned absolute path C is BASE or under it, the part after BASE ("" for BASE itself). */
static const char *under(const char *c, const char *base)
{
	size_t n = strlen(base);
	if (n == 1 && base[0] == '/')
		return c + 1;
	if (strncmp(c, base, n) != 0)
		return NULL;
	if (c[n] == '\0')
		return c + n;
	return c[n] == '/' ? c + n + 1 : NULL;
}

/*
 * Check the symlink REL whose text is TARGET: it must stay inside the project, judged lexically from the
 * link's directory. Absolute targets inside the project are rewritten relative to the link. *out gets
 * the target to record.
 */
static int check_link(char **out, const struct walk *w, const char *rel, const char *target,
                      struct kiln_error **err)
{
	_cleanup_free_ char *clean = NULL;
	if (target[0] == '/') {
		clean = kiln_path_clean(target);
	} else {
		_cleanup_free_ char *joined = NULL;
		size_t dl = dir_len(rel);
		if (asprintf(&joined, "%.*s%s%s", (int)dl, rel, dl ? "/" : "", target) < 0)
			joined = NULL;
		clean = joined ? kiln_path_clean(joined) : NULL;
	}
	if (clean == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	bool inside;
	if (target[0] == '/') {
		const char *in = under(clean, w->root);
		if (in == NULL)
			in = under(clean, w->absdir);
		inside = in != NULL;
		*out = inside ? relative_to_link(rel, in) : NULL;
	} else {
		inside = strcmp(clean, "..") != 0 && strncmp(clean, "../", 3) != 0;
		*out = inside ? strdup(target) : NULL;
	}
	if (!inside)
		return kiln_error_set(err, KILN_EINVAL, "symlink '%s' points outside the project ('%s')", rel,
		                      target);
	return *out ? 0 : kiln_error_set(err, KILN_EFAIL, "out of memory");
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read the names in the directory DIRFD, sorted; *out is a NULL-terminated array the caller frees. */
static int read_names(char ***out, size_t *n, int dirfd, const char *rel, struct kiln_error **err)
{
	int fd = dup(dirfd);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot read directory '%s'", *rel ? rel : ".");
	_cleanup_closedir_ DIR *d = fdopendir(fd);
	if (d == NULL) {
		int e = errno;
		close(fd);
		return kiln_error_errno(err, e, "cannot read directory '%s'", *rel ? rel : ".");
	}
	rewinddir(d);
	char **v = NULL;
	size_t len = 0, cap = 0;
	struct dirent *de;
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (de == NULL)
			break;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (len + 1 >= cap) {
			size_t ncap = cap ? cap * 2 : 32;
			char **nv = realloc(v, ncap * sizeof(*nv));
			if (nv == NULL)
				goto oom;
			v = nv;
			cap = ncap;
		}
		v[len] = strdup(de->d_name);
		if (v[len] == NULL)
			goto oom;
		len++;
	}
	if (errno != 0) {
		int e = errno;
		for (size_t i = 0; i < len; i++)
			free(v[i]);
		free(v);
		return kiln_error_errno(err, e, "cannot read directory '%s'", *rel ? rel : ".");
	}
	if (len > 0)
		qsort(v, len, sizeof(*v), cmp_str);
	*out = v;
	*n = len;
	return 0;
oom:
	for (size_t i = 0; i < len; i++)
		free(v[i]);
	free(v);
	return kiln_error_set(err, KILN_EFAIL, "out of memory");
}

static int walk_dir(struct walk *w, int dirfd, const char *rel, struct kiln_error **err);

/*
 * Look at the entry NAME of the directory DIRFD (project-relative PARENT, "" at the top): add it to the
 * walk unless it is ignored, descending into directories.
 */
static int walk_entry(struct walk *w, int dirfd, const char *parent, const char *name,
                      struct kiln_error **err)
{
	_cleanup_free_ char *rel = NULL;
	if (asprintf(&rel, "%s%s%s", parent, *parent ? "/" : "", name) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return kiln_error_errno(err, errno, "cannot stat '%s'", rel);
	bool excluded = kiln_ignore_match(w->ig, rel, S_ISDIR(st.st_mode));

	if (S_ISDIR(st.st_mode)) {
		/* .git is always out; without exceptions nothing under an excluded directory can come back */
		if (strcmp(name, ".git") == 0 || (excluded && !kiln_ignore_has_exceptions(w->ig)))
			return 0;
		_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			if (excluded)
				return 0; /* nothing under it can be listed; it is out anyway */
			return kiln_error_errno(err, errno, "cannot read directory '%s'", rel);
		}
		size_t before = w->n;
		int r = walk_dir(w, fd, rel, err);
		if (r < 0)
			return r;
		/* an empty directory is recorded; others come with their contents */
		if (w->n == before && !excluded)
			return walk_add(w, steal_pointer(&rel), KILN_TAR_DIR, &st, NULL, err);
		return 0;
	}
	if (excluded)
		return 0;
	if (S_ISREG(st.st_mode)) {
		int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
		if (fd < 0)
			return kiln_error_errno(err, errno, "cannot read '%s'", rel);
		close(fd);
		return walk_add(w, steal_pointer(&rel), KILN_TAR_FILE, &st, NULL, err);
	}
	if (S_ISLNK(st.st_mode)) {
		char buf[PATH_MAX];
		ssize_t n = readlinkat(dirfd, name, buf, sizeof(buf) - 1);
		if (n < 0)
			return kiln_error_errno(err, errno, "cannot read symlink '%s'", rel);
		buf[n] = '\0';
		char *link = NULL;
		int r = check_link(&link, w, rel, buf, err);
		if (r < 0)
			return r;
		return walk_add(w, steal_pointer(&rel), KILN_TAR_SYMLINK, &st, link, err);
	}
	/* sockets, fifos, devices */
	return walk_skip(w, steal_pointer(&rel), err);
}

/* Walk the directory DIRFD (project-relative REL, "" for the project itself) in name order. */
static int walk_dir(struct walk *w, int dirfd, const char *rel, struct kiln_error **err)
{
	char **names = NULL;
	size_t n = 0;
	int r = read_names(&names, &n, dirfd, rel, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		if (r == 0)
			r = walk_entry(w, dirfd, rel, names[i], err);
		free(names[i]);
	}
	free(names);
	return r;
}

static int cmp_item(const void *a, const void *b)
{
	return strcmp(((const struct item *)a)->rel, ((const struct item *)b)->rel);
}

/* The manifest's weights globs: mark matching files; each glob must match at least one. */
static int classify_by_globs(struct walk *w, const struct kiln_manifest *m, struct kiln_error **err)
{
	for (size_t g = 0; g < m->weights.n; g++) {
		bool any = false;
		for (size_t i = 0; i < w->n; i++) {
			struct item *it = &w->v[i];
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

static int classify_cog(struct walk *w, uint64_t threshold, struct kiln_error **err)
{
	/* the directories of the candidates below the top: indices of items, compared by dir_len */
	_cleanup_free_ size_t *dirs = calloc(w->n ? w->n : 1, sizeof(*dirs));
	if (dirs == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	size_t ndirs = 0;
	for (size_t i = 0; i < w->n; i++) {
		struct item *it = &w->v[i];
		if (it->type != KILN_TAR_FILE || cog_is_code(it->rel) ||
		    (uint64_t)it->st.st_size < threshold || cog_is_non_model(it->rel))
			continue;
		if (dir_len(it->rel) == 0)
			it->weight = true;
		else
			dirs[ndirs++] = i;
	}
	for (size_t a = 0; a < ndirs; a++) {
		const char *da = w->v[dirs[a]].rel;
		size_t la = dir_len(da);
		bool keep = true;
		/* dropped when another candidate's directory is above it (or the same one, seen earlier) */
		for (size_t b = 0; b < ndirs && keep; b++) {
			const char *db = w->v[dirs[b]].rel;
			size_t lb = dir_len(db);
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

/* Fill the entry E for the item IT under PREFIX; ROOT is the project's real path. */
static int make_entry(struct kiln_tar_entry *e, const struct item *it, const char *prefix, const char *root,
                      struct kiln_error **err)
{
	*e = (struct kiln_tar_entry){.type = it->type};
	if (asprintf(&e->name, "%s/%s", prefix, it->rel) < 0) {
		e->name = NULL;
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	switch (it->type) {
	case KILN_TAR_FILE:
		e->mode = (it->st.st_mode & 0111) ? 0755 : 0644;
		e->size = (uint64_t)it->st.st_size;
		kiln_stat_fp_from(&e->fp, &it->st);
		e->source = kiln_path_join(root, it->rel);
		if (e->source == NULL)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		break;
	case KILN_TAR_DIR:
		e->mode = 0755;
		break;
	case KILN_TAR_SYMLINK:
		e->mode = 0777;
		e->link_target = strdup(it->link);
		if (e->link_target == NULL)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		break;
	}
	return 0;
}

/* Add an entry to layer L (entries are allocated to the layer's final count beforehand). */
static int layer_add(struct kiln_plan_layer *l, const struct item *it, const char *prefix, const char *root,
                     struct kiln_error **err)
{
	int r = make_entry(&l->entries[l->n], it, prefix, root, err);
	l->n++; /* counted even on failure, so that kiln_plan_free releases what was made */
	if (r < 0)
		return r;
	if (it->type == KILN_TAR_FILE)
		l->bytes += (uint64_t)it->st.st_size;
	return 0;
}

/*
 * Assign the weight files to layers (each of at least SINGLE alone, by path; the rest bundled by path,
 * at most BUNDLE bytes a bundle), the rest to the code layer, and build the plan's layers and lists.
 */
static int assign_layers(struct kiln_plan *p, struct walk *w, const char *prefix, uint64_t single,
                         uint64_t bundle, struct kiln_error **err)
{
	size_t nsingle = 0, nbundle = 0, nweights = 0;
	for (size_t i = 0; i < w->n; i++)
		if (w->v[i].weight) {
			nweights++;
			nsingle += (uint64_t)w->v[i].st.st_size >= single;
		}
	/* singles first, in path order */
	size_t next = 0;
	for (size_t i = 0; i < w->n; i++)
		if (w->v[i].weight && (uint64_t)w->v[i].st.st_size >= single)
			w->v[i].layer = next++;
	/* then bundles, greedily in path order */
	uint64_t fill = 0;
	for (size_t i = 0; i < w->n; i++) {
		struct item *it = &w->v[i];
		if (!it->weight || (uint64_t)it->st.st_size >= single)
			continue;
		uint64_t size = (uint64_t)it->st.st_size;
		if (nbundle == 0 || fill + size > bundle) {
			nbundle++;
			fill = 0;
		}
		fill += size;
		it->layer = nsingle + nbundle - 1;
	}
	size_t code = nsingle + nbundle;
	for (size_t i = 0; i < w->n; i++)
		if (!w->v[i].weight)
			w->v[i].layer = code;

	p->n = code + 1;
	p->layers = calloc(p->n, sizeof(*p->layers));
	p->weights = calloc(nweights ? nweights : 1, sizeof(*p->weights));
	if (p->layers == NULL || p->weights == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	size_t *counts = calloc(p->n, sizeof(*counts));
	if (counts == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	for (size_t i = 0; i < w->n; i++)
		counts[w->v[i].layer]++;
	int r = 0;
	for (size_t l = 0; l < p->n && r == 0; l++) {
		struct kiln_plan_layer *pl = &p->layers[l];
		bool is_code = l == code;
		pl->kind = is_code ? KILN_LAYER_CODE : KILN_LAYER_WEIGHTS;
		pl->compression = is_code ? KILN_COMPRESS_GZIP : KILN_COMPRESS_NONE;
		pl->entries = calloc(counts[l] ? counts[l] : 1, sizeof(*pl->entries));
		if (pl->entries == NULL) {
			r = kiln_error_set(err, KILN_EFAIL, "out of memory");
			break;
		}
		if (is_code)
			pl->title = strdup("code");
		else if (l >= nsingle && asprintf(&pl->title, "weights-%zu", l - nsingle + 1) < 0)
			pl->title = NULL;
		if (pl->title == NULL && (is_code || l >= nsingle))
			r = kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	free(counts);
	if (r < 0)
		return r;
	for (size_t i = 0; i < w->n; i++) {
		struct item *it = &w->v[i];
		struct kiln_plan_layer *pl = &p->layers[it->layer];
		r = layer_add(pl, it, prefix, w->root, err);
		if (r < 0)
			return r;
		if (!it->weight)
			continue;
		if (it->layer < nsingle) {
			pl->title = strdup(it->rel);
			if (pl->title == NULL)
				return kiln_error_set(err, KILN_EFAIL, "out of memory");
		}
		struct kiln_plan_file *f = &p->weights[p->nweights++];
		f->path = strdup(it->rel);
		f->size = (uint64_t)it->st.st_size;
		f->layer = it->layer;
		if (f->path == NULL)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	/* the code layer is never empty: it holds at least the prefix directory */
	struct kiln_plan_layer *cl = &p->layers[code];
	if (cl->n == 0) {
		cl->entries[0] =
		    (struct kiln_tar_entry){.type = KILN_TAR_DIR, .mode = 0755, .name = strdup(prefix)};
		cl->n = 1;
		if (cl->entries[0].name == NULL)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	return 0;
}

/* The prefix without leading or trailing slashes, as a new string; NULL when memory runs out. */
static char *clean_prefix(const char *prefix)
{
	while (*prefix == '/')
		prefix++;
	size_t n = strlen(prefix);
	while (n > 0 && prefix[n - 1] == '/')
		n--;
	return strndup(prefix, n);
}

/* DIR made absolute (against the current directory) and cleaned, in *out. */
static int absolute_dir(char **out, const char *dir, struct kiln_error **err)
{
	_cleanup_free_ char *joined = NULL;
	if (dir[0] == '/') {
		joined = strdup(dir);
	} else {
		_cleanup_free_ char *cwd = getcwd(NULL, 0);
		if (cwd == NULL)
			return kiln_error_errno(err, errno, "cannot get the current directory");
		joined = kiln_path_join(cwd, dir);
	}
	*out = joined ? kiln_path_clean(joined) : NULL;
	return *out ? 0 : kiln_error_set(err, KILN_EFAIL, "out of memory");
}

int kiln_plan_make(struct kiln_plan **out, const struct kiln_manifest *m, const struct kiln_plan_options *opt,
                   struct kiln_error **err)
{
	struct kiln_plan_options defaults;
	if (opt == NULL) {
		kiln_plan_options_init(&defaults);
		opt = &defaults;
	}
	if (m == NULL || m->dir == NULL)
		return kiln_error_set(err, KILN_EINVAL, "no project directory");
	_cleanup_free_ char *prefix = clean_prefix(opt->prefix ? opt->prefix : "src");
	if (prefix == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (*prefix == '\0')
		return kiln_error_set(err, KILN_EINVAL, "invalid image directory '%s'", opt->prefix);

	_cleanup_free_ char *root = realpath(m->dir, NULL);
	if (root == NULL)
		return kiln_error_errno(err, errno, "cannot open project directory '%s'", m->dir);
	_cleanup_free_ char *absdir = NULL;
	int r = absolute_dir(&absdir, m->dir, err);
	if (r < 0)
		return r;
	_cleanup_close_ int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot open project directory '%s'", m->dir);

	struct kiln_ignore *ig = NULL;
	r = kiln_ignore_load(&ig, root, err);
	if (r < 0)
		return r;
	struct walk w = {.ig = ig, .root = root, .absdir = absdir};
	r = walk_dir(&w, fd, "", err);
	kiln_ignore_free(ig);
	struct kiln_plan *p = calloc(1, sizeof(*p));
	if (p == NULL && r == 0)
		r = kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (r == 0) {
		/* readdir order never matters: everything is sorted by path */
		qsort(w.v, w.n, sizeof(*w.v), cmp_item);
		if (w.nskipped > 0)
			qsort(w.skipped, w.nskipped, sizeof(*w.skipped), cmp_str);
		p->skipped = steal_pointer(&w.skipped);
		p->nskipped = w.nskipped;
		if (m->weights.n > 0)
			r = classify_by_globs(&w, m, err);
		else
			r = classify_cog(&w, opt->cog_weight_threshold, err);
	}
	if (r == 0)
		r = assign_layers(p, &w, prefix, opt->single_threshold, opt->bundle_max, err);
	items_free(w.v, w.n);
	for (size_t i = 0; w.skipped && i < w.nskipped; i++)
		free(w.skipped[i]);
	free(w.skipped);
	if (r < 0) {
		kiln_plan_free(p);
		return r;
	}
	*out = p;
	return 0;
}

void kiln_plan_free(struct kiln_plan *p)
{
	if (p == NULL)
		return;
	for (size_t l = 0; l < p->n; l++) {
		struct kiln_plan_layer *pl = &p->layers[l];
		for (size_t i = 0; pl->entries && i < pl->n; i++)
			kiln_tar_entry_release(&pl->entries[i]);
		free(pl->entries);
		free(pl->title);
	}
	free(p->layers);
	for (size_t i = 0; i < p->nweights; i++)
		free(p->weights[i].path);
	free(p->weights);
	for (size_t i = 0; i < p->nskipped; i++)
		free(p->skipped[i]);
	free(p->skipped);
	free(p);
}
