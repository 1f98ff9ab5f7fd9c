/* SPDX-License-Identifier: Apache-2.0 */
/* auth.c: registry credentials from the environment, Docker's config.json and docker-credential helpers. */
#include "registry/auth.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "registry/http.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DOCKER_HUB_KEY    "https://index.docker.io/v1/"
#define MAX_CONFIG_SIZE   (4 * 1024 * 1024)
#define MAX_HELPER_OUTPUT (1024 * 1024)

extern char **environ;

static bool is_docker_hub(const char *host, size_t n)
{
	static const char *const names[] = {"docker.io", "index.docker.io", "registry-1.docker.io"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == n && strncasecmp(host, names[i], n) == 0)
			return true;
	return false;
}

const char *kiln_auth_config_key(const char *host)
{
	return is_docker_hub(host, strlen(host)) ? DOCKER_HUB_KEY : host;
}

/* Whether a config.json key ("HOST", "https://HOST", "HOST/v1/", Docker Hub's URL) names HOST. */
static bool key_matches(const char *key, const char *host)
{
	const char *k = key;
	if (strncasecmp(k, "https://", 8) == 0)
		k += 8;
	else if (strncasecmp(k, "http://", 7) == 0)
		k += 7;
	size_t n = strcspn(k, "/");
	size_t hn = strlen(host);
	if (is_docker_hub(host, hn))
		return is_docker_hub(k, n);
	return n == hn && strncasecmp(k, host, n) == 0;
}

/* The member of OBJ whose key names HOST: the exact config key first, then any matching form. */
static json_t *find_entry(json_t *obj, const char *host, const char **key_out)
{
	if (!json_is_object(obj))
		return NULL;
	const char *want = kiln_auth_config_key(host);
	json_t *v = json_object_get(obj, want);
	if (v) {
		if (key_out)
			*key_out = want;
		return v;
	}
	const char *key;
	json_object_foreach(obj, key, v)
	{
		if (key_matches(key, host)) {
			if (key_out)
				*key_out = key;
			return v;
		}
	}
	return NULL;
}

char *kiln_auth_config_path(void)
{
	const char *f = getenv("REGISTRY_AUTH_FILE");
	if (f && *f)
		return strdup(f);
	const char *d = getenv("DOCKER_CONFIG");
	if (d && *d)
		return kiln_path_join(d, "config.json");
	const char *home = getenv("HOME");
	if (home == NULL || *home == '\0') {
		struct passwd *pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : "/";
	}
	_cleanup_free_ char *dir = kiln_path_join(home, ".docker");
	return dir ? kiln_path_join(dir, "config.json") : NULL;
}

/* Docker's own config file (what REGISTRY_AUTH_FILE overrides): $DOCKER_CONFIG or ~/.docker. */
static char *docker_config_path(void)
{
	const char *saved = getenv("REGISTRY_AUTH_FILE");
	if (saved == NULL || *saved == '\0')
		return kiln_auth_config_path();
	const char *d = getenv("DOCKER_CONFIG");
	if (d && *d)
		return kiln_path_join(d, "config.json");
	const char *home = getenv("HOME");
	if (home == NULL || *home == '\0') {
		struct passwd *pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : "/";
	}
	_cleanup_free_ char *dir = kiln_path_join(home, ".docker");
	return dir ? kiln_path_join(dir, "config.json") : NULL;
}

/* Load a config file: *out NULL when it does not exist; an object otherwise (KILN_EINVAL when not JSON). */
static int load_config(json_t **out, const char *path, struct kiln_error **err)
{
	*out = NULL;
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	if (kiln_read_file(&data, &len, path, MAX_CONFIG_SIZE, err) < 0) {
		if (err && *err && (*err)->code == KILN_ENOTFOUND) {
			kiln_error_free(*err);
			*err = NULL;
			return 0;
		}
		return err && *err ? (*err)->code : KILN_EIO;
	}
	if (len == 0) {
		*out = json_object();
		return 0;
	}
	json_error_t je;
	json_t *j = json_loadb(data, len, 0, &je);
	if (j == NULL)
		return kiln_error_set(err, KILN_EINVAL, "cannot read '%s': %s at line %d column %d", path,
		                      je.text, je.line, je.column);
	if (!json_is_object(j)) {
		json_decref(j);
		return kiln_error_set(err, KILN_EINVAL, "cannot read '%s': not a JSON object", path);
	}
	*out = j;
	return 0;
}

