/* SPDX-License-Identifier: Apache-2.0 */
/* tests/pkg/pip.c: the inputs key of the Python requirements: what changes it, and the errors. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "pkg/pip.h"

static char *dir;

static void make_dir(void)
{
	dir = strdup("/tmp/kiln-pip-XXXXXX");
	cr_assert(mkdtemp(dir) != NULL);
	unsetenv("PIP_INDEX_URL");
	setenv("HOME", dir, 1);
}

static void remove_dir(void)
{
	kiln_remove_tree(dir, NULL);
	free(dir);
}

TestSuite(pip, .init = make_dir, .fini = remove_dir);

static void put(const char *rel, const char *text)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	cr_assert_eq(kiln_write_file_atomic(p, text, strlen(text), NULL), 0);
}

/* The key of a manifest with requirements.txt, PACKAGE and OVERRIDES (either may be NULL); NULL and
 * *msg on an error. */
static char *key_of(const char *package, const char *overrides, char **msg)
{
	char *pkgs[] = {(char *)package};
	struct kiln_pos pos[] = {{7, 5}};
	struct kiln_manifest m = {
	    .dir = dir, .python_requirements = "requirements.txt", .python_overrides = (char *)overrides};
	if (package)
		m.python_packages = (struct kiln_strv){pkgs, pos, 1};
	static char out[65];
	struct kiln_error *err = NULL;
	if (kiln_pip_inputs_key(out, &m, &err) < 0) {
		*msg = strdup(err->message);
		kiln_error_free(err);
		return NULL;
	}
	return out;
}

static char *key(const char *package, char **msg)
{
	return key_of(package, NULL, msg);
}

Test(pip, key_follows_includes_packages_variables_and_local_wheels)
{
	char *msg = NULL;
	put("requirements.txt", "-r more.txt\n./w.whl\n");
	put("more.txt", "numpy==1.26.4\n");
	put("w.whl", "wheel");
	char a[65];
	snprintf(a, sizeof(a), "%s", key(NULL, &msg));
	cr_assert_str_eq(key(NULL, &msg), a, "the key is stable");
	put("more.txt", "numpy==1.26.3\n");
	cr_assert_str_neq(key(NULL, &msg), a, "an included file is part of the key");
	snprintf(a, sizeof(a), "%s", key(NULL, &msg));
	cr_assert_str_neq(key("torch", &msg), a, "python_packages are part of the key");
	setenv("PIP_INDEX_URL", "http://127.0.0.1:1/simple", 1);
	cr_assert_str_neq(key(NULL, &msg), a, "PIP_* variables are part of the key");
	unsetenv("PIP_INDEX_URL");
	cr_assert_str_eq(key(NULL, &msg), a);
	sleep(1);
	put("w.whl", "wheel2");
	cr_assert_str_neq(key(NULL, &msg), a, "a local wheel's fingerprint is part of the key");
	snprintf(a, sizeof(a), "%s", key(NULL, &msg));
	char conf[4096];
	snprintf(conf, sizeof(conf), "%s/.pip", dir);
	mkdir(conf, 0755);
	put(".pip/pip.conf", "[global]\nindex-url = http://127.0.0.1:2/simple\n");
	cr_assert_str_neq(key(NULL, &msg), a, "pip.conf is part of the key");
}

Test(pip, comments_and_continuations_are_read_as_pip_reads_them)
{
	char *msg = NULL;
	put("requirements.txt", "# -r nothere.txt\nnumpy \\\n  ==1.26.4 # pinned\n");
	cr_assert_not_null(key(NULL, &msg), "%s", msg ? msg : "");
}

Test(pip, missing_include_names_file_and_line)
{
	char *msg = NULL;
	put("requirements.txt", "numpy\n\n--requirement=nothere.txt\n");
	cr_assert_null(key(NULL, &msg));
	cr_assert(strstr(msg, "requirements.txt:3: cannot open included requirements file 'nothere.txt'"),
	          "%s", msg);
	free(msg);
}

Test(pip, missing_local_wheel_and_path_outside_project)
{
	char *msg = NULL;
	put("requirements.txt", "./wheels/x-1.0-py3-none-any.whl\n");
	cr_assert_null(key(NULL, &msg));
	cr_assert(strstr(msg, "requirements.txt:1: cannot open './wheels/x-1.0-py3-none-any.whl'"), "%s",
	          msg);
	free(msg);
	put("requirements.txt", "-f ../elsewhere\n");
	char up[4096];
	snprintf(up, sizeof(up), "%s/../elsewhere", dir);
	cr_assert_not_null(key(NULL, &msg)); /* a missing find-links directory is pip's to report */
}

/* The key with overrides.txt as build.python_overrides; NULL and *msg on an error. */
static char *key_overridden(char **msg)
{
	return key_of(NULL, "overrides.txt", msg);
}

Test(pip, overrides_are_part_of_the_key_and_hold_requirements_only)
{
	char *msg = NULL;
	put("requirements.txt", "numpy\n");
	char plain[65], a[65];
	snprintf(plain, sizeof(plain), "%s", key(NULL, &msg));
	put("overrides.txt", "numpy==1.26.4  # the pin\n");
	snprintf(a, sizeof(a), "%s", key_overridden(&msg));
	cr_assert_str_neq(a, plain, "an overrides file changes the key");
	put("overrides.txt", "numpy==1.26.3\n");
	cr_assert_str_neq(key_overridden(&msg), a, "its contents are part of the key");
	/* the same text as requirements and as overrides are different inputs */
	put("requirements.txt", "numpy\nnumpy==1.26.3\n");
	put("overrides.txt", "\n");
	snprintf(a, sizeof(a), "%s", key_overridden(&msg));
	put("requirements.txt", "numpy\n");
	put("overrides.txt", "numpy==1.26.3\n");
	cr_assert_str_neq(key_overridden(&msg), a);
	put("overrides.txt", "numpy==1.26.3\n--index-url http://127.0.0.1:1/simple\n");
	cr_assert_null(key_overridden(&msg));
	cr_assert(strstr(msg,
	                 "overrides.txt:2: build.python_overrides: '--index-url http://127.0.0.1:1/simple': "
	                 "an overrides file holds requirements"),
	          "%s", msg);
	free(msg);
}

Test(pip, missing_requirements_file)
{
	char *msg = NULL;
	cr_assert_null(key(NULL, &msg));
	cr_assert(strstr(msg, "python_requirements: cannot open 'requirements.txt'"), "%s", msg);
	free(msg);
}

Test(pip, wanted_when_either_key_is_there)
{
	struct kiln_manifest m = {0};
	cr_assert_not(kiln_pip_wanted(&m));
	m.python_requirements = "r.txt";
	cr_assert(kiln_pip_wanted(&m));
}
