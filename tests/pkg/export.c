/* SPDX-License-Identifier: Apache-2.0 */
/* tests/pkg/export.c: exporting a stored image to an OCI layout directory and to an OCI archive. */
#include <criterion/criterion.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "layers/digest.h"
#include "layers/tar.h"
#include "pkg/export.h"
#include "pkg/image.h"
#include "pkg/store.h"

#define MAX_BLOBS 4

static char *tmp;
static struct kiln_store *store;

/* The image put in the store by put_image: its manifest, then its config and layers. */
static struct {
	char digest[MAX_BLOBS][KILN_DIGEST_LEN];
	uint64_t size[MAX_BLOBS];
	size_t n;
} image;

static void make_tmp(void)
{
	tmp = strdup("/tmp/kiln-export-XXXXXX");
	cr_assert(mkdtemp(tmp) != NULL);
	char *home = NULL;
	cr_assert(asprintf(&home, "%s/home", tmp) > 0);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_store_open(&store, home, &err), 0, "%s", err ? err->message : "");
	free(home);
	memset(&image, 0, sizeof(image));
}

static void remove_tmp(void)
{
	kiln_store_free(store);
	kiln_remove_tree(tmp, NULL);
	free(tmp);
}

TestSuite(export, .init = make_tmp, .fini = remove_tmp);

/* A path under the test's directory, in a static buffer (valid until the next call with the same slot). */
static const char *in_tmp(int slot, const char *name)
{
	static char bufs[4][4096];
	snprintf(bufs[slot], sizeof(bufs[slot]), "%s/%s", tmp, name);
	return bufs[slot];
}

/* A tar entry for a new source file NAME (under the test's directory) holding SIZE bytes. */
static void source_entry(struct kiln_tar_entry *e, const char *name, size_t size)
{
	char *src = strdup(in_tmp(0, name));
	char *data = malloc(size);
	for (size_t i = 0; i < size; i++)
		data[i] = (char)(i * 31 + size);
	cr_assert_eq(kiln_write_file_atomic(src, data, size, NULL), 0);
	free(data);
	struct stat st;
	cr_assert_eq(stat(src, &st), 0);
	memset(e, 0, sizeof(*e));
	e->name = strdup(name);
	e->type = KILN_TAR_FILE;
	e->mode = 0644;
	e->source = src;
	e->size = (uint64_t)st.st_size;
	kiln_stat_fp_from(&e->fp, &st);
}

/* Add a blob to `image` (index 0 is the manifest). */
static void image_add(const char *digest, uint64_t size)
{
	cr_assert_lt(image.n, MAX_BLOBS);
	snprintf(image.digest[image.n], KILN_DIGEST_LEN, "%s", digest);
	image.size[image.n] = size;
	image.n++;
}

/*
 * Put a small image in the store by hand: a config blob, a gzip code layer stored whole and, when
 * WITH_RECIPE, an uncompressed weight layer stored as a recipe; then the manifest that lists them.
 */