/* Write all of INPUT to FD without dying of SIGPIPE when the helper does not read it. */
static void write_input(int fd, const char *input)
{
	sigset_t pipe_set, old;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	kiln_write_all(fd, input, strlen(input));
	sigset_t pending;
	sigpending(&pending);
	if (sigismember(&pending, SIGPIPE) && !sigismember(&old, SIGPIPE)) {
		struct timespec zero = {0, 0};
		sigtimedwait(&pipe_set, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/*
 * Run `docker-credential-NAME ACTION` with INPUT on its stdin; its stdout goes to *output (trimmed) and its
 * exit status to *status. Fails (with a message naming the helper) only when it cannot be started.
 */
static int run_helper(const char *name, const char *action, const char *input, char **output, int *status,
                      struct kiln_error **err)
{
	*output = NULL;
	_cleanup_free_ char *prog = NULL;
	if (asprintf(&prog, "docker-credential-%s", name) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return kiln_error_errno(err, errno, "cannot run credential helper '%s'", prog);
	if (pipe2(out, O_CLOEXEC) < 0) {
		int e = errno;
		close(in[0]);
		close(in[1]);
		return kiln_error_errno(err, e, "cannot run credential helper '%s'", prog);
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	char *argv[] = {prog, (char *)action, NULL};
	pid_t pid;
	int rc = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	if (rc != 0) {
		close(in[1]);
		close(out[0]);
		if (rc == ENOENT)
			return kiln_error_set(err, KILN_ENOTFOUND,
			                      "credential helper '%s' is not installed (not found in PATH)",
			                      prog);
		return kiln_error_errno(err, rc, "cannot run credential helper '%s'", prog);
	}
	write_input(in[1], input);
	close(in[1]);
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	char chunk[4096];
	for (;;) {
		ssize_t n = read(out[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (b.len + (size_t)n <= MAX_HELPER_OUTPUT)
			kiln_buf_put(&b, chunk, (size_t)n);
	}
	close(out[0]);
	int ws = 0;
	while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
		;
	*status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + (WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
	/* 127 and no output: the program could not be executed after all (vfork-less spawns, valgrind) */
	if (*status == 127 && b.len == 0)
		return kiln_error_set(err, KILN_ENOTFOUND,
		                      "credential helper '%s' is not installed (not found in PATH)", prog);
	char *s = kiln_buf_detach(&b);
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
	*output = s;
	return 0;
}

static bool says_not_found(const char *output)
{
	return strstr(output, "credentials not found") != NULL;
}

/* The first line of a helper's message, for an error (helpers print errors, never secrets, there). */
static int helper_failed(struct kiln_error **err, const char *name, const char *action, int status,
                         const char *output)
{
	size_t n = strcspn(output, "\n");
	if (n > 200)
		n = 200;
	return kiln_error_set(err, KILN_EFAIL, "docker-credential-%s %s failed (exit status %d)%s%.*s", name,
	                      action, status, n ? ": " : "", (int)n, output);
}

/* `docker-credential-NAME get` for HOST: *found false when the helper has nothing for it. */
static int helper_get(struct kiln_credentials *out, bool *found, const char *name, const char *host,
                      struct kiln_error **err)
{
	*found = false;
	_cleanup_free_ char *output = NULL;
	int status = 0;
	if (run_helper(name, "get", kiln_auth_config_key(host), &output, &status, err) < 0)
		return (*err)->code;
	if (status != 0) {
		if (says_not_found(output))
			return 0;
		return helper_failed(err, name, "get", status, output);
	}
	json_error_t je;
	json_t *j = json_loads(output, 0, &je);
	const char *user = json_string_value(json_object_get(j, "Username"));
	const char *secret = json_string_value(json_object_get(j, "Secret"));
	if (user == NULL || secret == NULL) {
		json_decref(j);
		explicit_bzero(output, strlen(output));
		return kiln_error_set(err, KILN_EINVAL,
		                      "docker-credential-%s get returned no Username and Secret for %s", name,
		                      host);
	}
	out->username = strdup(user);
	out->secret = strdup(secret);
	json_decref(j);
	explicit_bzero(output, strlen(output));
	if (out->username == NULL || out->secret == NULL) {
		kiln_credentials_release(out);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	*found = true;
	return 0;
}

/* The credential helper configured for HOST in CONFIG (credHelpers, else credsStore), or NULL. */
static const char *helper_for(json_t *config, const char *host)
{
	const char *h = json_string_value(find_entry(json_object_get(config, "credHelpers"), host, NULL));
	if (h && *h)
		return h;
	h = json_string_value(json_object_get(config, "credsStore"));
	return h && *h ? h : NULL;
}

/* Credentials from one auths entry: "auth" (base64 user:password), username/password, identitytoken. */
static int from_auths_entry(struct kiln_credentials *out, bool *found, json_t *entry, const char *path,
                            const char *host, struct kiln_error **err)
{
	*found = false;
	const char *auth = json_string_value(json_object_get(entry, "auth"));
	const char *user = json_string_value(json_object_get(entry, "username"));
	const char *pass = json_string_value(json_object_get(entry, "password"));
	const char *token = json_string_value(json_object_get(entry, "identitytoken"));
	if (auth && *auth) {
		_cleanup_free_ char *plain = NULL;
		size_t len = 0;
		if (kiln_base64_decode(&plain, &len, auth) < 0 || strlen(plain) != len ||
		    !strchr(plain, ':')) {
			if (plain)
				explicit_bzero(plain, len);
			return kiln_error_set(
			    err, KILN_EINVAL,
			    "cannot read credentials for %s in '%s': \"auth\" is not base64 of "
			    "user:password",
			    host, path);
		}
		char *colon = strchr(plain, ':');
		out->username = strndup(plain, (size_t)(colon - plain));
		out->secret = strdup(colon + 1);
		explicit_bzero(plain, len);
	} else if (user && pass) {
		out->username = strdup(user);
		out->secret = strdup(pass);
	} else {
		/* nothing usable (Docker writes {} for hosts whose secrets live in credsStore) */
	}
	if (token && *token) {
		/* An identity token replaces the password: the registry's token server takes it as a refresh
		 * token. */
		free(out->secret);
		out->secret = strdup(token);
		if (out->username == NULL)
			out->username = strdup("<token>");
	}
	if (out->username == NULL && out->secret == NULL)
		return 0;
	if (out->username == NULL || out->secret == NULL) {
		kiln_credentials_release(out);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	*found = true;
	return 0;
}

/* Credentials for HOST from the config file PATH; *found false when it has none (or does not exist). */
static int from_config(struct kiln_credentials *out, bool *found, const char *path, const char *host,
                       struct kiln_error **err)
{
	*found = false;
	json_t *config = NULL;
	if (load_config(&config, path, err) < 0)
		return (*err)->code;
	if (config == NULL)
		return 0;
	int rc = 0;
	const char *helper = helper_for(config, host);
	if (helper) {
		rc = helper_get(out, found, helper, host, err);
		if (rc < 0)
			kiln_error_wrap(err, "cannot get credentials for %s (credential helper from '%s')",
			                host, path);
	}
	if (rc == 0 && !*found) {
		json_t *entry = find_entry(json_object_get(config, "auths"), host, NULL);
		if (entry)
			rc = from_auths_entry(out, found, entry, path, host, err);
	}
	json_decref(config);
	return rc;
}

int kiln_auth_get(struct kiln_credentials *out, const char *host, struct kiln_error **err)
{
	out->username = NULL;
	out->secret = NULL;
	const char *u = getenv("KILN_REGISTRY_USERNAME");
	const char *p = getenv("KILN_REGISTRY_PASSWORD");
	bool has_u = u && *u, has_p = p && *p;
	if (has_u != has_p)
		return kiln_error_set(
		    err, KILN_EINVAL,
		    "KILN_REGISTRY_USERNAME and KILN_REGISTRY_PASSWORD must be set together");
	if (has_u) {
		out->username = strdup(u);
		out->secret = strdup(p);
		if (out->username == NULL || out->secret == NULL) {
			kiln_credentials_release(out);
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		}
		return 0;
	}
	bool found = false;
	const char *auth_file = getenv("REGISTRY_AUTH_FILE");
	if (auth_file && *auth_file) {
		if (from_config(out, &found, auth_file, host, err) < 0)
			return (*err)->code;
		if (found)
			return 0;
	}
	_cleanup_free_ char *path = docker_config_path();
	if (path == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (from_config(out, &found, path, host, err) < 0)
		return (*err)->code;
	return 0;
}

void kiln_credentials_release(struct kiln_credentials *c)
{
	if (c == NULL)
		return;
	if (c->secret)
		explicit_bzero(c->secret, strlen(c->secret));
	free(c->username);
	free(c->secret);
	c->username = NULL;
	c->secret = NULL;
}

/* Write CONFIG to PATH atomically with mode 0600 (a temporary file beside it, fsync, rename). */
static int save_config(const char *path, json_t *config, struct kiln_error **err)
{
	_cleanup_free_ char *dir_copy = strdup(path);
	if (dir_copy == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	const char *dir = dirname(dir_copy);
	struct stat st;
	if (stat(dir, &st) < 0) {
		if (kiln_mkdir_p(dir, err) < 0)
			return (*err)->code;
		chmod(dir, 0700);
	}
	_cleanup_free_ char *data = json_dumps(config, JSON_INDENT(8));
	_cleanup_free_ char *tmp = NULL;
	if (data == NULL || asprintf(&tmp, "%s.tmp-XXXXXX", path) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot write '%s'", path);
	size_t len = strlen(data);
	if (fchmod(fd, 0600) < 0 || kiln_write_all(fd, data, len) < 0 || kiln_write_all(fd, "\n", 1) < 0 ||
	    fsync(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		return kiln_error_errno(err, e, "cannot write '%s'", path);
	}
	explicit_bzero(data, len);
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return kiln_error_errno(err, e, "cannot write '%s'", path);
	}
	return kiln_fsync_parent(path, err);
}

/* The config to change for store/erase: the file's object, or a new one when it does not exist yet. */
static int config_for_update(json_t **out, char **path_out, struct kiln_error **err)
{
	*out = NULL;
	*path_out = kiln_auth_config_path();
	if (*path_out == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (load_config(out, *path_out, err) < 0)
		return (*err)->code;
	if (*out == NULL && (*out = json_object()) == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	return 0;
}

/* CONFIG's "auths" object, created when missing. */
static json_t *auths_of(json_t *config)
{
	json_t *auths = json_object_get(config, "auths");
	if (!json_is_object(auths)) {
		auths = json_object();
		json_object_set_new(config, "auths", auths);
	}
	return auths;
}

int kiln_auth_store(const char *host, const struct kiln_credentials *cred, struct kiln_error **err)
{
	if (cred->username == NULL || cred->secret == NULL)
		return kiln_error_set(err, KILN_EINVAL,
		                      "cannot store credentials for %s: no username or password", host);
	json_t *config = NULL;
	_cleanup_free_ char *path = NULL;
	if (config_for_update(&config, &path, err) < 0) {
		json_decref(config);
		return kiln_error_wrap(err, "cannot store credentials for %s", host);
	}
	const char *key = kiln_auth_config_key(host);
	const char *helper = helper_for(config, host);
	int rc = 0;
	json_t *auths = auths_of(config);
	if (helper) {
		json_t *req = json_pack("{s:s, s:s, s:s}", "ServerURL", key, "Username", cred->username,
		                        "Secret", cred->secret);
		char *input = req ? json_dumps(req, JSON_COMPACT) : NULL;
		json_decref(req);
		_cleanup_free_ char *output = NULL;
		int status = 0;
		if (input == NULL) {
			rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
		} else {
			rc = run_helper(helper, "store", input, &output, &status, err);
			explicit_bzero(input, strlen(input));
			free(input);
		}
		if (rc == 0 && status != 0)
			rc = helper_failed(err, helper, "store", status, output);
		/* As Docker does: an empty entry lists the host, the secret stays in the helper. */
		if (rc == 0 && !json_object_get(json_object_get(config, "credHelpers"), key)) {
			json_object_set_new(auths, key, json_object());
			rc = save_config(path, config, err);
		}
	} else {
		_cleanup_free_ char *basic = kiln_http_basic(cred->username, cred->secret);
		if (basic == NULL) {
			rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
		} else {
			/* kiln_http_basic gives "Basic <base64>": config.json keeps the base64 part. */
			json_object_set_new(auths, key, json_pack("{s:s}", "auth", basic + 6));
			explicit_bzero(basic, strlen(basic));
			rc = save_config(path, config, err);
		}
	}
	json_decref(config);
	if (rc < 0)
		return kiln_error_wrap(err, "cannot store credentials for %s", host);
	return 0;
}

int kiln_auth_erase(const char *host, struct kiln_error **err)
{
	json_t *config = NULL;
	_cleanup_free_ char *path = NULL;
	if (config_for_update(&config, &path, err) < 0) {
		json_decref(config);
		return kiln_error_wrap(err, "cannot remove credentials for %s", host);
	}
	bool removed = false;
	int rc = 0;
	const char *helper = helper_for(config, host);
	if (helper) {
		_cleanup_free_ char *output = NULL;
		int status = 0;
		rc = run_helper(helper, "erase", kiln_auth_config_key(host), &output, &status, err);
		if (rc == 0 && status == 0)
			removed = true;
		else if (rc == 0 && !says_not_found(output))
			rc = helper_failed(err, helper, "erase", status, output);
	}
	json_t *auths = json_object_get(config, "auths");
	const char *key;
	json_t *v;
	void *tmp;
	bool changed = false;
	if (rc == 0 && json_is_object(auths)) {
		json_object_foreach_safe(auths, tmp, key, v)
		{
			if (key_matches(key, host)) {
				json_object_del(auths, key);
				changed = true;
			}
		}
	}
	if (rc == 0 && changed)
		rc = save_config(path, config, err);
	json_decref(config);
	if (rc < 0)
		return kiln_error_wrap(err, "cannot remove credentials for %s", host);
	if (!removed && !changed)
		return kiln_error_set(err, KILN_ENOTFOUND, "not logged in to %s", host);
	return 0;
}
