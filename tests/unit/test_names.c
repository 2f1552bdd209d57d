/* SPDX-License-Identifier: MIT
 * tests/unit/test_names.c - what a name and a path from a peer may be
 * (common/names.c).
 */
#include "common/common.h"
#include "tests/lib/check.h"

#include <stdio.h>
#include <string.h>

int main(void)
{
	char longname[300];

	CHECK(hs_name_ok("a"));
	CHECK(hs_name_ok("..."));
	CHECK(hs_name_ok(".hidden"));
	CHECK(hs_name_ok("a b\tc"));
	CHECK(!hs_name_ok(""));
	CHECK(!hs_name_ok("."));
	CHECK(!hs_name_ok(".."));
	CHECK(!hs_name_ok("a/b"));
	CHECK(!hs_name_ok("/"));
	memset(longname, 'x', 255);
	longname[255] = 0;
	CHECK(hs_name_ok(longname));
	longname[255] = 'x';
	longname[256] = 0;
	CHECK(!hs_name_ok(longname));

	CHECK(hs_path_ok(""));
	CHECK(hs_path_ok("/"));
	CHECK(hs_path_ok("/a"));
	CHECK(hs_path_ok("a/b/c"));
	CHECK(hs_path_ok("/a/.b/c..d"));
	CHECK(!hs_path_ok("/.."));
	CHECK(!hs_path_ok("/a/../b"));
	CHECK(!hs_path_ok("/a/."));
	CHECK(!hs_path_ok("//a"));
	CHECK(!hs_path_ok("/a/"));
	CHECK(!hs_path_ok("a//b"));
	printf("test_names: ok\n");
	return 0;
}
