/* SPDX-License-Identifier: Apache-2.0 */
/* tests/shim/prefetch.c: weight prefetch: complete reads, missing files, cancel, progress JSON. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/fs.h"
#include "shim/shim.h"

static char *tmp;

static void make_tmp(void)
{
	tmp = strdup("/tmp/kiln-prefetch-XXXXXX");
	cr_assert(mkdtemp(tmp) != NULL);
}

static void remove_tmp(void)
{
	kiln_remove_tree(tmp, NULL);
	free(tmp);
}

TestSuite(prefetch, .init = make_tmp, .fini = remove_tmp);

/* Create NAME in the test's directory with SIZE bytes of a pattern; returns its path (caller frees). */
static char *make_file(const char *name, size_t size)
{
	char *path = kiln_path_join(tmp, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0, "cannot create %s", path);
	char block[65536];
	for (size_t i = 0; i < sizeof(block); i++)
		block[i] = (char)(i * 31 + size);
	for (size_t done = 0; done < size;) {
		size_t n = size - done < sizeof(block) ? size - done : sizeof(block);
		cr_assert_eq(kiln_write_all(fd, block, n), 0);
		done += n;
	}
	close(fd);
	return path;
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Poll P's progress until "done" (failing after 60 s); returns the final progress (caller frees). */
static json_t *wait_done(struct shim_prefetch *p)
{
	double until = now_seconds() + 60;
	for (;;) {
		json_t *j = shim_prefetch_json(p);
		cr_assert_not_null(j);
		if (json_is_true(json_object_get(j, "done")))
			return j;
		json_decref(j);
		cr_assert(now_seconds() < until, "prefetch did not finish");
		usleep(1000);
	}
}

static json_int_t field(json_t *j, const char *name)
{
	json_t *v = json_object_get(j, name);
	cr_assert(json_is_integer(v), "'%s' is not an integer", name);
	return json_integer_value(v);
}

static void free_paths(char **paths, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
}

Test(prefetch, reads_every_file_to_its_end)
{
	size_t sizes[] = {3 * 1024 * 1024 + 17, 5 * 1024 * 1024, 1024 * 1024, 0, 12345};
	char *files[5];
	json_int_t total = 0;
	for (size_t i = 0; i < 5; i++) {
		char name[32];
		snprintf(name, sizeof(name), "w%zu.safetensors", i);
		files[i] = make_file(name, sizes[i]);
		total += (json_int_t)sizes[i];
	}
	struct shim_prefetch *p = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(shim_prefetch_start(&p, files, 5, 2, &err), 0);
	cr_assert_not_null(p);
	json_t *j = wait_done(p);
	cr_assert_eq(field(j, "files"), 5);
	cr_assert_eq(field(j, "files_done"), 5);
	cr_assert_eq(field(j, "bytes"), total);
	cr_assert_eq(field(j, "bytes_done"), total);
	cr_assert_eq(field(j, "missing"), 0);
	json_decref(j);
	shim_prefetch_free(p, false);
	free_paths(files, 5);
}

Test(prefetch, default_thread_count_handles_more_files_than_threads)
{
	char *files[9];
	for (size_t i = 0; i < 9; i++) {
		char name[32];
		snprintf(name, sizeof(name), "shard-%zu", i);
		files[i] = make_file(name, 256 * 1024 + i);
	}
	struct shim_prefetch *p = NULL;
	cr_assert_eq(shim_prefetch_start(&p, files, 9, 0, NULL), 0);
	json_t *j = wait_done(p);
	cr_assert_eq(field(j, "files_done"), 9);
	cr_assert_eq(field(j, "bytes_done"), field(j, "bytes"));
	cr_assert_eq(field(j, "bytes"), 9 * 256 * 1024 + 36);
	json_decref(j);
	shim_prefetch_free(p, false);
	free_paths(files, 9);
}

Test(prefetch, missing_files_are_counted_and_skipped)
{
	char *files[3] = {make_file("a", 2 * 1024 * 1024), kiln_path_join(tmp, "not-there"),
	                  make_file("b", 4096)};
	struct shim_prefetch *p = NULL;
	cr_assert_eq(shim_prefetch_start(&p, files, 3, 4, NULL), 0);
	json_t *j = wait_done(p);
	cr_assert_eq(field(j, "files"), 3);
	cr_assert_eq(field(j, "files_done"), 2);
	cr_assert_eq(field(j, "missing"), 1);
	cr_assert_eq(field(j, "bytes"), 2 * 1024 * 1024 + 4096);
	cr_assert_eq(field(j, "bytes_done"), 2 * 1024 * 1024 + 4096);
	json_decref(j);
	shim_prefetch_free(p, false);
	free_paths(files, 3);
}

Test(prefetch, the_list_is_copied)
{
	char *files[1] = {make_file("only", 100)};
	char *copy[1] = {strdup(files[0])};
	struct shim_prefetch *p = NULL;
	cr_assert_eq(shim_prefetch_start(&p, copy, 1, 1, NULL), 0);
	free(copy[0]);
	copy[0] = NULL;
	json_t *j = wait_done(p);
	cr_assert_eq(field(j, "files_done"), 1);
	json_decref(j);
	shim_prefetch_free(p, false);
	free_paths(files, 1);
}

Test(prefetch, cancel_stops_a_long_read_early)
{
	/* A 1 TiB sparse file: reading it through would take minutes. */
	char *path = kiln_path_join(tmp, "huge");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(ftruncate(fd, 1LL << 40), 0);
	close(fd);
	char *files[1] = {path};
	struct shim_prefetch *p = NULL;
	cr_assert_eq(shim_prefetch_start(&p, files, 1, 1, NULL), 0);
	usleep(20 * 1000);
	json_t *j = shim_prefetch_json(p);
	cr_assert(json_is_false(json_object_get(j, "done")));
	cr_assert_eq(field(j, "bytes"), 1LL << 40);
	cr_assert_lt(field(j, "bytes_done"), 1LL << 40);
	cr_assert_eq(field(j, "files_done"), 0);
	json_decref(j);
	double t0 = now_seconds();
	shim_prefetch_free(p, true);
	cr_assert_lt(now_seconds() - t0, 5.0, "cancel took %.1f s", now_seconds() - t0);
	free(path);
}

Test(prefetch, progress_json_has_every_field)
{
	char *files[2] = {make_file("x", 1024 * 1024), make_file("y", 10)};
	struct shim_prefetch *p = NULL;
	cr_assert_eq(shim_prefetch_start(&p, files, 2, 1, NULL), 0);
	json_t *j = wait_done(p);
	const char *ints[] = {"files", "files_done", "bytes", "bytes_done", "missing"};
	for (size_t i = 0; i < 5; i++)
		cr_assert(json_is_integer(json_object_get(j, ints[i])), "'%s' missing", ints[i]);
	cr_assert(json_is_true(json_object_get(j, "done")));
	json_t *secs = json_object_get(j, "seconds");
	cr_assert(json_is_real(secs));
	cr_assert_geq(json_real_value(secs), 0.0);
	cr_assert_lt(json_real_value(secs), 60.0);
	cr_assert_eq(json_object_size(j), 7);
	/* Once done, the time stays put. */
	usleep(20 * 1000);
	json_t *again = shim_prefetch_json(p);
	cr_assert_eq(json_real_value(json_object_get(again, "seconds")), json_real_value(secs));
	json_decref(again);
	json_decref(j);
	shim_prefetch_free(p, false);
	free_paths(files, 2);
}

Test(prefetch, no_files_is_done_at_once)
{
	struct shim_prefetch *p = NULL;
	cr_assert_eq(shim_prefetch_start(&p, NULL, 0, 4, NULL), 0);
	json_t *j = shim_prefetch_json(p);
	cr_assert(json_is_true(json_object_get(j, "done")));
	cr_assert_eq(field(j, "files"), 0);
	cr_assert_eq(field(j, "bytes"), 0);
	json_decref(j);
	shim_prefetch_free(p, true);
	shim_prefetch_free(NULL, true);
}
