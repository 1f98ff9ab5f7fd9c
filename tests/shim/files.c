/* SPDX-License-Identifier: Apache-2.0 */
/* tests/shim/files.c: file inputs (downloads, data: URIs, refusals) and outputs (data: URIs, uploads). */
#include <criterion/criterion.h>

#include <dirent.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "common/fs.h"
#include "shim/files.h"
#include "shim/shim.h"
#include "tests/fixtures/http/server.h"

static struct test_server server;
static char *dir; /* where inputs go */

static void setup(void)
{
	setenv("KILN_ALLOW_PRIVATE_URLS", "1", 1); /* the test server is on loopback */
	test_server_start(&server);
	dir = strdup("/tmp/kiln-files-XXXXXX");
	cr_assert(mkdtemp(dir) != NULL);
}

static void teardown(void)
{
	test_server_stop(&server);
	kiln_remove_tree(dir, NULL);
	free(dir);
}

TestSuite(files, .init = setup, .fini = teardown, .timeout = 60);

/* An OpenAPI document with a file input "image", a list of files "images" and a string "text". */
static json_t *schema(void)
{
	return json_pack("{s:{s:{s:{s:{s:{s:s, s:s}, s:{s:s, s:{s:s, s:s}}, s:{s:s}}}}}}", "components",
	                 "schemas", "Input", "properties", "image", "type", "string", "format", "uri",
	                 "images", "type", "array", "items", "type", "string", "format", "uri", "text",
	                 "type", "string");
}

/* SIZE bytes of a pattern with every byte value; caller frees. */
static unsigned char *pattern(size_t size)
{
	unsigned char *p = malloc(size);
	for (size_t i = 0; i < size; i++)
		p[i] = (unsigned char)(i * 7 + i / 251);
	return p;
}

/* Whether the file at PATH holds exactly DATA[0..LEN). */
static bool file_is(const char *path, const void *data, size_t len)
{
	char *got;
	size_t got_len;
	if (kiln_read_file(&got, &got_len, path, len + 1, NULL) < 0)
		return false;
	bool same = got_len == len && memcmp(got, data, len) == 0;
	free(got);
	return same;
}

static size_t count_files(const char *d)
{
	DIR *dp = opendir(d);
	cr_assert(dp);
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(dp)))
		n += e->d_name[0] != '.';
	closedir(dp);
	return n;
}

/* Fetch INPUT (with the schema above); returns the code and the error message (or NULL) in *message. */
static int fetch(json_t *input, char **message)
{
	json_t *s = schema();
	struct kiln_error *err = NULL;
	int rc = shim_files_fetch_inputs(s, input, dir, &err);
	json_decref(s);
	*message = err ? strdup(err->message) : NULL;
	kiln_error_free(err);
	return rc;
}

/* Fetch {"image": VALUE} and expect it refused with a message that contains WORDS. */
static void expect_refused(const char *value, const char *words)
{
	json_t *input = json_pack("{s:s}", "image", value);
	char *message;
	cr_assert_lt(fetch(input, &message), 0, "'%s' was accepted", value);
	cr_assert(strstr(message, words), "message: %s", message);
	cr_assert_eq(count_files(dir), 0);
	free(message);
	json_decref(input);
}

static char *in_dir(const char *name)
{
	return kiln_path_join(dir, name);
}

Test(files, download_keeps_content_and_name)
{
	unsigned char *data = pattern(300000);
	free(test_server_put_file(&server, "files/cat.png", data, 300000));
	char *url = test_server_url(&server, "/files/cat.png?sig=secret");
	json_t *input = json_pack("{s:s, s:s}", "image", url, "text", "not a file");
	char *message;
	cr_assert_eq(fetch(input, &message), 0, "%s", message);
	char *want = in_dir("cat.png");
	cr_assert_str_eq(json_string_value(json_object_get(input, "image")), want);
	cr_assert(file_is(want, data, 300000));
	cr_assert_str_eq(json_string_value(json_object_get(input, "text")), "not a file");
	free(want);
	free(url);
	free(data);
	json_decref(input);
}

