/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dockerfile.h: the Dockerfile equivalent to what kiln builds for a project (`kiln dockerfile`, Cog's
 * `cog debug`), for users who build with another engine (docker buildx, buildah, kaniko).
 */
#ifndef KILN_DOCKERFILE_H
#define KILN_DOCKERFILE_H

#include "common/error.h"
#include "pkg/manifest.h"

/*
 * The Dockerfile of M's project (its build context is the project directory): the base, the environment,
 * system_packages, pre_install, the Python requirements and packages, build.run (secret mounts as
 * BuildKit's), the weights file by file as kiln layers them, then the code (.kilnignore/.dockerignore
 * honoured, through the build plan), the runtime copied from the image RUNTIME_IMAGE (any image kiln built:
 * its /.kiln), the working directory, port, labels and entrypoint. *out is the caller's to free.
 * Deterministic.
 */
int kiln_dockerfile(char **out, const struct kiln_manifest *m, const char *runtime_image,
                    struct kiln_error **err);

/* The base the Dockerfile starts FROM (the choice kiln build makes); the caller's to free. */
char *kiln_dockerfile_base(const struct kiln_manifest *m);

#endif
