/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tests/registry/fixture.h: Debian's real docker-registry (distribution) on loopback for a unit test
 * (static functions, included by each test file that needs one), and an environment without the test
 * machine's credentials.
 */
#ifndef KILN_TESTS_REGISTRY_FIXTURE_H
#define KILN_TESTS_REGISTRY_FIXTURE_H

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/fs.h"
#include "layers/digest.h"
#include "registry/client.h"

#ifndef PASSWORD
#define PASSWORD "Corr3ct-Horse"
#endif

extern char **environ;

/* ---------------------------------------------------------------- a real registry on loopback */

struct registry {
	char dir[256];
	char host[64]; /* "127.0.0.1:PORT" */
	int port;
	pid_t pid;
};

/* A loopback port nobody listens on (the kernel's choice). */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* The status of GET URL, or 0 when nothing answers. */
static long probe(const char *url)
{
	CURL *c = curl_easy_init();
	long status = 0;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 1000L);
	curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	return status;
}

/* Start docker-registry with filesystem storage in a temporary directory; with htpasswd auth when
 * HTPASSWD (user alice, password PASSWORD). Returns when GET /v2/ answers. */
static void registry_start(struct registry *r, bool htpasswd)
{
	snprintf(r->dir, sizeof(r->dir), "/tmp/kiln-registry-XXXXXX");
	cr_assert(mkdtemp(r->dir) != NULL);
	r->port = free_port();
	snprintf(r->host, sizeof(r->host), "127.0.0.1:%d", r->port);
	char path[512], cmd[1024];
	if (htpasswd) {
		snprintf(cmd, sizeof(cmd), "htpasswd -Bbn alice '%s' > '%s/htpasswd'", PASSWORD, r->dir);
		cr_assert_eq(system(cmd), 0, "htpasswd failed (apt-get install apache2-utils)");
	}
	snprintf(path, sizeof(path), "%s/config.yml", r->dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f,
	        "version: 0.1\n"
	        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
	        "storage:\n  filesystem:\n    rootdirectory: %s/data\n  delete:\n    enabled: true\n"
	        "http:\n  addr: 127.0.0.1:%d\n  secret: kiln-test-secret\n",
	        r->dir, r->port);
	if (htpasswd)
		fprintf(f, "auth:\n  htpasswd:\n    realm: kiln-test\n    path: %s/htpasswd\n", r->dir);
	fclose(f);
	char log[512];
	snprintf(log, sizeof(log), "%s/registry.log", r->dir);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	char *argv[] = {"docker-registry", "serve", path, NULL};
	int rc = posix_spawnp(&r->pid, "docker-registry", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(rc, 0, "cannot start docker-registry: %s", strerror(rc));
	char url[128];
	snprintf(url, sizeof(url), "http://%s/v2/", r->host);
	for (int i = 0; i < 200; i++) {
		long s = probe(url);
		if (s == 200 || s == 401)
			return;
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	cr_assert_fail("docker-registry did not answer on %s (see %s)", r->host, log);
}

static void registry_stop(struct registry *r)
{
	if (r->pid > 0) {
		kill(r->pid, SIGTERM);
		waitpid(r->pid, NULL, 0);
		r->pid = 0;
	}
	if (r->dir[0])
		kiln_remove_tree(r->dir, NULL);
	r->dir[0] = '\0';
}

static char home[256];

/* No credentials from the test machine: an empty HOME, no KILN_REGISTRY_* variables. */
static void clean_environment(void)
{
	signal(SIGPIPE, SIG_IGN);
	snprintf(home, sizeof(home), "/tmp/kiln-client-home-XXXXXX");
	cr_assert(mkdtemp(home) != NULL);
	setenv("HOME", home, 1);
	unsetenv("DOCKER_CONFIG");
	unsetenv("REGISTRY_AUTH_FILE");
	unsetenv("KILN_REGISTRY_USERNAME");
	unsetenv("KILN_REGISTRY_PASSWORD");
	unsetenv("KILN_INSECURE_REGISTRIES");
	unsetenv("KILN_HTTP_STALL_SECONDS");
}

/* ---------------------------------------------------------------- blobs in memory */

struct mem_src {
	unsigned char *data;
	uint64_t size;
	uint64_t pos;
	uint64_t seeks[64]; /* offsets the client asked for, in order */
	int nseeks;
};

static int mem_seek(void *ctx, uint64_t offset, struct kiln_error **err)
{
	struct mem_src *m = ctx;
	if (m->nseeks < 64)
		m->seeks[m->nseeks++] = offset;
	m->pos = offset;
	return 0;
}

static ssize_t mem_read(void *ctx, void *buf, size_t len, struct kiln_error **err)
{
	struct mem_src *m = ctx;
	size_t n = m->size - m->pos < len ? (size_t)(m->size - m->pos) : len;
	memcpy(buf, m->data + m->pos, n);
	m->pos += n;
	return (ssize_t)n;
}

/* SIZE pseudo-random bytes from SEED and a source reading them. */
static struct kiln_blob_source make_blob(struct mem_src *m, size_t size, uint32_t seed)
{
	memset(m, 0, sizeof(*m));
	m->data = malloc(size ? size : 1);
	m->size = size;
	uint32_t x = seed;
	for (size_t i = 0; i < size; i++) {
		x = x * 1103515245 + 12345;
		m->data[i] = (unsigned char)(x >> 16);
	}
	struct kiln_blob_source s = {.size = size, .seek = mem_seek, .read = mem_read, .ctx = m};
	kiln_digest_buffer(s.digest, m->data, size);
	return s;
}

static struct kiln_registry *open_registry(const char *host, const struct kiln_registry_options *opt)
{
	struct kiln_registry *r = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_open(&r, host, opt, &err), 0, "%s", err ? err->message : "");
	return r;
}

#endif
