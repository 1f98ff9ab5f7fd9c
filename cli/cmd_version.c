/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_version.c: `kiln version`: kiln's version and the versions of the libraries it runs with. */
#include "cli/cli.h"
#include "kiln_version.h"

#include <archive.h>
#include <curl/curlver.h>
#include <getopt.h>
#include <git2.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>
#include <zlib.h>

int cmd_version(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, CLI_OPT_JSON},
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	bool json = false;
	int first, status = cli_parse(argc, argv, ":" CLI_COMMON_SHORT, longopts, NULL, cli_json_option,
	                              &json, 0, 0, &first);
	if (status >= 0)
		return status;
	int gmaj, gmin, grev;
	git_libgit2_version(&gmaj, &gmin, &grev);
	char git[32];
	snprintf(git, sizeof(git), "%d.%d.%d", gmaj, gmin, grev);
	if (json) {
		json_t *j = json_pack("{s:s,s:{s:s,s:s,s:s,s:s,s:s,s:s,s:s}}", "version", KILN_VERSION,
		                      "libraries", "libarchive", archive_version_details(), "libgit2", git,
		                      "libyaml", yaml_get_version_string(), "jansson", JANSSON_VERSION,
		                      "openssl", OpenSSL_version(OPENSSL_VERSION), "libcurl", LIBCURL_VERSION,
		                      "zlib", zlibVersion());
		json_dumpf(j, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(j);
	} else {
		printf("kiln %s\n", KILN_VERSION);
	}
	return EXIT_OK;
}
