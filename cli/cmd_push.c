/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_push.c: `kiln push`: push a built image to its registry, sending only what the registry lacks. */
#include "cli/cli.h"
#include "common/cleanup.h"
#include "pkg/manifest.h"
#include "pkg/push.h"
#include "pkg/store.h"

#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { OPT_JSON = 2000 };

static void on_blob(void *ctx, const struct kiln_pushed_blob *b)
{
	cli_progress_item_end(b);
	char size[32];
	cli_human_size(size, b->size);
	cli_progress_line("%-8s %-6s %10s  %s%s%s", kiln_blob_action_name(b->action), b->what, size,
	                  b->digest, b->from ? "  from " : "", b->from ? b->from : "");
}

static void on_bytes(void *ctx, uint64_t sent, uint64_t total)
{
	cli_progress_live("pushing", sent, total);
}

static void on_blob_bytes(void *ctx, const struct kiln_pushed_blob *b, uint64_t sent)
{
	char label[40];
	snprintf(label, sizeof(label), "%s %.19s", b->what, b->digest);
	cli_progress_item(b, label, sent, b->size);
}

/* The --json report of a push. */
json_t *cli_push_json(const struct kiln_push_result *r)
{
	json_t *blobs = json_array();
	for (size_t i = 0; i < r->n; i++) {
		const struct kiln_pushed_blob *b = &r->blobs[i];
		json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:I}", "digest", b->digest, "kind", b->what, "size",
		                      (json_int_t)b->size, "action", kiln_blob_action_name(b->action),
		                      "bytes_sent", (json_int_t)b->bytes_sent);
		if (b->from)
			json_object_set_new(o, "from", json_string(b->from));
		json_array_append_new(blobs, o);
	}
	return json_pack("{s:s,s:s,s:s,s:o,s:I,s:f}", "reference", r->familiar, "name", r->reference,
	                 "digest", r->manifest_digest, "blobs", blobs, "bytes_sent",
	                 (json_int_t)r->bytes_sent, "seconds", r->seconds);
}

/* Push IMAGE from STORE and report it; shared with `kiln build --push`. */
int cli_push_image(struct kiln_store *store, const char *image, int jobs,
                   const struct kiln_registry_options *ropt, bool json, json_t **report)
{
	struct kiln_push_options po = {
	    .image = image,
	    .jobs = jobs,
	    .registry = ropt,
	    .on_blob = on_blob,
	    .on_bytes = on_bytes,
	    .on_blob_bytes = on_blob_bytes,
	    .cancel = &cli_interrupted,
	};
	struct kiln_push_result *r = NULL;
	_cleanup_error_ struct kiln_error *err = NULL;
	if (kiln_push(&r, store, &po, &err) < 0) {
		cli_progress_clear();
		return cli_fail(err);
	}
	cli_progress_clear();
	if (report) {
		*report = cli_push_json(r);
	} else if (json) {
		json_t *j = cli_push_json(r);
		json_dumpf(j, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(j);
	} else {
		char sent[32];
		cli_human_size(sent, r->bytes_sent);
		infof("pushed %s in %.2fs, %s sent", r->familiar, r->seconds, sent);
		printf("%s@%s\n", r->familiar, r->manifest_digest);
	}
	kiln_push_result_free(r);
	return EXIT_OK;
}

struct push_args {
	const char *dir;
	int jobs;
	bool json;
};

static int push_option(int c, const char *arg, void *ctx)
{
	struct push_args *a = ctx;
	switch (c) {
	case 'C':
		a->dir = arg;
		return 0;
	case 'j':
		return cli_parse_jobs(arg, 32, &a->jobs);
	case OPT_JSON:
		a->json = true;
		return 0;
	}
	return -1;
}

int cmd_push(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"dir", required_argument, NULL, 'C'},
	    {"jobs", required_argument, NULL, 'j'},
	    {"json", no_argument, NULL, OPT_JSON},
	    CLI_REGISTRY_LONG,
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	struct kiln_registry_options ropt;
	kiln_registry_options_init(&ropt);
	ropt.cancel = &cli_interrupted;
	struct push_args a = {.jobs = 4};
	int first, status = cli_parse(argc, argv, ":C:j:" CLI_COMMON_SHORT, longopts, &ropt, push_option, &a,
	                              0, 1, &first);
	if (status >= 0)
		return status;
	const char *ref = first < argc ? argv[first] : NULL;
	const char *dir = cli_project_dir(a.dir, NULL);
	int jobs = a.jobs;
	bool json = a.json;
	cli_catch_signals();
	_cleanup_error_ struct kiln_error *err = NULL;
	_cleanup_free_ char *def = NULL;
	if (ref == NULL) {
		struct kiln_manifest *m = NULL;
		if (kiln_manifest_load(&m, dir, NULL, &err) < 0)
			return cli_fail(err);
		def = m->image ? strdup(m->image) : NULL;
		bool none = m->image == NULL;
		kiln_manifest_free(m);
		if (none)
			return cli_usage_error("no reference given, and '%s' has no 'image' in its manifest",
			                       dir);
		ref = def;
	}
	struct kiln_store *store = NULL;
	if (kiln_store_open(&store, NULL, &err) < 0)
		return cli_fail(err);
	status = cli_push_image(store, ref, jobs, &ropt, json, NULL);
	kiln_store_free(store);
	return status;
}
