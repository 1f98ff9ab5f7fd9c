/* SPDX-License-Identifier: Apache-2.0 */
/* tests/pkg/store.c: the local store: layout, blobs, recipes, tags, layer cache and stale temp files. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "layers/digest.h"
#include "layers/tar.h"
#include "pkg/store.h"

#define REF1      "docker.io/library/m:latest"
#define REF2      "localhost:5000/org/other:v1"
#define MEDIA_MAN "application/vnd.oci.image.manifest.v1+json"
#define KEY_HEX   "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static char *tmp;
static char *home;

static void make_tmp(void)
{
	tmp = strdup("/tmp/kiln-store-XXXXXX");
	cr_assert(mkdtemp(tmp) != NULL);
	cr_assert(asprintf(&home, "%s/home", tmp) > 0);
	setenv("KILN_HOME", home, 1);
}

static void remove_tmp(void)
{
	kiln_remove_tree(tmp, NULL);
	free(home);
	free(tmp);
}

TestSuite(store, .init = make_tmp, .fini = remove_tmp);

/* A path under the store's home, in a static buffer (valid until the next call with the same slot). */
static const char *in_home(int slot, const char *name)
{
	static char bufs[4][4096];
	snprintf(bufs[slot], sizeof(bufs[slot]), "%s/%s", home, name);
	return bufs[slot];
}

static struct kiln_store *open_store(void)
{
	struct kiln_store *s = NULL;
	struct kiln_error *err = NULL;
	int rc = kiln_store_open(&s, NULL, &err);
	cr_assert_eq(rc, 0, "cannot open the store: %s", err ? err->message : "");
	cr_assert_not_null(s);
	return s;
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int collect(void *ctx, const void *data, size_t len, struct kiln_error **err)
{
	return kiln_buf_put(ctx, data, len) < 0 ? kiln_error_set(err, KILN_EFAIL, "out of memory") : 0;
}

/* The number of entries of index.json's manifests array whose ref.name is REF. */
static size_t index_entries(const char *ref)
{
	json_t *index = json_load_file(in_home(0, "index.json"), 0, NULL);
	cr_assert_not_null(index);
	json_t *list = json_object_get(index, "manifests");
	cr_assert(json_is_array(list));
	size_t n = 0;
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *ann = json_object_get(json_array_get(list, i), "annotations");
		const char *name =
		    json_string_value(json_object_get(ann, "org.opencontainers.image.ref.name"));
		n += name && strcmp(name, ref) == 0;
	}
	json_decref(index);
	return n;
}

Test(store, open_creates_the_layout_and_its_directories)
{
	cr_assert_eq(access(home, F_OK), -1);
	struct kiln_store *s = open_store();
	cr_assert_str_eq(kiln_store_home(s), home);
	cr_assert(is_dir(in_home(0, "blobs/sha256")));
	cr_assert(is_dir(in_home(0, "recipes/sha256")));
	cr_assert(is_dir(in_home(0, "cache/layers")));
	cr_assert(is_dir(in_home(0, "tmp")));
	char *layout = NULL;
	cr_assert_eq(kiln_read_file(&layout, NULL, in_home(0, "oci-layout"), 1024, NULL), 0);
	json_t *j = json_loads(layout, 0, NULL);
	cr_assert_str_eq(json_string_value(json_object_get(j, "imageLayoutVersion")), "1.0.0");
	json_decref(j);
	free(layout);
	kiln_store_free(s);

	s = open_store(); /* opening an existing store is fine */
	kiln_store_free(s);
}

Test(store, open_where_a_file_blocks_the_home_fails)
{
	cr_assert_eq(kiln_write_file_atomic(home, "x", 1, NULL), 0);
	struct kiln_store *s = NULL;
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_store_open(&s, home, &err), 0);
	cr_assert_null(s);
	cr_assert_not_null(strstr(err->message, "cannot open the store"), "message: %s", err->message);
	kiln_error_free(err);
}