Test(files, same_name_twice_gets_unique_names)
{
	free(test_server_put_file(&server, "files/a b.txt", "hello", 5));
	char *url = test_server_url(&server, "/files/a%20b.txt");
	json_t *input = json_pack("{s:[s,s]}", "images", url, url);
	char *message;
	cr_assert_eq(fetch(input, &message), 0, "%s", message);
	char *first = in_dir("a_b.txt"), *second = in_dir("a_b-1.txt");
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(input, "images"), 0)), first);
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(input, "images"), 1)), second);
	cr_assert(file_is(second, "hello", 5));
	free(first);
	free(second);
	free(url);
	json_decref(input);
}

Test(files, redirect_is_followed)
{
	free(test_server_put_file(&server, "files/weights.bin", "0123456789", 10));
	char *url = test_server_url(&server, "/redirect/weights.bin");
	json_t *input = json_pack("{s:s}", "image", url);
	char *message;
	cr_assert_eq(fetch(input, &message), 0, "%s", message);
	cr_assert(file_is(json_string_value(json_object_get(input, "image")), "0123456789", 10));
	free(url);
	json_decref(input);
}

Test(files, http_error_reports_status)
{
	char *url = test_server_url(&server, "/files/missing.png");
	expect_refused(url, "input 'image': cannot download");
	expect_refused(url, "HTTP 404");
	free(url);
}

Test(files, private_address_is_refused_unless_allowed)
{
	free(test_server_put_file(&server, "files/a.txt", "hello", 5));
	unsetenv("KILN_ALLOW_PRIVATE_URLS");
	char *url = test_server_url(&server, "/files/a.txt");
	expect_refused(url, "the address 127.0.0.1 is private, loopback or link-local");
	/* a public-looking name that redirects to loopback is refused at the connection, too */
	char *redirect = test_server_url(&server, "/redirect/a.txt");
	expect_refused(redirect, "is private");
	setenv("KILN_ALLOW_PRIVATE_URLS", "1", 1);
	json_t *input = json_pack("{s:s}", "image", url);
	char *message;
	cr_assert_eq(fetch(input, &message), 0, "%s", message);
	json_decref(input);
	free(redirect);
	free(url);
}

/* Whether the numeric address TEXT is one files_private_address refuses. */
static bool private(const char *text)
{
	struct sockaddr_in a4 = {.sin_family = AF_INET};
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
	if (inet_pton(AF_INET, text, &a4.sin_addr) == 1)
		return files_private_address((struct sockaddr *)&a4);
	cr_assert_eq(inet_pton(AF_INET6, text, &a6.sin6_addr), 1, "%s", text);
	return files_private_address((struct sockaddr *)&a6);
}

Test(files, private_address_ranges)
{
	static const char *const refused[] = {
	    "127.0.0.1",
	    "127.255.0.9",
	    "0.0.0.0",
	    "0.1.2.3",
	    "10.0.0.1",
	    "172.16.0.1",
	    "172.31.9.9",
	    "192.168.1.1",
	    "169.254.169.254",
	    "100.64.0.1",
	    "224.0.0.1",
	    "255.255.255.255",
	    "::1",
	    "::",
	    "fe80::1",
	    "fc00::1",
	    "fd12:3456::1",
	    "::ffff:127.0.0.1",
	    "::ffff:10.1.2.3",
	    "::ffff:169.254.169.254",
	    "64:ff9b::7f00:1",
	    "ff02::1",
	};
	static const char *const allowed[] = {"8.8.8.8",     "172.32.0.1",           "192.169.0.1",
	                                      "100.128.0.1", "2001:4860:4860::8888", "::ffff:8.8.8.8",
	                                      "1.1.1.1"};
	for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++)
		cr_expect(private(refused[i]), "%s is not refused", refused[i]);
	for (size_t i = 0; i < sizeof(allowed) / sizeof(*allowed); i++)
		cr_expect(!private(allowed[i]), "%s is refused", allowed[i]);
}

Test(files, upstream_error_body_is_not_echoed)
{
	char *url = test_server_url(&server, "/files/missing.png");
	json_t *input = json_pack("{s:s}", "image", url);
	char *message;
	cr_assert_lt(fetch(input, &message), 0);
	cr_assert(strstr(message, "HTTP 404"), "%s", message);
	cr_assert(!strstr(message, "not found"), "the body was echoed: %s", message);
	free(message);
	json_decref(input);
	free(url);
}

Test(files, too_large_download_is_refused)
{
	unsigned char *data = pattern(5000);
	free(test_server_put_file(&server, "files/big.bin", data, 5000));
	setenv("KILN_MAX_INPUT_BYTES", "1000", 1);
	char *url = test_server_url(&server, "/files/big.bin");
	expect_refused(url, "larger than 1000 bytes");
	free(url);
	free(data);
}

