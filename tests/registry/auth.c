/* SPDX-License-Identifier: Apache-2.0 */
/* tests/registry/auth.c: credentials from the environment, config.json and a real credential helper. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fs.h"
#include "registry/auth.h"

static char *tmp;
static char docker_dir[4096];
static char cred_file[4096];

/* A fresh HOME with an empty ~/.docker, the fake helper on PATH, no credential variables set. */
static void setup(void)
{
	tmp = strdup("/tmp/kiln-auth-XXXXXX");
	cr_assert(mkdtemp(tmp) != NULL);
	setenv("HOME", tmp, 1);
	snprintf(docker_dir, sizeof(docker_dir), "%s/.docker", tmp);
	cr_assert_eq(kiln_mkdir_p(docker_dir, NULL), 0);
	snprintf(cred_file, sizeof(cred_file), "%s/helper-store.json", tmp);
	setenv("KILNTEST_CRED_FILE", cred_file, 1);
	char path[8192];
	snprintf(path, sizeof(path), "%s/registry:%s", KILN_FIXTURES,
	         getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", path, 1);
	unsetenv("DOCKER_CONFIG");
	unsetenv("REGISTRY_AUTH_FILE");
	unsetenv("KILN_REGISTRY_USERNAME");
	unsetenv("KILN_REGISTRY_PASSWORD");
}

static void teardown(void)
{
	kiln_remove_tree(tmp, NULL);
	free(tmp);
}

TestSuite(auth, .init = setup, .fini = teardown);

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "cannot write %s", path);
	fputs(text, f);
	fclose(f);
}

/* Write ~/.docker/config.json. */
static void docker_config(const char *json)
{
	char path[8192];
	snprintf(path, sizeof(path), "%s/config.json", docker_dir);
	write_text(path, json);
}

static void expect_creds(const char *host, const char *user, const char *secret)
{
	struct kiln_credentials c = {0};
	struct kiln_error *err = NULL;
	int rc = kiln_auth_get(&c, host, &err);
	cr_assert_eq(rc, 0, "%s: %s", host, err ? err->message : "");
	if (user == NULL) {
		cr_assert_null(c.username, "%s: unexpected user %s", host, c.username);
		cr_assert_null(c.secret);
	} else {
		cr_assert_not_null(c.username, "%s: no credentials", host);
		cr_assert_str_eq(c.username, user);
		cr_assert_str_eq(c.secret, secret);
	}
	kiln_credentials_release(&c);
}

static json_t *load_json(const char *path)
{
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	cr_assert_not_null(j, "%s: %s", path, je.text);
	return j;
}

Test(auth, base64_auth_entry_gives_user_and_password)
{
	/* "alice:s3cret:with:colons" */
	docker_config("{\"auths\": {\"localhost:5000\": {\"auth\": \"YWxpY2U6czNjcmV0OndpdGg6Y29sb25z\"}}}");
	expect_creds("localhost:5000", "alice", "s3cret:with:colons");
	expect_creds("localhost:5001", NULL, NULL);
}

Test(auth, username_and_password_entry)
{
	docker_config("{\"auths\": {\"reg.example.com\": {\"username\": \"bob\", \"password\": \"pw\"}}}");
	expect_creds("reg.example.com", "bob", "pw");
}

Test(auth, identity_token_entry)
{
	docker_config("{\"auths\": {\"reg.example.com\": {\"identitytoken\": \"refresh-me\"}}}");
	expect_creds("reg.example.com", "<token>", "refresh-me");
}

Test(auth, docker_hub_uses_the_index_url_key)
{
	cr_assert_str_eq(kiln_auth_config_key("docker.io"), "https://index.docker.io/v1/");
	cr_assert_str_eq(kiln_auth_config_key("ghcr.io"), "ghcr.io");
	/* "carol:pw" */
	docker_config("{\"auths\": {\"https://index.docker.io/v1/\": {\"auth\": \"Y2Fyb2w6cHc=\"}}}");
	expect_creds("docker.io", "carol", "pw");
	expect_creds("index.docker.io", "carol", "pw");
	expect_creds("ghcr.io", NULL, NULL);
}

Test(auth, keys_with_scheme_or_path_match_the_host)
{
	docker_config("{\"auths\": {\"https://a.example.com\": {\"auth\": \"dTE6cDE=\"},"
	              " \"b.example.com/v1/\": {\"auth\": \"dTI6cDI=\"}}}");
	expect_creds("a.example.com", "u1", "p1");
	expect_creds("b.example.com", "u2", "p2");
	expect_creds("example.com", NULL, NULL);
}

Test(auth, no_config_file_means_no_credentials)
{
	expect_creds("localhost:5000", NULL, NULL);
	docker_config("{}");
	expect_creds("localhost:5000", NULL, NULL);
}

