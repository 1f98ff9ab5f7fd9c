/* SPDX-License-Identifier: Apache-2.0 */
/* recipe.c: streaming, checking and the JSON form of blob recipes (literal bytes + source files). */
#include "layers/recipe.h"
#include "common/cleanup.h"
#include "layers/reader.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STREAM_CHUNK (1024 * 1024)

/* The message for a source file that is no longer what the recipe recorded. */
static int source_changed(struct kiln_error **err, const char *path)
{
	return kiln_error_set(err, KILN_ECHANGED,
	                      "'%s' changed since the image was built (run 'kiln build' again)", path);
}

int kiln_recipe_stream(const struct kiln_recipe *r, kiln_write_fn write, void *ctx, struct kiln_error **err)
{
	struct kiln_blob_reader *rd = NULL;
	int rc = kiln_blob_reader_open(&rd, NULL, r, err);
	if (rc < 0)
		return rc;
	rc = kiln_blob_reader_pump(rd, write, ctx, err);
	kiln_blob_reader_free(rd);
	return rc;
}

int kiln_recipe_check(const struct kiln_recipe *r, struct kiln_error **err)
{
	for (size_t i = 0; i < r->nsegs; i++) {
		const struct kiln_segment *seg = &r->segs[i];
		if (seg->source == NULL)
			continue;
		struct stat sb;
		struct kiln_stat_fp fp;
		if (stat(seg->source, &sb) < 0)
			return kiln_error_errno(err, errno, "cannot stat '%s'", seg->source);
		kiln_stat_fp_from(&fp, &sb);
		if (!S_ISREG(sb.st_mode) || fp.size != seg->size || !kiln_stat_fp_equal(&fp, &seg->fp))
			return source_changed(err, seg->source);
	}
	return 0;
}

/* Base64 (RFC 4648, padded) of LEN bytes; NULL when memory runs out or LEN is too large. */
static char *base64_encode(const unsigned char *data, size_t len)
{
	if (len > (size_t)INT_MAX / 4 * 3 - 3)
		return NULL;
	char *out = malloc((len + 2) / 3 * 4 + 1);
	if (out == NULL)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

/*
 * Decode padded base64 text S into *out and *len. Only the base64 alphabet is accepted, with '=' padding
 * at the end; EVP_DecodeBlock counts padding as decoded zero bytes, which are dropped here.
 */
static int base64_decode(unsigned char **out, size_t *len, const char *s)
{
	size_t n = strlen(s);
	if (n % 4 != 0 || n > INT_MAX)
		return -1;
	size_t pad = 0;
	if (n > 0 && s[n - 1] == '=')
		pad = n > 1 && s[n - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < n - pad; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/'))
			return -1;
	}
	unsigned char *buf = malloc(n / 4 * 3 + 1);
	if (buf == NULL)
		return -1;
	int got = n ? EVP_DecodeBlock(buf, (const unsigned char *)s, (int)n) : 0;
	if (got < 0 || (size_t)got != n / 4 * 3) {
		free(buf);
		return -1;
	}
	*out = buf;
	*len = (size_t)got - pad;
	return 0;
}

/* The JSON object of one segment, or NULL when memory runs out. */
static json_t *segment_to_json(const struct kiln_segment *seg)
{
	if (seg->source == NULL) {
		_cleanup_free_ char *b64 = base64_encode(seg->data, seg->len);
		return b64 ? json_pack("{s:s}", "data", b64) : NULL;
	}
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "file", seg->source, "size", (json_int_t)seg->size,
	                 "dev", (json_int_t)seg->fp.dev, "ino", (json_int_t)seg->fp.ino, "mtime_ns",
	                 (json_int_t)seg->fp.mtime_ns, "ctime_ns", (json_int_t)seg->fp.ctime_ns);
}

