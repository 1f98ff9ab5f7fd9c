/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cmd_predict.c: `kiln predict`: build the image (a directory) or take it from the store (a reference),
 * run its shim (predict_runtime.c), send one prediction with the inputs typed by the model's schema
 * (shim/inputs.c) and show the answer as `cog predict` does: text printed, files written.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/predict.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "pkg/build.h"
#include "pkg/pull.h"
#include "registry/reference.h"
#include "pkg/store.h"
#include "registry/client.h"
#include "shim/shim.h"

enum { OPT_INPUT_JSON = 2000, OPT_RUNTIME, OPT_SETUP_TIMEOUT };

struct predict_args {
	struct strlist {
		char **v;
		size_t n;
	} inputs, envs;
	const char *input_json;
	const char *output;
	const char *setup_timeout;
	enum predict_runtime_kind runtime;
	bool json;
};

static int push_arg(struct strlist *l, const char *arg)
{
	char **v = realloc(l->v, (l->n + 1) * sizeof(*v));
	if (!v)
		return -1;
	l->v = v;
	l->v[l->n++] = (char *)arg;
	return 0;
}

static int predict_option(int c, const char *arg, void *ctx)
{
	struct predict_args *a = ctx;
	switch (c) {
	case 'i':
		return push_arg(&a->inputs, arg) < 0 ? CLI_EXIT_STATUS(EXIT_FAIL) : 0;
	case 'e':
		if (!strchr(arg, '=') || *arg == '=')
			return cli_usage_error("-e %s: give NAME=VALUE", arg);
		return push_arg(&a->envs, arg) < 0 ? CLI_EXIT_STATUS(EXIT_FAIL) : 0;
	case 'o':
		a->output = arg;
		return 0;
	case CLI_OPT_JSON:
		a->json = true;
		return 0;
	case OPT_INPUT_JSON:
		a->input_json = arg;
		return 0;
	case OPT_SETUP_TIMEOUT: {
		char *end = NULL;
		double d = strtod(arg, &end);
		if (!*arg || *end || d < 0)
			return cli_usage_error("--setup-timeout: '%s' is not a number of seconds", arg);
		a->setup_timeout = arg;
		return 0;
	}
	case OPT_RUNTIME:
		if (strcmp(arg, "auto") == 0)
			a->runtime = RUNTIME_AUTO;
		else if (strcmp(arg, "native") == 0)
			a->runtime = RUNTIME_NATIVE;
		else if (strcmp(arg, "bwrap") == 0)
			a->runtime = RUNTIME_BWRAP;
		else
			return cli_usage_error("--runtime: '%s' is not auto, native or bwrap", arg);
		return 0;
	default:
		return -1;
	}
}

/* The JSON object in FILE ("-": standard input). */
static int read_input_json(json_t **out, const char *file, struct kiln_error **err)
{
	json_error_t jerr;
	*out = strcmp(file, "-") == 0 ? json_loadf(stdin, 0, &jerr) : json_load_file(file, 0, &jerr);
	if (!*out)
		return kiln_error_set(err, KILN_EINVAL, "--input-json %s: line %d: %s", file, jerr.line,
		                      jerr.text);
	if (!json_is_object(*out)) {
		json_decref(*out);
		return kiln_error_set(err, KILN_EINVAL, "--input-json %s: not a JSON object", file);
	}
	return 0;
}

/* The image: built from DIR, or REF from the store (pulled when it is not there). Its manifest digest
 * into DIGEST and its config into *config. */
