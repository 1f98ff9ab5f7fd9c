/* SPDX-License-Identifier: Apache-2.0 */
/* tests/pkg/manifest.c: kiln.yaml / cog.yaml parsing, validation, and the messages bad manifests get. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "pkg/manifest.h"

/* Each test gets a fresh project directory holding predict.py, removed afterwards. */
static char *dir;

/* Write TEXT to DIR/NAME, making the directories on the way. */
static void put(const char *name, const char *text)
{
	_cleanup_free_ char *path = kiln_path_join(dir, name);
	_cleanup_free_ char *parent = strdup(path);
	*strrchr(parent, '/') = '\0';
	cr_assert_eq(kiln_mkdir_p(parent, NULL), 0, "mkdir -p '%s'", parent);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "cannot create '%s': %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

static void setup(void)
{
	char tmpl[] = "/tmp/kiln-manifest-XXXXXX";
	cr_assert_not_null(mkdtemp(tmpl));
	dir = strdup(tmpl);
	put("predict.py", "class Predictor: pass\n");
}

static void teardown(void)
{
	kiln_remove_tree(dir, NULL);
	free(dir);
}

TestSuite(manifest, .init = setup, .fini = teardown);

/* Load the project and return its manifest, failing the test with the message when it does not load. */
static struct kiln_manifest *load_ok(const char *file)
{
	struct kiln_manifest *m = NULL;
	_cleanup_error_ struct kiln_error *err = NULL;
	int rc = kiln_manifest_load(&m, dir, file, &err);
	cr_assert_eq(rc, 0, "load failed: %s", err ? err->message : "(no message)");
	cr_assert_not_null(m);
	return m;
}

/* Load the project expecting CODE, and check the message is "DIR/" followed by WANT. */
static void load_fails(int code, const char *want)
{
	struct kiln_manifest *m = NULL;
	_cleanup_error_ struct kiln_error *err = NULL;
	int rc = kiln_manifest_load(&m, dir, NULL, &err);
	cr_assert_eq(rc, code, "expected code %d, got %d (%s)", code, rc, err ? err->message : "loaded");
	cr_assert_null(m);
	cr_assert_not_null(err);
	_cleanup_free_ char *full = kiln_path_join(dir, want);
	cr_assert_str_eq(err->message, full);
}

/* Write kiln.yaml with TEXT and expect it to fail with KILN_EINVAL and "DIR/WANT". */
static void rejects(const char *text, const char *want)
{
	put("kiln.yaml", text);
	load_fails(KILN_EINVAL, want);
}

static void assert_strv(const struct kiln_strv *s, size_t n, const char *const *want)
{
	cr_assert_eq(s->n, n, "expected %zu items, got %zu", n, s->n);
	for (size_t i = 0; i < n; i++)
		cr_assert_str_eq(s->v[i], want[i]);
}

#define STRV(s, ...)                                                                                         \
	do {                                                                                                 \
		static const char *const want_[] = {__VA_ARGS__};                                            \
		assert_strv((s), sizeof(want_) / sizeof(want_[0]), want_);                                   \
	} while (0)

static const char full_kiln_yaml[] = "build:\n"
                                     "  gpu: true\n"
                                     "  cuda: 11.8\n"
                                     "  cudnn: \"8\"\n"
                                     "  python_version: 3.10\n"
                                     "  python_requirements: requirements.txt\n"
                                     "  python_packages:\n"
                                     "    - torch==2.1.0\n"
                                     "    - numpy\n"
                                     "  system_packages: [ffmpeg, libgl1]\n"
                                     "  run:\n"
                                     "    - echo hello\n"
                                     "    - command: pip install -r /run/secrets/reqs\n"
                                     "      mounts:\n"
                                     "        - type: secret\n"
                                     "          id: reqs\n"
                                     "          target: /run/secrets/reqs\n"
                                     "  pre_install:\n"
                                     "    - apt-get update\n"
                                     "run: predict.py:Predictor\n" /* line 20 */
                                     "train: train.py:train\n"
                                     "image: registry.example.com/me/model\n"
                                     "concurrency:\n"
                                     "  max: 4\n"
                                     "environment:\n"
                                     "  - HF_HOME=/src/.cache\n" /* line 26 */
                                     "  - GREETING=hello=world\n"
                                     "base: oci:/var/lib/base:latest\n" /* line 28 */
                                     "weights:\n"
                                     "  - \"weights/**/*.safetensors\"\n"
                                     "  - config.json\n"
                                     "serve:\n"
                                     "  prefetch: [weights/unet.safetensors, weights/vae.safetensors]\n"
                                     "  min_instances: 1\n"
                                     "  max_instances: 3\n"
                                     "  scaledown_window: 300\n"
                                     "  target_concurrency: 2\n"
                                     "  warmup:\n"
                                     "    prompt: a cat\n"
                                     "    steps: 4\n"
                                     "    guidance: 7.5\n"
                                     "    fast: true\n"
                                     "    seed: ~\n"
                                     "    tag: \"42\"\n"
                                     "    sizes: [512, 768]\n";

Test(manifest, full_kiln_yaml_fills_every_field)
{
	put("kiln.yaml", full_kiln_yaml);
	put("requirements.txt", "torch\n");
	put("train.py", "def train(): pass\n");
	struct kiln_manifest *m = load_ok(NULL);

	_cleanup_free_ char *path = kiln_path_join(dir, "kiln.yaml");
	cr_assert_str_eq(m->path, path);
	cr_assert_str_eq(m->dir, dir);
	cr_assert_not(m->is_cog);
	cr_assert(m->gpu);
	cr_assert_str_eq(m->cuda, "11.8");
	cr_assert_str_eq(m->cudnn, "8");
	cr_assert_str_eq(m->python_version, "3.10");
	cr_assert_eq(m->python_version_pos.line, 5);
	cr_assert_eq(m->python_version_pos.column, 19);
	cr_assert_str_eq(m->python_requirements, "requirements.txt");
	STRV(&m->python_packages, "torch==2.1.0", "numpy");
	STRV(&m->system_packages, "ffmpeg", "libgl1");
	STRV(&m->run_commands, "echo hello", "pip install -r /run/secrets/reqs");
	cr_assert_eq(m->run_commands.pos[1].line, 13);
	cr_assert_eq(m->run_commands.pos[1].column, 16);
	STRV(&m->pre_install, "apt-get update");
	cr_assert_str_eq(m->predict, "predict.py:Predictor");
	cr_assert_eq(m->predict_pos.line, 20);
	cr_assert_eq(m->predict_pos.column, 6);
	cr_assert_str_eq(m->train, "train.py:train");
	cr_assert_str_eq(m->image, "registry.example.com/me/model");
	cr_assert_eq(m->concurrency_max, 4);
	STRV(&m->environment, "HF_HOME=/src/.cache", "GREETING=hello=world");
	cr_assert_eq(m->environment.pos[0].line, 26);
	cr_assert_eq(m->environment.pos[0].column, 5);
	cr_assert_str_eq(m->base, "oci:/var/lib/base:latest");
	cr_assert_eq(m->base_pos.line, 28);
	cr_assert_eq(m->base_pos.column, 7);
	STRV(&m->weights, "weights/**/*.safetensors", "config.json");
	STRV(&m->serve.prefetch, "weights/unet.safetensors", "weights/vae.safetensors");
	cr_assert_eq(m->serve.min_instances, 1);
	cr_assert_eq(m->serve.max_instances, 3);
	cr_assert_eq(m->serve.scaledown_window, 300);
	cr_assert_eq(m->serve.target_concurrency, 2);

	json_t *w = m->serve.warmup;
	cr_assert(json_is_object(w));
	cr_assert_str_eq(json_string_value(json_object_get(w, "prompt")), "a cat");
	cr_assert(json_is_integer(json_object_get(w, "steps")));
	cr_assert_eq(json_integer_value(json_object_get(w, "steps")), 4);
	cr_assert(json_is_real(json_object_get(w, "guidance")));
	cr_assert_float_eq(json_real_value(json_object_get(w, "guidance")), 7.5, 1e-9);
	cr_assert(json_is_true(json_object_get(w, "fast")));
	cr_assert(json_is_null(json_object_get(w, "seed")));
	cr_assert_str_eq(json_string_value(json_object_get(w, "tag")), "42");
	cr_assert_eq(json_integer_value(json_array_get(json_object_get(w, "sizes"), 1)), 768);

	/* The JSON keeps the keys as written, with the schema's types. */
	json_t *build = json_object_get(m->json, "build");
	cr_assert(json_is_true(json_object_get(build, "gpu")));
	cr_assert_str_eq(json_string_value(json_object_get(build, "python_version")), "3.10");
	cr_assert_str_eq(json_string_value(json_object_get(build, "cuda")), "11.8");
	json_t *run1 = json_array_get(json_object_get(build, "run"), 1);
	cr_assert_str_eq(json_string_value(json_object_get(run1, "command")),
	                 "pip install -r /run/secrets/reqs");
	json_t *mount = json_array_get(json_object_get(run1, "mounts"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(mount, "id")), "reqs");
	cr_assert_str_eq(json_string_value(json_object_get(m->json, "run")), "predict.py:Predictor");
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(m->json, "concurrency"), "max")), 4);
	cr_assert(json_equal(json_object_get(json_object_get(m->json, "serve"), "warmup"), w));
	const char *first = NULL;
	json_object_foreach(m->json, first, w) break;
	cr_assert_str_eq(first, "build");
	kiln_manifest_free(m);
}

