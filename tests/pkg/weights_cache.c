/* SPDX-License-Identifier: Apache-2.0 */
/* tests/pkg/weights_cache.c: a node's weights cache filled from Debian's real docker-registry on loopback. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "pkg/weights_cache.h"
#include "tests/registry/fixture.h"

#define MIB (1024 * 1024)

static struct registry reg;
static char cache[256];

static void init(void)
{
	clean_environment();
	registry_start(&reg, false);
	setenv("KILN_FETCH_PART_SIZE", "1048576", 1);
}

static void fini(void)
{
	registry_stop(&reg);
	kiln_remove_tree(home, NULL);
}

TestSuite(weights_cache, .init = init, .fini = fini);

/* A fresh, empty cache directory. */
static void new_cache(void)
{
	snprintf(cache, sizeof(cache), "/tmp/kiln-wcache-XXXXXX");
	cr_assert(mkdtemp(cache) != NULL);
}

/* Upload N blobs of SIZES bytes (seeds from SEED) to REPO; their bytes in M, their entries in B. */
static void upload(struct kiln_registry *r, const char *repo, struct mem_src *m, struct kiln_blob_source *src,
                   struct kiln_weight_blob *b, const size_t *sizes, size_t n, uint32_t seed)
{
	static const char *names[] = {"weights/a.bin", "weights/b.bin", "weights/c.bin", "weights/d.bin"};
	for (size_t i = 0; i < n; i++) {
		src[i] = make_blob(&m[i], sizes[i], seed + (uint32_t)i);
		struct kiln_error *err = NULL;
		cr_assert_eq(kiln_registry_blob_upload(r, repo, &src[i], NULL, NULL, NULL, &err), 0, "%s",
		             err ? err->message : "");
		b[i] = (struct kiln_weight_blob){.digest = src[i].digest, .size = sizes[i], .name = names[i]};
	}
}

/* The cache holds blob I of M, byte for byte, under its digest. */
static void expect_cached(const struct kiln_weight_blob *b, const struct mem_src *m)
{
	char *path = kiln_weights_cache_path(cache, b->digest);
	char *data = NULL;
	size_t len = 0;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_read_file(&data, &len, path, 64 * MIB, &err), 0, "%s", err ? err->message : "");
	cr_assert_eq(len, m->size, "%s: %zu bytes", b->name, len);
	cr_assert(memcmp(data, m->data, len) == 0, "%s differs", b->name);
	free(data);
	free(path);
}

/* Files in DIR/SUB. */
static int count_files(const char *sub)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", cache, sub);
	DIR *d = opendir(path);
	int n = 0;
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

Test(weights_cache, a_cold_cache_is_filled_and_a_warm_one_fetches_nothing)
{
	struct kiln_registry *r = open_registry(reg.host, NULL);
	struct mem_src m[3];
	struct kiln_blob_source src[3];
	struct kiln_weight_blob b[3];
	const size_t sizes[] = {3 * MIB + 17, 1000, 0};
	upload(r, "kiln/w", m, src, b, sizes, 3, 100);
	new_cache();
	struct kiln_weights_progress p;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_weights_progress_init(&p, 3, &err), 0);
	cr_assert_eq(kiln_weights_fill(cache, r, "kiln/w", b, 3, 2, &p, &err), 0, "%s",
	             err ? err->message : "");
	for (int i = 0; i < 3; i++) {
		expect_cached(&b[i], &m[i]);
		cr_assert_eq(p.state[i], KILN_WEIGHT_FETCHED, "%s: state %d", b[i].name, p.state[i]);
		cr_assert_eq(p.done[i], sizes[i]);
	}
	cr_assert_eq(p.fetched, sizes[0] + sizes[1], "%llu bytes fetched", (unsigned long long)p.fetched);
	cr_assert_eq(count_files("tmp"), 0, "a temporary file is left");
	kiln_weights_progress_release(&p);

	/* warm: nothing fetched, every blob found */
	cr_assert_eq(kiln_weights_progress_init(&p, 3, &err), 0);
	cr_assert_eq(kiln_weights_fill(cache, r, "kiln/w", b, 3, 2, &p, &err), 0, "%s",
	             err ? err->message : "");
	for (int i = 0; i < 3; i++)
		cr_assert_eq(p.state[i], KILN_WEIGHT_CACHED, "%s: state %d", b[i].name, p.state[i]);
	cr_assert_eq(p.fetched, 0, "%llu bytes fetched from a warm cache", (unsigned long long)p.fetched);
	kiln_weights_progress_release(&p);
	for (int i = 0; i < 3; i++)
		free(m[i].data);
	kiln_registry_free(r);
	kiln_remove_tree(cache, NULL);
}

