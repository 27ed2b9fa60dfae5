/* A small C client of the ELASTIC control ABI: reads the clock through /<mount>/.elastic.
 *
 *   cc -O2 -I Sources/CElasticControlABI/include -o elastic-clock mount-helpers/examples/elastic-clock.c
 *   ./elastic-clock /secure                 # one reading of each clock
 *   ./elastic-clock /secure --bench 100000  # median latency: CLOCK ioctl, DERIVE ioctl, clock_gettime
 */
#include <elastic/elastic_ioctl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static int read_clock(int fd, uint32_t id, struct elastic_clock *c) {
    memset(c, 0, sizeof *c);
    c->version = ELASTIC_ABI_VERSION;
    c->clock = id;
    return ioctl(fd, ELASTIC_IOC_CLOCK, c);
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, long n) {
    qsort(v, (size_t)n, sizeof *v, cmp);
    return v[n / 2];
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MOUNTPOINT [--bench N]\n", argv[0]);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", argv[1], ELASTIC_CONTROL_NAME);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "open %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (argc >= 4 && strcmp(argv[2], "--bench") == 0) {
        long n = atol(argv[3]);
        if (n < 1) return 2;
        double *v = malloc(sizeof(double) * (size_t)n);
        struct elastic_clock c;
        struct elastic_derive d;
        struct timespec ts;
        for (long i = 0; i < n; i++) {
            double t0 = now_ns();
            if (read_clock(fd, ELASTIC_CLOCK_MONOTONIC, &c) != 0) { perror("ioctl"); return 1; }
            v[i] = now_ns() - t0;
        }
        double clock_ioctl = median(v, n);
        for (long i = 0; i < n; i++) {
            memset(&d, 0, sizeof d);
            d.version = ELASTIC_ABI_VERSION;
            d.key_length = 32;
            d.label_length = 5;
            memcpy(d.label, "bench", 5);
            double t0 = now_ns();
            if (ioctl(fd, ELASTIC_IOC_DERIVE, &d) != 0) { perror("ioctl"); return 1; }
            v[i] = now_ns() - t0;
        }
        double derive_ioctl = median(v, n);
        for (long i = 0; i < n; i++) {
            double t0 = now_ns();
            clock_gettime(CLOCK_MONOTONIC, &ts);
            v[i] = now_ns() - t0;
        }
        printf("calls=%ld clock_ioctl_median_us=%.2f derive_ioctl_median_us=%.2f clock_gettime_median_us=%.3f\n",
               n, clock_ioctl / 1e3, derive_ioctl / 1e3, median(v, n) / 1e3);
        free(v);
        return 0;
    }
    static const char *names[] = {"realtime", "monotonic", "boottime", "process", "thread"};
    for (uint32_t id = 0; id < 5; id++) {
        struct elastic_clock c;
        if (read_clock(fd, id, &c) != 0) {
            fprintf(stderr, "ELASTIC_IOC_CLOCK %s: %s\n", names[id], strerror(errno));
            return 1;
        }
        printf("%s %lld.%09u res=%uns %s %s\n", names[id], (long long)c.seconds, c.nanoseconds, c.resolution_ns,
               c.source == ELASTIC_SOURCE_SECURE_TSC ? "secure-tsc" : "clock_gettime",
               (c.flags & ELASTIC_TIME_TRUSTED) ? "trusted" : "host-influenced");
    }
    /* A malformed request is refused. */
    struct elastic_clock bad;
    read_clock(fd, 99, &bad);
    if (ioctl(fd, ELASTIC_IOC_CLOCK, &bad) == 0 || errno != EINVAL) {
        fprintf(stderr, "expected EINVAL for clock 99\n");
        return 1;
    }
    close(fd);
    return 0;
}
