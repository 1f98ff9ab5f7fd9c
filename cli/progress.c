/* SPDX-License-Identifier: Apache-2.0 */
/* progress.c: progress on stderr: a line per finished item, and one live line on a terminal. */
#include "cli/cli.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool live_shown;
static double live_last;

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* With the lock held: erase the live line. */
static void clear_locked(void)
{
	if (live_shown)
		fputs("\r\033[K", stderr);
	live_shown = false;
}

void cli_progress_line(const char *fmt, ...)
{
	if (cli.progress == PROGRESS_QUIET)
		return;
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&lock);
	clear_locked();
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&lock);
	va_end(ap);
}

void cli_progress_live(const char *verb, uint64_t done, uint64_t total)
{
	if (cli.progress != PROGRESS_TTY)
		return;
	pthread_mutex_lock(&lock);
	double t = mono();
	if (t - live_last >= 0.1 || done == total) {
		char a[32], b[32];
		cli_human_size(a, done);
		cli_human_size(b, total);
		fprintf(stderr, "\r\033[K%s %s of %s (%d%%)", verb, a, b,
		        total ? (int)(done * 100 / total) : 100);
		live_shown = true;
		live_last = t;
	}
	pthread_mutex_unlock(&lock);
}

void cli_progress_clear(void)
{
	pthread_mutex_lock(&lock);
	clear_locked();
	pthread_mutex_unlock(&lock);
}
