/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_pull.c: `kiln pull`: fetch an image from a registry into the local store. */
#include "cli/cli.h"
#include "common/cleanup.h"
#include "pkg/pull.h"
#include "pkg/store.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

enum { OPT_JSON = 2000, OPT_PLATFORM };

struct pull_args {
	const char *platform;
	bool json;
};

static int pull_option(int c, const char *arg, void *ctx)
{
	struct pull_args *a = ctx;
	if (c == OPT_JSON)
		a->json = true;
	else if (c == OPT_PLATFORM)
		a->platform = arg;
	else
		return -1;
	return 0;
}

int cmd_pull(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"platform", required_argument, NULL, OPT_PLATFORM},
	    {"json", no_argument, NULL, OPT_JSON},
	    CLI_REGISTRY_LONG,
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	struct kiln_registry_options ropt;
	kiln_registry_options_init(&ropt);
	ropt.cancel = &cli_interrupted;
	struct pull_args pa = {0};
	int first, status = cli_parse(argc, argv, ":" CLI_COMMON_SHORT, longopts, &ropt, pull_option, &pa, 0,
	                              1, &first);
	if (status >= 0)
		return status;
	if (first >= argc)
		return cli_usage_error("which image? give a reference");
	const char *ref = argv[first];
	const char *platform = pa.platform;
	bool json = pa.json;
	cli_catch_signals();
	_cleanup_error_ struct kiln_error *err = NULL;
	struct kiln_store *store = NULL;
	if (kiln_store_open(&store, NULL, &err) < 0)
		return cli_fail(err);
	struct kiln_pull_result *r = NULL;
	status = EXIT_OK;
	if (kiln_pull(&r, store, ref, platform, &ropt, &err) < 0) {
		status = cli_fail(err);
	} else if (json) {
		json_t *j = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:f}", "reference", r->familiar, "name",
		                      r->reference, "digest", r->manifest_digest, "layers",
		                      (json_int_t)r->layers, "fetched", (json_int_t)r->fetched,
		                      "bytes_received", (json_int_t)r->bytes_received, "seconds", r->seconds);
		json_object_set_new(j, "weights", json_integer((json_int_t)r->weights));
		json_dumpf(j, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(j);
	} else {
		char got[32], w[64] = "";
		cli_human_size(got, r->bytes_received);
		if (r->weights)
			snprintf(w, sizeof(w), " and %zu weight blobs", r->weights);
		infof("pulled %s in %.2fs: %zu layers%s, %zu fetched, %s received", r->familiar, r->seconds,
		      r->layers, w, r->fetched, got);
		printf("%s@%s\n", r->familiar, r->manifest_digest);
	}
	kiln_pull_result_free(r);
	kiln_store_free(store);
	return status;
}
