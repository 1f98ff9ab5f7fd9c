/* SPDX-License-Identifier: Apache-2.0 */
/* tests/pkg/plan.c: the build plan: file selection, weight classification, layers, titles and errors. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fs.h"
#include "pkg/plan.h"

#define KIB 1024ull
#define MIB (1024ull * 1024ull)

/* Temporary project directories, removed at the end of each test. */
static char tmpdir[64];
static char tmpdir2[64];

static void make_tmpdirs(void)
{
	strcpy(tmpdir, "/tmp/kiln-plan-XXXXXX");
	strcpy(tmpdir2, "/tmp/kiln-plan-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	cr_assert_not_null(mkdtemp(tmpdir2));
}

static void remove_tmpdirs(void)
{
	kiln_remove_tree(tmpdir, NULL);
	kiln_remove_tree(tmpdir2, NULL);
}

TestSuite(plan, .init = make_tmpdirs, .fini = remove_tmpdirs);

/* Create ROOT/REL (and its directories) as a sparse file of SIZE bytes with MODE. */
static void make_file_in(const char *root, const char *rel, uint64_t size, mode_t mode)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	char dir[PATH_MAX];
	strcpy(dir, path);
	*strrchr(dir, '/') = '\0';
	cr_assert_eq(kiln_mkdir_p(dir, NULL), 0);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert(fd >= 0, "cannot create %s", path);
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
	cr_assert_eq(chmod(path, mode), 0);
}

static void make_file(const char *rel, uint64_t size)
{
	make_file_in(tmpdir, rel, size, 0644);
}

static void make_dir(const char *rel)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
	cr_assert_eq(kiln_mkdir_p(path, NULL), 0);
}

static void make_link(const char *rel, const char *target)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
	cr_assert_eq(symlink(target, path), 0, "symlink %s", path);
}

static void write_text(const char *rel, const char *text)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(kiln_write_all(fd, text, strlen(text)), 0);
	close(fd);
}

/* A manifest for the project in DIR with the weights globs GLOBS (NULL-terminated, may be NULL). */
static struct kiln_manifest *manifest_for(const char *dir, const char *const *globs)
{
	struct kiln_manifest *m = calloc(1, sizeof(*m));
	m->dir = strdup(dir);
	m->path = kiln_path_join(dir, "kiln.yaml");
	size_t n = 0;
	while (globs && globs[n])
		n++;
	if (n > 0) {
		m->weights.v = calloc(n, sizeof(char *));
		m->weights.pos = calloc(n, sizeof(struct kiln_pos));
		for (size_t i = 0; i < n; i++) {
			m->weights.v[i] = strdup(globs[i]);
			m->weights.pos[i] = (struct kiln_pos){(int)(10 + i), 5};
		}
		m->weights.n = n;
	}
	return m;
}

static void manifest_free(struct kiln_manifest *m)
{
	for (size_t i = 0; i < m->weights.n; i++)
		free(m->weights.v[i]);
	free(m->weights.v);
	free(m->weights.pos);
	free(m->dir);
	free(m->path);
	free(m);
}

/* Small thresholds so that tests need no large files. */
static struct kiln_plan_options small_options(void)
{
	struct kiln_plan_options o;
	kiln_plan_options_init(&o);
	o.single_threshold = 1 * MIB;
	o.bundle_max = 2 * MIB;
	return o;
}

/* Make the plan of tmpdir; the test fails when it cannot be made. */
static struct kiln_plan *plan_of(const char *const *globs, const struct kiln_plan_options *o)
{
	struct kiln_manifest *m = manifest_for(tmpdir, globs);
	struct kiln_plan *p = NULL;
	struct kiln_error *err = NULL;
	int r = kiln_plan_make(&p, m, o, &err);
	manifest_free(m);
	cr_assert_eq(r, 0, "plan failed: %s", err ? err->message : "?");
	return p;
}

/* The plan of tmpdir must fail; returns the error for the test to check and free. */
static struct kiln_error *plan_error(const char *const *globs, const struct kiln_plan_options *o)
{
	struct kiln_manifest *m = manifest_for(tmpdir, globs);
	struct kiln_plan *p = NULL;
	struct kiln_error *err = NULL;
	int r = kiln_plan_make(&p, m, o, &err);
	manifest_free(m);
	cr_assert_lt(r, 0, "plan should have failed");
	cr_assert_null(p);
	cr_assert_not_null(err);
	cr_assert_eq(r, err->code);
	return err;
}

