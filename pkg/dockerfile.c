/* SPDX-License-Identifier: Apache-2.0 */
/* dockerfile.c: the Dockerfile equivalent to kiln's build of a project. */
#include "pkg/dockerfile.h"
#include "pkg/base.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "pkg/plan.h"
#include "pkg/runtime.h"

/* Cog's default Python when python_version is absent. */

char *kiln_dockerfile_base(const struct kiln_manifest *m)
{
	/* the very choice kiln build makes (pkg/base.c) */
	char *name = NULL, *reason = NULL;
	struct kiln_error *e = NULL;
	if (kiln_base_choose(&name, &reason, m, getenv("KILN_PYTHON_BASE"), &e) < 0)
		name = NULL;
	kiln_error_free(e);
	free(reason);
	return name;
}

/* S as a JSON string ("a \"b\""), which is also how Dockerfile's exec and COPY forms quote. */
static void put_json_string(struct kiln_buf *b, const char *s)
{
	json_t *j = json_string(s);
	char *text = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
	kiln_buf_puts(b, text ? text : "\"\"");
	free(text);
	json_decref(j);
}

/* A shell command as a RUN instruction: shell form on one line, else the exec form of /bin/sh -c. */
static void put_run(struct kiln_buf *b, const char *flags, const char *cmd)
{
	kiln_buf_printf(b, "RUN %s", flags);
	if (strchr(cmd, '\n') == NULL && strchr(cmd, '\r') == NULL && cmd[0] != '[') {
		kiln_buf_printf(b, "%s\n", cmd);
		return;
	}
	kiln_buf_puts(b, "[\"/bin/sh\", \"-c\", ");
	put_json_string(b, cmd);
	kiln_buf_puts(b, "]\n");
}

static void put_copy(struct kiln_buf *b, const char *from, const char *src, const char *dst)
{
	kiln_buf_printf(b, "COPY %s%s%s[", from ? "--from=" : "", from ? from : "", from ? " " : "");
	put_json_string(b, src);
	kiln_buf_puts(b, ", ");
	put_json_string(b, dst);
	kiln_buf_puts(b, "]\n");
}

/* NAME="value" as ENV and ARG take it ($ kept: Cog's variables may refer to earlier ones). */
static void put_assignment(struct kiln_buf *b, const char *instr, const char *item)
{
	const char *eq = strchr(item, '=');
	kiln_buf_printf(b, "%s %.*s=\"", instr, (int)(eq - item), item);
	for (const char *s = eq + 1; *s; s++) {
		if (*s == '"' || *s == '\\')
			kiln_buf_put(b, "\\", 1);
		if (*s == '\n')
			kiln_buf_puts(b, "\\n");
		else
			kiln_buf_put(b, s, 1);
	}
	kiln_buf_puts(b, "\"\n");
}

/* A package list as one shell word each, single-quoted. */
static void put_words(struct kiln_buf *b, const struct kiln_strv *v)
{
	for (size_t i = 0; i < v->n; i++) {
		kiln_buf_puts(b, " '");
		for (const char *s = v->v[i]; *s; s++)
			kiln_buf_puts(b, *s == '\'' ? "'\\''" : (char[]){*s, '\0'});
		kiln_buf_puts(b, "'");
	}
}

/* The project-relative path of a plan entry ("src/a.bin" -> "a.bin"). */
static const char *project_path(const char *name)
{
	return strncmp(name, "src/", 4) == 0 ? name + 4 : name;
}

static void put_layer(struct kiln_buf *b, const struct kiln_plan_layer *l)
{
	for (size_t i = 0; i < l->n; i++) {
		char dst[4096];
		snprintf(dst, sizeof(dst), "/%s", l->entries[i].name);
		put_copy(b, NULL, project_path(l->entries[i].name), dst);
	}
}

static void put_steps(struct kiln_buf *b, const struct kiln_manifest *m)
{
	if (m->system_packages.n) {
		kiln_buf_puts(b, "RUN apt-get update -qq && apt-get install -qqy --no-install-recommends");
		put_words(b, &m->system_packages);
		kiln_buf_puts(b, " && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin\n");
	}
	for (size_t i = 0; i < m->pre_install.n; i++)
		put_run(b, "", m->pre_install.v[i]);
	/* pip sees the project at /src, its working directory, as under kiln build: -r and -c includes,
	 * --find-links directories and local wheels of the project are there */
	if (m->python_requirements) {
		kiln_buf_puts(b, "RUN --mount=type=bind,target=/src cd /src && pip install --no-cache-dir -r");
		struct kiln_strv one = {.v = (char *[]){m->python_requirements}, .n = 1};
		put_words(b, &one);
		kiln_buf_puts(b, "\n");
	}
	if (m->python_packages.n) {
		kiln_buf_puts(b, "RUN --mount=type=bind,target=/src cd /src && pip install --no-cache-dir");
		put_words(b, &m->python_packages);
		kiln_buf_puts(b, "\n");
	}
	for (size_t i = 0; i < m->nrun_steps; i++) {
		const struct kiln_run_step *st = &m->run_steps[i];
		struct kiln_buf flags = {0};
		for (size_t k = 0; k < st->nmounts; k++)
			kiln_buf_printf(&flags, "--mount=type=%s,id=%s,target=%s ", st->mounts[k].type,
			                st->mounts[k].id, st->mounts[k].target);
		put_run(b, flags.ptr ? flags.ptr : "", st->command);
		kiln_buf_release(&flags);
	}
}

