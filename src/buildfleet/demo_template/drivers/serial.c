// SPDX-License-Identifier: GPL-2.0+
#include <demo.h>

#define UART_TX ((volatile char *)0x10000000UL)

void serial_puts(const char *s)
{
	while (*s)
		*UART_TX = *s++;
}