static const char real_cog_yaml[] =
    "# Configuration for Cog\n"
    "build:\n"
    "  gpu: true\n"
    "  system_packages:\n"
    "    - \"libgl1-mesa-glx\"\n"
    "    - \"libglib2.0-0\"\n"
    "  python_version: \"3.11\"\n"
    "  python_packages:\n"
    "    - \"torch==2.0.1\"\n"
    "    - \"diffusers==0.19.3\"\n"
    "  run:\n"
    "    - curl -o /usr/local/bin/pget -L "
    "\"https://github.com/replicate/pget/releases/download/v0.8.2/pget_linux_x86_64\"\n"
    "    - command: pip install -r /tmp/private.txt\n"
    "      mounts:\n"
    "        - type: secret\n"
    "          id: pip\n"
    "          target: /etc/pip.conf\n"
    "predict: \"predict.py:Predictor\"\n"
    "image: \"r8.im/someone/sdxl\"\n";

Test(manifest, real_world_cog_yaml_loads_with_predict_alias)
{
	put("cog.yaml", real_cog_yaml);
	struct kiln_manifest *m = load_ok(NULL);
	cr_assert(m->is_cog);
	cr_assert(m->gpu);
	cr_assert_str_eq(m->python_version, "3.11");
	STRV(&m->system_packages, "libgl1-mesa-glx", "libglib2.0-0");
	STRV(&m->python_packages, "torch==2.0.1", "diffusers==0.19.3");
	cr_assert_eq(m->run_commands.n, 2);
	cr_assert_str_eq(m->run_commands.v[1], "pip install -r /tmp/private.txt");
	cr_assert_str_eq(m->predict, "predict.py:Predictor");
	cr_assert_eq(m->predict_pos.line, 18);
	cr_assert_eq(m->predict_pos.column, 10);
	cr_assert_str_eq(m->image, "r8.im/someone/sdxl");
	cr_assert_null(m->base); /* absent: pkg/base.c chooses */
	cr_assert_eq(m->concurrency_max, 0);
	cr_assert_eq(m->serve.min_instances, -1);
	cr_assert_eq(m->serve.max_instances, -1);
	cr_assert_eq(m->serve.scaledown_window, -1);
	cr_assert_eq(m->serve.target_concurrency, -1);
	cr_assert_null(m->serve.warmup);
	cr_assert_eq(m->weights.n, 0);
	cr_assert_str_eq(json_string_value(json_object_get(m->json, "predict")), "predict.py:Predictor");
	cr_assert_null(json_object_get(m->json, "run"));
	kiln_manifest_free(m);
}