int kiln_dockerfile(char **out, const struct kiln_manifest *m, const char *runtime_image,
                    struct kiln_error **err)
{
	if (m->python_requirements && m->python_requirements[0] == '/')
		return kiln_error_set(
		    err, KILN_EINVAL,
		    "%s: build.python_requirements: '%s' is outside the project, which is the "
		    "Dockerfile's build context",
		    m->path, m->python_requirements);
	struct kiln_plan *plan = NULL;
	struct kiln_plan_options po;
	kiln_plan_options_init(&po);
	if (kiln_plan_make(&plan, m, &po, err) < 0)
		return -1;
	_cleanup_free_ char *base = NULL;
	_cleanup_free_ char *reason = NULL;
	if (kiln_base_choose(&base, &reason, m, getenv("KILN_PYTHON_BASE"), err) < 0) {
		kiln_plan_free(plan);
		return -1;
	}
	struct kiln_buf b = {0};
	kiln_buf_puts(&b, "# syntax=docker/dockerfile:1\n");
	kiln_buf_printf(&b, "# The image kiln builds for %s; the build context is the project directory.\n",
	                m->path);
	kiln_buf_puts(&b,
	              "# The runtime (kiln-shim, its libraries, the Python runner) comes from an image kiln "
	              "built:\n# set KILN_RUNTIME_IMAGE to it (see kiln-dockerfile(1)).\n");
	kiln_buf_puts(&b, "ARG KILN_RUNTIME_IMAGE=");
	kiln_buf_printf(&b, "%s\n", runtime_image);
	kiln_buf_puts(&b, "FROM ${KILN_RUNTIME_IMAGE} AS kiln-runtime\n\n");
	if (base && strncmp(base, "oci:", 4) == 0)
		kiln_buf_printf(
		    &b,
		    "# base: %s, an OCI layout: pass it as the build context 'base'\n"
		    "# (docker buildx build --build-context base=oci-layout://DIR[:TAG])\nFROM base\n",
		    base);
	else
		kiln_buf_printf(&b, "FROM %s\n", base ? base : "scratch");
	for (size_t i = 0; i < m->environment.n; i++)
		put_assignment(&b, "ENV", m->environment.v[i]);
	for (size_t i = 0; i < m->build_environment.n; i++)
		put_assignment(&b, "ARG", m->build_environment.v[i]);
	if (m->gpu)
		kiln_buf_puts(&b, "ENV NVIDIA_VISIBLE_DEVICES=\"all\"\n"
		                  "ENV NVIDIA_DRIVER_CAPABILITIES=\"compute,utility\"\n");
	put_steps(&b, m);
	for (size_t i = 0; i < plan->n; i++)
		if (plan->layers[i].kind == KILN_LAYER_WEIGHTS)
			put_layer(&b, &plan->layers[i]);
	put_copy(&b, "kiln-runtime", KILN_RUNTIME_DIR, KILN_RUNTIME_DIR);
	for (size_t i = 0; i < plan->n; i++)
		if (plan->layers[i].kind == KILN_LAYER_CODE)
			put_layer(&b, &plan->layers[i]);
	kiln_plan_free(plan);
	kiln_buf_puts(&b, "WORKDIR /src\nEXPOSE 5000\n");
	char *config = json_dumps(m->json, JSON_COMPACT);
	kiln_buf_puts(&b, "LABEL run.cog.config=");
	put_json_string(&b, config ? config : "{}");
	kiln_buf_puts(&b, "\n");
	free(config);
	json_t *ep = kiln_runtime_entrypoint();
	char *eps = ep ? json_dumps(ep, JSON_COMPACT) : NULL;
	kiln_buf_printf(&b, "ENTRYPOINT %s\n", eps ? eps : "[]");
	free(eps);
	json_decref(ep);
	if ((*out = kiln_buf_detach(&b)) == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	return 0;
}
