/* SPDX-License-Identifier: Apache-2.0 */
/* prefetch.c: warm the page cache with the weight files on background threads while setup() runs. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shim/shim.h"

#define CHUNK           (1024 * 1024) /* bytes per read, one reused buffer per thread */
#define DEFAULT_THREADS 4

struct shim_prefetch {
	char **files;
	size_t n;
	pthread_t *threads;
	size_t nthreads;
	uint64_t bytes;           /* sizes of the files found at start */
	struct timespec start;    /* CLOCK_MONOTONIC */
	atomic_size_t next;       /* the next file a thread takes */
	atomic_size_t files_done; /* files read to their end */
	atomic_size_t missing;    /* files that could not be opened or read */
	atomic_uint_fast64_t bytes_done;
	atomic_size_t running; /* threads not finished yet */
	atomic_llong end_ns;   /* when the last thread finished, nanoseconds after start; 0 until then */
	atomic_bool stop;
};

/* Nanoseconds since P started, at least 1 (end_ns == 0 means "not finished"). */
static long long elapsed_ns(const struct shim_prefetch *p)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long long ns =
	    (long long)(now.tv_sec - p->start.tv_sec) * 1000000000LL + (now.tv_nsec - p->start.tv_nsec);
	return ns > 0 ? ns : 1;
}

/*
 * Read PATH from start to end into BUF (CHUNK bytes), keeping nothing, so that its pages end up in the
 * page cache: WILLNEED starts the kernel's readahead, SEQUENTIAL widens it. Stops between reads when
 * p->stop is set. A file that cannot be opened or read is counted in p->missing.
 */
static void warm_file(struct shim_prefetch *p, const char *path, char *buf)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		atomic_fetch_add(&p->missing, 1);
		return;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
	while (!atomic_load(&p->stop)) {
		ssize_t r = read(fd, buf, CHUNK);
		if (r > 0) {
			atomic_fetch_add(&p->bytes_done, (uint_fast64_t)r);
		} else if (r == 0) {
			atomic_fetch_add(&p->files_done, 1);
			break;
		} else if (errno != EINTR) {
			atomic_fetch_add(&p->missing, 1); /* EISDIR, EIO: as good as missing */
			break;
		}
	}
	close(fd);
}

/* A prefetch thread: take the next file until none is left or p->stop; the last one out notes the time. */
static void *prefetch_thread(void *arg)
{
	struct shim_prefetch *p = arg;
	char *buf = malloc(CHUNK);
	while (buf && !atomic_load(&p->stop)) {
		size_t i = atomic_fetch_add(&p->next, 1);
		if (i >= p->n)
			break;
		warm_file(p, p->files[i], buf);
	}
	free(buf);
	if (atomic_fetch_sub(&p->running, 1) == 1)
		atomic_store(&p->end_ns, elapsed_ns(p));
	return NULL;
}

/* Free P's memory (its threads must be joined already). */
static void prefetch_release(struct shim_prefetch *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->files[i]);
	free(p->files);
	free(p->threads);
	free(p);
}

int shim_prefetch_start(struct shim_prefetch **out, char *const *files, size_t n, int threads,
                        struct kiln_error **err)
{
	*out = NULL;
	struct shim_prefetch *p = calloc(1, sizeof(*p));
	if (!p)
		return kiln_error_errno(err, ENOMEM, "cannot start prefetch");
	clock_gettime(CLOCK_MONOTONIC, &p->start);
	size_t want = threads > 0 ? (size_t)threads : DEFAULT_THREADS;
	if (want > n)
		want = n;
	p->files = calloc(n ? n : 1, sizeof(*p->files));
	p->threads = calloc(want ? want : 1, sizeof(*p->threads));
	if (!p->files || !p->threads) {
		prefetch_release(p);
		return kiln_error_errno(err, ENOMEM, "cannot start prefetch");
	}
	/* Copy the list (the caller's may go away) and total the sizes of the files that are there. */
	for (; p->n < n; p->n++) {
		if (!(p->files[p->n] = strdup(files[p->n]))) {
			prefetch_release(p);
			return kiln_error_errno(err, ENOMEM, "cannot start prefetch");
		}
		struct stat st;
		if (stat(files[p->n], &st) == 0 && S_ISREG(st.st_mode))
			p->bytes += (uint64_t)st.st_size;
	}

	atomic_store(&p->running, want);
	if (want == 0)
		atomic_store(&p->end_ns, elapsed_ns(p));
	for (; p->nthreads < want; p->nthreads++) {
		int rc = pthread_create(&p->threads[p->nthreads], NULL, prefetch_thread, p);
		if (rc != 0) {
			atomic_store(&p->stop, true);
			atomic_fetch_sub(&p->running, want - p->nthreads);
			for (size_t i = 0; i < p->nthreads; i++)
				pthread_join(p->threads[i], NULL);
			prefetch_release(p);
			return kiln_error_errno(err, rc, "cannot start prefetch thread");
		}
	}
	*out = p;
	return 0;
}

json_t *shim_prefetch_json(struct shim_prefetch *p)
{
	long long end = atomic_load(&p->end_ns);
	bool done = end > 0;
	long long ns = done ? end : elapsed_ns(p);
	return json_pack("{s:I,s:I,s:I,s:I,s:b,s:f,s:I}", "files", (json_int_t)p->n, "files_done",
	                 (json_int_t)atomic_load(&p->files_done), "bytes", (json_int_t)p->bytes, "bytes_done",
	                 (json_int_t)atomic_load(&p->bytes_done), "done", done, "seconds", (double)ns / 1e9,
	                 "missing", (json_int_t)atomic_load(&p->missing));
}

void shim_prefetch_free(struct shim_prefetch *p, bool cancel)
{
	if (!p)
		return;
	if (cancel)
		atomic_store(&p->stop, true);
	for (size_t i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	prefetch_release(p);
}
