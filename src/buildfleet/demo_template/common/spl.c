// SPDX-License-Identifier: GPL-2.0+
#include <demo.h>

static volatile int spl_sink;

void _start(void)
{
	spl_sink = board_init();
	serial_puts("U-Boot SPL\n");
	for (;;)
		;
}