/* The entry named NAME in any layer (and its layer index in *layer), or NULL. */
static const struct kiln_tar_entry *find_entry(const struct kiln_plan *p, const char *name, size_t *layer)
{
	for (size_t l = 0; l < p->n; l++)
		for (size_t i = 0; i < p->layers[l].n; i++)
			if (strcmp(p->layers[l].entries[i].name, name) == 0) {
				if (layer)
					*layer = l;
				return &p->layers[l].entries[i];
			}
	return NULL;
}

static const struct kiln_plan_layer *code_layer(const struct kiln_plan *p)
{
	cr_assert_gt(p->n, 0);
	const struct kiln_plan_layer *l = &p->layers[p->n - 1];
	cr_assert_eq(l->kind, KILN_LAYER_CODE);
	return l;
}

/* true when NAME is a weight of the plan */
static bool is_weight(const struct kiln_plan *p, const char *rel)
{
	for (size_t i = 0; i < p->nweights; i++)
		if (strcmp(p->weights[i].path, rel) == 0)
			return true;
	return false;
}

static void expect_sorted(const struct kiln_plan *p)
{
	for (size_t l = 0; l < p->n; l++)
		for (size_t i = 1; i < p->layers[l].n; i++)
			cr_expect_lt(strcmp(p->layers[l].entries[i - 1].name, p->layers[l].entries[i].name),
			             0, "layer %zu not sorted at %zu", l, i);
	for (size_t i = 1; i < p->nweights; i++)
		cr_expect_lt(strcmp(p->weights[i - 1].path, p->weights[i].path), 0);
}

Test(plan, defaults_follow_design_and_cog)
{
	struct kiln_plan_options o;
	kiln_plan_options_init(&o);
	cr_expect_str_eq(o.prefix, "src");
	cr_expect_eq(o.single_threshold, 64 * MIB);
	cr_expect_eq(o.bundle_max, 256 * MIB);
	cr_expect_eq(o.cog_weight_threshold, 10 * 1024 * 1024, "Cog: sizeThreshold = 10 * 1024 * 1024");
	cr_expect_str_eq(kiln_layer_kind_name(KILN_LAYER_BASE), "base");
	cr_expect_str_eq(kiln_layer_kind_name(KILN_LAYER_WEIGHTS), "weights");
	cr_expect_str_eq(kiln_layer_kind_name(KILN_LAYER_DEPS), "dependencies");
	cr_expect_str_eq(kiln_layer_kind_name(KILN_LAYER_RUNTIME), "runtime");
	cr_expect_str_eq(kiln_layer_kind_name(KILN_LAYER_CODE), "code");
}

Test(plan, empty_project_gives_a_code_layer_with_just_the_prefix)
{
	struct kiln_plan_options o = small_options();
	struct kiln_plan *p = plan_of(NULL, &o);
	cr_assert_eq(p->n, 1);
	const struct kiln_plan_layer *l = code_layer(p);
	cr_expect_str_eq(l->title, "code");
	cr_expect_eq(l->compression, KILN_COMPRESS_GZIP);
	cr_assert_eq(l->n, 1);
	cr_expect_str_eq(l->entries[0].name, "src");
	cr_expect_eq(l->entries[0].type, KILN_TAR_DIR);
	cr_expect_eq(l->entries[0].mode, 0755);
	cr_expect_eq(l->bytes, 0);
	cr_expect_eq(p->nweights, 0);
	cr_expect_eq(p->nskipped, 0);
	kiln_plan_free(p);
}

