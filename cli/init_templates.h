/* SPDX-License-Identifier: Apache-2.0 */
/* init_templates.h: the files `kiln init` writes, as text compiled into kiln. */
#ifndef KILN_CLI_INIT_TEMPLATES_H
#define KILN_CLI_INIT_TEMPLATES_H

struct init_template {
	const char *path; /* relative to the project directory, '/'-separated */
	const char *text;
};

/* Every file of a new project, in the order they are written and reported; ends with {NULL, NULL}. */
extern const struct init_template init_templates[];

#endif