Test(files, data_uri_base64_is_decoded)
{
	unsigned char *data = pattern(1000);
	for (size_t len = 998; len <= 1000; len++) { /* each padding: "==", "=", none */
		char b64[1400];
		EVP_EncodeBlock((unsigned char *)b64, data, (int)len);
		char *uri;
		cr_assert(asprintf(&uri, "data:image/png;base64,%s", b64) > 0);
		json_t *input = json_pack("{s:s}", "image", uri);
		char *message;
		cr_assert_eq(fetch(input, &message), 0, "%s", message);
		const char *path = json_string_value(json_object_get(input, "image"));
		cr_assert(strstr(path, "/image") && strstr(path, ".png"), "%s", path);
		cr_assert(file_is(path, data, len), "length %zu", len);
		free(uri);
		json_decref(input);
	}
	free(data);
}

Test(files, data_uri_plain_is_percent_decoded)
{
	json_t *input = json_pack("{s:s}", "image", "data:text/plain,hello%20world%21");
	char *message;
	cr_assert_eq(fetch(input, &message), 0, "%s", message);
	char *want = in_dir("image.txt");
	cr_assert_str_eq(json_string_value(json_object_get(input, "image")), want);
	cr_assert(file_is(want, "hello world!", 12));
	free(want);
	json_decref(input);
}

Test(files, file_urls_and_paths_are_refused)
{
	expect_refused("file:///etc/passwd", "input 'image': file:// URLs are not allowed");
	expect_refused("/etc/passwd", "input 'image': local paths are not allowed");
	expect_refused("ftp://example.com/x.png", "input 'image': ftp: URLs are not allowed");
	expect_refused("data:image/png;base64,ab!d", "input 'image': invalid base64 in data: URI");
	expect_refused("data:image/png;base64", "malformed data: URI");
}

/* Encode VALUE (taking it), its files marked as a native predictor marks them ({"$path": P}), with
 * UPLOAD_URL; returns the result (caller frees). */
static json_t *encode(json_t *value, const char *upload_url)
{
	struct kiln_error *err = NULL;
	json_t *files = shim_files_take_path_markers(&value);
	cr_assert(files);
	int rc = shim_files_encode_output(&value, files, upload_url, &err);
	cr_assert_eq(rc, 0, "%s", err ? err->message : "");
	json_decref(files);
	return value;
}

/* The error of encoding VALUE (taken) with the file positions FILES (taken); caller frees. */
static struct kiln_error *encode_error(json_t *value, json_t *files)
{
	struct kiln_error *err = NULL;
	cr_assert_lt(shim_files_encode_output(&value, files, NULL, &err), 0);
	cr_assert(err);
	json_decref(value);
	json_decref(files);
	return err;
}

/* Expect that the file output PATH is refused with a message holding WANT. */
static void expect_output_refused(const char *path, const char *want)
{
	struct kiln_error *err = encode_error(json_string(path), json_pack("[[]]"));
	cr_assert(strstr(err->message, want), "%s: %s", path, err->message);
	kiln_error_free(err);
}

/* The bytes a data: URI carries, after checking its prefix; caller frees. */
static unsigned char *decode_uri(const char *uri, const char *prefix, size_t *len)
{
	cr_assert(strncmp(uri, prefix, strlen(prefix)) == 0, "%.60s", uri);
	const char *b64 = uri + strlen(prefix);
	size_t n = strlen(b64);
	unsigned char *out = malloc(n / 4 * 3 + 3);
	int m = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)n);
	cr_assert_geq(m, 0);
	*len = (size_t)m - (n >= 1 && b64[n - 1] == '=') - (n >= 2 && b64[n - 2] == '=');
	return out;
}

Test(files, png_output_becomes_data_uri)
{
	unsigned char *data = pattern(100001);
	char *path = test_server_put_file(&server, "out.png", data, 100001);
	json_t *out = encode(json_pack("{s:s}", "$path", path), NULL);
	cr_assert(json_is_string(out));
	size_t len;
	unsigned char *got = decode_uri(json_string_value(out), "data:image/png;base64,", &len);
	cr_assert_eq(len, 100001);
	cr_assert(memcmp(got, data, len) == 0);
	free(got);
	free(data);
	free(path);
	json_decref(out);
}

