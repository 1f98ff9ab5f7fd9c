/* SPDX-License-Identifier: Apache-2.0 */
/* options.c: option parsing shared by every command. */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"

int cli_parse(int argc, char **argv, const char *shortopts, const struct option *longopts,
              struct kiln_registry_options *ropt, int (*handle)(int opt, const char *arg, void *ctx),
              void *ctx, int min_args, int max_args, int *first)
{
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		int r = cli_common_option(c, optarg);
		if (r == 0 && ropt)
			r = cli_registry_option(ropt, c, optarg);
		if (r < 0)
			return CLI_EXIT_STATUS(r);
		if (r > 0)
			continue;
		if (c == ':')
			return cli_usage_error("option '%s' needs a value", argv[optind - 1]);
		int h = c == '?' || handle == NULL ? -1 : handle(c, optarg, ctx);
		if (h < 0)
			return cli_usage_error("unknown option '%s'", argv[optind - 1]);
		if (h > 0)
			return h;
	}
	int n = argc - optind;
	if (n > max_args)
		return cli_usage_error("too many arguments ('%s')", argv[optind + max_args]);
	if (n < min_args)
		return cli_usage_error("missing argument");
	*first = optind;
	cli_options_done();
	return -1;
}

int cli_parse_number(long *out, const char *opt, const char *arg, long min, long max)
{
	char *end = NULL;
	errno = 0;
	long n = strtol(arg, &end, 10);
	if (*arg == '\0' || *end || errno || n < min || n > max)
		return cli_usage_error("%s: '%s' is not a number from %ld to %ld", opt, arg, min, max);
	*out = n;
	return 0;
}

int cli_parse_jobs(const char *arg, int max, int *out)
{
	long n;
	int rc = cli_parse_number(&n, "--jobs", arg, 1, max);
	if (rc == 0)
		*out = (int)n;
	return rc;
}

int cli_format_option(bool *json, const char *arg)
{
	if (strcmp(arg, "json") != 0 && strcmp(arg, "text") != 0)
		return cli_usage_error("--format: '%s' is not json or text", arg);
	*json = strcmp(arg, "json") == 0;
	return 0;
}

int cli_json_option(int opt, const char *arg, void *ctx)
{
	if (opt != CLI_OPT_JSON)
		return -1;
	*(bool *)ctx = true;
	return 0;
}

bool cli_is_project(const char *dir)
{
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return false;
	_cleanup_free_ char *k = kiln_path_join(dir, "kiln.yaml"), *c = kiln_path_join(dir, "cog.yaml");
	return (k && access(k, F_OK) == 0) || (c && access(c, F_OK) == 0);
}

const char *cli_project_dir(const char *given, const char *file)
{
	static char dir[PATH_MAX];
	if (given)
		return given;
	if (file || cli_is_project(".") || !getcwd(dir, sizeof(dir)))
		return ".";
	for (char *slash = strrchr(dir, '/'); slash; slash = strrchr(dir, '/')) {
		slash[slash == dir] = '\0'; /* the parent; "/" kept whole */
		if (cli_is_project(dir))
			return dir;
		if (slash == dir)
			break;
	}
	return ".";
}
