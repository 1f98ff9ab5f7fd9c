/* SPDX-License-Identifier: Apache-2.0 */
/* tests/layers/tar.c: deterministic tar layers, read back with libarchive's reader and zlib. */
#include <criterion/criterion.h>

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "common/buf.h"
#include "common/fs.h"
#include "layers/digest.h"
#include "layers/tar.h"

#define MIB      (1024 * 1024)
#define MTIME    1700000000
#define MAX_SEEN 64

static char *tmp;
static char *mounted;

static void make_tmp(void)
{
	tmp = strdup("/tmp/kiln-tar-XXXXXX");
	cr_assert(mkdtemp(tmp) != NULL);
}

static void remove_tmp(void)
{
	if (mounted) {
		umount2(mounted, MNT_DETACH);
		free(mounted);
	}
	kiln_remove_tree(tmp, NULL);
	free(tmp);
}

TestSuite(tar, .init = make_tmp, .fini = remove_tmp);

/* A path under the test's directory, in a static buffer (valid until the next call with the same slot). */
static const char *in_tmp(int slot, const char *name)
{
	static char bufs[8][4096];
	snprintf(bufs[slot], sizeof(bufs[slot]), "%s/%s", tmp, name);
	return bufs[slot];
}

/* Write SIZE pseudo-random bytes (from SEED) to PATH. */
static void write_pattern(const char *path, size_t size, uint32_t seed)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert(fd >= 0, "cannot create %s", path);
	unsigned char buf[65536];
	uint32_t x = seed;
	while (size > 0) {
		size_t n = size < sizeof(buf) ? size : sizeof(buf);
		for (size_t i = 0; i < n; i++) {
			x = x * 1103515245 + 12345;
			buf[i] = (unsigned char)(x >> 16);
		}
		cr_assert_eq(kiln_write_all(fd, buf, n), 0);
		size -= n;
	}
	close(fd);
}

static void write_text(const char *path, const char *text)
{
	cr_assert_eq(kiln_write_file_atomic(path, text, strlen(text), NULL), 0);
}

/* A regular file entry for the source at PATH, with the size and fingerprint it has now. */
static struct kiln_tar_entry file_entry(const char *name, const char *path, mode_t mode)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "cannot stat %s", path);
	struct kiln_tar_entry e = {
	    .name = strdup(name), .type = KILN_TAR_FILE, .mode = mode, .source = strdup(path)};
	e.size = (uint64_t)st.st_size;
	kiln_stat_fp_from(&e.fp, &st);
	return e;
}

static struct kiln_tar_entry dir_entry(const char *name, mode_t mode)
{
	return (struct kiln_tar_entry){.name = strdup(name), .type = KILN_TAR_DIR, .mode = mode};
}

static struct kiln_tar_entry link_entry(const char *name, const char *target)
{
	return (struct kiln_tar_entry){
	    .name = strdup(name), .type = KILN_TAR_SYMLINK, .mode = 0777, .link_target = strdup(target)};
}

static void release_entries(struct kiln_tar_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		kiln_tar_entry_release(&e[i]);
}

static int create_out(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert(fd >= 0, "cannot create %s", path);
	return fd;
}

/* Write a layer of ENTRIES to the file PATH (or nowhere when PATH is NULL); asserts success. */
static void write_ok(struct kiln_layer_out *out, const struct kiln_tar_entry *entries, size_t n,
                     const char *path, enum kiln_compression c, int64_t mtime)
{
	int fd = path ? create_out(path) : -1;
	struct kiln_layer_options opt = {.mtime = mtime, .fd = fd, .compression = c};
	struct kiln_error *err = NULL;
	int r = kiln_layer_write(out, entries, n, &opt, &err);
	cr_assert_eq(r, 0, "kiln_layer_write: %s", err ? err->message : "?");
	if (fd >= 0)
		close(fd);
}

/* Write a layer expected to fail; returns the code, *err holds the error. */
static int write_fails(const struct kiln_tar_entry *entries, size_t n, struct kiln_layer_options *opt,
                       struct kiln_error **err)
{
	struct kiln_layer_out out;
	int r = kiln_layer_write(&out, entries, n, opt, err);
	cr_assert_lt(r, 0, "kiln_layer_write succeeded");
	cr_assert(*err != NULL);
	cr_assert_null(out.recipe);
	return r;
}

