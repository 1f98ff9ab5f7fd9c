/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tests/registry/client.c: the registry client against Debian's real docker-registry (distribution) on
 * loopback: blobs, chunked and resumed uploads, mounts, manifests, htpasswd auth, and faults injected by a
 * small TCP proxy in front of the registry.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "layers/digest.h"
#include "registry/client.h"
#include "registry/client_internal.h"
#include "tests/registry/fixture.h"

#define MIB (1024 * 1024)

static struct registry reg; /* the suite's registry */

static void plain_init(void)
{
	clean_environment();
	registry_start(&reg, false);
}

static void auth_init(void)
{
	clean_environment();
	registry_start(&reg, true);
}

static void fini(void)
{
	registry_stop(&reg);
	kiln_remove_tree(home, NULL);
}

TestSuite(client, .init = plain_init, .fini = fini);
TestSuite(client_auth, .init = auth_init, .fini = fini);
TestSuite(client_faults, .init = plain_init, .fini = fini);

static int buf_write(void *ctx, const void *data, size_t len, struct kiln_error **err)
{
	return kiln_buf_put(ctx, data, len) < 0 ? kiln_error_set(err, KILN_EFAIL, "out of memory") : 0;
}

static void quick_options(struct kiln_registry_options *opt)
{
	kiln_registry_options_init(opt);
	opt->backoff = 0.01;
}

static void upload_ok(struct kiln_registry *r, const char *repo, const struct kiln_blob_source *src,
                      uint64_t *sent)
{
	struct kiln_error *err = NULL;
	int rc = kiln_registry_blob_upload(r, repo, src, NULL, NULL, sent, &err);
	cr_assert_eq(rc, 0, "%s", err ? err->message : "");
}

/* The blob reads back byte for byte. */
static void expect_blob(struct kiln_registry *r, const char *repo, const struct mem_src *m,
                        const char *digest)
{
	bool exists = false;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_blob_exists(r, repo, digest, &exists, &err), 0, "%s",
	             err ? err->message : "");
	cr_assert(exists, "%s not in %s", digest, repo);
	struct kiln_buf b = KILN_BUF_INIT;
	cr_assert_eq(kiln_registry_blob_get(r, repo, digest, buf_write, &b, &err), 0, "%s",
	             err ? err->message : "");
	cr_assert_eq(b.len, m->size);
	/* an empty blob leaves the buffer NULL: memcmp must not see it, even for 0 bytes */
	cr_assert(m->size == 0 || memcmp(b.ptr, m->data, m->size) == 0, "the blob read back differs");
	kiln_buf_release(&b);
}

/* ---------------------------------------------------------------- the plain registry */

Test(client, ping_answers)
{
	struct kiln_registry *r = open_registry(reg.host, NULL);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_ping(r, &err), 0, "%s", err ? err->message : "");
	kiln_registry_free(r);
}

struct progress_log {
	uint64_t last;
	int calls;
	bool backwards;
};

static void on_progress(void *ctx, uint64_t done)
{
	struct progress_log *p = ctx;
	p->backwards |= done < p->last;
	p->last = done;
	p->calls++;
}

Test(client, small_blob_is_one_put_and_reads_back)
{
	struct kiln_registry *r = open_registry(reg.host, NULL);
	struct mem_src m;
	struct kiln_blob_source src = make_blob(&m, 100 * 1024, 1);
	struct progress_log p = {0};
	uint64_t sent = 0;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_blob_upload(r, "kiln/small", &src, on_progress, &p, &sent, &err), 0, "%s",
	             err ? err->message : "");
	cr_assert_eq(sent, src.size);
	cr_assert_eq(p.last, src.size);
	cr_assert_not(p.backwards);
	cr_assert_eq(m.nseeks, 1, "one request reads the blob once (%d seeks)", m.nseeks);
	expect_blob(r, "kiln/small", &m, src.digest);
	free(m.data);
	kiln_registry_free(r);
}

Test(client, large_blob_goes_in_patch_chunks)
{
	struct kiln_registry_options opt;
	quick_options(&opt);
	opt.chunk_size = 1 * MIB;
	opt.monolithic_max = 512 * 1024;
	struct kiln_registry *r = open_registry(reg.host, &opt);
	struct mem_src m;
	struct kiln_blob_source src = make_blob(&m, 5 * MIB + 123, 2);
	struct progress_log p = {0};
	uint64_t sent = 0;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_blob_upload(r, "kiln/large", &src, on_progress, &p, &sent, &err), 0, "%s",
	             err ? err->message : "");
	cr_assert_eq(sent, src.size);
	cr_assert_eq(p.last, src.size);
	cr_assert_not(p.backwards);
	/* one PATCH per MiB, each reading from its own offset */
	cr_assert_eq(m.nseeks, 6, "%d requests read the blob", m.nseeks);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(m.seeks[i], (uint64_t)i * MIB);
	expect_blob(r, "kiln/large", &m, src.digest);
	free(m.data);
	kiln_registry_free(r);
}

Test(client, empty_blob_uploads)
{
	struct kiln_registry *r = open_registry(reg.host, NULL);
	struct mem_src m;
	struct kiln_blob_source src = make_blob(&m, 0, 3);
	upload_ok(r, "kiln/empty", &src, NULL);
	expect_blob(r, "kiln/empty", &m, src.digest);
	free(m.data);
	kiln_registry_free(r);
}

Test(client, unknown_blob_does_not_exist_and_cannot_be_read)
{
	struct kiln_registry *r = open_registry(reg.host, NULL);
	const char *d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
	bool exists = true;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_blob_exists(r, "kiln/none", d, &exists, &err), 0, "%s",
	             err ? err->message : "");
	cr_assert_not(exists);
	struct kiln_buf b = KILN_BUF_INIT;
	cr_assert_eq(kiln_registry_blob_get(r, "kiln/none", d, buf_write, &b, &err), KILN_ENOTFOUND);
	cr_assert(strstr(err->message, "cannot get blob sha256:000000000000") &&
	              strstr(err->message, reg.host) && strstr(err->message, "kiln/none") &&
	              strstr(err->message, "BLOB_UNKNOWN") && strstr(err->message, "404"),
	          "%s", err->message);
	cr_assert_eq(b.len, 0);
	kiln_error_free(err);
	kiln_registry_free(r);
}