Test(files, nested_outputs_are_encoded)
{
	char *a = test_server_put_file(&server, "a.txt", "A", 1);
	char *b = test_server_put_file(&server, "b.weird", "BB", 2);
	json_t *out = encode(
	    json_pack("{s:[{s:s}, [{s:s}], i], s:s}", "list", "$path", a, "$path", b, 3, "text", "t"), NULL);
	json_t *list = json_object_get(out, "list");
	cr_assert_str_eq(json_string_value(json_array_get(list, 0)), "data:text/plain;base64,QQ==");
	cr_assert_str_eq(json_string_value(json_array_get(json_array_get(list, 1), 0)),
	                 "data:application/octet-stream;base64,QkI=");
	cr_assert_eq(json_integer_value(json_array_get(list, 2)), 3);
	cr_assert_str_eq(json_string_value(json_object_get(out, "text")), "t");
	free(a);
	free(b);
	json_decref(out);
}

Test(files, upload_puts_the_bytes)
{
	unsigned char *data = pattern(200000);
	char *path = test_server_put_file(&server, "result image.png", data, 200000);
	char *upload = test_server_url(&server, "/upload");
	json_t *out = encode(json_pack("[{s:s}]", "$path", path), upload);
	char *want = test_server_url(&server, "/upload/result%20image.png");
	cr_assert_str_eq(json_string_value(json_array_get(out, 0)), want);
	char *stored = kiln_path_join(server.root, "uploads/result image.png");
	cr_assert(file_is(stored, data, 200000));
	json_t *log = test_server_log(&server, "/upload/");
	cr_assert_eq(json_array_size(log), 1);
	json_t *headers = json_object_get(json_array_get(log, 0), "headers");
	cr_assert_str_eq(json_string_value(json_object_get(headers, "content-type")), "image/png");
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(log, 0), "method")), "PUT");
	json_decref(log);
	free(stored);
	free(want);
	free(upload);
	free(path);
	free(data);
	json_decref(out);
}

Test(files, upload_uses_location)
{
	char *path = test_server_put_file(&server, "out.wav", "RIFF", 4);
	char *upload = test_server_url(&server, "/upload-loc/");
	json_t *out = encode(json_pack("{s:s}", "$path", path), upload);
	char *want = test_server_url(&server, "/stored/out.wav");
	cr_assert_str_eq(json_string_value(out), want);
	free(want);
	free(upload);
	free(path);
	json_decref(out);
}

Test(files, upload_failure_names_the_file)
{
	char *path = test_server_put_file(&server, "out.txt", "x", 1);
	json_t *value = json_pack("{s:s}", "$path", path);
	struct kiln_error *err = NULL;
	json_t *files = shim_files_take_path_markers(&value);
	cr_assert_lt(shim_files_encode_output(&value, files, "http://127.0.0.1:1/up", &err), 0);
	json_decref(files);
	cr_assert(strstr(err->message, "cannot upload") && strstr(err->message, "out.txt"), "%s",
	          err->message);
	kiln_error_free(err);
	json_decref(value);
	free(path);
}

Test(files, path_objects_in_output_data_are_not_files)
{
	/* only the positions given out of band are files: what a predictor returns as data stays data */
	json_t *value = json_pack("{s:{s:s}, s:[{s:s}]}", "a", "$path", "/etc/passwd", "b", "$path",
	                          "/proc/self/environ");
	json_t *want = json_deep_copy(value);
	struct kiln_error *err = NULL;
	cr_assert_eq(shim_files_encode_output(&value, NULL, NULL, &err), 0);
	cr_assert(json_equal(value, want));
	json_t *none = json_array();
	cr_assert_eq(shim_files_encode_output(&value, none, NULL, &err), 0);
	cr_assert(json_equal(value, want));
	json_decref(none);
	json_decref(want);
	json_decref(value);
}

