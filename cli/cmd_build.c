/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_build.c: `kiln build`: build an image from a model project, report it, optionally write it out. */
#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "pkg/build.h"
#include "pkg/export.h"
#include "pkg/store.h"
#include "registry/client.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { OPT_OUTPUT = 2000, OPT_JSON, OPT_PUSH, OPT_PLATFORM, OPT_SECRET, OPT_WEIGHTS };

/* cmd_push.c */
int cli_push_image(struct kiln_store *store, const char *image, int jobs,
                   const struct kiln_registry_options *ropt, bool json, json_t **report);

/* One line per finished layer. */
static void on_layer(void *ctx, const struct kiln_built_layer *l)
{
	char size[32];
	cli_human_size(size, l->size);
	cli_progress_line("%-8s %-40s %10s  %.19s%s", kiln_layer_kind_name(l->kind), l->title ? l->title : "",
	                  size, l->digest, l->cached ? "  (cached)" : "");
}

/* Each environment step as it starts; its output under --progress plain only. */
static void on_step(void *ctx, const char *what)
{
	cli_progress_line("step     %s", what);
}

static void on_output(void *ctx, const char *line)
{
	if (cli.progress == PROGRESS_PLAIN)
		cli_progress_line("  | %s", line);
}

static void on_bytes(void *ctx, uint64_t done, uint64_t total)
{
	cli_progress_live("hashing", done, total);
}

static json_t *report_json(const struct kiln_build_result *r, const char *output, uint64_t exported)
{
	json_t *layers = json_array();
	for (size_t i = 0; i < r->n; i++) {
		const struct kiln_built_layer *l = &r->layers[i];
		json_t *o =
		    json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:b,s:I}", "kind", kiln_layer_kind_name(l->kind),
		              "media_type", l->media_type, "digest", l->digest, "diff_id", l->diff_id, "size",
		              (json_int_t)l->size, "files", (json_int_t)l->files, "cached", l->cached,
		              "bytes_read", (json_int_t)l->bytes_read);
		if (l->title)
			json_object_set_new(o, "title", json_string(l->title));
		json_array_append_new(layers, o);
	}
	json_t *skipped = json_array();
	for (size_t i = 0; i < r->nskipped; i++)
		json_array_append_new(skipped, json_string(r->skipped[i]));
	json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:I,s:o,s:I,s:I,s:f,s:o}", "reference", r->familiar, "name",
	                      r->reference, "digest", r->manifest_digest, "config", r->config_digest, "size",
	                      (json_int_t)r->image_size, "layers", layers, "bytes_hashed",
	                      (json_int_t)r->bytes_hashed, "bytes_written", (json_int_t)r->bytes_written,
	                      "seconds", r->seconds, "skipped", skipped);
	json_object_set_new(j, "runtime", json_boolean(r->runtime));
	json_object_set_new(j, "weights", json_string(r->weights_registry ? "registry" : "image"));
	if (r->base)
		json_object_set_new(j, "base", json_string(r->base));
	json_t *warnings = json_array();
	for (size_t i = 0; i < r->warnings.n; i++)
		json_array_append_new(warnings, json_string(r->warnings.v[i]));
	json_object_set_new(j, "warnings", warnings);
	if (output) {
		json_object_set_new(j, "output", json_string(output));
		json_object_set_new(j, "bytes_exported", json_integer((json_int_t)exported));
	}
	return j;
}

struct build_args {
	struct kiln_build_options *opt;
	const char *output;
	bool json, push;
	struct kiln_secret secrets[32];
	size_t nsecrets;
	char *tmpfiles[32]; /* env= secrets, written to private files and removed at the end */
	size_t ntmp;
};

