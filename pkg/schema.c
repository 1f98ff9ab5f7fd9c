/* SPDX-License-Identifier: Apache-2.0 */
/* schema.c: running the static OpenAPI schema generator at build time. */
#include "pkg/schema.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define OUTPUT_MAX (16 << 20)

/* Read both pipes to their ends (stdout into OUT, stderr into ERRTEXT), at most OUTPUT_MAX each. */
static void drain(int out_fd, int err_fd, struct kiln_buf *out, struct kiln_buf *errtext)
{
	struct pollfd p[2] = {{.fd = out_fd, .events = POLLIN}, {.fd = err_fd, .events = POLLIN}};
	struct kiln_buf *dst[2] = {out, errtext};
	int open_fds = 2;
	char buf[1 << 16];
	while (open_fds > 0) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = read(p[i].fd, buf, sizeof(buf));
			if (n <= 0) {
				p[i].fd = -1;
				open_fds--;
			} else if (dst[i]->len < OUTPUT_MAX) {
				kiln_buf_put(dst[i], buf, (size_t)n);
			}
		}
	}
}

int kiln_schema_generate(json_t **out, const char *python_dir, const char *dir, const char *predict,
                         struct kiln_error **err)
{
	const char *python = getenv("KILN_PYTHON");
	if (python == NULL || *python == '\0')
		python = "python3";
	_cleanup_free_ char *script = kiln_path_join(python_dir, "kiln_schema.py");
	int op[2], ep[2];
	if (script == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (pipe2(op, O_CLOEXEC) < 0)
		return kiln_error_errno(err, errno, "cannot run the schema generator");
	if (pipe2(ep, O_CLOEXEC) < 0) {
		int e = errno;
		close(op[0]);
		close(op[1]);
		return kiln_error_errno(err, e, "cannot run the schema generator");
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, op[1], 1);
	posix_spawn_file_actions_adddup2(&fa, ep[1], 2);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addchdir_np(&fa, dir);
	char *argv[] = {(char *)python, "-B", script, (char *)predict, NULL};
	pid_t pid;
	int rc = posix_spawnp(&pid, python, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(op[1]);
	close(ep[1]);
	if (rc != 0) {
		close(op[0]);
		close(ep[0]);
		return kiln_error_set(err, KILN_ENOTFOUND, "cannot run '%s' to describe the predictor: %s",
		                      python, strerror(rc));
	}
	_cleanup_buf_ struct kiln_buf o = KILN_BUF_INIT;
	_cleanup_buf_ struct kiln_buf e = KILN_BUF_INIT;
	drain(op[0], ep[0], &o, &e);
	close(op[0]);
	close(ep[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 127)
		return kiln_error_set(err, KILN_ENOTFOUND, "cannot run '%s' to describe the predictor",
		                      python);
	if (WEXITSTATUS(status) != 0) {
		while (e.len > 0 && (e.ptr[e.len - 1] == '\n' || e.ptr[e.len - 1] == '\r'))
			e.ptr[--e.len] = '\0';
		const char *last = e.ptr ? strrchr(e.ptr, '\n') : NULL;
		return kiln_error_set(err, KILN_EINVAL, "%s",
		                      last    ? last + 1
		                      : e.ptr ? e.ptr
		                              : "the schema generator failed");
	}
	json_error_t je;
	*out = json_loadb(o.ptr ? o.ptr : "", o.len, 0, &je);
	if (*out == NULL)
		return kiln_error_set(err, KILN_EFAIL, "the schema generator printed no JSON: %s", je.text);
	return 0;
}
