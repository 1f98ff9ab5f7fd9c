/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_inspect.c: `kiln inspect`: an image's layers (kind, media type, size, digest, files), labels, hints. */
#include "cli/cli.h"
#include "common/json.h"
#include "common/cleanup.h"
#include "layers/archive.h"
#include "pkg/build.h"
#include "pkg/image.h"
#include "pkg/weights_registry.h"
#include "pkg/store.h"
#include "registry/reference.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void add_file(void *ctx, const char *name, char type, uint64_t size)
{
	if (type != 'd')
		json_array_append_new(ctx, json_string(name));
}

/* A compressed layer (weights are uncompressed layers, but for the small one of a registry-weights image). */
static bool is_gzip(const json_t *d)
{
	const char *mt = json_string_value(json_object_get(d, "mediaType"));
	return mt && strcmp(mt, KILN_MEDIA_LAYER_GZIP) == 0;
}

/* A label that holds JSON text, decoded (NULL when absent or not JSON). */
static json_t *label_json(json_t *labels, const char *name)
{
	const char *text = json_string_value(json_object_get(labels, name));
	return text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
}

/*
 * Describe the image: its layers with their files (weight layers from the weight index label, layers
 * stored whole by reading their tar), its labels and its serving hints.
 */
static json_t *describe(struct kiln_store *s, const char *ref, const char *digest, struct kiln_error **err)
{
	_cleanup_free_ char *mtext = NULL, *ctext = NULL;
	size_t mlen, clen;
	if (kiln_store_blob_read(s, digest, &mtext, &mlen, 4 << 20, err) < 0)
		return NULL;
	json_t *manifest = json_loadb(mtext, mlen, 0, NULL);
	const char *cdigest =
	    json_string_value(json_object_get(json_object_get(manifest, "config"), "digest"));
	if (cdigest == NULL || kiln_store_blob_read(s, cdigest, &ctext, &clen, 16 << 20, err) < 0) {
		json_decref(manifest);
		if (cdigest == NULL)
			kiln_error_set(err, KILN_EIO, "manifest %s has no config", digest);
		return NULL;
	}
	json_t *config = json_loadb(ctext, clen, 0, NULL);
	json_t *labels = json_object_get(json_object_get(config, "config"), "Labels");
	json_t *weights = label_json(labels, KILN_LABEL_WEIGHTS);
	json_t *layers = json_array();
	json_t *ml = json_object_get(manifest, "layers");
	uint64_t total = 0;
	for (size_t i = 0; i < json_array_size(ml); i++) {
		json_t *d = json_array_get(ml, i);
		const char *ld = json_string_value(json_object_get(d, "digest"));
		json_t *ann = json_object_get(d, "annotations");
		const char *kind = json_string_value(json_object_get(ann, KILN_ANNOTATION_KIND));
		json_t *files = json_array();
		for (size_t w = 0; w < json_array_size(weights); w++) {
			json_t *f = json_array_get(weights, w);
			const char *wl = json_string_value(json_object_get(f, "layer"));
			if (wl && ld && strcmp(wl, ld) == 0)
				json_array_append(files, json_object_get(f, "path"));
		}
		_cleanup_free_ char *path = ld && kind && (strcmp(kind, "weights") != 0 || is_gzip(d))
		                                ? kiln_store_blob_path(s, ld)
		                                : NULL;
		if (path)
			kiln_archive_list(path, add_file, files, NULL);
		total += (uint64_t)json_integer_value(json_object_get(d, "size"));
		json_t *o = json_pack("{s:s,s:O,s:O,s:O,s:o}", "kind", kind ? kind : "base", "media_type",
		                      json_object_get(d, "mediaType"), "digest", json_object_get(d, "digest"),
		                      "size", json_object_get(d, "size"), "files", files);
		const char *title = json_string_value(json_object_get(ann, "org.opencontainers.image.title"));
		if (title)
			json_object_set_new(o, "title", json_string(title));
		json_array_append_new(layers, o);
	}
	json_t *serve = label_json(labels, KILN_LABEL_SERVE);
	json_t *out =
	    json_pack("{s:s,s:s,s:s,s:I,s:O?,s:o,s:o}", "reference", ref, "digest", digest, "config", cdigest,
	              "size", (json_int_t)total, "created", json_object_get(config, "created"), "layers",
	              layers, "labels", labels ? json_incref(labels) : json_object());
	json_object_set_new(out, "serve", serve ? serve : json_object());
	json_object_set_new(out, "weights", weights ? weights : json_array());
	/* where the weights are: layers of the image, or blobs in its repository the shim fetches */
	json_t *remote = NULL;
	if (kiln_weights_registry_of(&remote, config, err) < 0) {
		json_decref(out);
		json_decref(manifest);
		json_decref(config);
		return NULL;
	}
	json_object_set_new(out, "weights_mode", json_string(remote ? "registry" : "image"));
	if (remote) {
		json_t *env = json_object_get(json_object_get(config, "config"), "Env");
		size_t e;
		json_t *v;
		json_array_foreach(env, e, v)
		{
			const char *kv = json_string_value(v);
			if (kv && strncmp(kv, "KILN_WEIGHTS_SOURCE=", 20) == 0)
				json_object_set_new(out, "weights_source", json_string(kv + 20));
		}
		json_object_set_new(out, "registry_weights", remote);
	}
	json_t *base = label_json(labels, KILN_LABEL_BASE);
	if (json_is_object(base))
		json_object_set_new(out, "base", base);
	else
		json_decref(base);
	json_decref(manifest);
	json_decref(config);
	return out;
}