Test(client, wrong_digest_is_refused_with_the_registry_words)
{
	struct kiln_registry *r = open_registry(reg.host, NULL);
	struct mem_src m;
	struct kiln_blob_source src = make_blob(&m, 1000, 4);
	memcpy(src.digest + 7, "ab", 2); /* the digest no longer matches the bytes */
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_registry_blob_upload(r, "kiln/bad", &src, NULL, NULL, NULL, &err), 0);
	char want[64];
	snprintf(want, sizeof(want), "cannot push blob %.19s", src.digest);
	cr_assert(strstr(err->message, want) && strstr(err->message, "to 127.0.0.1:") &&
	              strstr(err->message, "/kiln/bad") && strstr(err->message, "DIGEST_INVALID"),
	          "%s", err->message);
	kiln_error_free(err);
	free(m.data);
	kiln_registry_free(r);
}

Test(client, blob_mounts_from_another_repository)
{
	struct kiln_registry *r = open_registry(reg.host, NULL);
	struct mem_src m;
	struct kiln_blob_source src = make_blob(&m, 4096, 5);
	upload_ok(r, "kiln/base", &src, NULL);
	bool mounted = false;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_blob_mount(r, "kiln/app", "kiln/base", src.digest, &mounted, &err), 0,
	             "%s", err ? err->message : "");
	cr_assert(mounted);
	expect_blob(r, "kiln/app", &m, src.digest);
	/* a blob the source repository lacks: the registry starts an upload instead, which is cancelled */
	const char *d = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
	cr_assert_eq(kiln_registry_blob_mount(r, "kiln/app", "kiln/base", d, &mounted, &err), 0, "%s",
	             err ? err->message : "");
	cr_assert_not(mounted);
	free(m.data);
	kiln_registry_free(r);
}

static const char *oci_manifest = "application/vnd.oci.image.manifest.v1+json";

/* Upload a config and a layer and build a minimal OCI manifest for them (caller frees). */
static char *make_manifest(struct kiln_registry *r, const char *repo)
{
	const char *config = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\","
	                     "\"diff_ids\":[]}}";
	struct mem_src cm = {.data = (unsigned char *)config, .size = strlen(config)};
	struct kiln_blob_source csrc = {.size = cm.size, .seek = mem_seek, .read = mem_read, .ctx = &cm};
	kiln_digest_buffer(csrc.digest, config, cm.size);
	upload_ok(r, repo, &csrc, NULL);
	struct mem_src lm;
	struct kiln_blob_source lsrc = make_blob(&lm, 3000, 6);
	upload_ok(r, repo, &lsrc, NULL);
	free(lm.data);
	char *json = NULL;
	cr_assert(
	    asprintf(
	        &json,
	        "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
	        "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
	        "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\","
	        "\"size\":3000}]}",
	        oci_manifest, csrc.digest, strlen(config), lsrc.digest) > 0);
	return json;
}

Test(client, manifest_round_trip_by_tag_and_digest)
{
	struct kiln_registry *r = open_registry(reg.host, NULL);
	char *json = make_manifest(r, "kiln/model");
	char digest[KILN_DIGEST_LEN], want[KILN_DIGEST_LEN];
	kiln_digest_buffer(want, json, strlen(json));
	struct kiln_error *err = NULL;
	cr_assert_eq(
	    kiln_registry_manifest_put(r, "kiln/model", "v1", oci_manifest, json, strlen(json), digest, &err),
	    0, "%s", err ? err->message : "");
	cr_assert_str_eq(digest, want);
	const char *refs[] = {"v1", want};
	for (int i = 0; i < 2; i++) {
		char *data = NULL, *mt = NULL;
		size_t len = 0;
		char got[KILN_DIGEST_LEN];
		cr_assert_eq(
		    kiln_registry_manifest_get(r, "kiln/model", refs[i], &data, &len, &mt, got, &err), 0,
		    "%s", err ? err->message : "");
		cr_assert_eq(len, strlen(json));
		cr_assert_str_eq(data, json);
		cr_assert_str_eq(mt, oci_manifest);
		cr_assert_str_eq(got, want);
		free(data);
		free(mt);
	}
	free(json);
	kiln_registry_free(r);
}

Test(client, unknown_tag_is_not_found_and_named)
{
	struct kiln_registry *r = open_registry(reg.host, NULL);
	char *data = NULL, *mt = NULL;
	size_t len = 0;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_manifest_get(r, "kiln/model", "nosuch", &data, &len, &mt, NULL, &err),
	             KILN_ENOTFOUND);
	cr_assert(strstr(err->message, "kiln/model:nosuch") && strstr(err->message, reg.host) &&
	              strstr(err->message, "MANIFEST_UNKNOWN"),
	          "%s", err->message);
	cr_assert_null(data);
	cr_assert_null(mt);
	kiln_error_free(err);
	kiln_registry_free(r);
}

Test(client, unknown_host_reports_curls_words)
{
	struct kiln_registry_options opt;
	quick_options(&opt);
	opt.max_retries = 0;
	struct kiln_registry *r = open_registry("nosuch.invalid", &opt);
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_registry_ping(r, &err), 0);
	cr_assert(strstr(err->message, "cannot reach registry nosuch.invalid") &&
	              strstr(err->message, "Could not resolve host"),
	          "%s", err->message);
	kiln_error_free(err);
	kiln_registry_free(r);
}

Test(client, cancel_stops_with_eintr)
{
	volatile sig_atomic_t cancel = 1;
	struct kiln_registry_options opt;
	quick_options(&opt);
	opt.cancel = &cancel;
	struct kiln_registry *r = open_registry(reg.host, &opt);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_ping(r, &err), KILN_EINTR);
	kiln_error_free(err);
	kiln_registry_free(r);
}