Test(store, blob_put_then_read_round_trips)
{
	struct kiln_store *s = open_store();
	static const char data[] = "{\"hello\":\"world\"}";
	char digest[KILN_DIGEST_LEN], want[KILN_DIGEST_LEN];
	kiln_digest_buffer(want, data, sizeof(data) - 1);
	cr_assert_eq(kiln_store_blob_put(s, data, sizeof(data) - 1, digest, NULL), 0);
	cr_assert_str_eq(digest, want);
	cr_assert(kiln_store_blob_exists(s, digest));
	char *path = kiln_store_blob_path(s, digest);
	cr_assert_not_null(path);
	char want_path[256];
	snprintf(want_path, sizeof(want_path), "blobs/sha256/%s", kiln_digest_hex(digest));
	cr_assert_str_eq(path, in_home(0, want_path));
	free(path);

	char *out = NULL;
	size_t len = 0;
	cr_assert_eq(kiln_store_blob_read(s, digest, &out, &len, 1024, NULL), 0);
	cr_assert_eq(len, sizeof(data) - 1);
	cr_assert_str_eq(out, data);
	free(out);

	cr_assert_eq(kiln_store_blob_put(s, data, sizeof(data) - 1, digest, NULL), 0,
	             "putting it again is fine");
	kiln_store_free(s);
}

Test(store, blob_of_unknown_digest_does_not_exist)
{
	struct kiln_store *s = open_store();
	const char *d = "sha256:" KEY_HEX;
	cr_assert_not(kiln_store_blob_exists(s, d));
	cr_assert_null(kiln_store_blob_path(s, d));
	char *out = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_store_blob_read(s, d, &out, NULL, 1024, &err), KILN_ENOTFOUND);
	cr_assert_not_null(strstr(err->message, d), "message: %s", err->message);
	kiln_error_free(err);
	kiln_store_free(s);
}

Test(store, stream_of_unknown_blob_returns_enotfound)
{
	struct kiln_store *s = open_store();
	const char *d = "sha256:" KEY_HEX;
	struct kiln_error *err = NULL;
	struct kiln_buf b = KILN_BUF_INIT;
	int rc = kiln_store_blob_stream(s, d, collect, &b, &err);
	cr_assert_eq(b.len, 0);
	cr_assert_not_null(err);
	cr_assert_eq(err->code, KILN_ENOTFOUND);
	cr_assert_not_null(strstr(err->message, d), "message: %s", err->message);
	int code = err->code;
	kiln_error_free(err);
	kiln_buf_release(&b);
	kiln_store_free(s);
	cr_assert_eq(rc, code, "returned %d, the error's code is %d", rc, code);
}

Test(store, corrupt_blob_is_reported_on_read)
{
	struct kiln_store *s = open_store();
	char digest[KILN_DIGEST_LEN];
	cr_assert_eq(kiln_store_blob_put(s, "hello world", 11, digest, NULL), 0);
	char *path = kiln_store_blob_path(s, digest);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(kiln_write_all(fd, "jello", 5), 0);
	close(fd);
	free(path);

	char *out = NULL;
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_store_blob_read(s, digest, &out, NULL, 1024, &err), 0);
	cr_assert_null(out);
	cr_assert_not_null(err);
	cr_assert_not_null(strstr(err->message, "corrupt"), "message: %s", err->message);
	cr_assert_not_null(strstr(err->message, digest), "message: %s", err->message);
	kiln_error_free(err);
	kiln_store_free(s);
}

Test(store, blob_read_enforces_max_size)
{
	struct kiln_store *s = open_store();
	char digest[KILN_DIGEST_LEN];
	cr_assert_eq(kiln_store_blob_put(s, "0123456789", 10, digest, NULL), 0);
	char *out = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_store_blob_read(s, digest, &out, NULL, 5, &err), KILN_EINVAL);
	cr_assert_not_null(strstr(err->message, digest), "message: %s", err->message);
	kiln_error_free(err);
	kiln_store_free(s);
}