static void print_text(json_t *d)
{
	char size[32];
	cli_human_size(size, (uint64_t)json_integer_value(json_object_get(d, "size")));
	printf("%s\n  digest   %s\n  size     %s\n  created  %s\n",
	       json_string_value(json_object_get(d, "reference")),
	       json_string_value(json_object_get(d, "digest")), size,
	       json_string_value(json_object_get(d, "created")) ?: "-");
	json_t *base = json_object_get(d, "base");
	if (base) {
		const char *reason = json_string_value(json_object_get(base, "reason"));
		const char *python = json_string_value(json_object_get(base, "python"));
		printf("  base     %s", json_string_value(json_object_get(base, "name")) ?: "-");
		if (reason)
			printf(" (%s)", reason);
		if (python)
			printf(", Python %s", python);
		printf("\n");
	}
	json_t *remote = json_object_get(d, "registry_weights");
	printf("  weights  %s", json_string_value(json_object_get(d, "weights_mode")));
	if (remote)
		printf(": %zu blobs fetched from %s at start", json_array_size(remote),
		       json_string_value(json_object_get(d, "weights_source")) ?: "KILN_WEIGHTS_SOURCE");
	printf("\n");
	printf("\nlayers:\n  %-8s %-44s %10s  %-19s  %s\n", "KIND", "MEDIA TYPE", "SIZE", "DIGEST", "FILES");
	json_t *l;
	size_t i;
	json_array_foreach(json_object_get(d, "layers"), i, l)
	{
		cli_human_size(size, (uint64_t)json_integer_value(json_object_get(l, "size")));
		json_t *files = json_object_get(l, "files");
		printf("  %-8s %-44s %10s  %.19s  ", json_string_value(json_object_get(l, "kind")),
		       json_string_value(json_object_get(l, "media_type")), size,
		       json_string_value(json_object_get(l, "digest")));
		size_t n = json_array_size(files);
		for (size_t k = 0; k < n && k < 3; k++)
			printf("%s%s", k ? ", " : "", json_string_value(json_array_get(files, k)));
		if (n > 3)
			printf(" (+%zu more)", n - 3);
		if (n == 0)
			printf("-");
		printf("\n");
	}
	if (remote) {
		printf("\nweights in the registry:\n  %-44s %10s  %s\n", "PATH", "SIZE", "DIGEST");
		json_array_foreach(remote, i, l)
		{
			cli_human_size(size, (uint64_t)json_integer_value(json_object_get(l, "size")));
			printf("  %-44s %10s  %.19s\n", json_string_value(json_object_get(l, "path")), size,
			       json_string_value(json_object_get(l, "digest")));
		}
	}
	printf("\nlabels:\n");
	const char *key;
	json_t *v;
	json_object_foreach(json_object_get(d, "labels"), key, v)
	{
		const char *s = json_string_value(v);
		size_t len = s ? strlen(s) : 0;
		printf("  %s = %.*s%s\n", key, len > 100 ? 100 : (int)len, s ? s : "",
		       len > 100 ? "..." : "");
	}
	json_t *serve = json_object_get(d, "serve");
	if (json_object_size(serve)) {
		printf("\nserve:\n");
		json_object_foreach(serve, key, v)
		{
			char *text = kiln_json_dumps(v, JSON_COMPACT);
			printf("  %-18s %s\n", key, text ? text : "");
			free(text);
		}
	}
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, CLI_OPT_JSON},
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	bool json = false;
	int first, status = cli_parse(argc, argv, ":" CLI_COMMON_SHORT, longopts, NULL, cli_json_option,
	                              &json, 0, 1, &first);
	if (status >= 0)
		return status;
	const char *target = first < argc ? argv[first] : ".";

	_cleanup_error_ struct kiln_error *err = NULL;
	_cleanup_free_ char *tag = NULL;
	struct stat st;
	if (stat(target, &st) == 0 && S_ISDIR(st.st_mode)) {
		struct kiln_manifest *m = NULL;
		if (kiln_manifest_load(&m, target, NULL, &err) < 0)
			return cli_fail(err);
		cli_manifest_warnings(&m->warnings);
		tag = kiln_build_manifest_tag(m, target);
		kiln_manifest_free(m);
		if (tag == NULL) {
			errorf("out of memory");
			return EXIT_FAIL;
		}
	} else {
		tag = strdup(target);
	}
	struct kiln_reference *ref = NULL;
	if (kiln_reference_parse(&ref, tag, &err) < 0)
		return cli_fail(err);
	_cleanup_free_ char *full = kiln_reference_string(ref);
	_cleanup_free_ char *familiar = kiln_reference_familiar(ref);
	kiln_reference_free(ref);
	struct kiln_store *store = NULL;
	if (kiln_store_open(&store, NULL, &err) < 0)
		return cli_fail(err);
	char digest[KILN_DIGEST_LEN];
	json_t *d = NULL;
	if (kiln_store_resolve(store, full, digest, &err) == 0)
		d = describe(store, familiar, digest, &err);
	kiln_store_free(store);
	if (d == NULL) {
		kiln_error_wrap(&err, "cannot inspect '%s'", target);
		return cli_fail(err);
	}
	if (json) {
		kiln_json_dumpf(d, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	} else {
		print_text(d);
	}
	json_decref(d);
	return EXIT_OK;
}
