/* SPDX-License-Identifier: Apache-2.0 */
/* entry.c: release of tar entry descriptions. */
#include "layers/tar.h"

#include <stdlib.h>

void kiln_tar_entry_release(struct kiln_tar_entry *e)
{
	if (e == NULL)
		return;
	free(e->name);
	free(e->source);
	free(e->link_target);
	e->name = e->source = e->link_target = NULL;
}
