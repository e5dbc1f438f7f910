/* A C client for the test program Calc, calling it at 127.0.0.1:PORT over tcp or udp. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <rpc/rpc.h>
#include "calc.h"

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: client PORT tcp|udp\n"); return 2; }
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int sock = RPC_ANYSOCK;
    int tcp = strcmp(argv[2], "tcp") == 0;
    struct timeval wait = {2, 0};
    CLIENT *clnt = tcp ? clnttcp_create(&addr, CALC_PROG, CALC_V1, &sock, 0, 0)
                       : clntudp_create(&addr, CALC_PROG, CALC_V1, wait, &sock);
    if (clnt == NULL) { clnt_pcreateerror("create"); return 1; }
    struct timeval total = {10, 0};
    clnt_control(clnt, CLSET_TIMEOUT, (char *)&total);

    int x = 21;
    int *doubled = double_1(&x, clnt);
    if (doubled == NULL) { clnt_perror(clnt, "double"); return 1; }
    printf("double %d\n", *doubled);

    shape s = {RECT, {0}};
    s.shape_u.box.w = 2.5; s.shape_u.box.h = 4;
    double *area = area_1(&s, clnt);
    if (area == NULL) { clnt_perror(clnt, "area"); return 1; }
    printf("area %g\n", *area);

    size_t size = tcp ? 200000 : 6000;
    blob in = {size, malloc(size)};
    for (size_t i = 0; i < size; i++) in.blob_val[i] = (char)(i * 7 + 3);
    blob *out = echo_1(&in, clnt);
    if (out == NULL) { clnt_perror(clnt, "echo"); return 1; }
    printf("echo %u %s\n", out->blob_len,
           out->blob_len == size && memcmp(out->blob_val, in.blob_val, size) == 0 ? "same" : "differ");

    auth_destroy(clnt->cl_auth);
    gid_t gids[2] = {7, 8};
    clnt->cl_auth = authunix_create("c-client", 1234, 56, 2, gids);
    who *me = whoami_1(NULL, clnt);
    if (me == NULL) { clnt_perror(clnt, "whoami"); return 1; }
    printf("whoami %u %d %d %u %s\n", me->flavor, me->uid, me->gid, me->gids.gids_len, me->machine);

    int *boom = boom_1(&x, clnt);
    struct rpc_err err;
    clnt_geterr(clnt, &err);
    printf("boom %s %d\n", boom == NULL ? "null" : "value", err.re_status == RPC_SYSTEMERROR);
    clnt_destroy(clnt);
    return 0;
}