Test(store, blob_commit_moves_a_temporary_file_in)
{
	struct kiln_store *s = open_store();
	int fd = -1;
	char *tmp_path = NULL;
	cr_assert_eq(kiln_store_tmpfile(s, &fd, &tmp_path, NULL), 0);
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "/tmp/%d-", (int)getpid());
	cr_assert_not_null(strstr(tmp_path, prefix), "temporary file '%s' is named after the pid", tmp_path);
	cr_assert_eq(kiln_write_all(fd, "committed", 9), 0);
	char digest[KILN_DIGEST_LEN];
	kiln_digest_buffer(digest, "committed", 9);
	cr_assert_eq(kiln_store_blob_commit(s, fd, tmp_path, digest, NULL), 0);
	cr_assert_eq(access(tmp_path, F_OK), -1);
	char *out = NULL;
	cr_assert_eq(kiln_store_blob_read(s, digest, &out, NULL, 100, NULL), 0);
	cr_assert_str_eq(out, "committed");
	free(out);
	free(tmp_path);
	kiln_store_free(s);
}

Test(store, tag_then_resolve_gives_the_digest)
{
	struct kiln_store *s = open_store();
	char d1[KILN_DIGEST_LEN], got[KILN_DIGEST_LEN];
	cr_assert_eq(kiln_store_blob_put(s, "m1", 2, d1, NULL), 0);
	cr_assert_eq(kiln_store_tag(s, REF1, d1, 2, MEDIA_MAN, NULL), 0);
	cr_assert_eq(kiln_store_resolve(s, REF1, got, NULL), 0);
	cr_assert_str_eq(got, d1);

	json_t *index = json_load_file(in_home(0, "index.json"), 0, NULL);
	cr_assert_eq(json_integer_value(json_object_get(index, "schemaVersion")), 2);
	json_t *e = json_array_get(json_object_get(index, "manifests"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(e, "digest")), d1);
	cr_assert_str_eq(json_string_value(json_object_get(e, "mediaType")), MEDIA_MAN);
	cr_assert_eq(json_integer_value(json_object_get(e, "size")), 2);
	json_decref(index);
	kiln_store_free(s);
}

Test(store, retag_replaces_the_entry_and_keeps_other_refs)
{
	struct kiln_store *s = open_store();
	char d1[KILN_DIGEST_LEN], d2[KILN_DIGEST_LEN], got[KILN_DIGEST_LEN];
	cr_assert_eq(kiln_store_blob_put(s, "m1", 2, d1, NULL), 0);
	cr_assert_eq(kiln_store_blob_put(s, "m2", 2, d2, NULL), 0);
	cr_assert_eq(kiln_store_tag(s, REF1, d1, 2, MEDIA_MAN, NULL), 0);
	cr_assert_eq(kiln_store_tag(s, REF2, d1, 2, MEDIA_MAN, NULL), 0);
	cr_assert_eq(kiln_store_tag(s, REF1, d2, 2, MEDIA_MAN, NULL), 0);
	cr_assert_eq(index_entries(REF1), 1);
	cr_assert_eq(index_entries(REF2), 1);
	cr_assert_eq(kiln_store_resolve(s, REF1, got, NULL), 0);
	cr_assert_str_eq(got, d2);
	cr_assert_eq(kiln_store_resolve(s, REF2, got, NULL), 0);
	cr_assert_str_eq(got, d1);
	kiln_store_free(s);
}

Test(store, resolve_of_unknown_ref_is_not_found_and_names_it)
{
	struct kiln_store *s = open_store();
	char got[KILN_DIGEST_LEN];
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_store_resolve(s, REF1, got, &err), KILN_ENOTFOUND, "with no index at all");
	cr_assert_not_null(strstr(err->message, "'" REF1 "'"), "message: %s", err->message);
	kiln_error_free(err);
	err = NULL;

	char d1[KILN_DIGEST_LEN];
	cr_assert_eq(kiln_store_blob_put(s, "m1", 2, d1, NULL), 0);
	cr_assert_eq(kiln_store_tag(s, REF1, d1, 2, MEDIA_MAN, NULL), 0);
	cr_assert_eq(kiln_store_resolve(s, REF2, got, &err), KILN_ENOTFOUND);
	cr_assert_not_null(strstr(err->message, "'" REF2 "'"), "message: %s", err->message);
	kiln_error_free(err);
	kiln_store_free(s);
}

Test(store, resolve_success_leaves_no_error)
{
	struct kiln_store *s = open_store();
	char d1[KILN_DIGEST_LEN], got[KILN_DIGEST_LEN];
	cr_assert_eq(kiln_store_blob_put(s, "m1", 2, d1, NULL), 0);
	cr_assert_eq(kiln_store_tag(s, REF1, d1, 2, MEDIA_MAN, NULL), 0);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_store_resolve(s, REF1, got, &err), 0);
	cr_assert_null(err);
	kiln_store_free(s);
}

