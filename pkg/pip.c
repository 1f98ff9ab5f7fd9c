/* SPDX-License-Identifier: Apache-2.0 */
/* pip.c: placeholder until the Python dependencies are installed (helper H2 replaces this file). */
#include "pkg/pip.h"

#include <stdlib.h>

bool kiln_pip_wanted(const struct kiln_manifest *m)
{
	return (m->python_requirements && *m->python_requirements) || m->python_packages.n > 0;
}

int kiln_pip_inputs_key(char out[65], const struct kiln_manifest *m, struct kiln_error **err)
{
	(void)m;
	out[0] = '\0';
	return kiln_error_set(err, KILN_EINVAL, "python packages are not installed yet");
}

int kiln_pip_install(struct kiln_pip_result *out, const struct kiln_pip_context *c, struct kiln_error **err)
{
	(void)c;
	*out = (struct kiln_pip_result){0};
	return kiln_error_set(err, KILN_EINVAL, "python packages are not installed yet");
}

void kiln_pip_result_release(struct kiln_pip_result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free(r->layers[i].title);
		free(r->created_by[i]);
	}
	free(r->layers);
	free(r->created_by);
	free(r->freeze);
	json_decref(r->deps);
	*r = (struct kiln_pip_result){0};
}
