/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_dockerfile.c: `kiln dockerfile [DIR] [-f FILE]`: print the Dockerfile equivalent to kiln's build. */
#include "cli/cli.h"
#include "common/cleanup.h"
#include "pkg/build.h"
#include "pkg/dockerfile.h"
#include "pkg/manifest.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#define OPT_RUNTIME_IMAGE 2000

struct dockerfile_args {
	const char *file;
	const char *runtime_image;
};

static int dockerfile_option(int c, const char *arg, void *ctx)
{
	struct dockerfile_args *a = ctx;
	switch (c) {
	case 'f':
		a->file = arg;
		return 0;
	case OPT_RUNTIME_IMAGE:
		a->runtime_image = arg;
		return 0;
	}
	return -1;
}

int cmd_dockerfile(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"file", required_argument, NULL, 'f'},
	    {"runtime-image", required_argument, NULL, OPT_RUNTIME_IMAGE},
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	struct dockerfile_args a = {0};
	int first, status = cli_parse(argc, argv, ":f:" CLI_COMMON_SHORT, longopts, NULL, dockerfile_option,
	                              &a, 0, 1, &first);
	if (status >= 0)
		return status;
	const char *dir = cli_project_dir(first < argc ? argv[first] : NULL, a.file);
	_cleanup_error_ struct kiln_error *err = NULL;
	struct kiln_manifest *m = NULL;
	if (kiln_manifest_load(&m, dir, a.file, &err) < 0)
		return cli_fail(err);
	cli_manifest_warnings(&m->warnings);
	if (m->serve.weights && strcmp(m->serve.weights, "registry") == 0)
		warnf("%s:%d:%d: serve.weights: a Dockerfile has no registry weights: it copies the weight "
		      "files "
		      "into the image, as serve.weights: image does",
		      m->path, m->serve.weights_pos.line, m->serve.weights_pos.column);
	if (m->python_overrides)
		warnf("%s:%d:%d: build.python_overrides: a Dockerfile's pip takes no overrides: it installs "
		      "the "
		      "requirements as pip resolves them (kiln build applies '%s')",
		      m->path, m->python_overrides_pos.line, m->python_overrides_pos.column,
		      m->python_overrides);
	_cleanup_free_ char *tag = a.runtime_image ? NULL : kiln_build_manifest_tag(m, dir);
	_cleanup_free_ char *text = NULL;
	int rc = kiln_dockerfile(&text, m,
	                         a.runtime_image ? a.runtime_image
	                         : tag           ? tag
	                                         : "kiln-runtime",
	                         &err);
	kiln_manifest_free(m);
	if (rc < 0) {
		kiln_error_wrap(&err, "cannot write the Dockerfile of '%s'", dir);
		return cli_fail(err);
	}
	fputs(text, stdout);
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}