Test(manifest, cog_yaml_null_lists_and_yaml11_booleans_are_accepted)
{
	put("cog.yaml", "build:\n  gpu: yes\n  python_packages:\n  system_packages: ~\n  run:\nrun: "
	                "predict.py:Predictor\n");
	struct kiln_manifest *m = load_ok(NULL);
	cr_assert(m->gpu);
	cr_assert_eq(m->python_packages.n, 0);
	cr_assert_eq(m->system_packages.n, 0);
	cr_assert_eq(m->run_commands.n, 0);
	kiln_manifest_free(m);
}

Test(manifest, cog_yaml_is_the_fallback_and_kiln_yaml_wins)
{
	put("cog.yaml", "predict: predict.py:Predictor\n");
	struct kiln_manifest *m = load_ok(NULL);
	_cleanup_free_ char *cog = kiln_path_join(dir, "cog.yaml");
	cr_assert_str_eq(m->path, cog);
	cr_assert(m->is_cog);
	kiln_manifest_free(m);

	put("kiln.yaml", "run: predict.py:Predictor\nbase: scratch\n");
	m = load_ok(NULL);
	_cleanup_free_ char *kiln = kiln_path_join(dir, "kiln.yaml");
	cr_assert_str_eq(m->path, kiln);
	cr_assert_not(m->is_cog);
	kiln_manifest_free(m);
}

Test(manifest, file_option_overrides_the_default_names)
{
	put("kiln.yaml", "run: predict.py:Predictor\n");
	put("deploy/prod.yaml", "run: predict.py:Predictor\nimage: example.com/prod\n");
	_cleanup_free_ char *file = kiln_path_join(dir, "deploy/prod.yaml");
	struct kiln_manifest *m = load_ok(file);
	cr_assert_str_eq(m->path, file);
	cr_assert_str_eq(m->dir, dir);
	cr_assert_str_eq(m->image, "example.com/prod");
	kiln_manifest_free(m);
}

Test(manifest, missing_manifest_is_not_found)
{
	struct kiln_manifest *m = NULL;
	_cleanup_error_ struct kiln_error *err = NULL;
	cr_assert_eq(kiln_manifest_load(&m, dir, NULL, &err), KILN_ENOTFOUND);
	_cleanup_free_ char *want = NULL;
	cr_assert_geq(asprintf(&want, "no kiln.yaml or cog.yaml in '%s'", dir), 0);
	cr_assert_str_eq(err->message, want);
	cr_assert_null(m);

	kiln_error_free(err);
	err = NULL;
	_cleanup_free_ char *file = kiln_path_join(dir, "nope.yaml");
	cr_assert_eq(kiln_manifest_load(&m, dir, file, &err), KILN_ENOTFOUND);
	cr_assert(strstr(err->message, "cannot open '") && strstr(err->message, "nope.yaml'"), "%s",
	          err->message);
}

Test(manifest, unreadable_manifest_is_an_io_error)
{
	put("kiln.yaml", "run: predict.py:Predictor\n");
	_cleanup_free_ char *path = kiln_path_join(dir, "kiln.yaml");
	chmod(path, 0);
	if (access(path, R_OK) == 0)
		cr_skip_test("running as root: permissions are not enforced");
	struct kiln_manifest *m = NULL;
	_cleanup_error_ struct kiln_error *err = NULL;
	cr_assert_eq(kiln_manifest_load(&m, dir, NULL, &err), KILN_EIO);
	_cleanup_free_ char *want = NULL;
	cr_assert_geq(asprintf(&want, "cannot open '%s': Permission denied", path), 0);
	cr_assert_str_eq(err->message, want);
}

Test(manifest, manifest_that_is_not_a_file_is_refused)
{
	_cleanup_free_ char *path = kiln_path_join(dir, "kiln.yaml");
	cr_assert_eq(kiln_mkdir_p(path, NULL), 0);
	struct kiln_manifest *m = NULL;
	_cleanup_error_ struct kiln_error *err = NULL;
	cr_assert_eq(kiln_manifest_load(&m, dir, NULL, &err), KILN_EINVAL);
	_cleanup_free_ char *want = NULL;
	cr_assert_geq(asprintf(&want, "'%s' is not a regular file", path), 0);
	cr_assert_str_eq(err->message, want);
}

Test(manifest, syntax_error_reports_line_and_column)
{
	rejects("build:\n  gpu: true\nrun: predict.py:Predictor\nimage: x\n  bad: here: there\n",
	        "kiln.yaml:5:6: syntax error: mapping values are not allowed in this context");
	rejects("build:\n  gpu: true\n python_version: 3.11\n",
	        "kiln.yaml:3:2: syntax error: did not find expected key (while parsing a block mapping at "
	        "line 1, "
	        "column 1)");
	rejects(
	    "run: \"predict.py:Predictor\n",
	    "kiln.yaml:2:1: syntax error: found unexpected end of stream (while scanning a quoted scalar at "
	    "line 1, column 6)");
}

Test(manifest, tab_indentation_gets_a_hint)
{
	rejects("run: predict.py:Predictor\nbuild:\n\tgpu: true\n",
	        "kiln.yaml:3:1: syntax error: found character that cannot start any token (while scanning "
	        "for the "
	        "next token); indent with spaces, not tabs");
}

Test(manifest, current_directory_messages_use_the_bare_file_name)
{
	put("kiln.yaml", "run: predict.py:Predictor\nbuild:\n  gpu: 1\n");
	cr_assert_eq(chdir(dir), 0);
	struct kiln_manifest *m = NULL;
	_cleanup_error_ struct kiln_error *err = NULL;
	cr_assert_eq(kiln_manifest_load(&m, ".", NULL, &err), KILN_EINVAL);
	cr_assert_str_eq(err->message, "kiln.yaml:3:8: build.gpu: expected a boolean, got '1'");
}