Test(client, scheme_and_api_host_follow_the_host)
{
	static const struct {
		const char *host;
		const char *base;
		bool monolithic;
	} cases[] = {
	    {"localhost:5000", "http://localhost:5000", false},
	    {"127.1.2.3:8080", "http://127.1.2.3:8080", false},
	    {"[::1]:5000", "http://[::1]:5000", false},
	    {"docker.io", "https://registry-1.docker.io", false},
	    {"reg.example.com", "https://reg.example.com", false},
	    {"insecure.example.com:5000", "http://insecure.example.com:5000", false},
	    {"listed.example.com", "http://listed.example.com", false},
	    {"ghcr.io", "https://ghcr.io", true},
	    {"europe-docker.pkg.dev", "https://europe-docker.pkg.dev", true},
	    {"eu.gcr.io", "https://eu.gcr.io", true},
	    {"1234.dkr.ecr.us-east-1.amazonaws.com", "https://1234.dkr.ecr.us-east-1.amazonaws.com", true},
	};
	setenv("KILN_INSECURE_REGISTRIES", "other.example.com,insecure.example.com", 1);
	const char *insecure[] = {"listed.example.com", NULL};
	struct kiln_registry_options opt;
	kiln_registry_options_init(&opt);
	opt.insecure = insecure;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct kiln_registry *r = open_registry(cases[i].host, &opt);
		cr_assert_str_eq(r->base, cases[i].base, "%s", cases[i].host);
		cr_assert_eq(r->monolithic_only, cases[i].monolithic, "%s", cases[i].host);
		kiln_registry_free(r);
	}
	struct kiln_registry *r = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_open(&r, "bad/host", NULL, &err), KILN_EINVAL);
	kiln_error_free(err);
}

struct upload_job {
	struct kiln_registry *r;
	struct kiln_blob_source src;
	struct mem_src m;
	int rc;
	char message[512];
};

static void *upload_thread(void *arg)
{
	struct upload_job *j = arg;
	struct kiln_error *err = NULL;
	j->rc = kiln_registry_blob_upload(j->r, "kiln/parallel", &j->src, NULL, NULL, NULL, &err);
	if (err)
		snprintf(j->message, sizeof(j->message), "%s", err->message);
	kiln_error_free(err);
	return NULL;
}

Test(client, one_client_uploads_from_several_threads)
{
	struct kiln_registry_options opt;
	quick_options(&opt);
	opt.chunk_size = 256 * 1024;
	opt.monolithic_max = 300 * 1024;
	struct kiln_registry *r = open_registry(reg.host, &opt);
	struct upload_job jobs[4];
	pthread_t threads[4];
	for (int i = 0; i < 4; i++) {
		jobs[i].r = r;
		jobs[i].rc = 0;
		jobs[i].message[0] = '\0';
		/* two chunked, two in one PUT */
		jobs[i].src = make_blob(&jobs[i].m, i % 2 ? 200 * 1024 : 1 * MIB + 17 * i, 20 + i);
		jobs[i].src.ctx = &jobs[i].m;
		pthread_create(&threads[i], NULL, upload_thread, &jobs[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(threads[i], NULL);
		cr_assert_eq(jobs[i].rc, 0, "upload %d: %s", i, jobs[i].message);
	}
	for (int i = 0; i < 4; i++) {
		expect_blob(r, "kiln/parallel", &jobs[i].m, jobs[i].src.digest);
		free(jobs[i].m.data);
	}
	kiln_registry_free(r);
}

/* ---------------------------------------------------------------- htpasswd (Basic) auth */

Test(client_auth, right_password_works)
{
	setenv("KILN_REGISTRY_USERNAME", "alice", 1);
	setenv("KILN_REGISTRY_PASSWORD", PASSWORD, 1);
	struct kiln_registry *r = open_registry(reg.host, NULL);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_ping(r, &err), 0, "%s", err ? err->message : "");
	struct mem_src m;
	struct kiln_blob_source src = make_blob(&m, 2000, 7);
	upload_ok(r, "kiln/private", &src, NULL);
	expect_blob(r, "kiln/private", &m, src.digest);
	free(m.data);
	kiln_registry_free(r);
}

Test(client_auth, wrong_password_fails_without_showing_it)
{
	setenv("KILN_REGISTRY_USERNAME", "alice", 1);
	setenv("KILN_REGISTRY_PASSWORD", "Wr0ng-Pa55word", 1);
	struct kiln_registry *r = open_registry(reg.host, NULL);
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_registry_ping(r, &err), 0);
	cr_assert(strstr(err->message, reg.host) && strstr(err->message, "authentication failed (401)"), "%s",
	          err->message);
	cr_assert_null(strstr(err->message, "Wr0ng-Pa55word"), "%s", err->message);
	cr_assert_null(strstr(err->message, "V3IwbmctUGE1NXdvcmQ"), "base64 of the password in: %s",
	               err->message);
	kiln_error_free(err);
	err = NULL;
	struct mem_src m;
	struct kiln_blob_source src = make_blob(&m, 2000, 8);
	cr_assert_lt(kiln_registry_blob_upload(r, "kiln/private", &src, NULL, NULL, NULL, &err), 0);
	cr_assert(strstr(err->message, "authentication failed") && !strstr(err->message, "Wr0ng-Pa55word"),
	          "%s", err->message);
	kiln_error_free(err);
	free(m.data);
	kiln_registry_free(r);
}

Test(client_auth, no_credentials_asks_for_login)
{
	struct kiln_registry *r = open_registry(reg.host, NULL);
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_registry_ping(r, &err), 0);
	char want[256];
	snprintf(want, sizeof(want), "authentication required by %s: run 'kiln login %s'", reg.host,
	         reg.host);
	cr_assert(strstr(err->message, want), "%s", err->message);
	kiln_error_free(err);
	kiln_registry_free(r);
}

