/*
 * The Linux kernel's side of bench/http-vs-kernel.sh: a TCP echo or discard
 * server in plain C on blocking sockets, so that the kernel contender pays for
 * its own stack and no interpreter.
 *
 *   kernel_tcp_server echo|discard ADDRESS PORT
 *
 * Serves one connection at a time, in the order they arrive. Prints
 * "listening" once the socket listens, and for each connection that ends a
 * line "closed BYTES" with the bytes it received (echo: and sent back), so
 * that the script can check the server side against the client's count.
 * Stops on SIGINT/SIGTERM.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[1 << 18];

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "echo") != 0 && strcmp(argv[1], "discard") != 0)) {
        fprintf(stderr, "usage: %s echo|discard ADDRESS PORT\n", argv[0]);
        return 2;
    }
    int echo = strcmp(argv[1], "echo") == 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[2], &sa.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[2]);
        return 2;
    }
    int one = 1;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 16) < 0) {
        perror("listen");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            perror("accept");
            return 1;
        }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        unsigned long long total = 0;
        for (;;) {
            ssize_t n = recv(c, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            total += (unsigned long long)n;
            if (echo && write_all(c, buf, (size_t)n) < 0)
                break;
        }
        close(c);
        printf("closed %llu\n", total);
        fflush(stdout);
    }
}