static char *slurp(const char *path, size_t *len)
{
	char *data = NULL;
	cr_assert_eq(kiln_read_file(&data, len, path, 64 * MIB, NULL), 0, "cannot read %s", path);
	return data;
}

static bool same_bytes(const char *a, const char *b)
{
	size_t la, lb;
	char *da = slurp(a, &la), *db = slurp(b, &lb);
	bool same = la == lb && memcmp(da, db, la) == 0;
	free(da);
	free(db);
	return same;
}

/* One entry as libarchive's reader sees it. */
struct seen {
	char *name;
	mode_t mode;
	int64_t mtime;
	long mtime_nsec;
	int64_t uid, gid;
	char *uname, *gname, *link;
	bool atime_set, ctime_set;
	int64_t size;
	char digest[KILN_DIGEST_LEN];
};

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* Read the layer at PATH (plain or gzip) with archive_read; returns the number of entries. */
static size_t read_layer(struct seen *out, const char *path)
{
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	archive_read_support_filter_gzip(a);
	cr_assert_eq(archive_read_open_filename(a, path, 65536), ARCHIVE_OK, "%s", archive_error_string(a));
	size_t n = 0;
	struct archive_entry *ae;
	int r;
	while ((r = archive_read_next_header(a, &ae)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		cr_assert_lt(n, MAX_SEEN);
		struct seen *s = &out[n++];
		s->name = strdup(archive_entry_pathname(ae));
		s->mode = archive_entry_mode(ae);
		s->mtime = archive_entry_mtime(ae);
		s->mtime_nsec = archive_entry_mtime_nsec(ae);
		s->uid = archive_entry_uid(ae);
		s->gid = archive_entry_gid(ae);
		s->uname = dup_or_null(archive_entry_uname(ae));
		s->gname = dup_or_null(archive_entry_gname(ae));
		s->link = dup_or_null(archive_entry_symlink(ae));
		s->atime_set = archive_entry_atime_is_set(ae);
		s->ctime_set = archive_entry_ctime_is_set(ae);
		s->size = 0;
		struct kiln_sha256 *h = NULL;
		cr_assert_eq(kiln_sha256_new(&h, NULL), 0);
		char buf[65536];
		la_ssize_t got;
		while ((got = archive_read_data(a, buf, sizeof(buf))) > 0) {
			kiln_sha256_update(h, buf, (size_t)got);
			s->size += got;
		}
		cr_assert_geq(got, 0, "%s", archive_error_string(a));
		kiln_sha256_final(h, s->digest);
		kiln_sha256_free(h);
	}
	cr_assert_eq(r, ARCHIVE_EOF, "%s", archive_error_string(a));
	archive_read_free(a);
	return n;
}

static void release_seen(struct seen *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(s[i].name);
		free(s[i].uname);
		free(s[i].gname);
		free(s[i].link);
	}
}

