/* SPDX-License-Identifier: Apache-2.0 */
/* tests/common/error.c: setting, errno mapping, wrapping and freeing of struct kiln_error. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"

Test(error, set_returns_code_and_formats_message)
{
	struct kiln_error *err = NULL;
	int rc = kiln_error_set(&err, KILN_EINVAL, "cannot parse '%s' at %d", "kiln.yaml", 3);
	cr_assert_eq(rc, KILN_EINVAL);
	cr_assert_not_null(err);
	cr_assert_eq(err->code, KILN_EINVAL);
	cr_assert_str_eq(err->message, "cannot parse 'kiln.yaml' at 3");
	kiln_error_free(err);
}

Test(error, set_replaces_an_earlier_error)
{
	struct kiln_error *err = NULL;
	kiln_error_set(&err, KILN_EIO, "first");
	struct kiln_error *first = err;
	cr_assert_eq(kiln_error_set(&err, KILN_ENOTFOUND, "second"), KILN_ENOTFOUND);
	cr_assert_eq(err, first, "the error object is reused, not leaked");
	cr_assert_eq(err->code, KILN_ENOTFOUND);
	cr_assert_str_eq(err->message, "second");
	kiln_error_free(err);
}

Test(error, set_with_null_err_only_returns_code)
{
	cr_assert_eq(kiln_error_set(NULL, KILN_EIO, "dropped %d", 1), KILN_EIO);
	cr_assert_eq(kiln_error_errno(NULL, ENOSPC, "dropped"), KILN_ENOSPC);
	cr_assert_eq(kiln_error_wrap(NULL, "dropped"), KILN_EFAIL);
}

Test(error, errno_enospc_maps_to_kiln_enospc)
{
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_error_errno(&err, ENOSPC, "cannot write '%s'", "blob"), KILN_ENOSPC);
	cr_assert_eq(err->code, KILN_ENOSPC);
	char want[256];
	snprintf(want, sizeof(want), "cannot write 'blob': %s", strerror(ENOSPC));
	cr_assert_str_eq(err->message, want);
	kiln_error_free(err);
}

Test(error, errno_enoent_maps_to_kiln_enotfound_with_strerror)
{
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_error_errno(&err, ENOENT, "cannot open '%s'", "kiln.yaml"), KILN_ENOTFOUND);
	cr_assert_eq(err->code, KILN_ENOTFOUND);
	cr_assert_not_null(strstr(err->message, "cannot open 'kiln.yaml'"));
	cr_assert_not_null(strstr(err->message, strerror(ENOENT)), "message: %s", err->message);
	kiln_error_free(err);
}

Test(error, errno_eintr_and_others_map_to_eintr_and_eio)
{
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_error_errno(&err, EINTR, "x"), KILN_EINTR);
	cr_assert_eq(kiln_error_errno(&err, EACCES, "x"), KILN_EIO);
	cr_assert_eq(err->code, KILN_EIO);
	cr_assert_not_null(strstr(err->message, strerror(EACCES)));
	kiln_error_free(err);
}

Test(error, wrap_prepends_context_and_keeps_code)
{
	struct kiln_error *err = NULL;
	kiln_error_set(&err, KILN_ENOTFOUND, "cannot open 'kiln.yaml'");
	cr_assert_eq(kiln_error_wrap(&err, "cannot build '%s'", "proj"), KILN_ENOTFOUND);
	cr_assert_eq(err->code, KILN_ENOTFOUND);
	cr_assert_str_eq(err->message, "cannot build 'proj': cannot open 'kiln.yaml'");
	kiln_error_wrap(&err, "outer");
	cr_assert_str_eq(err->message, "outer: cannot build 'proj': cannot open 'kiln.yaml'");
	kiln_error_free(err);
}

Test(error, wrap_of_null_error_makes_generic_error_with_context)
{
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_error_wrap(&err, "cannot build '%s'", "proj"), KILN_EFAIL);
	cr_assert_not_null(err);
	cr_assert_eq(err->code, KILN_EFAIL);
	cr_assert_str_eq(err->message, "cannot build 'proj'");
	kiln_error_free(err);
}

Test(error, free_accepts_null_and_cleanup_attribute_frees)
{
	kiln_error_free(NULL);
	{
		_cleanup_error_ struct kiln_error *err = NULL;
		kiln_error_set(&err, KILN_EIO, "released at end of scope");
	}
	{
		_cleanup_error_ struct kiln_error *none = NULL;
		(void)none;
	}
}
