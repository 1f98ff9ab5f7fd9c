/* SPDX-License-Identifier: Apache-2.0 */
/* sandbox.c: a command run in an image's root filesystem under bubblewrap, its output piped back. */
#include "pkg/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"

extern char **environ;

#define TAIL_MAX  4096
#define LINE_MAX_ 65536

/* A NULL-ended, growable array of strings (owned). */
struct argv_buf {
	char **v;
	size_t n, cap;
	bool failed;
};

static void argv_add(struct argv_buf *a, const char *s)
{
	if (a->failed)
		return;
	if (a->n + 2 > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		char **v = realloc(a->v, cap * sizeof(*v));
		if (v == NULL) {
			a->failed = true;
			return;
		}
		a->v = v;
		a->cap = cap;
	}
	if ((a->v[a->n] = strdup(s)) == NULL) {
		a->failed = true;
		return;
	}
	a->v[++a->n] = NULL;
}

static void argv_free(struct argv_buf *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	*a = (struct argv_buf){0};
}

/* Run ARGV (no shell) with its output discarded; its exit status, or -1 when it could not start. */
static int run_quietly(char *const *argv)
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return -1;
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int kiln_sandbox_available(struct kiln_error **err)
{
	char *const probe[] = {"bwrap", "--version", NULL};
	if (run_quietly(probe) != 0)
		return kiln_error_set(err, KILN_ENOTFOUND,
		                      "bubblewrap ('bwrap') is not installed: build steps run under it");
	char *const root[] = {"bwrap", "--ro-bind", "/", "/", "--unshare-pid", "--dev", "/dev", "true", NULL};
	char *const user[] = {"bwrap", "--ro-bind", "/",     "/", "--unshare-user",
	                      "--uid", "0",         "--gid", "0", "--unshare-pid",
	                      "--dev", "/dev",      "true",  NULL};
	if (run_quietly(geteuid() == 0 ? root : user) != 0)
		return kiln_error_set(
		    err, KILN_EFAIL,
		    geteuid() == 0 ? "bubblewrap cannot make namespaces here"
		                   : "bubblewrap cannot make namespaces here: build steps need unprivileged "
		                     "user namespaces (kernel.unprivileged_userns_clone) or root");
	return 0;
}

/* true when the root's PATH (absolute, inside ROOT) is a regular file or does not exist, not a link. */
static bool plain_or_absent(const char *root, const char *path)
{
	_cleanup_free_ char *p = NULL;
	if (asprintf(&p, "%s%s", root, path) < 0)
		return false;
	struct stat st;
	if (lstat(p, &st) < 0)
		return errno == ENOENT;
	return S_ISREG(st.st_mode);
}

/* bubblewrap's arguments for SB up to the command. */
static void sandbox_args(struct argv_buf *a, const struct kiln_sandbox *sb)
{
	argv_add(a, "bwrap");
	argv_add(a, sb->root_writable ? "--bind" : "--ro-bind");
	argv_add(a, sb->root);
	argv_add(a, "/");
	const char *const fixed[] = {
	    "--proc",        "/proc",
	    "--dev",         "/dev",
	    "--perms",       "1777", /* as a root's /tmp is: apt's _apt writes there */
	    "--tmpfs",       "/tmp",
	    "--unshare-pid", "--unshare-ipc",
	    "--unshare-uts", "--die-with-parent",
	    "--clearenv",    NULL};
	for (size_t i = 0; fixed[i]; i++)
		argv_add(a, fixed[i]);
	if (geteuid() != 0) {
		const char *const user[] = {"--unshare-user", "--uid", "0", "--gid", "0", NULL};
		for (size_t i = 0; user[i]; i++)
			argv_add(a, user[i]);
	}
	/* the host's resolver, for apt and pip; a read-only root only gets it where it has the file, and a
	 * link there (systemd's stub) is left alone rather than followed */
	struct stat st;
	_cleanup_free_ char *have = NULL;
	if (asprintf(&have, "%s/etc/resolv.conf", sb->root) >= 0 && stat("/etc/resolv.conf", &st) == 0 &&
	    plain_or_absent(sb->root, "/etc/resolv.conf") && (sb->root_writable || access(have, F_OK) == 0)) {
		_cleanup_free_ char *etc = NULL;
		if (asprintf(&etc, "%s/etc", sb->root) >= 0 && stat(etc, &st) == 0 && S_ISDIR(st.st_mode)) {
			argv_add(a, "--ro-bind");
			argv_add(a, "/etc/resolv.conf");
			argv_add(a, "/etc/resolv.conf");
		}
	}
	for (size_t i = 0; i < sb->nbinds; i++) {
		argv_add(a, sb->binds[i].writable ? "--bind" : "--ro-bind");
		argv_add(a, sb->binds[i].src);
		argv_add(a, sb->binds[i].dest);
	}
	argv_add(a, "--chdir");
	argv_add(a, sb->workdir ? sb->workdir : "/");
	for (char *const *e = sb->env; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		if (eq == NULL)
			continue;
		_cleanup_free_ char *name = strndup(*e, (size_t)(eq - *e));
		if (name == NULL) {
			a->failed = true;
			return;
		}
		argv_add(a, "--setenv");
		argv_add(a, name);
		argv_add(a, eq + 1);
	}
	argv_add(a, "--");
}

/* LINE with every redacted string replaced by "***" (a new string), or NULL when out of memory. */
static char *redact(const char *line, const char *const *secrets)
{
	struct kiln_buf b = KILN_BUF_INIT;
	for (const char *p = line; *p;) {
		size_t best = 0;
		for (const char *const *s = secrets; s && *s; s++) {
			size_t len = strlen(*s);
			if (len > best && strncmp(p, *s, len) == 0)
				best = len;
		}
		if (best > 0) {
			kiln_buf_puts(&b, "***");
			p += best;
		} else {
			kiln_buf_put(&b, p++, 1);
		}
	}
	kiln_buf_put(&b, "", 1);
	return kiln_buf_detach(&b);
}

