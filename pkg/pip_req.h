/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pip_req.h: what pip will read for a manifest's Python packages, gathered without running it: the
 * requirements file and its -r/-c includes, python_packages, pip's PIP_* variables and pip.conf files,
 * and the local wheels and --find-links directories they name. Internal to pkg/pip.c.
 */
#ifndef KILN_PIP_REQ_H
#define KILN_PIP_REQ_H

#include <stddef.h>

#include "common/buf.h"
#include "common/error.h"
#include "pkg/manifest.h"

/* Where the project is inside the sandbox (read-only, the working directory of pip). */
#define KILN_PIP_SRC "/src"

/* The host's pip configuration files, in the order pip reads them; each is copied into the sandbox at
 * its slot (relative to the work directory). */
enum { KILN_PIP_CONF_SLOTS = 5 };
extern const char *const kiln_pip_conf_slot[KILN_PIP_CONF_SLOTS];

struct kiln_pip_reqs {
	struct kiln_buf text; /* every input, as the inputs key hashes it */
	char *project;        /* the project directory, resolved */
	char **binds;         /* absolute paths outside the project that pip reads (bound read-only) */
	size_t nbinds;
	char **opts; /* index and find-links options of the requirements, as pip sees them */
	size_t nopts;
	char *conf[KILN_PIP_CONF_SLOTS]; /* the host's pip configuration file of each slot, or NULL */
	/* build.python_overrides' requirements as this reads them (comments out, continuations joined):
	 * "LINE<TAB>REQUIREMENT\n" each, for the resolver (pip.c) */
	struct kiln_buf overrides;
};

/* Read M's requirements (and what they include) into OUT. Errors name FILE:LINE. */
int kiln_pip_reqs_scan(struct kiln_pip_reqs *out, const struct kiln_manifest *m, struct kiln_error **err);
void kiln_pip_reqs_release(struct kiln_pip_reqs *r);

#endif
