/* SPDX-License-Identifier: GPL-2.0+ */
#ifndef __DEMO_H
#define __DEMO_H

int board_init(void);
const char *board_name(void);
void serial_puts(const char *s);
int demo_table_lookup(const char *name);
int feature_x_status(void);
int main_loop(void);
void _start(void);

extern const char version_string[];
extern const char default_environment[];

#endif
