/* SPDX-License-Identifier: Apache-2.0 */
/* tests/layers/recipe.c: recipes reproduce uncompressed layers, survive JSON, and notice changed sources. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/fs.h"
#include "layers/digest.h"
#include "layers/recipe.h"
#include "layers/tar.h"

#define MIB (1024 * 1024)

static char *tmp;

static void make_tmp(void)
{
	tmp = strdup("/tmp/kiln-recipe-XXXXXX");
	cr_assert(mkdtemp(tmp) != NULL);
}

static void remove_tmp(void)
{
	kiln_remove_tree(tmp, NULL);
	free(tmp);
}

TestSuite(recipe, .init = make_tmp, .fini = remove_tmp);

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

static struct kiln_tar_entry file_entry(const char *name, const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "cannot stat %s", path);
	struct kiln_tar_entry e = {
	    .name = strdup(name), .type = KILN_TAR_FILE, .mode = 0644, .source = strdup(path)};
	e.size = (uint64_t)st.st_size;
	kiln_stat_fp_from(&e.fp, &st);
	return e;
}

/* A layer of a 3 MiB weight file, a small file and a symlink, written to layer.tar; *r is its recipe. */
static void make_layer(struct kiln_layer_out *out)
{
	write_pattern(in_tmp(0, "model.bin"), 3 * MIB, 1);
	write_pattern(in_tmp(1, "config.json"), 333, 2);
	struct kiln_tar_entry e[] = {
	    file_entry("weights/model.bin", in_tmp(0, "model.bin")),
	    file_entry("weights/config.json", in_tmp(1, "config.json")),
	    {.name = strdup("weights/latest"),
	     .type = KILN_TAR_SYMLINK,
	     .mode = 0777,
	     .link_target = strdup("model.bin")},
	};
	int fd = open(in_tmp(2, "layer.tar"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert(fd >= 0);
	struct kiln_layer_options opt = {.mtime = 0, .fd = fd};
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_layer_write(out, e, 3, &opt, &err), 0, "%s", err ? err->message : "");
	cr_assert_not_null(out->recipe);
	close(fd);
	for (size_t i = 0; i < 3; i++)
		kiln_tar_entry_release(&e[i]);
}

/* kiln_write_fn that appends to the fd in ctx. */
static int write_to_fd(void *ctx, const void *data, size_t len, struct kiln_error **err)
{
	if (kiln_write_all(*(int *)ctx, data, len) < 0)
		return kiln_error_errno(err, errno, "cannot write");
	return 0;
}

/* Stream R into the file PATH; returns the code, *err holds a failure. */
static int stream_to(const struct kiln_recipe *r, const char *path, struct kiln_error **err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert(fd >= 0);
	int rc = kiln_recipe_stream(r, write_to_fd, &fd, err);
	close(fd);
	return rc;
}

static bool same_bytes(const char *a, const char *b)
{
	char *da = NULL, *db = NULL;
	size_t la, lb;
	cr_assert_eq(kiln_read_file(&da, &la, a, 64 * MIB, NULL), 0);
	cr_assert_eq(kiln_read_file(&db, &lb, b, 64 * MIB, NULL), 0);
	bool same = la == lb && memcmp(da, db, la) == 0;
	free(da);
	free(db);
	return same;
}

Test(recipe, stream_reproduces_the_uncompressed_layer_byte_for_byte)
{
	struct kiln_layer_out out;
	make_layer(&out);
	const struct kiln_recipe *r = out.recipe;
	cr_expect_str_eq(r->digest, out.digest);
	cr_expect_eq(r->size, out.size);

	size_t literal = 0, files = 0;
	uint64_t total = 0;
	for (size_t i = 0; i < r->nsegs; i++) {
		if (r->segs[i].source) {
			files++;
			total += r->segs[i].size;
		} else {
			literal += r->segs[i].len;
			total += r->segs[i].len;
		}
		if (i > 0)
			cr_expect(r->segs[i].source || r->segs[i - 1].source,
			          "two literal segments in a row");
	}
	cr_expect_eq(files, 2);
	cr_expect_eq(total, r->size);
	cr_expect_lt(literal, 4096, "literal bytes: %zu", literal);

	struct kiln_error *err = NULL;
	cr_assert_eq(stream_to(r, in_tmp(3, "streamed.tar"), &err), 0, "%s", err ? err->message : "");
	cr_expect(same_bytes(in_tmp(2, "layer.tar"), in_tmp(3, "streamed.tar")));
	cr_expect_eq(kiln_recipe_check(r, NULL), 0);
	kiln_layer_out_release(&out);
}

Test(recipe, layer_written_nowhere_has_the_same_recipe)
{
	struct kiln_layer_out out;
	make_layer(&out);
	struct kiln_tar_entry e[] = {
	    file_entry("weights/model.bin", in_tmp(0, "model.bin")),
	    file_entry("weights/config.json", in_tmp(1, "config.json")),
	    {.name = strdup("weights/latest"),
	     .type = KILN_TAR_SYMLINK,
	     .mode = 0777,
	     .link_target = strdup("model.bin")},
	};
	struct kiln_layer_options opt = {.fd = -1};
	struct kiln_layer_out nowhere;
	cr_assert_eq(kiln_layer_write(&nowhere, e, 3, &opt, NULL), 0);
	cr_expect_str_eq(nowhere.digest, out.digest);
	cr_assert_eq(nowhere.recipe->nsegs, out.recipe->nsegs);
	for (size_t i = 0; i < out.recipe->nsegs; i++)
		cr_expect_eq(nowhere.recipe->segs[i].len, out.recipe->segs[i].len);
	kiln_layer_out_release(&nowhere);
	kiln_layer_out_release(&out);
	for (size_t i = 0; i < 3; i++)
		kiln_tar_entry_release(&e[i]);
}

Test(recipe, json_round_trip_keeps_every_segment)
{
	struct kiln_layer_out out;
	make_layer(&out);
	json_t *j = NULL;
	cr_assert_eq(kiln_recipe_to_json(&j, out.recipe, NULL), 0);
	char *text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	json_error_t jerr;
	j = json_loads(text, 0, &jerr);
	cr_assert_not_null(j, "%s", jerr.text);
	struct kiln_recipe *back = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_recipe_from_json(&back, j, &err), 0, "%s", err ? err->message : "");
	json_decref(j);
	free(text);

	const struct kiln_recipe *r = out.recipe;
	cr_expect_str_eq(back->digest, r->digest);
	cr_expect_eq(back->size, r->size);
	cr_assert_eq(back->nsegs, r->nsegs);
	for (size_t i = 0; i < r->nsegs; i++) {
		const struct kiln_segment *a = &r->segs[i], *b = &back->segs[i];
		if (a->source == NULL) {
			cr_assert_null(b->source);
			cr_assert_eq(b->len, a->len);
			cr_expect_eq(memcmp(a->data, b->data, a->len), 0, "segment %zu differs", i);
		} else {
			cr_assert_str_eq(b->source, a->source);
			cr_expect_eq(b->size, a->size);
			cr_expect(kiln_stat_fp_equal(&a->fp, &b->fp), "segment %zu fingerprint differs", i);
		}
	}
	cr_assert_eq(stream_to(back, in_tmp(3, "again.tar"), NULL), 0);
	cr_expect(same_bytes(in_tmp(2, "layer.tar"), in_tmp(3, "again.tar")));
	kiln_recipe_free(back);
	kiln_layer_out_release(&out);
}

