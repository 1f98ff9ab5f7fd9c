/* SPDX-License-Identifier: Apache-2.0 */
/* plan_walk.c: walk the project for the build plan: ignore rules, file types, symlinks kept inside. */
#include "pkg/plan_walk.h"

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

/* Append an item to W; takes REL and LINK (freed on failure too). */
static int walk_add(struct plan_walk *w, char *rel, enum kiln_tar_type type, const struct stat *st,
                    char *link, struct kiln_error **err)
{
	if (w->n == w->cap) {
		size_t ncap = w->cap ? w->cap * 2 : 64;
		struct plan_item *v = realloc(w->v, ncap * sizeof(*v));
		if (v == NULL) {
			free(rel);
			free(link);
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		}
		w->v = v;
		w->cap = ncap;
	}
	w->v[w->n++] = (struct plan_item){.rel = rel, .type = type, .st = *st, .link = link};
	return 0;
}

/* Record REL (taken) as left out because of its file type. */
static int walk_skip(struct plan_walk *w, char *rel, struct kiln_error **err)
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

size_t plan_dir_len(const char *rel)
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
	size_t dl = plan_dir_len(rel), i = 0;
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
static int check_link(char **out, const struct plan_walk *w, const char *rel, const char *target,
                      struct kiln_error **err)
{
	_cleanup_free_ char *clean = NULL;
	if (target[0] == '/') {
		clean = kiln_path_clean(target);
	} else {
		_cleanup_free_ char *joined = NULL;
		size_t dl = plan_dir_len(rel);
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

static int walk_dir(struct plan_walk *w, int dirfd, const char *rel, struct kiln_error **err);

/*
 * Look at the entry NAME of the directory DIRFD (project-relative PARENT, "" at the top): add it to the
 * walk unless it is ignored, descending into directories.
 */
static int walk_entry(struct plan_walk *w, int dirfd, const char *parent, const char *name,
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
static int walk_dir(struct plan_walk *w, int dirfd, const char *rel, struct kiln_error **err)
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
	return strcmp(((const struct plan_item *)a)->rel, ((const struct plan_item *)b)->rel);
}

int plan_walk_project(struct plan_walk *w, int dirfd, struct kiln_error **err)
{
	int r = walk_dir(w, dirfd, "", err);
	if (r < 0)
		return r;
	/* readdir order never matters: everything is sorted by path */
	if (w->n > 0)
		qsort(w->v, w->n, sizeof(*w->v), cmp_item);
	if (w->nskipped > 0)
		qsort(w->skipped, w->nskipped, sizeof(*w->skipped), cmp_str);
	return 0;
}

/* The walk's top-level item named NAME, or NULL. */
static struct plan_item *top_item(struct plan_walk *w, const char *name)
{
	for (size_t i = 0; i < w->n; i++)
		if (strcmp(w->v[i].rel, name) == 0)
			return &w->v[i];
	return NULL;
}

int plan_walk_set_manifest(struct plan_walk *w, const char *manifest, struct kiln_error **err)
{
	struct stat st;
	_cleanup_free_ char *real = realpath(manifest, NULL);
	if (real == NULL || stat(real, &st) < 0)
		return kiln_error_errno(err, errno, "cannot read the manifest '%s'", manifest);
	struct plan_item *it = top_item(w, "kiln.yaml");
	if (it == NULL)
		it = top_item(w, "cog.yaml");
	if (it && it->type == KILN_TAR_FILE && it->source == NULL) {
		_cleanup_free_ char *path = kiln_path_join(w->root, it->rel);
		_cleanup_free_ char *theirs = path ? realpath(path, NULL) : NULL;
		if (theirs && strcmp(theirs, real) == 0)
			return 0; /* the image's runtime reads it already */
	}
	char *source = strdup(real);
	if (source == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	it = top_item(w, "kiln.yaml");
	if (it) {
		free(it->link);
		free(it->source);
		*it = (struct plan_item){.rel = it->rel, .type = KILN_TAR_FILE, .st = st, .source = source};
		return 0;
	}
	char *rel = strdup("kiln.yaml");
	if (rel == NULL || walk_add(w, rel, KILN_TAR_FILE, &st, NULL, err) < 0) {
		free(source);
		return rel ? -1 : kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	w->v[w->n - 1].source = source;
	qsort(w->v, w->n, sizeof(*w->v), cmp_item);
	return 0;
}

void plan_walk_release(struct plan_walk *w)
{
	for (size_t i = 0; i < w->n; i++) {
		free(w->v[i].rel);
		free(w->v[i].link);
		free(w->v[i].source);
	}
	free(w->v);
	for (size_t i = 0; w->skipped && i < w->nskipped; i++)
		free(w->skipped[i]);
	free(w->skipped);
}
