/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cmd_exec.c: `kiln exec`: run a command in the model's environment, as `cog exec` (Cog 0.20's name for
 * the older `cog run COMMAND`) does: the project built as kiln predict builds it, then the command in its
 * image (predict_runtime.c) with the project at the WorkingDir, attached to this terminal, its exit status
 * kiln's.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/openat2.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/predict.h"
#include "common/cleanup.h"
#include "registry/client.h"

enum { OPT_RUNTIME = 2000, OPT_GPUS };

/* Exit statuses of a command that could not be run, as a shell and docker run give them. */
#define EXIT_NOT_EXECUTABLE 126
#define EXIT_NOT_FOUND      127

struct exec_args {
	char **envs;      /* -e NAME=VALUE, and what --gpus sets */
	const char *file; /* -f: the manifest */
	size_t n;
	char *owned[2]; /* --gpus' strings */
	enum predict_runtime_kind runtime;
};

static int add_env(struct exec_args *a, const char *kv)
{
	char **v = realloc(a->envs, (a->n + 1) * sizeof(*v));
	if (!v)
		return CLI_EXIT_STATUS(EXIT_FAIL);
	a->envs = v;
	a->envs[a->n++] = (char *)kv;
	return 0;
}

/* --gpus as docker run takes it: all (every device, the default), a count N (the first N) or
 * device=I[,J...]; a subset is the CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES the command gets. */
