/* libFuzzer target: the mapping table loader, on a directory whose only
 * table is the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mapping.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], file[96];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct adp_error err;
    struct mapping *m = NULL;
    FILE *fp;

    if (dir[0] == '\0') {
        snprintf(dir, sizeof(dir), "/tmp/dnmbc-fuzz-mapping-%ld", (long)getpid());
        snprintf(file, sizeof(file), "%s/table.json", dir);
        if (mkdir(dir, 0700) != 0 && access(dir, W_OK) != 0)
            abort();
    }
    fp = fopen(file, "wb");
    if (fp == NULL)
        abort();
    if (size > 0 && fwrite(data, 1, size, fp) != size)
        abort();
    fclose(fp);
    adp_error_clear(&err);
    if (mapping_load(dir, NULL, 0, &m, &err) == ADP_OK)
        mapping_free(m);
    return 0;
}