Test(client_auth, credentials_from_config_json)
{
	char dir[512], text[1024];
	snprintf(dir, sizeof(dir), "%s/.docker", home);
	cr_assert_eq(kiln_mkdir_p(dir, NULL), 0);
	snprintf(dir, sizeof(dir), "%s/.docker/config.json", home);
	/* base64("alice:" PASSWORD) */
	snprintf(text, sizeof(text), "{\"auths\": {\"%s\": {\"auth\": \"YWxpY2U6Q29ycjNjdC1Ib3JzZQ==\"}}}",
	         reg.host);
	cr_assert_eq(kiln_write_file_atomic(dir, text, strlen(text), NULL), 0);
	struct kiln_registry *r = open_registry(reg.host, NULL);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_ping(r, &err), 0, "%s", err ? err->message : "");
	kiln_registry_free(r);
}

/* ---------------------------------------------------------------- faults, through a TCP proxy */

enum proxy_mode {
	PROXY_PASS, /* forward everything */
	PROXY_DROP, /* close the connection when the Nth request matching MATCH arrives, forwarding nothing */
	PROXY_TRUNCATE,   /* forward the first CUT bytes of the Nth matching request, then close */
	PROXY_CANNED,     /* answer the first N matching requests with CANNED instead of the registry */
	PROXY_BEARER,     /* act as a token-auth registry: 401 Bearer challenges, a token server at /token */
	PROXY_CUT_ANSWER, /* forward the first CUT bytes of the answers to the first N matching requests, then
	                     close */
	PROXY_NO_RANGE,   /* forward matching requests with their Range header renamed: a registry that
	                     ignores ranges (and answers 200 with the whole blob) */
};

struct proxy {
	int listen_fd;
	int port;
	int upstream_port;
	enum proxy_mode mode;
	const char *match; /* "PATCH /v2/", "GET /v2/kiln/model/manifests/" */
	int n;
	size_t cut;
	const char *canned;
	size_t canned_len;
	atomic_int seen;      /* matching requests so far */
	atomic_int saw_auth;  /* an Authorization header went through */
	atomic_int saw_range; /* requests with a "Range: bytes=" header */
	pthread_t thread;
	/* PROXY_BEARER: the token server's requests, and the one Basic header it accepts */
	atomic_int token_requests;
	char token_queries[8][1024];
	const char *basic;
};

static int send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

struct pump {
	struct proxy *px;
	int client;
};

static bool starts_request(const char *b, size_t n)
{
	static const char *const methods[] = {"GET ", "HEAD ", "POST ", "PUT ", "PATCH ", "DELETE "};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (n >= strlen(methods[i]) && memcmp(b, methods[i], strlen(methods[i])) == 0)
			return true;
	return false;
}

/* PROXY_BEARER: answer a request itself (the token server, or a 401 challenge); false to forward it. */
static bool bearer_answer(struct proxy *px, int client, const char *b, size_t n)
{
	char resp[1024];
	const char *body;
	if (n > 10 && memcmp(b, "GET /token", 10) == 0) {
		int k = px->token_requests++;
		if (k < 8)
			snprintf(px->token_queries[k], sizeof(px->token_queries[k]), "%.*s",
			         (int)strcspn(b, "\r\n"), b);
		bool ok = px->basic && memmem(b, n, px->basic, strlen(px->basic));
		body = ok ? "{\"token\":\"good-token\",\"expires_in\":300}"
		          : "{\"details\":\"incorrect username or password\"}";
		snprintf(resp, sizeof(resp),
		         "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
		         ok ? "200 OK" : "401 Unauthorized", strlen(body), body);
		send_all(client, resp, strlen(resp));
		return true;
	}
	if (memmem(b, n, "Authorization: Bearer good-token\r\n", 34))
		return false;
	body = "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"}]}";
	bool head = n > 5 && memcmp(b, "HEAD ", 5) == 0;
	snprintf(resp, sizeof(resp),
	         "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
	         "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:%d/token\",service=\"kiln-test\"\r\n"
	         "Content-Length: %zu\r\n\r\n%s",
	         px->port, strlen(body), head ? "" : body);
	send_all(client, resp, strlen(resp));
	return true;
}

/* One client connection: forward both ways, doing the proxy's mischief on the way up. */
static void *pump_thread(void *arg)
{
	struct pump *pu = arg;
	struct proxy *px = pu->px;
	int client = pu->client;
	free(pu);
	int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)px->upstream_port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(up, (struct sockaddr *)&a, sizeof(a)) < 0)
		goto out;
	char *buf = malloc(65536); /* each connection its own: several run at once */
	char *b = malloc(65536);
	size_t cut_left = 0, answer_left = 0;
	bool cutting = false, cutting_answer = false;
	for (;;) {
		struct pollfd fds[2] = {{client, POLLIN, 0}, {up, POLLIN, 0}};
		if (poll(fds, 2, 10000) <= 0)
			break;
		if (fds[0].revents) {
			ssize_t n = recv(client, b, 65536, 0);
			if (n <= 0)
				break;
			if (memmem(b, (size_t)n, "Authorization:", 14))
				px->saw_auth = 1;
			if (memmem(b, (size_t)n, "\r\nRange: bytes=", 15))
				px->saw_range++;
			if (px->mode == PROXY_BEARER && starts_request(b, (size_t)n) &&
			    bearer_answer(px, client, b, (size_t)n))
				continue;
			bool match = px->match && memmem(b, (size_t)n, px->match, strlen(px->match));
			int k = match ? ++px->seen : 0;
			if (match && px->mode == PROXY_DROP && k == px->n)
				break;
			if (match && px->mode == PROXY_CANNED && k <= px->n) {
				if (send_all(client, px->canned, px->canned_len) < 0)
					break;
				continue;
			}
			if (match && px->mode == PROXY_CUT_ANSWER && k <= px->n) {
				cutting_answer = true;
				answer_left = px->cut;
			}
			if (match && px->mode == PROXY_NO_RANGE) {
				char *range = memmem(b, (size_t)n, "\r\nRange:", 8);
				if (range)
					range[2] = 'X'; /* "Xange:", a header the registry ignores */
			}
			if (match && px->mode == PROXY_TRUNCATE && k == px->n) {
				cutting = true;
				cut_left = px->cut;
			}
			size_t fwd = (size_t)n;
			if (cutting && fwd > cut_left)
				fwd = cut_left;
			if (send_all(up, b, fwd) < 0)
				break;
			if (cutting) {
				cut_left -= fwd;
				if (cut_left == 0)
					break;
			}
		}
		if (fds[1].revents) {
			ssize_t n = recv(up, buf, 65536, 0);
			size_t fwd = n > 0 ? (size_t)n : 0;
			if (cutting_answer && fwd > answer_left)
				fwd = answer_left;
			if (n <= 0 || send_all(client, buf, fwd) < 0)
				break;
			if (cutting_answer && (answer_left -= fwd) == 0)
				break;
		}
	}
	free(b);
	free(buf);
