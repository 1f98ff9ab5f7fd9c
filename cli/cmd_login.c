/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_login.c: `kiln login` and `kiln logout`: registry credentials in Docker's config.json. */
#include "cli/cli.h"
#include "common/cleanup.h"
#include "registry/auth.h"
#include "registry/client.h"

#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

enum { OPT_PASSWORD_STDIN = 2000 };

/* Read one line (without its newline) from F; NULL at end of file. */
static char *read_line(FILE *f)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, f);
	if (n < 0) {
		free(line);
		return NULL;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	return line;
}

/* Ask on the terminal, without echo when SECRET. */
static char *prompt(const char *what, bool secret)
{
	_cleanup_fclose_ FILE *tty = fopen("/dev/tty", "r+");
	if (tty == NULL)
		return NULL;
	fprintf(tty, "%s: ", what);
	fflush(tty);
	struct termios old, quiet;
	bool restore = false;
	if (secret && tcgetattr(fileno(tty), &old) == 0) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		restore = tcsetattr(fileno(tty), TCSAFLUSH, &quiet) == 0;
	}
	char *line = read_line(tty);
	if (restore) {
		tcsetattr(fileno(tty), TCSAFLUSH, &old);
		fputc('\n', tty);
	}
	return line;
}

struct login_args {
	const char *user;
	bool from_stdin;
};

static int login_option(int c, const char *arg, void *ctx)
{
	struct login_args *a = ctx;
	if (c == 'u')
		a->user = arg;
	else if (c == OPT_PASSWORD_STDIN)
		a->from_stdin = true;
	else
		return -1;
	return 0;
}

int cmd_login(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"username", required_argument, NULL, 'u'},
	    {"password-stdin", no_argument, NULL, OPT_PASSWORD_STDIN},
	    CLI_REGISTRY_LONG,
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	struct kiln_registry_options ropt;
	kiln_registry_options_init(&ropt);
	struct login_args la = {0};
	int first, status = cli_parse(argc, argv, ":u:" CLI_COMMON_SHORT, longopts, &ropt, login_option, &la,
	                              0, 1, &first);
	if (status >= 0)
		return status;
	if (first >= argc)
		return cli_usage_error("which registry? give its host, e.g. 'ghcr.io'");
	const char *host = argv[first];
	const char *user = la.user;
	bool from_stdin = la.from_stdin;

	_cleanup_free_ char *asked_user = NULL, *password = NULL;
	if (user == NULL) {
		if (from_stdin || (asked_user = prompt("Username", false)) == NULL || *asked_user == '\0')
			return cli_usage_error("a username is needed: use -u USER");
		user = asked_user;
	}
	password = from_stdin ? read_line(stdin) : prompt("Password", true);
	if (password == NULL || *password == '\0')
		return cli_usage_error("a password is needed: use --password-stdin or a terminal");

	/* Check the credentials against the registry before keeping them, as docker login does. */
	_cleanup_error_ struct kiln_error *err = NULL;
	struct kiln_credentials cred = {(char *)user, password};
	ropt.username = user;
	ropt.password = password;
	struct kiln_registry *reg = NULL;
	int rc = kiln_registry_open(&reg, host, &ropt, &err);
	if (rc == 0)
		rc = kiln_registry_ping(reg, &err);
	kiln_registry_free(reg);
	if (rc < 0) {
		kiln_error_wrap(&err, "cannot log in to '%s'", host);
		return cli_fail(err);
	}
	if (kiln_auth_store(host, &cred, &err) < 0)
		return cli_fail(err);
	infof("Login Succeeded");
	return EXIT_OK;
}

int cmd_logout(int argc, char **argv)
{
	static const struct option longopts[] = {CLI_COMMON_LONG, {NULL, 0, NULL, 0}};
	int first,
	    status = cli_parse(argc, argv, ":" CLI_COMMON_SHORT, longopts, NULL, NULL, NULL, 0, 1, &first);
	if (status >= 0)
		return status;
	if (first >= argc)
		return cli_usage_error("which registry? give its host");
	const char *host = argv[first];
	_cleanup_error_ struct kiln_error *err = NULL;
	if (kiln_auth_erase(host, &err) < 0)
		return cli_fail(err);
	infof("Removed login credentials for %s", host);
	return EXIT_OK;
}
