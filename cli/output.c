/* SPDX-License-Identifier: Apache-2.0 */
/* output.c: messages, usage errors, help text, common options and signals. */
#include "cli/cli.h"

#include "pkg/manifest.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct cli_state cli = {.progress = PROGRESS_AUTO, .command = ""};
volatile sig_atomic_t cli_interrupted;

static void vmessage(const char *prefix, const char *fmt, va_list ap)
{
	fprintf(stderr, "kiln: %s", prefix);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void errorf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmessage("error: ", fmt, ap);
	va_end(ap);
}

void warnf(const char *fmt, ...)
{
	if (cli.quiet)
		return;
	va_list ap;
	va_start(ap, fmt);
	vmessage("warning: ", fmt, ap);
	va_end(ap);
}

void infof(const char *fmt, ...)
{
	if (cli.quiet)
		return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void cli_manifest_warnings(const struct kiln_strv *w)
{
	for (size_t i = 0; i < w->n; i++)
		warnf("%s", w->v[i]);
}

int cli_fail(struct kiln_error *err)
{
	if (err && err->code == KILN_EINTR) {
		errorf("interrupted");
		return EXIT_INTR;
	}
	errorf("%s", err && err->message ? err->message : "unknown error");
	return EXIT_FAIL;
}

static const struct command *find(const char *name)
{
	for (const struct command *c = commands; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

int cli_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "kiln %s: ", cli.command);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	const struct command *c = find(cli.command);
	if (c)
		fprintf(stderr, "\nusage: %s\nSee 'kiln %s --help'.\n", c->usage, c->name);
	else
		fputc('\n', stderr);
	return EXIT_USAGE;
}

int cli_help(const char *name)
{
	const struct command *c = find(name);
	if (c == NULL)
		return EXIT_USAGE;
	printf("usage: %s\n\n%s\n", c->usage, c->summary);
	if (c->help && *c->help)
		printf("\noptions:\n%s", c->help);
	printf("  -q, --quiet          print nothing but results and errors\n"
	       "  --progress MODE      auto, tty, plain or quiet (default: auto)\n"
	       "  -h, --help           show this help\n\nSee 'man kiln-%s'.\n",
	       c->name);
	return EXIT_OK;
}

int cli_common_option(int opt, const char *arg)
{
	switch (opt) {
	case CLI_OPT_QUIET:
		cli.quiet = true;
		return 1;
	case CLI_OPT_PROGRESS:
		if (strcmp(arg, "auto") == 0)
			cli.progress = PROGRESS_AUTO;
		else if (strcmp(arg, "tty") == 0)
			cli.progress = PROGRESS_TTY;
		else if (strcmp(arg, "plain") == 0)
			cli.progress = PROGRESS_PLAIN;
		else if (strcmp(arg, "quiet") == 0)
			cli.progress = PROGRESS_QUIET;
		else
			return -cli_usage_error("--progress: '%s' is not one of auto, tty, plain, quiet",
			                        arg) -
			       1;
		return 1;
	case CLI_OPT_HELP:
		return -cli_help(cli.command) - 1;
	}
	return 0;
}

void cli_options_done(void)
{
	if (cli.quiet)
		cli.progress = PROGRESS_QUIET;
	else if (cli.progress == PROGRESS_AUTO)
		cli.progress = isatty(STDERR_FILENO) ? PROGRESS_TTY : PROGRESS_PLAIN;
}

static void on_signal(int sig)
{
	cli_interrupted = 1;
}

void cli_catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART; /* reads go on; the work checks cli_interrupted and stops itself */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

void cli_human_size(char out[32], uint64_t bytes)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	size_t u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, 32, "%llu B", (unsigned long long)bytes);
	else
		snprintf(out, 32, "%.1f %s", v, units[u]);
}