static void put_image(bool with_recipe)
{
	struct kiln_error *err = NULL;
	image.n = 1; /* the manifest goes in slot 0 at the end */

	static const char config[] =
	    "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\"}}";
	char config_digest[KILN_DIGEST_LEN];
	cr_assert_eq(kiln_store_blob_put(store, config, strlen(config), config_digest, NULL), 0);
	image_add(config_digest, strlen(config));

	struct kiln_tar_entry code;
	source_entry(&code, "predict.py", 500);
	int fd = -1;
	char *tmp_path = NULL;
	cr_assert_eq(kiln_store_tmpfile(store, &fd, &tmp_path, NULL), 0);
	struct kiln_layer_options opt = {.mtime = 0, .fd = fd, .compression = KILN_COMPRESS_GZIP};
	struct kiln_layer_out code_out = {0};
	cr_assert_eq(kiln_layer_write(&code_out, &code, 1, &opt, &err), 0, "%s", err ? err->message : "");
	cr_assert_eq(kiln_store_blob_commit(store, fd, tmp_path, code_out.digest, NULL), 0);
	free(tmp_path);
	image_add(code_out.digest, code_out.size);

	json_t *layers = json_array();
	json_array_append_new(layers, json_pack("{s:s,s:s,s:I}", "mediaType", KILN_MEDIA_LAYER_GZIP, "digest",
	                                        code_out.digest, "size", (json_int_t)code_out.size));
	kiln_layer_out_release(&code_out);
	kiln_tar_entry_release(&code);

	if (with_recipe) {
		struct kiln_tar_entry w;
		source_entry(&w, "model.bin", 20000);
		struct kiln_layer_options wopt = {.mtime = 0, .fd = -1, .compression = KILN_COMPRESS_NONE};
		struct kiln_layer_out w_out = {0};
		cr_assert_eq(kiln_layer_write(&w_out, &w, 1, &wopt, NULL), 0);
		cr_assert_eq(kiln_store_recipe_put(store, w_out.recipe, NULL), 0);
		image_add(w_out.digest, w_out.size);
		json_array_append_new(layers,
		                      json_pack("{s:s,s:s,s:I}", "mediaType", KILN_MEDIA_LAYER, "digest",
		                                w_out.digest, "size", (json_int_t)w_out.size));
		kiln_layer_out_release(&w_out);
		kiln_tar_entry_release(&w);
	}

	json_t *m = json_pack("{s:i,s:s,s:{s:s,s:s,s:I},s:o}", "schemaVersion", 2, "mediaType",
	                      KILN_MEDIA_MANIFEST, "config", "mediaType", KILN_MEDIA_CONFIG, "digest",
	                      config_digest, "size", (json_int_t)strlen(config), "layers", layers);
	char *text = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	cr_assert_eq(kiln_store_blob_put(store, text, strlen(text), image.digest[0], NULL), 0);
	image.size[0] = strlen(text);
	free(text);
}

static uint64_t image_bytes(void)
{
	uint64_t n = 0;
	for (size_t i = 0; i < image.n; i++)
		n += image.size[i];
	return n;
}

static void export_ok(const char *dest, const char *tag, uint64_t *written)
{
	struct kiln_error *err = NULL;
	int rc = kiln_export(store, image.digest[0], dest, tag, written, NULL, &err);
	cr_assert_eq(rc, 0, "export to '%s': %s", dest, err ? err->message : "");
}

/* The number of entries (other than . and ..) in DIR. */
static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "cannot open %s", dir);
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* The digest the ref.name TAG points at in INDEX, or NULL; *count gets the entries with that name. */
static const char *index_lookup(json_t *index, const char *tag, size_t *count)
{
	const char *found = NULL;
	*count = 0;
	json_t *list = json_object_get(index, "manifests");
	cr_assert(json_is_array(list));
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *e = json_array_get(list, i);
		const char *name = json_string_value(
		    json_object_get(json_object_get(e, "annotations"), "org.opencontainers.image.ref.name"));
		if (name && strcmp(name, tag) == 0) {
			(*count)++;
			found = json_string_value(json_object_get(e, "digest"));
		}
	}
	return found;
}

/* Check that DIR/index.json names TAG once, pointing at the image's manifest. */
static void assert_layout_tag(const char *dir, const char *tag)
{
	char path[8192];
	snprintf(path, sizeof(path), "%s/index.json", dir);
	json_error_t je;
	json_t *index = json_load_file(path, 0, &je);
	cr_assert_not_null(index, "%s: %s", path, je.text);
	cr_assert_eq(json_integer_value(json_object_get(index, "schemaVersion")), 2);
	size_t count = 0;
	const char *d = index_lookup(index, tag, &count);
	cr_assert_eq(count, 1, "tag '%s' appears %zu times", tag, count);
	cr_assert_str_eq(d, image.digest[0]);
	json_decref(index);
}