static int gpus_option(struct exec_args *a, const char *arg)
{
	if (strcmp(arg, "all") == 0)
		return 0;
	char list[256] = "";
	size_t len = strlen(arg);
	char *end = NULL;
	long count = strtol(arg, &end, 10);
	if (*arg >= '0' && *arg <= '9' && !*end && count <= 64) {
		for (long i = 0; i < count; i++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%ld", i ? "," : "", i);
	} else if (strncmp(arg, "device=", 7) == 0 || strncmp(arg, "\"device=", 8) == 0) {
		const char *ids = arg + (*arg == '"' ? 8 : 7);
		size_t n = strlen(ids) - (*arg == '"' && len > 8 && arg[len - 1] == '"' ? 1 : 0);
		if (n == 0 || n >= sizeof(list) || strspn(ids, "0123456789,") < n)
			return cli_usage_error("--gpus '%s': give all, a count or device=I[,J...]", arg);
		memcpy(list, ids, n);
		list[n] = '\0';
	} else {
		return cli_usage_error("--gpus '%s': give all, a count or device=I[,J...]", arg);
	}
	for (int i = 0; i < 2; i++) {
		free(a->owned[i]);
		if (asprintf(&a->owned[i], "%s=%s", i ? "NVIDIA_VISIBLE_DEVICES" : "CUDA_VISIBLE_DEVICES",
		             list) < 0 ||
		    add_env(a, a->owned[i]) != 0)
			return CLI_EXIT_STATUS(EXIT_FAIL);
	}
	return 0;
}

static int exec_option(int c, const char *arg, void *ctx)
{
	struct exec_args *a = ctx;
	switch (c) {
	case 'e':
		if (!strchr(arg, '=') || *arg == '=')
			return cli_usage_error("-e %s: give NAME=VALUE", arg);
		return add_env(a, arg);
	case 'f':
		a->file = arg;
		return 0;
	case 'p': {
		char *end = NULL;
		long port = strtol(arg, &end, 10);
		if (!*arg || *end || port < 1 || port > 65535)
			return cli_usage_error("-p '%s': not a port number", arg);
		warnf("-p %s: kiln exec runs the command in this machine's network (no Docker): port %s is "
		      "this machine's already, nothing is published",
		      arg, arg);
		return 0;
	}
	case OPT_GPUS:
		return gpus_option(a, arg);
	case OPT_RUNTIME:
		return predict_runtime_option(&a->runtime, arg);
	default:
		return -1;
	}
}

/* openat2(2) with RESOLVE_IN_ROOT: PATH as the root filesystem ROOTFD would resolve it, links included;
 * -1 and errno ENOSYS where the kernel cannot. */
static int open_in_root(int rootfd, const char *path)
{
	struct open_how how = {.flags = O_PATH | O_CLOEXEC,
	                       .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
}

/* What running PATH would give: 0 (an executable file), EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, or -1 (this
 * kernel cannot tell). ROOTFD: the image's root (else -1: this machine's PATH). */
static int probe(int rootfd, const char *path)
{
	_cleanup_close_ int fd = rootfd >= 0 ? open_in_root(rootfd, path) : open(path, O_PATH | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return errno == ENOSYS ? -1 : errno == EACCES ? EXIT_NOT_EXECUTABLE : EXIT_NOT_FOUND;
	if (fstat(fd, &st) < 0)
		return EXIT_NOT_FOUND;
	return S_ISREG(st.st_mode) && (st.st_mode & 0111) ? 0 : EXIT_NOT_EXECUTABLE;
}

/*
 * Whether the image's root (ROOT) can run CMD, as execvp would look it up there: a name through the
 * image's PATH, a path from the WorkingDir, or in PROJECT (bound there) when it is under it. 0, or the
 * exit status of a command that cannot run, said on stderr as docker run says it.
 */
static int check_command(const char *root, const json_t *config, const char *project, const char *cmd)
{
	_cleanup_close_ int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0 || !*cmd)
		return rootfd < 0 ? 0 : (errorf("cannot run '': no such file or directory"), EXIT_NOT_FOUND);
	const char *workdir = predict_runtime_workdir(config);
	int r = -1;
	if (strchr(cmd, '/')) {
		size_t wl = strlen(workdir);
		const char *rel = *cmd != '/'                                        ? cmd
		                  : strncmp(cmd, workdir, wl) == 0 && cmd[wl] == '/' ? cmd + wl + 1
		                                                                     : NULL;
		_cleanup_free_ char *path = NULL;
		if (project && rel)
			path = kiln_path_join(project, rel);
		else if (!rel || asprintf(&path, "%s/%s", workdir, rel) < 0)
			path = NULL;
		r = probe(project && rel ? -1 : rootfd, path ? path : cmd);
		if (r > 0)
			errorf("cannot run '%s': %s", cmd,
			       r == EXIT_NOT_FOUND ? "no such file or directory" : "permission denied");
		return r > 0 ? r : 0;
	}
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(json_object_get(config, "config"), "Env"), i, v)
	{
		const char *kv = json_string_value(v);
		if (kv && strncmp(kv, "PATH=", 5) == 0)
			path = kv + 5;
	}
	for (const char *p = path; r != 0 && *p;) {
		size_t len = strcspn(p, ":");
		_cleanup_free_ char *file = NULL;
		if (len && asprintf(&file, "%.*s/%s", (int)len, p, cmd) >= 0) {
			int q = probe(rootfd, file);
			if (q < 0)
				return 0;
			r = r == EXIT_NOT_EXECUTABLE && q == EXIT_NOT_FOUND ? r : q;
		}
		p += len + (p[len] == ':');
	}
	if (r > 0)
		errorf("cannot run '%s': %s", cmd,
		       r == EXIT_NOT_FOUND ? "executable file not found in the image's $PATH"
		                           : "permission denied");
	return r > 0 ? r : 0;
}

/* The children of PARENT (from /proc), at most MAX into OUT; their count. */
static size_t children_of(pid_t parent, pid_t *out, size_t max)
{
	DIR *d = opendir("/proc");
	size_t n = 0;
	for (struct dirent *de; d && n < max && (de = readdir(d));) {
		char path[300], stat[512];
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t len = fd >= 0 ? read(fd, stat, sizeof(stat) - 1) : -1;
		if (len <= 0)
			continue;
		stat[len] = '\0';
		const char *p = strrchr(stat, ')'); /* "PID (COMM) STATE PPID ..." */
		char state;
		int ppid;
		if (p && sscanf(p + 1, " %c %d", &state, &ppid) == 2 && ppid == parent)
			out[n++] = (pid_t)atoi(de->d_name);
	}
	if (d)
		closedir(d);
	return n;
}

/* Send SIG to the command bubblewrap runs: the children of the sandbox's init, itself the child of
 * bubblewrap's monitor MONITOR or, once it is gone (ORPHANED), of kiln. (The init of a PID namespace takes
 * no signal from outside it but SIGKILL.) */
static void signal_sandboxed(pid_t monitor, bool orphaned, int sig)
{
	pid_t inits[4], cmds[64];
	size_t ni = children_of(orphaned ? getpid() : monitor, inits, 4);
	for (size_t i = 0; i < ni; i++) {
		size_t nc = children_of(inits[i], cmds, 64);
		for (size_t k = 0; k < nc; k++)
			kill(cmds[k], sig);
	}
}

static volatile sig_atomic_t forward;

static void on_signal(int sig)
{
	if (sig == SIGTERM || sig == SIGHUP)
		forward = sig;
}

/*
 * Start C as posix_spawnp would (signals SIGS default, in C->cwd), but with OV's writable layer mounted
 * over the image's root for it first (bubblewrap's "--ro-bind ROOT /" becomes "--bind LAYER /"); when the
 * layer cannot be mounted, with the read-only root and a warning that says why. 0 with *pid, or an errno.
 */
static int spawn_layered(pid_t *pid, const struct predict_command *c, const struct exec_overlay *ov,
                         const int *sigs, size_t nsigs)
{
	size_t n = 0;
	while (c->argv[n])
		n++;
	_cleanup_free_ char **argv = calloc(n + 1, sizeof(*argv));
	int fds[2];
	if (!argv || pipe2(fds, O_CLOEXEC) < 0)
		return errno ? errno : ENOMEM;
	memcpy(argv, c->argv, n * sizeof(*argv));
	for (size_t i = 0; i + 2 < n; i++)
		if (strcmp(argv[i], "--ro-bind") == 0 && strcmp(argv[i + 1], ov->lower) == 0 &&
		    strcmp(argv[i + 2], "/") == 0) {
			argv[i] = "--bind";
			argv[i + 1] = ov->merged;
			break;
		}
	fflush(NULL);
	*pid = fork();
	if (*pid < 0) {
		int e = errno;
		close(fds[0]);
		close(fds[1]);
		return e;
	}
	if (*pid == 0) {
		for (size_t i = 0; i < nsigs; i++)
			signal(sigs[i], SIG_DFL);
		char why[256];
		char *const *use = argv;
		if (exec_overlay_enter(ov, why, sizeof(why)) < 0) {
			warnf("the image's root is read-only for this command (its writable layer: %s)", why);
			use = c->argv;
		}
		int e = c->cwd && chdir(c->cwd) < 0 ? errno : 0;
		if (!e) {
			execvpe(use[0], use, c->envp);
			e = errno;
		}
		(void)!write(fds[1], &e, sizeof(e));
		_exit(127);
	}
	close(fds[1]);
	int e = 0;
	ssize_t got = read(fds[0], &e, sizeof(e));
	close(fds[0]);
	if (got == (ssize_t)sizeof(e) && e) {
		while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
			;
		return e;
	}
	return 0;
}

/* Run C attached to this terminal and wait for it: its exit status (128 + N for signal N), or the status of
 * a command that could not be run. Ctrl-C reaches the command (it shares the terminal's process group);
 * SIGTERM and SIGHUP sent to kiln are passed on to it. SANDBOXED: C is bubblewrap's (see below); OV (NULL:
 * none) the writable layer over its root. */
static int run(const struct predict_command *c, bool sandboxed, const struct exec_overlay *ov)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t dfl;
	sigemptyset(&dfl);
	int sigs[] = {SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGPIPE};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&dfl, sigs[i]);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
	if (c->cwd)
		posix_spawn_file_actions_addchdir_np(&fa, c->cwd);
	struct sigaction sa = {.sa_handler = on_signal}, old[5];
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < 4; i++)
		sigaction(sigs[i], &sa, &old[i]);
	fflush(NULL);
	/* the sandbox's init outlives bubblewrap's monitor: it is reparented to kiln, which reaps it */
	if (sandboxed)
		prctl(PR_SET_CHILD_SUBREAPER, 1);
	pid_t pid;
	int rc = ov ? spawn_layered(&pid, c, ov, sigs, sizeof(sigs) / sizeof(sigs[0]))
	            : posix_spawnp(&pid, c->argv[0], &fa, &attr, c->argv, c->envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	/* bubblewrap's monitor dies of the terminal's Ctrl-C while the command may live on (as a shell or
	 * Python does): the sandbox's init is then kiln's child (a subreaper's), its status the command's */
	int status = -1;
	bool orphaned = false;
	while (rc == 0) {
		int st;
		pid_t got = waitpid(orphaned ? -1 : pid, &st, 0);
		if (got < 0) {
			if (errno != EINTR)
				break;
			if (forward && sandboxed)
				signal_sandboxed(pid, orphaned, forward);
			else if (forward)
				kill(pid, forward);
			forward = 0;
			continue;
		}
		status = st;
		if (!(sandboxed && !orphaned && WIFSIGNALED(st)))
			break;
		orphaned = true;
	}
	/* what the monitor leaves: the sandbox's init, exiting (no zombie for this machine's init) */
	while (sandboxed && rc == 0 && (waitpid(-1, NULL, 0) > 0 || errno == EINTR))
		;
	for (size_t i = 0; i < 4; i++)
		sigaction(sigs[i], &old[i], NULL);
	if (rc != 0) {
		bool missing = rc == ENOENT;
		errorf("cannot run '%s': %s", c->argv[0],
		       !missing                  ? (rc == EACCES ? "permission denied" : strerror(rc))
		       : strchr(c->argv[0], '/') ? "no such file or directory"
		                                 : "executable file not found in $PATH");
		return missing ? EXIT_NOT_FOUND : EXIT_NOT_EXECUTABLE;
	}
	if (status < 0)
		return EXIT_FAIL;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#define SHORTOPTS ":e:f:p:" CLI_COMMON_SHORT

/* How many of ARGV's words (ARGC, the first the command's name) are arguments, not options (SHORTOPTS,
 * LONGOPTS) or their values. */
static int positionals(int argc, char **argv, const char *shortopts, const struct option *longopts)
{
	int n = 0;
	for (int i = 1; i < argc; i++) {
		const char *w = argv[i];
		if (w[0] != '-' || !w[1]) {
			n++;
		} else if (w[1] == '-') {
			size_t len = strcspn(w + 2, "=");
			for (const struct option *o = longopts; o->name; o++)
				if (strlen(o->name) == len && strncmp(o->name, w + 2, len) == 0 &&
				    o->has_arg == required_argument && !w[2 + len])
					i++; /* its value */
		} else {
			for (const char *c = w + 1; *c; c++) {
				const char *o = strchr(shortopts, *c);
				if (o && *c != ':' && o[1] == ':') {
					i += !c[1]; /* "-e A=1", not "-eA=1" */
					break;
				}
			}
		}
	}
	return n;
}

int cmd_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"env", required_argument, NULL, 'e'},
	    {"file", required_argument, NULL, 'f'},
	    {"gpus", required_argument, NULL, OPT_GPUS},
	    {"publish", required_argument, NULL, 'p'},
	    {"runtime", required_argument, NULL, OPT_RUNTIME},
	    CLI_REGISTRY_LONG,
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	struct kiln_registry_options ropt;
	kiln_registry_options_init(&ropt);
	ropt.cancel = &cli_interrupted;
	struct exec_args a = {.runtime = RUNTIME_AUTO};
	/* kiln exec [PROJECT | IMAGE] [options] -- COMMAND...: what comes before "--" is kiln's; without it,
	 * cog exec's line: options, then the command, unless its first word is a project and more follow */
	int dd = 1;
	while (dd < argc && strcmp(argv[dd], "--") != 0)
		dd++;
	if (dd < argc && positionals(dd, argv, SHORTOPTS, longopts) > 1)
		dd = argc;         /* cog exec python train.py -- --lr 1: the "--" is the command's */
	const char *target = NULL; /* none given: the current directory's project, or the one above it */
	char **cmd = NULL;
	int first, status;
	if (dd < argc) {
		status = cli_parse(dd, argv, SHORTOPTS, longopts, &ropt, exec_option, &a, 0, 1, &first);
		if (status < 0 && dd + 1 == argc)
			status = cli_usage_error("missing COMMAND after '--'");
		if (status < 0 && first < dd)
			target = argv[first];
		cmd = argv + dd + 1;
	} else {
		status =
		    cli_parse(argc, argv, "+" SHORTOPTS, longopts, &ropt, exec_option, &a, 0, argc, &first);
		if (status < 0 && first >= argc)
			status = cli_usage_error("missing COMMAND");
		/* a project's options follow it: kiln exec DIR -e A=1 python */
		if (status < 0 && cli_is_project(argv[first])) {
			target = argv[first];
			int more;
			status = cli_parse(argc - first, argv + first, "+" SHORTOPTS, longopts, &ropt,
			                   exec_option, &a, 0, argc, &more);
			first += status < 0 ? more : 0;
			if (status < 0 && first >= argc)
				status = cli_usage_error("missing COMMAND after the project '%s'", target);
		}
		cmd = argv + first;
	}
	target = cli_project_dir(target, a.file);
	_cleanup_error_ struct kiln_error *err = NULL;
	_cleanup_error_ struct kiln_error *ov_err = NULL;
	json_t *config = NULL;
	struct kiln_store *store = NULL;
	struct predict_runtime rt = {.pid = -1};
	struct predict_command c = {0};
	if (status >= 0)
		goto out;
	cli_catch_signals();
	status = EXIT_FAIL;
	char digest[KILN_DIGEST_LEN];
	struct stat st;
	bool dir = stat(target, &st) == 0 && S_ISDIR(st.st_mode);
	char project[PATH_MAX];
	if (dir && !realpath(target, project)) {
		kiln_error_errno(&err, errno, "cannot resolve '%s'", target);
		goto out;
	}
	if (kiln_store_open(&store, NULL, &err) < 0 ||
	    predict_resolve_image(store, target, a.file, &ropt, digest, &config, &err) < 0 ||
	    predict_runtime_prepare(&rt, store, digest, config, a.runtime, &ropt, &err) < 0)
		goto out;
	if (rt.kind == RUNTIME_BWRAP) {
		/* the project's mount point in the image's root (made by name: a link there is left alone) */
		const char *w = predict_runtime_workdir(config);
		_cleanup_close_ int rootfd = open(rt.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dir && rootfd >= 0 && !strchr(w + 1, '/'))
			mkdirat(rootfd, w + 1, 0755);
		if ((status = check_command(rt.root, config, dir ? project : NULL, cmd[0])) != 0)
			goto out;
	}
	if (predict_runtime_command(&c, &rt, config, dir ? project : NULL, true, a.envs, a.n, cmd, &err) <
	    0) {
		status = EXIT_FAIL;
		goto out;
	}
	struct exec_overlay ov = {0};
	bool layered = rt.kind == RUNTIME_BWRAP && exec_overlay_prepare(&ov, store, rt.root, &ov_err) == 0;
	if (rt.kind == RUNTIME_BWRAP && !layered)
		warnf("the image's root is read-only for this command (its writable layer: %s)",
		      ov_err->message);
	status = run(&c, rt.kind == RUNTIME_BWRAP, layered ? &ov : NULL);
	exec_overlay_release(&ov);
out:
	if (err)
		status = cli_fail(err);
	predict_command_release(&c);
	predict_runtime_stop(&rt, false);
	json_decref(config);
	kiln_store_free(store);
	free(a.envs);
	free(a.owned[0]);
	free(a.owned[1]);
	return status;
}
