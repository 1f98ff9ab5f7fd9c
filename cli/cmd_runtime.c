/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_runtime.c: `kiln __runtime-layer DIR`, hidden: the build of kiln makes the runtime layer once with it,
 * so that a fresh store links that blob in instead of building it (pkg/runtime.h). */
#include "cli/cli.h"
#include "pkg/runtime.h"

#include <stdio.h>

int cmd_runtime_layer(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: kiln __runtime-layer DIR\n");
		return EXIT_USAGE;
	}
	struct kiln_error *err = NULL;
	if (kiln_runtime_prebuild(argv[1], &err) < 0)
		return cli_fail(err);
	return EXIT_OK;
}
