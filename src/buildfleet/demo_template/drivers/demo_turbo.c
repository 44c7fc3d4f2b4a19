// SPDX-License-Identifier: GPL-2.0+
#include <demo.h>

/*
 * A cache in front of the lookup table: its size and name come from Kconfig.
 * Read-only, so that the image keeps one loadable segment on every arch.
 */
const char turbo_cache[CONFIG_DEMO_TURBO_SLOTS][16] = { CONFIG_DEMO_TURBO_NAME };

int demo_turbo_slots(void)
{
	return (int)(sizeof(turbo_cache) / sizeof(turbo_cache[0])) + turbo_cache[0][0];
}
