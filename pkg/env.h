/* SPDX-License-Identifier: Apache-2.0 */
/*
 * env.h: the model's environment, the layers between the base and the weights: what system_packages,
 * build.pre_install and build.run change in the base's root (one layer per step group, deletions as
 * OCI whiteouts), and the Python dependencies pip installs (pkg/pip.h). Steps run in the base's own
 * root under bubblewrap (pkg/sandbox.h). Each layer is cached on the layers under it and the step's text
 * and inputs: an unchanged environment runs nothing and reads nothing on a rebuild.
 */
#ifndef KILN_ENV_H
#define KILN_ENV_H

#include <jansson.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "pkg/image.h"
#include "pkg/manifest.h"
#include "pkg/store.h"
#include "registry/client.h"

/* A secret for build.run's mounts (kiln build --secret id=ID,src=FILE | id=ID,env=NAME). */
struct kiln_secret {
	char *id;
	char *src; /* a file on this machine (for env=, a private temporary file with the value) */
};

struct kiln_env_options {
	const struct kiln_secret *secrets;
	size_t nsecrets;
	int64_t mtime; /* SOURCE_DATE_EPOCH, else 0 */
	const struct kiln_registry_options *registry;
	void (*on_step)(void *ctx, const char *what);   /* "system_packages: apt-get install ..." */
	void (*on_output)(void *ctx, const char *line); /* the steps' output, line by line */
	void *ctx;
	volatile sig_atomic_t *cancel;
};

struct kiln_env_result {
	struct kiln_built_layer *layers; /* in image order, kind KILN_LAYER_DEPS, already in the store */
	char **created_by;               /* each layer's history line ("RUN apt-get install ...") */
	size_t n;
	char *pip_freeze;  /* the run.cog.pip_freeze label ("name==version\n"...), NULL without pip */
	json_t *deps;      /* kiln's list of the dependency layers (dev.kiln.dependencies), or NULL */
	uint64_t bytes_written;
	double seconds;
};

/* Build M's environment on BASE into OUT. Nothing to do (no packages, no steps): OUT is empty. */
int kiln_env_build(struct kiln_env_result *out, struct kiln_store *s, const struct kiln_manifest *m,
                   const struct kiln_base *base, const struct kiln_env_options *opt,
                   struct kiln_error **err);
void kiln_env_result_release(struct kiln_env_result *r);

#endif
