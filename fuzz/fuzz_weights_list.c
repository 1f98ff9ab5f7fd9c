/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_weights_list.c: libFuzzer target for the two readers of an image's registry weights, which come
 * with the image, maybe anyone's: the shim's weights list (KILN_WEIGHTS_LIST, read as shim/weights.c reads
 * it: kiln_weights_list_blobs) and the weights label of its config (kiln_weights_registry_of, what pull,
 * push, export, predict and inspect read). The input's first byte picks the reader. What either accepts
 * names a blob of the cache by a valid digest at an absolute path without a '..' part.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/scratch.h"
#include "layers/digest.h"
#include "pkg/image.h"
#include "pkg/weights_cache.h"
#include "pkg/weights_registry.h"

static void check_blob(const char *path, const char *digest)
{
	if (path == NULL || path[0] != '/' || !kiln_digest_valid(digest))
		abort();
	size_t len = strlen(path);
	if (path[len - 1] == '/' || strstr(path, "/../") != NULL ||
	    (len >= 3 && strcmp(path + len - 3, "/..") == 0))
		abort();
	char *cache = kiln_weights_cache_path("/cache", digest);
	if (cache == NULL || strncmp(cache, "/cache/sha256/", 14) != 0 || strchr(cache + 14, '/') != NULL)
		abort();
	free(cache);
}

static void list_reader(const char *text, size_t len)
{
	json_t *list = json_loadb(text, len, 0, NULL);
	struct kiln_weight_blob *b = NULL;
	size_t n = 0;
	uint64_t bytes = 0;
	struct kiln_error *err = NULL;
	if (kiln_weights_list_blobs(list, "weights.json", &b, &n, &bytes, &err) < 0) {
		if (err == NULL || b != NULL || n != 0)
			abort();
		kiln_error_free(err);
	} else {
		uint64_t sum = 0;
		for (size_t i = 0; i < n; i++) {
			check_blob(b[i].name, b[i].digest);
			sum += b[i].size;
		}
		if (n != json_array_size(list) || sum != bytes)
			abort();
	}
	free(b);
	json_decref(list);
}

static void label_reader(const char *text)
{
	json_t *config = json_pack("{s:{s:{s:s,s:s}}}", "config", "Labels", KILN_LABEL_WEIGHTS_MODE,
	                           "registry", KILN_LABEL_WEIGHTS, text);
	if (config == NULL)
		return; /* not UTF-8: a label is a JSON string */
	json_t *list = NULL;
	struct kiln_error *err = NULL;
	if (kiln_weights_registry_of(&list, config, &err) < 0) {
		if (err == NULL || list != NULL)
			abort();
		kiln_error_free(err);
	} else {
		size_t i;
		json_t *e;
		json_array_foreach(list, i, e)
		{
			const char *path = json_string_value(json_object_get(e, "path"));
			if (path == NULL || strncmp(path, "/src/", 5) != 0)
				abort();
			check_blob(path, json_string_value(json_object_get(e, "digest")));
		}
	}
	json_decref(list);
	json_decref(config);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char *text = fuzz_strndup(data + 1, size - 1);
	if (data[0] & 1)
		label_reader(text);
	else
		list_reader(text, size - 1);
	free(text);
	return 0;
}
