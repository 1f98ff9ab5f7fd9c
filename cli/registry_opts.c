/* SPDX-License-Identifier: Apache-2.0 */
/* registry_opts.c: the options of commands that talk to registries. */
#include "cli/cli.h"
#include "registry/client.h"

#include <stdlib.h>

/* Hosts named with --insecure-registry; kept for the life of the process (a command runs once). */
static const char *insecure[33];
static size_t ninsecure;

int cli_registry_option(struct kiln_registry_options *ropt, int opt, const char *arg)
{
	switch (opt) {
	case CLI_OPT_CA_FILE:
		ropt->ca_file = arg;
		return 1;
	case CLI_OPT_INSECURE:
		if (ninsecure + 1 >= sizeof(insecure) / sizeof(insecure[0]))
			return -cli_usage_error("--insecure-registry: at most 32 registries") - 1;
		insecure[ninsecure++] = arg;
		insecure[ninsecure] = NULL;
		ropt->insecure = insecure;
		return 1;
	}
	return 0;
}
