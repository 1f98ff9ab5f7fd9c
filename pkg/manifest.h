/* SPDX-License-Identifier: Apache-2.0 */
/*
 * manifest.h: kiln.yaml / cog.yaml parsed with libyaml into typed structs. kiln.yaml is Cog's schema
 * plus kiln's own keys (base, weights, serve). Every error names the file, line and column, and the key.
 */
#ifndef KILN_MANIFEST_H
#define KILN_MANIFEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

/* A position in the manifest file, 1-based (as editors count). */
struct kiln_pos {
	int line;
	int column;
};

/* A list of strings, each with the position it was read from. */
struct kiln_strv {
	char **v;
	struct kiln_pos *pos;
	size_t n;
};

/* A mount of a build.run step: Cog's {type: secret, id, target} (BuildKit's secret mounts). */
struct kiln_run_mount {
	char *type; /* "secret" */
	char *id;
	char *target;
	struct kiln_pos pos; /* of the mount's map */
};

/* One item of build.run: a command, and the mounts it runs with (none for a plain string). */
struct kiln_run_step {
	char *command;
	struct kiln_pos pos; /* of the command */
	struct kiln_run_mount *mounts;
	size_t nmounts;
};

struct kiln_manifest {
	char *path;  /* the manifest file, as it was opened ("DIR/kiln.yaml") */
	char *dir;   /* the project directory */
	bool is_cog; /* the file is a cog.yaml */

	/* build: */
	bool gpu;
	char *cuda;
	char *cudnn;
	char *python_version; /* NULL when absent (kiln_base_load applies Cog's default) */
	struct kiln_pos python_version_pos;
	char *python_requirements;
	char *python_overrides; /* Cog's overrides file: a requirement of its name replaces every other */
	struct kiln_pos python_overrides_pos;
	struct kiln_strv python_packages;
	struct kiln_strv system_packages;
	struct kiln_strv run_commands;   /* build.run, the command of each item */
	struct kiln_run_step *run_steps; /* build.run, each item with its mounts (as many as run_commands) */
	size_t nrun_steps;
	struct kiln_strv build_environment; /* build.environment: "NAME=value", for the build steps */
	struct kiln_strv
	    pre_install; /* build.pre_install (deprecated in Cog): run before the Python packages */

	/* run (or its older alias predict): "file.py:Class", or "native:lib/x.so" */
	char *predict;
	struct kiln_pos predict_pos;
	char *train;
	char *image;                     /* default reference for build -t and push */
	long concurrency_max;            /* 0 when absent */
	long concurrency_default_target; /* 0 when absent; serve.target_concurrency when that is absent */
	struct kiln_strv environment;    /* "NAME=value" */

	/* kiln's keys */
	char *base; /* "scratch", "oci:DIR:TAG", a registry reference, or NULL when absent (pkg/base.h) */
	struct kiln_pos base_pos;
	struct kiln_strv weights; /* globs (relative to the project, "**" allowed) */
	struct {
		struct kiln_strv prefetch; /* globs or paths, in the order to prefetch */
		long min_instances;        /* -1 when absent */
		long max_instances;        /* -1 when absent */
		long scaledown_window;     /* seconds, -1 when absent */
		long target_concurrency;   /* -1 when absent */
		json_t *warmup;            /* an input object, or NULL */
		char *weights; /* "image" or "registry" (where large weights go), NULL when absent */
		struct kiln_pos weights_pos;
	} serve;

	json_t *json; /* the whole manifest as JSON, keys as written (the run.cog.config label) */

	/*
	 * Keys kiln accepts (Cog's schema) and does not act on, each a message "FILE:LINE:COLUMN: key.path:
	 * what kiln does instead", in the order of the file. Every command that loads a manifest prints them.
	 */
	struct kiln_strv warnings;
};

/*
 * Load the manifest of the project in DIR: FILE when non-NULL (-f; relative to the current directory),
 * else DIR/kiln.yaml, else DIR/cog.yaml. Validates it, including that the predictor file exists.
 */
int kiln_manifest_load(struct kiln_manifest **out, const char *dir, const char *file,
                       struct kiln_error **err);

/* Parse and validate one manifest file; dir is the project directory that relative paths refer to. */
int kiln_manifest_parse(struct kiln_manifest **out, const char *path, const char *dir,
                        struct kiln_error **err);

void kiln_manifest_free(struct kiln_manifest *m);

#endif