Test(tar, uncompressed_layer_reads_back_with_exact_metadata)
{
	write_text(in_tmp(0, "a.bin"), "weights\n");
	write_text(in_tmp(1, "run.py"), "print('hi')\n");
	struct kiln_tar_entry e[] = {
	    file_entry("src/models/a.bin", in_tmp(0, "a.bin"), 0644),
	    file_entry("src/run.py", in_tmp(1, "run.py"), 0755),
	    link_entry("src/latest", "models/a.bin"),
	    dir_entry("src", 0750), /* given: kept with its mode, not added again */
	    dir_entry("etc", 0700),
	};
	struct kiln_layer_out out;
	write_ok(&out, e, 5, in_tmp(2, "layer.tar"), KILN_COMPRESS_NONE, MTIME);

	struct seen s[MAX_SEEN];
	size_t n = read_layer(s, in_tmp(2, "layer.tar"));
	struct {
		const char *name;
		mode_t mode;
		const char *link;
		const char *content;
	} want[] = {
	    {"etc/", AE_IFDIR | 0700, NULL, ""},
	    {"src/", AE_IFDIR | 0750, NULL, ""},
	    {"src/latest", AE_IFLNK | 0777, "models/a.bin", ""},
	    {"src/models/", AE_IFDIR | 0755, NULL, ""},
	    {"src/models/a.bin", AE_IFREG | 0644, NULL, "weights\n"},
	    {"src/run.py", AE_IFREG | 0755, NULL, "print('hi')\n"},
	};
	cr_assert_eq(n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < n; i++) {
		cr_expect_str_eq(s[i].name, want[i].name);
		cr_expect_eq(s[i].mode, want[i].mode, "%s: mode %o", s[i].name, (unsigned)s[i].mode);
		cr_expect_eq(s[i].mtime, MTIME);
		cr_expect_eq(s[i].mtime_nsec, 0);
		cr_expect_eq(s[i].uid, 0);
		cr_expect_eq(s[i].gid, 0);
		cr_expect(s[i].uname == NULL || *s[i].uname == '\0', "%s: uname '%s'", s[i].name, s[i].uname);
		cr_expect(s[i].gname == NULL || *s[i].gname == '\0', "%s: gname '%s'", s[i].name, s[i].gname);
		cr_expect_not(s[i].atime_set);
		cr_expect_not(s[i].ctime_set);
		if (want[i].link)
			cr_expect_str_eq(s[i].link, want[i].link);
		else
			cr_expect_null(s[i].link);
		char d[KILN_DIGEST_LEN];
		kiln_digest_buffer(d, want[i].content, strlen(want[i].content));
		cr_expect_eq(s[i].size, (int64_t)strlen(want[i].content));
		cr_expect_str_eq(s[i].digest, d, "%s: content differs", s[i].name);
	}

	char file_digest[KILN_DIGEST_LEN];
	cr_assert_eq(kiln_digest_file(file_digest, in_tmp(2, "layer.tar"), NULL), 0);
	struct stat st;
	cr_assert_eq(stat(in_tmp(2, "layer.tar"), &st), 0);
	cr_expect_str_eq(out.digest, file_digest);
	cr_expect_str_eq(out.diff_id, out.digest);
	cr_expect_eq(out.size, (uint64_t)st.st_size);
	cr_expect_eq(out.size % 512, 0);
	cr_expect_eq(out.bytes_read, strlen("weights\n") + strlen("print('hi')\n"));
	cr_expect_not_null(out.recipe);
	release_seen(s, n);
	kiln_layer_out_release(&out);
	release_entries(e, 5);
}

Test(tar, missing_parents_are_added_once_in_name_order)
{
	struct kiln_tar_entry e[] = {
	    dir_entry("a/b/c", 0700), dir_entry("a-x/y", 0700), dir_entry("a/b/d", 0700),
	    dir_entry("a/e", 0700),   dir_entry("z", 0700),     dir_entry("a/b/d/f", 0700),
	};
	struct kiln_layer_out out;
	write_ok(&out, e, 6, in_tmp(0, "dirs.tar"), KILN_COMPRESS_NONE, 0);
	struct seen s[MAX_SEEN];
	size_t n = read_layer(s, in_tmp(0, "dirs.tar"));
	/* sorted by name with strcmp ("a" < "a-x" < "a/b"); added parents 0755, given directories 0700 */
	struct {
		const char *name;
		mode_t perm;
	} want[] = {{"a/", 0755},     {"a-x/", 0755},     {"a-x/y/", 0700}, {"a/b/", 0755}, {"a/b/c/", 0700},
	            {"a/b/d/", 0700}, {"a/b/d/f/", 0700}, {"a/e/", 0700},   {"z/", 0700}};
	cr_assert_eq(n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < n; i++) {
		cr_expect_str_eq(s[i].name, want[i].name);
		cr_expect_eq(s[i].mode, AE_IFDIR | want[i].perm, "%s: mode %o", s[i].name,
		             (unsigned)s[i].mode);
	}
	release_seen(s, n);
	kiln_layer_out_release(&out);
	release_entries(e, 6);
}

Test(tar, same_entries_in_any_order_give_identical_digests)
{
	write_pattern(in_tmp(0, "x.bin"), 5000, 1);
	write_pattern(in_tmp(1, "y.bin"), 700, 2);
	struct kiln_tar_entry e[] = {
	    file_entry("w/x.bin", in_tmp(0, "x.bin"), 0644),
	    file_entry("w/sub/y.bin", in_tmp(1, "y.bin"), 0644),
	    link_entry("w/z", "x.bin"),
	};
	struct kiln_tar_entry rev[] = {e[2], e[1], e[0]};
	struct kiln_layer_out a, b, c;
	write_ok(&a, e, 3, in_tmp(2, "a.tar"), KILN_COMPRESS_NONE, 0);
	write_ok(&b, rev, 3, in_tmp(3, "b.tar"), KILN_COMPRESS_NONE, 0);
	write_ok(&c, e, 3, NULL, KILN_COMPRESS_NONE, 0); /* no output: same digest */
	cr_expect_str_eq(a.digest, b.digest);
	cr_expect_str_eq(a.digest, c.digest);
	cr_expect_eq(a.size, c.size);
	cr_expect(same_bytes(in_tmp(2, "a.tar"), in_tmp(3, "b.tar")));
	kiln_layer_out_release(&a);
	kiln_layer_out_release(&b);
	kiln_layer_out_release(&c);
	release_entries(e, 3);
}