Test(plan, large_weights_get_their_own_layer_small_ones_are_bundled)
{
	make_file("predict.py", 100);
	make_file("models/z-big.bin", 1 * MIB + 1);
	make_file("models/a-big.bin", 1 * MIB);
	make_file("models/s1.bin", 800 * KIB);
	make_file("models/s2.bin", 800 * KIB);
	make_file("models/s3.bin", 800 * KIB);
	make_file("models/s4.bin", 100 * KIB);
	make_file("models/notes.txt", 10);
	struct kiln_plan_options o = small_options();
	static const char *const globs[] = {"models/*.bin", NULL};
	struct kiln_plan *p = plan_of(globs, &o);

	/* a-big, z-big (by path), weights-1 (s1 s2), weights-2 (s3 s4), code */
	cr_assert_eq(p->n, 5);
	cr_expect_str_eq(p->layers[0].title, "models/a-big.bin");
	cr_expect_str_eq(p->layers[1].title, "models/z-big.bin");
	cr_expect_str_eq(p->layers[2].title, "weights-1");
	cr_expect_str_eq(p->layers[3].title, "weights-2");
	cr_expect_str_eq(p->layers[4].title, "code");
	for (size_t l = 0; l < 4; l++) {
		cr_expect_eq(p->layers[l].kind, KILN_LAYER_WEIGHTS);
		cr_expect_eq(p->layers[l].compression, KILN_COMPRESS_NONE);
		cr_expect_leq(p->layers[l].bytes, o.bundle_max);
	}
	cr_assert_eq(p->layers[0].n, 1);
	cr_expect_str_eq(p->layers[0].entries[0].name, "src/models/a-big.bin");
	cr_expect_eq(p->layers[0].bytes, 1 * MIB);
	cr_assert_eq(p->layers[2].n, 2);
	cr_expect_str_eq(p->layers[2].entries[0].name, "src/models/s1.bin");
	cr_expect_str_eq(p->layers[2].entries[1].name, "src/models/s2.bin");
	cr_expect_eq(p->layers[2].bytes, 1600 * KIB);
	cr_assert_eq(p->layers[3].n, 2);
	cr_expect_str_eq(p->layers[3].entries[0].name, "src/models/s3.bin");
	cr_expect_eq(p->layers[3].bytes, 900 * KIB);

	const struct kiln_plan_layer *code = code_layer(p);
	cr_expect_eq(code->compression, KILN_COMPRESS_GZIP);
	cr_assert_eq(code->n, 2);
	cr_expect_str_eq(code->entries[0].name, "src/models/notes.txt");
	cr_expect_str_eq(code->entries[1].name, "src/predict.py");

	cr_assert_eq(p->nweights, 6);
	static const char *const paths[] = {"models/a-big.bin", "models/s1.bin", "models/s2.bin",
	                                    "models/s3.bin",    "models/s4.bin", "models/z-big.bin"};
	static const size_t layers[] = {0, 2, 2, 3, 3, 1};
	for (size_t i = 0; i < 6; i++) {
		cr_expect_str_eq(p->weights[i].path, paths[i]);
		cr_expect_eq(p->weights[i].layer, layers[i], "%s", paths[i]);
	}
	expect_sorted(p);
	kiln_plan_free(p);
}

Test(plan, file_entries_carry_source_size_and_fingerprint)
{
	make_file("models/a.bin", 1234);
	struct kiln_plan_options o = small_options();
	static const char *const globs[] = {"**/*.bin", NULL};
	struct kiln_plan *p = plan_of(globs, &o);
	const struct kiln_tar_entry *e = find_entry(p, "src/models/a.bin", NULL);
	cr_assert_not_null(e);
	cr_expect_eq(e->type, KILN_TAR_FILE);
	cr_expect_eq(e->size, 1234);
	char *real = realpath(tmpdir, NULL);
	char expect[PATH_MAX];
	snprintf(expect, sizeof(expect), "%s/models/a.bin", real);
	cr_expect_str_eq(e->source, expect);
	struct stat st;
	cr_assert_eq(lstat(expect, &st), 0);
	struct kiln_stat_fp fp;
	kiln_stat_fp_from(&fp, &st);
	cr_expect(kiln_stat_fp_equal(&fp, &e->fp));
	free(real);
	kiln_plan_free(p);
}

Test(plan, bundles_never_exceed_the_limit)
{
	char name[32];
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "w/%02d.bin", i);
		make_file(name, 700 * KIB);
	}
	struct kiln_plan_options o = small_options();
	static const char *const globs[] = {"w/*", NULL};
	struct kiln_plan *p = plan_of(globs, &o);
	/* 2 MiB holds two files of 700 KiB: 5 bundles, then code */
	cr_assert_eq(p->n, 6);
	for (size_t l = 0; l < 5; l++) {
		char title[16];
		snprintf(title, sizeof(title), "weights-%zu", l + 1);
		cr_expect_str_eq(p->layers[l].title, title);
		cr_expect_eq(p->layers[l].n, 2);
		cr_expect_eq(p->layers[l].bytes, 1400 * KIB);
	}
	kiln_plan_free(p);
}

