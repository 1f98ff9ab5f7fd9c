/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cmd_predict.c: `kiln predict`: build the image (a directory) or take it from the store (a reference),
 * run its shim (predict_runtime.c), send one prediction with the inputs typed by the model's schema
 * (shim/inputs.c) and show the answer as `cog predict` does: text printed, files written. `kiln train` is
 * the same for a training (the trainer's TrainingInput, POST /trainings, the output to "weights").
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/predict.h"
#include "common/json.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "pkg/build.h"
#include "pkg/pull.h"
#include "registry/reference.h"
#include "pkg/store.h"
#include "registry/client.h"
#include "shim/shim.h"

enum { OPT_INPUT_JSON = 2000, OPT_COG_JSON, OPT_FORMAT, OPT_RUNTIME, OPT_SETUP_TIMEOUT };

/* What --json INPUT says when INPUT is not an input object: kiln's own JSON output is --format json now. */
#define JSON_MOVED                                                                                           \
	"give a JSON object, @FILE or @- (the inputs, as cog predict --json takes them); for the whole "     \
	"response as JSON, kiln's own output, give --format json"

struct predict_args {
	struct strlist {
		char **v;
		size_t n;
	} inputs, envs;
	const char *input_json;
	const char *cog_json; /* --json INPUT */
	const char *output;
	const char *file; /* -f: the manifest */
	const char *setup_timeout;
	enum predict_runtime_kind runtime;
	bool json; /* --format json */
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
	case 'f':
		a->file = arg;
		return 0;
	case OPT_FORMAT:
		return cli_format_option(&a->json, arg);
	case OPT_COG_JSON:
		if (!predict_json_arg_ok(arg))
			return cli_usage_error("--json '%s': " JSON_MOVED, arg);
		a->cog_json = arg;
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
		return predict_runtime_option(&a->runtime, arg);
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

int predict_resolve_image(struct kiln_store *s, const char *target, const char *file,
                          struct kiln_registry_options *ropt, char digest[KILN_DIGEST_LEN], json_t **config,
                          struct kiln_error **err)
{
	struct stat st;
	if (stat(target, &st) == 0 && S_ISDIR(st.st_mode)) {
		struct kiln_build_options opt = {
		    .dir = target, .file = file, .cancel = &cli_interrupted, .registry = ropt};
		struct kiln_build_result *r = NULL;
		if (kiln_build(&r, s, &opt, err) < 0)
			return kiln_error_wrap(err, "cannot build '%s'", target);
		snprintf(digest, KILN_DIGEST_LEN, "%s", r->manifest_digest);
		cli_manifest_warnings(&r->warnings);
		infof("built %s (%s) in %.2fs", r->familiar, r->manifest_digest, r->seconds);
		kiln_build_result_free(r);
	} else {
		if (file)
			return kiln_error_set(
			    err, KILN_EINVAL,
			    "-f %s: a manifest is for building a project directory, and '%s' is "
			    "no directory",
			    file, target);
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

/* Go's path.Ext: the final element's suffix from its last dot, or "". */
static const char *path_ext(const char *p)
{
	const char *slash = strrchr(p, '/');
	const char *dot = strrchr(slash ? slash + 1 : p, '.');
	return dot ? dot : p + strlen(p);
}

/*
 * Where the output goes, as cog predict settles it before the prediction: -o PATH (a leading '@' and "~/"
 * understood), a directory PATH holding FALLBACK's name, else FALLBACK ("output"; "output.json" for --json
 * INPUT) in the current directory; its directory must be writable. A new string into *out.
 */
static int output_destination(char **out, const char *o, const char *fallback, struct kiln_error **err)
{
	*out = NULL;
	if (o && *o == '@')
		o++;
	const char *home = getenv("HOME");
	bool fell_back = !o || !*o;
	const char *p = fell_back ? fallback : o;
	_cleanup_free_ char *path = NULL;
	if (strncmp(p, "~/", 2) == 0 && home ? asprintf(&path, "%s/%s", home, p + 2) < 0
	                                     : !(path = strdup(p)))
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct stat st;
	if (stat(path, &st) < 0) {
		const char *slash = strrchr(path, '/');
		_cleanup_free_ char *dir =
		    slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
		if (!dir || access(dir, W_OK) < 0)
			return kiln_error_set(
			    err, KILN_EINVAL,
			    "Output path is not writable: Output directory is not writable: %s",
			    dir ? dir : path);
	} else if (S_ISDIR(st.st_mode)) {
		if (fell_back)
			return kiln_error_set(
			    err, KILN_EINVAL,
			    "Output path is not writable: Default output name \"%s\" conflicts "
			    "with directory, provide --output",
			    path);
		if (access(path, W_OK) < 0)
			return kiln_error_errno(err, errno, "Output path is not writable: %s", path);
		char *joined = NULL;
		if (asprintf(&joined, "%s/%s", path, fallback) < 0)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		free(path);
		path = joined;
	} else if (access(path, W_OK) < 0) {
		return kiln_error_errno(err, errno, "Output path is not writable: %s", path);
	}
	*out = steal_pointer(&path);
	return 0;
}

/* Write LEN bytes of DATA to PATH and say so; 0 or -1. */
static int write_output(const char *path, const char *data, size_t len, struct kiln_error **err)
{
	FILE *f = fopen(path, "we");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		int e = errno;
		if (f)
			fclose(f);
		return kiln_error_errno(err, e, "Failed to write output: '%s'", path);
	}
	infof("Written output to: %s", path);
	return 0;
}

/* Write the data: URI VALUE where cog predict would for DEST (its extension kept unless absent or a
 * number, ".0"; then the MIME type's), say so, and give the path written into *written. */
static int save(const char *value, const char *dest, char **written, struct kiln_error **err)
{
	const char *ext = path_ext(dest);
	bool numeric = ext[0] == '.' && ext[1] && strspn(ext + 1, "0123456789") == strlen(ext + 1);
	char *path = NULL;
	if (asprintf(&path, "%s%s", dest, !*ext || numeric ? shim_files_data_uri_extension(value) : "") < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (shim_files_save_data_uri(value, path, err) < 0) {
		free(path);
		return kiln_error_wrap(err, "Failed to write output");
	}
	infof("Written output to: %s", path);
	*written = path;
	return 0;
}

static bool is_data_uri(const json_t *v)
{
	return json_is_string(v) && strncmp(json_string_value(v), "data:", 5) == 0;
}

/* The schema of the job's output: PATH's (/predictions, /trainings) 200 response's "output" property, or
 * NULL. */
static const json_t *output_schema(const json_t *doc, const char *path)
{
	const json_t *post = json_object_get(json_object_get(json_object_get(doc, "paths"), path), "post");
	const json_t *ok = json_object_get(json_object_get(post, "responses"), "200");
	const json_t *media = json_object_get(json_object_get(ok, "content"), "application/json");
	const json_t *props = shim_schema_get(doc, json_object_get(media, "schema"), "properties");
	return json_object_get(props, "output");
}

static bool schema_is(const json_t *doc, const json_t *s, const char *type)
{
	const char *t = json_string_value(shim_schema_get(doc, s, "type"));
	return t && strcmp(t, type) == 0;
}

/* A file output: a string of format "uri" (Path, File); without a schema, a data: URI. */
static bool is_file_schema(const json_t *doc, const json_t *s, const json_t *value)
{
	if (!s)
		return is_data_uri(value);
	const char *format = json_string_value(shim_schema_get(doc, s, "format"));
	return schema_is(doc, s, "string") && format && strcmp(format, "uri") == 0;
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A copy of V whose objects have their keys in order, as Go writes a decoded JSON value. */
static json_t *sorted_copy(const json_t *v)
{
	if (json_is_array(v)) {
		json_t *a = json_array();
		for (size_t i = 0; i < json_array_size(v); i++)
			json_array_append_new(a, sorted_copy(json_array_get(v, i)));
		return a;
	}
	if (!json_is_object(v))
		return json_deep_copy(v);
	size_t n = json_object_size(v), i = 0;
	const char **keys = calloc(n + 1, sizeof(*keys));
	const char *key;
	json_t *m, *o = json_object();
	json_object_foreach((json_t *)v, key, m) if (keys) keys[i++] = key;
	if (keys)
		qsort(keys, n, sizeof(*keys), key_cmp);
	for (i = 0; keys && i < n; i++)
		json_object_set_new(o, keys[i], sorted_copy(json_object_get(v, keys[i])));
	free(keys);
	return o;
}

/*
 * Write a succeeded prediction's file outputs as cog predict does, to DEST (a Path) or DEST.N (a list of
 * Paths), and replace each in *out with the path written. 0, or -1.
 */
static int save_files(json_t **out, const json_t *doc, const json_t *oschema, const char *dest,
                      struct kiln_error **err)
{
	char *written = NULL;
	if (is_file_schema(doc, oschema, *out) && json_is_string(*out)) {
		if (save(json_string_value(*out), dest, &written, err) < 0)
			return -1;
		json_decref(*out);
		*out = json_string(written);
		free(written);
		return 0;
	}
	const json_t *items = oschema ? shim_schema_get(doc, oschema, "items") : NULL;
	bool files = oschema ? schema_is(doc, oschema, "array") && is_file_schema(doc, items, NULL)
	                     : json_array_size(*out) > 0 && is_data_uri(json_array_get(*out, 0));
	if (!files || !json_is_array(*out))
		return 0;
	const char *ext = path_ext(dest);
	for (size_t i = 0; i < json_array_size(*out); i++) {
		const json_t *v = json_array_get(*out, i);
		_cleanup_free_ char *item = NULL;
		if (asprintf(&item, "%.*s.%zu%s", (int)(ext - dest), dest, i, ext) < 0)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		if (!is_data_uri(v))
			continue;
		if (save(json_string_value(v), item, &written, err) < 0)
			return kiln_error_wrap(err, "Failed to write output %zu", i);
		json_array_set_new(*out, i, json_string(written));
		free(written);
	}
	return 0;
}

/*
 * Show a succeeded prediction's output OUT (its files already written by save_files) as cog predict does:
 * files said by save_files; a string printed, or written to DEST when TO_FILE (-o); anything else as JSON
 * (2 spaces, keys in order), printed or written to DEST.
 */
static int show_output(const json_t *out, const json_t *doc, const json_t *oschema, const char *dest,
                       bool to_file, struct kiln_error **err)
{
	if (json_is_null(out)) {
		warnf("No output generated");
		return 0;
	}
	const json_t *items = oschema ? shim_schema_get(doc, oschema, "items") : NULL;
	if (is_file_schema(doc, oschema, NULL) ||
	    (oschema && schema_is(doc, oschema, "array") && is_file_schema(doc, items, NULL)))
		return 0;
	if (json_is_string(out)) {
		const char *s = json_string_value(out);
		if (to_file)
			return write_output(dest, s, strlen(s), err);
		printf("%s\n", s);
		return 0;
	}
	/* keys in order at every level, as Go writes a decoded JSON value */
	if (to_file) {
		_cleanup_free_ char *text = kiln_json_dumps(out, JSON_INDENT(2) | JSON_SORT_KEYS);
		return text ? write_output(dest, text, strlen(text), err)
		            : kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	kiln_json_dumpf(out, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
	fputc('\n', stdout);
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

/* DOC (taken) as the trainer's inputs see it (shim_schema_for_training), or NULL when the model has none. */
static json_t *training_view(json_t *doc, struct kiln_error **err)
{
	json_t *view = shim_schema_for_training(doc);
	json_decref(doc);
	if (!view)
		kiln_error_set(err, KILN_EINVAL,
		               "the model has no trainer: name one with train: FILE.py:NAME in kiln.yaml");
	return view;
}

/* kiln predict's and kiln train's options (cmd_run tells a prediction's line by them too). */
static const struct option longopts[] = {
    {"input", required_argument, NULL, 'i'},
    {"input-json", required_argument, NULL, OPT_INPUT_JSON},
    {"output", required_argument, NULL, 'o'},
    {"env", required_argument, NULL, 'e'},
    {"file", required_argument, NULL, 'f'},
    {"json", required_argument, NULL, OPT_COG_JSON},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"runtime", required_argument, NULL, OPT_RUNTIME},
    {"setup-timeout", required_argument, NULL, OPT_SETUP_TIMEOUT},
    CLI_REGISTRY_LONG,
    CLI_COMMON_LONG,
    {NULL, 0, NULL, 0},
};
#define SHORTOPTS ":i:o:e:f:" CLI_COMMON_SHORT

/* kiln predict, or kiln train when TRAIN. */
static int run_job(int argc, char **argv, bool train)
{
	const char *path = train ? "/trainings" : "/predictions";
	struct kiln_registry_options ropt;
	kiln_registry_options_init(&ropt);
	ropt.cancel = &cli_interrupted;
	struct predict_args a = {.runtime = RUNTIME_AUTO};
	/* `kiln predict --json` was kiln's flag: at the end of the line it has no INPUT to take */
	if (argc > 1 && strcmp(argv[argc - 1], "--json") == 0)
		return cli_usage_error("--json needs INPUT: " JSON_MOVED);
	/* the inputs are this user's own, and the shim listens on loopback for this one prediction: file
	 * inputs may come from this machine's servers (-e KILN_ALLOW_PRIVATE_URLS=0 after it refuses them) */
	if (push_arg(&a.envs, "KILN_ALLOW_PRIVATE_URLS=1") < 0)
		return EXIT_FAIL;
	int first,
	    status = cli_parse(argc, argv, SHORTOPTS, longopts, &ropt, predict_option, &a, 0, 1, &first);
	if (status == -1 && a.cog_json && a.input_json)
		status = cli_usage_error("--json and --input-json both give the input object: give one");
	if (status == -1 && a.json && a.output)
		status = cli_usage_error("-o: --format json prints the whole response and writes no output");
	if (status >= 0) {
		free(a.inputs.v);
		free(a.envs.v);
		return status;
	}
	const char *target = cli_project_dir(first < argc ? argv[first] : NULL, a.file);
	cli_catch_signals();

	_cleanup_error_ struct kiln_error *err = NULL;
	_cleanup_free_ char *dest = NULL;
	json_t *base = NULL, *config = NULL, *schema = NULL, *input = NULL, *response = NULL;
	struct kiln_store *store = NULL;
	struct predict_runtime rt = {.pid = -1};
	char digest[KILN_DIGEST_LEN];
	bool failed = true, said = false;
	struct stat tst;
	status = EXIT_FAIL;
	if (a.cog_json && a.inputs.n > 0) {
		kiln_error_set(&err, KILN_EINVAL,
		               "Must use one of --json or --input to provide model inputs");
		goto out;
	}
	if (strchr(target, '=') && stat(target, &tst) < 0) {
		kiln_error_set(&err, KILN_EINVAL, "Invalid image name '%s'. Did you forget `-i`?", target);
		goto out;
	}
	if ((a.input_json && read_input_json(&base, a.input_json, &err) < 0) ||
	    (a.cog_json && predict_json_read(&base, a.cog_json, &err) < 0))
		goto out;
	/* cog train's -o has "weights" for its default: as if given */
	const char *fallback = a.cog_json ? "output.json" : train ? "weights" : "output";
	if (!a.json &&
	    output_destination(&dest, a.output || !train ? a.output : fallback, fallback, &err) < 0)
		goto out;
	if (dest && a.cog_json && strcmp(path_ext(dest), ".json") != 0)
		warnf("--output value does not have a .json suffix: %s",
		      strrchr(dest, '/') ? strrchr(dest, '/') + 1 : dest);
	if (kiln_store_open(&store, NULL, &err) < 0 ||
	    predict_resolve_image(store, target, a.file, &ropt, digest, &config, &err) < 0)
		goto out;
	/* inputs checked against the label's schema before anything runs */
	schema = schema_of(config, &rt, NULL);
	if (schema && train && !(schema = training_view(schema, &err)))
		goto out;
	if (schema && predict_inputs_prepare(&input, schema, base, a.cog_json != NULL, a.inputs.v, a.inputs.n,
	                                     &err) < 0)
		goto out;
	if (predict_runtime_start(&rt, store, digest, config, a.runtime, a.envs.v, a.envs.n, a.setup_timeout,
	                          &ropt, &err) < 0 ||
	    predict_wait_ready(&rt, cli.quiet, &err) < 0)
		goto out;
	if (!schema) { /* a native predictor's schema comes from the library: ask the shim */
		if (!(schema = schema_of(config, &rt, &err)) ||
		    (train && !(schema = training_view(schema, &err))) ||
		    predict_inputs_prepare(&input, schema, base, a.cog_json != NULL, a.inputs.v, a.inputs.n,
		                           &err) < 0)
			goto out;
	}
	char id[33];
	new_id(id);
	if (predict_send(rt.url, path, id, input, cli.quiet, &response, &err) < 0)
		goto out;
	failed = false;
	const char *st = json_string_value(json_object_get(response, "status"));
	bool ok = st && strcmp(st, "succeeded") == 0;
	if (a.json) {
		kiln_json_dumpf(response, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	}
	const json_t *oschema = output_schema(schema, path);
	json_t *output = json_incref(json_object_get(response, "output"));
	/* --json INPUT: Cog's {status, output, error}, file outputs written beside DEST and named by path */
	if (a.cog_json) {
		_cleanup_free_ char *stem = strndup(dest, (size_t)(path_ext(dest) - dest));
		int rc = ok && output && !json_is_null(output) && stem
		             ? save_files(&output, schema, oschema, stem, &err)
		             : 0;
		const char *why = json_string_value(json_object_get(response, "error"));
		json_auto_t *j =
		    json_pack("{s:s, s:o, s:s}", "status", st ? st : "", "output",
		              output ? sorted_copy(output) : json_null(), "error", why ? why : "");
		json_decref(output);
		_cleanup_free_ char *text = j && rc == 0 ? kiln_json_dumps(j, JSON_INDENT(2)) : NULL;
		if (rc < 0 || (!text && kiln_error_set(&err, KILN_EFAIL, "out of memory")))
			goto out;
		if (a.output ? write_output(dest, text, strlen(text), &err) < 0 : printf("%s\n", text) < 0)
			goto out;
		said = !ok; /* Cog: the failure is in the JSON, and the exit status 1 */
		status = ok ? EXIT_OK : EXIT_FAIL;
		goto out;
	}
	if (!ok) {
		json_decref(output);
		const char *why = json_string_value(json_object_get(response, "error"));
		kiln_error_set(&err, KILN_EFAIL, "%s failed with status \"%s\": %s",
		               train ? "Training" : "Prediction", st ? st : "unknown", why ? why : "");
		goto out;
	}
	int rc = a.json ? 0
	         : save_files(&output, schema, oschema, dest, &err) < 0
	             ? -1
	             : show_output(output, schema, oschema, dest, a.output != NULL, &err);
	json_decref(output);
	if (rc < 0)
		goto out;
	status = EXIT_OK;
out:
	predict_runtime_stop(&rt, failed && rt.log);
	if (status != EXIT_OK && !said)
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

int cmd_predict(int argc, char **argv)
{
	return run_job(argc, argv, false);
}

int cmd_train(int argc, char **argv)
{
	return run_job(argc, argv, true);
}

/* Whether ARG ("-i", "--input", "--input=VALUE"; as Cog reads them, dashes aside) is one of kiln predict's
 * options (longopts, SHORTOPTS); *takes: it takes the next word as its value. */
static bool predict_flag(const char *arg, bool *takes)
{
	const char *name = arg + strspn(arg, "-");
	size_t n = strcspn(name, "=");
	const char *o = n == 1 && *name != ':' ? strchr(SHORTOPTS, *name) : NULL;
	if (o) {
		*takes = o[1] == ':' && !name[n];
		return true;
	}
	for (const struct option *l = longopts; l->name; l++)
		if (strlen(l->name) == n && strncmp(name, l->name, n) == 0)
			return *takes = l->has_arg == required_argument && !name[n], true;
	return false;
}

/* `kiln run` as Cog 0.22's `cog run` tells its two meanings apart: a prediction (`kiln run [DIR | REF] -i
 * ...`), or a command, as the older `cog run COMMAND` was (now kiln exec, with a warning): an option
 * predict does not take, one word that is a shell, Python or pip, or more than one word is a command. */
int cmd_run(int argc, char **argv)
{
	size_t words = 0;
	const char *word = NULL;
	bool unknown = false;
	for (int i = 1; i < argc && !unknown; i++) {
		if (argv[i][0] != '-' || !argv[i][1]) {
			words++;
			word = argv[i];
			continue;
		}
		bool takes = false;
		if (strcmp(argv[i], "--") == 0 || !predict_flag(argv[i], &takes))
			unknown = true;
		else if (takes)
			i++;
	}
	static const char *const commands[] = {"bash",    "sh",  "zsh",  "python", "python3", "ipython",
	                                       "jupyter", "pip", "pip3", "uv",     NULL};
	bool command = unknown || words > 1;
	for (size_t k = 0; words == 1 && commands[k]; k++)
		command = command || strcmp(word, commands[k]) == 0;
	if (!command)
		return run_job(argc, argv, false);
	warnf("\"kiln run <command>\" is deprecated, use \"kiln exec <command>\"");
	return cmd_exec(argc, argv);
}