Test(weights_cache, a_file_of_the_wrong_size_is_fetched_again_and_stale_temporaries_go)
{
	struct kiln_registry *r = open_registry(reg.host, NULL);
	struct mem_src m[1];
	struct kiln_blob_source src[1];
	struct kiln_weight_blob b[1];
	const size_t sizes[] = {2 * MIB};
	upload(r, "kiln/w2", m, src, b, sizes, 1, 200);
	new_cache();
	char path[512];
	struct kiln_error *err = NULL;
	snprintf(path, sizeof(path), "%s/sha256", cache);
	cr_assert_eq(kiln_mkdir_p(path, &err), 0);
	char *dst = kiln_weights_cache_path(cache, b[0].digest);
	cr_assert_eq(kiln_write_file_atomic(dst, "half", 4, &err), 0);
	snprintf(path, sizeof(path), "%s/tmp", cache);
	cr_assert_eq(kiln_mkdir_p(path, &err), 0);
	snprintf(path, sizeof(path), "%s/tmp/999999999-0123456789abcdef-AAAAAA", cache);
	cr_assert_eq(kiln_write_file_atomic(path, "x", 1, &err), 0);
	struct kiln_weights_progress p;
	cr_assert_eq(kiln_weights_progress_init(&p, 1, &err), 0);
	cr_assert_eq(kiln_weights_fill(cache, r, "kiln/w2", b, 1, 1, &p, &err), 0, "%s",
	             err ? err->message : "");
	expect_cached(&b[0], &m[0]);
	cr_assert_eq(p.state[0], KILN_WEIGHT_FETCHED);
	cr_assert_eq(count_files("tmp"), 0, "the stale temporary file is left");
	kiln_weights_progress_release(&p);
	free(dst);
	free(m[0].data);
	kiln_registry_free(r);
	kiln_remove_tree(cache, NULL);
}

Test(weights_cache, a_blob_the_registry_lacks_fails_naming_the_file_and_keeps_nothing)
{
	struct kiln_registry *r = open_registry(reg.host, NULL);
	struct mem_src m[1];
	struct kiln_blob_source src[1];
	struct kiln_weight_blob b[2];
	const size_t sizes[] = {4096};
	upload(r, "kiln/w3", m, src, b, sizes, 1, 300);
	struct mem_src other;
	struct kiln_blob_source absent = make_blob(&other, 5000, 301); /* never uploaded */
	b[1] = (struct kiln_weight_blob){.digest = absent.digest, .size = 5000, .name = "weights/gone.bin"};
	new_cache();
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_weights_fill(cache, r, "kiln/w3", b, 2, 1, NULL, &err), 0);
	cr_assert(strstr(err->message, "weights/gone.bin") && strstr(err->message, reg.host) &&
	              strstr(err->message, "kiln/w3"),
	          "%s", err->message);
	char *dst = kiln_weights_cache_path(cache, absent.digest);
	cr_assert(access(dst, F_OK) != 0, "the missing blob has a file in the cache");
	cr_assert_eq(count_files("tmp"), 0, "a temporary file is left");
	kiln_error_free(err);
	err = NULL;
	/* a digest that is not one */
	struct kiln_weight_blob bad = {.digest = "sha256:XYZ", .size = 1, .name = "weights/bad.bin"};
	cr_assert_lt(kiln_weights_fill(cache, r, "kiln/w3", &bad, 1, 1, NULL, &err), 0);
	cr_assert(strstr(err->message, "weights/bad.bin") && strstr(err->message, "not a sha256 digest"),
	          "%s", err->message);
	kiln_error_free(err);
	free(dst);
	free(m[0].data);
	free(other.data);
	kiln_registry_free(r);
	kiln_remove_tree(cache, NULL);
}

/* Two fills of the same blobs into one cache at once, as two models on one node. */
struct racer {
	struct kiln_registry *r;
	const struct kiln_weight_blob *b;
	struct kiln_weights_progress p;
	int rc;
};

static void *race(void *ctx)
{
	struct racer *x = ctx;
	struct kiln_error *err = NULL;
	kiln_weights_progress_init(&x->p, 2, &err);
	x->rc = kiln_weights_fill(cache, x->r, "kiln/w4", x->b, 2, 2, &x->p, &err);
	kiln_error_free(err);
	return NULL;
}

Test(weights_cache, two_fills_at_once_fetch_each_blob_once)
{
	struct kiln_registry *r = open_registry(reg.host, NULL);
	struct mem_src m[2];
	struct kiln_blob_source src[2];
	struct kiln_weight_blob b[2];
	const size_t sizes[] = {3 * MIB, 2 * MIB + 1};
	upload(r, "kiln/w4", m, src, b, sizes, 2, 400);
	new_cache();
	struct racer x[2] = {{.r = r, .b = b}, {.r = r, .b = b}};
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, race, &x[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(x[0].rc, 0);
	cr_assert_eq(x[1].rc, 0);
	cr_assert_eq(x[0].p.fetched + x[1].p.fetched, sizes[0] + sizes[1], "%llu + %llu bytes fetched",
	             (unsigned long long)x[0].p.fetched, (unsigned long long)x[1].p.fetched);
	for (int i = 0; i < 2; i++) {
		expect_cached(&b[i], &m[i]);
		cr_assert(x[0].p.state[i] + x[1].p.state[i] == KILN_WEIGHT_CACHED + KILN_WEIGHT_FETCHED,
		          "blob %d: states %d and %d", i, x[0].p.state[i], x[1].p.state[i]);
	}
	for (int i = 0; i < 2; i++) {
		kiln_weights_progress_release(&x[i].p);
		free(m[i].data);
	}
	kiln_registry_free(r);
	kiln_remove_tree(cache, NULL);
}
