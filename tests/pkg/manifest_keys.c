/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tests/pkg/manifest_keys.c: every key of Cog's cog.yaml schema is accepted; those kiln does not act on are
 * warnings with their position; wrong types are refused; build.run's mounts and build.environment stored.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "pkg/manifest.h"

static char *dir;

static void put(const char *name, const char *text)
{
	_cleanup_free_ char *path = kiln_path_join(dir, name);
	_cleanup_free_ char *parent = strdup(path);
	*strrchr(parent, '/') = '\0';
	cr_assert_eq(kiln_mkdir_p(parent, NULL), 0);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "cannot create '%s': %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

static void setup(void)
{
	char tmpl[] = "/tmp/kiln-keys-XXXXXX";
	cr_assert_not_null(mkdtemp(tmpl));
	dir = strdup(tmpl);
	put("predict.py", "class Predictor: pass\n");
	put("train.py", "class Trainer: pass\n");
	put("weights/a.bin", "a");
}

static void teardown(void)
{
	kiln_remove_tree(dir, NULL);
	free(dir);
}

TestSuite(manifest_keys, .init = setup, .fini = teardown);

/* Load cog.yaml with TEXT (after "run: predict.py:Predictor\n"). */
static struct kiln_manifest *load(const char *text)
{
	_cleanup_free_ char *full = NULL;
	cr_assert(asprintf(&full, "run: predict.py:Predictor\n%s", text) > 0);
	put("cog.yaml", full);
	struct kiln_manifest *m = NULL;
	_cleanup_error_ struct kiln_error *err = NULL;
	int rc = kiln_manifest_load(&m, dir, NULL, &err);
	cr_assert_eq(rc, 0, "load failed: %s", err ? err->message : "(no message)");
	return m;
}

/* Load TEXT expecting it refused with a message that ends with WANT (after "DIR/cog.yaml:"). */
static void refused(const char *text, const char *want)
{
	_cleanup_free_ char *full = NULL, *expect = NULL;
	cr_assert(asprintf(&full, "run: predict.py:Predictor\n%s", text) > 0);
	put("cog.yaml", full);
	cr_assert(asprintf(&expect, "%s/cog.yaml:%s", dir, want) > 0);
	struct kiln_manifest *m = NULL;
	_cleanup_error_ struct kiln_error *err = NULL;
	cr_assert_eq(kiln_manifest_load(&m, dir, NULL, &err), KILN_EINVAL, "'%s' was accepted", text);
	cr_assert_str_eq(err->message, expect);
	cr_assert_null(m);
}

/* TEXT loads with exactly one warning, "DIR/cog.yaml:" WANT. */
static void warns(const char *text, const char *want)
{
	struct kiln_manifest *m = load(text);
	_cleanup_free_ char *expect = NULL;
	cr_assert(asprintf(&expect, "%s/cog.yaml:%s", dir, want) > 0);
	cr_assert_eq(m->warnings.n, 1, "%zu warnings for '%s'", m->warnings.n, text);
	cr_assert_str_eq(m->warnings.v[0], expect);
	kiln_manifest_free(m);
}

static void quiet(const char *text)
{
	struct kiln_manifest *m = load(text);
	cr_assert_eq(m->warnings.n, 0, "'%s' warned: %s", text, m->warnings.n ? m->warnings.v[0] : "");
	kiln_manifest_free(m);
}

Test(manifest_keys, acted_on_keys_are_quiet)
{
	put("requirements.txt", "numpy\n");
	quiet("build:\n  gpu: true\n  python_version: '3.12'\n  python_requirements: requirements.txt\n"
	      "  system_packages: [git]\n  pre_install: ['echo pre']\n  run: ['echo run']\n"
	      "  environment: ['A=1']\nconcurrency:\n  max: 2\nenvironment: ['B=2']\nimage: x/y\n"
	      "weights: ['weights/*.bin']\n");
}

Test(manifest_keys, sdk_version)
{
	warns("build:\n  sdk_version: '0.16.0'\n",
	      "3:3: build.sdk_version: kiln bundles its own cog module; this version is not installed");
	refused("build:\n  sdk_version: [1]\n", "3:16: build.sdk_version: expected a string, got a list");
}

Test(manifest_keys, fast)
{
	warns("build:\n  fast: true\n",
	      "3:3: build.fast: kiln's layering is always on; the key has no effect");
	refused("build:\n  fast: maybe\n", "3:9: build.fast: expected a boolean, got 'maybe'");
}

Test(manifest_keys, cog_runtime)
{
	warns(
	    "build:\n  cog_runtime: false\n",
	    "3:3: build.cog_runtime: kiln's own runtime (kiln-shim) serves the model; the key has no effect");
	refused("build:\n  cog_runtime: 3\n", "3:16: build.cog_runtime: expected a boolean, got '3'");
}

Test(manifest_keys, python_overrides)
{
	put("requirements.txt", "numpy\n");
	put("overrides.txt", "numpy==2.0.0\n");
	struct kiln_manifest *m =
	    load("build:\n  python_requirements: requirements.txt\n  python_overrides: overrides.txt\n");
	cr_assert_str_eq(m->python_overrides, "overrides.txt");
	cr_assert_eq(m->warnings.n, 0);
	kiln_manifest_free(m);
	/* nothing for pip to resolve: the file would do nothing */
	warns("build:\n  python_overrides: overrides.txt\n",
	      "3:21: build.python_overrides: not used: there is no python_requirements (or "
	      "python_packages) for it to override");
	refused("build:\n  python_requirements: requirements.txt\n  python_overrides: nothere.txt\n",
	        "4:21: build.python_overrides: file 'nothere.txt' does not exist");
	refused("build:\n  python_overrides: {a: 1}\n",
	        "3:21: build.python_overrides: expected a string, got a map");
}

Test(manifest_keys, cuda_and_cudnn)
{
	const char *why =
	    "kiln installs no CUDA: PyTorch's wheels bring their own, the base is kept (build.gpu "
	    "sets the NVIDIA variables)";
	_cleanup_free_ char *a = NULL, *b = NULL;
	cr_assert(asprintf(&a, "3:3: build.cuda: %s", why) > 0);
	cr_assert(asprintf(&b, "4:3: build.cudnn: %s", why) > 0);
	struct kiln_manifest *m = load("build:\n  cuda: '12.1'\n  cudnn: '8'\n");
	cr_assert_eq(m->warnings.n, 2);
	cr_assert(strstr(m->warnings.v[0], a) != NULL, "%s", m->warnings.v[0]);
	cr_assert(strstr(m->warnings.v[1], b) != NULL, "%s", m->warnings.v[1]);
	cr_assert_str_eq(m->cuda, "12.1");
	kiln_manifest_free(m);
}

Test(manifest_keys, build_environment)
{
	struct kiln_manifest *m = load("build:\n  environment:\n    - A=1\n    - B=two\n");
	cr_assert_eq(m->build_environment.n, 2);
	cr_assert_str_eq(m->build_environment.v[1], "B=two");
	cr_assert_eq(m->build_environment.pos[1].line, 5);
	cr_assert_eq(m->warnings.n, 0);
	kiln_manifest_free(m);
	refused("build:\n  environment: A=1\n",
	        "3:16: build.environment: expected a list of strings, got 'A=1'");
	refused("build:\n  environment: ['1A=x']\n",
	        "3:17: build.environment[0]: '1A' is not a valid variable name");
}

Test(manifest_keys, concurrency_default_target)
{
	/* the autoscaler's target: serve.target_concurrency, which kiln deploy and the hints carry */
	struct kiln_manifest *m = load("concurrency:\n  max: 4\n  default_target: 2\n");
	cr_assert_eq(m->serve.target_concurrency, 2);
	cr_assert_eq(m->warnings.n, 0);
	kiln_manifest_free(m);
	m = load("serve:\n  target_concurrency: 3\nconcurrency:\n  max: 4\n  default_target: 3\n");
	cr_assert_eq(m->serve.target_concurrency, 3);
	cr_assert_eq(m->warnings.n, 0);
	kiln_manifest_free(m);
	/* kiln's own key wins, and kiln says so */
	m = load("concurrency:\n  max: 4\n  default_target: 2\nserve:\n  target_concurrency: 3\n");
	cr_assert_eq(m->serve.target_concurrency, 3);
	cr_assert_eq(m->warnings.n, 1);
	cr_assert(strstr(m->warnings.v[0], "4:19: concurrency.default_target: 2 is not used: "
	                                   "serve.target_concurrency (3) is the autoscaler's target") != NULL,
	          "%s", m->warnings.v[0]);
	kiln_manifest_free(m);
	warns("concurrency:\n  max: 2\n  default_target: 5\n",
	      "4:19: concurrency.default_target: 5 is above concurrency.max (2): an instance never takes "
	      "more than 2 at once, so the autoscaler's target is 2 in effect");
	refused("concurrency:\n  max: 4\n  default_target: 0\n",
	        "4:19: concurrency.default_target: expected a positive integer, got '0'");
}

Test(manifest_keys, tests)
{
	struct kiln_manifest *m = load("tests:\n  - input: {x: 1}\n    output: one\n");
	cr_assert_eq(m->warnings.n, 1);
	cr_assert(strstr(m->warnings.v[0], "cog.yaml:2:1: tests: kiln does not run Cog's tests") != NULL);
	cr_assert_not_null(json_object_get(m->json, "tests"));
	kiln_manifest_free(m);
	refused("tests: [1]\n", "2:9: tests[0]: expected a map, got '1'");
	refused("tests: yes\n", "2:8: tests: expected a list of test cases, got 'yes'");
}

Test(manifest_keys, model)
{
	warns("model: m.bin\n", "2:1: model: the value is recorded in the run.cog.config label only");
	refused("model: [a]\n", "2:8: model: expected a string, got a list");
}

Test(manifest_keys, train)
{
	/* acted on: the shim serves /trainings */
	quiet("train: train.py:Trainer\n");
	refused("train: nope.py:train\n", "2:8: train: file 'nope.py' does not exist");
}

Test(manifest_keys, weights_cog_form)
{
	struct kiln_manifest *m =
	    load("weights:\n  - source: weights\n    target: /src/weights\n  - source: weights/a.bin\n"
	         "  - 'weights/*.bin'\n");
	cr_assert_eq(m->weights.n, 3);
	cr_assert_str_eq(m->weights.v[0], "weights/**");
	cr_assert_str_eq(m->weights.v[1], "weights/a.bin");
	cr_assert_str_eq(m->weights.v[2], "weights/*.bin");
	cr_assert_eq(m->weights.pos[0].line, 3);
	cr_assert_eq(m->weights.pos[0].column, 13);
	cr_assert_eq(m->warnings.n, 1);
	cr_assert(strstr(m->warnings.v[0], "cog.yaml:4:13: weights[0].target: not used") != NULL, "%s",
	          m->warnings.v[0]);
	kiln_manifest_free(m);
	refused("weights:\n  - target: /x\n", "3:5: weights[0]: missing required key 'source'");
	refused("weights:\n  - source: w\n    size: 1\n", "4:5: unknown key 'size' in 'weights[0]'");
	refused("weights:\n  - [a]\n", "3:5: weights[0]: expected a glob or a map with 'source', got a list");
	refused("weights:\n  - source: ../x\n", "3:13: weights[0]: '../x' is outside the project directory");
}

Test(manifest_keys, run_steps_with_mounts)
{
	struct kiln_manifest *m = load("build:\n  run:\n    - echo one\n    - command: cat /run/s\n"
	                               "      mounts:\n        - type: secret\n          id: tok\n"
	                               "          target: /run/s\n");
	cr_assert_eq(m->nrun_steps, 2);
	cr_assert_eq(m->run_commands.n, 2);
	cr_assert_str_eq(m->run_steps[0].command, "echo one");
	cr_assert_eq(m->run_steps[0].nmounts, 0);
	cr_assert_str_eq(m->run_steps[1].command, "cat /run/s");
	cr_assert_eq(m->run_steps[1].pos.line, 5);
	cr_assert_eq(m->run_steps[1].nmounts, 1);
	cr_assert_str_eq(m->run_steps[1].mounts[0].type, "secret");
	cr_assert_str_eq(m->run_steps[1].mounts[0].id, "tok");
	cr_assert_str_eq(m->run_steps[1].mounts[0].target, "/run/s");
	cr_assert_eq(m->run_steps[1].mounts[0].pos.line, 7);
	cr_assert_eq(m->run_steps[1].mounts[0].pos.column, 11);
	kiln_manifest_free(m);
}

Test(manifest_keys, unknown_keys_still_refused)
{
	refused("build:\n  sdk: 1\n", "3:3: unknown key 'sdk' in 'build'");
	refused("modle: x\n", "2:1: unknown key 'modle'");
}