Test(plan, prefix_option_names_the_image_directory)
{
	make_file("a.txt", 1);
	struct kiln_plan_options o = small_options();
	o.prefix = "/app/";
	struct kiln_plan *p = plan_of(NULL, &o);
	cr_expect_not_null(find_entry(p, "app/a.txt", NULL));
	kiln_plan_free(p);
}

Test(plan, cog_rule_without_globs)
{
	struct kiln_plan_options o = small_options();
	uint64_t t = o.cog_weight_threshold;
	make_file("predict.py", t);                /* code, however large */
	make_file("model.bin", t);                 /* at the top: a weight */
	make_file("almost.bin", t - 1);            /* below the threshold */
	make_file("demo.mp4", 2 * t);              /* media */
	make_file("run.log", 2 * t);               /* logs */
	make_file("pkg.whl", 2 * t);               /* Python wheel */
	make_file("Model.PNG", t);                 /* Cog's suffixes are case-sensitive */
	make_file("weights/model.safetensors", t); /* a weights directory... */
	make_file("weights/config.json", 100);     /* ...is taken whole, as Cog copies it */
	make_file("weights/sub/extra.bin", 10);    /* including what is under it */
	make_file("lib/model.pt", 2 * t);          /* a directory with code in it... */
	make_file("lib/deep/util.py", 10);         /* ...is not a weights directory */
	make_file("__pycache__/big.bin", 2 * t);   /* Cog's prefixes */
	make_file(".cog/cache.bin", 2 * t);
	struct kiln_plan *p = plan_of(NULL, &o);

	cr_expect(is_weight(p, "model.bin"));
	cr_expect(is_weight(p, "Model.PNG"));
	cr_expect(is_weight(p, "weights/model.safetensors"));
	cr_expect(is_weight(p, "weights/config.json"));
	cr_expect(is_weight(p, "weights/sub/extra.bin"));
	cr_expect_not(is_weight(p, "predict.py"));
	cr_expect_not(is_weight(p, "almost.bin"));
	cr_expect_not(is_weight(p, "demo.mp4"));
	cr_expect_not(is_weight(p, "run.log"));
	cr_expect_not(is_weight(p, "pkg.whl"));
	cr_expect_not(is_weight(p, "lib/model.pt"));
	cr_expect_not(is_weight(p, "__pycache__/big.bin"));
	cr_expect_not(is_weight(p, ".cog/cache.bin"));
	cr_expect_eq(p->nweights, 5);

	size_t layer = 0;
	cr_assert_not_null(find_entry(p, "src/predict.py", &layer));
	cr_expect_eq(p->layers[layer].kind, KILN_LAYER_CODE);
	cr_assert_not_null(find_entry(p, "src/demo.mp4", &layer));
	cr_expect_eq(p->layers[layer].kind, KILN_LAYER_CODE);
	cr_assert_not_null(find_entry(p, "src/lib/model.pt", &layer));
	cr_expect_eq(p->layers[layer].kind, KILN_LAYER_CODE);
	kiln_plan_free(p);
}

Test(plan, globs_replace_the_cog_rule)
{
	struct kiln_plan_options o = small_options();
	make_file("big.bin", 2 * o.cog_weight_threshold);
	make_file("ckpt/small.pt", 10);
	static const char *const globs[] = {"ckpt/*.pt", NULL};
	struct kiln_plan *p = plan_of(globs, &o);
	cr_expect(is_weight(p, "ckpt/small.pt"));
	cr_expect_not(is_weight(p, "big.bin"));
	cr_expect_eq(p->nweights, 1);
	kiln_plan_free(p);
}