out:
	close(up);
	close(client);
	return NULL;
}

static void *accept_thread(void *arg)
{
	struct proxy *px = arg;
	for (;;) {
		int c = accept4(px->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			return NULL;
		struct pump *pu = malloc(sizeof(*pu));
		pu->px = px;
		pu->client = c;
		pthread_t t;
		pthread_create(&t, NULL, pump_thread, pu);
		pthread_detach(t);
	}
}

/* Start a proxy to the registry on UPSTREAM_PORT, listening on ADDR (loopback unless given). */
static void proxy_start(struct proxy *px, int upstream_port, in_addr_t addr)
{
	px->upstream_port = upstream_port;
	px->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(px->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = addr};
	socklen_t len = sizeof(a);
	cr_assert(bind(px->listen_fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	cr_assert(listen(px->listen_fd, 16) == 0);
	cr_assert(getsockname(px->listen_fd, (struct sockaddr *)&a, &len) == 0);
	px->port = ntohs(a.sin_port);
	pthread_create(&px->thread, NULL, accept_thread, px);
}

static void proxy_stop(struct proxy *px)
{
	shutdown(px->listen_fd, SHUT_RDWR);
	close(px->listen_fd);
	pthread_join(px->thread, NULL);
}

static char *proxy_host(const struct proxy *px)
{
	static char host[64];
	snprintf(host, sizeof(host), "127.0.0.1:%d", px->port);
	return host;
}

Test(client_faults, chunked_upload_resumes_after_a_dropped_patch)
{
	struct proxy px = {.mode = PROXY_DROP, .match = "PATCH /v2/", .n = 3};
	proxy_start(&px, reg.port, htonl(INADDR_LOOPBACK));
	struct kiln_registry_options opt;
	quick_options(&opt);
	opt.chunk_size = 1 * MIB;
	opt.monolithic_max = 512 * 1024;
	struct kiln_registry *r = open_registry(proxy_host(&px), &opt);
	struct mem_src m;
	struct kiln_blob_source src = make_blob(&m, 5 * MIB, 9);
	uint64_t sent = 0;
	upload_ok(r, "kiln/resume", &src, &sent);
	/* the third chunk went again from the offset the registry reported, not the whole blob */
	cr_assert_geq(px.seen, 6);
	cr_assert_lt(sent, 7 * (uint64_t)MIB, "%llu bytes sent: the upload restarted",
	             (unsigned long long)sent);
	bool resent_third = false;
	for (int i = 3; i < m.nseeks; i++)
		resent_third |= m.seeks[i] == 2 * (uint64_t)MIB && m.seeks[i - 1] == 2 * (uint64_t)MIB;
	cr_assert(resent_third, "chunk 3 was not sent again from offset 2 MiB");
	expect_blob(r, "kiln/resume", &m, src.digest);
	free(m.data);
	kiln_registry_free(r);
	proxy_stop(&px);
}

Test(client_faults, upload_survives_a_patch_cut_midway)
{
	/* distribution keeps the partial chunk and then refuses the session: a new upload starts */
	struct proxy px = {.mode = PROXY_TRUNCATE, .match = "PATCH /v2/", .n = 2, .cut = 300 * 1024};
	proxy_start(&px, reg.port, htonl(INADDR_LOOPBACK));
	struct kiln_registry_options opt;
	quick_options(&opt);
	opt.chunk_size = 1 * MIB;
	opt.monolithic_max = 512 * 1024;
	struct kiln_registry *r = open_registry(proxy_host(&px), &opt);
	struct mem_src m;
	struct kiln_blob_source src = make_blob(&m, 3 * MIB + 5, 10);
	upload_ok(r, "kiln/cut", &src, NULL);
	expect_blob(r, "kiln/cut", &m, src.digest);
	free(m.data);
	kiln_registry_free(r);
	proxy_stop(&px);
}

/* A blob of SIZE bytes in REPO of the suite's registry, put there directly. */
static struct kiln_blob_source seed_blob(struct mem_src *m, const char *repo, size_t size, uint32_t seed)
{
	struct kiln_blob_source src = make_blob(m, size, seed);
	struct kiln_registry *r = open_registry(reg.host, NULL);
	upload_ok(r, repo, &src, NULL);
	kiln_registry_free(r);
	return src;
}

Test(client_faults, blob_download_cut_midway_resumes_with_range)
{
	struct mem_src m;
	struct kiln_blob_source src = seed_blob(&m, "kiln/cutdl", 1 * MIB + 7, 12);
	struct proxy px = {
	    .mode = PROXY_CUT_ANSWER, .match = "GET /v2/kiln/cutdl/blobs/", .n = 2, .cut = 300000};
	proxy_start(&px, reg.port, htonl(INADDR_LOOPBACK));
	struct kiln_registry_options opt;
	quick_options(&opt);
	struct kiln_registry *r = open_registry(proxy_host(&px), &opt);
	struct kiln_buf b = KILN_BUF_INIT;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_blob_get(r, "kiln/cutdl", src.digest, buf_write, &b, &err), 0, "%s",
	             err ? err->message : "");
	cr_assert_eq(px.seen, 3, "%d GETs", px.seen);
	cr_assert_eq(px.saw_range, 2, "%d GETs with Range", px.saw_range);
	cr_assert_eq(b.len, m.size, "%zu bytes written: some twice, or missing", b.len);
	cr_assert(memcmp(b.ptr, m.data, m.size) == 0, "the blob read back differs");
	kiln_buf_release(&b);
	free(m.data);
	kiln_registry_free(r);
	proxy_stop(&px);
}

Test(client_faults, blob_download_cut_every_time_gives_up_naming_the_blob)
{
	struct mem_src m;
	struct kiln_blob_source src = seed_blob(&m, "kiln/cutdl", 1 * MIB, 13);
	struct proxy px = {
	    .mode = PROXY_CUT_ANSWER, .match = "GET /v2/kiln/cutdl/blobs/", .n = 1000, .cut = 100000};
	proxy_start(&px, reg.port, htonl(INADDR_LOOPBACK));
	struct kiln_registry_options opt;
	quick_options(&opt);
	opt.max_retries = 2;
	struct kiln_registry *r = open_registry(proxy_host(&px), &opt);
	struct kiln_buf b = KILN_BUF_INIT;
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_registry_blob_get(r, "kiln/cutdl", src.digest, buf_write, &b, &err), 0);
	char want[64];
	snprintf(want, sizeof(want), "cannot get blob %.19s", src.digest);
	cr_assert(strstr(err->message, want) && strstr(err->message, "gave up after 2 retries"), "%s",
	          err->message);
	cr_assert_eq(px.seen, 3, "%d GETs", px.seen);
	cr_assert_eq(px.saw_range, 2, "%d GETs with Range", px.saw_range);
	kiln_error_free(err);
	kiln_buf_release(&b);
	free(m.data);
	kiln_registry_free(r);
	proxy_stop(&px);
}

static const char unavailable[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                  "Retry-After: 0\r\nContent-Length: 58\r\n\r\n"
                                  "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"try later\"}]}\n";

/* Put a manifest "v1" in kiln/model directly, for the proxied reads. */
static char *seed_manifest(void)
{
	struct kiln_registry *r = open_registry(reg.host, NULL);
	char *json = make_manifest(r, "kiln/model");
	struct kiln_error *err = NULL;
	cr_assert_eq(
	    kiln_registry_manifest_put(r, "kiln/model", "v1", oci_manifest, json, strlen(json), NULL, &err),
	    0, "%s", err ? err->message : "");
	kiln_registry_free(r);
	return json;
}

Test(client_faults, server_errors_are_retried)
{
	char *json = seed_manifest();
	struct proxy px = {.mode = PROXY_CANNED, .match = "GET /v2/kiln/model/manifests/", .n = 2};
	px.canned = unavailable;
	px.canned_len = strlen(unavailable);
	proxy_start(&px, reg.port, htonl(INADDR_LOOPBACK));
	struct kiln_registry_options opt;
	quick_options(&opt);
	struct kiln_registry *r = open_registry(proxy_host(&px), &opt);
	char *data = NULL, *mt = NULL;
	size_t len = 0;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_manifest_get(r, "kiln/model", "v1", &data, &len, &mt, NULL, &err), 0, "%s",
	             err ? err->message : "");
	cr_assert_str_eq(data, json);
	cr_assert_eq(px.seen, 3);
	free(data);
	free(mt);
	free(json);
	kiln_registry_free(r);
	proxy_stop(&px);
}

Test(client_faults, retries_give_up_with_status_and_registry_words)
{
	free(seed_manifest());
	struct proxy px = {.mode = PROXY_CANNED, .match = "GET /v2/kiln/model/manifests/", .n = 1000};
	px.canned = unavailable;
	px.canned_len = strlen(unavailable);
	proxy_start(&px, reg.port, htonl(INADDR_LOOPBACK));
	struct kiln_registry_options opt;
	quick_options(&opt);
	opt.max_retries = 2;
	struct kiln_registry *r = open_registry(proxy_host(&px), &opt);
	char *data = NULL, *mt = NULL;
	size_t len = 0;
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_registry_manifest_get(r, "kiln/model", "v1", &data, &len, &mt, NULL, &err), 0);
	cr_assert(strstr(err->message, "UNAVAILABLE: try later") && strstr(err->message, "503") &&
	              strstr(err->message, "kiln/model:v1"),
	          "%s", err->message);
	cr_assert_eq(px.seen, 3, "%d tries", px.seen);
	kiln_error_free(err);
	kiln_registry_free(r);
	proxy_stop(&px);
}

