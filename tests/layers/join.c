/* SPDX-License-Identifier: Apache-2.0 */
/* tests/layers/join.c: layers joined from gzip fragments: the same tar as one layer written at once. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "layers/join.h"
#include "layers/tar.h"

static char *tmp;

static void make_tmp(void)
{
	tmp = strdup("/tmp/kiln-join-XXXXXX");
	cr_assert(mkdtemp(tmp) != NULL);
}

static void remove_tmp(void)
{
	kiln_remove_tree(tmp, NULL);
	free(tmp);
}

TestSuite(join, .init = make_tmp, .fini = remove_tmp);

static char *in_tmp(const char *name)
{
	char *p = NULL;
	cr_assert(asprintf(&p, "%s/%s", tmp, name) > 0);
	return p;
}

/* An entry for a new file NAME holding SIZE bytes of a pattern. */
static struct kiln_tar_entry file_entry(const char *name, size_t size)
{
	char *src = in_tmp(name);
	FILE *f = fopen(src, "w");
	cr_assert(f != NULL);
	for (size_t i = 0; i < size; i++)
		fputc((int)((i * 7 + size) & 0xff), f);
	fclose(f);
	struct stat st;
	cr_assert(stat(src, &st) == 0);
	struct kiln_tar_entry e = {
	    .name = strdup(name), .type = KILN_TAR_FILE, .mode = 0644, .source = src, .size = size};
	kiln_stat_fp_from(&e.fp, &st);
	return e;
}

/* Write ENTRIES to a new file under the test's directory: a whole layer or a fragment. */
static int write_to(const char *name, const struct kiln_tar_entry *e, size_t n, bool fragment,
                    struct kiln_layer_out *out)
{
	char *path = in_tmp(name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	free(path);
	cr_assert(fd >= 0);
	struct kiln_layer_options lo = {
	    .mtime = 1, .fd = fd, .compression = KILN_COMPRESS_GZIP, .fragment = fragment};
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_layer_write(out, e, n, &lo, &err), 0, "%s", err ? err->message : "");
	return fd;
}

Test(join, fragments_make_the_tar_one_layer_makes)
{
	struct kiln_tar_entry e[3] = {file_entry("a", 3000), file_entry("b", 0), file_entry("c", 70000)};
	struct kiln_layer_out whole, f1, f2, joined;
	int wfd = write_to("whole", e, 3, false, &whole);
	int fd1 = write_to("f1", e, 2, true, &f1);
	int fd2 = write_to("f2", e + 2, 1, true, &f2);
	struct kiln_layer_part parts[] = {{fd1, 0, f1.size}, {fd2, 0, f2.size}};
	char *out = in_tmp("joined");
	int ofd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_layer_join(&joined, ofd, parts, 2, NULL, &err), 0, "%s", err ? err->message : "");
	cr_expect_str_eq(joined.diff_id, whole.diff_id, "the joined tar is the tar of all the entries");
	cr_expect_str_neq(joined.digest, whole.digest);
	struct stat st;
	cr_assert(fstat(ofd, &st) == 0);
	cr_expect_eq((uint64_t)st.st_size, joined.size);
	/* gzip(1) reads the members as one stream */
	char *full = NULL;
	cr_assert(asprintf(&full, "bash -c 'gzip -dc %s | cmp -s - <(gzip -dc %s/whole)'", out, tmp) > 0);
	cr_expect_eq(system(full), 0, "gzip -dc of the joined layer is the whole layer's tar");
	/* the same parts again: the same bytes */
	struct kiln_layer_out again;
	char *again_path = in_tmp("again");
	int afd = open(again_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	free(again_path);
	cr_assert_eq(kiln_layer_join(&again, afd, parts, 2, NULL, &err), 0);
	cr_expect_str_eq(again.digest, joined.digest);
	free(full);
	free(out);
	close(wfd);
	close(fd1);
	close(fd2);
	close(ofd);
	close(afd);
	for (int i = 0; i < 3; i++)
		kiln_tar_entry_release(&e[i]);
}

Test(join, a_part_that_is_not_whole_gzip_members_is_an_error)
{
	struct kiln_tar_entry e[1] = {file_entry("a", 100000)};
	struct kiln_layer_out f1, joined;
	int fd1 = write_to("f1", e, 1, true, &f1);
	char *out_path = in_tmp("out");
	int ofd = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	free(out_path);
	struct kiln_error *err = NULL;
	struct kiln_layer_part cut = {fd1, 0, f1.size - 5};
	cr_expect_eq(kiln_layer_join(&joined, ofd, &cut, 1, NULL, &err), KILN_EIO);
	cr_expect(err && strstr(err->message, "ends inside a gzip member"), "%s", err ? err->message : "");
	kiln_error_free(err);
	err = NULL;
	struct kiln_layer_part shifted = {fd1, 3, f1.size - 3};
	cr_expect_eq(kiln_layer_join(&joined, ofd, &shifted, 1, NULL, &err), KILN_EIO);
	cr_expect(err && strstr(err->message, "is not gzip"), "%s", err ? err->message : "");
	kiln_error_free(err);
	err = NULL;
	struct kiln_layer_part past = {fd1, 0, f1.size + 10};
	cr_expect_eq(kiln_layer_join(&joined, ofd, &past, 1, NULL, &err), KILN_EIO);
	cr_expect(err && strstr(err->message, "short"), "%s", err ? err->message : "");
	kiln_error_free(err);
	close(fd1);
	close(ofd);
	kiln_tar_entry_release(&e[0]);
}

Test(join, a_fragment_is_gzip_only)
{
	struct kiln_tar_entry e[1] = {file_entry("a", 10)};
	struct kiln_layer_out out;
	struct kiln_layer_options lo = {.fd = -1, .compression = KILN_COMPRESS_NONE, .fragment = true};
	struct kiln_error *err = NULL;
	cr_expect_eq(kiln_layer_write(&out, e, 1, &lo, &err), KILN_EINVAL);
	kiln_error_free(err);
	kiln_tar_entry_release(&e[0]);
}
