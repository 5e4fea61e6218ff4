/* SPDX-License-Identifier: MIT */
/* Compiles api.c of Debian's node-llhttp (found through -I$(LLHTTP_SRC); not a copy in our tree),
 * so that its object lands in our build tree rather than next to the system sources. */
#include "api.c"