Test(manifest, explicit_string_tag_keeps_numbers_as_strings)
{
	put("kiln.yaml", "run: predict.py:Predictor\n"
	                 "serve:\n"
	                 "  warmup:\n"
	                 "    a: !!str 12\n"
	                 "    b: &n !!str 13\n"
	                 "    c: 14\n"
	                 "    d: !!int \"15\"\n");
	struct kiln_manifest *m = load_ok(NULL);
	json_t *w = m->serve.warmup;
	cr_assert_str_eq(json_string_value(json_object_get(w, "a")), "12");
	cr_assert_str_eq(json_string_value(json_object_get(w, "b")), "13");
	cr_assert_eq(json_integer_value(json_object_get(w, "c")), 14);
	cr_assert_eq(json_integer_value(json_object_get(w, "d")), 15);
	kiln_manifest_free(m);
}

Test(manifest, unknown_key_reports_line_and_column)
{
	rejects("run: predict.py:Predictor\nweigths: [a]\n", "kiln.yaml:2:1: unknown key 'weigths'");
}

Test(manifest, unknown_nested_key_names_its_map)
{
	rejects("build:\n  gpu: true\n  gpuu: false\nrun: predict.py:Predictor\n",
	        "kiln.yaml:3:3: unknown key 'gpuu' in 'build'");
	rejects("run: predict.py:Predictor\nserve:\n  min_instance: 1\n",
	        "kiln.yaml:3:3: unknown key 'min_instance' in 'serve'");
	rejects("run: predict.py:Predictor\nbuild:\n  run:\n    - command: x\n      mount: []\n",
	        "kiln.yaml:5:7: unknown key 'mount' in 'build.run[0]'");
	rejects(
	    "run: predict.py:Predictor\nbuild:\n  run:\n    - command: x\n      mounts:\n        - {type: "
	    "secret, id: a, target: /a, mode: 1}\n",
	    "kiln.yaml:6:45: unknown key 'mode' in 'build.run[0].mounts[0]'");
}

Test(manifest, wrong_types_name_the_key_and_the_value)
{
	rejects("build:\n  gpu: maybe\nrun: predict.py:Predictor\n",
	        "kiln.yaml:2:8: build.gpu: expected a boolean, got 'maybe'");
	rejects("build:\n  gpu: \"true\"\nrun: predict.py:Predictor\n",
	        "kiln.yaml:2:8: build.gpu: expected a boolean, got the string 'true'");
	rejects("build:\n  python_packages: torch\nrun: predict.py:Predictor\n",
	        "kiln.yaml:2:20: build.python_packages: expected a list of strings, got 'torch'");
	rejects("build:\n  system_packages:\n    - [a, b]\nrun: predict.py:Predictor\n",
	        "kiln.yaml:3:7: build.system_packages[0]: expected a string, got a list");
	rejects("build: [gpu]\nrun: predict.py:Predictor\n",
	        "kiln.yaml:1:8: build: expected a map, got a list");
	rejects("run: predict.py:Predictor\nimage: {name: x}\n",
	        "kiln.yaml:2:8: image: expected a string, got a map");
	rejects("run: predict.py:Predictor\nbuild:\n  cuda: true\n",
	        "kiln.yaml:3:9: build.cuda: expected a string, got 'true'");
	rejects("run: predict.py:Predictor\nbuild:\n  python_version:\n",
	        "kiln.yaml:3:18: build.python_version: expected a string, got an empty value");
	rejects("run: predict.py:Predictor\nserve:\n  max_instances: 2.5\n",
	        "kiln.yaml:3:18: serve.max_instances: expected a non-negative integer, got '2.5'");
	rejects("run: predict.py:Predictor\nbuild:\n  run:\n    - [a]\n",
	        "kiln.yaml:4:7: build.run[0]: expected a command or a map with 'command', got a list");
	rejects("run: [predict.py]\n", "kiln.yaml:1:6: run: expected a string, got a list");
}

Test(manifest, duplicate_key_is_an_error)
{
	rejects("run: predict.py:Predictor\nbuild:\n  gpu: true\n  cuda: \"12.1\"\n  gpu: false\n",
	        "kiln.yaml:5:3: duplicate key 'gpu' in 'build' (first set on line 3)");
	rejects("image: a\nrun: predict.py:Predictor\nimage: b\n",
	        "kiln.yaml:3:1: duplicate key 'image' (first set on line 1)");
	rejects("run: predict.py:Predictor\nserve:\n  warmup:\n    a: 1\n    a: 2\n",
	        "kiln.yaml:5:5: duplicate key 'a' in 'serve.warmup' (first set on line 4)");
}

Test(manifest, run_and_predict_together_is_an_error)
{
	rejects("predict: predict.py:Predictor\nbuild:\n  gpu: false\nrun: predict.py:Predictor\n",
	        "kiln.yaml:4:1: 'predict' and 'run' are both set ('predict' is the older name of 'run')");
}

Test(manifest, missing_run_is_an_error)
{
	rejects("build:\n  gpu: false\n", "kiln.yaml:1:1: missing required key 'run'");
}

Test(manifest, predictor_file_missing_is_reported_at_the_value)
{
	rejects("build:\n  gpu: false\nimage: x\nrun:     model.py:Predictor\n",
	        "kiln.yaml:4:10: run: file 'model.py' does not exist");
	rejects("predict: src/predict.py:Predictor\n",
	        "kiln.yaml:1:10: predict: file 'src/predict.py' does not exist");
	put("src/predict.py", "");
	put("kiln.yaml", "predict: src/predict.py:Predictor\n");
	kiln_manifest_free(load_ok(NULL));
}

