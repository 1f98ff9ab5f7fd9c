/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_serve.c: `kiln serve`: run the predictor shim against a project directory (the development loop). */
#include "cli/cli.h"
#include "cli/playground.h"
#include "cli/predict.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "pkg/image.h"
#include "pkg/manifest.h"
#include "pkg/plan.h"
#include "pkg/runtime.h"
#include "pkg/store.h"
#include "registry/client.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
	OPT_PORT = 2000,
	OPT_HOST,
	OPT_PROJECT,
	OPT_VERSION,
	OPT_PLAYGROUND,
	/* kiln-shim's own options, passed to it as they are given (the shim checks their values): PASSED */
	OPT_PASS,
	OPT_AWAIT = OPT_PASS + 8,
};

struct serve_args {
	int argc;
	char **argv;
	const char *port;
	const char *host;
	const char *project;
	const char *file; /* -f: the manifest */
	bool playground;  /* --playground[=PORT] */
	long playground_port;
	char *pass[64]; /* the shim's options, each "--NAME" or "--NAME=VALUE", owned */
	size_t npass;
};

/* The shim's options kiln serve passes on, by code (OPT_PASS + index). */
static const char *const PASSED[] = {
    "allow-private-urls",      "connection-timeout", "idle-exit", "keep-bytes",
    "max-connections",         "request-timeout",    "threads",   "upload-url",
    "await-explicit-shutdown",
};

/* Add "--NAME[=ARG]" for the shim option of code C. */
static int pass(struct serve_args *a, int c, const char *arg)
{
	const char *name = PASSED[c - OPT_PASS];
	char *s = NULL;
	if (a->npass >= sizeof(a->pass) / sizeof(a->pass[0]))
		return cli_usage_error("too many options");
	if ((arg ? asprintf(&s, "--%s=%s", name, arg) : asprintf(&s, "--%s", name)) < 0)
		return CLI_EXIT_STATUS(EXIT_FAIL);
	a->pass[a->npass++] = s;
	return 0;
}

static int serve_option(int c, const char *arg, void *ctx)
{
	struct serve_args *a = ctx;
	switch (c) {
	case OPT_PORT:
	case 'p': {
		char *end = NULL;
		long n = strtol(arg, &end, 10);
		if (*arg == '\0' || *end || n < 0 || n > 65535)
			return cli_usage_error("--port: '%s' is not a port number", arg);
		a->port = arg;
		return 0;
	}
	case OPT_HOST:
		a->host = arg;
		return 0;
	case OPT_PROJECT:
		a->project = arg;
		return 0;
	case 'f':
		a->file = arg;
		return 0;
	case OPT_PLAYGROUND:
		a->playground = true;
		a->playground_port = 8080;
		return arg ? cli_parse_number(&a->playground_port, "--playground", arg, 0, 65535) : 0;
	case OPT_VERSION:
		return cli_usage_error(
		    "--version: kiln serve runs the shim of this kiln; see 'kiln version'");
	case OPT_AWAIT:
		/* as the shim and Cog take it: "--await-explicit-shutdown true" as well as "=true" */
		if (!arg && optind < a->argc &&
		    (strcmp(a->argv[optind], "true") == 0 || strcmp(a->argv[optind], "false") == 0))
			arg = a->argv[optind++];
		return pass(a, c, arg);
	default:
		return c >= OPT_PASS && c < OPT_AWAIT ? pass(a, c, arg) : -1;
	}
}

/* The project's weight files, newline-separated absolute paths, in the order images prefetch them (the
 * manifest's serve.prefetch, then largest first). */
static char *weight_files(const char *dir, const char *file, struct kiln_error **err)
{
	struct kiln_manifest *m = NULL;
	struct kiln_plan *plan = NULL;
	struct kiln_plan_options po;
	kiln_plan_options_init(&po);
	if (kiln_manifest_load(&m, dir, file, err) < 0)
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

/* SIG to the descendants of PID DEPTH generations below it (its children are 1); how many got it. */
static size_t kill_generation(pid_t pid, int depth, int sig)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	size_t n = 0;
	int child;
	while (f && fscanf(f, "%d", &child) == 1)
		n += depth <= 1 ? kill(child, sig) == 0 : kill_generation(child, depth - 1, sig);
	return n;
}

/*
 * Run C in a process group of its own and wait for it, passing SIGINT, SIGTERM and SIGHUP on: under
 * bubblewrap (SANDBOXED) to the shim alone, two generations down (bubblewrap and the sandbox's init pass
 * none on and bubblewrap would die of them; the worker is the shim's to stop), as a container's signal
 * reaches its first process only, so that the shim drains, its predictions in flight answered, while
 * kiln waits; to the whole group when nothing runs there yet, or without a sandbox. kiln exits with C's
 * status.
 */
