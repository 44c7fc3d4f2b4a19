// SPDX-License-Identifier: GPL-2.0+
#include <generated/timestamp.h>

const char version_string[] = U_BOOT_VERSION_STRING;