Test(manifest, predictor_needs_a_class_name_and_a_path_inside_the_project)
{
	rejects("run: predict.py\n",
	        "kiln.yaml:1:6: run: expected 'FILE.py:NAME' or 'native:PATH', got 'predict.py'");
	rejects("run: \"predict.py:\"\n",
	        "kiln.yaml:1:6: run: expected 'FILE.py:NAME' or 'native:PATH', got 'predict.py:'");
	rejects("run: ../predict.py:Predictor\n",
	        "kiln.yaml:1:6: run: '../predict.py' is outside the project directory");
	rejects("run: predict.py:Predictor\ntrain: train.py:train\n",
	        "kiln.yaml:2:8: train: file 'train.py' does not exist");
}

Test(manifest, native_predictor_needs_its_library)
{
	rejects("run: native:lib/model.so\n", "kiln.yaml:1:6: run: file 'lib/model.so' does not exist");
	put("lib/model.so", "\x7f"
	                    "ELF");
	put("kiln.yaml", "run: native:lib/model.so\n");
	struct kiln_manifest *m = load_ok(NULL);
	cr_assert_str_eq(m->predict, "native:lib/model.so");
	kiln_manifest_free(m);
	rejects("run: native:lib\n", "kiln.yaml:1:6: run: 'lib' is not a regular file");
}

Test(manifest, python_requirements_must_exist)
{
	rejects("build:\n  python_requirements: requirements.txt\nrun: predict.py:Predictor\n",
	        "kiln.yaml:2:24: build.python_requirements: file 'requirements.txt' does not exist");
}

Test(manifest, reserved_environment_names_are_refused)
{
	rejects("run: predict.py:Predictor\nenvironment:\n  - HF_HOME=/cache\n  - PATH=/usr/bin\n",
	        "kiln.yaml:4:5: environment[1]: 'PATH' may not be set (reserved by the runtime)");
	rejects("run: predict.py:Predictor\nenvironment:\n  - CUDA_VISIBLE_DEVICES=0\n",
	        "kiln.yaml:3:5: environment[0]: 'CUDA_VISIBLE_DEVICES' may not be set (names starting with "
	        "'CUDA_' "
	        "are reserved by the runtime)");
	rejects("run: predict.py:Predictor\nenvironment: [KILN_PORT=1]\n",
	        "kiln.yaml:2:15: environment[0]: 'KILN_PORT' may not be set (names starting with 'KILN_' are "
	        "reserved by the runtime)");
}

Test(manifest, environment_items_must_be_name_equals_value)
{
	rejects("run: predict.py:Predictor\nenvironment:\n  - DEBUG\n",
	        "kiln.yaml:3:5: environment[0]: expected 'NAME=value', got 'DEBUG'");
	rejects("run: predict.py:Predictor\nenvironment:\n  - =x\n",
	        "kiln.yaml:3:5: environment[0]: expected 'NAME=value', got '=x'");
	rejects("run: predict.py:Predictor\nenvironment:\n  - 1ST=x\n",
	        "kiln.yaml:3:5: environment[0]: '1ST' is not a valid variable name");
	rejects("run: predict.py:Predictor\nenvironment:\n  - MY-VAR=x\n",
	        "kiln.yaml:3:5: environment[0]: 'MY-VAR' is not a valid variable name");
	rejects("run: predict.py:Predictor\nenvironment:\n  - A=1\n  - A=2\n",
	        "kiln.yaml:4:5: environment[1]: 'A' is already set");
	rejects("run: predict.py:Predictor\nenvironment: A=1\n",
	        "kiln.yaml:2:14: environment: expected a list of strings, got 'A=1'");
}

Test(manifest, concurrency_max_must_be_positive)
{
	rejects("run: predict.py:Predictor\nconcurrency:\n  max: 0\n",
	        "kiln.yaml:3:8: concurrency.max: expected a positive integer, got '0'");
	rejects("run: predict.py:Predictor\nconcurrency:\n  max: -2\n",
	        "kiln.yaml:3:8: concurrency.max: expected a positive integer, got '-2'");
	rejects("run: predict.py:Predictor\nconcurrency:\n  max: \"4\"\n",
	        "kiln.yaml:3:8: concurrency.max: expected a positive integer, got the string '4'");
	rejects("run: predict.py:Predictor\nconcurrency:\n  default_target: 2\n",
	        "kiln.yaml:3:3: concurrency: missing required key 'max'");
}

Test(manifest, serve_counts_are_checked)
{
	rejects("run: predict.py:Predictor\nserve:\n  max_instances: 1\n  min_instances: 3\n",
	        "kiln.yaml:4:18: serve.min_instances: 3 is greater than max_instances (1)");
	rejects("run: predict.py:Predictor\nserve:\n  scaledown_window: -1\n",
	        "kiln.yaml:3:21: serve.scaledown_window: expected a non-negative integer, got '-1'");
	put("kiln.yaml", "run: predict.py:Predictor\nserve:\n  min_instances: 0\n  max_instances: 0\n");
	struct kiln_manifest *m = load_ok(NULL);
	cr_assert_eq(m->serve.min_instances, 0);
	cr_assert_eq(m->serve.max_instances, 0);
	kiln_manifest_free(m);
}

Test(manifest, warmup_must_be_a_map)
{
	rejects("run: predict.py:Predictor\nserve:\n  warmup: [1, 2]\n",
	        "kiln.yaml:3:11: serve.warmup: expected a map of inputs, got a list");
	rejects("run: predict.py:Predictor\nserve:\n  warmup: hello\n",
	        "kiln.yaml:3:11: serve.warmup: expected a map of inputs, got 'hello'");
}

Test(manifest, empty_or_non_map_manifest_is_an_error)
{
	rejects("", "kiln.yaml:1:1: the manifest is empty");
	rejects("# nothing but a comment\n", "kiln.yaml:1:1: the manifest is empty");
	rejects("- run: predict.py:Predictor\n", "kiln.yaml:1:1: top level: expected a map, got a list");
	rejects("run predict.py:Predictor\n",
	        "kiln.yaml:1:1: top level: expected a map, got 'run predict.py:Predictor'");
	rejects("run: predict.py:Predictor\n---\nimage: x\n",
	        "kiln.yaml:2:1: expected one YAML document, found a second one");
}