Test(plan, modes_are_normalized)
{
	make_file_in(tmpdir, "run.sh", 1, 0700);
	make_file_in(tmpdir, "user-exec", 1, 0744);
	make_file_in(tmpdir, "other-exec", 1, 0601);
	make_file_in(tmpdir, "private.txt", 1, 0600);
	make_file_in(tmpdir, "public.txt", 1, 0666);
	make_dir("empty");
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/empty", tmpdir);
	cr_assert_eq(chmod(path, 0700), 0);
	make_link("link", "public.txt");
	struct kiln_plan_options o = small_options();
	struct kiln_plan *p = plan_of(NULL, &o);
	cr_expect_eq(find_entry(p, "src/run.sh", NULL)->mode, 0755);
	cr_expect_eq(find_entry(p, "src/user-exec", NULL)->mode, 0755);
	cr_expect_eq(find_entry(p, "src/other-exec", NULL)->mode, 0755);
	cr_expect_eq(find_entry(p, "src/private.txt", NULL)->mode, 0644);
	cr_expect_eq(find_entry(p, "src/public.txt", NULL)->mode, 0644);
	cr_expect_eq(find_entry(p, "src/empty", NULL)->mode, 0755);
	cr_expect_eq(find_entry(p, "src/link", NULL)->mode, 0777);
	kiln_plan_free(p);
}

Test(plan, only_empty_directories_get_an_entry)
{
	make_file("a/b/c.txt", 1);
	make_dir("a/empty");
	make_dir("x/y/z");
	struct kiln_plan_options o = small_options();
	struct kiln_plan *p = plan_of(NULL, &o);
	const struct kiln_plan_layer *code = code_layer(p);
	cr_assert_eq(code->n, 3);
	cr_expect_str_eq(code->entries[0].name, "src/a/b/c.txt");
	cr_expect_str_eq(code->entries[1].name, "src/a/empty");
	cr_expect_eq(code->entries[1].type, KILN_TAR_DIR);
	cr_expect_str_eq(code->entries[2].name, "src/x/y/z");
	kiln_plan_free(p);
}

Test(plan, symlinks_inside_are_kept_and_never_weights)
{
	make_file("models/a.bin", 10);
	make_file("b.txt", 1);
	make_link("models/latest.bin", "a.bin");
	make_link("models/up", "../b.txt");
	make_link("models/dot", ".");
	char *real = realpath(tmpdir, NULL);
	char target[PATH_MAX];
	snprintf(target, sizeof(target), "%s/b.txt", real);
	make_link("models/abs", target); /* absolute, through the real path */
	snprintf(target, sizeof(target), "%s/models/a.bin", tmpdir);
	make_link("models/abs-same-dir", target); /* absolute, through the path as given */
	snprintf(target, sizeof(target), "%s", real);
	make_link("models/abs-root", target);
	make_link("top", target);
	free(real);
	struct kiln_plan_options o = small_options();
	static const char *const globs[] = {"models/*.bin", NULL};
	struct kiln_plan *p = plan_of(globs, &o);

	cr_expect_eq(p->nweights, 1);
	cr_expect(is_weight(p, "models/a.bin"));
	size_t layer = 0;
	const struct kiln_tar_entry *e = find_entry(p, "src/models/latest.bin", &layer);
	cr_assert_not_null(e);
	cr_expect_eq(e->type, KILN_TAR_SYMLINK);
	cr_expect_str_eq(e->link_target, "a.bin");
	cr_expect_eq(p->layers[layer].kind, KILN_LAYER_CODE);
	cr_expect_str_eq(find_entry(p, "src/models/up", NULL)->link_target, "../b.txt");
	cr_expect_str_eq(find_entry(p, "src/models/dot", NULL)->link_target, ".");
	cr_expect_str_eq(find_entry(p, "src/models/abs", NULL)->link_target, "../b.txt");
	cr_expect_str_eq(find_entry(p, "src/models/abs-same-dir", NULL)->link_target, "a.bin");
	cr_expect_str_eq(find_entry(p, "src/models/abs-root", NULL)->link_target, "..");
	cr_expect_str_eq(find_entry(p, "src/top", NULL)->link_target, ".");
	kiln_plan_free(p);
}

Test(plan, symlink_pointing_outside_is_an_error_naming_it)
{
	make_dir("x");
	make_link("x/link", "../../etc/passwd");
	struct kiln_plan_options o = small_options();
	struct kiln_error *err = plan_error(NULL, &o);
	cr_expect_eq(err->code, KILN_EINVAL);
	cr_expect_str_eq(err->message, "symlink 'x/link' points outside the project ('../../etc/passwd')");
	kiln_error_free(err);
}