/* Parse TEXT as a recipe expected to be rejected; returns the message (caller frees). */
static char *rejected(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	cr_assert_not_null(j, "%s: %s", text, jerr.text);
	struct kiln_recipe *r = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_recipe_from_json(&r, j, &err), KILN_EINVAL, "accepted: %s", text);
	json_decref(j);
	char *msg = strdup(err->message);
	kiln_error_free(err);
	return msg;
}

#define D               "\"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\""
#define FILE_SEG(extra) "{\"file\":\"/w\",\"size\":3,\"dev\":1,\"ino\":2,\"mtime_ns\":3" extra "}"

Test(recipe, json_with_missing_or_bad_fields_is_rejected_naming_the_field)
{
	struct {
		const char *text, *message;
	} cases[] = {
	    {"[]", "invalid recipe: not a JSON object"},
	    {"{\"size\":0,\"segments\":[]}", "invalid recipe: missing field 'digest'"},
	    {"{\"digest\":\"sha256:abc\",\"size\":0,\"segments\":[]}",
	     "invalid recipe: field 'digest' is not a sha256 digest"},
	    {"{\"digest\":" D ",\"segments\":[]}", "invalid recipe: missing field 'size'"},
	    {"{\"digest\":" D ",\"size\":-1,\"segments\":[]}",
	     "invalid recipe: field 'size' is not a valid integer"},
	    {"{\"digest\":" D ",\"size\":0}", "invalid recipe: missing field 'segments'"},
	    {"{\"digest\":" D ",\"size\":0,\"segments\":{}}",
	     "invalid recipe: field 'segments' is not an array"},
	    {"{\"digest\":" D ",\"size\":3,\"segments\":[" FILE_SEG("") "]}",
	     "invalid recipe: segment 0: missing field 'ctime_ns'"},
	    {"{\"digest\":" D
	     ",\"size\":3,\"segments\":[{\"data\":\"AAA=\"}," FILE_SEG(",\"ctime_ns\":\"x\"") "]}",
	     "invalid recipe: segment 1: field 'ctime_ns' is not a valid integer"},
	    {"{\"digest\":" D ",\"size\":2,\"segments\":[{\"data\":\"AAA\"}]}",
	     "invalid recipe: segment 0: field 'data' is not base64"},
	    {"{\"digest\":" D ",\"size\":2,\"segments\":[{\"data\":\"A=AA\"}]}",
	     "invalid recipe: segment 0: field 'data' is not base64"},
	    {"{\"digest\":" D ",\"size\":2,\"segments\":[{\"data\":7}]}",
	     "invalid recipe: segment 0: field 'data' is not a string"},
	    {"{\"digest\":" D ",\"size\":0,\"segments\":[{}]}",
	     "invalid recipe: segment 0: needs exactly one of 'data' and 'file'"},
	    {"{\"digest\":" D ",\"size\":3,\"segments\":[{\"data\":\"AAA=\",\"file\":\"/w\"}]}",
	     "invalid recipe: segment 0: needs exactly one of 'data' and 'file'"},
	    {"{\"digest\":" D ",\"size\":5,\"segments\":[{\"data\":\"AAA=\"}]}",
	     "invalid recipe: segments add up to 2 bytes, not 5"},
	    {"{\"digest\":" D ",\"size\":3,\"segments\":[" FILE_SEG(",\"ctime_ns\":4") "],\"x\":1}", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (cases[i].message == NULL) {
			/* the valid one: unknown top-level keys are ignored */
			json_t *j = json_loads(cases[i].text, 0, NULL);
			struct kiln_recipe *r = NULL;
			cr_expect_eq(kiln_recipe_from_json(&r, j, NULL), 0, "rejected: %s", cases[i].text);
			cr_expect_eq(r->segs[0].fp.ctime_ns, 4);
			cr_expect_eq(r->segs[0].fp.size, 3);
			kiln_recipe_free(r);
			json_decref(j);
			continue;
		}
		char *msg = rejected(cases[i].text);
		cr_expect_str_eq(msg, cases[i].message);
		free(msg);
	}
}

Test(recipe, base64_padding_is_not_decoded_as_data)
{
	json_t *j = json_loads(
	    "{\"digest\":" D ",\"size\":4,\"segments\":[{\"data\":\"AQ==\"},{\"data\":\"AgME\"}]}", 0, NULL);
	struct kiln_recipe *r = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_recipe_from_json(&r, j, &err), 0, "%s", err ? err->message : "");
	cr_assert_eq(r->segs[0].len, 1);
	cr_expect_eq(r->segs[0].data[0], 1);
	cr_assert_eq(r->segs[1].len, 3);
	cr_expect_eq(memcmp(r->segs[1].data, "\2\3\4", 3), 0);
	kiln_recipe_free(r);
	json_decref(j);
}

