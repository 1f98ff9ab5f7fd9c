# SPDX-License-Identifier: Apache-2.0
# embed.cmake: write FILES (separated by '|') into OUT as the C table kiln_playground_assets
# (cli/playground.h), each file under "/" and its name.
#   cmake -DOUT=FILE.c -DFILES=a|b -P embed.cmake
string(REPLACE "|" ";" files "${FILES}")
set(out "/* Made by cmake/embed.cmake from playground/: do not edit. */\n#include \"cli/playground.h\"\n\n")
set(table "")
foreach(f IN LISTS files)
	get_filename_component(name "${f}" NAME)
	string(MAKE_C_IDENTIFIER "asset_${name}" id)
	file(READ "${f}" hex HEX)
	string(LENGTH "${hex}" n)
	math(EXPR n "${n} / 2")
	string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
	string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n" hex "${hex}")
	string(APPEND out "static const unsigned char ${id}[] = {\n${hex}0};\n\n")
	string(APPEND table "    {\"/${name}\", ${id}, ${n}},\n")
endforeach()
string(APPEND out "const struct kiln_asset kiln_playground_assets[] = {\n${table}    {0, 0, 0},\n};\n")
file(WRITE "${OUT}.tmp" "${out}")
file(RENAME "${OUT}.tmp" "${OUT}")