Test(tar, changed_mtime_option_changes_the_digest)
{
	write_text(in_tmp(0, "a"), "a");
	struct kiln_tar_entry e[] = {file_entry("a", in_tmp(0, "a"), 0644)};
	struct kiln_layer_out a, b;
	write_ok(&a, e, 1, NULL, KILN_COMPRESS_NONE, 0);
	write_ok(&b, e, 1, NULL, KILN_COMPRESS_NONE, 1);
	cr_expect_str_neq(a.digest, b.digest);
	kiln_layer_out_release(&a);
	kiln_layer_out_release(&b);
	release_entries(e, 1);
}

/* A name of LEN characters whose last component alone is over 100 characters (so pax is needed). */
static char *long_name(size_t len)
{
	char *s = malloc(len + 1);
	memcpy(s, "deep/", 5);
	for (size_t i = 5; i < len; i++)
		s[i] = (char)('a' + i % 26);
	s[len] = '\0';
	return s;
}

/*
 * When this binary is started with KILN_TAR_HELPER_OUT set, it writes one layer of the file
 * KILN_TAR_HELPER_SRC named KILN_TAR_HELPER_NAME to that path and exits before Criterion starts: a
 * separate process (its own pid, address space and libarchive state) for the determinism test.
 */
__attribute__((constructor)) static void layer_helper(void)
{
	const char *out = getenv("KILN_TAR_HELPER_OUT");
	const char *src = getenv("KILN_TAR_HELPER_SRC");
	const char *name = getenv("KILN_TAR_HELPER_NAME");
	if (out == NULL || src == NULL || name == NULL)
		return;
	struct stat st;
	if (stat(src, &st) < 0)
		exit(2);
	struct kiln_tar_entry e = {.name = (char *)name,
	                           .type = KILN_TAR_FILE,
	                           .mode = 0644,
	                           .source = (char *)src,
	                           .size = st.st_size};
	kiln_stat_fp_from(&e.fp, &st);
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	struct kiln_layer_options opt = {.fd = fd};
	struct kiln_layer_out lo;
	int r = fd >= 0 ? kiln_layer_write(&lo, &e, 1, &opt, NULL) : -1;
	if (r == 0)
		kiln_layer_out_release(&lo);
	if (fd >= 0)
		close(fd);
	exit(r == 0 ? 0 : 1);
}

/* Run this binary as the layer helper, writing to OUT. */
static void run_helper(const char *out, const char *src, const char *name)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	cr_assert_gt(n, 0);
	self[n] = '\0';
	cr_assert_eq(setenv("KILN_TAR_HELPER_OUT", out, 1), 0);
	cr_assert_eq(setenv("KILN_TAR_HELPER_SRC", src, 1), 0);
	cr_assert_eq(setenv("KILN_TAR_HELPER_NAME", name, 1), 0);
	char *argv[] = {self, NULL};
	pid_t pid;
	cr_assert_eq(posix_spawn(&pid, self, NULL, NULL, argv, environ), 0);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the helper failed");
}

Test(tar, two_processes_write_identical_bytes_with_pax_headers)
{
	write_pattern(in_tmp(0, "w.bin"), 3000, 3);
	char *name = long_name(200);
	run_helper(in_tmp(1, "p1.tar"), in_tmp(0, "w.bin"), name);
	run_helper(in_tmp(2, "p2.tar"), in_tmp(0, "w.bin"), name);
	cr_expect(same_bytes(in_tmp(1, "p1.tar"), in_tmp(2, "p2.tar")),
	          "two processes wrote different bytes");
	size_t len;
	char *data = slurp(in_tmp(1, "p1.tar"), &len);
	cr_expect_not_null(memmem(data, len, "PaxHeader/", 10), "no pax header was written");
	free(data);

	/* and this process writes the same bytes too */
	struct kiln_tar_entry e[] = {file_entry(name, in_tmp(0, "w.bin"), 0644)};
	struct kiln_layer_out out;
	write_ok(&out, e, 1, in_tmp(3, "p3.tar"), KILN_COMPRESS_NONE, 0);
	cr_expect(same_bytes(in_tmp(1, "p1.tar"), in_tmp(3, "p3.tar")));
	kiln_layer_out_release(&out);
	release_entries(e, 1);
	free(name);
}

