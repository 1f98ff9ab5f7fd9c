/* SPDX-License-Identifier: Apache-2.0 */
/* cleanup.h: __attribute__((cleanup)) helpers that release locals when they go out of scope. */
#ifndef KILN_CLEANUP_H
#define KILN_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <dirent.h>
#include <errno.h>

static inline void kiln_freep(void *p)
{
	free(*(void **)p);
}
static inline void kiln_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
static inline void kiln_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
static inline void kiln_closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

#define _cleanup_free_     __attribute__((cleanup(kiln_freep)))
#define _cleanup_close_    __attribute__((cleanup(kiln_closep)))
#define _cleanup_fclose_   __attribute__((cleanup(kiln_fclosep)))
#define _cleanup_closedir_ __attribute__((cleanup(kiln_closedirp)))

/* Hand ownership out of a cleanup-managed local: `return steal_pointer(&p);` */
static inline void *kiln_steal_pointer(void *pp)
{
	void **p = pp;
	void *v = *p;
	*p = NULL;
	return v;
}
#define steal_pointer(pp) kiln_steal_pointer(pp)

static inline int kiln_steal_fd(int *fd)
{
	int v = *fd;
	*fd = -1;
	return v;
}

#endif
