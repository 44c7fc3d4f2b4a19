// SPDX-License-Identifier: GPL-2.0+
#include <demo.h>

static volatile int sink;

/* Pointers in data: dynamic relocations in a position-independent u-boot */
static int (*const init_calls[])(void) = { board_init };

int main_loop(void)
{
	int ret = init_calls[0]();

	serial_puts(version_string);
	serial_puts(board_name());
#ifdef CONFIG_DEMO_TABLE
	ret += demo_table_lookup("bootcmd");
#endif
#ifdef CONFIG_DEMO_FEATURE_X
	ret += feature_x_status();
#endif
	return ret + default_environment[0];
}

void _start(void)
{
	sink = main_loop();
	for (;;)
		;
}