Test(tar, long_paths_and_link_targets_round_trip)
{
	write_text(in_tmp(0, "f"), "long");
	char *name = long_name(200), *target = long_name(150);
	struct kiln_tar_entry e[] = {file_entry(name, in_tmp(0, "f"), 0600), link_entry("l", target)};
	struct kiln_layer_out out;
	write_ok(&out, e, 2, in_tmp(1, "long.tar"), KILN_COMPRESS_NONE, 0);
	struct seen s[MAX_SEEN];
	size_t n = read_layer(s, in_tmp(1, "long.tar"));
	cr_assert_eq(n, 3);
	cr_expect_str_eq(s[0].name, "deep/");
	cr_expect_str_eq(s[1].name, name);
	cr_expect_eq(strlen(s[1].name), 200);
	cr_expect_eq(s[1].mode, AE_IFREG | 0600);
	cr_expect_eq(s[1].size, 4);
	cr_expect_str_eq(s[2].name, "l");
	cr_expect_str_eq(s[2].link, target);
	release_seen(s, n);
	kiln_layer_out_release(&out);
	free(name);
	free(target);
	release_entries(e, 2);
}

/* The digest of the gunzipped content of PATH (zlib, gzip wrapper). */
static void gunzip_digest(char out[KILN_DIGEST_LEN], const char *path)
{
	size_t len;
	char *gz = slurp(path, &len);
	z_stream z = {0};
	cr_assert_eq(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (Bytef *)gz;
	z.avail_in = (uInt)len;
	struct kiln_sha256 *h = NULL;
	cr_assert_eq(kiln_sha256_new(&h, NULL), 0);
	unsigned char buf[65536];
	int zr;
	do {
		z.next_out = buf;
		z.avail_out = sizeof(buf);
		zr = inflate(&z, Z_NO_FLUSH);
		cr_assert(zr == Z_OK || zr == Z_STREAM_END, "inflate: %d", zr);
		kiln_sha256_update(h, buf, sizeof(buf) - z.avail_out);
	} while (zr != Z_STREAM_END);
	cr_expect_eq(z.avail_in, 0, "bytes after the gzip stream");
	inflateEnd(&z);
	kiln_sha256_final(h, out);
	kiln_sha256_free(h);
	free(gz);
}

Test(tar, gzip_layer_decompresses_to_its_diff_id)
{
	write_pattern(in_tmp(0, "big.bin"), 300000, 4);
	write_text(in_tmp(1, "code.py"), "import os\n");
	struct kiln_tar_entry e[] = {
	    file_entry("src/big.bin", in_tmp(0, "big.bin"), 0644),
	    file_entry("src/code.py", in_tmp(1, "code.py"), 0644),
	};
	struct kiln_layer_out gz, plain;
	write_ok(&gz, e, 2, in_tmp(2, "layer.tar.gz"), KILN_COMPRESS_GZIP, MTIME);
	write_ok(&plain, e, 2, NULL, KILN_COMPRESS_NONE, MTIME);

	char file_digest[KILN_DIGEST_LEN], inflated[KILN_DIGEST_LEN];
	cr_assert_eq(kiln_digest_file(file_digest, in_tmp(2, "layer.tar.gz"), NULL), 0);
	gunzip_digest(inflated, in_tmp(2, "layer.tar.gz"));
	struct stat st;
	cr_assert_eq(stat(in_tmp(2, "layer.tar.gz"), &st), 0);
	cr_expect_str_eq(gz.digest, file_digest);
	cr_expect_eq(gz.size, (uint64_t)st.st_size);
	cr_expect_str_eq(gz.diff_id, inflated);
	cr_expect_str_eq(gz.diff_id, plain.digest);
	cr_expect_str_neq(gz.digest, gz.diff_id);
	cr_expect_null(gz.recipe);
	cr_expect_eq(gz.bytes_read, 300000 + 10);

	struct seen s[MAX_SEEN];
	size_t n = read_layer(s, in_tmp(2, "layer.tar.gz"));
	cr_assert_eq(n, 3);
	cr_expect_str_eq(s[1].name, "src/big.bin");
	cr_expect_eq(s[1].size, 300000);
	release_seen(s, n);
	kiln_layer_out_release(&gz);
	kiln_layer_out_release(&plain);
	release_entries(e, 2);
}

/* A recipe streamed into a buffer. */
static int to_buf(void *ctx, const void *data, size_t len, struct kiln_error **err)
{
	(void)err;
	return kiln_buf_put(ctx, data, len) < 0 ? KILN_EFAIL : 0;
}

Test(tar, raw_blob_is_the_file_itself_with_its_digest)
{
	write_pattern(in_tmp(0, "w.bin"), 2 * 1024 * 1024 + 5, 9);
	struct kiln_tar_entry e[] = {
	    file_entry("src/w.bin", in_tmp(0, "w.bin"), 0644),
	    file_entry("src/w2.bin", in_tmp(0, "w.bin"), 0644),
	};
	struct kiln_layer_out raw;
	write_ok(&raw, e, 1, NULL, KILN_COMPRESS_RAW, MTIME);
	char want[KILN_DIGEST_LEN];
	cr_assert_eq(kiln_digest_file(want, in_tmp(0, "w.bin"), NULL), 0);
	cr_expect_str_eq(raw.digest, want);
	cr_expect_str_eq(raw.diff_id, want);
	cr_expect_eq(raw.size, 2 * 1024 * 1024 + 5);
	cr_assert_not_null(raw.recipe);
	cr_expect_eq(raw.recipe->nsegs, 1, "%zu segments", raw.recipe->nsegs);
	struct kiln_buf b = KILN_BUF_INIT;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_recipe_stream(raw.recipe, to_buf, &b, &err), 0, "%s", err ? err->message : "");
	size_t len = 0;
	char *file = slurp(in_tmp(0, "w.bin"), &len);
	cr_assert_eq(b.len, len);
	cr_expect(memcmp(b.ptr, file, len) == 0, "the raw blob is not the file's bytes");
	free(file);
	kiln_buf_release(&b);
	kiln_layer_out_release(&raw);
	/* anything but one regular file is not a raw blob */
	struct kiln_layer_options opt = {.fd = -1, .compression = KILN_COMPRESS_RAW};
	write_fails(e, 2, &opt, &err);
	cr_expect(strstr(err->message, "one regular file"), "%s", err->message);
	kiln_error_free(err);
	release_entries(e, 2);
}

