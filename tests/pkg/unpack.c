/* SPDX-License-Identifier: Apache-2.0 */
/* tests/pkg/unpack.c: unpacking layers and images from the store: whiteouts, escapes, digests, all or
 * nothing. */
#include <criterion/criterion.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "layers/tar.h"
#include "pkg/image.h"
#include "pkg/store.h"
#include "pkg/unpack.h"

#define MTIME 1234567890

/* Test layers are tables of entries that leave the fields they do not need out. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static char *tmp;
static char *out;
static struct kiln_store *store;

static void make_tmp(void)
{
	tmp = strdup("/tmp/kiln-unpack-XXXXXX");
	cr_assert(mkdtemp(tmp) != NULL);
	cr_assert(asprintf(&out, "%s/out", tmp) > 0);
	char *home = NULL;
	cr_assert(asprintf(&home, "%s/home", tmp) > 0);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_store_open(&store, home, &err), 0, "%s", err ? err->message : "");
	free(home);
	/* A file outside DIR that escapes would reach. */
	char *victim = NULL;
	cr_assert(asprintf(&victim, "%s/victim", tmp) > 0);
	cr_assert_eq(kiln_write_file_atomic(victim, "precious", 8, NULL), 0);
	free(victim);
}

static void remove_tmp(void)
{
	kiln_store_free(store);
	kiln_extract_remove(tmp, NULL);
	free(out);
	free(tmp);
}

TestSuite(unpack, .init = make_tmp, .fini = remove_tmp);

/* A path under the test's directory, in a static buffer (valid until the next call with the same slot). */
static const char *in_tmp(int slot, const char *name)
{
	static char bufs[4][4096];
	snprintf(bufs[slot], sizeof(bufs[slot]), "%s/%s", tmp, name);
	return bufs[slot];
}