/* --secret id=ID,src=FILE | id=ID,env=NAME (Docker buildx's syntax): a secret for build.run's mounts. */
static int parse_secret(struct build_args *a, const char *arg)
{
	if (a->nsecrets == 32)
		return cli_usage_error("--secret: at most 32 secrets");
	_cleanup_free_ char *copy = strdup(arg);
	if (copy == NULL)
		return cli_usage_error("out of memory");
	const char *id = NULL, *src = NULL, *env = NULL;
	for (char *save = NULL, *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (eq == NULL)
			return cli_usage_error("--secret '%s': expected id=ID,src=FILE or id=ID,env=NAME",
			                       arg);
		*eq = '\0';
		if (strcmp(kv, "id") == 0)
			id = eq + 1;
		else if (strcmp(kv, "src") == 0 || strcmp(kv, "source") == 0)
			src = eq + 1;
		else if (strcmp(kv, "env") == 0)
			env = eq + 1;
		else if (strcmp(kv, "type") != 0 || strcmp(eq + 1, "file") != 0)
			return cli_usage_error("--secret '%s': unknown key '%s'", arg, kv);
	}
	if (id == NULL || !*id || (src == NULL) == (env == NULL))
		return cli_usage_error("--secret '%s': expected id=ID,src=FILE or id=ID,env=NAME", arg);
	for (size_t i = 0; i < a->nsecrets; i++)
		if (strcmp(a->secrets[i].id, id) == 0)
			return cli_usage_error("--secret: '%s' is given twice", id);
	char *path = NULL;
	if (src) {
		if (access(src, R_OK) < 0)
			return cli_usage_error("--secret '%s': cannot read '%s': %s", id, src,
			                       strerror(errno));
		path = strdup(src);
	} else {
		const char *value = getenv(env);
		if (value == NULL)
			return cli_usage_error("--secret '%s': the environment variable '%s' is not set", id,
			                       env);
		const char *tmpdir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
		if (asprintf(&path, "%s/kiln-secret-XXXXXX", tmpdir) < 0)
			return cli_usage_error("out of memory");
		int fd = mkstemp(path); /* 0600 */
		if (fd < 0 || kiln_write_all(fd, value, strlen(value)) < 0) {
			int e = errno;
			if (fd >= 0) {
				close(fd);
				unlink(path);
			}
			free(path);
			return cli_usage_error("--secret '%s': cannot write a temporary file: %s", id,
			                       strerror(e));
		}
		close(fd);
		a->tmpfiles[a->ntmp++] = strdup(path);
	}
	a->secrets[a->nsecrets++] = (struct kiln_secret){strdup(id), path};
	return 0;
}

static int build_option(int c, const char *arg, void *ctx)
{
	struct build_args *a = ctx;
	switch (c) {
	case 'f':
		a->opt->file = arg;
		return 0;
	case 't':
		a->opt->tag = arg;
		return 0;
	case 'j':
		return cli_parse_jobs(arg, 64, &a->opt->jobs);
	case OPT_OUTPUT:
		a->output = arg;
		return 0;
	case OPT_JSON:
		a->json = true;
		return 0;
	case OPT_PUSH:
		a->push = true;
		return 0;
	case OPT_PLATFORM:
		a->opt->platform = arg;
		return 0;
	case OPT_SECRET:
		return parse_secret(a, arg);
	case OPT_WEIGHTS:
		if (strcmp(arg, "image") != 0 && strcmp(arg, "registry") != 0)
			return cli_usage_error("--weights: expected 'image' or 'registry', got '%s'", arg);
		a->opt->weights = arg;
		return 0;
	}
	return -1;
}

static int build_run(struct kiln_build_options *optp, struct kiln_registry_options *roptp,
                     struct build_args *ap, int argc, char **argv, int first);

int cmd_build(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"file", required_argument, NULL, 'f'},
	    {"tag", required_argument, NULL, 't'},
	    {"output", required_argument, NULL, OPT_OUTPUT},
	    {"jobs", required_argument, NULL, 'j'},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"push", no_argument, NULL, OPT_PUSH},
	    {"platform", required_argument, NULL, OPT_PLATFORM},
	    {"secret", required_argument, NULL, OPT_SECRET},
	    {"weights", required_argument, NULL, OPT_WEIGHTS},
	    CLI_REGISTRY_LONG,
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	struct kiln_build_options opt = {.dir = ".",
	                                 .on_layer = on_layer,
	                                 .on_bytes = on_bytes,
	                                 .on_step = on_step,
	                                 .on_output = on_output,
	                                 .cancel = &cli_interrupted};
	struct kiln_registry_options ropt;
	kiln_registry_options_init(&ropt);
	ropt.cancel = &cli_interrupted;
	opt.registry = &ropt;
	struct build_args a = {.opt = &opt};
	int first, status = cli_parse(argc, argv, ":f:t:j:" CLI_COMMON_SHORT, longopts, &ropt, build_option,
	                              &a, 0, 1, &first);
	opt.secrets = a.secrets;
	opt.nsecrets = a.nsecrets;
	if (status >= 0)
		goto out_secrets;
	status = build_run(&opt, &ropt, &a, argc, argv, first);
