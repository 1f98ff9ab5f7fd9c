/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_serve.c: `kiln serve`: run the predictor shim against a project directory (the development loop). */
#include "cli/cli.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "pkg/image.h"
#include "pkg/manifest.h"
#include "pkg/plan.h"
#include "pkg/runtime.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { OPT_PORT = 2000, OPT_HOST };

struct serve_args {
	const char *port;
	const char *host;
};

static int serve_option(int c, const char *arg, void *ctx)
{
	struct serve_args *a = ctx;
	if (c == OPT_PORT || c == 'p') {
		char *end = NULL;
		long n = strtol(arg, &end, 10);
		if (*arg == '\0' || *end || n < 0 || n > 65535)
			return cli_usage_error("--port: '%s' is not a port number", arg);
		a->port = arg;
	} else if (c == OPT_HOST) {
		a->host = arg;
	} else {
		return -1;
	}
	return 0;
}

/* The project's weight files, newline-separated absolute paths, in the order images prefetch them (the
 * manifest's serve.prefetch, then largest first). */
static char *weight_files(const char *dir, struct kiln_error **err)
{
	struct kiln_manifest *m = NULL;
	struct kiln_plan *plan = NULL;
	struct kiln_plan_options po;
	kiln_plan_options_init(&po);
	if (kiln_manifest_load(&m, dir, NULL, err) < 0)
		return NULL;
	cli_manifest_warnings(&m->warnings);
	int rc = kiln_plan_make(&plan, m, &po, err);
	if (rc < 0) {
		kiln_manifest_free(m);
		return NULL;
	}
	char real[PATH_MAX];
	json_t *order = kiln_image_prefetch_order(m, plan, realpath(dir, real) ? real : dir);
	kiln_plan_free(plan);
	kiln_manifest_free(m);
	struct kiln_buf b = KILN_BUF_INIT;
	for (size_t i = 0; i < json_array_size(order); i++)
		kiln_buf_printf(&b, "%s%s", i ? "\n" : "", json_string_value(json_array_get(order, i)));
	json_decref(order);
	return kiln_buf_detach(&b);
}

int cmd_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"port", required_argument, NULL, OPT_PORT},
	    {"host", required_argument, NULL, OPT_HOST},
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	struct serve_args a = {.port = NULL, .host = NULL};
	int first, status = cli_parse(argc, argv, ":p:" CLI_COMMON_SHORT, longopts, NULL, serve_option, &a, 0,
	                              1, &first);
	if (status >= 0)
		return status;
	const char *dir = first < argc ? argv[first] : ".";
	_cleanup_error_ struct kiln_error *err = NULL;
	struct kiln_runtime rt;
	if (kiln_runtime_locate(&rt, &err) < 0)
		return cli_fail(err);
	_cleanup_free_ char *files = weight_files(dir, &err);
	if (files == NULL) {
		kiln_runtime_release(&rt);
		kiln_error_wrap(&err, "cannot serve '%s'", dir);
		return cli_fail(err);
	}
	if (getenv("KILN_PREFETCH_FILES") == NULL)
		setenv("KILN_PREFETCH_FILES", files, 1);
	setenv("KILN_PYTHON_DIR", rt.python_dir, 1);
	char *args[12];
	size_t n = 0;
	args[n++] = rt.shim;
	args[n++] = "--project";
	args[n++] = (char *)dir;
	if (a.port) {
		args[n++] = "--port";
		args[n++] = (char *)a.port;
	}
	if (a.host) {
		args[n++] = "--host";
		args[n++] = (char *)a.host;
	}
	args[n] = NULL;
	fflush(NULL);
	execv(rt.shim, args);
	int e = errno;
	kiln_error_errno(&err, e, "cannot run '%s'", rt.shim);
	kiln_runtime_release(&rt);
	return cli_fail(err);
}
