// SPDX-License-Identifier: GPL-2.0+
/* Host tool: print the CRC32 of a file (an environment image). */
#include <stdint.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	uint32_t crc = 0xffffffffu;
	FILE *f;
	int c, k;

	if (argc != 2) {
		fprintf(stderr, "usage: envcrc FILE\n");
		return 1;
	}
	f = fopen(argv[1], "rb");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	while ((c = getc(f)) != EOF) {
		crc ^= (uint32_t)c;
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1u));
	}
	fclose(f);
	printf("%08x\n", (unsigned int)~crc);
	return 0;
}