static int resolve_image(struct kiln_store *s, const char *target, struct kiln_registry_options *ropt,
                         char digest[KILN_DIGEST_LEN], json_t **config, struct kiln_error **err)
{
	struct stat st;
	if (stat(target, &st) == 0 && S_ISDIR(st.st_mode)) {
		struct kiln_build_options opt = {.dir = target, .cancel = &cli_interrupted, .registry = ropt};
		struct kiln_build_result *r = NULL;
		if (kiln_build(&r, s, &opt, err) < 0)
			return kiln_error_wrap(err, "cannot build '%s'", target);
		snprintf(digest, KILN_DIGEST_LEN, "%s", r->manifest_digest);
		cli_manifest_warnings(&r->warnings);
		infof("built %s (%s) in %.2fs", r->familiar, r->manifest_digest, r->seconds);
		kiln_build_result_free(r);
	} else {
		struct kiln_reference *ref = NULL;
		if (kiln_reference_parse(&ref, target, err) < 0)
			return kiln_error_wrap(err, "'%s' is neither a directory nor an image reference",
			                       target);
		_cleanup_free_ char *full = kiln_reference_string(ref);
		kiln_reference_free(ref);
		struct kiln_error *e = NULL;
		if (kiln_store_resolve(s, full, digest, &e) < 0) {
			kiln_error_free(e);
			struct kiln_pull_result *r = NULL;
			if (kiln_pull(&r, s, target, NULL, ropt, err) < 0)
				return kiln_error_wrap(err, "cannot pull '%s'", target);
			snprintf(digest, KILN_DIGEST_LEN, "%s", r->manifest_digest);
			kiln_pull_result_free(r);
		}
	}
	json_auto_t *m = NULL;
	if (kiln_store_json_read(s, digest, 4 << 20, &m, err) < 0)
		return -1;
	const char *cdigest = json_string_value(json_object_get(json_object_get(m, "config"), "digest"));
	if (!cdigest)
		return kiln_error_set(err, KILN_EINVAL, "image %s: its manifest names no config", digest);
	return kiln_store_json_read(s, cdigest, 16 << 20, config, err) < 0
	           ? kiln_error_wrap(err, "image %s: cannot read its config", digest)
	           : 0;
}

/* The model's schema: the image's run.cog.openapi_schema label, else the running shim's /openapi.json. */
static json_t *schema_of(const json_t *config, const struct predict_runtime *rt, struct kiln_error **err)
{
	const char *label = json_string_value(json_object_get(
	    json_object_get(json_object_get(config, "config"), "Labels"), "run.cog.openapi_schema"));
	json_t *doc = label ? json_loads(label, 0, NULL) : NULL;
	if (doc)
		return doc;
	return predict_get_json(rt->url, "/openapi.json", &doc, err) == 0 ? doc : NULL;
}

/* Where output N (of COUNT; -1: the only one) goes: -o PATH, else output.EXT; for lists, NAME.N.EXT. */
static char *output_path(const char *o, const char *ext, long n)
{
	char *path = NULL;
	if (n < 0)
		return o ? strdup(o) : (asprintf(&path, "output%s", ext) < 0 ? NULL : path);
	const char *base = o ? o : "output";
	const char *slash = strrchr(base, '/');
	const char *dot = strrchr(slash ? slash + 1 : base, '.');
	size_t stem = dot && o ? (size_t)(dot - base) : strlen(base);
	const char *suffix = dot && o ? dot : ext;
	return asprintf(&path, "%.*s.%ld%s", (int)stem, base, n, suffix) < 0 ? NULL : path;
}

/* Write the data: URI VALUE to PATH and say so; 0 or -1. */
static int save(const char *value, const char *path, struct kiln_error **err)
{
	if (shim_files_save_data_uri(value, path, err) < 0)
		return kiln_error_wrap(err, "cannot write the output to '%s'", path);
	infof("written to %s", path);
	return 0;
}

static bool is_data_uri(const json_t *v)
{
	return json_is_string(v) && strncmp(json_string_value(v), "data:", 5) == 0;
}