Test(store, invalid_index_is_reported)
{
	struct kiln_store *s = open_store();
	cr_assert_eq(kiln_write_file_atomic(in_home(0, "index.json"), "{not json", 9, NULL), 0);
	char got[KILN_DIGEST_LEN];
	struct kiln_error *err = NULL;
	int rc = kiln_store_resolve(s, REF1, got, &err);
	cr_assert_not_null(err);
	cr_assert_eq(err->code, KILN_EIO);
	cr_assert_not_null(strstr(err->message, "index.json"), "message: %s", err->message);
	int code = err->code;
	kiln_error_free(err);
	kiln_store_free(s);
	cr_assert_eq(rc, code, "returned %d, the error's code is %d", rc, code);
}

Test(store, cache_put_then_get_round_trips)
{
	struct kiln_store *s = open_store();
	cr_assert_null(kiln_store_cache_get(s, KEY_HEX));
	json_t *v = json_pack("{s:s,s:I}", "digest", "sha256:" KEY_HEX, "size", (json_int_t)1234);
	cr_assert_eq(kiln_store_cache_put(s, KEY_HEX, v, NULL), 0);
	json_t *got = kiln_store_cache_get(s, KEY_HEX);
	cr_assert_not_null(got);
	cr_assert(json_equal(got, v));
	json_decref(got);
	json_decref(v);
	kiln_store_free(s);
}

Test(store, cache_get_of_unreadable_entry_is_null)
{
	struct kiln_store *s = open_store();
	char name[256];
	snprintf(name, sizeof(name), "cache/layers/%s.json", KEY_HEX);
	cr_assert_eq(kiln_write_file_atomic(in_home(0, name), "{broken", 7, NULL), 0);
	cr_assert_null(kiln_store_cache_get(s, KEY_HEX));
	kiln_store_free(s);
}

/* Write a small weight file outside the store and describe it as a tar entry (the caller releases). */
static void weight_entry(struct kiln_tar_entry *e)
{
	char *src = NULL;
	cr_assert(asprintf(&src, "%s/w.bin", tmp) > 0);
	char data[3000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7);
	cr_assert_eq(kiln_write_file_atomic(src, data, sizeof(data), NULL), 0);
	struct stat st;
	cr_assert_eq(stat(src, &st), 0);
	memset(e, 0, sizeof(*e));
	e->name = strdup("src/w.bin");
	e->type = KILN_TAR_FILE;
	e->mode = 0644;
	e->source = src;
	e->size = (uint64_t)st.st_size;
	kiln_stat_fp_from(&e->fp, &st);
}

Test(store, recipe_blob_exists_and_streams_the_layer_bytes)
{
	struct kiln_store *s = open_store();
	struct kiln_tar_entry e;
	weight_entry(&e);
	struct kiln_layer_options opt = {.mtime = 0, .fd = -1, .compression = KILN_COMPRESS_NONE};
	struct kiln_layer_out out = {0};
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_layer_write(&out, &e, 1, &opt, &err), 0, "%s", err ? err->message : "");
	cr_assert_not_null(out.recipe);
	cr_assert_not(kiln_store_blob_exists(s, out.digest));
	cr_assert_eq(kiln_store_recipe_put(s, out.recipe, NULL), 0);
	cr_assert(kiln_store_blob_exists(s, out.digest));
	cr_assert_null(kiln_store_blob_path(s, out.digest), "a recipe blob is not stored whole");

	struct kiln_buf streamed = KILN_BUF_INIT;
	cr_assert_eq(kiln_store_blob_stream(s, out.digest, collect, &streamed, &err), 0, "%s",
	             err ? err->message : "");

	/* the same layer written to a real file */
	char *ref_path = NULL;
	cr_assert(asprintf(&ref_path, "%s/layer.tar", tmp) > 0);
	int fd = open(ref_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	struct kiln_layer_options opt2 = {.mtime = 0, .fd = fd, .compression = KILN_COMPRESS_NONE};
	struct kiln_layer_out out2 = {0};
	cr_assert_eq(kiln_layer_write(&out2, &e, 1, &opt2, NULL), 0);
	close(fd);
	char *ref = NULL;
	size_t ref_len = 0;
	cr_assert_eq(kiln_read_file(&ref, &ref_len, ref_path, 1 << 20, NULL), 0);

	cr_assert_str_eq(out2.digest, out.digest);
	cr_assert_eq(streamed.len, ref_len);
	cr_assert_eq(streamed.len, out.size);
	cr_assert_eq(memcmp(streamed.ptr, ref, ref_len), 0);
	char got[KILN_DIGEST_LEN];
	kiln_digest_buffer(got, streamed.ptr, streamed.len);
	cr_assert_str_eq(got, out.digest);

	struct kiln_recipe *r = NULL;
	cr_assert_eq(kiln_store_recipe_get(s, out.digest, &r, NULL), 0);
	cr_assert_str_eq(r->digest, out.digest);
	cr_assert_eq(r->size, out.size);
	kiln_recipe_free(r);

	free(ref);
	free(ref_path);
	kiln_buf_release(&streamed);
	kiln_layer_out_release(&out);
	kiln_layer_out_release(&out2);
	kiln_tar_entry_release(&e);
	kiln_store_free(s);
}