Test(auth, invalid_config_names_the_file_and_line)
{
	docker_config("{\n  \"auths\": {,\n}");
	struct kiln_credentials c = {0};
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_auth_get(&c, "localhost:5000", &err), 0);
	cr_assert(strstr(err->message, "config.json") && strstr(err->message, "line 2"), "%s", err->message);
	kiln_error_free(err);
}

Test(auth, bad_base64_is_an_error_without_the_secret)
{
	docker_config("{\"auths\": {\"localhost:5000\": {\"auth\": \"not base64 hunter2!\"}}}");
	struct kiln_credentials c = {0};
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_auth_get(&c, "localhost:5000", &err), KILN_EINVAL);
	cr_assert(strstr(err->message, "localhost:5000") && strstr(err->message, "base64"), "%s",
	          err->message);
	cr_assert_null(strstr(err->message, "hunter2"), "%s", err->message);
	kiln_error_free(err);
}

Test(auth, cred_helpers_run_the_helper)
{
	write_text(cred_file, "{\"reg.example.com\": {\"Username\": \"dave\", \"Secret\": \"from-helper\"}}");
	docker_config(
	    "{\"credHelpers\": {\"reg.example.com\": \"kilntest\", \"other.example.com\": \"kilntest\"},"
	    " \"auths\": {\"reg.example.com\": {\"auth\": \"dTE6cDE=\"}}}");
	expect_creds("reg.example.com", "dave", "from-helper");
	/* the helper has nothing for it: "credentials not found" is no credentials, not an error */
	expect_creds("other.example.com", NULL, NULL);
}

Test(auth, creds_store_is_used_for_every_host)
{
	write_text(cred_file,
	           "{\"https://index.docker.io/v1/\": {\"Username\": \"erin\", \"Secret\": \"hub\"},"
	           " \"localhost:5000\": {\"Username\": \"frank\", \"Secret\": \"local\"}}");
	docker_config("{\"credsStore\": \"kilntest\", \"auths\": {\"https://index.docker.io/v1/\": {}}}");
	expect_creds("docker.io", "erin", "hub");
	expect_creds("localhost:5000", "frank", "local");
	expect_creds("ghcr.io", NULL, NULL);
}

Test(auth, missing_helper_binary_is_a_clear_error)
{
	docker_config("{\"credHelpers\": {\"reg.example.com\": \"nosuchhelper\"}}");
	struct kiln_credentials c = {0};
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_auth_get(&c, "reg.example.com", &err), 0);
	cr_assert(strstr(err->message, "docker-credential-nosuchhelper") &&
	              strstr(err->message, "not installed") && strstr(err->message, "reg.example.com"),
	          "%s", err->message);
	kiln_error_free(err);
}

Test(auth, registry_auth_file_comes_before_docker_config)
{
	char path[8192];
	snprintf(path, sizeof(path), "%s/auth.json", tmp);
	write_text(path, "{\"auths\": {\"localhost:5000\": {\"auth\": \"dTE6cDE=\"}}}");
	docker_config("{\"auths\": {\"localhost:5000\": {\"auth\": \"dTI6cDI=\"},"
	              " \"ghcr.io\": {\"auth\": \"dTI6cDI=\"}}}");
	setenv("REGISTRY_AUTH_FILE", path, 1);
	expect_creds("localhost:5000", "u1", "p1");
	/* a host the auth file does not know still comes from Docker's config */
	expect_creds("ghcr.io", "u2", "p2");
	char *p = kiln_auth_config_path();
	cr_assert_str_eq(p, path);
	free(p);
}

Test(auth, docker_config_variable_replaces_home)
{
	docker_config("{\"auths\": {\"localhost:5000\": {\"auth\": \"dTI6cDI=\"}}}");
	char dir[4096], path[8192];
	snprintf(dir, sizeof(dir), "%s/elsewhere", tmp);
	cr_assert_eq(kiln_mkdir_p(dir, NULL), 0);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	write_text(path, "{\"auths\": {\"localhost:5000\": {\"auth\": \"dTE6cDE=\"}}}");
	setenv("DOCKER_CONFIG", dir, 1);
	expect_creds("localhost:5000", "u1", "p1");
}

Test(auth, environment_variables_come_first)
{
	docker_config("{\"auths\": {\"localhost:5000\": {\"auth\": \"dTI6cDI=\"}}}");
	setenv("KILN_REGISTRY_USERNAME", "ci", 1);
	setenv("KILN_REGISTRY_PASSWORD", "ci-secret", 1);
	expect_creds("localhost:5000", "ci", "ci-secret");
	unsetenv("KILN_REGISTRY_PASSWORD");
	struct kiln_credentials c = {0};
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_auth_get(&c, "localhost:5000", &err), KILN_EINVAL);
	cr_assert(strstr(err->message, "KILN_REGISTRY_USERNAME") &&
	              strstr(err->message, "KILN_REGISTRY_PASSWORD"),
	          "%s", err->message);
	kiln_error_free(err);
}

