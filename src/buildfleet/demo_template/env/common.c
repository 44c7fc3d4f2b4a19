// SPDX-License-Identifier: GPL-2.0+
/* The default environment: NUL-separated name=value pairs. */
#define STR2(x) #x
#define STR(x) STR2(x)

const char default_environment[]
	__attribute__((section(".rodata.default_environment"))) =
	"arch=" CONFIG_SYS_ARCH "\0"
	"board=" CONFIG_SYS_BOARD "\0"
	"bootcmd=run distro_bootcmd\0"
	"bootdelay=" STR(CONFIG_BOOTDELAY) "\0"
	"malloc_len=" STR(CONFIG_SYS_MALLOC_LEN) "\0";