Test(manifest, mount_type_must_be_secret)
{
	rejects("run: predict.py:Predictor\nbuild:\n  run:\n    - command: x\n      mounts:\n"
	        "        - {type: cache, id: a, target: /a}\n",
	        "kiln.yaml:6:18: build.run[0].mounts[0].type: expected 'secret', got 'cache'");
	rejects("run: predict.py:Predictor\nbuild:\n  run:\n    - command: x\n      mounts:\n"
	        "        - {type: secret, id: a}\n",
	        "kiln.yaml:6:11: build.run[0].mounts[0]: missing required key 'target'");
	rejects("run: predict.py:Predictor\nbuild:\n  run:\n    - mounts: []\n",
	        "kiln.yaml:4:7: build.run[0]: missing required key 'command'");
}

Test(manifest, patterns_stay_inside_the_project)
{
	rejects("run: predict.py:Predictor\nweights:\n  - /models/*.bin\n",
	        "kiln.yaml:3:5: weights[0]: '/models/*.bin' is outside the project directory");
	rejects("run: predict.py:Predictor\nserve:\n  prefetch: [a, ../b]\n",
	        "kiln.yaml:3:17: serve.prefetch[1]: '../b' is outside the project directory");
	rejects("run: predict.py:Predictor\nbase: \"\"\n",
	        "kiln.yaml:2:7: base: expected 'scratch', 'oci:DIR:TAG' or an image reference, got ''");
}

Test(manifest, alias_expansion_is_bounded)
{
	/* A million values from a few lines ("billion laughs"): refused, not expanded. */
	put("kiln.yaml", "run: predict.py:Predictor\n"
	                 "serve:\n"
	                 "  warmup:\n"
	                 "    a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	                 "    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
	                 "    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
	                 "    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
	                 "    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
	                 "    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n");
	struct kiln_manifest *m = NULL;
	_cleanup_error_ struct kiln_error *err = NULL;
	cr_assert_eq(kiln_manifest_load(&m, dir, NULL, &err), KILN_EINVAL);
	cr_assert(
	    strstr(err->message, "kiln.yaml:4:") && strstr(err->message, ": serve.warmup.") &&
	        strstr(err->message, ": too many values (aliases expand to more than the manifest may hold)"),
	    "%s", err->message);
}

/* TEXT repeated N times, joined by SEP (caller frees). */
static char *repeat(const char *text, const char *sep, size_t n)
{
	size_t tl = strlen(text), sl = strlen(sep);
	char *s = malloc(n * (tl + sl) + 1), *e = s;
	cr_assert_not_null(s);
	for (size_t i = 0; i < n; i++) {
		memcpy(e, text, tl);
		e += tl;
		if (i + 1 < n) {
			memcpy(e, sep, sl);
			e += sl;
		}
	}
	*e = '\0';
	return s;
}

/* Load kiln.yaml expecting KILN_EINVAL with a message that starts with "DIR/" AT and holds each of WANT. */
static void fails_containing(const char *at, const char *want)
{
	struct kiln_manifest *m = NULL;
	_cleanup_error_ struct kiln_error *err = NULL;
	int rc = kiln_manifest_load(&m, dir, NULL, &err);
	cr_assert_eq(rc, KILN_EINVAL, "expected KILN_EINVAL, got %d (%s)", rc, err ? err->message : "loaded");
	cr_assert_null(m);
	_cleanup_free_ char *full = kiln_path_join(dir, at);
	cr_assert(strncmp(err->message, full, strlen(full)) == 0 && strstr(err->message, want),
	          "expected '%s...%s', got: %.300s", full, want, err->message);
}

#define TOO_MANY "too many values (aliases expand to more than the manifest may hold)"

Test(manifest, alias_bomb_under_build_run_mounts_is_bounded)
{
	/* 400 commands, each with the same 400 mounts: 160,000 mounts from 8 KB. */
	_cleanup_free_ char *mounts = repeat("*mt", ", ", 399);
	_cleanup_free_ char *runs = repeat("    - *r\n", "", 399);
	_cleanup_free_ char *yaml = NULL;
	cr_assert(asprintf(&yaml,
	                   "run: predict.py:Predictor\n"
	                   "build:\n"
	                   "  run:\n"
	                   "    - &r\n"
	                   "      command: x\n"
	                   "      mounts: [&mt {type: secret, id: a, target: /a}, %s]\n"
	                   "%s",
	                   mounts, runs) > 0);
	put("kiln.yaml", yaml);
	fails_containing("kiln.yaml:6:", ": build.run[");
	fails_containing("kiln.yaml:6:", "].mounts[");
	fails_containing("kiln.yaml:6:", TOO_MANY);
}

Test(manifest, alias_bomb_of_long_strings_is_bounded)
{
	/* One 64 KB string used 100 times: 6.4 MB of text from a 65 KB file. */
	_cleanup_free_ char *big = repeat("x", "", 65536);
	_cleanup_free_ char *uses = repeat("  - *v\n", "", 100);
	_cleanup_free_ char *flow = repeat("*v", ", ", 100);
	_cleanup_free_ char *yaml = NULL;
	cr_assert(asprintf(&yaml, "run: predict.py:Predictor\nenvironment:\n  - &v A=%s\n%s", big, uses) > 0);
	put("kiln.yaml", yaml);
	fails_containing("kiln.yaml:3:5: environment[", "]: " TOO_MANY);
	free(yaml);
	cr_assert(asprintf(&yaml, "run: predict.py:Predictor\nserve:\n  warmup:\n    a: &v %s\n    b: [%s]\n",
	                   big, flow) > 0);
	put("kiln.yaml", yaml);
	fails_containing("kiln.yaml:4:8: serve.warmup.b[", "]: " TOO_MANY);
	/* the same text once is fine */
	free(yaml);
	cr_assert(asprintf(&yaml, "run: predict.py:Predictor\nserve:\n  warmup:\n    a: %s\n", big) > 0);
	put("kiln.yaml", yaml);
	kiln_manifest_free(load_ok(NULL));
}