out_secrets:
	for (size_t i = 0; i < a.ntmp; i++) {
		unlink(a.tmpfiles[i]);
		free(a.tmpfiles[i]);
	}
	for (size_t i = 0; i < a.nsecrets; i++) {
		free(a.secrets[i].id);
		free(a.secrets[i].src);
	}
	return status;
}

static int build_run(struct kiln_build_options *optp, struct kiln_registry_options *roptp,
                     struct build_args *ap, int argc, char **argv, int first)
{
	struct kiln_build_options opt = *optp;
	struct kiln_registry_options ropt = *roptp;
	opt.registry = &ropt;
	struct build_args a = *ap;
	const char *output = NULL;
	bool json = false, push = false;
	int status;
	opt.dir = cli_project_dir(first < argc ? argv[first] : NULL, opt.file);
	output = a.output;
	json = a.json;
	push = a.push;
	cli_catch_signals();

	_cleanup_error_ struct kiln_error *err = NULL;
	if (output && kiln_export_check(output, &err) < 0)
		return cli_usage_error("%s", err->message);
	struct kiln_store *store = NULL;
	if (kiln_store_open(&store, NULL, &err) < 0)
		return cli_fail(err);
	struct kiln_build_result *r = NULL;
	status = EXIT_OK;
	struct kiln_strv early = {0};
	opt.warnings_on_failure = &early;
	if (kiln_build(&r, store, &opt, &err) < 0) {
		cli_progress_clear();
		cli_manifest_warnings(&early); /* what was said before it failed is not lost */
		kiln_strv_release(&early);
		kiln_error_wrap(&err, "cannot build '%s'", opt.dir);
		status = cli_fail(err);
		goto out;
	}
	cli_progress_clear();
	cli_manifest_warnings(&r->warnings);
	if (r->schema_missing)
		warnf("the image has no run.cog.openapi_schema label: %s", r->schema_missing);
	if (!r->runtime)
		warnf("the image has no runtime layer: %s",
		      r->runtime_missing ? r->runtime_missing : "no shim");
	for (size_t i = 0; i < r->nskipped; i++)
		warnf("'%s' is not a regular file, directory or symlink: left out", r->skipped[i]);
	uint64_t exported = 0;
	if (output) {
		const char *tag = strrchr(r->reference, ':');
		if (kiln_export(store, r->manifest_digest, output, tag ? tag + 1 : NULL, &exported, &ropt,
		                &err) < 0) {
			status = cli_fail(err);
			goto out;
		}
	}
	json_t *pushed = NULL;
	if (push) {
		status = cli_push_image(store, r->reference, opt.jobs ? opt.jobs : 4, &ropt, json,
		                        json ? &pushed : NULL);
		if (status != EXIT_OK)
			goto out;
	}
	if (json) {
		json_t *j = report_json(r, output, exported);
		if (pushed)
			json_object_set_new(j, "push", pushed);
		json_dumpf(j, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(j);
	} else {
		char size[32], hashed[32];
		cli_human_size(size, r->image_size);
		cli_human_size(hashed, r->bytes_hashed);
		infof("built %s on %s in %.2fs: %zu layers, %s, %s hashed", r->familiar,
		      r->base ? r->base : "scratch", r->seconds, r->n, size, hashed);
		if (output)
			infof("wrote %s", output);
		if (!push)
			printf("%s@%s\n", r->familiar, r->manifest_digest);
	}
out:
	kiln_build_result_free(r);
	kiln_store_free(store);
	return status;
}
