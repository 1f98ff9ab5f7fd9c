/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_extract.c: libFuzzer target for tar layers (plain, gzip, zstd) through the safe extractor
 * (kiln_layer_extract) into a scratch root, checking afterwards that nothing outside the root changed.
 */
#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "fuzz/scratch.h"
#include "layers/extract.h"

/* What stands beside the root: the one file (and the root) the scratch directory may hold. */
static const char sentinel_text[] = "outside the root\n";

static void setup(char *blob, char *root, char *sentinel, size_t n)
{
	snprintf(blob, n, "%s", fuzz_scratch_path("layer.blob"));
	snprintf(root, n, "%s", fuzz_scratch_path("root"));
	snprintf(sentinel, n, "%s", fuzz_scratch_path("sentinel"));
	if (access(sentinel, F_OK) != 0)
		fuzz_write_file(sentinel, (const uint8_t *)sentinel_text, sizeof(sentinel_text) - 1);
}

/* Abort unless the scratch directory holds exactly layer.blob, root and an unchanged sentinel. */
static void check_outside(const char *sentinel)
{
	DIR *d = opendir(fuzz_scratch());
	if (d == NULL)
		abort();
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		const char *n = e->d_name;
		if (strcmp(n, ".") && strcmp(n, "..") && strcmp(n, "layer.blob") && strcmp(n, "root") &&
		    strcmp(n, "sentinel")) {
			fprintf(stderr, "the layer wrote '%s' outside its root\n", n);
			abort();
		}
	}
	closedir(d);
	char buf[64] = "";
	FILE *f = fopen(sentinel, "rb");
	size_t got = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	struct stat st;
	if (f == NULL || lstat(sentinel, &st) != 0 || !S_ISREG(st.st_mode) ||
	    got != sizeof(sentinel_text) - 1 || memcmp(buf, sentinel_text, got) != 0) {
		fprintf(stderr, "the layer changed a file outside its root\n");
		abort();
	}
	fclose(f);
}

static int open_dir(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (flag == FTW_D)
		chmod(path, 0700);
	return 0;
}

/* Remove the root, its directories made writable first (a layer's 0555 ones stop a user who is not root). */
static void clear_root(const char *root)
{
	struct kiln_error *err = NULL;
	nftw(root, open_dir, 16, FTW_PHYS);
	if (kiln_remove_tree(root, &err) < 0) {
		fprintf(stderr, "fuzz: cannot clean the root: %s\n", err->message);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char blob[8192], root[8192], sentinel[8192];
	setup(blob, root, sentinel, sizeof(blob));
	fuzz_write_file(blob, data, size);
	struct kiln_error *err = NULL;
	clear_root(root);
	if (kiln_mkdir_p(root, &err) < 0) {
		fprintf(stderr, "fuzz: %s\n", err->message);
		abort();
	}
	static const uint8_t zstd_magic[] = {0x28, 0xb5, 0x2f, 0xfd};
	struct kiln_extract_options opt = {
	    .filter = size >= 4 && memcmp(data, zstd_magic, 4) == 0 ? KILN_EXTRACT_ZSTD : KILN_EXTRACT_GZIP,
	    .max_expanded = 64 << 20,
	};
	struct kiln_blob_reader *rd = NULL;
	if (kiln_blob_reader_open(&rd, blob, NULL, &err) < 0) {
		fprintf(stderr, "fuzz: %s\n", err->message);
		abort();
	}
	struct kiln_extract_stats st = {0};
	if (kiln_layer_extract(rd, NULL, root, &opt, &st, &err) < 0) {
		if (err == NULL || err->message == NULL || !*err->message)
			abort();
		kiln_error_free(err);
		err = NULL;
	}
	kiln_blob_reader_free(rd);
	check_outside(sentinel);
	clear_root(root);
	return 0;
}