Test(manifest, alias_bomb_of_nested_maps_is_bounded)
{
	put("kiln.yaml",
	    "run: predict.py:Predictor\n"
	    "serve:\n"
	    "  warmup:\n"
	    "    deep:\n"
	    "      a: &a {k0: x, k1: x, k2: x, k3: x, k4: x, k5: x, k6: x, k7: x, k8: x, k9: x}\n"
	    "      b: &b {k0: *a, k1: *a, k2: *a, k3: *a, k4: *a, k5: *a, k6: *a, k7: *a, k8: *a}\n"
	    "      c: &c {k0: *b, k1: *b, k2: *b, k3: *b, k4: *b, k5: *b, k6: *b, k7: *b, k8: *b}\n"
	    "      d: &d {k0: *c, k1: *c, k2: *c, k3: *c, k4: *c, k5: *c, k6: *c, k7: *c, k8: *c}\n"
	    "      e: &e {k0: *d, k1: *d, k2: *d, k3: *d, k4: *d, k5: *d, k6: *d, k7: *d, k8: *d}\n"
	    "      f: &f {k0: *e, k1: *e, k2: *e, k3: *e, k4: *e, k5: *e, k6: *e, k7: *e, k8: *e}\n");
	fails_containing("kiln.yaml:5:", ": serve.warmup.deep.");
	fails_containing("kiln.yaml:5:", TOO_MANY);
}

Test(manifest, many_keys_in_one_map_are_checked_for_duplicates_quickly)
{
	/* 40,000 distinct keys: a linear scan for each would take billions of comparisons. */
	char *keys = malloc(40000 * 16 + 1), *e = keys;
	for (int i = 0; i < 40000; i++)
		e += sprintf(e, "    k%d: 1\n", i);
	_cleanup_free_ char *yaml = NULL;
	cr_assert(asprintf(&yaml, "run: predict.py:Predictor\nserve:\n  warmup:\n%s    k17: 2\n", keys) > 0);
	free(keys);
	put("kiln.yaml", yaml);
	fails_containing("kiln.yaml:40004:5: ",
	                 "duplicate key 'k17' in 'serve.warmup' (first set on line 21)");
}

/* Write LEN bytes of DATA as kiln.yaml (NUL bytes included). */
static void put_bytes(const void *data, size_t len)
{
	_cleanup_free_ char *path = kiln_path_join(dir, "kiln.yaml");
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

Test(manifest, utf16_and_utf32_manifests_are_refused)
{
	static const char le[] = "\xff\xfer\0u\0n\0:\0 \0p\0.\0p\0y\0:\0P\0\n\0";
	static const char be[] = "\xfe\xff\0r\0u\0n\0:\0 \0p\0.\0p\0y\0:\0P\0\n";
	static const char bare[] = "r\0u\0n\0:\0 \0p\0.\0p\0y\0:\0P\0\n\0";
	static const char utf32[] = "\xff\xfe\0\0r\0\0\0\n\0\0\0";
	put_bytes(le, sizeof(le) - 1);
	load_fails(KILN_EINVAL, "kiln.yaml:1:1: the file is UTF-16; a manifest must be UTF-8");
	put_bytes(be, sizeof(be) - 1);
	load_fails(KILN_EINVAL, "kiln.yaml:1:1: the file is UTF-16; a manifest must be UTF-8");
	put_bytes(bare, sizeof(bare) - 1);
	load_fails(KILN_EINVAL, "kiln.yaml:1:1: the file is UTF-16 or UTF-32; a manifest must be UTF-8");
	put_bytes(utf32, sizeof(utf32) - 1);
	load_fails(KILN_EINVAL, "kiln.yaml:1:1: the file is UTF-32; a manifest must be UTF-8");
	/* a UTF-8 byte order mark is fine */
	put("kiln.yaml", "\xef\xbb\xbfrun: predict.py:Predictor\n");
	kiln_manifest_free(load_ok(NULL));
}

Test(manifest, yaml_11_and_tag_directives_are_refused)
{
	rejects("%YAML 1.1\n---\nrun: predict.py:Predictor\n",
	        "kiln.yaml:1:1: '%YAML 1.1': kiln reads manifests as YAML 1.2; remove the directive");
	rejects("%YAML 1.2\n%TAG !e! tag:example.com,2000:\n---\nrun: predict.py:Predictor\n",
	        "kiln.yaml:2:1: '%TAG' directives are not supported (nor are tags other than YAML's own)");
	rejects("%TAG !! tag:example.com,2000:\n---\nrun: predict.py:Predictor\n",
	        "kiln.yaml:1:1: '%TAG' directives are not supported (nor are tags other than YAML's own)");
	put("kiln.yaml", "%YAML 1.2\n---\nrun: predict.py:Predictor\n");
	kiln_manifest_free(load_ok(NULL));
}

#define ONLY_CORE "is not supported (only !!str, !!int, !!float, !!bool, !!null, !!seq and !!map)"

Test(manifest, tags_other_than_the_core_schema_are_refused)
{
	rejects("run: predict.py:Predictor\nserve:\n  warmup:\n    a: !!binary aGVsbG8=\n",
	        "kiln.yaml:4:8: tag '!!binary' " ONLY_CORE);
	rejects("run: predict.py:Predictor\nserve:\n  warmup:\n    a: !!timestamp 2001-12-14\n",
	        "kiln.yaml:4:8: tag '!!timestamp' " ONLY_CORE);
	rejects("run: predict.py:Predictor\nbuild:\n  python_packages: !!set {numpy: null}\n",
	        "kiln.yaml:3:20: tag '!!set' " ONLY_CORE);
	rejects("run: !python/object:os.system predict.py:Predictor\n",
	        "kiln.yaml:1:6: tag '!python/object:os.system' " ONLY_CORE);
	rejects("run: predict.py:Predictor\nimage: !<tag:example.com,2000:img> x\n",
	        "kiln.yaml:2:8: tag '!<tag:example.com,2000:img>' " ONLY_CORE);
	/* a tag that is never used by the schema is refused all the same */
	rejects("run: predict.py:Predictor\nx: &unused !custom 1\n",
	        "kiln.yaml:2:4: tag '!custom' " ONLY_CORE);
	rejects("run: predict.py:Predictor\nserve:\n  warmup:\n    a: !!map [1]\n",
	        "kiln.yaml:4:8: tag '!!map' does not fit a list");
	rejects("run: predict.py:Predictor\nserve:\n  warmup:\n    a: !!str {b: 1}\n",
	        "kiln.yaml:4:8: tag '!!str' does not fit a map");
	rejects("run: predict.py:Predictor\nserve:\n  warmup:\n    a: !!int abc\n",
	        "kiln.yaml:4:8: tag '!!int' does not fit the value 'abc'");
	rejects("run: predict.py:Predictor\nserve:\n  warmup:\n    a: !!bool 1\n",
	        "kiln.yaml:4:8: tag '!!bool' does not fit the value '1'");
	/* the core schema's own tags, and "!", are fine */
	put("kiln.yaml", "run: !!str predict.py:Predictor\n"
	                 "serve: !!map\n"
	                 "  warmup:\n"
	                 "    a: !!float 1.5\n"
	                 "    b: !!null ~\n"
	                 "    c: !!seq [!!bool true, ! 12]\n"
	                 "    d: !<tag:yaml.org,2002:int> 7\n");
	struct kiln_manifest *m = load_ok(NULL);
	json_t *w = m->serve.warmup;
	cr_assert(json_real_value(json_object_get(w, "a")) == 1.5);
	cr_assert(json_is_null(json_object_get(w, "b")));
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(w, "c"), 1)), "12");
	cr_assert_eq(json_integer_value(json_object_get(w, "d")), 7);
	kiln_manifest_free(m);
}

