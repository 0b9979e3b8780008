/* libFuzzer target: the request parsers of the CDS Hooks / $apply listener:
 * the CDS Hooks request (cds_parse_request), the $apply Parameters
 * (cds_parse_parameters) and the client JWT (jwtv_check, against a fixed
 * P-384 JWK Set).  The first byte picks the parser. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cds.h"
#include "jwtverify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct jwtv *verifier(void)
{
    static struct jwtv *v;
    static int tried;
    char path[] = "/tmp/fuzz-cds-jwks-XXXXXX";
    static const char jwks[] =
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\",\"kid\":\"k\","
        "\"x\":\"RmuDFOokg_unNkCIXkP3t4E6j0vG61TsaBJAPIaA6AYmT9WinthM-bklnwXzZUUb\","
        "\"y\":\"X4YExB0kRg-XEEIsqtgJEjGuq1uWee3SMi6X_fvvOhqfdJ-o3fj_CpFvg_j54CrF\"}]}";
    struct adp_error err;
    json_t *clients;
    int fd;

    if (tried)
        return v;
    tried = 1;
    fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    if (write(fd, jwks, sizeof(jwks) - 1) != (ssize_t)(sizeof(jwks) - 1)) {
        close(fd);
        return NULL;
    }
    close(fd);
    clients = json_pack("[{s:s,s:s}]", "iss", "https://ehr.example", "jwks_file", path);
    adp_error_clear(&err);
    if (jwtv_new(clients, "https://cds.example", NULL, &v, &err) != ADP_OK)
        v = NULL;
    json_decref(clients);
    unlink(path);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[600], subject[80], iss[300];
    json_t *out = NULL;
    int use_server = 0;

    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0:
        if (cds_parse_request((const char *)data + 1, size - 1, &out, why, sizeof(why)) == 0)
            json_decref(out);
        break;
    case 1:
        if (cds_parse_parameters((const char *)data + 1, size - 1, &out, subject,
                                 sizeof(subject), &use_server, why, sizeof(why)) == 0)
            json_decref(out);
        break;
    default: {
        struct jwtv *v = verifier();
        char *hdr = malloc(size + 7);

        if (v != NULL && hdr != NULL) {
            memcpy(hdr, "Bearer ", 7);
            memcpy(hdr + 7, data + 1, size - 1);
            hdr[size + 6] = '\0';
            (void)jwtv_check(v, hdr, "/cds-services", 1700000000, iss, sizeof(iss), why,
                             sizeof(why));
        }
        free(hdr);
        break;
    }
    }
    return 0;
}