/* The signals kiln serve waits for in the foreground: those it passes on, and its child's end. */
static void foreground_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGCHLD);
}

static int run_foreground(const struct predict_command *c, bool sandboxed, struct kiln_error **err)
{
	sigset_t set, old;
	foreground_signals(&set);
	sigprocmask(SIG_BLOCK, &set, &old);
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setsigmask(&attr, &old);
	pid_t pid;
	fflush(NULL);
	int rc = posix_spawnp(&pid, c->argv[0], NULL, &attr, c->argv, c->envp);
	posix_spawnattr_destroy(&attr);
	if (rc != 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		kiln_error_errno(err, rc, "cannot run '%s'", c->argv[0]);
		return EXIT_FAIL;
	}
	int wstatus = 0;
	for (;;) {
		int sig = sigwaitinfo(&set, NULL);
		if (sig == SIGCHLD || sig < 0) {
			pid_t r = waitpid(pid, &wstatus, WNOHANG);
			if (r == pid || (r < 0 && errno == ECHILD))
				break;
			continue;
		}
		if (!sandboxed || kill_generation(pid, 2, sig) == 0)
			kill(-pid, sig);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : EXIT_FAIL;
}

/*
 * --playground: the web playground (kiln-playground(1)) of the shim that is about to listen on A's host and
 * port, for WHAT (the project or image, in the page's kiln predict lines). Its threads are made with the
 * signals kiln waits for blocked, so that they reach kiln's sigwaitinfo (run_foreground), not a thread.
 */
static int start_playground(struct kiln_playground **pg, const struct serve_args *a, const char *what,
                            struct kiln_error **err)
{
	const char *port = a->port ? a->port : getenv("PORT") ? getenv("PORT") : "5000";
	const char *host = a->host && strcmp(a->host, "0.0.0.0") != 0 && *a->host ? a->host : "127.0.0.1";
	_cleanup_free_ char *target = NULL, *url = NULL;
	if (asprintf(&target, "http://%s:%s", host, port) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct kiln_playground_options o = {.target = target, .port = a->playground_port, .ref = what};
	sigset_t set, old;
	foreground_signals(&set);
	sigaddset(&set, SIGPIPE); /* a page gone away is a write's error there */
	pthread_sigmask(SIG_BLOCK, &set, &old);
	int rc = kiln_playground_start(pg, &url, &o, err);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0)
		return kiln_error_wrap(err, "--playground");
	infof("playground: %s/ (for %s)", url, target);
	return 0;
}

/*
 * kiln serve REF: the image from the store (pulled when it is not there) run as kiln predict runs it,
 * under bubblewrap when it can, its shim in the foreground on HOST:PORT.
 */
static int serve_image(const char *ref, const struct serve_args *a)
{
	_cleanup_error_ struct kiln_error *err = NULL;
	struct kiln_registry_options ropt;
	kiln_registry_options_init(&ropt);
	struct kiln_store *store = NULL;
	json_t *config = NULL;
	char digest[KILN_DIGEST_LEN];
	struct predict_runtime rt = {.pid = -1};
	struct predict_command c = {0};
	struct kiln_playground *pg = NULL;
	int status = EXIT_FAIL;
	/* the socket systemd passed kiln serve (a socket unit, kiln deploy --target systemd): fd 3 stays open
	 * into the sandbox and the shim takes it by KILN_LISTEN_FD, its pid there unknown here */
	char *envs[] = {"KILN_LISTEN_FD=3"};
	size_t nenv = 0;
	const char *lpid = getenv("LISTEN_PID"), *lfds = getenv("LISTEN_FDS");
	if (lpid && lfds && atol(lpid) == (long)getpid() && atoi(lfds) >= 1) {
		int flags = fcntl(3, F_GETFD);
		if (flags >= 0 && fcntl(3, F_SETFD, flags & ~FD_CLOEXEC) == 0)
			nenv = 1;
		unsetenv("LISTEN_PID");
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_FDNAMES");
	}
	if (kiln_store_open(&store, NULL, &err) < 0 ||
	    predict_resolve_image(store, ref, NULL, &ropt, digest, &config, &err) < 0 ||
	    predict_runtime_prepare(&rt, store, digest, config, RUNTIME_AUTO, &ropt, &err) < 0 ||
	    predict_runtime_shim_command(&c, &rt, config, a->host, a->port, true, envs, nenv,
	                                 (char *const *)a->pass, a->npass, &err) < 0 ||
	    (a->playground && start_playground(&pg, a, ref, &err) < 0))
		goto out;
	status = run_foreground(&c, rt.kind == RUNTIME_BWRAP, &err);
out:
	if (err) {
		kiln_error_wrap(&err, "cannot serve '%s'", ref);
		status = cli_fail(err);
	}
	kiln_playground_stop(pg);
	predict_command_release(&c);
	predict_runtime_stop(&rt, false);
	json_decref(config);
	kiln_store_free(store);
	return status;
}

int cmd_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"allow-private-urls", no_argument, NULL, OPT_PASS + 0},
	    {"await-explicit-shutdown", optional_argument, NULL, OPT_AWAIT},
	    {"connection-timeout", required_argument, NULL, OPT_PASS + 1},
	    {"file", required_argument, NULL, 'f'},
	    {"host", required_argument, NULL, OPT_HOST},
	    {"idle-exit", required_argument, NULL, OPT_PASS + 2},
	    {"keep-bytes", required_argument, NULL, OPT_PASS + 3},
	    {"max-connections", required_argument, NULL, OPT_PASS + 4},
	    {"port", required_argument, NULL, OPT_PORT},
	    {"project", required_argument, NULL, OPT_PROJECT},
	    {"request-timeout", required_argument, NULL, OPT_PASS + 5},
	    {"threads", required_argument, NULL, OPT_PASS + 6},
	    {"upload-url", required_argument, NULL, OPT_PASS + 7},
	    {"version", no_argument, NULL, OPT_VERSION},
	    {"playground", optional_argument, NULL, OPT_PLAYGROUND},
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	struct serve_args a = {.argc = argc, .argv = argv};
	int first, status = cli_parse(argc, argv, ":f:p:" CLI_COMMON_SHORT, longopts, NULL, serve_option, &a,
	                              0, 1, &first);
	if (status < 0 && a.project && first < argc)
		status = cli_usage_error("--project '%s' and DIR '%s': give one", a.project, argv[first]);
	if (status < 0 && a.playground && a.port && atol(a.port) == 0)
		status =
		    cli_usage_error("--playground needs the shim's port: --port 0 (a free one) leaves it "
		                    "unknown");
	if (status >= 0) {
		for (size_t i = 0; i < a.npass; i++)
			free(a.pass[i]);
		return status;
	}
	/* an image reference, not a project directory */
	struct stat st;
	if (!a.project && !a.file && first < argc && stat(argv[first], &st) < 0) {
		status = serve_image(argv[first], &a);
		for (size_t i = 0; i < a.npass; i++)
			free(a.pass[i]);
		return status;
	}
	const char *dir = cli_project_dir(a.project ? a.project : first < argc ? argv[first] : NULL, a.file);
	_cleanup_error_ struct kiln_error *err = NULL;
	struct kiln_runtime rt;
	if (kiln_runtime_locate(&rt, &err) < 0)
		return cli_fail(err);
	_cleanup_free_ char *files = weight_files(dir, a.file, &err);
	if (files == NULL) {
		kiln_runtime_release(&rt);
		kiln_error_wrap(&err, "cannot serve '%s'", dir);
		return cli_fail(err);
	}
	if (getenv("KILN_PREFETCH_FILES") == NULL)
		setenv("KILN_PREFETCH_FILES", files, 1);
	setenv("KILN_PYTHON_DIR", rt.python_dir, 1);
	_cleanup_free_ char *manifest = a.file ? realpath(a.file, NULL) : NULL;
	if (manifest) /* the manifest the shim reads in place of the project's (kiln-shim(1)) */
		setenv("KILN_MANIFEST", manifest, 1);
	else
		unsetenv("KILN_MANIFEST");
	char *args[80];
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
	for (size_t i = 0; i < a.npass; i++)
		args[n++] = a.pass[i];
	args[n] = NULL;
	if (a.playground) { /* kiln stays, the playground's server in it, the shim its child */
		struct kiln_playground *pg = NULL;
		int rc = start_playground(&pg, &a, dir, &err);
		if (rc == 0) {
			extern char **environ;
			struct predict_command c = {.argv = args, .envp = environ};
			rc = run_foreground(&c, false, &err);
		}
		kiln_playground_stop(pg);
		kiln_runtime_release(&rt);
		return err ? cli_fail(err) : rc;
	}
	fflush(NULL);
	execv(rt.shim, args);
	int e = errno;
	kiln_error_errno(&err, e, "cannot run '%s'", rt.shim);
	kiln_runtime_release(&rt);
	return cli_fail(err);
}
