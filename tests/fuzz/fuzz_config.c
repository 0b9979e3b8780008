/* libFuzzer target: the configuration loader (config_load + config_check)
 * on a file holding the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct adp_error err;
    struct config cfg;
    FILE *fp;

    if (path[0] == '\0')
        snprintf(path, sizeof(path), "/tmp/dnmbc-fuzz-config-%ld.json", (long)getpid());
    fp = fopen(path, "wb");
    if (fp == NULL)
        abort();
    if (size > 0 && fwrite(data, 1, size, fp) != size)
        abort();
    fclose(fp);
    adp_error_clear(&err);
    if (config_load(path, &cfg, &err) == ADP_OK)
        config_check(&cfg, &err);
    config_free(&cfg);
    return 0;
}
