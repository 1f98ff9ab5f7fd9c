/* SPDX-License-Identifier: Apache-2.0 */
/* schema.c: running the static OpenAPI schema generator at build time. */
#include "pkg/schema.h"
#include "common/json.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "layers/digest.h"

#include <dirent.h>
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

/* The generator's "warning: FILE:LINE: message" lines of E, as "FILE:LINE: message" strings. */
static json_t *warning_lines(const struct kiln_buf *e)
{
	json_t *list = json_array();
	for (const char *line = e->ptr; list && line && *line;) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		if (len > 9 && strncmp(line, "warning: ", 9) == 0) {
			_cleanup_free_ char *text = strndup(line + 9, len - 9);
			if (text)
				json_array_append_new(list, json_string(text));
		}
		line = end ? end + 1 : NULL;
	}
	return list;
}

int kiln_schema_generate(json_t **out, const char *python_dir, const char *dir, const char *predict,
                         const char *train, json_t **warnings, struct kiln_error **err)
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
	/* -S: no site module (the generator needs only the standard library; site's .pth files cost more
	 * than the generator), -B: no .pyc written next to the runner */
	char *argv[] = {(char *)python, "-S", "-B", script, (char *)predict, NULL, NULL, NULL};
	if (train) {
		argv[5] = "--train";
		argv[6] = (char *)train;
	}
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
	if (warnings && !(*warnings = warning_lines(&e))) {
		json_decref(*out);
		*out = NULL;
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	return 0;
}

static int is_schema_file(const struct dirent *d)
{
	size_t len = strlen(d->d_name);
	return strncmp(d->d_name, "kiln_schema", 11) == 0 && len > 3 &&
	       strcmp(d->d_name + len - 3, ".py") == 0;
}

/* Add NAME and the content digest of FILE to B ("-" for a file that cannot be read). Names, not paths: the
 * same predictor in another clone, or the installed generator, gives the same key. */
static void key_file(struct kiln_buf *b, const char *name, const char *file)
{
	char d[KILN_DIGEST_LEN];
	kiln_buf_printf(b, "%s %s\n", name, kiln_digest_file(d, file, NULL) == 0 ? d : "-");
}

/* Add REF ("FILE.py:NAME", relative to DIR) and its file's content digest to B. -1 when memory runs out. */
static int key_ref(struct kiln_buf *b, const char *dir, const char *ref)
{
	_cleanup_free_ char *file = strdup(ref);
	char *colon = file ? strrchr(file, ':') : NULL;
	if (colon)
		*colon = '\0';
	_cleanup_free_ char *path = file ? kiln_path_join(dir, file) : NULL;
	if (path == NULL)
		return -1;
	key_file(b, file, path);
	return 0;
}

/* The cache key: the generator's format, PREDICT, TRAIN, and the content of their files and of every file
 * of the generator (kiln_schema*.py, in name order). */
static int schema_key(char out[65], const char *python_dir, const char *dir, const char *predict,
                      const char *train)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	kiln_buf_printf(&b, "schema-v3 %s\n", predict);
	if (train)
		kiln_buf_printf(&b, "train %s\n", train);
	if (key_ref(&b, dir, predict) < 0 || (train && key_ref(&b, dir, train) < 0))
		return -1;
	struct dirent **names = NULL;
	int n = scandir(python_dir, &names, is_schema_file, alphasort);
	for (int i = 0; i < n; i++) {
		_cleanup_free_ char *f = kiln_path_join(python_dir, names[i]->d_name);
		if (f)
			key_file(&b, names[i]->d_name, f);
		free(names[i]);
	}
	free(names);
	char d[KILN_DIGEST_LEN];
	kiln_digest_buffer(d, b.ptr, b.len);
	memcpy(out, kiln_digest_hex(d), 65);
	return 0;
}

/* The user's cache file for KEY, or NULL. */
static char *user_cache_file(const char *key)
{
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	_cleanup_free_ char *base = xdg && *xdg     ? strdup(xdg)
	                            : home && *home ? kiln_path_join(home, ".cache")
	                                            : NULL;
	char *out = NULL;
	if (base == NULL || asprintf(&out, "%s/kiln-schema/%s.json", base, key) < 0)
		return NULL;
	return out;
}

/* A cache entry, {"schema": {...}, "warnings": [...]}, into *OUT and *WARNINGS (C taken): 0, or -1 when C
 * is not one. */
static int from_cache(json_t *c, json_t **out, json_t **warnings)
{
	json_t *schema = json_object_get(c, "schema"), *w = json_object_get(c, "warnings");
	if (!json_is_object(schema) || !json_is_array(w)) {
		json_decref(c);
		return -1;
	}
	*out = json_incref(schema);
	if (warnings)
		*warnings = json_incref(w);
	json_decref(c);
	return 0;
}

/* WARNINGS (the generator's, relative to DIR; taken) with DIR before each, or NULL when memory runs out. */
static json_t *in_dir(json_t *warnings, const char *dir)
{
	json_t *out = json_array();
	size_t i;
	json_t *w;
	json_array_foreach(warnings, i, w)
	{
		_cleanup_free_ char *full = kiln_path_join(dir, json_string_value(w));
		if (!out || !full || json_array_append_new(out, json_string(full)) < 0) {
			json_decref(out);
			out = NULL;
			break;
		}
	}
	json_decref(warnings);
	return out;
}

/* What kiln_schema_describe gives for *OUT and W (the warnings, relative to DIR; taken): 0, or -1. */
static int described(json_t **out, json_t *w, const char *dir, json_t **warnings, struct kiln_error **err)
{
	if (!warnings) {
		json_decref(w);
		return 0;
	}
	if (!(*warnings = in_dir(w, dir))) {
		json_decref(*out);
		*out = NULL;
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	return 0;
}

int kiln_schema_describe(json_t **out, struct kiln_store *s, const char *python_dir, const char *dir,
                         const char *predict, const char *train, json_t **warnings, struct kiln_error **err)
{
	char key[65];
	if (schema_key(key, python_dir, dir, predict, train) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	json_t *w = NULL;
	if (from_cache(kiln_store_cache_get(s, key), out, &w) == 0)
		return described(out, w, dir, warnings, err);
	_cleanup_free_ char *user = user_cache_file(key);
	json_t *c = user ? json_load_file(user, 0, NULL) : NULL;
	if (c && json_is_object(json_object_get(c, "schema")))
		kiln_store_cache_put(s, key, c, NULL);
	if (from_cache(c, out, &w) == 0)
		return described(out, w, dir, warnings, err);
	int rc = kiln_schema_generate(out, python_dir, dir, predict, train, &w, err);
	if (rc < 0)
		return rc;
	/* caches: failing to keep the schema is not an error; the warnings are kept relative to the project,
	 * the key being the same in another clone */
	json_auto_t *entry = json_pack("{s:O, s:O}", "schema", *out, "warnings", w);
	if (entry)
		kiln_store_cache_put(s, key, entry, NULL);
	_cleanup_free_ char *text = entry ? kiln_json_dumps(entry, JSON_COMPACT) : NULL;
	_cleanup_free_ char *parent = user ? strdup(user) : NULL;
	char *slash = parent ? strrchr(parent, '/') : NULL;
	if (slash)
		*slash = '\0';
	if (text && slash && kiln_mkdir_p(parent, NULL) == 0)
		kiln_write_file_atomic(user, text, strlen(text), NULL);
	return described(out, w, dir, warnings, err);
}