int kiln_recipe_to_json(json_t **out, const struct kiln_recipe *r, struct kiln_error **err)
{
	json_t *segs = json_array();
	if (segs == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	for (size_t i = 0; i < r->nsegs; i++) {
		if (json_array_append_new(segs, segment_to_json(&r->segs[i])) < 0) {
			json_decref(segs);
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		}
	}
	/* "o" steals segs, also when json_pack fails */
	json_t *j =
	    json_pack("{s:s, s:I, s:o}", "digest", r->digest, "size", (json_int_t)r->size, "segments", segs);
	if (j == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	*out = j;
	return 0;
}

/* Fetch the integer field KEY of O (at least MIN) into *v; WHERE names the object in messages. */
static int get_int(json_int_t *v, const json_t *o, const char *key, json_int_t min, const char *where,
                   struct kiln_error **err)
{
	json_t *f = json_object_get(o, key);
	if (f == NULL)
		return kiln_error_set(err, KILN_EINVAL, "invalid recipe: %smissing field '%s'", where, key);
	if (!json_is_integer(f) || json_integer_value(f) < min)
		return kiln_error_set(err, KILN_EINVAL, "invalid recipe: %sfield '%s' is not a valid integer",
		                      where, key);
	*v = json_integer_value(f);
	return 0;
}

/* Fetch the string field KEY of O into *v (borrowed); WHERE names the object in messages. */
static int get_string(const char **v, const json_t *o, const char *key, const char *where,
                      struct kiln_error **err)
{
	json_t *f = json_object_get(o, key);
	if (f == NULL)
		return kiln_error_set(err, KILN_EINVAL, "invalid recipe: %smissing field '%s'", where, key);
	if (!json_is_string(f) || json_string_length(f) != strlen(json_string_value(f)))
		return kiln_error_set(err, KILN_EINVAL, "invalid recipe: %sfield '%s' is not a string", where,
		                      key);
	*v = json_string_value(f);
	return 0;
}

/* Fill SEG from the JSON segment J (number I, for messages). */
static int segment_from_json(struct kiln_segment *seg, const json_t *j, size_t i, struct kiln_error **err)
{
	char where[64];
	snprintf(where, sizeof(where), "segment %zu: ", i);
	if (!json_is_object(j))
		return kiln_error_set(err, KILN_EINVAL, "invalid recipe: %snot an object", where);
	bool has_data = json_object_get(j, "data") != NULL, has_file = json_object_get(j, "file") != NULL;
	if (has_data == has_file)
		return kiln_error_set(err, KILN_EINVAL,
		                      "invalid recipe: %sneeds exactly one of 'data' and 'file'", where);
	const char *s;
	int r;
	if (has_data) {
		if ((r = get_string(&s, j, "data", where, err)) < 0)
			return r;
		if (base64_decode(&seg->data, &seg->len, s) < 0)
			return kiln_error_set(err, KILN_EINVAL,
			                      "invalid recipe: %sfield 'data' is not base64", where);
		return 0;
	}
	json_int_t size, dev, ino, mtime, ctime;
	if ((r = get_string(&s, j, "file", where, err)) < 0 ||
	    (r = get_int(&size, j, "size", 0, where, err)) < 0 ||
	    (r = get_int(&dev, j, "dev", INT64_MIN, where, err)) < 0 ||
	    (r = get_int(&ino, j, "ino", INT64_MIN, where, err)) < 0 ||
	    (r = get_int(&mtime, j, "mtime_ns", INT64_MIN, where, err)) < 0 ||
	    (r = get_int(&ctime, j, "ctime_ns", INT64_MIN, where, err)) < 0)
		return r;
	if (*s != '/')
		return kiln_error_set(err, KILN_EINVAL,
		                      "invalid recipe: %sfield 'file' is not an absolute path", where);
	if ((seg->source = strdup(s)) == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	seg->size = (uint64_t)size;
	/* dev and ino are stored as signed JSON integers; the cast back restores the unsigned value */
	seg->fp = (struct kiln_stat_fp){(uint64_t)dev, (uint64_t)ino, (uint64_t)size, mtime, ctime};
	return 0;
}

int kiln_recipe_from_json(struct kiln_recipe **out, const json_t *j, struct kiln_error **err)
{
	if (!json_is_object(j))
		return kiln_error_set(err, KILN_EINVAL, "invalid recipe: not a JSON object");
	const char *digest;
	json_int_t size;
	int r;
	if ((r = get_string(&digest, j, "digest", "", err)) < 0 ||
	    (r = get_int(&size, j, "size", 0, "", err)) < 0)
		return r;
	if (!kiln_digest_valid(digest))
		return kiln_error_set(err, KILN_EINVAL,
		                      "invalid recipe: field 'digest' is not a sha256 digest");
	const json_t *segs = json_object_get(j, "segments");
	if (segs == NULL)
		return kiln_error_set(err, KILN_EINVAL, "invalid recipe: missing field 'segments'");
	if (!json_is_array(segs))
		return kiln_error_set(err, KILN_EINVAL, "invalid recipe: field 'segments' is not an array");

	struct kiln_recipe *rec = calloc(1, sizeof(*rec));
	size_t n = json_array_size(segs);
	if (rec == NULL || (rec->segs = calloc(n ? n : 1, sizeof(*rec->segs))) == NULL) {
		kiln_recipe_free(rec);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	memcpy(rec->digest, digest, KILN_DIGEST_LEN);
	rec->size = (uint64_t)size;
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		rec->nsegs = i + 1;
		if ((r = segment_from_json(&rec->segs[i], json_array_get(segs, i), i, err)) < 0) {
			kiln_recipe_free(rec);
			return r;
		}
		uint64_t add = rec->segs[i].source ? rec->segs[i].size : rec->segs[i].len;
		if (add > UINT64_MAX - total) {
			kiln_recipe_free(rec);
			return kiln_error_set(err, KILN_EINVAL, "invalid recipe: segment sizes overflow");
		}
		total += add;
	}
	if (total != rec->size) {
		kiln_recipe_free(rec);
		return kiln_error_set(err, KILN_EINVAL,
		                      "invalid recipe: segments add up to %llu bytes, not %llu",
		                      (unsigned long long)total, (unsigned long long)size);
	}
	*out = rec;
	return 0;
}

void kiln_recipe_free(struct kiln_recipe *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nsegs; i++) {
		free(r->segs[i].data);
		free(r->segs[i].source);
	}
	free(r->segs);
	free(r);
}

int kiln_write_to_fd(void *ctx, const void *data, size_t len, struct kiln_error **err)
{
	if (kiln_write_all(*(int *)ctx, data, len) < 0)
		return kiln_error_errno(err, errno, "cannot write");
	return 0;
}