Test(client_faults, garbage_and_oversized_manifests_are_refused)
{
	static const char garbage[] =
	    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n"
	    "Content-Length: 9\r\n\r\nnot json!";
	struct proxy px = {.mode = PROXY_CANNED, .match = "GET /v2/kiln/model/manifests/", .n = 1};
	px.canned = garbage;
	px.canned_len = strlen(garbage);
	proxy_start(&px, reg.port, htonl(INADDR_LOOPBACK));
	struct kiln_registry *r = open_registry(proxy_host(&px), NULL);
	char *data = NULL, *mt = NULL;
	size_t len = 0;
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_registry_manifest_get(r, "kiln/model", "v1", &data, &len, &mt, NULL, &err), 0);
	char want[128];
	snprintf(want, sizeof(want), "%s returned a manifest that is not JSON", proxy_host(&px));
	cr_assert(strstr(err->message, want), "%s", err->message);
	kiln_error_free(err);
	err = NULL;
	kiln_registry_free(r);
	proxy_stop(&px);

	size_t big = 5 * MIB;
	char *huge = malloc(big + 256);
	int h = snprintf(huge, 256,
	                 "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n"
	                 "Content-Length: %zu\r\n\r\n",
	                 big);
	memset(huge + h, ' ', big);
	struct proxy px2 = {.mode = PROXY_CANNED, .match = "GET /v2/kiln/model/manifests/", .n = 1};
	px2.canned = huge;
	px2.canned_len = (size_t)h + big;
	proxy_start(&px2, reg.port, htonl(INADDR_LOOPBACK));
	r = open_registry(proxy_host(&px2), NULL);
	cr_assert_lt(kiln_registry_manifest_get(r, "kiln/model", "v1", &data, &len, &mt, NULL, &err), 0);
	cr_assert(strstr(err->message, "manifest too large"), "%s", err->message);
	cr_assert_null(data);
	kiln_error_free(err);
	kiln_registry_free(r);
	proxy_stop(&px2);
	free(huge);
}