/* Show a succeeded prediction's output: files written, text printed, anything else as JSON. */
static int show_output(const json_t *out, const char *o, struct kiln_error **err)
{
	if (is_data_uri(out)) {
		_cleanup_free_ char *path =
		    output_path(o, shim_files_data_uri_extension(json_string_value(out)), -1);
		return path ? save(json_string_value(out), path, err)
		            : kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	if (json_is_array(out) && json_array_size(out) > 0 && is_data_uri(json_array_get(out, 0))) {
		size_t i;
		json_t *v;
		json_array_foreach(out, i, v)
		{
			if (!is_data_uri(v)) {
				char *text = json_dumps(v, JSON_ENCODE_ANY);
				printf("%s\n", text ? text : "");
				free(text);
				continue;
			}
			_cleanup_free_ char *path =
			    output_path(o, shim_files_data_uri_extension(json_string_value(v)), (long)i);
			if (!path || save(json_string_value(v), path, err) < 0)
				return path ? -1 : kiln_error_set(err, KILN_EFAIL, "out of memory");
		}
		return 0;
	}
	if (json_is_string(out)) {
		const char *s = json_string_value(out);
		printf("%s%s", s, *s && s[strlen(s) - 1] == '\n' ? "" : "\n");
	} else if (!json_is_null(out)) {
		json_dumpf(out, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
		fputc('\n', stdout);
	}
	return 0;
}

/* A prediction id, as the shim's own: 32 hex digits. */
static void new_id(char out[33])
{
	unsigned char r[16] = {0};
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (unsigned char)rand();
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(out + 2 * i, 3, "%02x", r[i]);
}

int cmd_predict(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"input", required_argument, NULL, 'i'},
	    {"input-json", required_argument, NULL, OPT_INPUT_JSON},
	    {"output", required_argument, NULL, 'o'},
	    {"env", required_argument, NULL, 'e'},
	    {"json", no_argument, NULL, CLI_OPT_JSON},
	    {"runtime", required_argument, NULL, OPT_RUNTIME},
	    {"setup-timeout", required_argument, NULL, OPT_SETUP_TIMEOUT},
	    CLI_REGISTRY_LONG,
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	struct kiln_registry_options ropt;
	kiln_registry_options_init(&ropt);
	ropt.cancel = &cli_interrupted;
	struct predict_args a = {.runtime = RUNTIME_AUTO};
	/* the inputs are this user's own, and the shim listens on loopback for this one prediction: file
	 * inputs may come from this machine's servers (-e KILN_ALLOW_PRIVATE_URLS=0 after it refuses them) */
	if (push_arg(&a.envs, "KILN_ALLOW_PRIVATE_URLS=1") < 0)
		return EXIT_FAIL;
	int first, status = cli_parse(argc, argv, ":i:o:e:" CLI_COMMON_SHORT, longopts, &ropt, predict_option,
	                              &a, 0, 1, &first);
	if (status >= 0) {
		free(a.inputs.v);
		free(a.envs.v);
		return status;
	}
	const char *target = first < argc ? argv[first] : ".";
	cli_catch_signals();

	_cleanup_error_ struct kiln_error *err = NULL;
	json_t *base = NULL, *config = NULL, *schema = NULL, *input = NULL, *response = NULL;
	struct kiln_store *store = NULL;
	struct predict_runtime rt = {.pid = -1};
	char digest[KILN_DIGEST_LEN];
	bool failed = true;
	status = EXIT_FAIL;
	if (a.input_json && read_input_json(&base, a.input_json, &err) < 0)
		goto out;
	if (kiln_store_open(&store, NULL, &err) < 0 ||
	    resolve_image(store, target, &ropt, digest, &config, &err) < 0)
		goto out;
	/* inputs typed by the label's schema are checked before anything runs */
	schema = schema_of(config, &rt, NULL);
	if (schema && shim_inputs_from_args(&input, schema, base, a.inputs.v, a.inputs.n, &err) < 0)
		goto out;
	if (predict_runtime_start(&rt, store, digest, config, a.runtime, a.envs.v, a.envs.n, a.setup_timeout,
	                          &ropt, &err) < 0 ||
	    predict_wait_ready(&rt, cli.quiet, &err) < 0)
		goto out;
	if (!schema) { /* a native predictor's schema comes from the library: ask the shim */
		if (!(schema = schema_of(config, &rt, &err)) ||
		    shim_inputs_from_args(&input, schema, base, a.inputs.v, a.inputs.n, &err) < 0)
			goto out;
	}
	char id[33];
	new_id(id);
	if (predict_send(rt.url, id, input, cli.quiet, &response, &err) < 0)
		goto out;
	failed = false;
	const char *st = json_string_value(json_object_get(response, "status"));
	if (a.json) {
		json_dumpf(response, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	}
	if (!st || strcmp(st, "succeeded") != 0) {
		const char *why = json_string_value(json_object_get(response, "error"));
		kiln_error_set(&err, KILN_EFAIL, "the prediction %s%s%s", st ? st : "did not finish",
		               why ? ": " : "", why ? why : "");
		goto out;
	}
	if (!a.json && show_output(json_object_get(response, "output"), a.output, &err) < 0)
		goto out;
	status = EXIT_OK;
out:
	predict_runtime_stop(&rt, failed && rt.log);
	if (status != EXIT_OK)
		status = cli_fail(err);
	if (cli_interrupted && status != EXIT_OK)
		status = EXIT_INTR;
	json_decref(base);
	json_decref(config);
	json_decref(schema);
	json_decref(input);
	json_decref(response);
	kiln_store_free(store);
	free(a.inputs.v);
	free(a.envs.v);
	return status;
}