/* Check that DIR is an OCI layout holding every blob of the image, each named by its sha256. */
static void assert_layout_blobs(const char *dir)
{
	char path[8192];
	snprintf(path, sizeof(path), "%s/oci-layout", dir);
	char *layout = NULL;
	cr_assert_eq(kiln_read_file(&layout, NULL, path, 1024, NULL), 0);
	json_t *j = json_loads(layout, 0, NULL);
	cr_assert_str_eq(json_string_value(json_object_get(j, "imageLayoutVersion")), "1.0.0");
	json_decref(j);
	free(layout);

	for (size_t i = 0; i < image.n; i++) {
		snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, kiln_digest_hex(image.digest[i]));
		struct stat st;
		cr_assert_eq(stat(path, &st), 0, "blob %s is missing", image.digest[i]);
		cr_assert_eq((uint64_t)st.st_size, image.size[i]);
		char got[KILN_DIGEST_LEN];
		cr_assert_eq(kiln_digest_file(got, path, NULL), 0);
		cr_assert_str_eq(got, image.digest[i], "the file named %s holds %s", image.digest[i], got);
	}
	snprintf(path, sizeof(path), "%s/blobs/sha256", dir);
	cr_assert_eq(count_entries(path), image.n, "no temporary file is left in %s", path);
}

Test(export, layout_has_oci_layout_index_and_every_blob)
{
	put_image(false);
	const char *dir = in_tmp(1, "out");
	char dest[4200];
	snprintf(dest, sizeof(dest), "oci:%s:t1", dir);
	uint64_t written = 0;
	export_ok(dest, NULL, &written);
	assert_layout_blobs(dir);
	assert_layout_tag(dir, "t1");
	cr_assert_eq(written, image_bytes());
	cr_assert_eq(count_entries(dir), 3, "oci-layout, index.json and blobs only");
}

Test(export, layout_produces_recipe_blobs_from_their_sources)
{
	put_image(true);
	cr_assert_eq(image.n, 4);
	cr_assert_null(kiln_store_blob_path(store, image.digest[3]), "the weight layer is a recipe");
	const char *dir = in_tmp(1, "out");
	char dest[4200];
	snprintf(dest, sizeof(dest), "oci:%s:t1", dir);
	export_ok(dest, NULL, NULL);
	assert_layout_blobs(dir);
	assert_layout_tag(dir, "t1");
}

Test(export, second_export_with_other_tag_keeps_the_first)
{
	put_image(false);
	const char *dir = in_tmp(1, "out");
	char dest[4200];
	snprintf(dest, sizeof(dest), "oci:%s:t1", dir);
	export_ok(dest, NULL, NULL);
	snprintf(dest, sizeof(dest), "oci:%s", dir);
	uint64_t written = 99;
	export_ok(dest, "t2", &written);
	cr_assert_eq(written, 0, "blobs already there are not written again");
	assert_layout_tag(dir, "t1");
	assert_layout_tag(dir, "t2");
	snprintf(dest, sizeof(dest), "oci:%s:t1", dir);
	export_ok(dest, NULL, NULL);
	assert_layout_tag(dir, "t1"); /* still once */
	assert_layout_blobs(dir);
}

Test(export, tag_in_destination_wins_and_latest_is_the_default)
{
	put_image(false);
	const char *dir = in_tmp(1, "out");
	char dest[4200];
	snprintf(dest, sizeof(dest), "oci:%s:fromdest", dir);
	export_ok(dest, "fromarg", NULL);
	assert_layout_tag(dir, "fromdest");
	snprintf(dest, sizeof(dest), "oci:%s", in_tmp(1, "out2"));
	export_ok(dest, NULL, NULL);
	assert_layout_tag(in_tmp(1, "out2"), "latest");
}

/* One entry read back from a tar. */
struct tar_entry {
	char name[256];
	char type;
	char *data;
	size_t len;
};

/* Read every entry of the tar at PATH with libarchive (data kept for regular files). */
static size_t read_tar(const char *path, struct tar_entry *out, size_t max)
{
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	cr_assert_eq(archive_read_open_filename(a, path, 65536), ARCHIVE_OK, "%s", archive_error_string(a));
	struct archive_entry *e;
	size_t n = 0;
	int r;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		cr_assert_lt(n, max);
		struct tar_entry *t = &out[n++];
		snprintf(t->name, sizeof(t->name), "%s", archive_entry_pathname(e));
		t->type = archive_entry_filetype(e) == AE_IFDIR   ? 'd'
		          : archive_entry_filetype(e) == AE_IFREG ? 'f'
		                                                  : '?';
		t->len = (size_t)archive_entry_size(e);
		t->data = malloc(t->len + 1);
		cr_assert_eq(archive_read_data(a, t->data, t->len), (la_ssize_t)t->len);
		t->data[t->len] = '\0';
	}
	cr_assert_eq(r, ARCHIVE_EOF, "%s", archive_error_string(a));
	archive_read_free(a);
	return n;
}