Test(tar, gzip_writes_are_byte_identical)
{
	write_pattern(in_tmp(0, "x"), 100000, 5);
	struct kiln_tar_entry e[] = {file_entry("x", in_tmp(0, "x"), 0644)};
	struct kiln_layer_out a, b;
	write_ok(&a, e, 1, in_tmp(1, "a.gz"), KILN_COMPRESS_GZIP, 0);
	write_ok(&b, e, 1, in_tmp(2, "b.gz"), KILN_COMPRESS_GZIP, 0);
	cr_expect_str_eq(a.digest, b.digest);
	cr_expect(same_bytes(in_tmp(1, "a.gz"), in_tmp(2, "b.gz")));
	kiln_layer_out_release(&a);
	kiln_layer_out_release(&b);
	release_entries(e, 1);
}

Test(tar, gzip_without_a_file_is_invalid)
{
	struct kiln_layer_options opt = {.fd = -1, .compression = KILN_COMPRESS_GZIP};
	struct kiln_error *err = NULL;
	cr_expect_eq(write_fails(NULL, 0, &opt, &err), KILN_EINVAL);
	kiln_error_free(err);
}

Test(tar, empty_layer_is_the_end_of_archive_blocks)
{
	struct kiln_layer_out out;
	write_ok(&out, NULL, 0, in_tmp(0, "empty.tar"), KILN_COMPRESS_NONE, 0);
	static const char zeros[1024];
	char d[KILN_DIGEST_LEN];
	kiln_digest_buffer(d, zeros, sizeof(zeros));
	cr_expect_eq(out.size, 1024);
	cr_expect_str_eq(out.digest, d);
	kiln_layer_out_release(&out);
}

