/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pip.h: the Python dependencies (python_requirements, python_packages) installed with the base's own
 * pip under bubblewrap into dependency layers: each installed distribution of 64 MiB or more in its own
 * layer, the rest bundled, big and stable ones lowest. pip's configuration (PIP_* variables, pip.conf)
 * is honoured. Deterministic: sorted entries, fixed mtimes, hash-based .pyc, no host paths.
 */
#ifndef KILN_PIP_H
#define KILN_PIP_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "pkg/image.h"
#include "pkg/manifest.h"
#include "pkg/store.h"

/* true when M asks for Python packages (python_requirements or python_packages). */
bool kiln_pip_wanted(const struct kiln_manifest *m);

/*
 * The key of M's requirement inputs (64 hex digits): the requirements file and every file it includes
 * (-r, -c), python_packages, pip's PIP_* variables and configuration files, and the stat fingerprints
 * of local wheels and --find-links directories. Errors name the manifest position or the file and line
 * (a missing requirements file, an included file that is not there). Reads no network.
 */
int kiln_pip_inputs_key(char out[65], const struct kiln_manifest *m, struct kiln_error **err);

struct kiln_pip_context {
	struct kiln_store *store;
	const struct kiln_manifest *m;
	const char *root;      /* the root as the steps before pip left it; pip runs there (read-only) */
	bool keep_mountpoints; /* the root is kiln's view of it (kiln_rootfs_view): mount points made stay */
	const char *chain_key; /* hex key of the base and the layers under pip (for the per-layer cache) */
	int64_t mtime;
	void (*on_output)(void *ctx, const char *line);
	void *ctx;
	volatile sig_atomic_t *cancel;
};

struct kiln_pip_result {
	struct kiln_built_layer *layers; /* in image order, in the store */
	char **created_by;
	size_t n;
	char *freeze; /* "name==version\n"... sorted (run.cog.pip_freeze) */
	json_t *deps; /* [{"digest", "distributions": ["torch==2.3.0"], "size"}...] (dev.kiln.dependencies) */
	uint64_t bytes_written;
};

/* Resolve and install M's requirements in C->root into OUT. Errors carry pip's exit status and the tail
 * of its output, and name what failed (a requirement the index lacks, an sdist with no compiler). */
int kiln_pip_install(struct kiln_pip_result *out, const struct kiln_pip_context *c, struct kiln_error **err);
void kiln_pip_result_release(struct kiln_pip_result *r);

#endif