Test(plan, absolute_symlink_outside_is_an_error)
{
	make_link("passwd", "/etc/passwd");
	struct kiln_plan_options o = small_options();
	struct kiln_error *err = plan_error(NULL, &o);
	cr_expect_str_eq(err->message, "symlink 'passwd' points outside the project ('/etc/passwd')");
	kiln_error_free(err);

	/* a sibling whose name starts with the project's is still outside */
	char target[PATH_MAX];
	snprintf(target, sizeof(target), "%s/passwd", tmpdir);
	cr_assert_eq(unlink(target), 0);
	snprintf(target, sizeof(target), "%s-other/x", tmpdir);
	make_link("sibling", target);
	err = plan_error(NULL, &o);
	cr_expect_eq(err->code, KILN_EINVAL);
	cr_expect_not_null(strstr(err->message, "symlink 'sibling' points outside the project"));
	kiln_error_free(err);
}

Test(plan, ignored_symlink_outside_is_fine)
{
	make_link("escape", "../../etc");
	write_text(".dockerignore", "escape\n");
	struct kiln_plan_options o = small_options();
	struct kiln_plan *p = plan_of(NULL, &o);
	cr_expect_null(find_entry(p, "src/escape", NULL));
	kiln_plan_free(p);
}

Test(plan, excluded_directory_is_not_entered_without_exceptions)
{
	make_file("venv/lib/site.py", 1);
	make_link("venv/lib/escape", "/usr/lib");
	make_file("predict.py", 1);
	write_text(".dockerignore", "venv\n");
	struct kiln_plan_options o = small_options();
	struct kiln_plan *p = plan_of(NULL, &o);
	cr_expect_eq(code_layer(p)->n, 2); /* .dockerignore, predict.py */
	kiln_plan_free(p);
}

Test(plan, glob_matching_no_file_reports_manifest_position)
{
	make_file("models/a.bin", 10);
	make_file("data/b.bin", 10);
	write_text(".dockerignore", "data\n");
	struct kiln_plan_options o = small_options();
	static const char *const globs[] = {"models/*.bin", "x/*.bin", NULL};
	struct kiln_error *err = plan_error(globs, &o);
	char expect[PATH_MAX + 100];
	snprintf(expect, sizeof(expect), "%s/kiln.yaml:11:5: weights[1]: 'x/*.bin' matches no file", tmpdir);
	cr_expect_eq(err->code, KILN_EINVAL);
	cr_expect_str_eq(err->message, expect);
	kiln_error_free(err);

	/* a glob that matches only ignored files matches nothing */
	static const char *const ignored[] = {"data/*.bin", NULL};
	err = plan_error(ignored, &o);
	snprintf(expect, sizeof(expect), "%s/kiln.yaml:10:5: weights[0]: 'data/*.bin' matches no file",
	         tmpdir);
	cr_expect_str_eq(err->message, expect);
	kiln_error_free(err);
}

Test(plan, ignore_rules_select_the_files)
{
	write_text(".dockerignore", "# test\ndata\n!data/keep.txt\n*.tmp\nold-empty\n");
	make_file("predict.py", 1);
	make_file("data/drop.txt", 1);
	make_file("data/keep.txt", 1);
	make_file("scratch.tmp", 1);
	make_file("sub/x.tmp", 1);
	make_dir("old-empty");
	make_dir("new-empty");
	make_file(".git/HEAD", 1);
	make_file(".git/objects/ab/cdef", 1);
	make_file("vendor/lib/.git/config", 1);
	make_file("vendor/lib/lib.py", 1);
	struct kiln_plan_options o = small_options();
	struct kiln_plan *p = plan_of(NULL, &o);
	const struct kiln_plan_layer *code = code_layer(p);
	static const char *const names[] = {"src/.dockerignore", "src/data/keep.txt",
	                                    "src/new-empty",     "src/predict.py",
	                                    "src/sub/x.tmp",     "src/vendor/lib/lib.py"};
	cr_assert_eq(code->n, 6);
	for (size_t i = 0; i < 6; i++)
		cr_expect_str_eq(code->entries[i].name, names[i]);
	kiln_plan_free(p);
}