Test(store, recipe_get_of_unknown_digest_is_not_found)
{
	struct kiln_store *s = open_store();
	struct kiln_recipe *r = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_store_recipe_get(s, "sha256:" KEY_HEX, &r, &err), KILN_ENOTFOUND);
	cr_assert_null(r);
	kiln_error_free(err);
	kiln_store_free(s);
}

Test(store, open_removes_stale_temporary_files_of_dead_processes)
{
	struct kiln_store *s = open_store();
	kiln_store_free(s);

	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) { /* exec, so that valgrind does not report the runner's memory in the child */
		execl("/bin/true", "true", (char *)NULL);
		_exit(0);
	}
	int status;
	cr_assert_eq(waitpid(child, &status, 0), child);

	char stale[64], live[64];
	snprintf(stale, sizeof(stale), "tmp/%d-x", (int)child);
	snprintf(live, sizeof(live), "tmp/%d-y", (int)getpid());
	cr_assert_eq(kiln_write_file_atomic(in_home(0, stale), "s", 1, NULL), 0);
	cr_assert_eq(kiln_write_file_atomic(in_home(1, live), "l", 1, NULL), 0);
	cr_assert_eq(kiln_write_file_atomic(in_home(2, "tmp/notes"), "n", 1, NULL), 0);

	s = open_store();
	cr_assert_eq(access(in_home(0, stale), F_OK), -1, "the dead process's file is removed");
	cr_assert_eq(access(in_home(1, live), F_OK), 0, "this process's file is kept");
	cr_assert_eq(access(in_home(2, "tmp/notes"), F_OK), 0, "a file not named <pid>-... is kept");
	kiln_store_free(s);
}

Test(store, default_home_prefers_kiln_home)
{
	setenv("KILN_HOME", "/k/home", 1);
	setenv("XDG_CACHE_HOME", "/xdg", 1);
	setenv("HOME", "/h", 1);
	char *h = kiln_store_default_home();
	cr_assert_str_eq(h, "/k/home");
	free(h);
}

Test(store, default_home_falls_back_to_xdg_cache_home)
{
	unsetenv("KILN_HOME");
	setenv("XDG_CACHE_HOME", "/xdg", 1);
	setenv("HOME", "/h", 1);
	char *h = kiln_store_default_home();
	cr_assert_str_eq(h, "/xdg/kiln");
	free(h);

	setenv("KILN_HOME", "", 1); /* empty counts as unset */
	h = kiln_store_default_home();
	cr_assert_str_eq(h, "/xdg/kiln");
	free(h);
}

Test(store, default_home_falls_back_to_home_cache)
{
	unsetenv("KILN_HOME");
	unsetenv("XDG_CACHE_HOME");
	setenv("HOME", "/h", 1);
	char *h = kiln_store_default_home();
	cr_assert_str_eq(h, "/h/.cache/kiln");
	free(h);
}
