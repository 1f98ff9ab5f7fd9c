/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_prune.c: `kiln prune`: remove from the local store what no tagged image reaches. */
#include "cli/cli.h"
#include "common/cleanup.h"
#include "pkg/prune.h"
#include "pkg/store.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

enum { OPT_ALL = 2000, OPT_DRY_RUN, OPT_JSON };

struct prune_args {
	struct kiln_prune_options opt;
	bool json;
};

static int prune_option(int c, const char *arg, void *ctx)
{
	(void)arg;
	struct prune_args *a = ctx;
	if (c == OPT_ALL)
		a->opt.all = true;
	else if (c == OPT_DRY_RUN)
		a->opt.dry_run = true;
	else if (c == OPT_JSON)
		a->json = true;
	else
		return -1;
	return 0;
}

/* Append ", N WHAT (SIZE)" to LINE when N is not 0. */
static void add_item(char *line, size_t cap, size_t n, const char *one, const char *many, uint64_t bytes)
{
	if (n == 0)
		return;
	char size[32];
	cli_human_size(size, bytes);
	size_t used = strlen(line);
	snprintf(line + used, cap - used, "%s%zu %s (%s)", used ? ", " : "", n, n == 1 ? one : many, size);
}

int cmd_prune(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"all", no_argument, NULL, OPT_ALL},
	    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
	    {"json", no_argument, NULL, OPT_JSON},
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	struct prune_args pa = {.opt.cancel = &cli_interrupted};
	int first, status = cli_parse(argc, argv, ":" CLI_COMMON_SHORT, longopts, NULL, prune_option, &pa, 0,
	                              0, &first);
	if (status >= 0)
		return status;
	cli_catch_signals();
	_cleanup_error_ struct kiln_error *err = NULL;
	struct kiln_store *store = NULL;
	if (kiln_store_open(&store, NULL, &err) < 0)
		return cli_fail(err);
	/* the store alone: a running build, pull or predict may be about to use a blob no tag reaches yet */
	if (kiln_store_lock_exclusive(store, false, NULL, &err) < 0) {
		kiln_error_free(err);
		err = NULL;
		infof("waiting for the other kiln processes using the store to end");
		if (kiln_store_lock_exclusive(store, true, &cli_interrupted, &err) < 0) {
			kiln_store_free(store);
			return cli_fail(err);
		}
	}
	struct kiln_prune_result r;
	if (kiln_prune(&r, store, &pa.opt, &err) < 0) {
		kiln_store_free(store);
		return cli_fail(err);
	}
	kiln_store_free(store);
	if (r.kept_recent)
		infof("kept %zu unreferenced blob%s written in the last %d minutes (a build may still use "
		      "them)",
		      r.kept_recent, r.kept_recent == 1 ? "" : "s", KILN_PRUNE_GRACE_SECONDS / 60);
	if (r.kept_busy)
		infof("kept %zu run director%s in use by kiln predict", r.kept_busy,
		      r.kept_busy == 1 ? "y" : "ies");
	uint64_t bytes = r.blob_bytes + r.recipe_bytes + r.run_bytes + r.other_bytes + r.roots_bytes;
	if (pa.json) {
		json_t *j = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b}", "blobs", (json_int_t)r.blobs,
		                      "recipes", (json_int_t)r.recipes, "run", (json_int_t)r.run, "logs",
		                      (json_int_t)r.logs, "tmp", (json_int_t)r.tmp, "cache",
		                      (json_int_t)r.cache, "roots", (json_int_t)r.roots, "bytes",
		                      (json_int_t)bytes, "dry_run", pa.opt.dry_run);
		json_dumpf(j, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(j);
		return EXIT_OK;
	}
	char line[512] = "";
	add_item(line, sizeof(line), r.blobs, "blob", "blobs", r.blob_bytes);
	add_item(line, sizeof(line), r.recipes, "recipe", "recipes", r.recipe_bytes);
	add_item(line, sizeof(line), r.run, "run directory", "run directories", r.run_bytes);
	add_item(line, sizeof(line), r.roots, "build root", "build roots", r.roots_bytes);
	add_item(line, sizeof(line), r.logs + r.tmp + r.cache, "other file", "other files", r.other_bytes);
	if (line[0] == '\0')
		printf("nothing to remove\n");
	else
		printf("%s %s\n", pa.opt.dry_run ? "would remove" : "removed", line);
	return EXIT_OK;
}
