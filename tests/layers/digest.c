/* SPDX-License-Identifier: Apache-2.0 */
/* tests/layers/digest.c: SHA-256 digests of buffers, streams and files. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fs.h"
#include "layers/digest.h"

#define EMPTY_SHA256 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define ABC_SHA256   "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static char *tmp;

static void make_tmp(void)
{
	tmp = strdup("/tmp/kiln-digest-XXXXXX");
	cr_assert(mkdtemp(tmp) != NULL);
}

static void remove_tmp(void)
{
	kiln_remove_tree(tmp, NULL);
	free(tmp);
}

TestSuite(digest, .init = make_tmp, .fini = remove_tmp);

Test(digest, empty_string_gives_the_known_vector)
{
	char d[KILN_DIGEST_LEN];
	kiln_digest_buffer(d, "", 0);
	cr_assert_str_eq(d, EMPTY_SHA256);
}

Test(digest, abc_gives_the_known_vector)
{
	char d[KILN_DIGEST_LEN];
	kiln_digest_buffer(d, "abc", 3);
	cr_assert_str_eq(d, ABC_SHA256);
}

Test(digest, streamed_pieces_equal_the_one_shot_digest)
{
	struct kiln_sha256 *h = NULL;
	cr_assert_eq(kiln_sha256_new(&h, NULL), 0);
	kiln_sha256_update(h, "a", 1);
	kiln_sha256_update(h, "", 0);
	kiln_sha256_update(h, "bc", 2);
	char d[KILN_DIGEST_LEN];
	kiln_sha256_final(h, d);
	kiln_sha256_free(h);
	cr_assert_str_eq(d, ABC_SHA256);
}

Test(digest, file_digest_equals_buffer_digest)
{
	/* 3 MiB + 5 bytes: several 1 MiB reads and a short last one */
	size_t len = 3 * 1024 * 1024 + 5;
	unsigned char *data = malloc(len);
	cr_assert(data != NULL);
	uint32_t x = 12345;
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245 + 12345;
		data[i] = (unsigned char)(x >> 16);
	}
	char *path = kiln_path_join(tmp, "blob");
	cr_assert_eq(kiln_write_file_atomic(path, data, len, NULL), 0);

	char from_file[KILN_DIGEST_LEN], from_buf[KILN_DIGEST_LEN];
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_digest_file(from_file, path, &err), 0, "%s", err ? err->message : "");
	kiln_digest_buffer(from_buf, data, len);
	cr_assert_str_eq(from_file, from_buf);

	char *empty = kiln_path_join(tmp, "empty");
	cr_assert_eq(kiln_write_file_atomic(empty, "", 0, NULL), 0);
	cr_assert_eq(kiln_digest_file(from_file, empty, NULL), 0);
	cr_assert_str_eq(from_file, EMPTY_SHA256);
	free(empty);
	free(path);
	free(data);
}

Test(digest, missing_file_is_not_found_and_named)
{
	char d[KILN_DIGEST_LEN];
	struct kiln_error *err = NULL;
	char *path = kiln_path_join(tmp, "nope.bin");
	cr_assert_eq(kiln_digest_file(d, path, &err), KILN_ENOTFOUND);
	cr_assert(strstr(err->message, path) != NULL, "%s", err->message);
	cr_assert(strstr(err->message, "No such file or directory") != NULL, "%s", err->message);
	kiln_error_free(err);
	free(path);
}

Test(digest, valid_accepts_only_sha256_with_64_lowercase_hex_digits)
{
	cr_assert(kiln_digest_valid(EMPTY_SHA256));
	cr_assert(kiln_digest_valid(ABC_SHA256));
	cr_assert_not(kiln_digest_valid(NULL));
	cr_assert_not(kiln_digest_valid(""));
	cr_assert_not(kiln_digest_valid("sha256:"));
	cr_assert_not(kiln_digest_valid("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	cr_assert_not(
	    kiln_digest_valid("sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	cr_assert_not(
	    kiln_digest_valid("sha256:E3B0C44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	cr_assert_not(
	    kiln_digest_valid("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85"));
	cr_assert_not(
	    kiln_digest_valid("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555"));
	cr_assert_not(
	    kiln_digest_valid("sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	cr_assert_not(
	    kiln_digest_valid(" sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}

Test(digest, hex_points_after_the_algorithm)
{
	cr_assert_str_eq(kiln_digest_hex(ABC_SHA256),
	                 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