static const char *in_out(int slot, const char *name)
{
	static char bufs[4][4096];
	snprintf(bufs[slot], sizeof(bufs[slot]), "%s/%s", out, name);
	return bufs[slot];
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static char *slurp(const char *path)
{
	char *data = NULL;
	size_t len;
	cr_assert_eq(kiln_read_file(&data, &len, path, 1 << 20, NULL), 0, "cannot read '%s'", path);
	return data;
}

/* The victim is untouched: one link, its content, and nothing new beside it. */
static void assert_outside_untouched(void)
{
	struct stat st;
	cr_assert_eq(lstat(in_tmp(0, "victim"), &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_nlink, 1);
	char *data = slurp(in_tmp(0, "victim"));
	cr_assert_str_eq(data, "precious");
	free(data);
	DIR *d = opendir(tmp);
	cr_assert_not_null(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		cr_assert(strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strcmp(n, "home") == 0 ||
		              strcmp(n, "out") == 0 || strcmp(n, "victim") == 0 || strcmp(n, "src") == 0 ||
		              strcmp(n, "tree") == 0,
		          "'%s' appeared outside the directory", n);
	}
	closedir(d);
}

/* One entry of a test layer: 'f' file (data: content), 'd' directory, 'l' symlink and 'h' hard link
 * (data: target), 'c' character device, 'p' FIFO, 's' a sparse file of SIZE bytes whose last byte is
 * data's first. */
struct ent {
	char type;
	const char *name;
	const char *data;
	unsigned mode; /* 0: 0644 for files, 0755 for directories */
	int uid;
	int64_t size;
};

static la_ssize_t collect(struct archive *a, void *ctx, const void *data, size_t len)
{
	return kiln_buf_put(ctx, data, len) < 0 ? -1 : (la_ssize_t)len;
}

/* The bytes of a tar (gzip when GZIP) of the N entries. */
static void make_tar(struct kiln_buf *b, bool gzip, const struct ent *ents, size_t n)
{
	/* Non-ASCII names go in pax records as UTF-8, as Go's archive/tar writes them; kiln itself runs in
	 * the C locale (extraction is in that locale). */
	bool utf8 = setlocale(LC_CTYPE, "C.UTF-8") != NULL;
	struct archive *a = archive_write_new();
	cr_assert_eq(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
	if (!utf8)
		cr_assert_eq(archive_write_set_format_option(a, "pax", "hdrcharset", "BINARY"), ARCHIVE_OK);
	if (gzip)
		cr_assert_eq(archive_write_add_filter_gzip(a), ARCHIVE_OK);
	cr_assert_eq(archive_write_open(a, b, NULL, collect, NULL), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		const struct ent *e = &ents[i];
		struct archive_entry *ae = archive_entry_new();
		archive_entry_set_pathname(ae, e->name);
		archive_entry_set_mtime(ae, MTIME, 0);
		archive_entry_set_uid(ae, e->uid);
		archive_entry_set_gid(ae, e->uid);
		unsigned perm = e->mode ? e->mode : e->type == 'd' ? 0755 : 0644;
		switch (e->type) {
		case 'f':
			archive_entry_set_mode(ae, AE_IFREG | perm);
			archive_entry_set_size(ae, (la_int64_t)strlen(e->data));
			break;
		case 'd':
			archive_entry_set_mode(ae, AE_IFDIR | perm);
			break;
		case 'l':
			archive_entry_set_mode(ae, AE_IFLNK | 0777);
			archive_entry_set_symlink(ae, e->data);
			break;
		case 'h':
			archive_entry_set_mode(ae, AE_IFREG | perm);
			archive_entry_set_hardlink(ae, e->data);
			break;
		case 's':
			archive_entry_set_mode(ae, AE_IFREG | perm);
			archive_entry_set_size(ae, e->size);
			archive_entry_sparse_add_entry(ae, e->size - 1, 1);
			break;
		case 'c':
			archive_entry_set_mode(ae, AE_IFCHR | 0666);
			archive_entry_set_rdevmajor(ae, 1);
			archive_entry_set_rdevminor(ae, 3);
			break;
		case 'p':
			archive_entry_set_mode(ae, AE_IFIFO | perm);
			break;
		}
		cr_assert_eq(archive_write_header(a, ae), ARCHIVE_OK, "%s", archive_error_string(a));
		if (e->type == 'f')
			cr_assert_eq(archive_write_data(a, e->data, strlen(e->data)),
			             (la_ssize_t)strlen(e->data));
		if (e->type == 's') /* the pax writer takes the bytes of the data regions only */
			cr_assert_eq(archive_write_data(a, e->data, 1), 1, "%s", archive_error_string(a));
		archive_entry_free(ae);
	}
	cr_assert_eq(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	setlocale(LC_CTYPE, "C");
}

/* Put a layer of the N entries in the store; its digest goes to DIGEST. */
static void put_layer(char digest[KILN_DIGEST_LEN], bool gzip, const struct ent *ents, size_t n)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	make_tar(&b, gzip, ents, n);
	cr_assert_eq(kiln_store_blob_put(store, b.ptr, b.len, digest, NULL), 0);
}

#define PUT_LAYER(digest, gzip, ...)                                                                         \
	do {                                                                                                 \
		const struct ent ents_[] = {__VA_ARGS__};                                                    \
		put_layer(digest, gzip, ents_, sizeof(ents_) / sizeof(ents_[0]));                            \
	} while (0)

/* Put an image manifest listing the N layers (plain tar unless GZIP[i]); its digest goes to DIGEST. */
static void put_image(char digest[KILN_DIGEST_LEN], char layers[][KILN_DIGEST_LEN], const bool *gzip,
                      size_t n)
{
	static const char config[] =
	    "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\"}}";
	char config_digest[KILN_DIGEST_LEN];
	cr_assert_eq(kiln_store_blob_put(store, config, strlen(config), config_digest, NULL), 0);
	json_t *ls = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(ls,
		                      json_pack("{s:s,s:s,s:i}", "mediaType",
		                                gzip && gzip[i] ? KILN_MEDIA_LAYER_GZIP : KILN_MEDIA_LAYER,
		                                "digest", layers[i], "size", 0));
	json_t *m = json_pack("{s:i,s:s,s:{s:s,s:s,s:i},s:o}", "schemaVersion", 2, "mediaType",
	                      KILN_MEDIA_MANIFEST, "config", "mediaType", KILN_MEDIA_CONFIG, "digest",
	                      config_digest, "size", (int)strlen(config), "layers", ls);
	char *text = json_dumps(m, JSON_COMPACT);
	cr_assert_eq(kiln_store_blob_put(store, text, strlen(text), digest, NULL), 0);
	free(text);
	json_decref(m);
}

/* Unpack one layer into OUT (made first); the code, and the message in *msg (caller frees) on failure. */
static int unpack(const char *digest, const char *media_type, struct kiln_unpack_stats *st, char **msg)
{
	struct kiln_error *err = NULL;
	cr_assert(mkdir(out, 0755) == 0 || errno == EEXIST);
	int rc = kiln_unpack_layer(store, digest, media_type, out, NULL, st, &err);
	if (msg)
		*msg = err ? strdup(err->message) : NULL;
	kiln_error_free(err);
	return rc;
}

static void unpack_ok(const char *digest, struct kiln_unpack_stats *st)
{
	char *msg = NULL;
	cr_assert_eq(unpack(digest, KILN_MEDIA_LAYER, st, &msg), 0, "%s", msg ? msg : "");
}

/* Unpack DIGEST, which must be refused with KILN_EINVAL, a message naming the layer and NEEDLE. */
static void assert_refused(const char *digest, const char *needle)
{
	char *msg = NULL;
	int rc = unpack(digest, KILN_MEDIA_LAYER, NULL, &msg);
	cr_assert_eq(rc, KILN_EINVAL, "rc %d: %s", rc, msg ? msg : "");
	cr_assert(strstr(msg, digest) != NULL, "the message does not name the layer: %s", msg);
	cr_assert(strstr(msg, needle) != NULL, "'%s' not in: %s", needle, msg);
	free(msg);
	assert_outside_untouched();
}

Test(unpack, files_dirs_symlinks_and_hardlinks_keep_modes_and_times)
{
	char d[KILN_DIGEST_LEN];
	PUT_LAYER(d, false, {'d', "usr/", NULL, 0750}, {'f', "usr/bin/tool", "#!/bin/sh\n", 0755},
	          {'f', "usr/secret", "s", 0640, 1234}, {'l', "usr/bin/alias", "tool"},
	          {'l', "usr/abs", "/usr/bin/tool"}, {'h', "usr/bin/same", "usr/bin/tool"},
	          {'p', "run/fifo", NULL, 0600}, {'c', "dev/null"}, {'f', "données/é.txt", "utf-8"});
	struct kiln_unpack_stats st = {0};
	unpack_ok(d, &st);

	struct stat s1, s2;
	cr_assert_eq(stat(in_out(0, "usr"), &s1), 0);
	cr_assert_eq(s1.st_mode & 07777, 0750);
	cr_assert_eq(s1.st_mtime, MTIME);
	cr_assert_eq(stat(in_out(0, "usr/bin/tool"), &s1), 0);
	cr_assert_eq(s1.st_mode & 07777, 0755);
	cr_assert_eq(s1.st_mtime, MTIME);
	cr_assert_eq(stat(in_out(0, "usr/bin/same"), &s2), 0);
	cr_assert_eq(s1.st_ino, s2.st_ino, "the hard link is not one");
	cr_assert_eq(stat(in_out(0, "usr/secret"), &s1), 0);
	cr_assert_eq(s1.st_mode & 07777, 0640);
	/* Ownership is never restored, even as root. */
	cr_assert_eq(s1.st_uid, geteuid());
	char link[256];
	ssize_t n = readlink(in_out(0, "usr/bin/alias"), link, sizeof(link));
	cr_assert_eq(n, 4);
	cr_assert_eq(memcmp(link, "tool", 4), 0);
	n = readlink(in_out(0, "usr/abs"), link, sizeof(link));
	cr_assert_eq(n, 13);
	cr_assert_eq(lstat(in_out(0, "run/fifo"), &s1), 0);
	cr_assert(S_ISFIFO(s1.st_mode));
	cr_assert_not(exists(in_out(0, "dev/null")), "a device node was made");
	char *text = slurp(in_out(0, "données/é.txt"));
	cr_assert_str_eq(text, "utf-8");
	free(text);

	cr_assert_eq(st.layers, 1);
	cr_assert_eq(st.sum.entries, 9);
	cr_assert_eq(st.sum.files, 3);
	cr_assert_eq(st.sum.dirs, 1);
	cr_assert_eq(st.sum.symlinks, 2);
	cr_assert_eq(st.sum.hardlinks, 1);
	cr_assert_eq(st.sum.others, 1);
	cr_assert_eq(st.sum.skipped, 1);
	cr_assert_eq(st.sum.bytes, strlen("#!/bin/sh\n") + 1 + 5);
}

Test(unpack, gzip_and_plain_layers_unpack_alike)
{
	char plain[KILN_DIGEST_LEN], gz[KILN_DIGEST_LEN];
	PUT_LAYER(plain, false, {'f', "a/plain", "p"});
	PUT_LAYER(gz, true, {'f', "a/gzip", "g"});
	unpack_ok(plain, NULL);
	char *msg = NULL;
	cr_assert_eq(unpack(gz, KILN_MEDIA_LAYER_GZIP, NULL, &msg), 0, "%s", msg ? msg : "");
	cr_assert_eq(unpack(gz, "application/vnd.docker.image.rootfs.diff.tar.gzip", NULL, &msg), 0, "%s",
	             msg ? msg : "");
	cr_assert(exists(in_out(0, "a/plain")));
	cr_assert(exists(in_out(0, "a/gzip")));
}

Test(unpack, gzip_layer_labelled_plain_is_refused)
{
	char gz[KILN_DIGEST_LEN];
	PUT_LAYER(gz, true, {'f', "a", "g"});
	char *msg = NULL;
	cr_assert_lt(unpack(gz, KILN_MEDIA_LAYER, NULL, &msg), 0);
	cr_assert(strstr(msg, gz) != NULL, "%s", msg);
	free(msg);
}

Test(unpack, unknown_media_type_is_refused)
{
	char d[KILN_DIGEST_LEN];
	PUT_LAYER(d, false, {'f', "a", "x"});
	char *msg = NULL;
	cr_assert_eq(unpack(d, KILN_MEDIA_CONFIG, NULL, &msg), KILN_EINVAL);
	cr_assert(strstr(msg, "media type") != NULL, "%s", msg);
	free(msg);
	cr_assert(kiln_unpack_media_type_ok("application/vnd.cncf.model.weight.v1.tar"));
	cr_assert(kiln_unpack_media_type_ok("application/vnd.oci.image.layer.v1.tar+zstd"));
	cr_assert_not(kiln_unpack_media_type_ok("application/vnd.cncf.model.weight.v1.raw"));
	cr_assert_not(kiln_unpack_media_type_ok("application/vnd.oci.image.layer.v1.tar+bzip2"));
}

Test(unpack, whiteout_removes_what_lower_layers_put_there)
{
	char l1[KILN_DIGEST_LEN], l2[KILN_DIGEST_LEN];
	PUT_LAYER(l1, false, {'f', "a/keep", "k"}, {'f', "a/gone", "g"}, {'f', "a/dir/x", "x"},
	          {'l', "a/link", "/"});
	PUT_LAYER(l2, false, {'f', "a/.wh.gone", ""}, {'f', "a/.wh.dir", ""}, {'f', "a/.wh.link", ""},
	          {'f', "a/.wh.never-there", ""});
	unpack_ok(l1, NULL);
	struct kiln_unpack_stats st = {0};
	unpack_ok(l2, &st);
	cr_assert(exists(in_out(0, "a/keep")));
	cr_assert_not(exists(in_out(0, "a/gone")));
	cr_assert_not(exists(in_out(0, "a/dir")));
	cr_assert_not(exists(in_out(0, "a/link")));
	cr_assert_not(exists(in_out(0, "a/.wh.gone")), "a whiteout was written");
	cr_assert_eq(st.sum.whiteouts, 4);
	cr_assert_eq(st.sum.files, 0);
}

Test(unpack, a_lower_directory_keeps_its_time_when_an_upper_layer_changes_it)
{
	char l1[KILN_DIGEST_LEN], l2[KILN_DIGEST_LEN];
	PUT_LAYER(l1, false, {'d', "etc/"}, {'f', "etc/passwd", "root"}, {'f', "etc/group", "root"});
	PUT_LAYER(l2, false, {'f', "etc/hostname", "h"}, {'f', "etc/.wh.passwd", ""},
	          {'f', "etc/group", "g"});
	unpack_ok(l1, NULL);
	unpack_ok(l2, NULL);
	struct stat st;
	cr_assert_eq(stat(in_out(0, "etc"), &st), 0);
	cr_assert_eq(st.st_mtime, MTIME);
}

Test(unpack, whiteout_leaves_the_layer_own_file)
{
	char d[KILN_DIGEST_LEN];
	PUT_LAYER(d, false, {'f', "a", "mine"}, {'f', ".wh.a", ""});
	unpack_ok(d, NULL);
	cr_assert(exists(in_out(0, "a")));
}

Test(unpack, opaque_whiteout_empties_a_directory_but_keeps_the_layer_own_entries)
{
	char l1[KILN_DIGEST_LEN], l2[KILN_DIGEST_LEN];
	PUT_LAYER(l1, false, {'f', "d/old", "o"}, {'f', "d/sub/old2", "o"}, {'d', "d/empty/"},
	          {'f', "other/stays", "s"});
	/* The marker comes between entries of its own layer: both stay. */
	PUT_LAYER(l2, false, {'f', "d/new", "n"}, {'f', "d/.wh..wh..opq", ""}, {'f', "d/sub/new2", "n"});
	unpack_ok(l1, NULL);
	unpack_ok(l2, NULL);
	cr_assert(exists(in_out(0, "d/new")));
	cr_assert(exists(in_out(0, "d/sub/new2")));
	cr_assert_not(exists(in_out(0, "d/old")));
	cr_assert_not(exists(in_out(0, "d/sub/old2")));
	cr_assert_not(exists(in_out(0, "d/empty")));
	cr_assert_not(exists(in_out(0, "d/.wh..wh..opq")));
	cr_assert(exists(in_out(0, "other/stays")));
	struct stat st;
	cr_assert_eq(stat(in_out(0, "d"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0755, "the emptied directory changed mode: %o", st.st_mode & 07777);
}

/* Only root writes in a read-only directory whatever its mode: others get it writable for a moment. */
Test(unpack, upper_layer_writes_in_a_read_only_directory)
{
	char l1[KILN_DIGEST_LEN], l2[KILN_DIGEST_LEN];
	PUT_LAYER(l1, false, {'d', "ro/", NULL, 0555}, {'f', "ro/a", "a"});
	PUT_LAYER(l2, false, {'f', "ro/b", "b"}, {'f', "ro/new/c", "c"}, {'f', "ro/.wh.a", ""});
	unpack_ok(l1, NULL);
	unpack_ok(l2, NULL);
	cr_assert(exists(in_out(0, "ro/b")));
	cr_assert(exists(in_out(0, "ro/new/c")));
	cr_assert_not(exists(in_out(0, "ro/a")));
	struct stat st;
	cr_assert_eq(stat(in_out(0, "ro"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0555);
}

Test(unpack, whiteout_empties_a_read_only_directory)
{
	char l1[KILN_DIGEST_LEN], l2[KILN_DIGEST_LEN];
	PUT_LAYER(l1, false, {'d', "ro/", NULL, 0555}, {'d', "ro/sub/", NULL, 0555},
	          {'f', "ro/sub/f", "f", 0444});
	PUT_LAYER(l2, false, {'f', ".wh.ro", ""});
	unpack_ok(l1, NULL);
	unpack_ok(l2, NULL);
	cr_assert_not(exists(in_out(0, "ro")));
}

Test(unpack, dotdot_entries_are_refused)
{
	char d[KILN_DIGEST_LEN];
	PUT_LAYER(d, false, {'f', "../escaped", "x"});
	assert_refused(d, "'../escaped' has a '..' component");
	PUT_LAYER(d, false, {'f', "a/../../escaped", "x"});
	assert_refused(d, "'a/../../escaped'");
	PUT_LAYER(d, false, {'f', ".wh...", ""});
	assert_refused(d, "not a valid whiteout");
}

Test(unpack, absolute_names_land_inside_dir)
{
	char d[KILN_DIGEST_LEN];
	char name[4096];
	snprintf(name, sizeof(name), "%s/escaped", tmp);
	PUT_LAYER(d, false, {'f', name, "x"}, {'f', "/etc/x", "y"});
	unpack_ok(d, NULL);
	cr_assert(exists(in_out(0, name + 1)));
	cr_assert(exists(in_out(0, "etc/x")));
	assert_outside_untouched();
}

Test(unpack, entry_through_a_symlink_is_refused)
{
	char d[KILN_DIGEST_LEN];
	PUT_LAYER(d, false, {'l', "link", tmp}, {'f', "link/escaped", "x"});
	assert_refused(d, "'link/escaped' goes through the symbolic link 'link'");

	kiln_extract_remove(out, NULL);
	char name[4096];
	snprintf(name, sizeof(name), "root%s/escaped", tmp);
	PUT_LAYER(d, false, {'l', "root", "/"}, {'f', name, "x"});
	assert_refused(d, "the symbolic link 'root'");

	/* The link in a lower layer, the entry in the next. */
	kiln_extract_remove(out, NULL);
	char l1[KILN_DIGEST_LEN], l2[KILN_DIGEST_LEN];
	PUT_LAYER(l1, false, {'d', "a/"}, {'l', "a/up", "../.."});
	PUT_LAYER(l2, false, {'f', "a/up/escaped", "x"});
	unpack_ok(l1, NULL);
	assert_refused(l2, "goes through the symbolic link 'a/up'");
}

Test(unpack, whiteout_through_a_symlink_is_refused)
{
	char d[KILN_DIGEST_LEN];
	PUT_LAYER(d, false, {'l', "link", tmp}, {'f', "link/.wh.victim", ""});
	assert_refused(d, "goes through the symbolic link 'link'");
	PUT_LAYER(d, false, {'l', "link2", tmp}, {'f', "link2/.wh..wh..opq", ""});
	assert_refused(d, "goes through the symbolic link 'link2'");
}

Test(unpack, hardlinks_to_outside_are_refused)
{
	char d[KILN_DIGEST_LEN];
	PUT_LAYER(d, false, {'h', "h", "../victim"});
	assert_refused(d, "hard link to '../victim'");
	PUT_LAYER(d, false, {'l', "link", tmp}, {'h', "h", "link/victim"});
	assert_refused(d, "goes through the symbolic link 'link'");
	char abs[4096];
	snprintf(abs, sizeof(abs), "%s/victim", tmp);
	PUT_LAYER(d, false, {'h', "h2", abs});
	assert_refused(d, "not a file of the image");
}

Test(unpack, a_link_in_the_way_is_replaced_not_followed)
{
	char l1[KILN_DIGEST_LEN], l2[KILN_DIGEST_LEN];
	PUT_LAYER(l1, false, {'l', "f", in_tmp(0, "victim")}, {'l', "d", tmp},
	          {'l', "h", in_tmp(1, "victim")}, {'f', "target", "t"});
	PUT_LAYER(l2, false, {'f', "f", "new"}, {'d', "d/"}, {'f', "d/victim", "new"}, {'h', "h", "target"});
	unpack_ok(l1, NULL);
	unpack_ok(l2, NULL);
	struct stat st;
	cr_assert_eq(lstat(in_out(0, "f"), &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(lstat(in_out(0, "d"), &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(lstat(in_out(0, "h"), &st), 0);
	cr_assert_eq(st.st_nlink, 2);
	cr_assert_eq(stat(tmp, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0700, "the directory entry 'd/' changed the link's target");
	assert_outside_untouched();
}

Test(unpack, a_new_file_leaves_its_lower_hard_links_alone)
{
	char l1[KILN_DIGEST_LEN], l2[KILN_DIGEST_LEN];
	PUT_LAYER(l1, false, {'f', "a", "old"}, {'h', "b", "a"});
	PUT_LAYER(l2, false, {'f', "a", "new"});
	unpack_ok(l1, NULL);
	unpack_ok(l2, NULL);
	char *a = slurp(in_out(0, "a"));
	char *b = slurp(in_out(0, "b"));
	cr_assert_str_eq(a, "new");
	cr_assert_str_eq(b, "old");
	free(a);
	free(b);
}

Test(unpack, a_file_replaces_a_lower_directory)
{
	char l1[KILN_DIGEST_LEN], l2[KILN_DIGEST_LEN];
	PUT_LAYER(l1, false, {'f', "x/inside", "i"});
	PUT_LAYER(l2, false, {'f', "x", "now a file"});
	unpack_ok(l1, NULL);
	unpack_ok(l2, NULL);
	char *text = slurp(in_out(0, "x"));
	cr_assert_str_eq(text, "now a file");
	free(text);
}

/* Replace the stored blob of DIGEST with other bytes. */
static void corrupt_blob(const char *digest)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	const struct ent other[] = {{'f', "evil", "not what was hashed"}};
	make_tar(&b, false, other, 1);
	char *path = kiln_store_blob_path(store, digest);
	cr_assert_not_null(path);
	chmod(path, 0644);
	cr_assert_eq(kiln_write_file_atomic(path, b.ptr, b.len, NULL), 0);
	free(path);
}

Test(unpack, digest_mismatch_is_refused)
{
	char d[KILN_DIGEST_LEN];
	PUT_LAYER(d, false, {'f', "good", "g"});
	corrupt_blob(d);
	char *msg = NULL;
	cr_assert_eq(unpack(d, KILN_MEDIA_LAYER, NULL, &msg), KILN_EIO);
	cr_assert(strstr(msg, d) != NULL && strstr(msg, "has digest") != NULL, "%s", msg);
	free(msg);

	/* An image with that layer: nothing is left, not even a temporary directory. */
	kiln_extract_remove(out, NULL);
	char layers[1][KILN_DIGEST_LEN];
	strcpy(layers[0], d);
	char m[KILN_DIGEST_LEN];
	put_image(m, layers, NULL, 1);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_unpack_image(store, m, 0, out, NULL, NULL, &err), KILN_EIO);
	kiln_error_free(err);
	assert_outside_untouched();
	cr_assert_not(exists(out));
}

Test(unpack, image_layers_unpack_in_order_from_first_layer)
{
	char layers[3][KILN_DIGEST_LEN];
	PUT_LAYER(layers[0], false, {'f', "base", "b"});
	PUT_LAYER(layers[1], true, {'f', "app/a", "1"}, {'f', "app/b", "1"});
	PUT_LAYER(layers[2], false, {'f', "app/a", "2"}, {'f', "app/.wh.b", ""});
	const bool gzip[] = {false, true, false};
	char m[KILN_DIGEST_LEN];
	put_image(m, layers, gzip, 3);

	struct kiln_error *err = NULL;
	struct kiln_unpack_stats st = {0};
	cr_assert_eq(kiln_unpack_image(store, m, 1, out, NULL, &st, &err), 0, "%s", err ? err->message : "");
	cr_assert_not(exists(in_out(0, "base")), "layer 0 was unpacked");
	char *text = slurp(in_out(0, "app/a"));
	cr_assert_str_eq(text, "2");
	free(text);
	cr_assert_not(exists(in_out(0, "app/b")));
	cr_assert_eq(st.layers, 2);
	struct stat s;
	cr_assert_eq(stat(out, &s), 0);
	cr_assert_eq(s.st_mode & 07777, 0755);

	/* DIR exists now: refused, and left as it is. */
	cr_assert_eq(kiln_unpack_image(store, m, 0, out, NULL, NULL, &err), KILN_EINVAL);
	cr_assert(strstr(err->message, "already exists") != NULL, "%s", err->message);
	kiln_error_free(err);
	err = NULL;
	cr_assert_not(exists(in_out(0, "base")));

	cr_assert_eq(kiln_unpack_image(store, m, 4, in_tmp(0, "out2"), NULL, NULL, &err), KILN_EINVAL);
	kiln_error_free(err);
	assert_outside_untouched();
}

Test(unpack, refused_layer_leaves_no_directory)
{
	char layers[2][KILN_DIGEST_LEN];
	PUT_LAYER(layers[0], false, {'d', "ro/", NULL, 0555}, {'f', "ro/f", "f", 0444}, {'l', "up", "/"});
	PUT_LAYER(layers[1], false, {'f', "ok", "fine"}, {'f', "up/escaped", "x"});
	char m[KILN_DIGEST_LEN];
	put_image(m, layers, NULL, 2);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_unpack_image(store, m, 0, out, NULL, NULL, &err), KILN_EINVAL);
	cr_assert(strstr(err->message, layers[1]) != NULL && strstr(err->message, "'up/escaped'") != NULL,
	          "%s", err->message);
	kiln_error_free(err);
	cr_assert_not(exists(out));
	assert_outside_untouched();
}

Test(unpack, missing_layer_is_reported_before_anything_is_made)
{
	char layers[2][KILN_DIGEST_LEN];
	PUT_LAYER(layers[0], false, {'f', "a", "a"});
	strcpy(layers[1], "sha256:0000000000000000000000000000000000000000000000000000000000000000");
	char m[KILN_DIGEST_LEN];
	put_image(m, layers, NULL, 2);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_unpack_image(store, m, 0, out, NULL, NULL, &err), KILN_ENOTFOUND);
	cr_assert(strstr(err->message, layers[1]) != NULL, "%s", err->message);
	kiln_error_free(err);
	assert_outside_untouched();
}

static volatile sig_atomic_t stop;

static void stop_now(void *ctx, uint64_t bytes)
{
	stop = 1;
}

Test(unpack, cancel_stops_and_leaves_nothing)
{
	char layers[1][KILN_DIGEST_LEN];
	PUT_LAYER(layers[0], false, {'f', "a", "a"}, {'f', "b", "b"});
	char m[KILN_DIGEST_LEN];
	put_image(m, layers, NULL, 1);
	struct kiln_unpack_options opt = {.progress = stop_now, .cancel = &stop};
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_unpack_image(store, m, 0, out, &opt, NULL, &err), KILN_EINTR);
	kiln_error_free(err);
	cr_assert_not(exists(out));
	assert_outside_untouched();
}

Test(unpack, stale_temporary_directory_of_a_dead_process_is_removed)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
	char stale[4096];
	snprintf(stale, sizeof(stale), "%s/.out.unpack-%ld-abcdef", tmp, (long)pid);
	cr_assert_eq(mkdir(stale, 0755), 0);
	char layers[1][KILN_DIGEST_LEN];
	PUT_LAYER(layers[0], false, {'f', "a", "a"});
	char m[KILN_DIGEST_LEN];
	put_image(m, layers, NULL, 1);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_unpack_image(store, m, 0, out, NULL, NULL, &err), 0, "%s", err ? err->message : "");
	cr_assert_not(exists(stale));
	assert_outside_untouched();
}

/* A weight layer stored as a recipe: streamed from its source file, which must not have changed. */
Test(unpack, recipe_layer_unpacks_from_its_source_file)
{
	cr_assert_eq(mkdir(in_tmp(0, "src"), 0755), 0);
	const char *src = in_tmp(1, "src/model.bin");
	char data[5000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7);
	cr_assert_eq(kiln_write_file_atomic(src, data, sizeof(data), NULL), 0);
	struct stat st;
	cr_assert_eq(stat(src, &st), 0);
	struct kiln_tar_entry e = {.name = "weights/model.bin",
	                           .type = KILN_TAR_FILE,
	                           .mode = 0644,
	                           .source = (char *)src,
	                           .size = (uint64_t)st.st_size};
	kiln_stat_fp_from(&e.fp, &st);
	struct kiln_layer_options lopt = {.mtime = 0, .fd = -1, .compression = KILN_COMPRESS_NONE};
	struct kiln_layer_out lo = {0};
	cr_assert_eq(kiln_layer_write(&lo, &e, 1, &lopt, NULL), 0);
	cr_assert_eq(kiln_store_recipe_put(store, lo.recipe, NULL), 0);
	cr_assert_null(kiln_store_blob_path(store, lo.digest), "the weights were copied into the store");

	struct kiln_unpack_stats us = {0};
	unpack_ok(lo.digest, &us);
	char *got = NULL;
	size_t len = 0;
	cr_assert_eq(kiln_read_file(&got, &len, in_out(0, "weights/model.bin"), 1 << 20, NULL), 0);
	cr_assert_eq(len, sizeof(data));
	cr_assert_eq(memcmp(got, data, len), 0);
	free(got);
	cr_assert_eq(us.sum.blob_bytes, lo.size);

	/* The source changes: refused. */
	data[0] ^= 1;
	cr_assert_eq(kiln_write_file_atomic(src, data, sizeof(data), NULL), 0);
	kiln_extract_remove(out, NULL);
	char *msg = NULL;
	cr_assert_eq(unpack(lo.digest, KILN_MEDIA_LAYER, NULL, &msg), KILN_ECHANGED, "%s", msg ? msg : "");
	free(msg);
	kiln_layer_out_release(&lo);
}

/* An image's privileges are not handed to this machine's users (as root above all). */
Test(unpack, setuid_setgid_and_others_write_are_stripped_and_owners_not_restored)
{
	char d[KILN_DIGEST_LEN];
	PUT_LAYER(d, false, {'d', "tmp/", NULL, 01777}, {'d', "shared/", NULL, 03777},
	          {'d', "nog/", NULL, 01757}, {'d', "sgid/", NULL, 02755},
	          {'f', "bin/su", "#!/bin/sh\n", 06755, 0}, {'f', "bin/mine", "x", 04700, 1234},
	          {'f', "open", "o", 0666}, {'f', "sticky", "s", 01644});
	unpack_ok(d, NULL);
	static const struct {
		const char *name;
		unsigned mode;
	} want[] = {{"tmp", 01775},   {"shared", 01775},  {"nog", 0755},  {"sgid", 0755},
	            {"bin/su", 0755}, {"bin/mine", 0700}, {"open", 0664}, {"sticky", 0644}};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct stat st;
		cr_assert_eq(lstat(in_out(0, want[i].name), &st), 0, "%s", want[i].name);
		cr_expect_eq(st.st_mode & 07777, want[i].mode, "'%s': mode %o, expected %o", want[i].name,
		             st.st_mode & 07777, want[i].mode);
		cr_expect_eq(st.st_uid, geteuid(), "'%s' is owned by %u", want[i].name, (unsigned)st.st_uid);
	}
}

/* Its data would go into the file linked to, which kiln predict may share with its cache of weights. */
Test(unpack, a_hard_link_carrying_data_is_refused)
{
	char d[KILN_DIGEST_LEN];
	/* libarchive writes no data for a hard link: a file made one by hand in a pax archive (its long name
	 * needs a pax header), where readers take a hard link's size as its data's. */
	char name[121];
	memset(name, 'e', 120);
	name[120] = '\0';
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	const struct ent ents[] = {{'f', "weights", "the weights"}, {'f', name, "evil data"}};
	make_tar(&b, false, ents, 2);
	char *h = NULL;
	for (size_t off = 0; off + 512 <= b.len && !h; off += 512)
		if (strncmp(b.ptr + off, "eeee", 4) == 0 && b.ptr[off + 156] == '0')
			h = b.ptr + off;
	cr_assert_not_null(h, "no header for 'evil'");
	h[156] = '1';
	strcpy(h + 157, "weights");
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (size_t i = 0; i < 512; i++)
		sum += (unsigned char)h[i];
	snprintf(h + 148, 8, "%06o", sum);
	cr_assert_eq(kiln_store_blob_put(store, b.ptr, b.len, d, NULL), 0);
	assert_refused(d, "eeee' is a hard link that carries data");
	char *text = slurp(in_out(0, "weights"));
	cr_assert_str_eq(text, "the weights");
	free(text);
}

Test(unpack, a_huge_sparse_file_is_refused_by_its_apparent_size)
{
	char d[KILN_DIGEST_LEN];
	PUT_LAYER(d, false, {'f', "small", "s"}, {'s', "huge", "x", 0, 0, 1LL << 40});
	assert_refused(d, "entry 'huge' makes the layer expand to more than");
	cr_assert_not(exists(in_out(0, "huge")));
}

/* The limit: 100 times the blob's size plus 256 MiB; entry sizes counted from their headers. */
Test(unpack, a_layer_expanding_past_its_limit_is_refused_before_the_entry_is_written)
{
	/* A header that says 300 MiB, with no data after it: refused at the header. */
	static char tar[3 * 512], scratch[20480];
	struct archive *a = archive_write_new();
	cr_assert_eq(archive_write_set_format_ustar(a), ARCHIVE_OK);
	cr_assert_eq(archive_write_set_bytes_per_block(a, 512), ARCHIVE_OK);
	size_t used = 0;
	cr_assert_eq(archive_write_open_memory(a, scratch, sizeof(scratch), &used), ARCHIVE_OK);
	struct archive_entry *ae = archive_entry_new();
	archive_entry_set_pathname(ae, "big");
	archive_entry_set_mode(ae, AE_IFREG | 0644);
	archive_entry_set_size(ae, 300LL << 20);
	cr_assert_eq(archive_write_header(a, ae), ARCHIVE_OK);
	archive_entry_free(ae);
	memcpy(tar, scratch, 512); /* the header only, and the end of the archive */
	archive_write_free(a);
	char digest[KILN_DIGEST_LEN];
	cr_assert_eq(kiln_store_blob_put(store, tar, sizeof(tar), digest, NULL), 0);
	assert_refused(digest, "entry 'big' makes the layer expand to more than 268589056 bytes (100 times "
	                       "its 1536 bytes, plus 256 MiB)");
	cr_assert_not(exists(in_out(0, "big")));
}

/* PLACE: the layer linked from a tree unpacked on its own, in its place among the others. */
static int place_linked(void *ctx, size_t index, const json_t *layer, const char *tmpdir,
                        struct kiln_error **err)
{
	return index == 1 ? (kiln_layer_link(ctx, tmpdir, NULL, err) < 0 ? -1 : 1) : 0;
}

Test(unpack, a_placed_layer_goes_in_its_place_and_never_through_a_lower_link)
{
	char layers[3][KILN_DIGEST_LEN];
	PUT_LAYER(layers[0], false, {'l', "w", tmp}, {'d', "a/"}, {'l', "a/up", "../.."},
	          {'f', "gone", "lower"});
	/* Unpacked on its own, then linked in by PLACE: it must not reach through w or a/up. */
	PUT_LAYER(layers[1], false, {'d', "w/"}, {'f', "w/victim", "pwned"}, {'l', "w/shadow", "/etc/shadow"},
	          {'d', "a/"}, {'d', "a/up/"}, {'f', "a/up/victim", "pwned"}, {'f', "gone", "placed"});
	PUT_LAYER(layers[2], false, {'f', ".wh.gone", ""}, {'f', "w/upper", "u"});
	char m[KILN_DIGEST_LEN];
	put_image(m, layers, NULL, 3);
	const char *tree = in_tmp(2, "tree");
	cr_assert_eq(mkdir(tree, 0755), 0);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_unpack_layer(store, layers[1], KILN_MEDIA_LAYER, tree, NULL, NULL, &err), 0, "%s",
	             err ? err->message : "");
	struct kiln_unpack_options opt = {.place = place_linked, .ctx = (void *)tree};
	cr_assert_eq(kiln_unpack_image(store, m, 0, out, &opt, NULL, &err), 0, "%s", err ? err->message : "");

	struct stat st, cached;
	cr_assert_eq(lstat(in_out(0, "w"), &st), 0);
	cr_assert(S_ISDIR(st.st_mode), "the link of the lower layer is still there");
	cr_assert_eq(lstat(in_out(0, "w/victim"), &st), 0);
	cr_assert_eq(stat(in_tmp(3, "tree/w/victim"), &cached), 0);
	cr_assert_eq(st.st_ino, cached.st_ino, "not hard-linked from the tree");
	char link[64];
	cr_assert_eq(readlink(in_out(0, "w/shadow"), link, sizeof(link)), 11);
	cr_assert(exists(in_out(0, "a/up/victim")));
	cr_assert(exists(in_out(0, "w/upper")), "the layer above was not unpacked over it");
	cr_assert_not(exists(in_out(0, "gone")), "the upper whiteout did not apply to the placed layer");
	cr_assert(exists(in_tmp(3, "tree/gone")), "the whiteout removed the tree's file");
	assert_outside_untouched();
}

/* A failure of PLACE ends the unpack: nothing is left. */
static int place_fails(void *ctx, size_t index, const json_t *layer, const char *tmpdir,
                       struct kiln_error **err)
{
	return kiln_error_set(err, KILN_EIO, "no");
}

Test(unpack, a_failing_place_leaves_no_directory)
{
	char layers[1][KILN_DIGEST_LEN];
	PUT_LAYER(layers[0], false, {'f', "a", "a"});
	char m[KILN_DIGEST_LEN];
	put_image(m, layers, NULL, 1);
	struct kiln_unpack_options opt = {.place = place_fails};
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_unpack_image(store, m, 0, out, &opt, NULL, &err), KILN_EIO);
	kiln_error_free(err);
	cr_assert_not(exists(out));
}