Test(files, file_positions_name_the_strings_to_encode)
{
	char *a = test_server_put_file(&server, "a.txt", "A", 1);
	json_t *value = json_pack("{s:[i, s], s:s, s:{s:s}}", "list", 1, a, "text", a, "obj", "$path", a);
	json_t *files = json_pack("[[s, i]]", "list", 1);
	struct kiln_error *err = NULL;
	cr_assert_eq(shim_files_encode_output(&value, files, NULL, &err), 0, "%s", err ? err->message : "");
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(value, "list"), 1)),
	                 "data:text/plain;base64,QQ==");
	cr_assert_str_eq(json_string_value(json_object_get(value, "text")), a, "not named: left as it is");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(value, "obj"), "$path")), a);
	json_decref(files);
	json_decref(value);
	err = encode_error(json_pack("{s:i}", "n", 1), json_pack("[[s]]", "n"));
	cr_assert(strstr(err->message, "a file position names no string"), "%s", err->message);
	kiln_error_free(err);
	err = encode_error(json_pack("[s]", a), json_pack("[[s]]", "x"));
	cr_assert(strstr(err->message, "a file position names no string"), "%s", err->message);
	kiln_error_free(err);
	free(a);
}

Test(files, native_path_markers_become_positions)
{
	json_t *value = json_pack("{s:[{s:s}, {s:s, s:i}], s:{s:s}}", "list", "$path", "/x/a.png", "$path",
	                          "/x/b", "n", 1, "one", "$path", "/x/c");
	json_t *files = shim_files_take_path_markers(&value);
	char *v = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS), *f = json_dumps(files, JSON_COMPACT);
	cr_assert_str_eq(v, "{\"list\":[\"/x/a.png\",{\"$path\":\"/x/b\",\"n\":1}],\"one\":\"/x/c\"}");
	cr_assert(strcmp(f, "[[\"list\",0],[\"one\"]]") == 0 || strcmp(f, "[[\"one\"],[\"list\",0]]") == 0,
	          "%s", f);
	free(v);
	free(f);
	json_decref(files);
	json_decref(value);
	value = json_pack("{s:s}", "$path", "/x/top");
	files = shim_files_take_path_markers(&value);
	cr_assert_str_eq(json_string_value(value), "/x/top");
	cr_assert_eq(json_array_size(files), 1);
	cr_assert_eq(json_array_size(json_array_get(files, 0)), 0);
	json_decref(files);
	json_decref(value);
}

Test(files, only_regular_files_are_read_as_outputs)
{
	expect_output_refused("/dev/zero", "'/dev/zero' is not a regular file");
	expect_output_refused("/proc/self/environ", "'/proc/self/environ' is a kernel pseudo-file");
	expect_output_refused(dir, "is not a regular file");
	expect_output_refused("relative.txt", "'relative.txt' is not an absolute path");
	char *fifo = kiln_path_join(dir, "fifo");
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	expect_output_refused(fifo, "is not a regular file"); /* at once: no wait for a writer */
	char *link = kiln_path_join(dir, "passwd.txt");
	cr_assert_eq(symlink("/etc/passwd", link), 0);
	expect_output_refused(link, "is a symbolic link");
	free(link);
	free(fifo);
}

Test(files, data_uri_output_size_is_limited)
{
	char *path = test_server_put_file(&server, "big.bin", "0123456789", 10);
	setenv("KILN_MAX_OUTPUT_BYTES", "9", 1);
	struct kiln_error *err = encode_error(json_string(path), json_pack("[[]]"));
	cr_assert(
	    strstr(err->message, "has 10 bytes, more than the 9 a data: URI may hold (KILN_MAX_OUTPUT_BYTES"),
	    "%s", err->message);
	kiln_error_free(err);
	setenv("KILN_MAX_OUTPUT_BYTES", "10", 1);
	json_t *out = encode(json_pack("{s:s}", "$path", path), NULL);
	cr_assert_str_eq(json_string_value(out), "data:application/octet-stream;base64,MDEyMzQ1Njc4OQ==");
	unsetenv("KILN_MAX_OUTPUT_BYTES");
	json_decref(out);
	free(path);
}

Test(files, upload_refuses_what_is_not_a_regular_file)
{
	char *upload = test_server_url(&server, "/upload");
	struct kiln_error *err = NULL;
	json_t *value = json_string("/dev/zero"), *files = json_pack("[[]]");
	cr_assert_lt(shim_files_encode_output(&value, files, upload, &err), 0);
	cr_assert(strstr(err->message, "'/dev/zero' is not a regular file"), "%s", err->message);
	json_t *log = test_server_log(&server, "/upload/");
	cr_assert_eq(json_array_size(log), 0, "nothing was sent");
	json_decref(log);
	kiln_error_free(err);
	json_decref(files);
	json_decref(value);
	free(upload);
}