Test(tar, invalid_names_and_conflicts_are_rejected)
{
	const char *bad[] = {"", "/abs", "../up", "a/../b", "./a", "a//b", "a/", "a/."};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct kiln_tar_entry e[] = {dir_entry(bad[i], 0755)};
		struct kiln_layer_options opt = {.fd = -1};
		struct kiln_error *err = NULL;
		cr_expect_eq(write_fails(e, 1, &opt, &err), KILN_EINVAL, "'%s' accepted", bad[i]);
		cr_expect(strstr(err->message, "invalid entry name") != NULL, "%s", err->message);
		kiln_error_free(err);
		release_entries(e, 1);
	}

	struct kiln_tar_entry twice[] = {dir_entry("d", 0755), dir_entry("d", 0700)};
	struct kiln_layer_options opt = {.fd = -1};
	struct kiln_error *err = NULL;
	cr_expect_eq(write_fails(twice, 2, &opt, &err), KILN_EINVAL);
	cr_expect_str_eq(err->message, "entry 'd' is listed twice");
	kiln_error_free(err);
	release_entries(twice, 2);

	struct kiln_tar_entry inside_link[] = {link_entry("a", "b"), dir_entry("a/c", 0755)};
	err = NULL;
	cr_expect_eq(write_fails(inside_link, 2, &opt, &err), KILN_EINVAL);
	cr_expect_str_eq(err->message, "'a/c' is inside 'a', which is not a directory");
	kiln_error_free(err);
	release_entries(inside_link, 2);
}

Test(tar, source_changed_since_listed_is_detected)
{
	const char *path = in_tmp(0, "w.bin");
	write_pattern(path, 4096, 6);
	struct kiln_tar_entry e[] = {file_entry("w.bin", path, 0644)};
	int fd = open(path, O_WRONLY | O_APPEND);
	cr_assert_eq(write(fd, "x", 1), 1);
	close(fd);
	struct kiln_layer_options opt = {.fd = -1};
	struct kiln_error *err = NULL;
	cr_expect_eq(write_fails(e, 1, &opt, &err), KILN_ECHANGED);
	char want[4200];
	snprintf(want, sizeof(want), "'%s' changed since it was listed", path);
	cr_expect_str_eq(err->message, want);
	kiln_error_free(err);
	release_entries(e, 1);
}

/* What the progress callback does: count, and optionally append to a file or set the cancel flag. */
struct progress {
	const char *append_to;
	volatile sig_atomic_t *cancel;
	int calls;
	uint64_t bytes;
	uint64_t largest;
};

static void on_progress(void *ctx, uint64_t n)
{
	struct progress *p = ctx;
	p->calls++;
	p->bytes += n;
	if (n > p->largest)
		p->largest = n;
	if (p->calls == 1 && p->append_to) {
		int fd = open(p->append_to, O_WRONLY | O_APPEND);
		cr_assert_eq(write(fd, "more", 4), 4);
		close(fd);
	}
	if (p->cancel)
		*p->cancel = 1;
}

Test(tar, source_changed_while_being_read_is_detected)
{
	const char *path = in_tmp(0, "w.bin");
	write_pattern(path, 3 * MIB, 7);
	struct kiln_tar_entry e[] = {file_entry("w.bin", path, 0644)};
	struct progress p = {.append_to = path};
	struct kiln_layer_options opt = {.fd = -1, .progress = on_progress, .progress_ctx = &p};
	struct kiln_error *err = NULL;
	cr_expect_eq(write_fails(e, 1, &opt, &err), KILN_ECHANGED);
	char want[4200];
	snprintf(want, sizeof(want), "'%s' changed while being read", path);
	cr_expect_str_eq(err->message, want);
	cr_expect_eq(p.calls, 3, "the whole file was read in 1 MiB chunks first");
	kiln_error_free(err);
	release_entries(e, 1);
}

Test(tar, progress_reports_every_byte_in_chunks_of_at_most_1_mib)
{
	write_pattern(in_tmp(0, "a"), 3 * MIB + 17, 8);
	write_pattern(in_tmp(1, "b"), 10, 9);
	struct kiln_tar_entry e[] = {file_entry("a", in_tmp(0, "a"), 0644),
	                             file_entry("b", in_tmp(1, "b"), 0644)};
	struct progress p = {0};
	struct kiln_layer_options opt = {.fd = -1, .progress = on_progress, .progress_ctx = &p};
	struct kiln_layer_out out;
	cr_assert_eq(kiln_layer_write(&out, e, 2, &opt, NULL), 0);
	cr_expect_eq(p.bytes, 3 * MIB + 27);
	cr_expect_eq(out.bytes_read, p.bytes);
	cr_expect_eq(p.largest, MIB);
	kiln_layer_out_release(&out);
	release_entries(e, 2);
}

