/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sandbox.h: a command run inside an image's root filesystem under bubblewrap, for the build's steps
 * (system_packages, pre_install, build.run) and pip. The root is bound at /, with /proc, /dev, a fresh
 * /tmp, the host's network and its /etc/resolv.conf; as an ordinary user bubblewrap maps the user to
 * root in a new user namespace. No daemon.
 */
#ifndef KILN_SANDBOX_H
#define KILN_SANDBOX_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

struct kiln_sandbox_bind {
	const char *src;  /* a path on this machine */
	const char *dest; /* where it appears inside the root (absolute) */
	bool writable;    /* else read-only */
};

struct kiln_sandbox {
	const char *root;   /* the root filesystem, bound at / */
	bool root_writable; /* bound read-write (steps change it), else read-only */
	const struct kiln_sandbox_bind *binds;
	size_t nbinds;
	char *const *env;         /* the command's whole environment, "NAME=VALUE", NULL-ended */
	const char *workdir;      /* NULL: "/" */
	const char *const *redact; /* strings never shown (secret values), NULL-ended; may be NULL */
	/* Each line of output as it comes (progress; already redacted); may be NULL. */
	void (*on_output)(void *ctx, const char *line);
	void *ctx;
	volatile sig_atomic_t *cancel; /* when set, the command is killed and the run ends with KILN_EINTR */
	int stdin_fd; /* above 0: the command's standard input (a pipe or socket the caller writes); else
	               * /dev/null */
};

struct kiln_sandbox_result {
	int status; /* the exit status, or 128 + the signal that ended it */
	char *tail; /* the last lines of its output (stdout and stderr together, at most 4 KiB, redacted) */
};

/* 0 when bubblewrap is there and can make its namespaces here, else an error that says why. */
int kiln_sandbox_available(struct kiln_error **err);

/*
 * Run ARGV (argv[0] looked up in the root's PATH from ENV) in the sandbox and wait for it. Returns 0
 * when it ran, whatever its exit status (in RES); an error when it could not be started.
 */
int kiln_sandbox_run(const struct kiln_sandbox *sb, char *const *argv, struct kiln_sandbox_result *res,
                     struct kiln_error **err);
void kiln_sandbox_result_release(struct kiln_sandbox_result *res);

/*
 * The same in two halves, for a command that runs while the caller does something else:
 * kiln_sandbox_start starts it (SB must stay valid until the end), kiln_sandbox_wait reads its output
 * and waits for it (as kiln_sandbox_run), kiln_sandbox_stop kills it and waits. Both free *P.
 */
struct kiln_sandbox_proc;
int kiln_sandbox_start(struct kiln_sandbox_proc **p, const struct kiln_sandbox *sb, char *const *argv,
                       struct kiln_error **err);
int kiln_sandbox_wait(struct kiln_sandbox_proc *p, struct kiln_sandbox_result *res, struct kiln_error **err);
void kiln_sandbox_stop(struct kiln_sandbox_proc *p);

#endif