Test(plan, kilnignore_wins_over_dockerignore)
{
	write_text(".kilnignore", "a.txt\n");
	write_text(".dockerignore", "b.txt\n");
	make_file("a.txt", 1);
	make_file("b.txt", 1);
	struct kiln_plan_options o = small_options();
	struct kiln_plan *p = plan_of(NULL, &o);
	cr_expect_null(find_entry(p, "src/a.txt", NULL));
	cr_expect_not_null(find_entry(p, "src/b.txt", NULL));
	kiln_plan_free(p);
}

Test(plan, fifo_is_skipped_and_listed)
{
	make_file("a.txt", 1);
	make_dir("run");
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/run/pipe", tmpdir);
	cr_assert_eq(mkfifo(path, 0644), 0);
	struct kiln_plan_options o = small_options();
	struct kiln_plan *p = plan_of(NULL, &o);
	cr_assert_eq(p->nskipped, 1);
	cr_expect_str_eq(p->skipped[0], "run/pipe");
	cr_expect_null(find_entry(p, "src/run/pipe", NULL));
	/* the directory holds nothing that goes into the image, so it is recorded as empty */
	cr_expect_not_null(find_entry(p, "src/run", NULL));
	kiln_plan_free(p);
}

/* Compare two plans made from the same contents in different directories. */
static void expect_same_plan(const struct kiln_plan *a, const struct kiln_plan *b)
{
	cr_assert_eq(a->n, b->n);
	for (size_t l = 0; l < a->n; l++) {
		const struct kiln_plan_layer *la = &a->layers[l], *lb = &b->layers[l];
		cr_assert_eq(la->n, lb->n);
		cr_expect_str_eq(la->title, lb->title);
		cr_expect_eq(la->bytes, lb->bytes);
		for (size_t i = 0; i < la->n; i++) {
			cr_expect_str_eq(la->entries[i].name, lb->entries[i].name);
			cr_expect_eq(la->entries[i].type, lb->entries[i].type);
			cr_expect_eq(la->entries[i].mode, lb->entries[i].mode);
			cr_expect_eq(la->entries[i].size, lb->entries[i].size);
		}
	}
	cr_assert_eq(a->nweights, b->nweights);
	for (size_t i = 0; i < a->nweights; i++) {
		cr_expect_str_eq(a->weights[i].path, b->weights[i].path);
		cr_expect_eq(a->weights[i].layer, b->weights[i].layer);
	}
}

Test(plan, order_does_not_depend_on_creation_order)
{
	static const char *const files[] = {"m/c.bin", "m/a.bin", "z.txt",   "m/b.bin", "a.txt",
	                                    "m/d.bin", "k/x.py",  "m/e.bin", "b/y.txt"};
	static const uint64_t sizes[] = {900 * KIB, 900 * KIB, 1, 1500 * KIB, 1, 300 * KIB, 1, 1100 * KIB, 1};
	size_t n = sizeof(files) / sizeof(files[0]);
	for (size_t i = 0; i < n; i++)
		make_file_in(tmpdir, files[i], sizes[i], 0644);
	for (size_t i = n; i-- > 0;)
		make_file_in(tmpdir2, files[i], sizes[i], 0644);
	struct kiln_plan_options o = small_options();
	static const char *const globs[] = {"m/*.bin", NULL};
	struct kiln_plan *a = plan_of(globs, &o);
	struct kiln_manifest *m = manifest_for(tmpdir2, globs);
	struct kiln_plan *b = NULL;
	cr_assert_eq(kiln_plan_make(&b, m, &o, NULL), 0);
	manifest_free(m);
	expect_same_plan(a, b);
	expect_sorted(a);
	/* singles b (1.5M), e (1.1M); bundles a+c (1.8M), d; code */
	cr_assert_eq(a->n, 5);
	cr_expect_str_eq(a->layers[0].title, "m/b.bin");
	cr_expect_str_eq(a->layers[1].title, "m/e.bin");
	cr_expect_eq(a->layers[2].n, 2);
	cr_expect_eq(a->layers[3].n, 1);
	kiln_plan_free(a);
	kiln_plan_free(b);
}

