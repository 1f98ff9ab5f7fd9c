/* SPDX-License-Identifier: Apache-2.0 */
/* tests/pkg/base.c: the base a build gets (Cog's Python default, KILN_PYTHON_BASE) and python_version's
 * rules. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "pkg/base.h"

/* The base chosen for a manifest with these keys (NULL: absent), as "NAME | REASON". */
static char *choose(const char *predict, const char *base, const char *python_version, const char *env)
{
	struct kiln_manifest m = {
	    .predict = (char *)predict, .base = (char *)base, .python_version = (char *)python_version};
	char *name = NULL, *reason = NULL, *out = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_base_choose(&name, &reason, &m, env, &err), 0);
	cr_assert_neq(asprintf(&out, "%s | %s", name, reason), -1);
	free(name);
	free(reason);
	return out;
}

#define CHOOSES(want, ...)                                                                                   \
	do {                                                                                                 \
		_cleanup_free_ char *got_ = choose(__VA_ARGS__);                                             \
		cr_assert_str_eq(got_, want);                                                                \
	} while (0)

Test(base, a_python_predictor_without_base_gets_cogs_python_slim)
{
	CHOOSES("python:3.11-slim | a Python predictor without base:, Cog's default", "predict.py:Predictor",
	        NULL, "3.11", NULL);
	CHOOSES("python:" KILN_PYTHON_DEFAULT "-slim | a Python predictor without base:, Cog's default",
	        "predict.py:Predictor", NULL, NULL, "");
	/* as written, as Cog does */
	CHOOSES("python:3.11.4-slim | a Python predictor without base:, Cog's default", "p.py:P", NULL,
	        "3.11.4", NULL);
}

Test(base, kiln_python_base_replaces_the_default_and_its_python_version)
{
	CHOOSES("registry.local/python:3.10-slim | a Python predictor without base:, KILN_PYTHON_BASE",
	        "p.py:P", NULL, "3.10", "registry.local/python:{python_version}-slim");
	CHOOSES("oci:/b/3.12/l:3.12 | a Python predictor without base:, KILN_PYTHON_BASE", "p.py:P", NULL,
	        NULL, "oci:/b/{python_version}/l:{python_version}");
	CHOOSES("scratch | a Python predictor without base:, KILN_PYTHON_BASE", "p.py:P", NULL, "3.11",
	        "scratch");
}

Test(base, base_overrides_everything_and_native_predictors_keep_scratch)
{
	CHOOSES("oci:/x:1 | set by base:", "p.py:P", "oci:/x:1", "3.11", "registry.local/python:3.11");
	CHOOSES("scratch | set by base:", "p.py:P", "scratch", NULL, NULL);
	CHOOSES("scratch | a native predictor", "native:lib/p.so", NULL, "3.11", "registry.local/py");
	CHOOSES("busybox:1 | set by base:", "native:lib/p.so", "busybox:1", NULL, NULL);
	CHOOSES("scratch | no Python predictor", NULL, NULL, NULL, NULL);
}

/* kiln_python_version_check's outcome for V: "3.N", "3.N deprecated", or the message. */
static char *check(const char *v)
{
	int minor = -1;
	bool deprecated = false;
	struct kiln_error *err = NULL;
	char *out = NULL;
	if (kiln_python_version_check(&minor, &deprecated, v, &err) < 0) {
		out = strdup(err->message);
		kiln_error_free(err);
		return out;
	}
	cr_assert_neq(asprintf(&out, "3.%d%s", minor, deprecated ? " deprecated" : ""), -1);
	return out;
}

#define CHECKS(v, want)                                                                                      \
	do {                                                                                                 \
		_cleanup_free_ char *got_ = check(v);                                                        \
		cr_assert_str_eq(got_, want, "python_version '%s'", v);                                      \
	} while (0)

Test(base, python_version_accepted_deprecated_and_refused_as_cog_does)
{
	CHECKS("3.10", "3.10");
	CHECKS("3.11", "3.11");
	CHECKS("3.12.3", "3.12");
	CHECKS("3.13", "3.13");
	CHECKS("3.9", "3.9 deprecated");
	CHECKS("3.8", "3.8 deprecated");
	CHECKS("3.7", "'3.7': minimum supported Python version is 3.8 (Cog supports 3.10 to 3.13)");
	CHECKS("2.7", "'2.7': minimum supported Python version is 3.8 (Cog supports 3.10 to 3.13)");
	CHECKS("3.14", "'3.14': Python 3.14 is not supported yet (Cog supports 3.10 to 3.13)");
	CHECKS("4.0", "'4.0': Python 4.0 is not supported yet (Cog supports 3.10 to 3.13)");
	CHECKS("3", "'3' must include major and minor version (e.g. '" KILN_PYTHON_DEFAULT "')");
	CHECKS("3.x", "'3.x' must include major and minor version (e.g. '" KILN_PYTHON_DEFAULT "')");
	CHECKS("three", "'three' must include major and minor version (e.g. '" KILN_PYTHON_DEFAULT "')");
	CHECKS("3.11rc1", "'3.11rc1' must include major and minor version (e.g. '" KILN_PYTHON_DEFAULT "')");
}