/* The output as it is read: the partial line, and the tail kept. */
struct output {
	const struct kiln_sandbox *sb;
	struct kiln_buf line;
	struct kiln_buf tail;
};

/* One whole line of output: redacted, handed to the callback, and added to the tail. */
static void output_line(struct output *o)
{
	kiln_buf_put(&o->line, "", 1);
	_cleanup_free_ char *clean = redact(o->line.ptr, o->sb->redact);
	o->line.len = 0;
	if (clean == NULL)
		return;
	if (o->sb->on_output)
		o->sb->on_output(o->sb->ctx, clean);
	kiln_buf_puts(&o->tail, clean);
	kiln_buf_puts(&o->tail, "\n");
	if (o->tail.len > 2 * TAIL_MAX) { /* keep the last TAIL_MAX bytes, from a line's start */
		size_t from = o->tail.len - TAIL_MAX;
		while (from < o->tail.len && o->tail.ptr[from - 1] != '\n')
			from++;
		memmove(o->tail.ptr, o->tail.ptr + from, o->tail.len - from);
		o->tail.len -= from;
	}
}

static void output_take(struct output *o, const char *data, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (data[i] == '\n' || o->line.len >= LINE_MAX_) {
			output_line(o);
			if (data[i] == '\n')
				continue;
		}
		if (data[i] != '\r')
			kiln_buf_put(&o->line, &data[i], 1);
	}
}

/* The tail as a string of at most TAIL_MAX bytes (the caller's). */
static char *output_tail(struct output *o)
{
	if (o->line.len > 0)
		output_line(o);
	size_t from = o->tail.len > TAIL_MAX ? o->tail.len - TAIL_MAX : 0;
	while (from > 0 && from < o->tail.len && o->tail.ptr[from - 1] != '\n')
		from++;
	return strndup(o->tail.ptr ? o->tail.ptr + from : "", o->tail.len - from);
}

struct kiln_sandbox_proc {
	const struct kiln_sandbox *sb;
	pid_t pid;
	int out; /* the read end of its stdout and stderr */
};

int kiln_sandbox_start(struct kiln_sandbox_proc **out, const struct kiln_sandbox *sb, char *const *argv,
                       struct kiln_error **err)
{
	*out = NULL;
	struct argv_buf a = {0};
	sandbox_args(&a, sb);
	for (char *const *p = argv; *p; p++)
		argv_add(&a, *p);
	struct kiln_sandbox_proc *proc = calloc(1, sizeof(*proc));
	if (a.failed || proc == NULL) {
		argv_free(&a);
		free(proc);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		argv_free(&a);
		free(proc);
		return kiln_error_errno(err, errno, "cannot make a pipe");
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	if (sb->stdin_fd > 0)
		posix_spawn_file_actions_adddup2(&fa, sb->stdin_fd, 0);
	else
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
	posix_spawnattr_t at;
	posix_spawnattr_init(&at);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
	posix_spawnattr_setpgroup(&at, 0);
	int rc = posix_spawnp(&proc->pid, "bwrap", &fa, &at, a.v, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	argv_free(&a);
	close(pfd[1]);
	if (rc != 0) {
		close(pfd[0]);
		free(proc);
		return kiln_error_errno(err, rc, "cannot start 'bwrap'");
	}
	proc->sb = sb;
	proc->out = pfd[0];
	*out = proc;
	return 0;
}

int kiln_sandbox_wait(struct kiln_sandbox_proc *proc, struct kiln_sandbox_result *res,
                      struct kiln_error **err)
{
	*res = (struct kiln_sandbox_result){0};
	const struct kiln_sandbox *sb = proc->sb;
	pid_t pid = proc->pid;
	struct output o = {.sb = sb, .line = KILN_BUF_INIT, .tail = KILN_BUF_INIT};
	char buf[8192];
	bool cancelled = false;
	for (;;) {
		if (sb->cancel && *sb->cancel && !cancelled) {
			kill(-pid, SIGKILL);
			cancelled = true;
		}
		struct pollfd p = {.fd = proc->out, .events = POLLIN};
		int r = poll(&p, 1, 200);
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		ssize_t n = read(proc->out, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		output_take(&o, buf, (size_t)n);
	}
	close(proc->out);
	free(proc);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			status = 0;
			break;
		}
	res->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	res->tail = output_tail(&o);
	kiln_buf_release(&o.line);
	kiln_buf_release(&o.tail);
	if (cancelled || (sb->cancel && *sb->cancel))
		return kiln_error_set(err, KILN_EINTR, "interrupted");
	return 0;
}

void kiln_sandbox_stop(struct kiln_sandbox_proc *proc)
{
	if (proc == NULL)
		return;
	kill(-proc->pid, SIGKILL);
	close(proc->out);
	while (waitpid(proc->pid, NULL, 0) < 0 && errno == EINTR)
		;
	free(proc);
}

int kiln_sandbox_run(const struct kiln_sandbox *sb, char *const *argv, struct kiln_sandbox_result *res,
                     struct kiln_error **err)
{
	*res = (struct kiln_sandbox_result){0};
	struct kiln_sandbox_proc *p = NULL;
	if (kiln_sandbox_start(&p, sb, argv, err) < 0)
		return KILN_EFAIL;
	return kiln_sandbox_wait(p, res, err);
}

void kiln_sandbox_result_release(struct kiln_sandbox_result *res)
{
	if (res == NULL)
		return;
	free(res->tail);
	res->tail = NULL;
}