Test(client_faults, a_silent_server_times_out)
{
	setenv("KILN_HTTP_STALL_SECONDS", "1", 1);
	/* a socket that listens and never answers */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 4) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
	char host[64];
	snprintf(host, sizeof(host), "127.0.0.1:%d", ntohs(a.sin_port));
	struct kiln_registry_options opt;
	quick_options(&opt);
	opt.max_retries = 1;
	struct kiln_registry *r = open_registry(host, &opt);
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_registry_ping(r, &err), 0);
	cr_assert(strstr(err->message, "cannot reach registry") && strstr(err->message, "too slow"), "%s",
	          err->message);
	kiln_error_free(err);
	kiln_registry_free(r);
	close(fd);
}

Test(client_faults, redirects_do_not_carry_credentials_to_another_host)
{
	/* R (htpasswd) behind proxy A, which redirects a blob GET to proxy B ("localhost", another origin) in
	 * front of a plain registry holding the same blob. */
	registry_stop(&reg);
	registry_start(&reg, true);
	struct registry plain = {0};
	registry_start(&plain, false);
	struct proxy b = {.mode = PROXY_PASS};
	proxy_start(&b, plain.port, htonl(INADDR_LOOPBACK));
	struct kiln_registry *pr = open_registry(plain.host, NULL);
	struct mem_src m;
	struct kiln_blob_source src = make_blob(&m, 70000, 11);
	upload_ok(pr, "kiln/redirect", &src, NULL);
	kiln_registry_free(pr);

	char redirect[512];
	snprintf(
	    redirect, sizeof(redirect),
	    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://localhost:%d/v2/kiln/redirect/blobs/%s\r\n"
	    "Content-Length: 0\r\n\r\n",
	    b.port, src.digest);
	struct proxy a = {.mode = PROXY_CANNED, .match = "GET /v2/kiln/redirect/blobs/", .n = 1};
	a.canned = redirect;
	a.canned_len = strlen(redirect);
	proxy_start(&a, reg.port, htonl(INADDR_LOOPBACK));
	setenv("KILN_REGISTRY_USERNAME", "alice", 1);
	setenv("KILN_REGISTRY_PASSWORD", PASSWORD, 1);
	struct kiln_registry *r = open_registry(proxy_host(&a), NULL);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_ping(r, &err), 0, "%s", err ? err->message : "");
	struct kiln_buf buf = KILN_BUF_INIT;
	cr_assert_eq(kiln_registry_blob_get(r, "kiln/redirect", src.digest, buf_write, &buf, &err), 0, "%s",
	             err ? err->message : "");
	cr_assert_eq(buf.len, m.size);
	cr_assert(memcmp(buf.ptr, m.data, m.size) == 0);
	cr_assert(a.saw_auth, "the registry itself got no credentials: the test shows nothing");
	cr_assert_not(b.saw_auth, "credentials went to the redirect's host");
	kiln_buf_release(&buf);
	free(m.data);
	kiln_registry_free(r);
	proxy_stop(&a);
	proxy_stop(&b);
	registry_stop(&plain);
}

/* base64("alice:" PASSWORD) */
#define ALICE_BASIC "Authorization: Basic YWxpY2U6Q29ycjNjdC1Ib3JzZQ=="

static int count(const char *s, const char *what)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, what)) != NULL; p++)
		n++;
	return n;
}

Test(client_faults, bearer_tokens_are_cached_per_scope)
{
	struct proxy px = {.mode = PROXY_BEARER, .basic = ALICE_BASIC};
	proxy_start(&px, reg.port, htonl(INADDR_LOOPBACK));
	setenv("KILN_REGISTRY_USERNAME", "alice", 1);
	setenv("KILN_REGISTRY_PASSWORD", PASSWORD, 1);
	struct kiln_registry *r = open_registry(proxy_host(&px), NULL);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_ping(r, &err), 0, "%s", err ? err->message : "");
	cr_assert_eq(px.token_requests, 1);
	struct mem_src m1, m2;
	struct kiln_blob_source s1 = make_blob(&m1, 1000, 12), s2 = make_blob(&m2, 2000, 13);
	upload_ok(r, "kiln/b", &s1, NULL);
	upload_ok(r, "kiln/b", &s2, NULL);
	cr_assert_eq(px.token_requests, 2, "%d token requests", px.token_requests);
	cr_assert(strstr(px.token_queries[1], "service=kiln-test") &&
	              count(px.token_queries[1], "scope=") == 1 && strstr(px.token_queries[1], "push"),
	          "%s", px.token_queries[1]);
	bool mounted = false;
	cr_assert_eq(kiln_registry_blob_mount(r, "kiln/c", "kiln/b", s1.digest, &mounted, &err), 0, "%s",
	             err ? err->message : "");
	cr_assert(mounted);
	cr_assert_eq(px.token_requests, 3);
	cr_assert_eq(count(px.token_queries[2], "scope="), 2, "one token for both repositories: %s",
	             px.token_queries[2]);
	expect_blob(r, "kiln/c", &m1, s1.digest);
	cr_assert_eq(px.token_requests, 4);
	free(m1.data);
	free(m2.data);
	kiln_registry_free(r);
	proxy_stop(&px);
}

