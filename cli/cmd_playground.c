/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_playground.c: `kiln playground --target URL`: the web playground of a model served elsewhere. */
#include "cli/cli.h"
#include "cli/playground.h"
#include "common/cleanup.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_TARGET = 2100, OPT_PORT, OPT_HOST, OPT_REF, OPT_WEBHOOK_BASE };

static int playground_option(int c, const char *arg, void *ctx)
{
	struct kiln_playground_options *o = ctx;
	switch (c) {
	case OPT_TARGET:
		if (!kiln_playground_target_valid(arg))
			return cli_usage_error("--target: '%s' is not an http:// or https:// URL of a host "
			                       "(without a query, fragment or user)",
			                       arg);
		o->target = arg;
		return 0;
	case OPT_PORT:
		return cli_parse_number(&o->port, "--port", arg, 0, 65535);
	case OPT_HOST:
		o->host = arg;
		return 0;
	case OPT_REF:
		o->ref = arg;
		return 0;
	case OPT_WEBHOOK_BASE:
		if (!kiln_playground_target_valid(arg))
			return cli_usage_error("--webhook-base: '%s' is not an http:// or https:// URL", arg);
		o->webhook_base = arg;
		return 0;
	}
	return -1;
}

int cmd_playground(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"target", required_argument, NULL, OPT_TARGET},
	    {"port", required_argument, NULL, OPT_PORT},
	    {"host", required_argument, NULL, OPT_HOST},
	    {"ref", required_argument, NULL, OPT_REF},
	    {"webhook-base", required_argument, NULL, OPT_WEBHOOK_BASE},
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	struct kiln_playground_options o = {.port = 8080};
	int first, status = cli_parse(argc, argv, ":" CLI_COMMON_SHORT, longopts, NULL, playground_option, &o,
	                              0, 0, &first);
	if (status >= 0)
		return status;
	if (o.target == NULL)
		return cli_usage_error("--target URL is required: the model's Cog API (kiln serve's, "
		                       "http://127.0.0.1:5000)");
	/* the signals kiln stops on are waited for here, not delivered to the server's threads */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	_cleanup_error_ struct kiln_error *err = NULL;
	struct kiln_playground *pg = NULL;
	_cleanup_free_ char *url = NULL;
	if (kiln_playground_start(&pg, &url, &o, &err) < 0)
		return cli_fail(err);
	printf("playground: %s/ (for %s)\n", url, o.target);
	fflush(stdout);
	int sig = sigwaitinfo(&set, NULL);
	kiln_playground_stop(pg);
	return sig == SIGINT ? EXIT_INTR : EXIT_OK;
}
