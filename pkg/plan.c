/* SPDX-License-Identifier: Apache-2.0 */
/* plan.c: the build plan: the project's files, walked and classified (plan_walk.c), assigned to layers. */
#include "pkg/plan.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "pkg/plan_walk.h"

#define MIB (1024ull * 1024ull)

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
	*opt = (struct kiln_plan_options){0};
	opt->prefix = "src";
	opt->single_threshold = 64 * MIB;
	opt->bundle_max = 256 * MIB;
	/* Cog's sizeThreshold is 10 * 1024 * 1024 (replicate/cog pkg/weights/weights.go) */
	opt->cog_weight_threshold = 10 * MIB;
}

/* Fill the entry E for the item IT under PREFIX; ROOT is the project's real path. */
static int make_entry(struct kiln_tar_entry *e, const struct plan_item *it, const char *prefix,
                      const char *root, struct kiln_error **err)
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
		e->source = it->source ? strdup(it->source) : kiln_path_join(root, it->rel);
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
static int layer_add(struct kiln_plan_layer *l, const struct plan_item *it, const char *prefix,
                     const char *root, struct kiln_error **err)
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
static int assign_layers(struct kiln_plan *p, struct plan_walk *w, const char *prefix, uint64_t single,
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
		struct plan_item *it = &w->v[i];
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
		struct plan_item *it = &w->v[i];
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
	struct plan_walk w = {.ig = ig, .root = root, .absdir = absdir};
	r = plan_walk_project(&w, fd, err);
	kiln_ignore_free(ig);
	if (r == 0 && opt->manifest)
		r = plan_walk_set_manifest(&w, opt->manifest, err);
	struct kiln_plan *p = calloc(1, sizeof(*p));
	if (p == NULL && r == 0)
		r = kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (r == 0) {
		p->skipped = steal_pointer(&w.skipped);
		p->nskipped = w.nskipped;
		if (m->weights.n > 0)
			r = plan_classify_globs(&w, m, err);
		else
			r = plan_classify_cog(&w, opt->cog_weight_threshold, err);
	}
	if (r == 0)
		r = assign_layers(p, &w, prefix, opt->single_threshold, opt->bundle_max, err);
	plan_walk_release(&w);
	if (r < 0) {
		kiln_plan_free(p);
		return r;
	}
	*out = p;
	return 0;
}

static void layer_release(struct kiln_plan_layer *pl)
{
	for (size_t i = 0; pl->entries && i < pl->n; i++)
		kiln_tar_entry_release(&pl->entries[i]);
	free(pl->entries);
	free(pl->title);
}

void kiln_plan_drop_layer(struct kiln_plan *p, size_t index)
{
	if (index >= p->n)
		return;
	layer_release(&p->layers[index]);
	memmove(&p->layers[index], &p->layers[index + 1], (p->n - index - 1) * sizeof(*p->layers));
	p->n--;
	for (size_t i = 0; i < p->nweights; i++)
		if (p->weights[i].layer > index)
			p->weights[i].layer--;
}

void kiln_plan_free(struct kiln_plan *p)
{
	if (p == NULL)
		return;
	for (size_t l = 0; l < p->n; l++)
		layer_release(&p->layers[l]);
	free(p->layers);
	for (size_t i = 0; i < p->nweights; i++)
		free(p->weights[i].path);
	free(p->weights);
	for (size_t i = 0; i < p->nskipped; i++)
		free(p->skipped[i]);
	free(p->skipped);
	free(p);
}