Test(client_faults, bearer_wrong_password_fails_without_showing_it)
{
	struct proxy px = {.mode = PROXY_BEARER, .basic = ALICE_BASIC};
	proxy_start(&px, reg.port, htonl(INADDR_LOOPBACK));
	setenv("KILN_REGISTRY_USERNAME", "alice", 1);
	setenv("KILN_REGISTRY_PASSWORD", "Wr0ng-Pa55word", 1);
	struct kiln_registry *r = open_registry(proxy_host(&px), NULL);
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_registry_ping(r, &err), 0);
	cr_assert(strstr(err->message, "authentication failed (401)") &&
	              strstr(err->message, "incorrect username or password"),
	          "%s", err->message);
	cr_assert_null(strstr(err->message, "Wr0ng-Pa55word"), "%s", err->message);
	kiln_error_free(err);
	kiln_registry_free(r);
	proxy_stop(&px);
}

/* ---------------------------------------------------------------- large blobs in parts */

/* Fetch SRC's blob from REPO through PX in parts of PART bytes, PARALLEL at once; its bytes must be M's. */
static void fetch_parted(struct proxy *px, const char *repo, const struct kiln_blob_source *src,
                         const struct mem_src *m, const char *part, const char *parallel)
{
	setenv("KILN_FETCH_PART_SIZE", part, 1);
	setenv("KILN_FETCH_PARALLEL", parallel, 1);
	struct kiln_registry_options opt;
	quick_options(&opt);
	struct kiln_registry *r = open_registry(proxy_host(px), &opt);
	char path[] = "/tmp/kiln-fetch-XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	unlink(path);
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_registry_blob_fetch(r, repo, src->digest, src->size, fd, NULL, NULL, &err), 0, "%s",
	             err ? err->message : "");
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, m->size, "%lld bytes written", (long long)st.st_size);
	char *back = malloc(m->size);
	cr_assert_eq(pread(fd, back, m->size, 0), (ssize_t)m->size);
	cr_assert(memcmp(back, m->data, m->size) == 0, "the blob read back differs");
	free(back);
	close(fd);
	kiln_registry_free(r);
	unsetenv("KILN_FETCH_PART_SIZE");
	unsetenv("KILN_FETCH_PARALLEL");
}

Test(client_faults, large_blob_comes_in_ranged_parts_several_at_once)
{
	struct mem_src m;
	struct kiln_blob_source src = seed_blob(&m, "kiln/parts", 5 * MIB + 3, 21);
	struct proxy px = {.mode = PROXY_PASS, .match = "GET /v2/kiln/parts/blobs/"};
	proxy_start(&px, reg.port, htonl(INADDR_LOOPBACK));
	fetch_parted(&px, "kiln/parts", &src, &m, "1048576", "3");
	cr_assert_eq(px.seen, 6, "%d GETs for 6 parts", px.seen);
	cr_assert_eq(px.saw_range, 6, "%d GETs with Range", px.saw_range);
	free(m.data);
	proxy_stop(&px);
}

Test(client_faults, a_part_cut_midway_resumes_within_its_range)
{
	struct mem_src m;
	struct kiln_blob_source src = seed_blob(&m, "kiln/parts", 4 * MIB, 22);
	struct proxy px = {
	    .mode = PROXY_CUT_ANSWER, .match = "GET /v2/kiln/parts/blobs/", .n = 2, .cut = 300000};
	proxy_start(&px, reg.port, htonl(INADDR_LOOPBACK));
	fetch_parted(&px, "kiln/parts", &src, &m, "1048576", "2");
	cr_assert_eq(px.seen, 6, "%d GETs: 4 parts and 2 resumed", px.seen);
	free(m.data);
	proxy_stop(&px);
}

Test(client_faults, registry_without_ranges_sends_the_blob_whole)
{
	struct mem_src m;
	struct kiln_blob_source src = seed_blob(&m, "kiln/parts", 3 * MIB + 1, 23);
	struct proxy px = {.mode = PROXY_NO_RANGE, .match = "GET /v2/kiln/parts/blobs/"};
	proxy_start(&px, reg.port, htonl(INADDR_LOOPBACK));
	fetch_parted(&px, "kiln/parts", &src, &m, "1048576", "2");
	free(m.data);
	proxy_stop(&px);
}

Test(client_faults, blob_no_larger_than_a_part_is_one_plain_get)
{
	struct mem_src m;
	struct kiln_blob_source src = seed_blob(&m, "kiln/parts", 1 * MIB, 24);
	struct proxy px = {.mode = PROXY_PASS, .match = "GET /v2/kiln/parts/blobs/"};
	proxy_start(&px, reg.port, htonl(INADDR_LOOPBACK));
	fetch_parted(&px, "kiln/parts", &src, &m, "1048576", "4");
	cr_assert_eq(px.seen, 1);
	cr_assert_eq(px.saw_range, 0);
	free(m.data);
	proxy_stop(&px);
}

Test(client_faults, parts_of_a_blob_told_the_wrong_size_fail_its_digest)
{
	struct mem_src m;
	struct kiln_blob_source src = seed_blob(&m, "kiln/parts", 3 * MIB + 5, 23);
	setenv("KILN_FETCH_PART_SIZE", "1048576", 1);
	setenv("KILN_FETCH_PARALLEL", "3", 1);
	struct kiln_registry_options opt;
	quick_options(&opt);
	struct kiln_registry *r = open_registry(reg.host, &opt);
	char path[] = "/tmp/kiln-fetch-XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	unlink(path);
	struct kiln_error *err = NULL;
	/* one byte short: every part comes, and the digest of what came is not the blob's */
	cr_assert_lt(
	    kiln_registry_blob_fetch(r, "kiln/parts", src.digest, src.size - 1, fd, NULL, NULL, &err), 0);
	cr_assert(strstr(err->message, "the registry sent content with digest sha256:"), "%s", err->message);
	kiln_error_free(err);
	close(fd);
	free(m.data);
	kiln_registry_free(r);
	unsetenv("KILN_FETCH_PART_SIZE");
	unsetenv("KILN_FETCH_PARALLEL");
}