/* libyaml's scanner slows down with each level open (40,000 levels took 23 s): refused as it is read. */
Test(manifest, deep_nesting_is_refused_before_it_is_loaded, .timeout = 10)
{
	_cleanup_free_ char *open = repeat("[", "", 40000);
	_cleanup_free_ char *close = repeat("]", "", 40000);
	_cleanup_free_ char *yaml = NULL;
	cr_assert(
	    asprintf(&yaml, "run: predict.py:Predictor\nserve:\n  warmup:\n    a: %s%s\n", open, close) > 0);
	put("kiln.yaml", yaml);
	load_fails(KILN_EINVAL, "kiln.yaml:4:69: nested more than 64 levels deep");
}

/* Whether S is valid UTF-8 (no character cut in half). */
static bool valid_utf8(const char *s)
{
	for (const unsigned char *u = (const unsigned char *)s; *u;) {
		size_t n = *u < 0x80 ? 1 : *u >= 0xF0 ? 4 : *u >= 0xE0 ? 3 : *u >= 0xC0 ? 2 : 0;
		if (n == 0)
			return false;
		for (size_t i = 1; i < n; i++)
			if ((u[i] & 0xC0) != 0x80)
				return false;
		u += n;
	}
	return true;
}

Test(manifest, messages_never_cut_a_character_in_half)
{
	/* "x" then 40 two-byte characters: byte 60 is the middle of one */
	_cleanup_free_ char *value = repeat("\xc3\xa9", "", 40);
	_cleanup_free_ char *cut = repeat("\xc3\xa9", "", 29);
	_cleanup_free_ char *yaml = NULL, *want = NULL;
	cr_assert(asprintf(&yaml, "run: predict.py:Predictor\nbuild:\n  gpu: x%s\n", value) > 0);
	cr_assert(asprintf(&want, "kiln.yaml:3:8: build.gpu: expected a boolean, got 'x%s...'", cut) > 0);
	rejects(yaml, want);
	/* a key path longer than messages keep: cut before the character that does not fit */
	_cleanup_free_ char *key = repeat("\xc3\xa9", "", 200);
	_cleanup_free_ char *kept = repeat("\xc3\xa9", "", 120);
	free(yaml);
	free(want);
	cr_assert(asprintf(&yaml, "run: predict.py:Predictor\nserve:\n  warmup:\n    x%s: {a: 1, a: 2}\n",
	                   key) > 0);
	cr_assert(asprintf(&want,
	                   "kiln.yaml:4:%d: duplicate key 'a' in 'serve.warmup.x%s' (first set on line 4)",
	                   215, kept) > 0);
	put("kiln.yaml", yaml);
	struct kiln_manifest *m = NULL;
	_cleanup_error_ struct kiln_error *err = NULL;
	cr_assert_eq(kiln_manifest_load(&m, dir, NULL, &err), KILN_EINVAL);
	cr_assert(valid_utf8(err->message), "%s", err->message);
	_cleanup_free_ char *full = kiln_path_join(dir, want);
	cr_assert_str_eq(err->message, full);
	/* an unknown key is quoted cut too */
	free(yaml);
	free(want);
	cr_assert(asprintf(&yaml, "run: predict.py:Predictor\nx%s: 1\n", key) > 0);
	cr_assert(asprintf(&want, "kiln.yaml:2:1: unknown key 'x%s...'", cut) > 0);
	rejects(yaml, want);
}

Test(manifest, quoted_keys_and_aliases_of_known_keys_work)
{
	put("kiln.yaml", "\"run\": predict.py:Predictor\n"
	                 "build:\n"
	                 "  python_packages: &pkgs [numpy]\n"
	                 "  system_packages: *pkgs\n");
	struct kiln_manifest *m = load_ok(NULL);
	STRV(&m->system_packages, "numpy");
	kiln_manifest_free(m);
}