static const struct tar_entry *find_entry(const struct tar_entry *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(v[i].name);
		if (strcmp(v[i].name, name) == 0 ||
		    (len > 0 && v[i].name[len - 1] == '/' && strncmp(v[i].name, name, len - 1) == 0 &&
		     name[len - 1] == '\0'))
			return &v[i];
	}
	return NULL;
}

Test(export, archive_is_a_tar_of_an_oci_layout)
{
	put_image(true);
	const char *file = in_tmp(1, "image.tar");
	char dest[4200];
	snprintf(dest, sizeof(dest), "oci-archive:%s:t1", file);
	uint64_t written = 0;
	export_ok(dest, NULL, &written);
	cr_assert_eq(written, image_bytes());
	cr_assert_eq(count_entries(tmp), 4, "home, the two sources and image.tar: no temporary file left");

	struct tar_entry entries[16];
	size_t n = read_tar(file, entries, 16);
	const struct tar_entry *layout = find_entry(entries, n, "oci-layout");
	cr_assert_not_null(layout);
	cr_assert_eq(layout->type, 'f');
	cr_assert_not_null(strstr(layout->data, "\"imageLayoutVersion\""));

	const struct tar_entry *index = find_entry(entries, n, "index.json");
	cr_assert_not_null(index);
	json_t *j = json_loads(index->data, 0, NULL);
	cr_assert_not_null(j);
	size_t count = 0;
	const char *d = index_lookup(j, "t1", &count);
	cr_assert_eq(count, 1);
	cr_assert_str_eq(d, image.digest[0]);
	json_decref(j);

	for (size_t i = 0; i < image.n; i++) {
		char name[128];
		snprintf(name, sizeof(name), "blobs/sha256/%s", kiln_digest_hex(image.digest[i]));
		const struct tar_entry *b = find_entry(entries, n, name);
		cr_assert_not_null(b, "%s is missing from the archive", name);
		cr_assert_eq(b->type, 'f');
		cr_assert_eq(b->len, image.size[i]);
		char got[KILN_DIGEST_LEN];
		kiln_digest_buffer(got, b->data, b->len);
		cr_assert_str_eq(got, image.digest[i]);
	}
	for (size_t i = 0; i < n; i++)
		free(entries[i].data);
}

Test(export, check_accepts_oci_and_oci_archive_destinations)
{
	cr_assert_eq(kiln_export_check("oci:/tmp/x", NULL), 0);
	cr_assert_eq(kiln_export_check("oci:/tmp/x:tag", NULL), 0);
	cr_assert_eq(kiln_export_check("oci:relative/dir", NULL), 0);
	cr_assert_eq(kiln_export_check("oci-archive:/tmp/x.tar:t", NULL), 0);
}

Test(export, check_rejects_other_transports_and_empty_paths)
{
	static const char *const bad[] = {"docker://x", "oci:", "oci::tag", "oci-archive:", "dir:/tmp/x", ""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct kiln_error *err = NULL;
		int rc = kiln_export_check(bad[i], &err);
		cr_assert_not_null(err, "'%s' was accepted", bad[i]);
		cr_assert_eq(err->code, KILN_EINVAL);
		char quoted[64];
		snprintf(quoted, sizeof(quoted), "'%s'", bad[i]);
		cr_assert_not_null(strstr(err->message, quoted), "message: %s", err->message);
		kiln_error_free(err);
		cr_assert_eq(rc, KILN_EINVAL, "'%s': returned %d, documented KILN_EINVAL", bad[i], rc);
	}
}

Test(export, unknown_manifest_fails_and_writes_nothing)
{
	const char *dir = in_tmp(1, "out");
	char dest[4200];
	snprintf(dest, sizeof(dest), "oci:%s:t1", dir);
	struct kiln_error *err = NULL;
	const char *d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
	cr_assert_lt(kiln_export(store, d, dest, NULL, NULL, NULL, &err), 0);
	cr_assert_not_null(err);
	cr_assert_not_null(strstr(err->message, d), "message: %s", err->message);
	kiln_error_free(err);
	cr_assert_eq(access(dir, F_OK), -1);
}