Test(auth, store_and_erase_keep_other_keys_with_mode_0600)
{
	char path[8192];
	snprintf(path, sizeof(path), "%s/config.json", docker_dir);
	docker_config("{\"auths\": {\"other.example.com\": {\"auth\": \"dTE6cDE=\"}},"
	              " \"psFormat\": \"table {{.ID}}\", \"HttpHeaders\": {\"X-Test\": \"1\"}}");
	chmod(path, 0644);
	struct kiln_credentials c = {.username = "grace", .secret = "pa55:word"};
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_auth_store("localhost:5000", &c, &err), 0, "%s", err ? err->message : "");
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	json_t *j = load_json(path);
	cr_assert_str_eq(json_string_value(json_object_get(j, "psFormat")), "table {{.ID}}");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "HttpHeaders"), "X-Test")),
	                 "1");
	json_t *auths = json_object_get(j, "auths");
	cr_assert_not_null(json_object_get(auths, "other.example.com"));
	/* base64("grace:pa55:word") */
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(auths, "localhost:5000"), "auth")),
	                 "Z3JhY2U6cGE1NTp3b3Jk");
	json_decref(j);
	expect_creds("localhost:5000", "grace", "pa55:word");

	cr_assert_eq(kiln_auth_erase("localhost:5000", &err), 0, "%s", err ? err->message : "");
	expect_creds("localhost:5000", NULL, NULL);
	expect_creds("other.example.com", "u1", "p1");
	j = load_json(path);
	cr_assert_str_eq(json_string_value(json_object_get(j, "psFormat")), "table {{.ID}}");
	json_decref(j);
	cr_assert_eq(kiln_auth_erase("localhost:5000", &err), KILN_ENOTFOUND);
	cr_assert(strstr(err->message, "not logged in to localhost:5000"), "%s", err->message);
	kiln_error_free(err);
}

Test(auth, store_creates_the_config_file)
{
	char dir[4096], path[8192];
	snprintf(dir, sizeof(dir), "%s/new/dir", tmp);
	setenv("DOCKER_CONFIG", dir, 1);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	struct kiln_credentials c = {.username = "heidi", .secret = "x"};
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_auth_store("ghcr.io", &c, &err), 0, "%s", err ? err->message : "");
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	expect_creds("ghcr.io", "heidi", "x");
}

Test(auth, store_and_erase_go_through_the_helper)
{
	char path[8192];
	snprintf(path, sizeof(path), "%s/config.json", docker_dir);
	docker_config("{\"credHelpers\": {\"reg.example.com\": \"kilntest\"}}");
	struct kiln_credentials c = {.username = "ivan", .secret = "helper-secret"};
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_auth_store("reg.example.com", &c, &err), 0, "%s", err ? err->message : "");
	char *text = NULL;
	size_t len = 0;
	cr_assert_eq(kiln_read_file(&text, &len, path, 1 << 20, NULL), 0);
	cr_assert_null(strstr(text, "helper-secret"), "the secret went into config.json: %s", text);
	free(text);
	json_t *store = load_json(cred_file);
	cr_assert_str_eq(
	    json_string_value(json_object_get(json_object_get(store, "reg.example.com"), "Secret")),
	    "helper-secret");
	json_decref(store);
	expect_creds("reg.example.com", "ivan", "helper-secret");
	cr_assert_eq(kiln_auth_erase("reg.example.com", &err), 0, "%s", err ? err->message : "");
	expect_creds("reg.example.com", NULL, NULL);
	cr_assert_eq(kiln_auth_erase("reg.example.com", &err), KILN_ENOTFOUND);
	kiln_error_free(err);
}

Test(auth, failed_helper_store_does_not_show_the_password)
{
	docker_config("{\"credsStore\": \"kilntest\"}");
	unsetenv("KILNTEST_CRED_FILE"); /* the helper fails with its own message */
	struct kiln_credentials c = {.username = "judy", .secret = "Sup3rSecret!"};
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_auth_store("localhost:5000", &c, &err), 0);
	cr_assert(strstr(err->message, "docker-credential-kilntest store failed") &&
	              strstr(err->message, "KILNTEST_CRED_FILE is not set"),
	          "%s", err->message);
	cr_assert_null(strstr(err->message, "Sup3rSecret!"), "%s", err->message);
	kiln_error_free(err);
}