/* Expect streaming R to fail because PATH changed since the build. */
static void expect_changed(const struct kiln_recipe *r, const char *path)
{
	struct kiln_error *err = NULL;
	cr_expect_eq(stream_to(r, in_tmp(4, "out.tar"), &err), KILN_ECHANGED);
	char want[4300];
	snprintf(want, sizeof(want), "'%s' changed since the image was built (run 'kiln build' again)", path);
	cr_expect_str_eq(err ? err->message : "", want);
	kiln_error_free(err);
	err = NULL;
	cr_expect_eq(kiln_recipe_check(r, &err), KILN_ECHANGED);
	cr_expect_str_eq(err ? err->message : "", want);
	kiln_error_free(err);
}

/* Overwrite the first bytes of PATH in place (same size). */
static void scribble(const char *path)
{
	int fd = open(path, O_WRONLY);
	cr_assert(fd >= 0);
	cr_assert_eq(pwrite(fd, "scribble", 8, 0), 8);
	close(fd);
}

Test(recipe, stream_detects_a_file_rewritten_with_a_new_mtime)
{
	struct kiln_layer_out out;
	make_layer(&out);
	const char *path = in_tmp(0, "model.bin");
	scribble(path);
	struct timespec t[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = 1000000000}};
	cr_assert_eq(utimensat(AT_FDCWD, path, t, 0), 0);
	expect_changed(out.recipe, path);
	kiln_layer_out_release(&out);
}