Test(tar, cancel_flag_stops_with_eintr)
{
	write_pattern(in_tmp(0, "w.bin"), 3 * MIB, 10);
	struct kiln_tar_entry e[] = {file_entry("w.bin", in_tmp(0, "w.bin"), 0644)};
	volatile sig_atomic_t cancel = 0;
	struct progress p = {.cancel = &cancel};
	int fd = create_out(in_tmp(1, "out.tar"));
	struct kiln_layer_options opt = {
	    .fd = fd, .progress = on_progress, .progress_ctx = &p, .cancel = &cancel};
	struct kiln_error *err = NULL;
	cr_expect_eq(write_fails(e, 1, &opt, &err), KILN_EINTR);
	cr_expect_str_eq(err->message, "interrupted");
	cr_expect_eq(p.calls, 1, "stopped after the first chunk");
	/* the header and the first chunk, and nothing after: no padding, no end-of-archive blocks */
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_expect_eq(st.st_size, 512 + MIB);
	close(fd);
	kiln_error_free(err);
	release_entries(e, 1);
}

Test(tar, full_disk_reports_no_space_left)
{
	const char *dir = in_tmp(0, "small");
	cr_assert_eq(mkdir(dir, 0755), 0);
	if (mount("tmpfs", dir, "tmpfs", 0, "size=1m") < 0)
		cr_skip_test("cannot mount a 1 MiB tmpfs: %s", strerror(errno));
	mounted = strdup(dir);
	write_pattern(in_tmp(1, "w.bin"), 3 * MIB, 11);
	struct kiln_tar_entry e[] = {file_entry("w.bin", in_tmp(1, "w.bin"), 0644)};
	int fd = create_out(in_tmp(2, "small/layer.tar"));
	struct kiln_layer_options opt = {.fd = fd};
	struct kiln_error *err = NULL;
	cr_expect_eq(write_fails(e, 1, &opt, &err), KILN_ENOSPC, "%s", err->message);
	cr_expect_str_eq(err->message, "cannot write 'w.bin' to the layer: No space left on device");
	close(fd);
	kiln_error_free(err);
	release_entries(e, 1);
}

Test(tar, missing_source_names_the_file)
{
	write_text(in_tmp(0, "gone.bin"), "soon gone");
	struct kiln_tar_entry e[] = {file_entry("gone.bin", in_tmp(0, "gone.bin"), 0644)};
	cr_assert_eq(unlink(in_tmp(0, "gone.bin")), 0);
	struct kiln_layer_options opt = {.fd = -1};
	struct kiln_error *err = NULL;
	cr_expect_eq(write_fails(e, 1, &opt, &err), KILN_ENOTFOUND);
	char want[4200];
	snprintf(want, sizeof(want), "cannot open '%s': No such file or directory", in_tmp(0, "gone.bin"));
	cr_expect_str_eq(err->message, want);
	kiln_error_free(err);
	release_entries(e, 1);
}

Test(tar, non_ascii_names_give_the_same_bytes_in_any_locale)
{
	struct kiln_tar_entry e[] = {
	    dir_entry("caf\xc3\xa9/d\xc3\xa9j\xc3\xa0", 0755),
	    dir_entry("not-utf8-\xff", 0755),
	};
	struct kiln_layer_out a, b;
	cr_assert_not_null(setlocale(LC_ALL, "C"));
	write_ok(&a, e, 2, in_tmp(0, "c.tar"), KILN_COMPRESS_NONE, 0);
	if (setlocale(LC_ALL, "C.UTF-8") == NULL)
		cr_skip_test("no C.UTF-8 locale");
	write_ok(&b, e, 2, in_tmp(1, "u.tar"), KILN_COMPRESS_NONE, 0);
	cr_expect_str_eq(a.digest, b.digest);
	cr_expect(same_bytes(in_tmp(0, "c.tar"), in_tmp(1, "u.tar")));
	/* read back under UTF-8, where libarchive's reader gives the UTF-8 names unchanged */
	struct seen s[MAX_SEEN];
	size_t n = read_layer(s, in_tmp(0, "c.tar"));
	setlocale(LC_ALL, "C");
	cr_assert_eq(n, 3);
	cr_expect_str_eq(s[0].name, "caf\xc3\xa9/");
	cr_expect_str_eq(s[1].name, "caf\xc3\xa9/d\xc3\xa9j\xc3\xa0/");
	cr_expect_str_eq(s[2].name, "not-utf8-\xff/");
	release_seen(s, n);
	kiln_layer_out_release(&a);
	kiln_layer_out_release(&b);
	release_entries(e, 2);
}