Test(plan, unreadable_file_is_an_error_naming_it)
{
	make_file_in(tmpdir, "models/a.bin", 10, 0000);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/models", tmpdir);
	cr_assert_eq(chmod(tmpdir, 0755), 0);
	cr_assert_eq(chmod(path, 0755), 0);
	/* root reads everything: check as an ordinary user in a child process */
	int pipefd[2];
	cr_assert_eq(pipe(pipefd), 0);
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		close(pipefd[0]);
		if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
			_exit(2);
		struct kiln_manifest *m = manifest_for(tmpdir, NULL);
		struct kiln_plan *p = NULL;
		struct kiln_error *err = NULL;
		int r = kiln_plan_make(&p, m, NULL, &err);
		if (r == 0)
			_exit(3);
		(void)!write(pipefd[1], err->message, strlen(err->message));
		_exit(0);
	}
	close(pipefd[1]);
	char msg[512] = {0};
	size_t got = 0;
	ssize_t k;
	while ((k = read(pipefd[0], msg + got, sizeof(msg) - 1 - got)) > 0)
		got += (size_t)k;
	close(pipefd[0]);
	int status = 0;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	cr_expect_str_eq(msg, "cannot read 'models/a.bin': Permission denied");
}

Test(plan, missing_project_directory_is_an_error)
{
	struct kiln_manifest *m = manifest_for("/nonexistent/kiln-project", NULL);
	struct kiln_plan *p = NULL;
	struct kiln_error *err = NULL;
	cr_expect_eq(kiln_plan_make(&p, m, NULL, &err), KILN_ENOTFOUND);
	cr_expect_str_eq(
	    err->message,
	    "cannot open project directory '/nonexistent/kiln-project': No such file or directory");
	kiln_error_free(err);
	manifest_free(m);
}

/* The plan of tmpdir with O has src/kiln.yaml read from SOURCE, its entries sorted. */
static void expect_kiln_yaml_from(const struct kiln_plan_options *o, const char *source)
{
	struct kiln_plan *p = plan_of(NULL, o);
	const struct kiln_tar_entry *e = find_entry(p, "src/kiln.yaml", NULL);
	cr_assert_not_null(e);
	cr_expect_str_eq(e->source, source);
	expect_sorted(p);
	kiln_plan_free(p);
}

Test(plan, a_manifest_given_with_f_is_the_images_kiln_yaml)
{
	write_text("kiln.yaml", "run: own.py:P\n");
	write_text("cog.yaml", "predict: cog.py:P\n");
	char alt[PATH_MAX], own[PATH_MAX];
	snprintf(alt, sizeof(alt), "%s/alt", tmpdir);
	cr_assert_eq(mkdir(alt, 0755), 0);
	write_text("alt/other.yaml", "run: alt.py:P\n");
	char *real = realpath(tmpdir, NULL);
	snprintf(alt, sizeof(alt), "%s/alt/other.yaml", real);
	snprintf(own, sizeof(own), "%s/kiln.yaml", real);
	struct kiln_plan_options o = small_options();
	o.manifest = alt;
	struct kiln_plan *p = plan_of(NULL, &o);
	const struct kiln_tar_entry *e = find_entry(p, "src/kiln.yaml", NULL);
	cr_assert_not_null(e);
	cr_expect_str_eq(e->source, alt, "the -f file in place of the project's kiln.yaml");
	cr_expect_eq(e->size, strlen("run: alt.py:P\n"));
	cr_expect_not_null(find_entry(p, "src/alt/other.yaml", NULL), "the file itself stays where it is");
	cr_expect_not_null(find_entry(p, "src/cog.yaml", NULL));
	expect_sorted(p);
	kiln_plan_free(p);

	/* the project's own kiln.yaml given with -f: nothing changes */
	o.manifest = own;
	expect_kiln_yaml_from(&o, own);

	/* no kiln.yaml in the project, and -f names its cog.yaml's sibling: a kiln.yaml is added, sorted */
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/kiln.yaml", tmpdir);
	cr_assert_eq(unlink(path), 0);
	o.manifest = alt;
	expect_kiln_yaml_from(&o, alt);

	/* a manifest that cannot be read is an error naming it */
	o.manifest = "/nonexistent/kiln.yaml";
	struct kiln_error *err = plan_error(NULL, &o);
	cr_expect_str_eq(err->message,
	                 "cannot read the manifest '/nonexistent/kiln.yaml': No such file or directory");
	kiln_error_free(err);
	free(real);
}