Test(recipe, stream_detects_a_file_rewritten_keeping_its_mtime)
{
	struct kiln_layer_out out;
	make_layer(&out);
	const char *path = in_tmp(0, "model.bin");
	struct stat before;
	cr_assert_eq(stat(path, &before), 0);
	usleep(50000); /* let the clock behind ctime move on */
	scribble(path);
	struct timespec t[2] = {before.st_atim, before.st_mtim};
	cr_assert_eq(utimensat(AT_FDCWD, path, t, 0), 0);
	struct stat after;
	cr_assert_eq(stat(path, &after), 0);
	cr_assert_eq(after.st_size, before.st_size);
	cr_assert(after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
	          after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
	expect_changed(out.recipe, path);
	kiln_layer_out_release(&out);
}

Test(recipe, stream_detects_a_truncated_file)
{
	struct kiln_layer_out out;
	make_layer(&out);
	const char *path = in_tmp(0, "model.bin");
	cr_assert_eq(truncate(path, MIB), 0);
	expect_changed(out.recipe, path);
	kiln_layer_out_release(&out);
}

Test(recipe, stream_detects_a_missing_file)
{
	struct kiln_layer_out out;
	make_layer(&out);
	const char *path = in_tmp(1, "config.json");
	cr_assert_eq(unlink(path), 0);
	struct kiln_error *err = NULL;
	cr_expect_eq(stream_to(out.recipe, in_tmp(4, "out.tar"), &err), KILN_ENOTFOUND);
	cr_expect(strstr(err->message, path) != NULL, "%s", err->message);
	kiln_error_free(err);
	kiln_layer_out_release(&out);
}

Test(recipe, stream_detects_content_that_does_not_match_the_digest)
{
	struct kiln_layer_out out;
	make_layer(&out);
	struct kiln_recipe *r = out.recipe;
	cr_assert_null(r->segs[0].source);
	r->segs[0].data[0] ^= 1; /* a recipe damaged on disk */
	struct kiln_error *err = NULL;
	cr_expect_eq(stream_to(r, in_tmp(4, "out.tar"), &err), KILN_ECHANGED);
	char want[200];
	snprintf(want, sizeof(want), "blob %s: content does not match its digest (a source file changed)",
	         r->digest);
	cr_expect_str_eq(err->message, want);
	kiln_error_free(err);
	kiln_layer_out_release(&out);
}

/* kiln_write_fn that fails after the first call. */
static int fail_second(void *ctx, const void *data, size_t len, struct kiln_error **err)
{
	int *calls = ctx;
	if (++*calls > 1)
		return kiln_error_set(err, KILN_EIO, "the receiver hung up");
	return 0;
}

Test(recipe, stream_stops_with_the_writers_error)
{
	struct kiln_layer_out out;
	make_layer(&out);
	int calls = 0;
	struct kiln_error *err = NULL;
	cr_expect_eq(kiln_recipe_stream(out.recipe, fail_second, &calls, &err), KILN_EIO);
	cr_expect_str_eq(err->message, "the receiver hung up");
	cr_expect_eq(calls, 2);
	kiln_error_free(err);
	kiln_layer_out_release(&out);
}
